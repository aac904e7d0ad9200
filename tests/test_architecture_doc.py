"""docs/architecture.md's walks match the code: every step it names exists, and each step is reached from
the one before it (or from an earlier step of the same stretch, the caller a step returned to), except where
the doc says the data crosses a process, a queue or Redis (a step marked ⇢)."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
WALK = re.compile(r"<!-- walk: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /walk -->", re.S)
STEP = re.compile(r"^\d+\. `(?P<ref>[^`]+)`(?P<text>.*?)(?=^\d+\. `|\Z)", re.S | re.M)


@dataclass(frozen=True)
class Step:
    ref: str
    crosses: bool  # the next step is reached across a process, a queue or Redis, not by a call
    source: str
    name: str  # what the step before it calls it by


def _python_step(ref: str) -> tuple[str, str]:
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{ref}: {'.'.join(parts[:cut])} has no {attr}"
            obj = getattr(obj, attr)
        return inspect.getsource(obj), parts[-1]  # type: ignore[arg-type]
    raise AssertionError(f"{ref}: no such module")


def _js_step(ref: str) -> tuple[str, str]:
    path, _, name = ref.partition(":")
    text = (REPO / path).read_text()
    assert re.search(rf"^\s+{re.escape(name)}\(", text, re.M), f"{path} defines no method {name}"
    return text, name


def walks() -> dict[str, list[Step]]:
    found: dict[str, list[Step]] = {}
    for walk in WALK.finditer(DOC.read_text()):
        steps = []
        for m in STEP.finditer(walk["body"]):
            ref = m["ref"]
            source, name = _js_step(ref) if ":" in ref else _python_step(ref)
            steps.append(Step(ref, "⇢" in m["text"], source, name))
        found[walk["name"]] = steps
    return found


@pytest.mark.parametrize("walk", ["node-change", "transfer"])
def test_each_step_exists_and_reaches_the_next(walk: str) -> None:
    steps = walks()[walk]
    assert len(steps) >= 8, f"the {walk} walk names {len(steps)} steps"
    stretch: list[Step] = []
    for step, following in zip(steps, steps[1:], strict=False):
        stretch = [] if stretch and stretch[-1].crosses else stretch
        stretch.append(step)
        if step.crosses:
            continue
        assert any(re.search(rf"\b{re.escape(following.name)}\b", s.source) for s in stretch), (
            f"{walk}: nothing from {stretch[0].ref} to {step.ref} calls {following.ref}")


def test_the_readme_links_the_architecture() -> None:
    assert "docs/architecture.md" in (REPO / "README.md").read_text()

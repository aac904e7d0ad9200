"""What pyproject.toml declares is what the code imports: a fresh virtual environment is not the machine's
own Python, where another project's numpy or aiohttp can hide a missing line.

Statically, every third-party module that a package imports must come from a distribution named by the
extra that installs that package (plus the base dependencies). For real, the gateway's extra alone, in a
venv of its own, runs ``castray gateway`` without Ray; then discovery's and registry's extras are added.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = frozenset({"castray", "tests", "bench"})
# Service package -> the extra that installs what it needs (`pip install "castray[EXTRA]"`).
SERVICE_EXTRAS = {"castray.gateway": "gateway", "castray.discovery": "discovery",
                  "castray.node_registry": "registry", "castray.transfer": "transfer"}
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


@dataclass(frozen=True)
class Import:
    module: str  # the dotted name as written: "redis.asyncio", "castray.shared.bus"
    file: Path
    line: int
    lazy: bool  # inside a function: runs only when that function does

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def where(self) -> str:
        return f"{self.file.relative_to(REPO) if self.file.is_relative_to(REPO) else self.file}:{self.line}"


@dataclass(frozen=True)
class Scope:
    """Code, and the distributions its imports may come from (module-level ones, and lazy ones)."""

    name: str
    folder: Path
    eager: frozenset[str]
    lazy: frozenset[str]


@functools.cache
def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, set[str]]:
    found = _REQUIREMENT.match(text)
    assert found is not None, f"not a requirement: {text!r}"
    extras = {e.strip() for e in (found.group(2) or "").split(",") if e.strip()}
    return _normalized(found.group(1)), extras


def declared(*extras: str, project: dict[str, Any] | None = None) -> frozenset[str]:
    """Distributions that ``pip install "castray[EXTRAS]"`` asks for by name: the base dependencies and
    the extras' own, following ``castray[...]`` inside them; not what those distributions bring in turn."""
    project = project or _pyproject()["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    todo, seen, names = [*project["dependencies"]], set(extras), set[str]()
    for extra in extras:
        todo.extend(optional[extra])
    while todo:
        name, more = _requirement(todo.pop())
        if name != _normalized(project["name"]):
            names.add(name)
            continue
        for extra in more - seen:
            seen.add(extra)
            todo.extend(optional[extra])
    return frozenset(names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(nodes: Iterable[ast.AST], lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.orelse, lazy)  # only the type checker runs the body
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(ast.iter_child_nodes(node), inner)


def imports_in(folder: Path) -> Iterator[Import]:
    """Every absolute import in the ``.py`` files under ``folder``; a from-import names what it imports
    (``from castray import up`` is ``castray.up``)."""
    for file in sorted(folder.rglob("*.py")):
        for node, lazy in _walk(ast.parse(file.read_text(), str(file)).body, lazy=False):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue  # relative: inside the package itself
            yield from (Import(name, file, node.lineno, lazy) for name in names)


def third_party(imports: Iterable[Import]) -> Iterator[Import]:
    return (i for i in imports if i.top not in sys.stdlib_module_names and i.top not in FIRST_PARTY)


@functools.cache
def _providers() -> dict[str, frozenset[str]]:
    """Top-level module -> the installed distributions that provide it."""
    return {module: frozenset(_normalized(d) for d in dists)
            for module, dists in metadata.packages_distributions().items()}


def undeclared(scope: Scope) -> list[str]:
    """One line per import that no distribution allowed in ``scope`` provides."""
    wrong = []
    for found in third_party(imports_in(scope.folder)):
        allowed = scope.lazy if found.lazy else scope.eager
        provided = _providers().get(found.top, frozenset())
        if not provided & allowed:
            kind = "lazy import" if found.lazy else "import"
            by = sorted(provided) or "no installed distribution"
            wrong.append(f"{found.where()}: {kind} of {found.top!r}, provided by {by}, "
                         f"which {scope.name} does not declare")
    return wrong


def _package_folders() -> dict[str, Path]:
    mapping: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]
    return {package: REPO / folder for package, folder in mapping.items()}


def scopes() -> list[Scope]:
    base, everything, test = declared(), declared("all"), declared("test")
    found = []
    for package, folder in _package_folders().items():
        if package in SERVICE_EXTRAS:
            extra = declared(SERVICE_EXTRAS[package])
            found.append(Scope(f"{package} (extra {SERVICE_EXTRAS[package]!r})", folder, extra, extra))
        elif package == "castray":  # the CLI imports a service's modules inside its subcommand
            found.append(Scope("castray (base dependencies; lazily, extra 'all')", folder, base, everything))
        else:
            found.append(Scope(f"{package} (base dependencies)", folder, base, base))
    found += [Scope("tests (extra 'test')", REPO / "tests", test, test),
              Scope("bench (extra 'test')", REPO / "bench", test, test)]
    return found


def test_every_service_package_has_its_extra() -> None:
    optional = _pyproject()["project"]["optional-dependencies"]
    assert set(_package_folders()) == {"castray", "castray.shared", *SERVICE_EXTRAS}
    assert {extra for extra in SERVICE_EXTRAS.values() if extra not in optional} == set()


@pytest.mark.parametrize("scope", scopes(), ids=lambda s: s.name.split(" ")[0])
def test_every_import_comes_from_a_declared_distribution(scope: Scope) -> None:
    assert list(third_party(imports_in(scope.folder))), f"no third-party import found in {scope.folder}"
    wrong = undeclared(scope)
    assert not wrong, "\n".join(wrong)


def test_no_service_package_imports_another_one() -> None:
    """A service's extra covers its own package and castray.shared; importing another service's package
    would need that service's extra too."""
    crossings = []
    for package, folder in _package_folders().items():
        if package not in SERVICE_EXTRAS:
            continue
        others = [p for p in SERVICE_EXTRAS if p != package]
        crossings += [f"{i.where()}: {package} imports {i.module}" for i in imports_in(folder)
                      if any(i.module == p or i.module.startswith(p + ".") for p in others)]
    assert not crossings, "\n".join(crossings)


def test_the_check_reports_an_undeclared_import(tmp_path: Path) -> None:
    """The static check can fail: numpy, imported lazily, is the transfer extra's and not the gateway's."""
    module = tmp_path / "fast.py"
    module.write_text("import os\n\n\ndef copy() -> None:\n    import numpy\n")
    project = {"name": "castray", "dependencies": ["msgpack>=1"],
               "optional-dependencies": {"gateway": ["aiohttp"], "transfer": ["ray[default]", "numpy>=1.24"],
                                         "all": ["castray[gateway,transfer]"]}}
    assert declared("all", project=project) == {"msgpack", "aiohttp", "ray", "numpy"}
    gateway = declared("gateway", project=project)
    transfer = declared("transfer", project=project)
    [numpy] = third_party(imports_in(tmp_path))
    assert (numpy.top, numpy.lazy, numpy.line) == ("numpy", True, 5)
    assert undeclared(Scope("transfer", tmp_path, transfer, transfer)) == []
    [line] = undeclared(Scope("gateway", tmp_path, gateway, gateway))
    assert line.startswith(f"{module}:5: lazy import of 'numpy'") and "gateway does not declare" in line


# ---- for real: one service's extra, alone, in a fresh virtual environment ----------------------------

_IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__, name + "."):
        importlib.import_module(info.name)
"""


def _run(*cmd: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``cmd`` with no trace of the outer environment's Python (PYTHONPATH, VIRTUAL_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, (
        f"{out.args}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def _source_copy(dest: Path) -> Path:
    """What the wheel is built from (pyproject.toml, its readme, the package folders), so that building it
    leaves no build/ or *.egg-info in the work tree."""
    dest.mkdir()
    for name in ("pyproject.toml", _pyproject()["project"]["readme"]):
        shutil.copy2(REPO / name, dest / name)
    for folder in {path.relative_to(REPO) for path in _package_folders().values()}:
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _check_service(venv: Path, command: str, package: str, cwd: Path) -> None:
    assert command in _ok(_run(venv / "bin" / "castray", command, "--help", cwd=cwd)).stdout
    _ok(_run(venv / "bin" / "python", "-c", _IMPORT_EVERY_MODULE, package, "castray.shared", cwd=cwd))


def _assert_no_ray(venv: Path, cwd: Path) -> None:
    out = _run(venv / "bin" / "python", "-c", "import ray", cwd=cwd)
    assert out.returncode != 0 and "No module named 'ray'" in out.stderr, out.stderr[-2000:]


@pytest.mark.timeout(600)
def test_each_light_extra_alone_runs_its_service_without_ray(tmp_path: Path) -> None:
    """``pip install "castray[gateway]"`` in a new venv: ``castray gateway --help`` works, every module of
    the gateway imports, and Ray is not there (the gateway image is meant to be without it). Then the same
    for discovery and registry, added to that venv. (The transfer extra brings Ray, ~80 MB: not here.)"""
    source, venv, work = _source_copy(tmp_path / "src"), tmp_path / "venv", tmp_path / "work"
    work.mkdir()  # not the source: a castray/ folder in the working directory would shadow the install
    _ok(_run(sys.executable, "-m", "venv", venv, cwd=work))
    pip = (venv / "bin" / "python", "-m", "pip", "install", "--quiet")
    _ok(_run(*pip, f"{source}[gateway]", cwd=work, timeout=300))
    _check_service(venv, "gateway", "castray.gateway", work)
    _assert_no_ray(venv, work)
    _ok(_run(*pip, f"{source}[discovery,registry]", cwd=work, timeout=300))
    _check_service(venv, "discovery", "castray.discovery", work)
    _check_service(venv, "registry", "castray.node_registry", work)
    _assert_no_ray(venv, work)


@pytest.mark.timeout(900)
def test_the_transfer_extra_alone_runs_its_service_and_its_driver(tmp_path: Path) -> None:
    """``pip install "castray[transfer]"`` alone, in a new venv: ``castray transfer --help`` works, every
    module of the transfer service imports (Ray, numpy and xxhash included), and its Ray driver starts as
    the service starts it (``python -P -m castray.transfer.driver``)."""
    source, venv, work = _source_copy(tmp_path / "src"), tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    _ok(_run(sys.executable, "-m", "venv", venv, cwd=work))
    _ok(_run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", f"{source}[transfer]", cwd=work,
             timeout=600))
    _check_service(venv, "transfer", "castray.transfer", work)
    driver = _ok(_run(venv / "bin" / "python", "-P", "-m", "castray.transfer.driver", "--help", cwd=work))
    assert "--address" in driver.stdout

"""Reading JSON log lines: a process's stderr, or the lines this process logs through `log_handler`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from castray.shared.log import log_handler

Line = dict[str, Any]


def parse(text: str) -> tuple[list[Line], list[str]]:
    """(the JSON objects, one a line; the other non-empty lines, which are not JSON objects)."""
    parsed: list[Line] = []
    other: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            other.append(raw)
            continue
        if isinstance(obj, dict):
            parsed.append(obj)
        else:
            other.append(raw)
    return parsed, other


@contextlib.contextmanager
def captured(*, service: str = "test", instance: str = "test@here:1:abc", json_lines: bool = True,
             level: int = logging.INFO) -> Iterator[Callable[[], str]]:
    """Everything logged meanwhile, through the product's own handler, as the text it wrote (call the
    yielded function); the root logger's level and handlers are as before afterwards."""
    stream = io.StringIO()
    handler = log_handler(stream, json_lines=json_lines, service=service, instance=instance)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream.getvalue
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def about(lines: list[Line], **fields: Any) -> list[Line]:
    """The lines whose fields have these values."""
    return [line for line in lines if all(line.get(k) == v for k, v in fields.items())]

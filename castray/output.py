"""How the client commands print: a rich table on a terminal, aligned plain lines when piped (one row a
line, for grep and awk), JSON with ``--json``. Decided once per command from ``sys.stdout``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from castray.shared.sizes import format_size


def is_tty() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    return Console(highlight=False)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """``rows`` under ``columns``: rich on a terminal, plain aligned lines otherwise."""
    if is_tty():
        t = Table(title=title, title_justify="left")
        for column in columns:
            t.add_column(column, overflow="fold")
        for row in rows:
            t.add_row(*row)
        console().print(t)
        return
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *rows, strict=False)]
    for row in (columns, *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())


def size(n: int) -> str:
    return format_size(n)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def rate(bytes_per_s: float) -> str:
    return f"{format_size(int(bytes_per_s))}/s"

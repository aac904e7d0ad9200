"""File sizes as people write them: ``1KB``, ``1.5MB``, ``2GB``, ``64MiB``, ``1024`` (bytes).

KB/MB/GB/TB and KiB/MiB/GiB/TiB are all 1024-based, as in the original CastRay's generator.
"""

from __future__ import annotations

import math
import re

from castray.shared.errors import SizeError

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE]\d+)?)\s*([A-Za-z]*)\s*$")

# The original generator's presets.
PRESETS: dict[str, tuple[int, str]] = {
    "tiny": (1024, "Tiny file (1 KB)"),
    "small": (10 * 1024, "Small file (10 KB)"),
    "medium": (100 * 1024, "Medium file (100 KB)"),
    "large": (1024**2, "Large file (1 MB)"),
    "huge": (10 * 1024**2, "Huge file (10 MB)"),
    "massive": (100 * 1024**2, "Massive file (100 MB)"),
}
UNITS_SHOWN = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"]


def parse_size(text: str | int) -> int:
    """Bytes in ``text``; a `SizeError` that says why for anything else (negative, unknown unit, inf)."""
    if isinstance(text, bool):
        raise SizeError("size must be a number of bytes or a string like '64MB'")
    if isinstance(text, int):
        if text < 0:
            raise SizeError("size must not be negative")
        return text
    if not isinstance(text, str) or len(text) > 64:
        raise SizeError("size must be a number of bytes or a string like '64MB'")
    m = _SIZE.match(text)
    if not m:
        raise SizeError(f"not a size: {text!r} (examples: 1024, 1KB, 1.5MB, 2GB, 64MiB)")
    number, unit = float(m.group(1)), m.group(2).upper()
    if unit not in _UNITS:
        raise SizeError(f"unknown unit {m.group(2)!r} (use one of {', '.join(UNITS_SHOWN)})")
    value = number * _UNITS[unit]
    if not math.isfinite(value) or value > 2**62:
        raise SizeError(f"size too large: {text!r}")
    return int(value)


def format_size(n: int | float) -> str:
    """``1023 B``, ``1.00 KB``, ``1.50 MB``, ... (1024-based, as the original showed them)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.2f} {unit}"
    raise AssertionError("unreachable")

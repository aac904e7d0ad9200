"""Small pieces every part of the SDK uses: the progress callback's type and an id made a path segment."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
"""Called with (bytes so far, bytes in all) as an upload or a download goes."""


def segment(value: str) -> str:
    """An id as one path segment: nothing in it may reach another endpoint."""
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"not an id: {value!r}")
    return value

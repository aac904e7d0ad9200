"""File names from users are hostile: make them safe, and keep paths inside their root.

`safe_file_name` keeps only the last path component (``../../x`` -> ``x``, ``/etc/passwd`` ->
``passwd``, ``a\\b`` -> ``b``) and refuses (control and format characters, e.g. the bidi override U+202E,
included), with a `ValueError` that says why, names that cannot be used
as one file name. `inside` joins parts under a root and refuses any result outside it (``..``,
absolute parts, symlinks pointing out).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

MAX_NAME_BYTES = 255
# Windows device names: refused everywhere so a file can be copied to any OS without surprise.
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}


def safe_file_name(name: str) -> str:
    """The last path component of ``name``, checked usable as a file name; `ValueError` otherwise."""
    if not isinstance(name, str):
        raise ValueError("file name must be a string")
    if "\x00" in name:
        raise ValueError("file name must not contain NUL bytes")
    # Both separators, whatever the OS: a Windows client sends C:\Users\me\file.txt.
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    if not base:
        raise ValueError("file name is empty")
    if set(base) == {"."}:
        raise ValueError(f"file name {base!r} is only dots")
    if any(unicodedata.category(c) == "Cc" for c in base):
        raise ValueError("file name must not contain control characters")
    if bad := next((c for c in base if unicodedata.category(c) == "Cf"), None):
        # Bidi overrides (U+202E shows "evil\u202Etxt.exe" as "evilexe.txt"), zero-width characters.
        raise ValueError(f"file name must not contain format characters (U+{ord(bad):04X})")
    if len(base.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise ValueError(f"file name is longer than {MAX_NAME_BYTES} bytes (UTF-8)")
    try:
        base.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("file name is not valid Unicode") from e
    stem = base.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED:
        raise ValueError(f"file name {base!r} is a reserved device name")
    if base.startswith(".") and base.endswith(".part"):
        # The form our own temporary files take: a user file must never be confused with one.
        raise ValueError(f"file name {base!r} is reserved for temporary files")
    return base


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/parts...`` resolved; `ValueError` if it is not strictly inside the resolved ``root``."""
    base = Path(root).resolve()
    for part in parts:
        if "\x00" in part:
            raise ValueError("path must not contain NUL bytes")
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"path {os.path.join(*parts) if parts else ''!r} is outside {str(base)!r}")
    return target

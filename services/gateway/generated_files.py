"""The file generator's folder (``<data dir>/generated``) and the uploads folder, on disk.

Everything here blocks (disk I/O): call it through ``asyncio.to_thread``. Names follow the original
CastRay's rules (characters ``[A-Za-z0-9._-]``, a ``.txt/.bin/.dat`` extension, ``_<timestamp>`` on a
clash) and then `safe_file_name`, so no name can leave the folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from castray.shared import filegen
from castray.shared.safe_names import inside, safe_file_name

GENERATED = "generated"
UPLOADS = "uploads"
DEMO = "demo_files"  # the original's demo files (original.files.DEMO_FILES) and create-demo's files
EXTENSIONS = (".txt", ".bin", ".dat")
GENERATED_PREFIXES = ("sample_", "preset_", "transfer_")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def stamp() -> str:
    return datetime.now(tz=UTC).strftime("%Y%m%d_%H%M%S")


def generator_name(requested: str, default: str) -> str:
    """The original's name rules, then `safe_file_name` (`ValueError` if the result is unusable)."""
    name = _NOT_ALLOWED.sub("", requested or "").lstrip(".") or default
    if not name.lower().endswith(EXTENSIONS):
        name += ".txt"
    return safe_file_name(name)


def reserve(folder: Path, name: str) -> Path:
    """Create ``folder/name`` empty and exclusively (``_<timestamp>``, then a random tag, on a clash)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tagged = (f"{stem}_{uuid.uuid4().hex[:8]}{ext}" for _ in range(5))
    for candidate in (name, f"{stem}_{stamp()}{ext}", *tagged):
        path = inside(folder, safe_file_name(candidate))
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free name for {name!r}")


def generate(path: Path, size: int, content: filegen.Content) -> str:
    """Fill a reserved ``path`` with ``size`` bytes; the reservation is removed if that fails."""
    try:
        return filegen.write_generated(path, size, content)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass
class FileEntry:
    file_name: str
    file_size: int
    created: float
    modified: float


def list_folder(folder: Path) -> list[FileEntry]:
    """Regular files in ``folder`` (temporary and hidden ones left out), newest first."""
    if not folder.is_dir():
        return []
    entries: list[FileEntry] = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                continue
            st = e.stat(follow_symlinks=False)
            entries.append(FileEntry(e.name, st.st_size, st.st_ctime, st.st_mtime))
    entries.sort(key=lambda f: f.modified, reverse=True)
    return entries


def find_file(data_dir: Path, name: str) -> Path | None:
    """A file named ``name`` in the demo files (where the original looked), else in the generated folder,
    else the newest upload of that name."""
    for folder in (DEMO, GENERATED):
        candidate = inside(data_dir / folder, name)
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    uploads = data_dir / UPLOADS
    if not uploads.is_dir():
        return None
    best: tuple[float, Path] | None = None
    with os.scandir(uploads) as it:
        for e in it:
            if not e.is_dir(follow_symlinks=False):
                continue
            path = Path(e.path) / name
            if path.is_file() and not path.is_symlink():
                mtime = path.stat().st_mtime
                if best is None or mtime > best[0]:
                    best = (mtime, path)
    return best[1].resolve() if best else None


# --- streamed uploads ------------------------------------------------------------------------------
class UploadFile:
    """An upload being written: ``<folder>/.upload.part`` until `finish` renames it to its name."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=False)
        self.folder = folder
        self.tmp = folder / ".upload.part"
        self.f: IO[bytes] = open(self.tmp, "xb")  # noqa: SIM115 - closed in finish/discard
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)  # hashlib releases the GIL on large buffers
        self.f.write(data)
        self.size += len(data)

    def finish(self, name: str) -> Path:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        final = inside(self.folder, name)
        os.replace(self.tmp, final)
        return final

    def discard(self) -> None:
        """Remove everything this upload wrote."""
        if not self.f.closed:
            self.f.close()
        shutil.rmtree(self.folder, ignore_errors=True)

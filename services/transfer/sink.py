"""A copy being written at a destination, and what the agent's reading and writing share.

A copy is written beside its final path under a hidden temporary name (``.castray-<transfer>-<token>.part``,
never a name a user can give: `safe_file_name` refuses it), hashed as it is written, fsync'd, compared with
the source's sha256, and only then linked into place. Every name is opened, linked and removed relative to
a descriptor of the destination folder, walked without following symlinks (`castray.shared.confined`): a
symlink swapped into the inbox cannot send a copy anywhere else.

Shipped to every node with the agent (`castray.transfer.shipping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from castray.shared.confined import open_at, open_dirs, open_root
from castray.shared.digest import file_digest
from castray.shared.errors import ConfinementError
from castray.shared.safe_names import safe_file_name
from castray.transfer.diskio import ChunkWriter
from castray.transfer.errors import TransferError

try:
    import xxhash
except ImportError:  # pragma: no cover - depends on the node
    xxhash = None  # type: ignore[assignment]

CHUNK_DIGEST = "xxh3:"
TEMP_PREFIX = ".castray-"
TEMP_SUFFIX = ".part"
STALE_TEMP_S = 3600.0  # a temp file untouched this long belongs to nobody (writers touch it every chunk)


@dataclass(frozen=True)
class SinkSpec:
    """Where and how one copy is written: ``<dir>/<file_name>``. ``file_name`` is checked here, on the
    node, whoever sent it: this is the check that guards the disk."""

    dir: str
    file_name: str
    transfer_id: str
    token: str
    overwrite: bool = False
    retry: bool = False  # an earlier attempt may have placed this very copy: accept it if it matches
    idle_timeout: float = 0.0  # no write, rewind or finish for this long: the copy aborts itself (0: never)


class Placed(TypedDict):
    """A verified copy, linked into place."""

    path: str
    sha256: str
    bytes: int


def temp_name(transfer_id: str, token: str) -> str:
    return f"{TEMP_PREFIX}{transfer_id}-{token}{TEMP_SUFFIX}"


class Ordered:
    """Lets calls through strictly by index; an error stops every later one.

    A broadcast chain (`castray.transfer.chain`) re-issues the calls a lost upstream copy left waiting:
    `rewind` starts a new epoch, in which calls of an older epoch are refused (`Superseded`) and those
    already waiting are woken to be refused, without touching ``next`` or the error."""

    def __init__(self) -> None:
        self.next = 0
        self.epoch = 0
        self.busy = False
        self.error: str | None = None
        self.cond = asyncio.Condition()

    async def turn(self, index: int, epoch: int = 0) -> None:
        async with self.cond:
            await self.cond.wait_for(
                lambda: self.next == index or self.error is not None or self.epoch != epoch)
            if self.error is None and self.epoch == epoch:
                self.busy = True
        if self.error is not None:
            raise TransferError(self.error)
        if self.epoch != epoch:
            raise Superseded(f"chunk {index} re-issued (epoch {self.epoch}, this call's {epoch})")

    async def advance(self, error: str | None = None) -> None:
        async with self.cond:
            self.next += 1
            self.busy = False
            if error is not None:
                self.error = error
            self.cond.notify_all()

    async def rewind(self) -> int:
        """A new epoch, once the call being written (if any) is done: every call of an older epoch is
        refused. Returns the new epoch."""
        async with self.cond:
            await self.cond.wait_for(lambda: not self.busy)
            self.epoch += 1
            self.cond.notify_all()
            return self.epoch


class Superseded(TransferError):
    """A call of an epoch that `Ordered.rewind` ended: the chain re-issues it (not the sink's error)."""


class Sink(Ordered):
    """A copy being written into the directory ``dir_fd`` (``shown``: its path, for answers): every name is
    opened, linked or removed relative to that descriptor, never followed if it is a symlink."""

    def __init__(self, dir_fd: int, shown: Path, name: str, tmp: str, overwrite: bool, retry: bool) -> None:
        super().__init__()
        self.dir_fd, self.final, self.name, self.tmp = dir_fd, shown / name, name, tmp
        self.overwrite, self.retry = overwrite, retry
        self.fd = open_at(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self.writer = ChunkWriter(self.fd)
        except BaseException:
            os.close(self.fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        self.sha = hashlib.sha256()
        self.done = 0
        self.idle_timeout = 0.0
        self.touched = time.monotonic()

    def touch(self) -> None:
        """Its driver still speaks to it (a write, a rewind, its finish arrived)."""
        self.touched = time.monotonic()

    def idle(self, now: float) -> bool:
        """Abandoned: nothing arrived for ``idle_timeout`` and no chunk is being written (see `watch`)."""
        return 0 < self.idle_timeout < now - self.touched and not self.busy

    def write(self, data: Any, digest: str) -> int:
        view = memoryview(data).cast("B")
        if digest.startswith(CHUNK_DIGEST):  # the chunk's own xxh3-128
            if xxhash is None:  # the driver never sends these to such a node (`NodeAgent.info`)
                raise TransferError("this node has no xxhash to check the chunks with")
            chunk = xxhash.xxh3_128()

            def check() -> None:
                if CHUNK_DIGEST + chunk.hexdigest() != digest:
                    raise TransferError(f"chunk at byte {self.done} arrived corrupted (xxh3 mismatch)")

            self.writer.put(view, [self.sha, chunk], check)
        else:  # the source's running sha256 so far

            def check() -> None:
                if self.sha.copy().hexdigest() != digest:
                    raise TransferError(f"chunk at byte {self.done} arrived corrupted (sha256 mismatch)")

            self.writer.put(view, [self.sha], check)
        self.done += len(view)
        return self.done

    def finish(self, expected: str) -> Placed:
        self.writer.flush()
        self.writer.close()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        digest = self.sha.hexdigest()
        if digest != expected:
            raise TransferError(f"sha256 mismatch: wrote {digest}, source has {expected}")
        self._place()
        with contextlib.suppress(OSError):
            os.fsync(self.dir_fd)
        return {"path": str(self.final), "sha256": digest, "bytes": self.done}

    def _place(self) -> None:
        at = {"src_dir_fd": self.dir_fd, "dst_dir_fd": self.dir_fd}
        if self.overwrite:  # a rename replaces a symlink at the name itself, never what it points to
            os.replace(self.tmp, self.name, **at)
            return
        try:
            os.link(self.tmp, self.name, **at, follow_symlinks=False)  # atomic, never replaces a file
        except FileExistsError:
            # After a take-over, a copy the dead replica already placed is the same file: accept it.
            if not (self.retry and self._placed_sha() == self.sha.hexdigest()):
                raise TransferError(f"exists: {self.name} is already in the inbox") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if _exists_at(self.dir_fd, self.name):  # no hard links here: check, then rename (a tiny race)
                raise TransferError(f"exists: {self.name} is already in the inbox") from None
            os.rename(self.tmp, self.name, **at)
            return
        os.unlink(self.tmp, dir_fd=self.dir_fd)

    def _placed_sha(self) -> str:
        try:
            fd = open_at(self.dir_fd, self.name, os.O_RDONLY)
        except ConfinementError:
            return ""
        return file_digest(fd)[1]

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = -1
            if self.dir_fd >= 0:
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.tmp, dir_fd=self.dir_fd)
                finally:
                    os.close(self.dir_fd)
                    self.dir_fd = -1


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def open_sink(spec: SinkSpec) -> Sink:
    """The sink for a copy at ``<dir>/<file_name>``: ``dir``'s parent (the inbox, or the relay folder)
    is configuration; its last component (the node's folder) and the file are opened without following a
    symlink, so one swapped in at any time cannot send the copy elsewhere."""
    directory = Path(spec.dir)
    try:
        name = safe_file_name(spec.file_name)
    except ValueError as e:
        raise TransferError(f"unusable file name: {e}") from None
    root_fd = open_root(directory.parent, create=True)
    try:
        dir_fd = open_dirs(root_fd, [directory.name], create=True)
    except ConfinementError as e:
        raise TransferError(f"inbox refused: {e}") from None
    finally:
        os.close(root_fd)
    try:
        _sweep(dir_fd, spec.transfer_id)
        if _exists_at(dir_fd, name) and not spec.overwrite and not spec.retry:
            raise TransferError(f"exists: {name} is already in the inbox")
        shown = Path(os.path.realpath(directory.parent)) / directory.name
        sink = Sink(dir_fd, shown, name, temp_name(spec.transfer_id, spec.token), spec.overwrite, spec.retry)
        sink.idle_timeout = spec.idle_timeout
        return sink
    except ConfinementError as e:
        os.close(dir_fd)
        raise TransferError(f"inbox refused: {e}") from None
    except BaseException:
        os.close(dir_fd)
        raise


def _sweep(dir_fd: int, transfer_id: str) -> None:
    """Remove this transfer's temp files left by an earlier attempt, and any temp file nobody has written
    to for an hour (their writer's node or driver died)."""
    now, mine = time.time(), f"{TEMP_PREFIX}{transfer_id}-"
    for name in os.listdir(dir_fd):
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if name.startswith(mine) or now - st.st_mtime > STALE_TEMP_S:
                os.unlink(name, dir_fd=dir_fd)

"""The node agent: an async Ray actor pinned to one node, which reads a transfer's source there and writes
its copies there.

One agent per (driver, node), reused by every transfer: starting a Ray worker costs about a second, so it
is paid once. Calls for one transfer can start out of order (an async actor runs a call as soon as its
ObjectRef arguments arrive), so each source and sink takes chunks strictly by index (`_Ordered`); a
waiting call holds no thread. Disk work and hashing run in threads (hashlib and file I/O release the GIL).

A copy is written beside its final path under a hidden temporary name (``.castray-<transfer>-<token>.part``,
never a name a user can give: `safe_file_name` refuses it), hashed as it is written, fsync'd, compared with
the source's sha256, and only then linked into place. After every chunk the writer's running sha256 is
compared with the reader's, so a bad chunk is caught at once rather than at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Protocol

import ray

from castray.shared.safe_names import inside, safe_file_name
from castray.transfer.diskio import ChunkWriter

# A node of someone else's cluster has Ray, but maybe not numpy or xxhash (Ray needs neither). Without them
# the agent still works, more slowly: chunks travel as bytearrays (one more copy out of the object store)
# and carry the running sha256 instead of a per-chunk xxh3. The driver picks that mode for a transfer as
# soon as one of its nodes lacks them (`NodeAgent.info` says), since both ends must agree.
try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the node
    np = None  # type: ignore[assignment]
try:
    import xxhash
except ImportError:  # pragma: no cover - depends on the node
    xxhash = None  # type: ignore[assignment]
FAST = np is not None and xxhash is not None

CHUNK_DIGEST = "xxh3:"
_PIECE = 512 * 1024
TEMP_PREFIX = ".castray-"
TEMP_SUFFIX = ".part"
STALE_TEMP_S = 3600.0  # a temp file untouched this long belongs to nobody (writers touch it every chunk)


def temp_name(transfer_id: str, token: str) -> str:
    return f"{TEMP_PREFIX}{transfer_id}-{token}{TEMP_SUFFIX}"


class TransferError(Exception):
    """A failure with a reason meant for the user (the message is shown as is)."""


class _Ordered:
    """Lets calls through strictly by index; an error stops every later one."""

    def __init__(self) -> None:
        self.next = 0
        self.error: str | None = None
        self.cond = asyncio.Condition()

    async def turn(self, index: int) -> None:
        async with self.cond:
            await self.cond.wait_for(lambda: self.next == index or self.error is not None)
        if self.error is not None:
            raise TransferError(self.error)

    async def advance(self, error: str | None = None) -> None:
        async with self.cond:
            self.next += 1
            if error is not None:
                self.error = error
            self.cond.notify_all()


class Readable(Protocol):
    """What a source reads from: an open file, or a stream such as an HTTP response."""

    def readinto(self, buffer: Any, /) -> int | None: ...

    def close(self) -> None: ...


class SourceFile(_Ordered):
    """Reads a file in order. Each chunk goes with a digest its destinations check it against: the
    running sha256 of the file so far, or, when the file's sha256 is already known (an upload's record
    has it), a per-chunk xxh3-128 (``xxh3:<hex>``, ~0.05 CPU-s per GiB instead of sha256's ~0.85): the
    source then hashes nothing else, and each destination still checks the whole file's sha256 against
    the known one at the end.

    ``fast`` (every node of the transfer has numpy and xxhash): chunks are numpy arrays, which a
    destination reads straight from its object store; otherwise bytearrays, with the running sha256."""

    def __init__(self, file: Readable, size: int, known_sha: str | None = None, fast: bool = True,
                 remove: Path | None = None) -> None:
        """Read ``size`` bytes from ``file`` (a file, or a stream such as an HTTP response); ``remove``:
        a file to delete at `close`."""
        super().__init__()
        self.fast = fast and FAST
        if not self.fast:
            known_sha = None  # no xxh3 on some node: the source hashes the file itself
        self.file, self.size, self.known_sha, self.remove = file, size, known_sha, remove
        self.sha = hashlib.sha256()
        self.done = 0

    @classmethod
    def open(cls, path: Path, remove_after: bool, known_sha: str | None = None, fast: bool = True
             ) -> SourceFile:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        return cls(file, os.fstat(file.fileno()).st_size, known_sha, fast, path if remove_after else None)

    def read(self, length: int) -> tuple[Any, str]:
        buf: Any = np.empty(length, dtype=np.uint8) if self.fast else bytearray(length)
        view, got = memoryview(buf).cast("B"), 0
        hasher: Any = xxhash.xxh3_128() if self.known_sha is not None else self.sha
        while got < length:  # pieces the size of the CPU's cache, hashed while they are in it
            n = self.file.readinto(view[got:min(length, got + _PIECE)])
            if not n:
                raise TransferError(f"source file shrank while being read ({self.done + got} bytes)")
            hasher.update(view[got:got + n])
            got += n
        self.done += length
        if self.known_sha is not None:
            return buf, CHUNK_DIGEST + hasher.hexdigest()
        return buf, self.sha.copy().hexdigest()

    def sha256(self) -> str:
        return self.known_sha if self.known_sha is not None else self.sha.hexdigest()

    def close(self) -> None:
        self.file.close()
        if self.remove is not None:
            self.remove.unlink(missing_ok=True)


class _Sink(_Ordered):
    def __init__(self, final: Path, tmp: Path, overwrite: bool, retry: bool) -> None:
        super().__init__()
        self.final, self.tmp, self.overwrite, self.retry = final, tmp, overwrite, retry
        self.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.writer = ChunkWriter(self.fd)
        self.sha = hashlib.sha256()
        self.done = 0

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

    def finish(self, expected: str) -> dict[str, Any]:
        self.writer.flush()
        self.writer.close()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        digest = self.sha.hexdigest()
        if digest != expected:
            raise TransferError(f"sha256 mismatch: wrote {digest}, source has {expected}")
        self._place()
        _fsync_dir(self.final.parent)
        return {"path": str(self.final), "sha256": digest, "bytes": self.done}

    def _place(self) -> None:
        if self.overwrite:
            os.replace(self.tmp, self.final)
            return
        try:
            os.link(self.tmp, self.final)  # atomic, and never replaces an existing file
        except FileExistsError:
            # After a take-over, a copy the dead replica already placed is the same file: accept it.
            if not (self.retry and _sha256_of(self.final) == self.sha.hexdigest()):
                raise TransferError(f"exists: {self.final.name} is already in the inbox") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if self.final.exists():  # no hard links here: check, then rename (a tiny race remains)
                raise TransferError(f"exists: {self.final.name} is already in the inbox") from None
            os.rename(self.tmp, self.final)
            return
        self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        self.writer.close()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        self.tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(8 * 1024 * 1024):
            sha.update(block)
    return sha.hexdigest()


def _resolve_source(spec: dict[str, Any]) -> tuple[Path, bool]:
    """The file a source spec names on this node, and whether to delete it afterwards."""
    kind = spec["kind"]
    if kind == "path":  # an absolute path chosen by CastRay itself (an upload)
        path = Path(spec["path"])
    elif kind == "files_root":  # a path from the user: must stay inside the files root
        try:
            path = inside(spec["root"], spec["path"])
        except ValueError as e:
            raise TransferError(f"bad source path: {e}") from None
    elif kind == "generate":
        from castray.shared.filegen import write_generated

        path = Path(spec["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_generated(path, int(spec["size"]), spec.get("content", "random"), fsync=False)
        return path, True
    else:
        raise TransferError(f"unknown source kind {kind!r}")
    if not path.is_file():
        raise TransferError(f"source file not found on node: {spec.get('path')}")
    return path, False


def _open_sink(spec: dict[str, Any]) -> _Sink:
    directory = Path(spec["dir"])
    try:
        name = safe_file_name(spec["file_name"])
        directory.mkdir(parents=True, exist_ok=True)
        final = inside(directory, name)
    except ValueError as e:
        raise TransferError(f"unusable file name: {e}") from None
    if final.parent != directory.resolve():
        raise TransferError("unusable file name: it must not name a directory")
    tid = spec["transfer_id"]
    for old in directory.glob(f"{TEMP_PREFIX}{tid}-*{TEMP_SUFFIX}"):  # left by an earlier attempt
        old.unlink(missing_ok=True)
    _sweep_stale(directory)
    if final.exists() and not spec["overwrite"] and not spec.get("retry"):
        raise TransferError(f"exists: {final.name} is already in the inbox")
    return _Sink(final, directory / temp_name(tid, spec["token"]), bool(spec["overwrite"]),
                 bool(spec.get("retry")))


def _sweep_stale(directory: Path) -> None:
    """Remove temp files nobody has written to for an hour (their writer's node or driver died)."""
    now = time.time()
    for old in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_TEMP_S:
                old.unlink()


class NodeAgent:
    """Reads sources and writes copies on its node (an async actor: create it with `agent_options`)."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceFile] = {}
        self.sinks: dict[str, _Sink] = {}
        # The worker's ~10^5 objects from start-up never die: out of the collector's reach, its full
        # passes (triggered by each chunk's task objects) stop walking them.
        gc.freeze()

    async def info(self) -> dict[str, Any]:
        return {"hostname": socket.gethostname(), "pid": os.getpid(), "fast": FAST,
                "ray_node_id": ray.get_runtime_context().get_node_id()}

    # --- source -----------------------------------------------------------------------------------
    async def open_source(self, key: str, spec: dict[str, Any], known_sha: str | None = None,
                          fast: bool = True) -> dict[str, Any]:
        """Open a transfer's source; with ``known_sha`` (the file's sha256, known from its upload) the
        source is not hashed again, and ``fast`` says every node of the transfer can take numpy chunks
        with xxh3 digests (see `SourceFile`)."""
        path, remove_after = await asyncio.to_thread(_resolve_source, spec)
        source = await asyncio.to_thread(SourceFile.open, path, remove_after, known_sha, fast)
        self.sources[key] = source
        return {"size": source.size, "path": str(path)}

    @ray.method(num_returns=2)
    async def read(self, key: str, index: int, length: int) -> tuple[Any, str]:
        source = self.sources[key]
        await source.turn(index)
        try:
            out = await asyncio.to_thread(source.read, length)
        except BaseException as e:
            await source.advance(str(e))
            raise
        await source.advance()
        return out

    async def close_source(self, key: str) -> dict[str, Any]:
        source = self.sources.pop(key, None)
        if source is None:
            return {}
        await asyncio.to_thread(source.close)
        return {"sha256": source.sha256(), "bytes": source.done}

    # --- sinks ------------------------------------------------------------------------------------
    async def open_sink(self, key: str, spec: dict[str, Any]) -> dict[str, Any]:
        sink = await asyncio.to_thread(_open_sink, spec)
        self.sinks[key] = sink
        return {"temp": str(sink.tmp), "final": str(sink.final)}

    async def write(self, key: str, index: int, data: Any, digest: str) -> int:
        sink = self.sinks[key]
        await sink.turn(index)
        try:
            done = await asyncio.to_thread(sink.write, data, digest)
        except BaseException as e:
            await sink.advance(str(e))
            raise
        await sink.advance()
        return done

    async def finish(self, key: str, sha256: str) -> dict[str, Any]:
        sink = self.sinks.pop(key)
        try:
            return await asyncio.to_thread(sink.finish, sha256)
        finally:
            await asyncio.to_thread(sink.abort)  # removes the temp file if it is still there

    async def abort_sink(self, key: str) -> None:
        """Drop a transfer's copy here, removing its temporary file."""
        sink = self.sinks.pop(key, None)
        if sink is not None:
            await sink.advance("cancelled")
            await asyncio.to_thread(sink.abort)

    async def remove_temp(self, path: str) -> bool:
        """Remove a temp file another (dead) node left on this host; only our own temp names."""
        name = os.path.basename(path)
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            return False
        try:
            await asyncio.to_thread(os.unlink, path)
        except FileNotFoundError:
            return False
        return True


def agent_options(ray_node_id: str) -> dict[str, Any]:
    """Hard-pinned to the node, no CPU reserved (it mostly waits on disk and network), never restarted:
    a dead node must show up as a failed destination, not as a copy quietly resumed elsewhere."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=ray_node_id, soft=False),
            "num_cpus": 0, "max_restarts": 0, "max_task_retries": 0, "max_concurrency": 1000}

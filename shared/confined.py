"""Opening files beneath a root so that the kernel, not only a check, keeps them there.

A check such as `castray.shared.safe_names.inside` resolves a path and compares it with its root; a
symlink swapped in between that check and the ``open`` still leads outside. Here every component is
opened from the descriptor of the one before it (``openat``), directories with ``O_DIRECTORY |
O_NOFOLLOW`` and the file with ``O_NOFOLLOW``: a symlink anywhere below the root, whenever it appears,
makes the open fail with `ConfinementError` instead of being followed. The root itself is configuration
(the inbox, the files root, the data directory) and is trusted.

Shipped to every node with the agent (`castray.transfer.shipping`): standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence

from castray.shared.errors import ConfinementError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def relative_parts(path: str) -> list[str]:
    """The components of ``path``, a path relative to some root; `ConfinementError` if it could leave it."""
    if "\x00" in path:
        raise ConfinementError("path must not contain NUL bytes")
    if path.startswith("/"):
        raise ConfinementError(f"path {path!r} is absolute; give it relative to its root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfinementError(f"path {path!r} must not contain '..'")
    if not parts:
        raise ConfinementError("path is empty")
    return parts


def open_root(root: str | os.PathLike[str], *, create: bool = False) -> int:
    """A descriptor of the directory ``root`` (made first if ``create``)."""
    if create:
        os.makedirs(root, exist_ok=True)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dirs(root_fd: int, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of ``root/parts...``, walked one component at a time without following a symlink
    (missing directories made if ``create``); the caller closes it."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            if part in ("", ".", "..") or "/" in part:
                raise ConfinementError(f"bad path component {part!r}")
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                nxt = _open_dir(fd, part, parts[:i + 1])
            except OSError as e:
                raise _refusal(fd, part, parts[:i + 1], e) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_dir(fd: int, part: str, shown: Sequence[str]) -> int:
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        raise _refusal(fd, part, shown, e) from None


def open_beneath(root: str | os.PathLike[str], path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """``open(root/path, flags)`` that cannot leave ``root``; `ConfinementError` if a component below
    the root is a symlink (or ``path`` has ``..`` or is absolute). The caller closes the descriptor."""
    parts = relative_parts(path)
    root_fd = open_root(root)
    try:
        dir_fd = open_dirs(root_fd, parts[:-1])
    finally:
        os.close(root_fd)
    try:
        return open_at(dir_fd, parts[-1], flags, mode, shown=parts)
    finally:
        os.close(dir_fd)


def open_at(dir_fd: int, name: str, flags: int, mode: int = 0o644, *, shown: Sequence[str] = ()) -> int:
    """``openat(dir_fd, name, flags | O_NOFOLLOW)``; a symlink at ``name`` is a `ConfinementError`, and so
    is anything but a regular file or a directory. It is opened non-blocking and checked before use: a FIFO
    put there would otherwise block the opening thread for ever."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise _refusal(dir_fd, name, shown or [name], e) from None
    kind = os.fstat(fd).st_mode
    if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        os.close(fd)
        raise ConfinementError(f"{'/'.join(shown or [name])!r} is not a regular file: refused")
    os.set_blocking(fd, True)
    return fd


def open_nofollow(path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> int:
    """Open a path CastRay chose itself (its directories trusted), never following a symlink at its last
    component."""
    dir_fd = open_root(os.path.dirname(os.path.abspath(path)))
    try:
        return open_at(dir_fd, os.path.basename(path), flags)
    finally:
        os.close(dir_fd)


def _refusal(fd: int, part: str, shown: Sequence[str], error: OSError) -> OSError | ConfinementError:
    """A symlink (ELOOP, or ENOTDIR for some kernels) becomes a `ConfinementError`; anything else stays."""
    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
        return error
    where = "/".join(shown)
    try:
        is_link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        is_link = error.errno == errno.ELOOP
    if is_link:
        return ConfinementError(f"{where!r} is a symbolic link: refused, paths stay inside their root")
    return ConfinementError(f"{where!r} is not a directory")

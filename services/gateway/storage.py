"""How much the gateway may store: a quota on its files and a floor of free space on their disk.

The quota (``storage_quota_bytes``) bounds the bytes of stored uploads plus generated files (the
generator's folder and the original's ``demo_files``, where ``create-demo`` writes) under the data
directory; the floor (``storage_min_free_bytes``) is free space the gateway always leaves on that disk.
Either refused is a 507 carrying the numbers (`QuotaExceeded`: quota, used, needed; `FreeSpaceLow`: free,
floor, needed).

Used bytes = the finished files on disk (scanned when an operation starts; temporary files, whose names
start with a dot, are left out) + what the operations of this gateway are writing now (`Budget.pending`).
A streamed upload grows its share chunk by chunk and is stopped, its partial file removed by the caller,
the moment it would cross either bound. Several gateway replicas sharing one directory see each other's
finished files only: the floor is the bound that holds for them all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from castray.gateway.errors import FreeSpaceLow, QuotaExceeded

UPLOADS = "uploads"
GENERATED = "generated"
DEMO = "demo_files"


def stored_bytes(data_dir: Path) -> int:
    """Bytes of the finished files in the uploads, generated and demo folders (blocking: use a thread)."""
    total = 0
    for top in (data_dir / UPLOADS, data_dir / GENERATED, data_dir / DEMO):
        total += _folder_bytes(top, depth=1 if top.name == UPLOADS else 0)
    return total


def _folder_bytes(folder: Path, depth: int) -> int:
    total = 0
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith(".") and e.name.endswith(".part"):
                    continue  # a write under way: counted by the writer (in_flight), not twice
                if depth and e.is_dir(follow_symlinks=False):
                    total += _folder_bytes(Path(e.path), depth - 1)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    except (FileNotFoundError, NotADirectoryError):
        return total
    return total


def free_bytes(data_dir: Path) -> int:
    """Free bytes for an unprivileged writer on the disk of ``data_dir`` (or its nearest existing parent)."""
    path = data_dir.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


class Budget:
    """The quota and floor of one gateway; ``quota`` or ``floor`` 0 turns that bound off."""

    def __init__(self, data_dir: Path, *, quota: int, floor: int) -> None:
        self.data_dir, self.quota, self.floor = data_dir, quota, floor
        self.pending: dict[str, int] = {}
        self._stored = 0

    async def refresh(self) -> None:
        """Scan the finished files again (at the start of each operation)."""
        self._stored = await asyncio.to_thread(stored_bytes, self.data_dir)

    def used(self) -> int:
        return self._stored + sum(self.pending.values())

    def check_quota(self, needed: int) -> None:
        """`QuotaExceeded` if ``needed`` more bytes would take the stored files past the quota."""
        if self.quota and self.used() + needed > self.quota:
            raise QuotaExceeded(quota=self.quota, used=self.used(), needed=needed)

    def check_floor(self, needed: int) -> None:
        """`FreeSpaceLow` if ``needed`` more bytes would leave less than the floor free (blocking)."""
        if self.floor:
            free = free_bytes(self.data_dir)
            if free - needed < self.floor:
                raise FreeSpaceLow(free=free, floor=self.floor, needed=needed)

    async def check(self, needed: int) -> None:
        """Both bounds for ``needed`` more bytes, taking nothing."""
        self.check_quota(needed)
        await asyncio.to_thread(self.check_floor, needed)

    @asynccontextmanager
    async def hold(self, needed: int = 0) -> AsyncIterator[Share]:
        """A share of the budget for one operation, ``needed`` bytes of it taken at once (checked)."""
        await self.refresh()
        share = Share(self, uuid.uuid4().hex)
        try:
            await share.grow(needed)
            yield share
        finally:
            self.pending.pop(share.key, None)


class Share:
    """One operation's bytes in a `Budget`."""

    def __init__(self, budget: Budget, key: str) -> None:
        self.budget, self.key = budget, key

    async def grow(self, n: int) -> None:
        """Take ``n`` more bytes, or raise without taking them."""
        budget = self.budget
        budget.check_quota(n)
        budget.pending[self.key] = budget.pending.get(self.key, 0) + n  # taken before the await: no race
        try:
            await asyncio.to_thread(budget.check_floor, n)
        except BaseException:
            budget.pending[self.key] -= n
            raise


BUDGET = web.AppKey("storage_budget", Budget)

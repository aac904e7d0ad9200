"""``castray send`` and ``castray transfers ID --watch``: upload (with a bar), queue, then follow each
destination live from ``/ws`` transfer events until the transfer ends, and say where every copy landed.

The events give bytes, rate and ETA; the record (``GET /api/transfers/{id}``) is the truth for the end,
read when the transfer's own end event comes, every few seconds in case an event was missed (a reconnect
does not replay transfer events), and after the stream resumes. A verified destination is one whose state
is ``completed`` with the transfer's sha256; anything else makes the command exit 1 naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from castray import output
from castray.client import AsyncClient, GatewayUnreachable, Resumed, SnapshotMessage, Unavailable
from castray.client.events import EventStream
from castray.shared.events import TransferEvent, TransferProgress
from castray.shared.transfers import FINAL_STATES, TransferRecord, TransferRequest

POLL_EVERY = 2.0
PLAIN_EVERY = 2.0  # seconds between a destination's progress lines when piped


@dataclass
class Sent:
    """What the command knows outside its event loop, for Ctrl-C: the transfer it queued, if any."""

    transfer_id: str | None = None


def _bars() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                    TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[state]}"),
                    console=output.console())


async def upload(api: AsyncClient, path: str, quiet: bool) -> str:
    """Upload ``path`` with a bar (a terminal) or a line per quarter (piped); its upload id."""
    if quiet:
        return (await api.upload(path)).upload_id
    if output.is_tty():
        with _bars() as bars:
            task = bars.add_task(f"upload {path}", total=None, state="uploading")
            record = await api.upload(path, progress=lambda sent, total: bars.update(
                task, completed=sent, total=total))
            bars.update(task, state="stored")
        return record.upload_id
    marks = {25, 50, 75}

    def plain(sent: int, total: int) -> None:
        percent = sent * 100 // max(total, 1)
        for mark in sorted(m for m in marks if percent >= m):
            marks.discard(mark)
            print(f"upload {path}: {mark}% ({output.size(sent)} of {output.size(total)})", flush=True)

    record = await api.upload(path, progress=plain)
    print(f"upload {path}: stored as {record.upload_id} ({output.size(record.file_size)}, sha256 "
          f"{record.sha256})", flush=True)
    return record.upload_id


@dataclass
class Board:
    """Each destination's line: a rich bar on a terminal, progress lines when piped, nothing when quiet."""

    quiet: bool
    bars: Progress | None = None
    tasks: dict[str, TaskID] = field(default_factory=dict)
    said: dict[str, tuple[str, float]] = field(default_factory=dict)

    def show(self, node_id: str, state: str, done: int, total: int, rate: float = 0.0,
             eta: float | None = None) -> None:
        if self.quiet:
            return
        if self.bars is not None:
            if node_id not in self.tasks:
                self.tasks[node_id] = self.bars.add_task(node_id, total=total or None, state=state)
            self.bars.update(self.tasks[node_id], completed=done, total=total or None, state=state)
            return
        last_state, last_time = self.said.get(node_id, ("", 0.0))
        now = asyncio.get_running_loop().time()
        if state == last_state and (state != "running" or now - last_time < PLAIN_EVERY):
            return
        self.said[node_id] = (state, now)
        figures = f" {done * 100 // max(total, 1)}% {output.size(done)}/{output.size(total)}" if total else ""
        speed = f" {output.rate(rate)}" if rate else ""
        left = f" eta {eta:.0f}s" if eta is not None and state == "running" else ""
        print(f"{node_id}: {state}{figures}{speed}{left}", flush=True)

    def record(self, rec: TransferRecord) -> None:
        for d in rec.destinations:
            self.show(d.node_id, d.state, d.bytes_done, rec.bytes_total)


async def follow(api: AsyncClient, stream: EventStream, transfer_id: str, board: Board) -> TransferRecord:
    """The transfer's final record, showing each destination on ``board`` until then."""
    ended = asyncio.Event()
    record = await api.transfer(transfer_id)

    async def refresh() -> None:
        nonlocal record
        record = await api.transfer(transfer_id)
        board.record(record)
        if record.state in FINAL_STATES:
            ended.set()

    async def listen() -> None:
        async for event in stream:
            if isinstance(event, Resumed | SnapshotMessage) and stream.connects > 1:
                await refresh()  # transfer events sent while it was away are not replayed
            if not isinstance(event, TransferEvent) or event.transfer_id != transfer_id:
                continue
            if isinstance(event, TransferProgress) and event.node_id:
                board.show(event.node_id, "running", event.bytes_done, event.bytes_total, event.rate,
                           event.eta)
            else:  # started, a destination's end, the transfer's end: the record says it all
                await refresh()

    async def poll() -> None:
        while not ended.is_set():
            with contextlib.suppress(GatewayUnreachable, Unavailable):  # a restart: the stream waits it out
                await refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), POLL_EVERY)

    await _until(ended, listen(), poll())
    return record


async def _until(ended: asyncio.Event, *work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until ``ended`` is set; a task that fails (the gateway gone for good) raises here
    rather than leaving the wait to hang."""
    waiter = asyncio.create_task(ended.wait())
    tasks = [asyncio.create_task(w) for w in work]
    try:
        pending = {waiter, *tasks}
        while not waiter.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and not task.cancelled() and (error := task.exception()) is not None:
                    raise error
    finally:
        for task in (waiter, *tasks):
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


def verdict(rec: TransferRecord) -> tuple[bool, list[str]]:
    """Whether every destination verified, and a line per destination: path and sha256, or the reason."""
    lines, ok = [], rec.state == "completed" and bool(rec.destinations)
    for d in rec.destinations:
        good = d.state == "completed" and d.sha256 is not None and d.sha256 == rec.sha256
        ok = ok and good
        if good:
            lines.append(f"{d.node_id}: verified {d.path} sha256 {d.sha256}")
        else:
            lines.append(f"{d.node_id}: {d.state}: {d.error or rec.error or 'not verified'}")
    if rec.state != "completed" and rec.error:
        lines.append(f"transfer {rec.id} {rec.state}: {rec.error}")
    return ok, lines


async def run_transfer(api: AsyncClient, sent: Sent, *, quiet: bool, request: TransferRequest | None = None,
                       existing: str | None = None) -> TransferRecord:
    """Queue ``request`` (or follow the transfer ``existing``), its events already subscribed, to the end."""
    board = Board(quiet=quiet)
    async with api.events(topics=("transfers",)) as stream:
        await anext(stream)  # the snapshot: subscribed, nothing published from here on is missed
        if request is not None:
            queued = await api.create_transfer(request)
            sent.transfer_id = queued.id
            if not quiet:
                print(f"transfer {queued.id} queued to {len(queued.targets)} node(s)", flush=True)
        else:
            sent.transfer_id = existing
        assert sent.transfer_id is not None
        if not quiet and output.is_tty():
            with _bars() as bars:
                board.bars = bars
                return await follow(api, stream, sent.transfer_id, board)
        return await follow(api, stream, sent.transfer_id, board)


def report(rec: TransferRecord, *, as_json: bool) -> int:
    ok, lines = verdict(rec)
    if as_json:
        output.print_json(rec.model_dump(mode="json"))
    else:
        for line in lines:
            print(line)
    if not ok:
        failed = [d for d in rec.destinations if d.state != "completed" or d.sha256 != rec.sha256]
        names = ", ".join(f"{d.node_id} ({d.error or d.state})" for d in failed) or rec.error or rec.state
        print(f"castray: transfer {rec.id} not verified on every destination: {names}", file=sys.stderr)
    return 0 if ok else 1

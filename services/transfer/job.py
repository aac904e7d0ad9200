"""One transfer, run by one replica: plan it, hand it to its cluster's driver, keep the record and the
events up to date from the driver's reports, and settle the outcome.

Destinations in other clusters than the source's (Ray moves data only inside one cluster) are relayed
through this machine, where every cluster's driver has a node: the source's cluster also writes a verified
copy into ``<data dir>/relay/<transfer>-<token>/`` on its node here (one more destination, `RELAY`), and
then each other cluster's driver sends that copy from its own node here to its destinations, checked
against the same sha256. The source is still read once; the relay copy is removed at the end.

Outcome: every destination completed -> ``completed``; every one failed -> ``failed`` (with a whole
transfer ``transfer-failed``); some of each -> ``completed`` with ``error`` naming the failed ones (each
failed destination has its own ``transfer-failed`` and ``state``/``error`` in the record).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

from castray.shared.bus import Bus
from castray.shared.events import (
    Payload,
    TransferCancelled,
    TransferCompleted,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from castray.shared.log import bind, log_context
from castray.shared.sizes import format_size
from castray.shared.transfers import Destination, FinalState, TransferRecord
from castray.transfer.drivers import DriverProcess, Drivers
from castray.transfer.errors import DriverError, PlanError, WaitCancelled
from castray.transfer.planning import SETTLED, Prepared, Relay, Waiting, prepare
from castray.transfer.protocol import (
    DestinationEnded,
    DriverEvent,
    Ended,
    LocalFile,
    Plan,
    PlanDestination,
    Progress,
    Started,
)
from castray.transfer.readiness import plan_when_ready
from castray.transfer.records import RecordStore
from castray.transfer.settings import TransferSettings

log = logging.getLogger(__name__)
RELAY = "castray-relay"  # the node id of the relay copy in the source cluster's plan (never a view node id)
STALE_RELAY_S = 3600.0
RELAY_HEADROOM = 16 * 1024 * 1024  # left free beside a relay copy (logs, other files)


class TransferJob:
    def __init__(self, *, record: TransferRecord, worker: str, settings: TransferSettings, store: RecordStore,
                 bus: Bus, drivers: Drivers) -> None:
        self.rec, self.worker, self.settings = record, worker, settings
        self.store, self.bus, self.drivers = store, bus, drivers
        self.dests: dict[str, Destination] = {d.node_id: d for d in record.destinations}
        self.used: list[DriverProcess] = []  # every driver given a leg (a finished leg ignores a cancel)
        self._told: set[DriverProcess] = set()  # the drivers already told to cancel
        self.ended: Ended | None = None  # how the plan of the source's cluster ended
        self.relayed: DestinationEnded | None = None  # the relay copy's outcome
        self.leg_cancelled = False  # another cluster's leg was cancelled (the source's may have finished)
        self._rr = 0
        self._stream_start = 0.0

    async def _publish(self, payload: Payload) -> None:
        await self.bus.publish(self.bus.names.transfer_events, payload)

    async def run(self) -> None:
        rec = self.rec
        retry = rec.worker is not None or rec.state == "running"  # an earlier attempt may have placed copies
        if rec.cancel_requested:
            await self._settle(self._end_here("cancelled"))
            return
        rec.state, rec.worker, rec.error = "running", self.worker, None
        rec.started_at = rec.started_at or time.time()
        for d in rec.destinations:  # a retry: what an earlier attempt settled stays settled (`prepare`)
            if d.state not in SETTLED:
                d.state, d.bytes_done, d.path, d.sha256, d.error = "pending", 0, None, None, None
        token = uuid.uuid4().hex[:8]
        try:
            prep = await self._plan(retry, token)
        except WaitCancelled:
            rec.waiting_for = None
            await self._settle(self._end_here("cancelled"))
            return
        except PlanError as e:
            rec.waiting_for = None
            await self._fail_rest(str(e))
            await self._settle(self._end_here("failed", str(e)))
            return
        rec.waiting_for = None
        rec.cluster_id, rec.source_node_id = prep.cluster_id, prep.source_node_id
        bind(cluster_id=prep.cluster_id)  # the source's cluster, for the rest of this task (`_run_leased`)
        if prep.source_node_id is None:  # read beside us: the chunks enter Ray at the driver's node
            try:
                rec.source_node_id = await self._driver_node(prep)
            except DriverError as e:
                await self._fail_rest(str(e))
                await self._settle(self._end_here("failed", str(e)))
                return
        rec.bytes_total = prep.bytes_expected if prep.bytes_expected is not None else rec.bytes_total
        await self.store.save(rec)
        if rec.cancel_requested:  # cancelled while we were planning
            await self._settle(self._end_here("cancelled"))
            return
        await self._publish(TransferStarted(transfer_id=rec.id, mode=rec.mode, bytes_total=rec.bytes_total,
                                            targets=[d.node_id for d in rec.destinations],
                                            file_name=rec.file_name))
        for node_id, why in prep.failed.items():
            await self._dest_failed(node_id, why)
        if not prep.relays:
            if prep.plan.dests:
                self.ended = await self._drive(prep.address, prep.plan)
            await self._settle(self.ended)
            return
        relay_dir = self.settings.data_dir.absolute() / "relay" / f"{_relay_key(rec.id)}-{token}"
        try:
            await self._run_relayed(prep, relay_dir)
        finally:
            await asyncio.to_thread(_remove_relays, relay_dir.parent, rec.id)
        await self._settle(self.ended)

    async def _plan(self, retry: bool, token: str) -> Prepared:
        """The plan, once the node view has what it needs (waiting up to ``ready_timeout`` for it)."""
        def attempt(waiting: Waiting) -> Awaitable[Prepared]:
            return prepare(self.store.redis, self.bus.names, self.settings, self.rec, retry=retry,
                           token=token, waiting=waiting)

        return await plan_when_ready(attempt, redis=self.store.redis, names=self.bus.names,
                                     timeout=self.settings.ready_timeout, keep_waiting=self._keep_waiting)

    async def _keep_waiting(self, what: str) -> bool:
        """Say in the record what the transfer waits for; False once a cancel has been requested."""
        if self.rec.waiting_for != what:
            self.rec.waiting_for = what
            log.info("transfer %s waits for %s", self.rec.id, what)
            await self.store.save(self.rec)  # takes a cancel request stored meanwhile
        else:
            stored = await self.store.load(self.rec.id)
            self.rec.cancel_requested = self.rec.cancel_requested or bool(stored and stored.cancel_requested)
        return not self.rec.cancel_requested

    async def _driver_node(self, prep: Prepared) -> str | None:
        """The view id of the node the source cluster's driver is attached to (`DriverError` if it
        cannot start)."""
        driver = await self.drivers.get(prep.address)
        return prep.view_ids.get(driver.ray_node_id or "")

    async def _run_relayed(self, prep: Prepared, relay_dir: Path) -> None:
        """The source's cluster copies to its destinations and to the relay here; then every other
        cluster, at once, from the relay to its own."""
        await asyncio.to_thread(_remove_relays, relay_dir.parent, self.rec.id, stale_too=True)
        short = await asyncio.to_thread(_short_of_room, relay_dir.parent, self.rec.bytes_total or 0)
        if short:  # fail those destinations now, not after moving the whole file once
            for group in prep.relays:
                for d in group.dests:
                    await self._dest_failed(d.node_id, f"no room for the relay copy here: {short}")
            if prep.plan.dests:
                self.ended = await self._drive(prep.address, prep.plan)
            return
        relay = PlanDestination(node_id=RELAY, dir=str(relay_dir))  # on the driver's own node
        self.ended = await self._drive(prep.address,
                                      prep.plan.model_copy(update={"dests": [*prep.plan.dests, relay]}))
        copy = self.relayed
        if self.rec.cancel_requested or self.ended.state == "cancelled":
            return  # `_settle` marks the other clusters' destinations cancelled
        if copy is None or copy.state != "completed" or not copy.path or not copy.sha256:
            why = f"relay through this machine failed: {(copy and copy.error) or self.ended.error}"
            for group in prep.relays:
                for d in group.dests:
                    await self._dest_failed(d.node_id, why)
            return
        await asyncio.gather(*(self._relay_leg(prep, group, copy.path, copy.sha256) for group in prep.relays))

    async def _relay_leg(self, prep: Prepared, group: Relay, path: str, sha256: str) -> None:
        """One other cluster's destinations, from the relay copy, read here by that cluster's driver."""
        with log_context(cluster_id=group.cluster_id):  # the other cluster's lines name it
            copy = Path(path)  # <relay folder>/<this transfer's folder>/<name>, as our own sink reported it
            read = LocalFile(root=str(copy.parent.parent), path=f"{copy.parent.name}/{copy.name}")
            plan = prep.plan.model_copy(update={"input": read, "source_ray_node": "", "dests": group.dests,
                                                "expected_sha": sha256})
            ended = await self._drive(group.address, plan)
            if ended.state == "cancelled":
                self.leg_cancelled = True  # `_settle` marks its destinations cancelled
            elif ended.state != "completed":
                for d in group.dests:
                    await self._dest_failed(d.node_id, ended.error or "relay failed")

    async def _drive(self, address: str, plan: Plan) -> Ended:
        """Run one plan on the driver of ``address``; how it ended."""
        try:
            driver = await self.drivers.get(address)
        except DriverError as e:
            for d in plan.dests:
                await self._dest_failed(d.node_id, str(e))
            return self._end_here("failed", str(e))
        members = {d.node_id for d in plan.dests}
        ended = self._end_here("failed", "transfer driver ended without a report")
        self.used.append(driver)
        async for event in driver.run(plan):  # a cancel reaches the driver with the first report's save
            if isinstance(event, Ended):
                ended = event
            else:
                await self._on(event, members)
        return ended

    def _end_here(self, state: FinalState, error: str | None = None) -> Ended:
        """An end decided here, not reported by a driver (cancelled before it ran, could not run)."""
        return Ended(id=self.rec.id, state=state, error=error)

    async def _on(self, event: DriverEvent, members: set[str]) -> None:
        if isinstance(event, Started):
            self.rec.bytes_total = event.bytes_total
            self._stream_start = time.monotonic()
            for d in self.rec.destinations:
                if d.state == "pending" and d.node_id in members:
                    d.state = "running"
            await self._save()
        elif isinstance(event, Progress):
            for node_id, done in event.dests.items():
                if node_id in self.dests and self.dests[node_id].state == "running":
                    self.dests[node_id].bytes_done = done
            await self._save()
            await self._progress_event()
        elif isinstance(event, DestinationEnded) and event.node_id == RELAY:
            self.relayed = event
        elif isinstance(event, DestinationEnded):
            await self._on_dest(event)

    async def _on_dest(self, event: DestinationEnded) -> None:
        node_id = event.node_id
        if event.state == "completed":
            d = self.dests[node_id]
            d.state, d.path, d.sha256, d.error = "completed", event.path, event.sha256, None
            d.bytes_done = event.bytes_done or d.bytes_done
            await self._save()
            with log_context(node_id=node_id):
                log.info("transfer %s: %s verified at %s", self.rec.id, node_id, d.path)
            await self._publish(TransferCompleted(transfer_id=self.rec.id, node_id=node_id, path=d.path,
                                                  sha256=d.sha256, bytes_total=d.bytes_done))
        elif event.state == "failed":
            await self._dest_failed(node_id, event.error or "failed")
        else:
            self.dests[node_id].state = "cancelled"

    async def _dest_failed(self, node_id: str, why: str) -> None:
        d = self.dests.get(node_id)
        if d is None or d.state in ("completed", "failed"):
            return
        d.state, d.error = "failed", why
        with log_context(node_id=node_id):
            log.warning("transfer %s: %s failed: %s", self.rec.id, node_id, why)
        await self._save()
        await self._publish(TransferFailed(transfer_id=self.rec.id, node_id=node_id, error=why))

    async def _fail_rest(self, why: str) -> None:
        for d in self.rec.destinations:
            if d.state not in ("completed", "failed"):
                await self._dest_failed(d.node_id, why)

    async def _save(self) -> None:
        await self.store.save(self.rec)
        if self.rec.cancel_requested:
            for driver in self.used:
                if driver not in self._told:
                    self._told.add(driver)
                    await driver.cancel(self.rec.id)

    async def _progress_event(self) -> None:
        """One event per tick, for the running destinations in turn: at most ~4 per second per transfer."""
        running = [d for d in self.rec.destinations if d.state == "running"]
        if not running:
            return
        d = running[self._rr % len(running)]
        self._rr += 1
        elapsed = max(1e-3, time.monotonic() - self._stream_start)
        rate = d.bytes_done / elapsed
        eta = (self.rec.bytes_total - d.bytes_done) / rate if rate > 0 else None
        await self._publish(TransferProgress(transfer_id=self.rec.id, node_id=d.node_id,
                                             bytes_done=d.bytes_done, bytes_total=self.rec.bytes_total,
                                             rate=rate, eta=eta))

    async def _settle(self, ended: Ended | None) -> None:
        """The record's outcome, from how the plans ended (``ended``: the source's cluster's; None if it
        had no destination to run) and each destination's state."""
        await self._decide(ended)
        rec = self.rec
        log.info("transfer %s %s%s", rec.id, rec.state, f": {rec.error}" if rec.error else "")

    async def _decide(self, ended: Ended | None) -> None:
        rec = self.rec
        rec.finished_at = time.time()
        state, error = (ended.state, ended.error) if ended else (None, None)
        if ended and ended.sha256:
            rec.sha256 = ended.sha256
        cancelled = state == "cancelled" or self.leg_cancelled
        if cancelled or (rec.cancel_requested and state != "completed"):
            for d in rec.destinations:
                if d.state not in ("completed", "failed"):
                    d.state = "cancelled"
            rec.state, rec.error = "cancelled", "cancelled on request"
            await self.store.save(rec)
            await self._publish(TransferCancelled(transfer_id=rec.id))
            return
        await self._fail_rest(error or "transfer ended before this destination completed")
        failed = [d for d in rec.destinations if d.state == "failed"]
        if failed and len(failed) == len(rec.destinations):
            rec.state = "failed"
            rec.error = error or failed[0].error or "every destination failed"
            await self.store.save(rec)
            await self._publish(TransferFailed(transfer_id=rec.id, node_id=None, error=rec.error))
            return
        rec.state = "completed"
        rec.error = ("; ".join(f"{d.node_id}: {d.error}" for d in failed) if failed else None)
        await self.store.save(rec)
        await self._publish(TransferCompleted(transfer_id=rec.id, node_id=None, sha256=rec.sha256,
                                              bytes_total=rec.bytes_total))


def _relay_key(transfer_id: str) -> str:
    """The transfer id as a directory name (the gateway's ids are hex; anything else is hashed)."""
    if re.fullmatch(r"[0-9A-Za-z_]{1,64}", transfer_id):
        return transfer_id
    return hashlib.sha256(transfer_id.encode()).hexdigest()[:32]


def _remove_relays(directory: Path, transfer_id: str, stale_too: bool = False) -> None:
    """Remove the relay copies of ``transfer_id`` (this attempt's, or an earlier one's on this machine);
    with ``stale_too`` also any other transfer's that nothing has written to for an hour (its replica
    died, and the transfer was finished elsewhere; writers touch their temp file every chunk)."""
    if not directory.is_dir():
        return
    mine, now = f"{_relay_key(transfer_id)}-", time.time()
    for old in directory.iterdir():
        if old.name.startswith(mine) or (stale_too and now - _newest_mtime(old) > STALE_RELAY_S):
            shutil.rmtree(old, ignore_errors=True)


def _short_of_room(directory: Path, size: int) -> str | None:
    """Why a relay copy of ``size`` bytes cannot fit under ``directory`` now, or None if it can (or its
    size is not known yet). Best effort: other transfers may take the room meanwhile."""
    if size <= 0:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free >= size + RELAY_HEADROOM:
        return None
    return f"{format_size(size)} needed, {format_size(free)} free on {directory}"


def _newest_mtime(path: Path) -> float:
    try:
        return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")])
    except OSError:
        return time.time()  # changing under us: someone is using it

"""One transfer, run by one replica: plan it, hand it to its cluster's driver, keep the record and the
events up to date from the driver's reports, and settle the outcome.

Outcome: every destination completed -> ``completed``; every one failed -> ``failed`` (with a whole
transfer ``transfer-failed``); some of each -> ``completed`` with ``error`` naming the failed ones (each
failed destination has its own ``transfer-failed`` and ``state``/``error`` in the record).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from castray.shared.bus import Bus
from castray.shared.events import (
    Payload,
    TransferCancelled,
    TransferCompleted,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from castray.shared.transfers import Destination, TransferRecord
from castray.transfer.drivers import DriverError, DriverProcess, Drivers
from castray.transfer.planning import PlanError, prepare
from castray.transfer.records import RecordStore
from castray.transfer.settings import TransferSettings

log = logging.getLogger(__name__)


class TransferJob:
    def __init__(self, *, record: TransferRecord, worker: str, settings: TransferSettings, store: RecordStore,
                 bus: Bus, drivers: Drivers) -> None:
        self.rec, self.worker, self.settings = record, worker, settings
        self.store, self.bus, self.drivers = store, bus, drivers
        self.dests: dict[str, Destination] = {d.node_id: d for d in record.destinations}
        self.driver: DriverProcess | None = None
        self.done: dict[str, Any] = {}
        self._rr = 0
        self._stream_start = 0.0
        self._cancel_sent = False

    async def _publish(self, payload: Payload) -> None:
        await self.bus.publish(self.bus.names.transfer_events, payload)

    async def run(self) -> None:
        rec = self.rec
        retry = rec.worker is not None or rec.state == "running"  # an earlier attempt may have placed copies
        if rec.cancel_requested:
            await self._settle({"state": "cancelled"})
            return
        rec.state, rec.worker, rec.error = "running", self.worker, None
        rec.started_at = rec.started_at or time.time()
        for d in rec.destinations:
            if d.state != "completed":
                d.state, d.bytes_done, d.path, d.sha256, d.error = "pending", 0, None, None, None
        try:
            prep = await prepare(self.store.redis, self.bus.names, self.settings, rec, retry=retry,
                                 token=uuid.uuid4().hex[:8])
        except PlanError as e:
            await self._fail_rest(str(e))
            await self._settle({"state": "failed", "error": str(e)})
            return
        rec.cluster_id, rec.source_node_id = prep.cluster_id, prep.source_node_id
        rec.bytes_total = prep.bytes_expected if prep.bytes_expected is not None else rec.bytes_total
        await self.store.save(rec)
        if rec.cancel_requested:  # cancelled while we were planning
            await self._settle({"state": "cancelled"})
            return
        await self._publish(TransferStarted(transfer_id=rec.id, mode=rec.mode, bytes_total=rec.bytes_total,
                                            targets=[d.node_id for d in rec.destinations],
                                            file_name=rec.file_name))
        for node_id, why in prep.failed.items():
            await self._dest_failed(node_id, why)
        if prep.plan["dests"]:
            await self._drive(prep.address, prep.plan)
        await self._settle(self.done)

    async def _drive(self, address: str, plan: dict[str, Any]) -> None:
        try:
            self.driver = await self.drivers.get(address)
        except DriverError as e:
            await self._fail_rest(str(e))
            self.done = {"state": "failed", "error": str(e)}
            return
        async for msg in self.driver.run(plan):
            await self._on(msg)

    async def _on(self, msg: dict[str, Any]) -> None:
        ev = msg.get("ev")
        if ev == "started":
            self.rec.bytes_total = int(msg["bytes_total"])
            self._stream_start = time.monotonic()
            for d in self.rec.destinations:
                if d.state == "pending":
                    d.state = "running"
            await self._save()
        elif ev == "progress":
            for node_id, done in dict(msg.get("dests") or {}).items():
                if node_id in self.dests and self.dests[node_id].state == "running":
                    self.dests[node_id].bytes_done = int(done)
            await self._save()
            await self._progress_event()
        elif ev == "dest":
            await self._on_dest(msg)
        elif ev == "done":
            self.done = msg

    async def _on_dest(self, msg: dict[str, Any]) -> None:
        node_id, state = str(msg["node_id"]), msg.get("state")
        if state == "completed":
            d = self.dests[node_id]
            d.state, d.path, d.sha256, d.error = "completed", msg.get("path"), msg.get("sha256"), None
            d.bytes_done = int(msg.get("bytes") or d.bytes_done)
            await self._save()
            await self._publish(TransferCompleted(transfer_id=self.rec.id, node_id=node_id, path=d.path,
                                                  sha256=d.sha256, bytes_total=d.bytes_done))
        elif state == "failed":
            await self._dest_failed(node_id, str(msg.get("error") or "failed"))
        elif state == "cancelled":
            self.dests[node_id].state = "cancelled"

    async def _dest_failed(self, node_id: str, why: str) -> None:
        d = self.dests.get(node_id)
        if d is None or d.state in ("completed", "failed"):
            return
        d.state, d.error = "failed", why
        await self._save()
        await self._publish(TransferFailed(transfer_id=self.rec.id, node_id=node_id, error=why))

    async def _fail_rest(self, why: str) -> None:
        for d in self.rec.destinations:
            if d.state not in ("completed", "failed"):
                await self._dest_failed(d.node_id, why)

    async def _save(self) -> None:
        await self.store.save(self.rec)
        if self.rec.cancel_requested and self.driver is not None and not self._cancel_sent:
            self._cancel_sent = True
            await self.driver.cancel(self.rec.id)

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

    async def _settle(self, done: dict[str, Any]) -> None:
        rec = self.rec
        rec.finished_at = time.time()
        if done.get("sha256"):
            rec.sha256 = done["sha256"]
        if done.get("state") == "cancelled" or (rec.cancel_requested and done.get("state") != "finished"):
            for d in rec.destinations:
                if d.state not in ("completed", "failed"):
                    d.state = "cancelled"
            rec.state, rec.error = "cancelled", "cancelled on request"
            await self.store.save(rec)
            await self._publish(TransferCancelled(transfer_id=rec.id))
            return
        await self._fail_rest(str(done.get("error") or "transfer ended before this destination completed"))
        failed = [d for d in rec.destinations if d.state == "failed"]
        if failed and len(failed) == len(rec.destinations):
            rec.state = "failed"
            rec.error = str(done.get("error") or failed[0].error or "every destination failed")
            await self.store.save(rec)
            await self._publish(TransferFailed(transfer_id=rec.id, node_id=None, error=rec.error))
            return
        rec.state = "completed"
        rec.error = ("; ".join(f"{d.node_id}: {d.error}" for d in failed) if failed else None)
        await self.store.save(rec)
        await self._publish(TransferCompleted(transfer_id=rec.id, node_id=None, sha256=rec.sha256,
                                              bytes_total=rec.bytes_total))

"""The transfer worker: takes requests from the stream's consumer group and runs them.

Replicas share the stream through the group ``TRANSFER_GROUP``. A replica running a transfer holds its
lease and re-claims its stream entry every heartbeat, so the entry never looks idle while it lives. When
a replica dies both stop: after ``claim_idle_ms`` another replica claims the entry (XAUTOCLAIM), takes the
lease and runs the transfer again for the destinations not yet settled (those an earlier attempt
completed or failed keep their outcome: `castray.transfer.planning.SETTLED`; a copy placed but not yet
recorded is accepted if it matches). A record already completed, failed or cancelled is just
acknowledged, so no transfer is ever done twice.

A request whose handling raises an unexpected error stays pending and is retried when claimed again, up
to ``max_deliveries`` attempts in all (``TransferRecord.attempts``, counted when an attempt takes the
lease, so a replica that died mid-run counts too); then it is given up (`castray.transfer.dead_letter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from castray.shared import bus as busmod
from castray.shared.address_policy import AddressPolicy
from castray.shared.bus import REDIS_ERRORS, Bus
from castray.shared.heartbeat import Heartbeat, Holds
from castray.shared.lease import Lease
from castray.shared.log import bind
from castray.shared.names import TRANSFER_GROUP
from castray.shared.transfers import FINAL_STATES, QueuedTransfer, TransferRecord
from castray.transfer import dead_letter
from castray.transfer.drivers import Drivers
from castray.transfer.errors import LeaseLost, UnreadableRecord
from castray.transfer.job import TransferJob
from castray.transfer.records import RecordStore
from castray.transfer.settings import TransferSettings

log = logging.getLogger(__name__)


class TransferWorker:
    """Runs transfer requests; ``run()`` until ``close()``."""

    name = "transfer"

    def __init__(self, *, settings: TransferSettings, redis: aioredis.Redis | None = None,
                 instance: str | None = None) -> None:
        self.settings = settings
        self.names = settings.names
        self.instance = instance or busmod.instance_name("transfer")
        self._own_redis = redis is None
        self.redis = redis or busmod.connect(settings.redis_url)
        self.bus = Bus(self.redis, self.names, source=self.instance)
        self.store = RecordStore(self.redis, self.names)
        self.drivers = Drivers(policy=AddressPolicy.from_settings(settings),
                               start_timeout=settings.driver_start_timeout, log_level=settings.log_level,
                               log_json=settings.log_json, instance=self.instance)
        self.active: dict[str, asyncio.Task[None]] = {}
        self.heartbeat = Heartbeat(self.redis, self.names, service="transfer", instance=self.instance,
                                   interval=settings.service_beat_s,
                                   holds=lambda: Holds(transfers_running=len(self.active)))
        self._closing = asyncio.Event()
        self._closed = False

    @property
    def stream(self) -> str:
        return str(self.names.transfer_requests)

    async def run(self) -> None:
        backoff = busmod.Backoff(0.1, 5.0)
        next_claim = 0.0
        log.info("transfer worker %s serving %s", self.instance, self.stream)
        self.heartbeat.start()
        while not self._closing.is_set():
            try:
                await self.bus.ensure_group(self.stream, TRANSFER_GROUP)
                next_claim = await self._poll(next_claim)
                backoff.reset()
            except REDIS_ERRORS as e:
                log.warning("redis unavailable (%s); retrying", e)
                await backoff.wait()

    async def _poll(self, next_claim: float) -> float:
        free = self.settings.max_transfers - len(self.active)
        if free <= 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.2)
            return next_claim
        entries: list[tuple[str, dict[str, Any]]] = []
        claimed = False
        if time.monotonic() >= next_claim:
            entries = await self.bus.claim_stale_work(self.stream, TRANSFER_GROUP, self.instance,
                                                      idle_ms=self.settings.claim_idle_ms, count=free)
            next_claim = time.monotonic() + self.settings.heartbeat_period()
            claimed = bool(entries)
        if not entries:
            entries = await self.bus.read_work(self.stream, TRANSFER_GROUP, self.instance, count=free,
                                               block_ms=500)
        for entry_id, data in entries:
            if entry_id in self.active:
                continue
            try:
                queued = QueuedTransfer.model_validate(data)
            except ValidationError:
                log.warning("dropping a request that names no transfer: %r", str(data)[:200])
                await self.bus.ack(self.stream, TRANSFER_GROUP, entry_id)
                continue
            count = await dead_letter.deliveries(self.redis, self.stream, entry_id) if claimed else 1
            task = asyncio.create_task(self._handle(entry_id, queued, count), name=f"transfer-{entry_id}")
            self.active[entry_id] = task
            task.add_done_callback(functools.partial(self._forget, entry_id))
        return next_claim

    def _forget(self, entry_id: str, _task: asyncio.Task[None]) -> None:
        self.active.pop(entry_id, None)

    async def _handle(self, entry_id: str, queued: QueuedTransfer, count: int = 1) -> None:
        """Run one request. ``count``: Redis's deliveries of the entry, used as the attempt count until
        the record's own (which counts only the attempts that took the lease) is known."""
        bind(transfer_id=queued.id)  # a task of its own (`_poll`): every line of this transfer names it
        try:
            record = await self._record(queued)
            if record is None or record.state in FINAL_STATES:
                await self.bus.ack(self.stream, TRANSFER_GROUP, entry_id)
                return
            lease = self.store.lease(record.id, self.instance, self.settings.claim_idle_ms)
            if not await lease.acquire():
                return  # a live replica runs it; it re-claims the entry with its heartbeat
            try:
                record.attempts = count = record.attempts + 1
                if count > self.settings.max_deliveries:
                    await self._give_up(entry_id, queued, count - 1, dead_letter.died_reason(count - 1))
                    return
                await self.store.save(record)
                await self._run_leased(entry_id, record, lease)
            except asyncio.CancelledError:
                if self._closing.is_set():  # stopped by a shutdown, not failed: the attempt does not count
                    await self._uncount(record.id)
                raise
            except REDIS_ERRORS:  # Redis went away, not the request: nor does this one (if it can)
                await self._uncount(record.id)
                raise
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await lease.release()
        except LeaseLost:
            log.warning("transfer entry %s: lease lost to another replica; stopped here", entry_id)
        except UnreadableRecord as e:  # the same on every delivery: given up at once
            log.error("transfer entry %s: %s", entry_id, e)
            with contextlib.suppress(*REDIS_ERRORS):
                await self._give_up(entry_id, queued, count, str(e))
        except REDIS_ERRORS as e:
            log.warning("transfer entry %s left pending (redis: %s)", entry_id, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not kill the worker; the entry stays pending for a retry
            log.exception("transfer entry %s failed unexpectedly (attempt %d of at most %d)", entry_id,
                          count, self.settings.max_deliveries)
            if count >= self.settings.max_deliveries:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._give_up(entry_id, queued, count, dead_letter.crash_reason(e, count))

    async def _uncount(self, transfer_id: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS, UnreadableRecord):
            stored = await self.store.load(transfer_id)
            if stored is not None and stored.state not in FINAL_STATES and stored.attempts > 0:
                stored.attempts -= 1
                await self.store.save(stored)

    async def _give_up(self, entry_id: str, queued: QueuedTransfer, count: int, reason: str) -> None:
        await dead_letter.give_up(bus=self.bus, store=self.store, stream=self.stream, entry_id=entry_id,
                                  queued=queued, count=count, reason=reason)

    async def _record(self, queued: QueuedTransfer) -> TransferRecord | None:
        """The stored record the request names (None: drop the request, there is nothing to run)."""
        record = await self.store.load(queued.id)
        if record is None:
            log.warning("dropping the request of transfer %s: it has no record (deleted)", queued.id)
        return record

    async def _run_leased(self, entry_id: str, record: TransferRecord, lease: Lease) -> None:
        job = TransferJob(record=record, worker=self.instance, settings=self.settings, store=self.store,
                          bus=self.bus, drivers=self.drivers)
        runner = asyncio.create_task(job.run())
        beat = asyncio.create_task(self._heartbeat(entry_id, lease, runner))
        try:
            await runner
        except asyncio.CancelledError:
            if beat.done() and not beat.cancelled() and beat.result() is False:
                for driver in job.used:  # their legs of this transfer are another replica's now
                    await driver.cancel(record.id)
                raise LeaseLost() from None
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        await self.bus.ack(self.stream, TRANSFER_GROUP, entry_id)

    async def _heartbeat(self, entry_id: str, lease: Lease, runner: asyncio.Task[None]) -> bool:
        """Renew the lease and keep the entry ours; stop ``runner`` if the lease was lost."""
        period = self.settings.heartbeat_period()
        while True:
            await asyncio.sleep(period)
            try:
                if not await lease.renew():
                    runner.cancel()
                    return False
                await self.redis.xclaim(self.stream, TRANSFER_GROUP, self.instance, min_idle_time=0,
                                        message_ids=[entry_id], justid=True)
            except REDIS_ERRORS as e:
                log.warning("heartbeat of %s failed: %s", lease.key, e)

    async def close(self) -> None:
        """Stop taking work; running transfers stop and are left for another replica to take over."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        await self.heartbeat.close()
        tasks = list(self.active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.drivers.close()
        if self._own_redis:
            await self.redis.aclose()

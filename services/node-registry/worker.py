"""The node-registry worker: discovery's events in, the merged view (and view-changed events) out.

Three things keep the view right while pub/sub drops messages and processes and Redis restart:
every event is applied by one atomic script that skips duplicates and refuses gaps (when events queue
up, their scripts go to Redis together in one round trip, still one atomic call each); a refused event,
a ``source-reset``, a (re)subscription and our own start each lead to a resync from discovery's state;
and a periodic check resyncs a view that stays behind discovery's state for longer than one interval.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from castray.node_registry.settings import RegistrySettings
from castray.node_registry.view import MergedView, ResyncResult
from castray.shared import bus as busmod
from castray.shared import codec
from castray.shared.bus import REDIS_ERRORS
from castray.shared.errors import EventDecodeError
from castray.shared.events import Event, SourceResetEvent, ids_of
from castray.shared.heartbeat import Heartbeat, Holds
from castray.shared.lifecycle import stop_tasks
from castray.shared.log import log_context

log = logging.getLogger(__name__)
MAX_BATCH = 256  # events applied in one round trip when the registry has fallen behind
INBOX_SIZE = 100_000


class RegistryWorker:
    """Runs the registry until `close`. Several may run at once against one Redis and namespace."""

    name = "node-registry"

    def __init__(self, *, settings: RegistrySettings, redis: aioredis.Redis | None = None,
                 instance: str | None = None) -> None:
        self.settings = settings
        self.names = settings.names
        self._own_redis = redis is None
        self.redis = redis if redis is not None else busmod.connect(settings.redis_url)
        self.view = MergedView(self.redis, self.names, log_maxlen=settings.log_maxlen)
        self.bus = busmod.Bus(self.redis, self.names,
                              source=instance or busmod.instance_name("node-registry"))
        self.ready = asyncio.Event()  # set after the first resync: the view exists
        self.applied = 0
        self.resyncs = 0
        self.heartbeat = Heartbeat(self.redis, self.names, service="node-registry", instance=self.bus.source,
                                   interval=settings.service_beat_s,
                                   holds=lambda: Holds(events_applied=self.applied))
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(INBOX_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def run(self) -> None:
        """Listen to discovery's events and check the view's position, until closed."""
        self.heartbeat.start()
        self._tasks = [
            asyncio.create_task(self._listen(), name="node-registry.listen"),
            asyncio.create_task(self._apply_loop(), name="node-registry.apply"),
            asyncio.create_task(self._check(), name="node-registry.check"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            if not self._closed:
                raise

    async def close(self) -> None:
        """Stop the loops and release Redis; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await stop_tasks(self._tasks)
        await self.heartbeat.close()
        if self._own_redis:
            await self.redis.aclose()

    async def resync(self, reason: str) -> ResyncResult | None:
        """Rebuild the view from discovery's state if it differs (None if Redis failed)."""
        try:
            result = await self.view.resync()
        except REDIS_ERRORS as e:
            # Kept alive on purpose: the next event's refusal or the periodic check tries again.
            log.warning("resync (%s) failed: %s", reason, e)
            return None
        self.resyncs += 1
        self.ready.set()
        level = logging.DEBUG if result.outcome == "unchanged" else logging.INFO
        log.log(level, "resync (%s): %s, epoch %s version %d, at %s seq %d", reason, result.outcome,
                result.epoch, result.version, result.source or "-", result.seq)
        return result

    # --- the event loop ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        """Move raw events from the subscription to the inbox, so none waits for an apply to finish."""
        async def on_connect() -> None:
            await self.resync("subscribed")

        async for _, raw in self.bus.subscribe_raw(self.names.discovery_events, on_connect=on_connect):
            try:
                self._inbox.put_nowait(raw)
            except asyncio.QueueFull:
                # Far behind: dropping is safe, the next event's gap (or the periodic check) resyncs.
                log.warning("inbox full (%d events); dropping one", self._inbox.qsize())

    async def _apply_loop(self) -> None:
        """Apply what the inbox holds, a batch per round trip (one event per batch when keeping up)."""
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < MAX_BATCH:
                batch.append(self._inbox.get_nowait())
            try:
                await self._apply_batch(batch)
            except REDIS_ERRORS as e:
                # The subscription usually fails too and resyncs on reconnect; if not, the next event's
                # gap or the periodic check does.
                log.warning("applying %d events failed: %s", len(batch), e)
            except Exception:
                log.exception("applying %d events failed", len(batch))

    async def _apply_batch(self, batch: list[bytes]) -> None:
        pending: list[Event] = []
        for raw in batch:
            try:
                event = codec.decode(raw, channel=self.names.discovery_events)
            except EventDecodeError as e:
                log.warning("skipping bad event: %s", e)
                continue
            if isinstance(event, SourceResetEvent):
                await self._apply_events(pending)
                pending = []
                await self.resync(f"source-reset from {event.source}")
            else:
                pending.append(event)
        await self._apply_events(pending)

    async def _apply_events(self, events: list[Event]) -> None:
        if not events:
            return
        results = await self.view.apply_many(events)
        self.applied += sum(r.outcome == "applied" for r in results)
        refused = next(((e, r) for e, r in zip(events, results, strict=True) if r.outcome == "resync"), None)
        if refused is not None:
            event, result = refused
            with log_context(**ids_of(event)):  # the resync's lines name the cluster or node refused
                await self.resync(f"{result.reason} at {event.source} seq {event.seq}")

    # --- the periodic check -----------------------------------------------------------------------
    async def _check(self) -> None:
        behind: tuple[str, int] | None = None  # discovery's position the view lagged at the last check
        while True:
            await asyncio.sleep(self.settings.check_interval)
            try:
                behind = await self._check_once(behind)
            except REDIS_ERRORS as e:
                log.debug("check failed: %s", e)
            except Exception:
                log.exception("check failed")

    async def _check_once(self, behind: tuple[str, int] | None) -> tuple[str, int] | None:
        """Resync if the view is missing, or still short of where discovery was one interval ago."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.names.view_meta, "epoch", "source", "seq")
            pipe.hmget(self.names.discovery_meta, "source", "seq")
            (epoch, vsource, vseq), (dsource, dseq) = await pipe.execute()
        if epoch is None:
            await self.resync("no view")
            return None
        if dsource is None:
            return None
        view_at = (vsource or b"").decode(), int(vseq or 0)
        disc_at = dsource.decode(), int(dseq or 0)
        if view_at[0] == disc_at[0] and view_at[1] >= disc_at[1]:
            return None
        if behind is not None and not (view_at[0] == behind[0] and view_at[1] >= behind[1]):
            await self.resync(f"behind: view at {view_at}, discovery at {disc_at}")
            return None
        return disc_at

"""Service heartbeats: every replica says, in ``Names.services``, that it is alive and what it holds.

A replica's entry (``<service>:<instance>`` -> msgpack `ServiceBeat`) is rewritten every ``interval`` by a
task in the service's own event loop, so a loop that is stuck (a SIGSTOP, a blocking call) stops beating
and its entry grows stale, while a process that merely still exists proves nothing. The reader
(`read_replicas`: the gateway's ``/api/services`` and ``castray health``) marks an entry stale after
``stale_beats`` of the writer's own intervals without a beat, and removes entries silent for
``forget_after`` seconds; a replica that stops cleanly removes its own entry. A replica that has figures
for ``/metrics`` (`castray.shared.figures`) writes them in the same transaction as its beat, under the
same key in ``Names.service_figures``, and they are removed with its entry.

Beat times are the writer's wall clock, compared with the reader's: hosts are expected to keep their
clocks in step (NTP), as Ray's own node heartbeats expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from importlib import metadata

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from castray.shared import codec
from castray.shared.bus import REDIS_ERRORS
from castray.shared.errors import EventDecodeError
from castray.shared.figures import Figures
from castray.shared.lifecycle import stop_task
from castray.shared.names import Names

log = logging.getLogger(__name__)

class Holds(BaseModel):
    """What a replica holds now; each service fills in its own field and leaves the others out."""

    leading: bool | None = Field(default=None, description="discovery: this replica leads (else standby).")
    transfers_running: int | None = Field(default=None, description="transfer: transfers it runs now.")
    ws_clients: int | None = Field(default=None, description="gateway: WebSocket clients connected.")
    events_applied: int | None = Field(default=None, description="node-registry: events applied so far.")


class ServiceBeat(BaseModel):
    """One replica's heartbeat entry, as the replica writes it."""

    service: str = Field(description="discovery, node-registry, transfer or gateway.")
    instance: str = Field(description="The replica's name, also the source of its events.")
    host: str
    pid: int
    started: float = Field(description="Unix time the replica started.")
    beat: float = Field(description="Unix time of its last heartbeat.")
    interval: float = Field(description="Seconds between its heartbeats.")
    version: str
    holds: Holds = Field(default_factory=Holds)

    @property
    def key(self) -> str:
        return f"{self.service}:{self.instance}"


class ServiceReplica(ServiceBeat):
    """A heartbeat entry as a reader sees it."""

    age: float = Field(description="Seconds since its last heartbeat.")
    stale: bool = Field(description="No heartbeat for more than stale_beats of its intervals.")


def castray_version() -> str:
    try:
        return metadata.version("castray")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


class Heartbeat:
    """Writes one replica's entry every ``interval`` until `close`, which removes it."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, service: str, instance: str,
                 interval: float, holds: Callable[[], Holds],
                 figures: Callable[[], Figures] | None = None) -> None:
        self.redis = redis
        self.names = names
        self.holds = holds
        self.figures = figures
        self.entry = ServiceBeat(service=service, instance=instance, host=socket.gethostname(),
                                 pid=os.getpid(), started=time.time(), beat=0.0, interval=interval,
                                 version=castray_version())
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.entry.service}.heartbeat")

    async def beat(self) -> None:
        """Write the entry now."""
        self.entry.beat = time.time()
        self.entry.holds = self.holds()
        if self.figures is None:
            await self.redis.hset(self.names.services, self.entry.key, codec.encode(self.entry))
        else:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.names.services, self.entry.key, codec.encode(self.entry))
            pipe.hset(self.names.service_figures, self.entry.key, codec.encode(self.figures()))
            await pipe.execute()
        self.beats += 1

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.beat()
                if failing:
                    log.info("heartbeat of %s written again", self.entry.key)
                failing = False
            except REDIS_ERRORS as e:
                if not failing:
                    log.warning("heartbeat of %s not written: %s", self.entry.key, e)
                failing = True
            await asyncio.sleep(self.entry.interval)

    async def close(self) -> None:
        """Stop beating and remove the entry: a replica that stopped cleanly is gone, not stale."""
        task, self._task = self._task, None
        if task is None:
            return
        await stop_task(task)
        with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
            async with asyncio.timeout(2.0):
                await forget(self.redis, self.names, [self.entry.key])


async def read_replicas(redis: aioredis.Redis, names: Names, *, stale_beats: int, forget_after: float,
                        now: float | None = None) -> list[ServiceReplica]:
    """Every replica's entry, stale ones marked, sorted by service and instance; entries silent for
    ``forget_after`` seconds are removed. An entry that does not decode (another version's layout) is
    skipped, not removed."""
    raw: dict[bytes | str, bytes | str] = await redis.hgetall(names.services)
    out, gone = replicas_of(raw, stale_beats=stale_beats, forget_after=forget_after, now=now)
    if gone:
        await forget(redis, names, gone)
    return out


async def forget(redis: aioredis.Redis, names: Names, keys: Sequence[bytes | str]) -> None:
    """Remove replicas' entries and their figures."""
    pipe = redis.pipeline(transaction=True)
    pipe.hdel(names.services, *keys)
    pipe.hdel(names.service_figures, *keys)
    await pipe.execute()


def replicas_of(raw: dict[bytes | str, bytes | str], *, stale_beats: int, forget_after: float,
                now: float | None = None) -> tuple[list[ServiceReplica], list[bytes | str]]:
    """The replicas of ``Names.services``'s contents, and the keys of those to forget: apart from
    `read_replicas` so that a reader that batches its commands (the gateway's metrics) decodes alike."""
    now = time.time() if now is None else now
    out: list[ServiceReplica] = []
    gone: list[bytes | str] = []
    for key, value in raw.items():
        try:
            beat = codec.decode_model(value, ServiceBeat)
        except EventDecodeError:
            continue
        age = max(0.0, now - beat.beat)
        if age > forget_after:
            gone.append(key)
            continue
        out.append(ServiceReplica(**beat.model_dump(), age=age, stale=age > beat.interval * stale_beats))
    out.sort(key=lambda r: (r.service, r.instance))
    return out, gone

"""`DiscoveryWorker`: finds Ray clusters, watches their nodes and publishes what changes.

Any number of replicas may run in one namespace: one leads, the others stand by. The leader holds the
lease at ``Names.discovery_leader`` and renews it; a standby takes it over once the leader stops renewing
(it died, or lost Redis for longer than ``leader_ttl``), and a leader that finds the lease taken stops at
once. Its writes are fenced by the lease too (`StatePublisher`), so two replicas never both write the state.

Tasks while leading (a "term"): the lease keeper, the state keeper (writes the whole state at the start of
the term and after every Redis reconnect), periodic discovery passes, one watcher per cluster, and the
command server. Each term starts from nothing: it finds the clusters again, and rewrites the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import redis.asyncio as aioredis

from castray.discovery.commands import DiscoveryCommands
from castray.discovery.figures import PollFigures
from castray.discovery.passes import Discoverer
from castray.discovery.probe import Prober
from castray.discovery.publisher import StatePublisher
from castray.discovery.resolver import PolicyResolver
from castray.discovery.settings import DiscoverySettings
from castray.discovery.sources import Candidate
from castray.discovery.tracker import Tracker
from castray.shared import codec
from castray.shared.address_policy import AddressPolicy
from castray.shared.bus import REDIS_ERRORS, Bus, instance_name
from castray.shared.events import ClusterInfo
from castray.shared.heartbeat import Heartbeat, Holds
from castray.shared.lease import Lease
from castray.shared.lifecycle import stop_task, stop_tasks

log = logging.getLogger(__name__)


class DiscoveryWorker:
    """Shaped like arq's Worker: keyword-only constructor, ``await run()``, idempotent ``await close()``."""

    name = "discovery"

    def __init__(
        self,
        *,
        settings: DiscoverySettings,
        redis: aioredis.Redis,
        periodic: bool = True,
        source: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.periodic = periodic
        self.bus = Bus(redis, settings.names, source=source or instance_name("discovery"))
        self.lease = Lease(redis, settings.names.discovery_leader, self.bus.source,
                           int(settings.leader_ttl * 1000))
        self.publisher = self._new_publisher()
        self.figures = PollFigures()  # published with the heartbeat, for the gateway's /metrics
        self.heartbeat = Heartbeat(redis, settings.names, service="discovery", instance=self.bus.source,
                                   interval=settings.service_beat_s,
                                   holds=lambda: Holds(leading=self.leading), figures=self.figures.figures)
        self.terms = 0  # how many times this replica has led
        self.session: aiohttp.ClientSession | None = None
        self.tracker: Tracker | None = None
        self.discoverer: Discoverer | None = None
        self.commands: DiscoveryCommands | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._commands_ready = asyncio.Event()
        self._closed = False

    @property
    def leading(self) -> bool:
        """This replica leads now (set from the start of a term to its end)."""
        return self._started.is_set()

    def _new_publisher(self) -> StatePublisher:
        return StatePublisher(self.redis, self.bus, check_interval=self.settings.state_check_interval,
                              lease=self.lease)

    async def start(self) -> None:
        """Open the HTTP session and build the parts (each term calls it; tests may too)."""
        if self.session is not None:
            return
        policy = AddressPolicy.from_settings(self.settings)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, resolver=PolicyResolver(policy))
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False, headers={"User-Agent": "castray-discovery"}
        )
        prober = Prober(self.session, self.settings, policy)
        self.tracker = Tracker(publisher=self.publisher, prober=prober, settings=self.settings,
                               figures=self.figures)
        self.discoverer = Discoverer(settings=self.settings, prober=prober, tracker=self.tracker)
        self.commands = DiscoveryCommands(tracker=self.tracker, prober=prober, discoverer=self.discoverer)

    async def run(self) -> None:
        """Stand by until this replica holds the lease, lead until it is lost, again; until closed."""
        self._runner = asyncio.current_task()
        self.heartbeat.start()
        try:
            while not self._closed:
                await self._stand_by()
                await self._lead()
        finally:
            await self.close()

    async def _stand_by(self) -> None:
        """Return once this replica holds the lease (at once if no other replica does)."""
        period, told = self.settings.leader_ttl / 3, None
        while True:
            try:
                if await self.lease.acquire():
                    return
                holder = await self.lease.holder()
                if holder != told:
                    log.info("discovery standing by: %s leads (namespace %s)", holder,
                             self.settings.namespace)
                    told = holder
            except REDIS_ERRORS as e:
                log.warning("Redis unavailable while standing by (%s); retrying", e)
            await asyncio.sleep(period)

    async def _lead(self) -> None:
        """One term: run every task until the lease is lost (or a task fails, which ends the worker)."""
        self.terms += 1
        await self.start()
        assert self.discoverer is not None and self.commands is not None and self.tracker is not None
        self.discoverer.remembered = await self._connected_by_hand()
        self.tracker.disconnected |= await self.publisher.disconnected_before()
        keeper = asyncio.create_task(self.lease.keep(self.settings.leader_ttl / 3), name="discovery-lease")
        self._tasks = [
            asyncio.create_task(self.publisher.keep(), name="discovery-state"),
            asyncio.create_task(
                self.bus.serve_commands("discovery", self.commands, on_connect=self._listening),
                name="discovery-commands",
            ),
        ]
        if self.periodic:
            self._tasks.append(
                asyncio.create_task(self.discoverer.run_periodically(), name="discovery-passes")
            )
        self._started.set()
        log.info("discovery leading as %s (namespace %s)", self.bus.source, self.settings.namespace)
        try:
            await asyncio.wait([keeper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in self._tasks:
                if task.done() and not task.cancelled():
                    task.result()  # a failed task ends the worker, as it always has
            log.warning("discovery lost its lease (namespace %s); standing by", self.settings.namespace)
        finally:
            await stop_tasks([keeper])
            await self._end_term()

    async def _end_term(self) -> None:
        """Stop this term's tasks and watchers; the next term builds everything afresh."""
        self._started.clear()  # not leading from here on
        self._commands_ready.clear()
        await stop_tasks(self._tasks)
        self._tasks = []
        if self.discoverer is not None:
            await self.discoverer.close()
        if self.tracker is not None:
            await self.tracker.close()
        self.figures.clear()
        if self.session is not None:
            await self.session.close()
        self.session = self.tracker = self.discoverer = self.commands = None
        self.publisher = self._new_publisher()

    async def _connected_by_hand(self) -> list[Candidate]:
        """Clusters the previous run of discovery was connected to by a connect command.

        No setting, session file or scan finds them again, and the state keeper rewrites the state from
        scratch on start, so after a crash or restart of discovery they would silently leave the view;
        the first pass probes them again instead. Read before the state keeper starts."""
        try:
            stored: dict[bytes | str, bytes | str] = await self.redis.hgetall(
                self.settings.names.discovery_clusters)
        except REDIS_ERRORS as e:
            log.warning("could not read the clusters connected before the restart: %s", e)
            return []
        out: list[Candidate] = []
        for raw in stored.values():
            try:
                cluster = codec.decode_model(raw, ClusterInfo)
            except (ValueError, TypeError):  # a record of an older layout: nothing to reconnect
                continue
            address = cluster.dashboard_url or next(iter(cluster.addresses), None)
            if "connect" in cluster.sources and cluster.found_by != "local" and address:
                out.append(Candidate("connect", address))
        if out:
            log.info("reconnecting %d cluster(s) connected by hand before: %s", len(out),
                     ", ".join(c.address for c in out))
        return out

    async def _listening(self) -> None:
        self._commands_ready.set()

    async def started(self, timeout: float = 10.0) -> None:
        """Wait until this replica leads, answers commands and has written the state of its term."""
        async with asyncio.timeout(timeout):
            await self._started.wait()
            await self._commands_ready.wait()
        await self.publisher.ready(timeout)

    async def close(self) -> None:
        """Stop every task and watcher and close the HTTP session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task() and not runner.done():
            await stop_task(runner)  # its term ends in `_lead`
        await self._end_term()
        await self.heartbeat.close()
        with contextlib.suppress(*REDIS_ERRORS):  # a standby takes over now, not after leader_ttl
            await self.lease.release()
        log.info("discovery stopped")

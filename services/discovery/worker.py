"""`DiscoveryWorker`: finds Ray clusters, watches their nodes and publishes what changes.

Tasks while running: the state keeper (writes the whole state on start and after every Redis
reconnect), periodic discovery passes, one watcher per cluster, and the command server.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import redis.asyncio as aioredis

from castray.discovery.commands import DiscoveryCommands
from castray.discovery.passes import Discoverer
from castray.discovery.probe import Prober
from castray.discovery.publisher import StatePublisher
from castray.discovery.settings import DiscoverySettings
from castray.discovery.sources import Candidate
from castray.discovery.tracker import Tracker
from castray.shared import codec
from castray.shared.bus import REDIS_ERRORS, Bus, instance_name
from castray.shared.events import ClusterInfo
from castray.shared.lifecycle import stop_tasks

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
        self.publisher = StatePublisher(redis, self.bus, check_interval=settings.state_check_interval)
        self.session: aiohttp.ClientSession | None = None
        self.tracker: Tracker | None = None
        self.discoverer: Discoverer | None = None
        self.commands: DiscoveryCommands | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self._commands_ready = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        """Open the HTTP session and build the parts (``run`` calls it; tests may too)."""
        if self.session is not None:
            return
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False, headers={"User-Agent": "castray-discovery"}
        )
        prober = Prober(self.session, self.settings)
        self.tracker = Tracker(publisher=self.publisher, prober=prober, settings=self.settings)
        self.discoverer = Discoverer(settings=self.settings, prober=prober, tracker=self.tracker)
        self.commands = DiscoveryCommands(tracker=self.tracker, prober=prober, discoverer=self.discoverer)

    async def run(self) -> None:
        """Run until cancelled or closed."""
        await self.start()
        assert self.discoverer is not None and self.commands is not None and self.tracker is not None
        self.discoverer.remembered = await self._connected_by_hand()
        self.tracker.disconnected |= await self.publisher.disconnected_before()
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
        log.info("discovery running as %s (namespace %s)", self.bus.source, self.settings.namespace)
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.close()

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
        """Wait until run() has started its tasks, answers commands and the first state is written."""
        async with asyncio.timeout(timeout):
            await self._started.wait()
            await self._commands_ready.wait()
        await self.publisher.ready(timeout)

    async def close(self) -> None:
        """Stop every task and watcher and close the HTTP session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await stop_tasks(self._tasks)
        if self.discoverer is not None:
            await self.discoverer.close()
        if self.tracker is not None:
            await self.tracker.close()
        if self.session is not None:
            await self.session.close()
        log.info("discovery stopped")

"""One task per cluster: poll its node list on its own schedule, with its own timeout.

A slow, hanging or lying dashboard only ever delays its own watcher. After a run of failures the
watcher checks, before trusting the answers again, that the dashboard still serves the same session
(a new head on the same port is a new cluster). Hostnames, and the GCS address of a cluster found before
its dashboard reported it, come from the heavier summary view, fetched in the background only while
one of them is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from castray.discovery import errors
from castray.discovery.dashboard import DashboardClient, NodeRow
from castray.discovery.figures import PollFigures
from castray.discovery.limits import NodeIdBudget
from castray.discovery.settings import DiscoverySettings
from castray.shared.errors import CodedError
from castray.shared.log import bind

if TYPE_CHECKING:
    from castray.discovery.tracker import Tracker

log = logging.getLogger(__name__)
HOSTNAME_INTERVAL = 2.0  # the summary view is cached by Ray for 2 s


class ClusterWatcher:
    """Polls one cluster's dashboard and hands the results to the tracker."""

    def __init__(
        self,
        *,
        cluster_id: str,
        session_name: str,
        client: DashboardClient,
        tracker: Tracker,
        settings: DiscoverySettings,
        figures: PollFigures | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.session_name = session_name
        self.client = client
        self.tracker = tracker
        self.settings = settings
        self.figures = figures if figures is not None else PollFigures()
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._hostname_task: asyncio.Task[None] | None = None
        self._hostnames_at = 0.0
        self.budget = NodeIdBudget(
            burst=settings.max_cluster_nodes, per_minute=settings.max_new_nodes_per_minute
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.cluster_id}")

    async def stop(self) -> None:
        """Cancel the watcher (safe from inside its own task: then it just ends after this step)."""
        current = asyncio.current_task()
        for task in (self._hostname_task, self._task):
            if task is None or task is current or task.done():
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._task is current:
            self._task = None

    def _interval(self) -> float:
        # A lost cluster is polled less often, up to the scan interval.
        base = self.settings.poll_interval
        extra = max(0, self.failures - self.settings.lost_after)
        return min(max(base, self.settings.scan_interval), base * 2**extra) if extra else base

    async def _run(self) -> None:
        bind(cluster_id=self.cluster_id)  # a task of its own: every line it (and its summary task) logs
        loop = asyncio.get_running_loop()
        while self._task is not None:
            started = loop.time()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must not end the watch, nor keep a failing cluster alive
                log.exception("watcher of %s: poll failed unexpectedly", self.cluster_id)
                self.failures += 1
                failed = errors.Unexpected(f"poll failed: {type(e).__name__}")
                self.figures.observe(self.cluster_id, loop.time() - started, failed.code)
                await self.tracker.poll_failed(self.cluster_id, failed, self.failures)
            await asyncio.sleep(max(0.0, started + self._interval() - loop.time()))

    async def poll_once(self) -> None:
        started = time.monotonic()
        try:
            if self.failures:
                version = await self.client.version()
                if version.session_name != self.session_name:
                    log.warning(
                        "cluster %s: dashboard %s now serves %s",
                        self.cluster_id,
                        self.client.base_url,
                        version.session_name,
                    )
                    self._task = None
                    await self.tracker.replaced(self.cluster_id, version.session_name)
                    return
            rows = self._within_budget(await self.client.nodes())
        except CodedError as e:  # a DiscoveryError, or AddressNotAllowed from the resolver at connection time
            self.figures.observe(self.cluster_id, time.monotonic() - started, e.code)
            self.failures += 1
            log.debug("cluster %s poll %d failed: %s", self.cluster_id, self.failures, e.message)
            await self.tracker.poll_failed(self.cluster_id, e, self.failures)
            return
        # The dashboard's answer is timed, not what the tracker does with it (a bug there: `_run` counts
        # a failed poll too).
        self.figures.observe(self.cluster_id, time.monotonic() - started)
        self.failures = 0
        await self.tracker.poll_ok(self.cluster_id, rows)
        self._maybe_fetch_summary()

    def _within_budget(self, rows: list[NodeRow]) -> list[NodeRow]:
        known = {n.ray_node_id for n in self.tracker.state.nodes_of(self.cluster_id)}
        new = sum(1 for r in rows if r.node_id not in known)
        if not self.budget.take(new):
            raise errors.NodeListUnstable(
                f"{self.client.base_url} listed {new} nodes never seen before: its node list changes faster "
                f"than {self.settings.max_new_nodes_per_minute:g} new nodes a minute"
            )
        return rows

    def _maybe_fetch_summary(self) -> None:
        if self._hostname_task is not None and not self._hostname_task.done():
            return
        if time.monotonic() - self._hostnames_at < HOSTNAME_INTERVAL:
            return
        cid = self.cluster_id
        if not self.tracker.missing_hostnames(cid) and not self.tracker.missing_gcs_address(cid):
            return
        self._hostnames_at = time.monotonic()
        self._hostname_task = asyncio.create_task(self._fetch_summary())

    async def _fetch_summary(self) -> None:
        try:
            rows = await self.client.summary()
        except CodedError as e:  # a ProbeError, or AddressNotAllowed (this runs as a task of its own)
            log.debug("cluster %s: no summary (%s)", self.cluster_id, e.message)
            return
        await self.tracker.set_hostnames(self.cluster_id, {r.node_id: r.hostname for r in rows if r.hostname})
        if self.tracker.missing_gcs_address(self.cluster_id):
            await self.tracker.set_gcs_address(self.cluster_id, rows)

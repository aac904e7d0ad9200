"""Discovery's poll figures on the gateway's ``/metrics``: a real discovery worker polls the session's real
Ray head and a stand-in dashboard that turns to garbage (``tests/support/hostile_dashboard.py``), publishes
its figures through Redis beside its heartbeat, and the gateway exposes them, read back with
prometheus_client's parser. The watchers are stopped before the last heartbeat, so the scrape is compared
with the worker's own counts exactly."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.discovery.figures import PollFigures
from castray.discovery.worker import DiscoveryWorker
from castray.shared.bus import Bus
from castray.shared.figures import OTHER_CLUSTERS, POLL_BUCKETS, ClusterPolls
from castray.shared.names import Names
from tests.support.discovery import connect_cluster
from tests.support.hostile_dashboard import HostileDashboard
from tests.support.metrics import Samples, scrape, value
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway

POLLS = 5  # polls each cluster must have had before the figures are read
DURATION = "castray_discovery_poll_duration_seconds"
ERRORS = "castray_discovery_poll_errors_total"


def _polls(worker: DiscoveryWorker, cid: str) -> ClusterPolls:
    return worker.figures.figures().polls.get(cid) or ClusterPolls()


def _assert_exposed(samples: Samples, instance: str, cid: str, polls: ClusterPolls) -> None:
    """The scrape shows exactly ``polls``: cumulative buckets, count, sum and errors by code."""
    labels = {"instance": instance, "cluster": cid}
    assert value(samples, f"{DURATION}_count", **labels) == polls.count
    assert value(samples, f"{DURATION}_sum", **labels) == pytest.approx(polls.seconds)
    assert value(samples, f"{DURATION}_bucket", le="+Inf", **labels) == polls.count
    for bound, n in zip(POLL_BUCKETS, polls.buckets, strict=True):
        assert value(samples, f"{DURATION}_bucket", le=str(float(bound)), **labels) == n
    codes = {dict(lb)["code"]: v for (name, lb), v in samples.items()
             if name == ERRORS and dict(lb)["cluster"] == cid and dict(lb)["instance"] == instance}
    assert codes == polls.errors


async def test_polls_and_errors_per_cluster_reach_metrics_through_redis(
        run_discovery, make_gateway, bus: Bus, hostile: HostileDashboard, ray_head: local_ray.RayNode,
        redis_client: aioredis.Redis, names: Names) -> None:
    gateway = await make_gateway()
    worker = await run_discovery(poll_interval=0.1, poll_timeout=5.0, lost_after=1_000)
    instance = worker.bus.source
    real = await connect_cluster(bus, ray_head.dashboard_url)
    bad = await connect_cluster(bus, hostile.url)
    hostile.mode = "garbage"  # every poll from now on fails
    failed_before = sum(_polls(worker, bad).errors.values())

    def polled() -> bool:
        good = _polls(worker, real)
        return (good.count - sum(good.errors.values()) >= POLLS
                and sum(_polls(worker, bad).errors.values()) - failed_before >= POLLS)

    await wait_for(polled, what=f"{POLLS} polls of the real cluster and {POLLS} failed ones of the other")
    assert worker.tracker is not None
    await worker.tracker.close()  # the watchers stop: the figures move no more
    await worker.heartbeat.beat()
    samples = await scrape(gateway)

    good, failing = _polls(worker, real), _polls(worker, bad)
    _assert_exposed(samples, instance, real, good)
    _assert_exposed(samples, instance, bad, failing)
    assert sum(failing.errors.values()) >= POLLS + failed_before  # errors for the failing cluster's id
    assert good.count - sum(good.errors.values()) >= POLLS  # the real one answered
    assert good.count >= POLLS and failing.count >= POLLS

    # A disconnected cluster's series go with the next heartbeat; the other's stay as they were.
    await bus.request("discovery", "disconnect", {"cluster": bad}, timeout=10)
    await worker.heartbeat.beat()
    samples = await scrape(gateway)
    assert not any(dict(lb).get("cluster") == bad for (name, lb) in samples if "discovery" in name)
    _assert_exposed(samples, instance, real, good)

    # A replica that stops removes its figures with its heartbeat.
    await worker.close()
    assert await redis_client.hlen(names.service_figures) == 0
    samples = await scrape(gateway)
    assert not any(name.startswith("castray_discovery_poll") for name, _ in samples)


async def test_a_replica_that_does_not_lead_publishes_no_polls(
        run_discovery, make_gateway, redis_client: aioredis.Redis, names: Names) -> None:
    gateway = await make_gateway()
    leader = await run_discovery()
    standby = DiscoveryWorker(settings=leader.settings, redis=redis_client, source="standby-1")
    standby.heartbeat.start()  # a standby beats, and polls nothing
    try:
        await wait_for(lambda: redis_client.hexists(names.service_figures, "discovery:standby-1"),
                       what="the standby's first heartbeat")
        samples = await scrape(gateway)
        replica = (("instance", "standby-1"), ("service", "discovery"))
        assert samples[("castray_service_up", replica)] == 1
        assert not any(dict(lb).get("instance") == "standby-1" for (name, lb) in samples
                       if name.startswith("castray_discovery_poll"))
    finally:
        await standby.close()
    assert not await redis_client.hexists(names.service_figures, "discovery:standby-1")


def test_clusters_beyond_the_cap_share_one_series() -> None:
    figures = PollFigures(clusters_max=3)
    for i in range(5):
        figures.observe(f"c{i}", 0.01 * (i + 1), "timeout" if i % 2 else None)
    polls = figures.figures().polls
    assert set(polls) == {"c0", "c1", OTHER_CLUSTERS}  # 3 series in all
    assert polls[OTHER_CLUSTERS].count == 3 and polls[OTHER_CLUSTERS].errors == {"timeout": 1}
    assert polls["c1"].buckets[POLL_BUCKETS.index(0.025)] == 1 and polls["c1"].buckets[0] == 0
    figures.observe("c0", 0.3)
    assert figures.figures().polls["c0"].count == 2  # a known cluster keeps its own
    figures.forget("c1")
    figures.observe("c9", 0.1)
    assert "c9" in figures.figures().polls  # a freed place is taken again
    figures.clear()
    assert figures.figures().polls == {}

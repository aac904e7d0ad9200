"""The Grafana dashboard in the repository (``docs/grafana-dashboard.json``) loads as a dashboard, and every
metric its PromQL names is a series of a real ``/metrics`` scrape: a running gateway, after transfers'
events, requests, a WebSocket client, a view and a real discovery worker polling a dashboard that fails.
Names are parsed by a real PromQL parser and compared as samples (``x_total``, ``x_bucket``), so a
histogram named without its suffix, or a counter without ``_total``, fails as a name that does not exist."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.shared.bus import Bus
from castray.shared.events import TransferCompleted, TransferStarted
from castray.shared.names import Names
from tests.support.gateway import ViewWriter, cluster, node
from tests.support.hostile_dashboard import HostileDashboard
from tests.support.metrics import (
    TimedPublisher,
    exprs,
    metric_names,
    missing_metrics,
    panels,
    sample_names,
    samples_of,
    scrape_text,
    value,
    variable_metrics,
)
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, view

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_dashboard_is_a_grafana_dashboard_with_a_promql_target_on_every_panel() -> None:
    dashboard = load()
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    shown = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(shown) >= 15
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in shown:
        assert panel["title"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]), (panel["title"], target["expr"])  # parses, names a metric
    assert variable_metrics(dashboard)


def test_the_check_reports_names_that_are_not_series() -> None:
    exposed = {"castray_transfers_total", "castray_transfer_duration_seconds_bucket",
               "castray_transfer_duration_seconds_count", "castray_transfer_duration_seconds_sum"}
    dashboard = {"panels": [{"type": "row", "panels": [{"type": "timeseries", "targets": [
        {"expr": "sum(rate(castray_transfers_total[$__rate_interval]))"},
        {"expr": "histogram_quantile(0.9, sum by (le) (rate(castray_transfer_duration_seconds_bucket[5m])))"},
        {"expr": "castray_transfers"},  # a counter without _total
        {"expr": "castray_transfer_duration_seconds"},  # a histogram without a suffix
        {"expr": 'rate(castray_no_such_metric_total{cluster=~"$cluster"}[5m]) / castray_transfers_total'},
    ]}]}]}
    assert missing_metrics(dashboard, exposed) == {
        "castray_transfers": {"castray_transfers"},
        "castray_transfer_duration_seconds": {"castray_transfer_duration_seconds"},
        'rate(castray_no_such_metric_total{cluster=~"$cluster"}[5m]) / castray_transfers_total':
            {"castray_no_such_metric_total"},
    }


@pytest.fixture
async def failing_dashboard() -> AsyncIterator[HostileDashboard]:
    server = HostileDashboard()
    await server.start()
    yield server
    await server.stop()


async def _activity(gateway: Any, view: ViewWriter, redis: aioredis.Redis, names: Names,
                    run_discovery: Any, dashboard: HostileDashboard) -> None:
    """What makes every kind of series appear: a view, a discovery worker whose cluster fails, a transfer
    with a destination completed, requests and a WebSocket client."""
    await view.reset(clusters=[cluster("c1")], nodes=[node("a", "c1"), node("b", "c1", state="DEAD")])
    worker = await run_discovery(poll_interval=0.1)
    await Bus(redis, names, source="test").request(
        "discovery", "connect", {"cluster_address": dashboard.url}, timeout=30)
    dashboard.mode = "garbage"
    await wait_for(lambda: any(p.errors for p in worker.figures.figures().polls.values()),
                   what="a failed poll")
    await worker.heartbeat.beat()

    publisher, now = TimedPublisher(redis, names), time.time()
    await publisher.transfer_event(TransferStarted(transfer_id="t1", mode="unicast", bytes_total=10,
                                                   targets=["c1-a"]), at=now)
    await publisher.transfer_event(TransferCompleted(transfer_id="t1", node_id="c1-a", bytes_total=10),
                                   at=now + 1)
    await publisher.transfer_event(TransferCompleted(transfer_id="t1", bytes_total=10), at=now + 1)
    assert (await gateway.get("/api/nodes")).status == 200

    async def relayed() -> bool:
        text = await scrape_text(gateway)
        return value(samples_of(text), "castray_transfers_total", state="completed", mode="unicast") == 1

    await wait_for(relayed, what="the transfer's events relayed")


async def test_every_metric_the_dashboard_names_is_in_a_real_scrape(
        make_gateway, view: ViewWriter, redis_client: aioredis.Redis, names: Names, run_discovery,
        failing_dashboard: HostileDashboard) -> None:
    gateway = await make_gateway()
    await _activity(gateway, view, redis_client, names, run_discovery, failing_dashboard)
    async with gateway.ws_connect("/ws") as ws:
        await ws.receive_json()
        exposed = sample_names(await scrape_text(gateway))

    dashboard = load()
    assert missing_metrics(dashboard, exposed) == {}
    assert variable_metrics(dashboard) <= exposed
    named = set().union(*(metric_names(e) for _, e in exprs(dashboard)))
    assert {"castray_discovery_poll_errors_total", "castray_gateway_heavy_shed_total",
            "castray_transfer_destination_throughput_bytes_per_second_bucket"} <= named

    # The same scrape fails a dashboard that names a metric it does not have.
    wrong = copy.deepcopy(dashboard)
    target = next(p for p in panels(wrong) if p.get("targets"))["targets"][0]
    target["expr"] = "sum(rate(castray_transfers_bytes_total[5m]))"
    assert missing_metrics(wrong, exposed) == {target["expr"]: {"castray_transfers_bytes_total"}}

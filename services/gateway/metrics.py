"""``GET /metrics`` in the Prometheus text format, and the middleware that counts requests.

Each app has its own `CollectorRegistry` (several apps may run in one process, as in the tests); nothing
goes to ``prometheus_client``'s global registry. Requests are labelled by the route's canonical path
(``/api/nodes/{node_id}``), never the raw one, so the number of series stays bounded. The view's gauges are
read at scrape time from the status the gateway already caches (`StatusCache`): one small read of the
view's meta, never the whole view.

Transfers are counted from the transfer events the gateway's `EventHub` already relays (an observer of the
hub): no second subscription, no read of the transfer records. A transfer that started before this gateway
did is counted when it ends, with mode ``unknown``, no duration and no throughput. What is read from Redis
at scrape time (the request stream's depth, heartbeats, discovery's poll figures) is in `metrics_redis`.

Per-destination throughput is a histogram labelled by mode only, not a series per destination node: node
ids are unbounded (every Ray node that ever joins gets a new one) and each series would stay in the
registry for the gateway's life, while the histogram's series are fixed and still give the quantiles and
the count of slow destinations; which node was slow is in the transfer's record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from castray.gateway import keys
from castray.gateway.backpressure import HeavyGate
from castray.gateway.errors import Handler
from castray.gateway.metrics_redis import RedisReadings
from castray.gateway.openapi import doc
from castray.shared.events import (
    Event,
    TransferCancelled,
    TransferCompleted,
    TransferFailed,
    TransferStarted,
)

log = logging.getLogger(__name__)

# What a request that matched no route is labelled with (a 404, a 405 on an unknown path).
UNMATCHED = "unmatched"
# The methods a request is labelled with; HTTP allows any token as a method (aiohttp takes "FOO1", "FOO2",
# ...), and every label value is a series kept for the gateway's life, so any other is OTHER_METHOD.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# The classic text format, which every Prometheus reads (prometheus_client >= 0.22 calls 1.0.0 its latest).
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
# The mode of a transfer whose transfer-started this gateway did not see.
UNKNOWN_MODE = "unknown"
# Transfers remembered between their start and their end (mode, start time); the oldest go first.
OPEN_TRANSFERS_MAX = 10_000
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Bytes per second, 100 kB/s to 10 GB/s.
THROUGHPUT_BUCKETS = (1e5, 1e6, 1e7, 5e7, 1e8, 2.5e8, 5e8, 1e9, 2.5e9, 5e9, 1e10)


class TransferMetrics:
    """Transfers, destinations and bytes delivered, from the events the hub relays (`on_event`)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.transfers = Counter("castray_transfers", "Transfers by state (started, then completed, failed "
                                 "or cancelled) and mode", ["state", "mode"], registry=r)
        self.destinations = Counter("castray_transfer_destinations",
                                    "Destinations that ended, by state (completed, failed)", ["state"],
                                    registry=r)
        self.bytes_delivered = Counter("castray_transfer_bytes_delivered",
                                       "Bytes delivered to destinations that completed", registry=r)
        self.duration = Histogram("castray_transfer_duration_seconds",
                                  "From a transfer's start to its end (event times), by how it ended",
                                  ["state"], buckets=DURATION_BUCKETS, registry=r)
        self.throughput = Histogram("castray_transfer_destination_throughput_bytes_per_second",
                                    "Bytes a completed destination received over the time from its "
                                    "transfer's start to its completion (event times), by mode",
                                    ["mode"], buckets=THROUGHPUT_BUCKETS, registry=r)
        self.relayed = Counter("castray_ws_events_relayed", "Events from Redis relayed to the WebSocket "
                               "clients, by event type", ["type"], registry=r)
        self._open: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def on_event(self, event: Event) -> None:
        self.relayed.labels(event.type).inc()
        p = event.payload
        if isinstance(p, TransferStarted):
            if p.transfer_id in self._open:  # another attempt (its worker died): the same transfer
                return
            self._open[p.transfer_id] = (p.mode, event.time)
            if len(self._open) > OPEN_TRANSFERS_MAX:
                self._open.popitem(last=False)
            self.transfers.labels("started", p.mode).inc()
            return
        if isinstance(p, TransferCompleted | TransferFailed) and p.node_id is not None:
            self.destinations.labels(p.event_type.removeprefix("transfer-")).inc()
            if isinstance(p, TransferCompleted):
                self.bytes_delivered.inc(p.bytes_total)
                self._destination_done(p, event.time)
            return
        if isinstance(p, TransferCompleted | TransferFailed | TransferCancelled):
            state = p.event_type.removeprefix("transfer-")
            mode, started = self._open.pop(p.transfer_id, (UNKNOWN_MODE, None))
            self.transfers.labels(state, mode).inc()
            if started is not None:
                self.duration.labels(state).observe(max(0.0, event.time - started))

    def _destination_done(self, p: TransferCompleted, at: float) -> None:
        opened = self._open.get(p.transfer_id)
        if opened is None:  # its start not seen here: no time to divide by
            return
        mode, started = opened
        seconds = at - started
        if seconds > 0:
            self.throughput.labels(mode).observe(p.bytes_total / seconds)


class GateReadings(Collector):
    """The heavy requests' gate (`castray.gateway.backpressure.HeavyGate`): its counts as they are now."""

    def __init__(self) -> None:
        self.gate: HeavyGate | None = None

    def collect(self) -> Iterator[Metric]:
        gate = self.gate
        if gate is None:
            return
        yield CounterMetricFamily("castray_gateway_heavy_shed", "Heavy requests refused with 503 "
                                  "overloaded (queue full, or no slot within the wait)", value=gate.shed)
        yield GaugeMetricFamily("castray_gateway_heavy_slots", "Heavy requests served at once at most "
                                "(CASTRAY_HEAVY_REQUESTS)", value=gate.limit)
        yield GaugeMetricFamily("castray_gateway_heavy_slots_in_use", "Heavy requests being built or sent "
                                "now", value=gate.in_use)
        yield GaugeMetricFamily("castray_gateway_heavy_queued", "Heavy requests waiting for a slot now",
                                value=gate.waiting)


class GatewayMetrics:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("castray_gateway_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.duration = Histogram("castray_gateway_http_request_duration_seconds",
                                  "Time to answer an HTTP request (a WebSocket: its whole life)", ["route"],
                                  registry=r)
        self.websockets = Gauge("castray_gateway_websocket_clients", "WebSocket clients connected",
                                registry=r)
        self.view_version = Gauge("castray_view_version", "The version of the view (nodes and clusters)",
                                  registry=r)
        self.nodes = Gauge("castray_nodes", "Nodes of the view by state", ["state"], registry=r)
        self.clusters = Gauge("castray_clusters", "Clusters of the view by state", ["state"], registry=r)
        self.view_cache = Gauge("castray_gateway_view_cache_builds",
                                "What the view cache built since start: snapshot (the whole view read and "
                                "encoded), catch_up (a version reached from the log), body (a response "
                                "encoded: a cache miss)", ["kind"], registry=r)
        self.events_subscribed = Gauge("castray_gateway_events_subscribed",
                                       "1 while the gateway's event listener is subscribed", registry=r)
        self.transfers = TransferMetrics(r)
        self.readings = RedisReadings()
        r.register(self.readings)
        self.gate = GateReadings()
        r.register(self.gate)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = route_of(request)
        method = request.method if request.method in METHODS else OTHER_METHOD
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def set_view(self, version: int, node_states: list[str], cluster_states: list[str]) -> None:
        self.view_version.set(version)
        for gauge, states in ((self.nodes, node_states), (self.clusters, cluster_states)):
            gauge.clear()  # a state no longer seen must not keep its last count
            for state, count in Tally(states).items():
                gauge.labels(state).set(count)


def route_of(request: web.Request) -> str:
    """The canonical path of the resource that matched (bounded), or `UNMATCHED`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so it counts the status the client really got (refusals and errors included)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:  # the client went away: nothing was answered
        status = 0
        raise
    finally:
        if status:
            request.app[keys.METRICS].observe(request, status, time.perf_counter() - started)


@doc("Metrics in the Prometheus text format (version 0.0.4): HTTP requests by method, route and status; "
     "request durations by route; WebSocket clients; the view's version, nodes and clusters by state; "
     "what the view cache built; transfers by state and mode, destinations by state, bytes delivered, "
     "transfer durations, per-destination throughput by mode; events relayed to WebSocket clients by "
     "type; heavy requests shed, slots in use and queued; the transfer request stream's length and "
     "pending entries, each replica's heartbeat (up, age), discovery's poll durations and errors by "
     "cluster, left out when their read fails",
     tag="meta", responses={503: "Redis unavailable"}, content_type=PROMETHEUS_TEXT)
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[keys.METRICS]
    hub = app[keys.HUB]
    status = await hub.status.current(app[keys.VIEW_CACHE])
    m.set_view(status.meta.version, status.node_states, status.cluster_states)
    m.websockets.set(len(app[keys.WEBSOCKETS]))
    cache = app[keys.VIEW_CACHE]
    built = {"snapshot": cache.snapshots, "catch_up": cache.catch_ups, "body": cache.body_builds}
    for kind, count in built.items():
        m.view_cache.labels(kind).set(count)
    m.events_subscribed.set(1 if hub.subscribed.is_set() else 0)
    await m.readings.read(app)
    return web.Response(body=generate_latest(m.registry),
                        headers={"Content-Type": PROMETHEUS_TEXT + "; charset=utf-8"})


def setup(app: web.Application) -> None:
    app[keys.METRICS] = GatewayMetrics()
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.on_startup.append(_observe_hub)


async def _observe_hub(app: web.Application) -> None:
    """After the hub's cleanup context (aiohttp runs every cleanup context before on_startup)."""
    app[keys.HUB].observers.append(app[keys.METRICS].transfers.on_event)
    app[keys.METRICS].gate.gate = app.get(keys.HEAVY_GATE)

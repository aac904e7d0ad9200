"""``GET /metrics`` in the Prometheus text format, and the middleware that counts requests.

Each app has its own `CollectorRegistry` (several apps may run in one process, as in the tests); nothing
goes to ``prometheus_client``'s global registry. Requests are labelled by the route's canonical path
(``/api/nodes/{node_id}``), never the raw one, so the number of series stays bounded. The view's gauges are
read at scrape time from the status the gateway already caches (`StatusCache`): one small read of the
view's meta, never the whole view.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from castray.gateway import keys
from castray.gateway.errors import Handler
from castray.gateway.openapi import doc

# What a request that matched no route is labelled with (a 404, a 405 on an unknown path).
UNMATCHED = "unmatched"
# The classic text format, which every Prometheus reads (prometheus_client >= 0.22 calls 1.0.0 its latest).
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


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

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = route_of(request)
        self.requests.labels(request.method, route, str(status)).inc()
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
     "what the view cache built",
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
    return web.Response(body=generate_latest(m.registry),
                        headers={"Content-Type": PROMETHEUS_TEXT + "; charset=utf-8"})


def setup(app: web.Application) -> None:
    app[keys.METRICS] = GatewayMetrics()
    app.router.add_get("/metrics", metrics, allow_head=False)

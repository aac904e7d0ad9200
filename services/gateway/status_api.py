"""``GET /api/status`` (the original's shape, for every cluster: see ``original.status``), health, and
``/`` -> ``/ui``."""

from __future__ import annotations

import logging

from aiohttp import web

from castray.gateway import keys
from castray.gateway.backpressure import UNAVAILABLE
from castray.gateway.openapi import doc
from castray.gateway.view_cache import serve
from castray.shared.bus import REDIS_ERRORS

log = logging.getLogger(__name__)


@doc("Every node of every cluster: total_nodes, active_nodes, dead_nodes, node_statuses (with the "
     "original's transfer counters), clusters, ray_cluster (cluster_resources, available_resources; memory "
     "in MiB); and discovery_leader, the discovery replica that leads (null: none does now). A DEAD node "
     "is listed in node_statuses with Ray's reason (state_message) but counted in dead_nodes only",
     tag="status", responses={304: "not modified (If-None-Match)", 503: UNAVAILABLE})
async def get_status(request: web.Request) -> web.Response:
    app = request.app
    cache = app[keys.VIEW_CACHE]
    statuses = app[keys.HUB].status
    status = await statuses.current(cache)
    leader = await statuses.leader()  # shared by the requests that arrive together
    return await serve(request, cache, status.meta, ("status", status.generation, leader),
                       lambda: status.response(discovery_leader=leader))


@doc("Health: Redis answers and the event listener is subscribed (503 otherwise, the body naming what "
     "is down)", tag="status", responses={503: "Redis unavailable, or the event listener not subscribed"},
     same_body=(503,))
async def health(request: web.Request) -> web.Response:
    app = request.app
    hub = app[keys.HUB]
    try:
        await app[keys.REDIS].ping()
    except REDIS_ERRORS as e:
        log.warning("health: Redis unavailable: %s", e)
        return web.json_response({"status": "unavailable", "redis": "down", "error": str(e),
                                  "events_subscribed": False}, status=503)
    subscribed = hub.subscribed.is_set()
    body = {"status": "ok" if subscribed else "unavailable", "redis": "ok", "events_subscribed": subscribed,
            "websockets": hub.subscribers}
    if not subscribed:
        # Live events (the WebSocket relay, status pushes) cannot be served: whatever was published is lost.
        body["error"] = "the event listener is not subscribed"
    return web.json_response(body, status=200 if subscribed else 503)


@doc("Redirect to the web page /ui", tag="ui", status=302, store=False)
async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


def setup(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/health", health)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/status", get_status)

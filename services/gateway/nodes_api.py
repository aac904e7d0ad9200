"""``/api/nodes`` (filtered), ``/api/nodes/external`` (the seed's shape) and ``/api/nodes/{id}``; the
original's ``POST /api/nodes`` and ``DELETE /api/nodes/{id}``, refused as ``original.errors`` decides.

``/api/nodes/external`` is added before ``/api/nodes/{node_id}`` so the variable route cannot take it.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from castray.gateway import keys, node_pages
from castray.gateway.backpressure import UNAVAILABLE
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.openapi import boolean, comma_list, doc, integer, one_of
from castray.gateway.original import clusters as original_clusters
from castray.gateway.original.errors import node_refusal, speaks_original
from castray.gateway.original.status import dumps
from castray.gateway.view_cache import serve
from castray.shared.api import NodeDetail, NodeFieldList, NodeList

STATES = ("ALIVE", "DEAD", "UNREACHABLE")


def _external(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ApiError(400, "external must be true or false", code="bad_filter")


def _state(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw.upper() not in STATES:
        raise ApiError(400, f"state must be one of {', '.join(STATES)}", code="bad_filter")
    return raw.upper()


@doc("Nodes of every cluster, optionally filtered and paginated (filters and pages are served from the view "
     "encoded once per version: ETag and If-None-Match give 304 while the view is unchanged; gzip when "
     "Accept-Encoding allows). Without limit, cursor or fields the body is success, nodes, count, epoch, "
     "version; with limit or cursor it adds total (nodes matching) and next_cursor (null on the last page), "
     "and count is the page's", tag="nodes", response_model=(NodeList, NodeFieldList),
     query={"cluster": "cluster id", "state": one_of("nodes in this state", STATES),
            "external": boolean("only the external clusters' nodes (true), or only the others (false)"),
            "limit": integer("page size", minimum=1, maximum=node_pages.MAX_LIMIT),
            "cursor": "next_cursor of the previous page (pages stay in order across view changes)",
            "fields": comma_list("node fields to return (id always included)", node_pages.NODE_FIELDS)},
     responses={304: "not modified (If-None-Match)", 400: "bad filter, limit, cursor or fields",
                503: UNAVAILABLE})
async def list_nodes(request: web.Request) -> web.Response:
    q = request.query
    flt = (q.get("cluster") or None, _state(q.get("state")), _external(q.get("external")))
    page = node_pages.Page.parse(q)
    cache = request.app[keys.VIEW_CACHE]
    ev = await cache.current()
    return await serve(request, cache, ev.meta, ("nodes", flt, page), lambda: node_pages.build(ev, flt, page))


@doc("External nodes (the seed's shape): success, external_nodes (list), count", tag="nodes",
     responses={304: "not modified (If-None-Match)", 503: UNAVAILABLE})
async def external_nodes(request: web.Request) -> web.Response:
    cache = request.app[keys.VIEW_CACHE]
    ev = await cache.current()
    return await serve(request, cache, ev.meta, ("nodes/external",),
                       lambda: dumps(original_clusters.external_nodes_reply(ev.snapshot)).encode())


@doc("One node", tag="nodes", response_model=NodeDetail, responses={404: "unknown node"})
async def get_node(request: web.Request) -> web.Response:
    node_id = request.match_info["node_id"]
    node = await request.app[keys.VIEW].node(node_id)
    if node is None:
        raise ApiError(404, f"no node {node_id!r} in the view", code="unknown_node")
    return web.json_response(NodeDetail(node=node).model_dump(mode="json"))


class NodeCreate(BaseModel):
    """The original's ``POST /api/nodes`` body."""

    model_config = ConfigDict(extra="ignore")
    node_id: str = Field(min_length=1, max_length=200)
    port: int = 0


@doc("The original's node creation: refused (400, success false, message) since CastRay's nodes are the "
     "Ray nodes it discovers; it does not create them", tag="nodes", body=NodeCreate,
     responses={400: "Always: a reason in message (or a missing node_id)"})
@speaks_original
async def create_node(request: web.Request) -> web.Response:
    body = await parse_body(request, NodeCreate)
    raise node_refusal(body.node_id, create=True)


@doc("The original's node removal: refused (400, success false, message) since CastRay does not stop Ray's "
     "nodes; 404 for a node not in the view", tag="nodes",
     responses={400: "A node of the view: a reason in message", 404: "unknown node"})
@speaks_original
async def delete_node(request: web.Request) -> web.Response:
    node_id = request.match_info["node_id"]
    if await request.app[keys.VIEW].node(node_id) is None:
        raise ApiError(404, f"no node {node_id!r} in the view", code="unknown_node")
    raise node_refusal(node_id, create=False)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/nodes", list_nodes)
    app.router.add_post("/api/nodes", create_node)
    app.router.add_get("/api/nodes/external", external_nodes)  # before {node_id}
    app.router.add_get("/api/nodes/{node_id}", get_node)
    app.router.add_delete("/api/nodes/{node_id}", delete_node)

"""The seed's cluster endpoints (discover, external-info, connect, disconnect) and ``/api/clusters``.

Discover, connect and disconnect are commands to the discovery service over the bus (correlation id,
timeout ``command_timeout``); discovery's typed reply (`castray.shared.replies`) is shaped for the
original's clients by ``original.clusters``. A `CommandError` from discovery becomes its status and code
in JSON, and no answer becomes 503. While discovery changes hands (its leader died and a standby is taking
the lease over), nobody listens for a few seconds: a command is then sent again until ``command_timeout``,
instead of failing at once. The view itself is read from Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from castray.gateway import keys, summaries
from castray.gateway.backpressure import UNAVAILABLE
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.openapi import doc
from castray.gateway.original import clusters as original
from castray.gateway.original.status import dumps
from castray.gateway.view_cache import serve
from castray.shared import codec
from castray.shared.api import ClusterDetail, ClusterList
from castray.shared.errors import ServiceTimeout, ServiceUnavailable
from castray.shared.replies import ConnectReply, DisconnectReply, DiscoverReply

DISCOVERY = "discovery"
MAX_ADDRESS = 512
COMMAND_ERRORS = {
    400: "bad request (address_malformed)", 404: "unknown cluster", 409: "conflict (e.g. the local cluster)",
    403: "address_not_allowed: the address (or what its name resolves to) is outside CASTRAY_DISCOVERY_ALLOW;"
         " nothing was sent to it",
    422: "the address leads to no usable Ray cluster: dashboard_unreachable, not_ray_dashboard,"
         " gcs_unreachable, incompatible_version or timeout (the code says which)",
    503: "discovery is not running or did not answer",
}


class ConnectRequest(BaseModel):
    """A cluster to connect to: a dashboard URL (``http://host:port``) or ``host:port``."""

    model_config = ConfigDict(extra="ignore", strict=True)
    cluster_address: str = Field(min_length=1, max_length=MAX_ADDRESS, examples=["127.0.0.1:8265"])


async def _command(request: web.Request, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run a discovery command, then wait (briefly) until the view holds what it did.

    Discovery answers once its own state is written; the registry applies it a moment later. Waiting
    here means a script that calls connect-external and then external-info reads its own write.
    """
    app = request.app
    result = await _ask_discovery(app, op, args)
    await _view_caught_up(app, timeout=CATCH_UP_TIMEOUT)
    return result


CATCH_UP_TIMEOUT = 2.0
RESEND_EVERY = 0.2


async def _ask_discovery(app: web.Application, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """The discovery command's reply. With no discovery listening, 503 at once, unless a replica holds
    (or held, during this call) the discovery lease: then it is changing hands, and the command is sent
    again until ``command_timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + app[keys.SETTINGS].command_timeout
    changing_hands, leader_key = False, app[keys.NAMES].discovery_leader
    while True:
        try:
            return await app[keys.BUS].request(DISCOVERY, op, args, timeout=max(0.1, deadline - loop.time()))
        except ServiceTimeout:  # it listened, and did not answer in time
            raise
        except ServiceUnavailable:
            changing_hands = changing_hands or bool(await app[keys.REDIS].exists(leader_key))
            if not changing_hands or loop.time() + RESEND_EVERY >= deadline:
                raise
        await asyncio.sleep(RESEND_EVERY)


async def _view_caught_up(app: web.Application, *, timeout: float) -> bool:
    """True once the view includes every discovery event written so far (False after ``timeout``)."""
    redis, names = app[keys.REDIS], app[keys.NAMES]
    source, seq = await redis.hmget(names.discovery_meta, ["source", "seq"])
    if source is None or seq is None:
        return True
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        view = await app[keys.VIEW].meta()
        if view.source == codec.as_text(source) and view.seq >= int(seq):
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.02)


@doc("Run a discovery pass now (coalesced with one already running) and answer with what it found",
     tag="clusters", responses=COMMAND_ERRORS)
async def discover_external(request: web.Request) -> web.Response:
    result = await _command(request, "discover", {})
    return web.json_response(original.discover_reply(DiscoverReply.model_validate(result)))


@doc("External clusters: is_connected, connected_cluster (host:port), connected_clusters, external_nodes",
     tag="clusters", responses={304: "not modified (If-None-Match)", 503: UNAVAILABLE})
async def external_info(request: web.Request) -> web.Response:
    cache = request.app[keys.VIEW_CACHE]
    ev = await cache.current()
    return await serve(request, cache, ev.meta, ("cluster/external-info",),
                       lambda: dumps(original.external_info(ev.snapshot)).encode())


@doc("Connect to a cluster by address; 4xx says what failed (address_malformed, dashboard_unreachable, "
     "not_ray_dashboard, gcs_unreachable, incompatible_version, timeout)", tag="clusters",
     body=ConnectRequest, responses={**COMMAND_ERRORS, 413: "body too large"})
async def connect_external(request: web.Request) -> web.Response:
    body = await parse_body(request, ConnectRequest)
    address = body.cluster_address.strip()
    if not address or any(ch.isspace() for ch in address):
        raise ApiError(400, "cluster_address must be host:port or http://host:port without spaces",
                       code="address_malformed")
    result = await _command(request, "connect", {"cluster_address": address})
    return web.json_response(original.connect_reply(ConnectReply.model_validate(result)))


@doc("Disconnect every external cluster, or one with ?cluster=<id or address>; its nodes leave the view",
     tag="clusters", query={"cluster": "cluster id or address (default: all external clusters)"},
     responses=COMMAND_ERRORS)
async def disconnect_external(request: web.Request) -> web.Response:
    cluster = request.query.get("cluster")
    if cluster is not None and not 0 < len(cluster) <= MAX_ADDRESS:
        raise ApiError(400, "cluster must be a cluster id or address")
    result = await _command(request, "disconnect", {"cluster": cluster} if cluster else {})
    return web.json_response(original.disconnect_reply(DisconnectReply.model_validate(result)))


@doc("Every cluster in the view, with node counts", tag="clusters", response_model=ClusterList,
     responses={304: "not modified (If-None-Match)", 503: UNAVAILABLE})
async def list_clusters(request: web.Request) -> web.Response:
    cache = request.app[keys.VIEW_CACHE]
    ev = await cache.current()

    def build() -> bytes:
        snap = ev.snapshot
        clusters = [summaries.cluster_summary(c, snap) for c in snap.cluster_list()]
        return dumps({"success": True, "clusters": clusters, "count": len(clusters), "epoch": snap.meta.epoch,
                      "version": snap.meta.version}).encode()

    return await serve(request, cache, ev.meta, ("clusters",), build)


@doc("One cluster and its nodes", tag="clusters", response_model=ClusterDetail,
     responses={304: "not modified (If-None-Match)", 404: "unknown cluster", 503: UNAVAILABLE})
async def get_cluster(request: web.Request) -> web.Response:
    cluster_id = request.match_info["cluster_id"]
    cache = request.app[keys.VIEW_CACHE]
    ev = await cache.current()
    cluster = ev.snapshot.clusters.get(cluster_id)
    if cluster is None:
        raise ApiError(404, f"no cluster {cluster_id!r} in the view", code="unknown_cluster")

    def build() -> bytes:
        head = dumps({"success": True, "cluster": summaries.cluster_summary(cluster, ev.snapshot)})[:-1]
        ids, _ = ev.filtered((cluster_id, None, None))
        tail = dumps({"epoch": ev.meta.epoch, "version": ev.meta.version})[1:]
        return head.encode() + b',"nodes":' + ev.nodes_json(ids) + b"," + tail.encode()

    return await serve(request, cache, ev.meta, ("cluster", cluster_id), build)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/cluster/discover-external", discover_external)
    app.router.add_get("/api/cluster/external-info", external_info)
    app.router.add_post("/api/cluster/connect-external", connect_external)
    app.router.add_delete("/api/cluster/disconnect-external", disconnect_external)
    app.router.add_get("/api/clusters", list_clusters)
    app.router.add_get("/api/clusters/{cluster_id}", get_cluster)

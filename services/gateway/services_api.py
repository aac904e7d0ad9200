"""``GET /api/services`` (every replica's heartbeat, stale ones marked, and the transfer queue's depth),
``GET /api/ready`` (readiness), and the gateway's own heartbeat.

``/api/health`` (status_api) says whether this gateway can serve live events; ``/api/ready`` is what an
orchestrator asks before sending it traffic: Redis answers and the event listener is subscribed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from castray.gateway import keys
from castray.gateway.openapi import doc
from castray.shared.api import QueueDepth, Readiness, ServiceList
from castray.shared.bus import REDIS_ERRORS
from castray.shared.heartbeat import Heartbeat, Holds, read_replicas
from castray.shared.names import TRANSFER_GROUP, Names

log = logging.getLogger(__name__)
HEARTBEAT: web.AppKey[Heartbeat] = web.AppKey("heartbeat")


def queue_commands(pipe: Pipeline, names: Names) -> None:
    """Queue the two reads of the transfer request queue's depth (XLEN, XPENDING) on ``pipe``."""
    pipe.xlen(names.transfer_requests)
    pipe.xpending(names.transfer_requests, TRANSFER_GROUP)


def depth_of(length: object, summary: object) -> QueueDepth:
    """The depth from the replies of `queue_commands` (run with ``raise_on_error=False``)."""
    if isinstance(length, Exception):
        raise length
    if isinstance(summary, ResponseError):  # NOGROUP: no worker has created the group yet
        return QueueDepth(length=int(cast(int, length)), pending=0)
    if isinstance(summary, Exception):
        raise summary
    return QueueDepth(length=int(cast(int, length)), pending=int(cast(dict[str, Any], summary)["pending"]))


async def queue_depth(redis: aioredis.Redis, names: Names) -> QueueDepth:
    """XLEN of the request stream and the pending count of the workers' group (0 before either exists),
    in one round trip."""
    pipe = redis.pipeline(transaction=False)
    queue_commands(pipe, names)
    length, summary = await pipe.execute(raise_on_error=False)
    return depth_of(length, summary)


@doc("Every service replica's heartbeat (service, instance, host, pid, started, last beat, version and "
     "what it holds), stale ones marked (no beat for CASTRAY_SERVICE_STALE_BEATS of its intervals), and "
     "the transfer request queue's depth", tag="status", response_model=ServiceList,
     responses={503: "Redis unavailable"})
async def list_services(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    redis, names = app[keys.REDIS], app[keys.NAMES]
    replicas = await read_replicas(redis, names, stale_beats=settings.service_stale_beats,
                                   forget_after=settings.service_forget_s)
    body = ServiceList(services=replicas, count=len(replicas), stale=sum(r.stale for r in replicas),
                       transfer_queue=await queue_depth(redis, names))
    return web.json_response(body.model_dump(mode="json"))


@doc("Readiness: Redis answers and the event listener is subscribed (503 otherwise, naming what is not)",
     tag="status", response_model=Readiness, responses={503: "Not ready: Redis down or not subscribed"},
     same_body=(503,))
async def ready(request: web.Request) -> web.Response:
    app = request.app
    try:
        await app[keys.REDIS].ping()
    except REDIS_ERRORS as e:
        body = Readiness(ready=False, redis=False, events_subscribed=False, error=f"Redis unavailable: {e}")
        return web.json_response(body.model_dump(), status=503)
    subscribed = app[keys.HUB].subscribed.is_set()
    body = Readiness(ready=subscribed, redis=True, events_subscribed=subscribed,
                     error=None if subscribed else "the event listener is not subscribed")
    return web.json_response(body.model_dump(), status=200 if subscribed else 503)


async def _heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    beat = Heartbeat(app[keys.REDIS], app[keys.NAMES], service="gateway", instance=app[keys.BUS].source,
                     interval=app[keys.SETTINGS].service_beat_s,
                     holds=lambda: Holds(ws_clients=len(app.get(keys.WEBSOCKETS, ()))))
    app[HEARTBEAT] = beat
    beat.start()
    yield
    await beat.close()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/services", list_services)
    app.router.add_get("/api/ready", ready)
    app.cleanup_ctx.append(_heartbeat_ctx)

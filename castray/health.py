"""``castray health``: the container healthcheck of every service.

Exit 0 when the Redis at the configured URL answers PING; with ``--url``, when that URL answers HTTP 2xx
(the gateway checks its own ``/api/health``); and with ``--service``, when that service's replica on this
host has a fresh heartbeat (`castray.shared.heartbeat`). Otherwise print why and exit 1.

"This host's replica" is the heartbeat entry of that service written from this host name by a process
that is still alive here: in a container, the service's own process (a healthcheck runs in the
container's hostname and PID namespace). A live process whose event loop is stuck stops beating, so its
entry goes stale and the check fails; entries of replicas that died are ignored, and removed in time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from urllib.parse import urlsplit

from castray import redis_local
from castray.client import AsyncClient, GatewayError, GatewayUnreachable
from castray.shared.bus import REDIS_ERRORS, connect
from castray.shared.heartbeat import ServiceReplica, read_replicas
from castray.shared.settings import CommonSettings

# ``castray health --service`` names: a service's subcommand, or the kind its heartbeat carries.
SERVICE_KINDS = {"discovery": "discovery", "registry": "node-registry", "node-registry": "node-registry",
                 "transfer": "transfer", "gateway": "gateway"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def own_replicas(replicas: list[ServiceReplica], kind: str, host: str) -> list[ServiceReplica]:
    """The entries of ``kind`` written on ``host`` by a process that still runs."""
    return [r for r in replicas if r.service == kind and r.host == host and _alive(r.pid)]


async def _read(settings: CommonSettings) -> list[ServiceReplica]:
    redis = connect(settings.redis_url, socket_timeout=3)
    try:
        return await read_replicas(redis, settings.names, stale_beats=settings.service_stale_beats,
                                   forget_after=settings.service_forget_s)
    finally:
        await redis.aclose()


def check_service(settings: CommonSettings, service: str) -> str | None:
    """Why ``service``'s replica on this host is unhealthy, or None when its heartbeat is fresh."""
    kind = SERVICE_KINDS[service]
    host = socket.gethostname()
    try:
        replicas = asyncio.run(_read(settings))
    except REDIS_ERRORS as e:
        return f"cannot read the heartbeats: {e}"
    mine = own_replicas(replicas, kind, host)
    if not mine:
        return f"no heartbeat of a running {kind} on {host} in {settings.names.services}"
    stale = [r for r in mine if r.stale]
    if stale:
        return "; ".join(f"{r.instance}: last heartbeat {r.age:.1f} s ago (stale after "
                         f"{settings.service_stale_beats} beats of {r.interval:g} s)" for r in stale)
    return None


def check_url(url: str) -> str | None:
    """None when ``GET url`` answers 2xx, through castray.client (with ``CASTRAY_API_TOKEN`` when set, so a
    gateway's protected endpoint can be checked too); otherwise what went wrong."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def get() -> None:
        async with AsyncClient(f"{parts.scheme}://{parts.netloc}", timeout=5.0) as api:
            await api.request("GET", path)

    try:
        asyncio.run(get())
    except GatewayError as exc:
        return f"{url} answered {exc.http_status}"
    except (GatewayUnreachable, ValueError) as exc:
        return f"{url}: {exc}"
    return None


def main(url: str | None = None, service: str | None = None) -> int:
    settings = CommonSettings()
    found = redis_local.probe(settings.redis_url, timeout=3.0)
    if found.result is not redis_local.RedisCheck.OK:
        print(f"unhealthy: Redis at {found.where}: {found.result.value} {found.detail}", file=sys.stderr)
        return 1
    if service:
        problem = check_service(settings, service)
        if problem is not None:
            print(f"unhealthy: {problem}", file=sys.stderr)
            return 1
    if url:
        problem = check_url(url)
        if problem is not None:
            print(f"unhealthy: {problem}", file=sys.stderr)
            return 1
    return 0

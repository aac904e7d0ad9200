"""The gateway's app factory: REST, WebSocket relay, web page.

`create_app(settings)` builds the whole service; `main()` only loads settings and runs it. Each feature
lives in its own module with a ``setup(app)`` that adds its routes (and background tasks).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from castray.gateway import keys
from castray.gateway.auth import auth_middleware
from castray.gateway.errors import error_middleware
from castray.gateway.log_ids import log_ids_middleware
from castray.gateway.metrics import metrics_middleware
from castray.gateway.origin import BrowserPolicy, browser_guard
from castray.gateway.settings import GatewaySettings
from castray.shared import bus as busmod

log = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    # Named, so that an operator (or a test) can tell the gateway's connections apart in CLIENT LIST.
    client = busmod.connect(settings.redis_url, client_name=f"{settings.namespace}:gateway")
    app[keys.REDIS] = client
    app[keys.NAMES] = settings.names
    app[keys.BUS] = busmod.Bus(client, settings.names, source=app[keys.INSTANCE])
    yield
    await client.aclose()


INSTANCE_HEADER = "X-CastRay-Instance"


async def _name_instance(request: web.Request, response: web.StreamResponse) -> None:
    """Which process answered (several may serve one port), on every response, a 401 too: so only its
    `public_tag`, never its host or process id (``GET /api/services``' names end with the same tag)."""
    bus = request.app.get(keys.BUS)
    if bus is not None:
        response.headers[INSTANCE_HEADER] = busmod.public_tag(bus.source)


def create_app(settings: GatewaySettings, *, instance: str | None = None) -> web.Application:
    """The whole gateway for ``settings``; tests and ``main()`` call the same factory. ``instance``: this
    replica's name (in its log lines, heartbeat and events; `main` gives the logs' own), else a new one."""
    # log_ids_middleware is outermost, so that every line a request logs names the ids it is about;
    # metrics_middleware next, to count what clients got; error_middleware next, so that refusals
    # are JSON too; a browser's cross-site request is refused (403) before its token is even looked at.
    app = web.Application(middlewares=[log_ids_middleware, metrics_middleware, error_middleware,
                                       browser_guard, auth_middleware],
                          client_max_size=settings.max_body_bytes)
    app[keys.SETTINGS] = settings
    app[keys.INSTANCE] = instance or busmod.instance_name("gateway")
    app[keys.BROWSER_POLICY] = BrowserPolicy.from_settings(settings)
    app.cleanup_ctx.append(_redis_ctx)
    app.on_response_prepare.append(_name_instance)
    # Feature modules are imported here so that each one's routes are declared in one place.
    from castray.gateway import features

    for feature in features.ALL:
        feature.setup(app)
    for route in app.router.routes():
        if route.method != "HEAD":
            log.debug("route %s %s", route.method, route.resource.canonical if route.resource else "")
    return app

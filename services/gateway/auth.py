"""Optional bearer-token check for ``/api/*`` and ``/ws`` (on when ``CASTRAY_API_TOKEN`` is set).

Browsers cannot set headers on a WebSocket, so ``/ws`` also accepts ``?token=``. Health endpoints stay
open so that orchestrators can probe them.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from castray.gateway import keys
from castray.gateway.errors import ApiError, Handler

OPEN_PATHS = frozenset({"/api/health"})


def _protected(path: str) -> bool:
    return (path.startswith("/api/") or path == "/ws") and path not in OPEN_PATHS


def _presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path == "/ws":
        return request.query.get("token")
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[keys.SETTINGS].api_token
    if token and _protected(request.path):
        given = _presented(request)
        if given is None:
            raise ApiError(401, "this gateway needs a token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "wrong token", code="bad_token")
    return await handler(request)

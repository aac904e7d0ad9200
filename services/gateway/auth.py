"""Bearer-token check for ``/api/*``, ``/ws`` and ``/metrics`` (on when ``CASTRAY_API_TOKEN`` is set).

A browser cannot set headers on a WebSocket, so ``/ws`` also takes the token as a subprotocol,
``castray.bearer.<token in unpadded base64url>`` (beside ``castray.v1``, the one the server selects, so
the token is never echoed back), as Kubernetes does. Never in the query string, which proxies and logs
keep. Health endpoints stay open so that orchestrators can probe them, and so does the docs page
(``/api/docs``, a static page like ``/ui``: the spec and the calls it makes need the token).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from castray.gateway import keys
from castray.gateway.errors import ApiError, Handler

OPEN_PATHS = frozenset({"/api/health", "/api/ready", "/api/docs"})
PROTECTED_PATHS = frozenset({"/ws", "/metrics"})  # outside /api/ but not open: metrics name the nodes
WS_PROTOCOL = "castray.v1"
TOKEN_PROTOCOL_PREFIX = "castray.bearer."


def is_protected(path: str) -> bool:
    """Whether ``path`` needs the token (when the gateway has one)."""
    return (path.startswith("/api/") or path in PROTECTED_PATHS) and path not in OPEN_PATHS


def token_protocol(token: str) -> str:
    """The subprotocol that carries ``token`` on a WebSocket handshake."""
    return TOKEN_PROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _from_protocols(header: str) -> str | None:
    for item in header.split(","):
        value = item.strip()
        if value.startswith(TOKEN_PROTOCOL_PREFIX):
            encoded = value[len(TOKEN_PROTOCOL_PREFIX):]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, ValueError):
                raise ApiError(401, "the token subprotocol is not base64url", code="bad_token") from None
    return None


def _presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path == "/ws":
        return _from_protocols(request.headers.get("Sec-WebSocket-Protocol", ""))
    return None


def _check_protocols(request: web.Request) -> None:
    """A token subprotocol comes with ``castray.v1``. Without it aiohttp would log the offered protocols
    (a warning that they do not overlap), token included: refuse before the upgrade instead."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if any(p.startswith(TOKEN_PROTOCOL_PREFIX) for p in offered) and WS_PROTOCOL not in offered:
        raise ApiError(400, f"offer the subprotocol '{WS_PROTOCOL}' with the token's", code="bad_request")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/ws":
        _check_protocols(request)
    token = request.app[keys.SETTINGS].api_token
    if token and is_protected(request.path):
        given = _presented(request)
        if given is None:
            raise ApiError(401, "this gateway needs a token: send 'Authorization: Bearer <token>' (on /ws, "
                           f"or the subprotocol '{TOKEN_PROTOCOL_PREFIX}<base64url token>')")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "wrong token", code="bad_token")
    return await handler(request)

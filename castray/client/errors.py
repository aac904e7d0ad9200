"""What a gateway call can fail with, one class per condition under `CastRayError`, so a caller catches
`NotFound` or `Unauthorized` and never compares status codes or code strings.

The gateway's error body is ``{"error", "code", "status", ...}`` (``castray.gateway.errors.error_body``);
each class keeps the message, the gateway's code and the whole body for what else it says (``fields`` of a
validation error, ``max_size`` of a too-large upload).
"""

from __future__ import annotations

from typing import Any, ClassVar

from castray.shared.errors import CastRayError


class ClientError(CastRayError):
    """Base of every error `castray.client` raises."""


class GatewayUnreachable(ClientError, ConnectionError):
    """No answer at the gateway's URL: nothing listens there, a timeout, or the connection broke. Also a
    `ConnectionError`, so code that retries on those retries on this."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the gateway at {url}: {reason}")
        self.url = url
        self.reason = reason


class GatewayError(ClientError):
    """The gateway answered with an error status; subclasses name the condition."""

    status: ClassVar[int] = 0

    def __init__(self, status: int, message: str, *, code: str = "error",
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.http_status = status
        self.message = message
        self.code = code
        self.body = body or {}


class BadRequest(GatewayError):
    """400 or 422: the request itself is wrong (a bad field, an unusable address)."""

    status = 400


class Unauthorized(GatewayError):
    """401: no token, or the wrong one (``CASTRAY_API_TOKEN``)."""

    status = 401


class Forbidden(GatewayError):
    """403: refused by the gateway's origin or address policy."""

    status = 403


class NotFound(GatewayError):
    """404: no such transfer, upload, node or cluster."""

    status = 404


class Conflict(GatewayError):
    """409: the state forbids it (a transfer already finished, a node not alive)."""

    status = 409


class TooLarge(GatewayError):
    """413: the body (an upload) is over the gateway's limit."""

    status = 413


class Unavailable(GatewayError):
    """503 or 504: Redis or a service behind the gateway does not answer."""

    status = 503


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequest, 422: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: TooLarge, 503: Unavailable, 504: Unavailable}


def error_for(status: int, body: Any) -> GatewayError:
    """The exception for an error answer (``body``: its JSON, or its text when it was not JSON)."""
    fields = body if isinstance(body, dict) else {}
    message = str(fields.get("error") or fields.get("message") or body or f"HTTP {status}")
    cls = _BY_STATUS.get(status, GatewayError)
    return cls(status, message, code=str(fields.get("code") or "error"), body=fields)

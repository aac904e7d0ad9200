"""Errors the gateway answers with, and the one middleware that turns them into JSON.

Handlers raise `ApiError` (one of its subclasses here, or one with a status and code), a `CommandError`
from the bus, or a `CodedError`; Redis failing is a 503; anything else becomes a logged 500 with no
traceback sent to the client. `error_middleware` is the one place that turns them into HTTP answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from castray.shared.bus import REDIS_DOWN
from castray.shared.errors import CastRayError, CodedError, CommandError
from castray.shared.sizes import format_size

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
ErrorShape = Callable[[dict[str, Any]], dict[str, Any]]


class ApiError(CastRayError):
    """An error a client caused or must know about: ``status`` and a machine-readable ``code``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _default_code(status)
        self.details = details
        self.headers: dict[str, str] = {}  # sent with the answer (e.g. Retry-After)


class QuotaExceeded(ApiError):
    """Storing ``needed`` more bytes would take the gateway's files past its quota (507)."""

    def __init__(self, *, quota: int, used: int, needed: int) -> None:
        super().__init__(507, f"storage quota exceeded: {format_size(needed)} more would take the stored "
                         f"files to {format_size(used + needed)}, over the quota of {format_size(quota)} "
                         f"({format_size(used)} used)", code="storage_quota_exceeded",
                         quota=quota, used=used, needed=needed)


class FreeSpaceLow(ApiError):
    """Storing ``needed`` more bytes would leave less free space than the floor on the data disk (507)."""

    def __init__(self, *, free: int, floor: int, needed: int) -> None:
        super().__init__(507, f"not enough free disk space: {format_size(needed)} more would leave less than "
                         f"the floor of {format_size(floor)} free ({format_size(free)} free now)",
                         code="storage_floor_reached", free=free, floor=floor, needed=needed)


class MessageTooLarge(ApiError):
    """The content of a message is over ``max_message_bytes`` (413)."""

    def __init__(self, *, size: int, max_bytes: int) -> None:
        super().__init__(413, f"message content is {size} bytes, over the limit of {max_bytes}; send a file "
                         "as a transfer instead (POST /api/upload, POST /api/transfers)",
                         code="message_too_large", size=size, max_bytes=max_bytes)


class PortInUse(CastRayError):
    """The gateway's port is taken: the service stops with this message instead of a traceback."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} is in use; pass --port or set CASTRAY_PORT")
        self.host, self.port = host, port


def _default_code(status: int) -> str:
    return {400: "bad_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed",
            409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "unprocessable",
            503: "service_unavailable", 504: "timeout"}.get(status, "error")


def error_body(status: int, message: str, code: str, **details: Any) -> dict[str, Any]:
    """The JSON shape of every error (``success`` kept for the original CastRay's clients)."""
    return {"success": False, "error": message, "code": code, "status": status, **details}


def json_error(status: int, message: str, code: str | None = None, *,
               shape: ErrorShape | None = None, **details: Any) -> web.Response:
    body = error_body(status, message, code or _default_code(status), **details)
    return web.json_response(shape(body) if shape else body, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A handler may carry, under this attribute, a function that reshapes its error bodies: the original
# CastRay's endpoints add its ``message`` key that way (``original.errors.speaks_original``). Refusals by
# the other middlewares (403, 401) on such a route are reshaped too, since the route is matched first.
ERROR_SHAPE = "__error_shape__"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    shape: ErrorShape | None = getattr(request.match_info.handler, ERROR_SHAPE, None)
    try:
        return await handler(request)
    except ApiError as e:
        response = json_error(e.status, e.message, e.code, shape=shape, **e.details)
        response.headers.update(e.headers)
        if e.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="castray"'
        return response
    except (CommandError, CodedError) as e:
        return json_error(e.status, e.message, e.code, shape=shape)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = e.reason if e.status != 413 else "request body too large"
        if isinstance(e, web.HTTPMethodNotAllowed):
            message = f"method {e.method} not allowed here; use {', '.join(sorted(e.allowed_methods))}"
        elif e.status == 404:
            message = f"no such endpoint: {request.path}"
        response = json_error(e.status, message, shape=shape)
        for header in ("Allow", "WWW-Authenticate"):
            if header in e.headers:
                response.headers[header] = e.headers[header]
        return response
    except REDIS_DOWN as e:  # not all of REDIS_ERRORS: an OSError here is as likely a disk's as Redis's
        log.warning("redis unavailable: %s", e)
        return json_error(503, "the event store (Redis) is unavailable", "redis_unavailable", shape=shape)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error", "internal", shape=shape)


def is_json_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type: what no HTML form and no CORS-simple fetch can send."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The request body as JSON, or a 400 (415 when it is not labelled JSON) that says what is wrong."""
    if not request.can_read_body:
        if required:
            raise ApiError(400, "request body is empty; send a JSON object")
        return {}
    # A web page of another site can post text/plain or a form without a preflight: never read those.
    given = request.headers.get("Content-Type")
    if not is_json_type(given or ""):
        raise ApiError(415, f"send the body as JSON with 'Content-Type: application/json' (got "
                       f"{given or 'no Content-Type'})", code="unsupported_media_type")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise ApiError(413, "request body too large") from e
    if not raw.strip():
        if required:
            raise ApiError(400, "request body is empty; send a JSON object")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from e
    except RecursionError as e:  # e.g. [[[[...]]]] nested a hundred thousand deep
        raise ApiError(400, "request body is nested too deeply") from e


async def parse_body(request: web.Request, model: type[M], *, required: bool = True) -> M:
    """The JSON body validated as ``model``; a 400 listing each bad field otherwise."""
    data = await read_json(request, required=required)
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        fields = [{"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                  for err in e.errors()]
        summary = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields[:5])
        raise ApiError(400, f"invalid request: {summary}", code="validation_error", fields=fields) from e

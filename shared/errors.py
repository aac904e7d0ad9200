"""Errors shared across services. Each carries the fields a caller needs, chained with ``from``."""

from __future__ import annotations

from redis.exceptions import RedisError

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
"""Redis failed us: out of reach, timed out, hung up, or refused a command (OOM, READONLY). Every caller
treats these alike (log, back off, retry or leave the work pending), so there is one tuple of them."""


class CastRayError(Exception):
    """Base of every CastRay error."""


class EventDecodeError(CastRayError):
    """Bytes from Redis that are not a valid CastRay event."""

    def __init__(self, message: str, *, channel: str | None = None, raw_len: int = 0) -> None:
        super().__init__(f"{message} (channel={channel!r}, {raw_len} bytes)")
        self.channel = channel
        self.raw_len = raw_len


class CommandError(CastRayError):
    """A command sent over the bus failed; ``status`` is the HTTP status a gateway should answer."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ServiceUnavailable(CommandError):
    """No service answered a command in time (503)."""

    def __init__(self, message: str, *, code: str = "service_unavailable") -> None:
        super().__init__(message, status=503, code=code)

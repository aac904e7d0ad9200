"""Every CastRay error, as one hierarchy under `CastRayError`: one class per condition, each carrying the
fields a caller needs, chained with ``from``. Callers match on classes, never on code strings.

- `CodedError`: a refusal whose HTTP status and machine-readable code are class attributes. A service
  raises it where the condition arises; the bus turns it into a failed reply (`Bus._answer`), and the
  gateway's error middleware into JSON.
- `CommandError`: what a failed reply becomes again on the asking side (`Bus.request`): the other
  process's status and code, as data, since its classes do not cross the bus.
- Errors of one service live in its own ``errors`` module (``castray.discovery.errors``,
  ``castray.gateway.errors``, ``castray.transfer.errors``, ``castray.errors`` for the CLI); the ones
  several packages raise live here.

Standard library only: the node agent imports it on nodes where only its own modules exist
(``castray.transfer.shipping``). The one tuple of Redis failures is ``castray.shared.bus.REDIS_ERRORS``.
"""

from __future__ import annotations

from typing import ClassVar


class CastRayError(Exception):
    """Base of every CastRay error."""


class CodedError(CastRayError):
    """A refusal with a fixed ``status`` (the HTTP status a gateway answers) and ``code``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    """No service answered a command (503): none listens on its channel."""

    def __init__(self, message: str, *, code: str = "service_unavailable") -> None:
        super().__init__(message, status=503, code=code)


class ServiceTimeout(ServiceUnavailable):
    """A service listened to a command and did not answer in time (503, ``timeout``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


class AddressNotAllowed(CodedError):
    """A host outside ``CASTRAY_DISCOVERY_ALLOW``: refused before any packet is sent (403)."""

    status = 403
    code = "address_not_allowed"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} is not an address CastRay may contact ({reason}); "
                         "add it to CASTRAY_DISCOVERY_ALLOW to allow it")
        self.host = host


class SizeError(CastRayError, ValueError):
    """A size string that is not a size."""


class ConfinementError(CastRayError, ValueError):
    """The path would leave its root (``..``, absolute, or a symlink below the root) or is not usable."""

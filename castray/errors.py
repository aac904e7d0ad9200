"""The CLI's errors, under `castray.shared.errors.CastRayError`; each message says what the user must do.

`Interrupted` alone is no error: it is a signal turned into an exception (as `KeyboardInterrupt`), and
derives from `BaseException` so that no ``except Exception`` on the way swallows it.
"""

from __future__ import annotations

from castray.shared.errors import CastRayError


class SetupError(CastRayError):
    """Something the user must fix; the message is one line that says what."""


class RedisSetupError(CastRayError, RuntimeError):
    """Redis cannot be used and should not be replaced: the message says what to do."""


class JoinError(CastRayError, RuntimeError):
    """The cluster could not be joined; the message says why."""


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind from wherever we are, then clean up."""

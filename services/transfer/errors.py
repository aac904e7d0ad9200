"""The transfer service's errors, under `castray.shared.errors.CastRayError`.

Standard library only (besides that base): the node agent ships `TransferError` to nodes where only its
own modules exist (``castray.transfer.shipping``).
"""

from __future__ import annotations

from castray.shared.errors import CastRayError


class TransferError(CastRayError):
    """A failure with a reason meant for the user (the message is shown as is)."""


class PlanError(CastRayError):
    """The transfer cannot run at all; the message says why."""


class NotReady(PlanError):
    """The transfer cannot run yet: ``what`` it waits for is not in the node view yet."""

    def __init__(self, what: str) -> None:
        super().__init__(f"waiting for {what}")
        self.what = what


class WaitCancelled(CastRayError):
    """The transfer was cancelled while it waited."""


class DriverError(CastRayError):
    """The driver could not be started or died."""


class LeaseLost(CastRayError):
    """Another replica holds the transfer now."""


class UnreadableRecord(CastRayError):
    """A stored transfer record no model reads: it is given up at once (it would fail the same way on
    every delivery), never guessed at."""

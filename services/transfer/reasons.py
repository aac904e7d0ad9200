"""Short, readable reasons for the Ray and agent failures a transfer meets (`reason`)."""

from __future__ import annotations

from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    OwnerDiedError,
    RayTaskError,
)


def reason(e: BaseException) -> str:
    """A short, readable reason for a Ray or agent failure."""
    text = str(e)
    if isinstance(e, ActorDiedError) and "error raised in its creation task" in text:
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return f"node agent could not start there: {last[:300]}"  # e.g. an import its Python lacks
    if isinstance(e, ActorDiedError | NodeDiedError):
        return "node died during the transfer"
    if isinstance(e, ActorUnavailableError):
        return "node became unreachable during the transfer"
    if isinstance(e, ObjectLostError | OwnerDiedError):
        return "chunk lost in transit (a node holding it died)"
    if isinstance(e, GetTimeoutError):
        return "node did not answer in time"
    if isinstance(e, RayTaskError):
        cause = getattr(e, "cause", None)
        if cause is not None and not isinstance(cause, RayTaskError):
            return str(cause) or type(cause).__name__
    return (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]

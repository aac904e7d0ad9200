"""The original CastRay's error shape (its page shows ``message``) and the refusals only its endpoints
have. The gateway's error middleware (``castray.gateway.errors``) answers every error; a handler marked
with `speaks_original` gets its errors in this shape.

``POST /api/nodes`` and ``DELETE /api/nodes/{id}`` created and removed CastRay's own actor nodes. Our nodes
are Ray's own nodes, found by discovery; CastRay does not start or stop them. Both answer 400 in the
original's shape (``success: false`` and a ``message`` saying so), so the original page shows the reason
instead of "undefined", and a script fails visibly rather than believing a node was made. Giving them a
meaning (a named agent on a Ray node) would create something nothing else in CastRay uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from castray.gateway.errors import ERROR_SHAPE, ApiError

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

NODES_ARE_RAYS = ("CastRay does not create or remove nodes: its nodes are the Ray nodes of the clusters it "
                  "watches, found by discovery. Start a node with 'ray start --address=<head>' (or "
                  "'castray join'); stop it with 'ray stop' on its machine.")


def error(body: dict[str, Any]) -> dict[str, Any]:
    """The original's error shape on top of ours: its page shows ``message``."""
    return {**body, "message": body.get("error", "")}


def speaks_original(handler: H) -> H:
    """Mark ``handler`` as one of the original's endpoints: its errors carry ``message`` too."""
    setattr(handler, ERROR_SHAPE, error)
    return handler


def node_refusal(node_id: str, *, create: bool) -> ApiError:
    """The 400 for a node CastRay does not create or remove (see the module docstring)."""
    verb = "create" if create else "remove"
    return ApiError(400, f"cannot {verb} node {node_id!r}: {NODES_ARE_RAYS}", code="nodes_are_ray_nodes")

"""The ids a request is about, on every line logged while it is handled.

A route's ``{transfer_id}``, ``{cluster_id}`` or ``{node_id}`` goes into the log context
(`castray.shared.log.log_context`) for the whole request, middlewares included; a request that creates a
transfer adds its id once it has one (`transfer_intake.enqueue`). The context is reset after each request,
so a keep-alive connection's next request starts without them.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from castray.shared.log import log_context


@web.middleware
async def log_ids_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    with log_context(transfer_id=info.get("transfer_id"), cluster_id=info.get("cluster_id"),
                     node_id=info.get("node_id")):
        return await handler(request)

"""Text and JSON messages to nodes (the original's ``POST /api/send``, ``GET /api/nodes/{id}/messages``).

Content is capped at ``max_message_bytes`` (413 beyond). Each message is stored once and each recipient
keeps a reference to it among its newest ``messages_per_node`` (`castray.gateway.message_store`); a
sender that is a node of the view keeps a ``sent`` one. Every cast is announced as ``message-sent`` on
``names.message_events``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from castray.gateway import keys, message_store
from castray.gateway.errors import ApiError, MessageTooLarge, parse_body
from castray.gateway.openapi import doc, integer
from castray.gateway.original import messages as original
from castray.gateway.original.messages import CastMessage, CastResponse
from castray.gateway.transfers_api import query_int
from castray.shared.events import MessageSent, NodeInfo

TAG = "messages"
MAX_COUNT = 1000


@doc("Send a text or JSON message to one node, several, or every alive node", tag=TAG, body=CastMessage,
     response_model=CastResponse,
     responses={400: "Invalid message or recipients", 404: "No recipient is a known node",
                409: "No recipient is alive", 413: "Content over max_message_bytes"})
async def send(request: web.Request) -> web.Response:
    started = time.perf_counter()
    msg = await parse_body(request, CastMessage)
    app = request.app
    settings = app[keys.SETTINGS]
    content = _content(msg, settings.max_message_bytes)
    redis, names = app[keys.REDIS], app[keys.NAMES]
    delivered, failed, sender = await _recipients(app, msg)
    message_id = msg.id or uuid.uuid4().hex
    entry = original.message_entry(msg, content, message_id)
    await message_store.save(redis, names, entry, recipients=delivered, sender=sender.id if sender else None,
                             per_node=settings.messages_per_node, kept=settings.messages_kept)
    await app[keys.BUS].publish(names.message_events, MessageSent(
        message_id=message_id, cast_type=msg.cast_type, sender=msg.sender, recipients=delivered))
    return web.json_response(original.cast_response(msg, delivered=delivered, failed=failed,
                                                    delivery_time=time.perf_counter() - started,
                                                    message_id=message_id))


def _content(msg: CastMessage, max_bytes: int) -> Any:
    if msg.message_type == "file":
        raise ApiError(400, "files are not sent as messages: upload the file (POST /api/upload) and "
                            "queue a transfer (POST /api/transfers)", code="use_transfers")
    text = msg.content if isinstance(msg.content, str) else json.dumps(msg.content, ensure_ascii=False)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageTooLarge(size=size, max_bytes=max_bytes)
    if msg.message_type == "json" and isinstance(msg.content, str):
        try:
            return json.loads(msg.content)
        except ValueError as e:
            raise ApiError(400, f"message_type json needs JSON content: {e}") from e
    return msg.content


async def _recipients(app: web.Application, msg: CastMessage) -> tuple[list[str], list[str], NodeInfo | None]:
    """(delivered ids, failed ids, the sender's node if it is one); 4xx when nobody can receive."""
    sender = await app[keys.VIEW].node(msg.sender)
    if msg.cast_type == "broadcast":
        nodes = await app[keys.VIEW].nodes()
        # From a node: every other alive node of its cluster; from outside: every alive node.
        alive = sorted(n.id for n in nodes.values() if n.state == "ALIVE" and n.id != msg.sender
                       and (sender is None or n.cluster_id == sender.cluster_id))
        if not alive:
            raise ApiError(409, "no alive node to broadcast to", code="no_alive_nodes")
        return alive, [], sender
    wanted = list(dict.fromkeys(r.strip() for r in msg.recipients if r.strip()))
    if msg.cast_type == "unicast" and len(wanted) != 1:
        raise ApiError(400, f"unicast needs exactly one recipient (got {len(wanted)})", code="bad_recipients")
    if not wanted:
        raise ApiError(400, "multicast needs at least one recipient", code="bad_recipients")
    nodes = await app[keys.VIEW].nodes(wanted)
    delivered = [r for r in wanted if r in nodes and nodes[r].state == "ALIVE"]
    failed = [r for r in wanted if r not in delivered]
    if not delivered:
        unknown = [r for r in wanted if r not in nodes]
        if unknown:
            raise ApiError(404, f"unknown node(s): {', '.join(unknown)}", code="unknown_node",
                           unknown=unknown, failed_recipients=failed)
        raise ApiError(409, f"recipient node(s) not alive: {', '.join(failed)}", code="node_not_alive",
                       failed_recipients=failed)
    return delivered, failed, sender


@doc("A node's messages, newest first", tag=TAG,
     query={"count": integer("At most this many", minimum=1, maximum=MAX_COUNT, default=50)},
     responses={400: "Bad count", 404: "Unknown node"})
async def node_messages(request: web.Request) -> web.Response:
    node_id = request.match_info["node_id"]
    count = query_int(request, "count", 50, 1, MAX_COUNT)
    app = request.app
    redis, names = app[keys.REDIS], app[keys.NAMES]
    messages = await message_store.read(redis, names, node_id, count)
    if not messages and await message_store.is_empty(redis, names, node_id) \
            and await app[keys.VIEW].node(node_id) is None:
        raise ApiError(404, f"unknown node {node_id!r}", code="unknown_node")
    return web.json_response(messages)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/send", send)
    app.router.add_get("/api/nodes/{node_id}/messages", node_messages)

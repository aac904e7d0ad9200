"""``/ws``: a snapshot with its version, then deltas, for each client; topics, resume, resnapshot.

A session subscribes to the hub *before* it reads the snapshot, so nothing published in between is
missed; queued deltas at or below the snapshot's version are dropped. A delta that skips a version
(a message lost while the hub was reconnecting) is filled from the view log, or answered with a fresh
snapshot. All sends happen in one task per client; the handler itself only reads client frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from castray.gateway import keys
from castray.gateway.auth import WS_PROTOCOL
from castray.gateway.errors import ApiError
from castray.gateway.event_hub import TOPICS, Frame, Resync, Subscriber, delta_message, dumps, view_topic
from castray.gateway.openapi import comma_list, doc, integer
from castray.gateway.original.status import STATUS_TOPIC, StatusCache
from castray.gateway.view_cache import EncodedView, ViewCache
from castray.shared.bus import REDIS_ERRORS
from castray.shared.lifecycle import stop_task
from castray.shared.view import ViewReader

log = logging.getLogger(__name__)
MAX_CLIENT_FRAME = 64 * 1024
STALE_EPOCHS_KEPT = 8


def parse_topics(raw: Any) -> frozenset[str]:
    """``"clusters,nodes"`` or a list of names; empty means every topic."""
    if raw is None or raw == "" or raw == []:
        return frozenset(TOPICS)
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise ApiError(400, "topics must be a comma-separated string or a list of strings")
    topics = frozenset(t.strip() for t in items if t.strip())
    unknown = sorted(topics - set(TOPICS))
    if unknown:
        raise ApiError(400, f"unknown topics {unknown}; choose from {list(TOPICS)}", code="bad_topics")
    return topics or frozenset(TOPICS)


def parse_resume(query: Any) -> tuple[str, int] | None:
    epoch, since = query.get("epoch"), query.get("since")
    if epoch is None and since is None:
        return None
    if not epoch or since is None or not since.isdigit() or len(since) > 18:
        raise ApiError(400, "resume needs both epoch=<epoch> and since=<version> (a non-negative integer)")
    return epoch, int(since)


def snapshot_message(ev: EncodedView, reason: str, topics: tuple[str, ...]) -> bytes:
    """``{type: snapshot, reason, epoch, version, topics, clusters?, nodes?}``, nodes joined from their
    encoded JSON."""
    head = dumps({"type": "snapshot", "reason": reason, "epoch": ev.meta.epoch, "version": ev.meta.version,
                  "topics": list(topics)})[:-1].encode()
    if "clusters" in topics:
        clusters = [c.model_dump(mode="json") for c in ev.snapshot.cluster_list()]
        head += b',"clusters":' + dumps(clusters).encode()
    if "nodes" in topics:
        head += b',"nodes":' + ev.nodes_json(ev.order)
    return head + b"}"


class WsSession:
    """Sends one client its snapshot and deltas, in order, from its hub queue."""

    def __init__(self, ws: web.WebSocketResponse, sub: Subscriber, store: ViewReader, *, replay_limit: int,
                 cache: ViewCache | None = None, status: StatusCache | None = None):
        self.ws = ws
        self.sub = sub
        self.store = store
        self.cache = cache or ViewCache(store)
        self.replay_limit = replay_limit
        self.status = status
        self.epoch = ""
        self.version = 0
        self.stale: list[str] = []

    async def send(self, obj: dict[str, Any] | str | bytes) -> None:
        if isinstance(obj, bytes):  # encoded once for every client
            await self.ws.send_frame(obj, WSMsgType.TEXT)
            return
        await self.ws.send_str(obj if isinstance(obj, str) else dumps(obj))

    async def run(self, resume: tuple[str, int] | None) -> None:
        """Start (snapshot or replay), then forward the queue until the socket closes."""
        try:
            if resume is None or not await self.catch_up(*resume, announce=True):
                await self.snapshot("connect")
            if self.status is not None and STATUS_TOPIC in self.sub.topics:
                # As the original, a status_update at once (the bytes every client of this version shares).
                await self.send((await self.status.current(self.cache)).message)
            while not self.ws.closed:
                item = await self.sub.queue.get()
                if isinstance(item, Resync):
                    await self.snapshot(item.reason)
                elif item.is_view:
                    await self.on_view(item)
                elif item.topic == STATUS_TOPIC:
                    status = self.sub.take_status()
                    if status is not None:
                        await self.send(status.text)
                elif item.topic == "direct" or item.topic in self.sub.topics:
                    await self.send(item.text)
        except REDIS_ERRORS as e:
            log.warning("ws: Redis unavailable, closing client: %s", e)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "error", "code": "redis_unavailable",
                                 "error": "the event store (Redis) is unavailable; reconnect later"})
            await self.ws.close(code=1011, message=b"redis unavailable")
        except (ConnectionError, RuntimeError) as e:  # the client went away mid-send
            log.debug("ws: send failed: %s", e)
            await self.ws.close()
        except Exception:
            log.exception("ws: session failed")
            await self.ws.close(code=1011, message=b"internal error")

    async def snapshot(self, reason: str) -> None:
        """The view now, as bytes built once per version, reason and topics, whatever the clients."""
        ev = await self.cache.current()
        self._move_to(ev.meta.epoch, ev.meta.version)
        topics = tuple(sorted(self.sub.topics))
        body = self.cache.body(ev.meta, ("ws-snapshot", reason, topics),
                               lambda: snapshot_message(ev, reason, topics))
        await self.send(body.raw)

    def _move_to(self, epoch: str, version: int) -> None:
        if self.epoch and self.epoch != epoch and self.epoch not in self.stale:
            self.stale = [*self.stale[-(STALE_EPOCHS_KEPT - 1):], self.epoch]
        self.epoch, self.version = epoch, version

    async def catch_up(self, epoch: str, since: int, *, announce: bool = False) -> bool:
        """Replay the log after ``since``; False when it no longer holds every delta needed."""
        replay = await self.store.replay(epoch, since, limit=self.replay_limit)
        if replay is None:
            return False
        meta, deltas = replay
        self._move_to(epoch, since)
        if announce:
            await self.send({"type": "resumed", "epoch": epoch, "since": since, "version": meta.version,
                             "topics": sorted(self.sub.topics)})
        for delta in deltas:
            if view_topic(delta) in self.sub.topics:
                await self.send(delta_message(delta))
            self.version = delta.version
        return True

    async def on_view(self, frame: Frame) -> None:
        assert frame.epoch is not None and frame.version is not None
        if frame.epoch in self.stale:
            return
        if frame.reset:
            if frame.epoch != self.epoch or frame.version > self.version:
                await self.snapshot("reset")
            return
        if frame.epoch != self.epoch:
            await self.snapshot("epoch")
            return
        # The one gap check on the way to a client (the page has none, see live.js): here the view log can
        # fill a gap without the client reconnecting, and only the session knows which topics it sent.
        if frame.version > self.version + 1 and not await self.catch_up(self.epoch, self.version):
            await self.snapshot("gap")
            return
        if frame.version != self.version + 1:
            return  # already sent (from the snapshot or the log)
        if frame.topic in self.sub.topics:
            await self.send(frame.text)
        self.version = frame.version

    def on_client_frame(self, data: str) -> None:
        """``{"op": "subscribe", "topics": [...]}``, ``{"op": "snapshot"}`` or ``{"op": "ping"}``."""
        try:
            msg = json.loads(data)
            if not isinstance(msg, dict):
                raise ApiError(400, "a client frame must be a JSON object with an 'op'")
            op = msg.get("op")
            if op == "subscribe":
                self.sub.topics = parse_topics(msg.get("topics"))
                self.sub.resync("subscribe")
            elif op == "snapshot":
                self.sub.resync("requested")
            elif op == "ping":
                self.sub.offer(Frame("direct", dumps({"type": "pong"})))
            else:
                raise ApiError(400, f"unknown op {op!r}; use subscribe, snapshot or ping")
        except ValueError:
            self._reply_error("a client frame must be JSON", "bad_request")
        except RecursionError:  # [[[[...]]]] nested thousands deep: json.loads gives up by recursing
            self._reply_error("a client frame is nested too deeply", "bad_request")
        except ApiError as e:
            self._reply_error(e.message, e.code)

    def _reply_error(self, message: str, code: str) -> None:
        self.sub.offer(Frame("direct", dumps({"type": "error", "code": code, "error": message})))


@doc("WebSocket: snapshot then deltas (topics: clusters, nodes, transfers, messages, and status: the "
     "original's status_update, on change and every 5 s; resume with epoch and since)", tag="events",
     query={"topics": comma_list("topics (default all, status included)", TOPICS),
            "epoch": "resume: the epoch you had (with since)",
            "since": integer("resume: the last version you applied (with epoch)", minimum=0,
                             maximum=10**18 - 1)},
     status=101, store=False,
     responses={400: "bad topics or resume parameters", 401: "missing or wrong token (Authorization: Bearer, "
                "or the subprotocol castray.bearer.<base64url token> beside castray.v1)",
                403: "another site's page (Origin), or a Host this gateway does not answer to"})
async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[keys.SETTINGS]
    topics = parse_topics(request.query.get("topics"))
    resume = parse_resume(request.query)
    # castray.v1 is selected when offered, so a browser that sent its token as a subprotocol beside it
    # gets a protocol back (it requires one) and the token is never echoed.
    # compress=False: per-message deflate would compress each frame again for each client.
    ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat, max_msg_size=MAX_CLIENT_FRAME,
                               protocols=(WS_PROTOCOL,), compress=False)
    await ws.prepare(request)
    hub = app[keys.HUB]
    sub = hub.subscribe(topics, settings.ws_queue_size)  # before the snapshot: nothing is missed
    session = WsSession(ws, sub, app[keys.VIEW], replay_limit=settings.ws_replay_limit,
                        cache=app[keys.VIEW_CACHE], status=hub.status)
    app[keys.WEBSOCKETS].add(ws)
    sender = asyncio.create_task(session.run(resume), name="gateway.ws.send")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                session.on_client_frame(msg.data)
            elif msg.type == WSMsgType.BINARY:
                session.on_client_frame("")  # answered with an error frame
    finally:
        # Bookkeeping first: the handler itself may be cancelled while it waits for the sender to stop.
        hub.unsubscribe(sub)
        app[keys.WEBSOCKETS].discard(ws)
        await stop_task(sender)
    return ws


async def _close_all(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[keys.WEBSOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutdown")


def setup(app: web.Application) -> None:
    app[keys.WEBSOCKETS] = set()
    app.router.add_get("/ws", websocket)
    app.on_shutdown.append(_close_all)

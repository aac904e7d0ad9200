"""One Redis subscription per gateway process, fanned out to every WebSocket client.

The hub listens to the view, transfer and message channels, turns each event into the JSON a client
receives (once, not once per client) and offers it to every `Subscriber`. Each subscriber has a
bounded queue: when a client cannot keep up, its queue is dropped and replaced by a single `Resync`,
so the client gets a fresh snapshot instead of unbounded buffering. After a (re)subscription every
subscriber resyncs too, since pub/sub loses what was published while the link was down.

Every message is encoded to UTF-8 bytes once per event, here, and those bytes are what every client's
socket is sent (the WebSocket is not compressed per client, which would encode each message again for
each of them).

The hub also pushes the original CastRay's messages, shaped by the ``original`` adapter: ``status_update`` to
the clients of the ``status`` topic only (a client that names its topics opts in by naming it; a bare
``/ws``, as the original's page opens, has every topic), at most once per ``status_interval`` (and no
faster than `STATUS_BYTES_PER_SECOND` allows for its size) while the view or the transfers change and
every ``status_idle_interval`` seconds otherwise, built once and shared by every client; a client that is
behind holds one, the newest, never a backlog of them. And the ``external_cluster_*`` messages.

``setup(app)`` puts the gateway's one `ViewReader`, its `ViewCache` and its hub on the app, before the other
features.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from castray.gateway import keys
from castray.gateway.original import live
from castray.gateway.original import status as original
from castray.gateway.view_cache import ViewCache
from castray.shared.bus import REDIS_ERRORS, Bus
from castray.shared.events import (
    ClusterDelta,
    Event,
    MessageSentEvent,
    TransferEvent,
    ViewChanged,
    ViewChangedEvent,
    ViewResetEvent,
    ids_of,
)
from castray.shared.lifecycle import stop_task
from castray.shared.log import log_context
from castray.shared.view import ViewReader

log = logging.getLogger(__name__)

TOPICS: tuple[str, ...] = ("clusters", "nodes", "transfers", "messages", original.STATUS_TOPIC)
VIEW_TOPICS = frozenset({"clusters", "nodes"})
# A status_update is the whole view: pushes on change are spaced so that it costs each client at most this
# (a 5 MB status of 10k nodes goes every 5 s, as the original's idle push; a small one every status_interval).
STATUS_BYTES_PER_SECOND = 1024 * 1024
dumps = original.dumps


@dataclass(frozen=True, slots=True)
class Frame:
    """One message for clients. View deltas carry ``epoch``/``version`` so a session can order them."""

    topic: str  # clusters | nodes | transfers | messages | status | direct
    text: str | bytes  # bytes: UTF-8 JSON encoded once and sent as it is to every client
    epoch: str | None = None
    version: int | None = None
    reset: bool = False  # a view-reset: take a fresh snapshot

    @property
    def is_view(self) -> bool:
        return self.version is not None


@dataclass(frozen=True, slots=True)
class Resync:
    """Send this client a fresh snapshot (``reason`` is told to the client)."""

    reason: str


QueueItem = Frame | Resync


@dataclass(eq=False)
class Subscriber:
    """A client's bounded queue and topics."""

    topics: frozenset[str]
    maxsize: int
    overflows: int = 0
    queue: asyncio.Queue[QueueItem] = field(init=False)
    # The newest status_update not yet sent: a client that is behind gets the latest one, once, rather
    # than every whole view pushed while it was busy.
    status: Frame | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    def wants(self, frame: Frame) -> bool:
        # Every view delta reaches a view client, even of a topic it filtered out, so that its
        # version stays contiguous; the session sends only the topics asked for.
        if frame.topic == "direct":  # a reply to this client's own frame
            return True
        if frame.is_view:
            return bool(self.topics & VIEW_TOPICS)
        return frame.topic in self.topics

    def offer(self, item: QueueItem) -> None:
        """Queue ``item``; on overflow drop everything queued and ask for a snapshot instead."""
        if isinstance(item, Frame) and not self.wants(item):
            return
        if isinstance(item, Frame) and item.topic == original.STATUS_TOPIC:
            queued, self.status = self.status is not None, item
            if queued:
                return  # its place in the queue is kept; the session sends the newest
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflows += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.status = None
            self.queue.put_nowait(Resync("overflow"))

    def resync(self, reason: str) -> None:
        self.offer(Resync(reason))

    def take_status(self) -> Frame | None:
        """The newest status_update queued (None: already sent)."""
        frame, self.status = self.status, None
        return frame


# --- event -> client JSON ------------------------------------------------------------------------


def delta_message(p: ViewChanged) -> dict[str, Any]:
    """A view delta as clients see it: the delta as the registry published it (see `castray.shared.view`)."""
    return p.model_dump(mode="json")


def view_topic(p: ViewChanged) -> str:
    return "nodes" if p.kind == "node" else "clusters"


def encoded(message: dict[str, Any]) -> bytes:
    """A message as the UTF-8 bytes every client is sent: encoded here, once per event."""
    return dumps(message).encode()


def delta_frame(p: ViewChanged) -> Frame:
    return Frame(view_topic(p), encoded(delta_message(p)), epoch=p.epoch, version=p.version)


def event_message(event: Event) -> dict[str, Any]:
    """Transfer and message events: ``{"type": <event type>, **payload, "time": ...}``."""
    return {"type": event.type, **event.payload.model_dump(mode="json"), "time": event.time}


def frames_for(event: Event) -> list[Frame]:
    """What clients receive for one event from Redis."""
    if isinstance(event, ViewChangedEvent):
        return [delta_frame(event.payload)]
    if isinstance(event, ViewResetEvent):
        return [Frame("clusters", "", epoch=event.payload.epoch, version=event.payload.version, reset=True)]
    if isinstance(event.payload, TransferEvent):
        frames = [Frame("transfers", encoded(event_message(event)))]
        legacy = live.transfer_activity(event)
        return frames + ([Frame("transfers", encoded(legacy))] if legacy else [])
    if isinstance(event, MessageSentEvent):
        return [Frame("messages", encoded(event_message(event))),
                Frame("messages", encoded(live.message_received(event)))]
    return []


# --- the hub -------------------------------------------------------------------------------------


def status_gap(interval: float, size: int) -> float:
    """Seconds from one status push to the next change-driven one, for a status_update of ``size`` bytes."""
    return max(interval, size / STATUS_BYTES_PER_SECOND)


class EventHub:
    """The process's single subscription to the event channels, fanned out to subscribers."""

    def __init__(self, bus: Bus, store: ViewReader, *, cache: ViewCache | None = None,
                 status_interval: float = 1.0,
                 status_idle_interval: float = original.STATUS_IDLE_INTERVAL) -> None:
        self.bus = bus
        self.store = store
        self.cache = cache or ViewCache(store)
        self.status_interval = status_interval
        self.status_idle_interval = status_idle_interval
        self.status = original.StatusCache(store.redis, store.names)
        self.subscribed = asyncio.Event()
        self.events = 0
        # Called with each event once it is relayed (the gateway's metrics count transfers from them).
        self.observers: list[Callable[[Event], None]] = []
        self._subs: set[Subscriber] = set()
        self._dirty = asyncio.Event()
        self._status_size = 0
        self.news = live.ClusterNews()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def overflows(self) -> int:
        return sum(s.overflows for s in self._subs)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="gateway.hub.listen"),
                       asyncio.create_task(self._status_loop(), name="gateway.hub.status")]

    async def close(self) -> None:
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []

    def subscribe(self, topics: Iterable[str], maxsize: int) -> Subscriber:
        sub = Subscriber(frozenset(topics), maxsize)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def publish(self, frame: Frame) -> None:
        for sub in self._subs:
            sub.offer(frame)

    async def _on_connect(self) -> None:
        # Anything published while we were not subscribed is lost: every client takes a snapshot.
        self.news.restart((await self.cache.current()).snapshot.clusters)
        self.subscribed.set()
        for sub in self._subs:
            sub.resync("reconnect")
        self._dirty.set()

    async def _listen(self) -> None:
        names = self.bus.names
        try:
            channels = (names.view_events, names.transfer_events, names.message_events)
            async for event in self.bus.subscribe(*channels, on_connect=self._on_connect,
                                                  on_disconnect=self.subscribed.clear):
                self.events += 1
                try:
                    self._dispatch(event)
                except Exception:  # a bug with one event must not end the relay for every client
                    # The event's ids on this line only: no context is set per event on the relay's path.
                    with log_context(**ids_of(event)):
                        log.exception("could not relay %s", event.type)
        finally:
            self.subscribed.clear()

    def _dispatch(self, event: Event) -> None:
        for frame in frames_for(event):
            self.publish(frame)
        if original.is_transfer_change(event):
            self.status.transfers_changed()
            self._dirty.set()
        elif isinstance(event, ViewResetEvent):
            self.news.view_reset()
            self._dirty.set()
        elif isinstance(event, ViewChangedEvent):
            self._dirty.set()
            if isinstance(event.payload, ClusterDelta):
                self.news.note(event.payload)
        for observe in self.observers:
            observe(event)

    async def _status_loop(self) -> None:
        """Push status_update (and the original's cluster messages) at most once per ``status_interval``
        on change, and every ``status_idle_interval`` seconds without one."""
        while True:
            # The interval counts from the last push, so the pause after it is part of the idle wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(),
                                       max(0.0, self.status_idle_interval - self.status_interval))
            self._dirty.clear()
            if self._subs or self.news.reset_seen:
                try:
                    await self._push_status()
                except REDIS_ERRORS as e:
                    log.warning("status push skipped, Redis unavailable: %s", e)
                    self._dirty.set()
            else:
                self.news.drop()
            await asyncio.sleep(status_gap(self.status_interval, self._status_size))

    async def _push_status(self) -> None:
        if self.news.pending:
            messages = self.news.take((await self.cache.current()).snapshot)
            for message in messages if self._subs else []:
                self.publish(Frame("clusters", encoded(message)))
        if any(original.STATUS_TOPIC in sub.topics for sub in self._subs):
            update = (await self.status.current(self.cache)).message
            self._status_size = len(update)
            self.publish(Frame(original.STATUS_TOPIC, update))


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    view = ViewReader(app[keys.REDIS], app[keys.NAMES])
    app[keys.VIEW] = view
    cache = app[keys.VIEW_CACHE] = ViewCache(view)
    hub = EventHub(app[keys.BUS], view, cache=cache, status_interval=settings.status_interval)
    app[keys.HUB] = hub
    await hub.start()
    yield
    await hub.close()


def setup(app: web.Application) -> None:
    """Put the view reader and the process's one event listener on the app (after Redis), for the others."""
    app.cleanup_ctx.append(_hub_ctx)

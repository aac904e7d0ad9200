"""Typed keys for what the gateway keeps on its `web.Application` (no module globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from aiohttp import web

from castray.gateway.settings import GatewaySettings
from castray.shared.bus import Bus
from castray.shared.names import Names
from castray.shared.view import ViewReader

if TYPE_CHECKING:  # the modules below import this one
    from castray.gateway.backpressure import HeavyGate
    from castray.gateway.event_hub import EventHub
    from castray.gateway.metrics import GatewayMetrics
    from castray.gateway.origin import BrowserPolicy
    from castray.gateway.view_cache import ViewCache

SETTINGS = web.AppKey("settings", GatewaySettings)
# This replica's name: its log lines', heartbeat's and events' (the bus's source).
INSTANCE = web.AppKey("instance", str)
BROWSER_POLICY: web.AppKey[BrowserPolicy] = web.AppKey("browser_policy")
REDIS = web.AppKey("redis", aioredis.Redis)
BUS = web.AppKey("bus", Bus)
NAMES = web.AppKey("names", Names)
VIEW: web.AppKey[ViewReader] = web.AppKey("view")
# The view encoded once per version, and the bodies served from it (REST and /ws snapshots).
VIEW_CACHE: web.AppKey[ViewCache] = web.AppKey("view_cache")
# Slots for the requests that build large view bodies (backpressure: beyond them, 503 overloaded).
HEAVY_GATE: web.AppKey[HeavyGate] = web.AppKey("heavy_gate")
HUB: web.AppKey[EventHub] = web.AppKey("hub")
# Open WebSockets, closed on shutdown so a stop never waits for clients to leave.
WEBSOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("metrics")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")

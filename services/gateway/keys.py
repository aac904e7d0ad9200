"""Typed keys for what the gateway keeps on its `web.Application` (no module globals)."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from castray.gateway.settings import GatewaySettings
from castray.shared.bus import Bus
from castray.shared.names import Names

SETTINGS = web.AppKey("settings", GatewaySettings)
REDIS = web.AppKey("redis", aioredis.Redis)
BUS = web.AppKey("bus", Bus)
NAMES = web.AppKey("names", Names)

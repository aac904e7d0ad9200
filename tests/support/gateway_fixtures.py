"""Fixtures for the gateway tests (load with ``pytest_plugins = ("tests.support.gateway_fixtures",)``):
gateways around the real `create_app`, and a `ViewWriter` on the test's namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from castray.gateway import keys
from castray.gateway.app import create_app
from castray.gateway.settings import GatewaySettings
from castray.shared.names import Names
from tests.support.gateway import ViewWriter
from tests.support.waiting import wait_for

GatewayFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_gateway(namespace: str, redis_url: str) -> AsyncIterator[GatewayFactory]:
    """Start gateways around the real `create_app` (settings overridable); each waits until its event
    listener is subscribed, so nothing a test publishes afterwards is missed."""
    started: list[TestClient] = []

    async def make(*, wait_subscribed: bool = True, **overrides: Any) -> TestClient:
        overrides.setdefault("redis_url", redis_url)
        settings = GatewaySettings(namespace=namespace, **overrides)
        app = create_app(settings)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append(client)
        if wait_subscribed:
            await wait_for(lambda: app[keys.HUB].subscribed.is_set(), what="the gateway's subscription")
        return client

    yield make
    for client in started:
        await client.close()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> TestClient:
    return await make_gateway(status_interval=0.05)


@pytest.fixture
def view(redis_client: aioredis.Redis, names: Names) -> ViewWriter:
    return ViewWriter(redis_client, names)

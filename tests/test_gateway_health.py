"""``/api/health``: 503 naming what is down while the event listener is not subscribed, 200 again once it
has resubscribed (its pub/sub connection killed for real with CLIENT KILL)."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)


async def _kill_pubsub(redis_client: aioredis.Redis, client_name: str) -> int:
    """Kill the pub/sub connections named ``client_name`` (only this test's gateway: Redis is shared)."""
    killed = 0
    for info in await redis_client.client_list(_type="pubsub"):
        if info.get("name") == client_name:
            await redis_client.execute_command("CLIENT", "KILL", "ID", info["id"])
            killed += 1
    return killed


async def test_health_is_503_while_the_listener_is_unsubscribed_then_200(
        make_gateway, redis_client: aioredis.Redis, namespace: str) -> None:
    client = await make_gateway()
    assert (await client.get("/api/health")).status == 200
    assert await _kill_pubsub(redis_client, f"{namespace}:gateway") == 1

    async def unavailable() -> dict[str, object] | None:
        resp = await client.get("/api/health")
        return dict(await resp.json()) if resp.status == 503 else None

    # The listener waits a backoff (>= 25 ms) before it resubscribes: poll faster than that.
    seen: dict[str, object] | None = await wait_for(unavailable, "health to answer 503", deadline=5,
                                                     interval=0.002)
    assert seen is not None, "health never answered 503 after the subscription was killed"
    assert seen["status"] == "unavailable" and seen["redis"] == "ok" and seen["events_subscribed"] is False
    assert "event listener" in str(seen["error"])

    async def healthy() -> bool:
        return (await client.get("/api/health")).status == 200

    await wait_for(healthy, what="health to answer 200 once resubscribed")
    body = await (await client.get("/api/health")).json()
    assert body["events_subscribed"] is True and body["status"] == "ok"

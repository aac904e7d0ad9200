"""/api/send is bounded: its content is capped (413 with the numbers, nothing stored), each message is
stored once however many nodes it goes to, and the bodies kept in all are capped."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray.shared.names import Names
from tests.support.gateway_files import STANDARD_VIEW, gateway, seed_view


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


async def _keys(redis: aioredis.Redis, pattern: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=pattern)]


@pytest.mark.parametrize(("content", "size"), [
    ("x" * 101, 101),
    ("\u00e9" * 51, 102),  # UTF-8 bytes, not characters
    ({"k": "y" * 100}, len('{"k": "' + "y" * 100 + '"}')),
])
async def test_content_over_the_cap_is_413_with_its_numbers_and_nothing_stored(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None,
    content: object, size: int
) -> None:
    async with gateway(namespace, tmp_path / "data", max_message_bytes=100) as client:
        resp = await client.post("/api/send", json={"cast_type": "broadcast", "content": content,
                                                    "message_type": "json" if isinstance(content, dict)
                                                    else "text"})
        body = await resp.json()
        assert resp.status == 413, body
        assert (body["code"], body["size"], body["max_bytes"]) == ("message_too_large", size, 100)
        ok = await client.post("/api/send", json={"cast_type": "unicast", "content": "z" * 100,
                                                  "recipients": ["c1-w1"]})
        assert ok.status == 200, await ok.text()  # exactly at the cap
    assert await _keys(redis_client, names.node_messages("*")) == [names.node_messages("c1-w1").encode()]
    assert len(await _keys(redis_client, names.message("*"))) == 1


async def test_a_broadcast_stores_its_content_once(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None
) -> None:
    content = "broadcast-body-" + "q" * 20_000
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/send", json={"cast_type": "broadcast", "content": content,
                                                    "sender": "c1-head"})
        assert (await resp.json())["recipients_count"] == 2, await resp.text()  # c1-w1, c1-w2
        resp = await client.post("/api/send", json={"cast_type": "broadcast", "content": content})
        assert (await resp.json())["recipients_count"] == 4
        got = {n: await (await client.get(f"/api/nodes/{n}/messages")).json()
               for n in ("c1-head", "c1-w1", "c1-w2", "c2-head")}
    stored = 0
    for key in await _keys(redis_client, f"{names.ns}:*"):
        if await redis_client.type(key) == b"string":
            stored += (await redis_client.get(key) or b"").count(content.encode())
        elif await redis_client.type(key) == b"list":
            stored += sum(v.count(content.encode()) for v in await redis_client.lrange(key, 0, -1))
    assert stored == 2  # once per message, not once per recipient
    assert [m["content"] for m in got["c1-w1"]] == [content, content]
    assert [m["direction"] for m in got["c1-head"]] == ["received", "sent"]
    assert got["c1-head"][1]["recipients"] == ["c1-w1", "c1-w2"]
    assert "recipients" not in got["c1-w1"][0]
    assert [m["content"] for m in got["c2-head"]] == [content]


async def test_the_bodies_kept_in_all_are_capped(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None
) -> None:
    async with gateway(namespace, tmp_path / "data", messages_kept=2) as client:
        for i in range(3):
            resp = await client.post("/api/send", json={"cast_type": "unicast", "content": f"m{i}",
                                                        "recipients": ["c1-w1"]})
            assert resp.status == 200
        got = await (await client.get("/api/nodes/c1-w1/messages")).json()
    assert [m["content"] for m in got] == ["m2", "m1"]
    assert len(await _keys(redis_client, names.message("*"))) == 2
    assert await redis_client.zcard(names.message_index) == 2

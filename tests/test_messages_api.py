"""POST /api/send and GET /api/nodes/{id}/messages: casts to the view's nodes, bounded per-node lists,
the message-sent event."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.events import MessageSentEvent
from castray.shared.names import Names
from tests.support.gateway_files import STANDARD_VIEW, gateway, seed_view


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


async def test_unicast_text_is_stored_and_announced(namespace: str, names: Names, tmp_path: Path,
                                                    redis_client: aioredis.Redis, view: None) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(names.message_events)
    try:
        async with gateway(namespace, tmp_path / "data") as client:
            resp = await client.post("/api/send", json={"cast_type": "unicast", "message_type": "text",
                                                        "content": "hello", "sender": "c1-head",
                                                        "recipients": ["c1-w1"]})
            body = await resp.json()
            assert resp.status == 200, body
            got = await (await client.get("/api/nodes/c1-w1/messages")).json()
            sent = await (await client.get("/api/nodes/c1-head/messages")).json()
        event = None
        async with asyncio.timeout(10):
            while event is None:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    event = codec.decode(msg["data"])
    finally:
        await pubsub.aclose()
    assert body["success"] is True and body["recipients_count"] == 1 and body["failed_recipients"] == []
    assert body["delivery_time"] >= 0 and body["message_id"]
    assert len(got) == 1
    assert (got[0]["direction"], got[0]["content"], got[0]["sender"]) == ("received", "hello", "c1-head")
    assert got[0]["message_id"] == body["message_id"]
    assert sent[0]["direction"] == "sent" and sent[0]["recipients"] == ["c1-w1"]
    assert isinstance(event, MessageSentEvent)
    assert event.payload.message_id == body["message_id"] and event.payload.recipients == ["c1-w1"]


async def test_multicast_broadcast_and_partial_failures(namespace: str, tmp_path: Path, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/send", json={"cast_type": "multicast", "message_type": "json",
                                                    "content": {"k": [1, 2]},
                                                    "recipients": ["c1-w1", "c2-head", "ghost", "c1-dead"]})
        body = await resp.json()
        assert resp.status == 200, body
        assert body["recipients_count"] == 2 and sorted(body["failed_recipients"]) == ["c1-dead", "ghost"]
        c2 = await (await client.get("/api/nodes/c2-head/messages")).json()
        assert c2[0]["content"] == {"k": [1, 2]}
        # from a node: every other alive node of its cluster
        resp = await client.post("/api/send", json={"cast_type": "broadcast", "content": "all",
                                                    "sender": "c1-head"})
        body = await resp.json()
        assert body["recipients_count"] == 2  # c1-w1, c1-w2 (not the sender, not the dead one)
        # from outside: every alive node
        resp = await client.post("/api/send", json={"cast_type": "broadcast", "content": "everyone"})
        assert (await resp.json())["recipients_count"] == 4
        w1 = await (await client.get("/api/nodes/c1-w1/messages")).json()
    assert [m["content"] for m in w1] == ["everyone", "all", {"k": [1, 2]}]  # newest first


@pytest.mark.parametrize(("body", "status"), [
    ({"cast_type": "unicast", "content": "x", "recipients": []}, 400),
    ({"cast_type": "unicast", "content": "x", "recipients": ["c1-w1", "c1-w2"]}, 400),
    ({"cast_type": "multicast", "content": "x", "recipients": []}, 400),
    ({"cast_type": "shout", "content": "x", "recipients": ["c1-w1"]}, 400),
    ({"cast_type": "unicast", "message_type": "file", "content": "x", "recipients": ["c1-w1"]}, 400),
    ({"cast_type": "unicast", "message_type": "json", "content": "{bad", "recipients": ["c1-w1"]}, 400),
    ({"content": "x", "recipients": ["c1-w1"]}, 400),
    ({"cast_type": "unicast", "content": "x", "recipients": ["ghost"]}, 404),
    ({"cast_type": "unicast", "content": "x", "recipients": ["c1-dead"]}, 409),
])
async def test_send_errors(namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis,
                           view: None, body: Any, status: int) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/send", json=body)
        answer = await resp.json()
    assert resp.status == status, answer
    assert answer["success"] is False
    assert [k async for k in redis_client.scan_iter(match=names.node_messages("*"))] == []


async def test_messages_are_bounded_and_counted(namespace: str, names: Names, tmp_path: Path,
                                                redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data", messages_per_node=5) as client:
        for i in range(12):
            resp = await client.post("/api/send", json={"cast_type": "unicast", "content": f"m{i}",
                                                        "recipients": ["c1-w2"]})
            assert resp.status == 200
        assert await redis_client.llen(names.node_messages("c1-w2")) == 5
        newest = await (await client.get("/api/nodes/c1-w2/messages")).json()
        two = await (await client.get("/api/nodes/c1-w2/messages", params={"count": "2"})).json()
        assert (await client.get("/api/nodes/c1-w2/messages", params={"count": "0"})).status == 400
        assert (await client.get("/api/nodes/c1-w2/messages", params={"count": "x"})).status == 400
        assert (await client.get("/api/nodes/ghost/messages")).status == 404
        assert await (await client.get("/api/nodes/c1-w1/messages")).json() == []  # known, no messages
    assert [m["content"] for m in newest] == ["m11", "m10", "m9", "m8", "m7"]
    assert [m["content"] for m in two] == ["m11", "m10"]

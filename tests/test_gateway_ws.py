"""/ws over a real WebSocket against the real gateway and Redis: snapshot, deltas, resume, gaps, topics,
slow clients, one Redis subscription for many clients, the original's event names, auth."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from castray.gateway import keys
from castray.gateway.auth import token_protocol
from castray.node_registry.view import MergedView
from castray.shared.bus import Bus
from castray.shared.events import (
    ClusterFound,
    FieldChange,
    MessageSent,
    NodeChanged,
    TransferProgress,
    TransferStarted,
    wrap,
)
from castray.shared.names import Names
from tests.support.gateway import ViewWriter, cluster, node, of_type, recv, recv_until
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

VIEW_TYPES = ("snapshot", "resumed", "node-changed", "cluster-found", "cluster-lost", "cluster-removed")


def is_view(m: dict[str, Any]) -> bool:
    return m.get("type") in VIEW_TYPES


async def next_view(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return (await recv_until(ws, is_view))[0]


async def test_snapshot_then_deltas(gateway, view: ViewWriter) -> None:
    c1 = cluster("c1")
    await view.reset(epoch="e1", clusters=[c1], nodes=[node("a", head=True)])
    async with gateway.ws_connect("/ws") as ws:
        snap = await next_view(ws)
        assert snap["type"] == "snapshot" and snap["reason"] == "connect"
        assert (snap["epoch"], snap["version"]) == ("e1", 1)
        assert [c["id"] for c in snap["clusters"]] == ["c1"]
        assert [n["id"] for n in snap["nodes"]] == ["c1-a"]
        # No topics named: every topic, the original's status_update too (its page connects this way).
        assert snap["topics"] == ["clusters", "messages", "nodes", "status", "transfers"]

        b = node("b")
        await view.node(b, "added")
        assert await next_view(ws) == {
            "type": "node-changed",
            "epoch": "e1",
            "version": 2,
            "change": "added",
            "id": "c1-b",
            "node": b.model_dump(mode="json"),
            "changed": {},
        }
        dead = node("b", state="DEAD")
        await view.node(dead, "updated", changed={"state": FieldChange(old="ALIVE", new="DEAD")})
        msg = await next_view(ws)
        assert (msg["type"], msg["version"], msg["change"]) == ("node-changed", 3, "updated")
        assert msg["node"]["state"] == "DEAD" and msg["changed"] == {"state": {"old": "ALIVE", "new": "DEAD"}}

        await view.lost(c1)
        msg = await next_view(ws)
        assert (msg["type"], msg["version"], msg["id"], msg["cluster"]["state"]) == (
            "cluster-lost",
            4,
            "c1",
            "lost",
        )
        await view.node(dead, "removed")
        msg = await next_view(ws)
        assert (msg["type"], msg["change"], msg["node"]) == ("node-changed", "removed", None)
        await view.removed(c1)
        msg = await next_view(ws)
        assert (msg["type"], msg["version"], msg["cluster"]) == ("cluster-removed", 6, None)


async def test_deltas_published_before_connect_are_not_repeated(gateway, view: ViewWriter) -> None:
    """Deltas at or below the snapshot's version are dropped: each version reaches the client once."""
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    async with gateway.ws_connect("/ws?topics=nodes") as ws:
        writes = asyncio.create_task(_write_nodes(view, 30))
        snap = await next_view(ws)
        await writes
        versions = [snap["version"]]
        while versions[-1] < view.version:
            msg = await next_view(ws)
            versions.append(msg["version"])
        assert versions == list(range(snap["version"], view.version + 1))


async def test_late_or_repeated_deltas_are_dropped(gateway, view: ViewWriter) -> None:
    """A delta at or below the version the client has (it was in the snapshot, or sent) is not sent."""
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    await view.node(node("a"), publish=False)  # version 2: in the snapshot, its publish arrives late
    async with gateway.ws_connect("/ws?topics=nodes") as ws:
        snap = await next_view(ws)
        assert snap["version"] == 2
        await view.republish(2)
        await view.node(node("b"))  # version 3
        await view.republish(3)
        await view.republish(1)  # the reset of this epoch: old news
        await view.node(node("c"))  # version 4
        got = [await next_view(ws), await next_view(ws)]
        assert [(m["version"], m["id"]) for m in got] == [(3, "c1-b"), (4, "c1-c")]


async def _write_nodes(view: ViewWriter, count: int) -> None:
    for i in range(count):
        await view.node(node(f"n{i}"))


async def test_resume_replays_from_the_log_then_goes_live(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")])  # version 1
    await _write_nodes(view, 4)  # versions 2..5
    async with gateway.ws_connect("/ws?epoch=e1&since=2") as ws:
        first = await next_view(ws)
        assert first == {
            "type": "resumed",
            "epoch": "e1",
            "since": 2,
            "version": 5,
            "topics": ["clusters", "messages", "nodes", "status", "transfers"],
        }
        replayed = [await next_view(ws) for _ in range(3)]
        assert [(m["type"], m["version"], m["id"]) for m in replayed] == [
            ("node-changed", 3, "c1-n1"),
            ("node-changed", 4, "c1-n2"),
            ("node-changed", 5, "c1-n3"),
        ]
        await view.node(node("live"))
        live = await next_view(ws)
        assert (live["type"], live["version"], live["id"]) == ("node-changed", 6, "c1-live")


async def test_resume_up_to_date_sends_nothing_to_replay(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    async with gateway.ws_connect("/ws?epoch=e1&since=1") as ws:
        assert (await next_view(ws))["type"] == "resumed"
        await view.node(node("x"))
        assert (await next_view(ws))["version"] == 2


@pytest.mark.parametrize("query", ["epoch=other&since=2", "epoch=e1&since=99", "epoch=e1&since=1"])
async def test_resume_falls_back_to_a_snapshot(
    gateway, view: ViewWriter, redis_client: aioredis.Redis, names: Names, query: str
) -> None:
    """Another epoch, a version from the future, or a log trimmed past since+1 -> a snapshot."""
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    await _write_nodes(view, 4)
    await redis_client.xtrim(names.view_log, minid="4-0", approximate=False)  # versions 1..3 are gone
    async with gateway.ws_connect(f"/ws?{query}") as ws:
        snap = await next_view(ws)
        assert (snap["type"], snap["epoch"], snap["version"]) == ("snapshot", "e1", 5)
        assert len(snap["nodes"]) == 4


async def test_a_lost_message_is_filled_from_the_log(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    async with gateway.ws_connect("/ws") as ws:
        assert (await next_view(ws))["type"] == "snapshot"
        await view.node(node("lost"), publish=False)  # version 2 never reaches the gateway live
        await view.node(node("seen"))  # version 3
        got = [await next_view(ws), await next_view(ws)]
        assert [(m["version"], m["id"]) for m in got] == [(2, "c1-lost"), (3, "c1-seen")]


async def test_view_reset_sends_a_fresh_snapshot(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("a")])
    async with gateway.ws_connect("/ws") as ws:
        assert (await next_view(ws))["epoch"] == "e1"
        await view.reset(epoch="e2", clusters=[cluster("c2", port=8266)], nodes=[node("z", "c2")])
        snap = await next_view(ws)
        assert (snap["type"], snap["reason"], snap["epoch"], snap["version"]) == (
            "snapshot",
            "reset",
            "e2",
            1,
        )
        assert [n["id"] for n in snap["nodes"]] == ["c2-z"]
        await view.node(node("y", "c2"))
        assert (await next_view(ws))["version"] == 2


@pytest.mark.parametrize("query", ["topics=bogus", "since=3", "epoch=e1&since=-1", "epoch=e1&since=x"])
async def test_bad_ws_parameters_are_400_json(gateway, query: str) -> None:
    resp = await gateway.get(
        f"/ws?{query}",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["success"] is False and body["status"] == 400


async def test_topic_filter_and_subscribe_frame(
    gateway, view: ViewWriter, redis_client: aioredis.Redis, names: Names
) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("a")])
    bus = Bus(redis_client, names, source="test-transfer")
    async with gateway.ws_connect("/ws?topics=transfers") as ws:
        snap = await recv(ws)
        assert snap["type"] == "snapshot" and "nodes" not in snap and "clusters" not in snap
        await view.node(node("b"))
        await bus.publish(
            names.transfer_events,
            TransferProgress(
                transfer_id="t1", node_id="c1-a", bytes_done=5, bytes_total=10, rate=2.5, eta=2.0
            ),
        )
        msg = await recv(ws)  # the node delta, had it been sent, would have come first
        assert msg["type"] == "transfer-progress"
        assert {
            k: msg[k] for k in ("transfer_id", "node_id", "bytes_done", "bytes_total", "rate", "eta")
        } == {
            "transfer_id": "t1",
            "node_id": "c1-a",
            "bytes_done": 5,
            "bytes_total": 10,
            "rate": 2.5,
            "eta": 2.0,
        }

        await ws.send_json({"op": "subscribe", "topics": ["nodes"]})
        snap = await recv(ws)
        assert (snap["type"], snap["reason"], snap["topics"]) == ("snapshot", "subscribe", ["nodes"])
        assert "clusters" not in snap and sorted(n["id"] for n in snap["nodes"]) == ["c1-a", "c1-b"]
        await view.lost(cluster("c1"))  # clusters topic: not sent
        await view.node(node("c"))
        msg, before = await recv_until(ws, of_type("node-changed"), skip=("status_update",))
        assert msg["id"] == "c1-c" and before == []

        await ws.send_json({"op": "subscribe", "topics": ["nope"]})
        err = await recv_until(ws, of_type("error"), skip=("status_update",))
        assert err[0]["code"] == "bad_topics"
        await ws.send_str("not json")
        assert (await recv_until(ws, of_type("error"), skip=("status_update",)))[0]["code"] == "bad_request"
        await ws.send_json({"op": "ping"})
        await recv_until(ws, of_type("pong"), skip=("status_update",))


async def test_messages_topic_relays_message_events(
    gateway, redis_client: aioredis.Redis, names: Names
) -> None:
    bus = Bus(redis_client, names, source="test-messages")
    async with gateway.ws_connect("/ws?topics=messages") as ws:
        await recv(ws)
        await bus.publish(
            names.message_events,
            MessageSent(message_id="m1", cast_type="unicast", sender="c1-a", recipients=["c1-b"]),
        )
        first, second = await recv(ws), await recv(ws)
        assert first["type"] == "message-sent" and first["recipients"] == ["c1-b"]
        assert second == {
            "type": "message_received",
            "message_id": "m1",
            "cast_type": "unicast",
            "sender": "c1-a",
        }


async def test_slow_client_gets_a_fresh_snapshot_not_unbounded_buffering(
    make_gateway, view: ViewWriter
) -> None:
    client = await make_gateway(ws_queue_size=4, status_interval=3600)
    hub = client.server.app[keys.HUB]
    await view.reset(epoch="e1", clusters=[cluster("c1")])
    big = {f"k{i}": "x" * 1000 for i in range(50)}  # ~50 KB a delta: socket buffers fill quickly
    async with client.ws_connect("/ws?topics=nodes") as ws:
        assert (await recv(ws))["type"] == "snapshot"
        # The client reads nothing while deltas pour in, until its queue has overflowed at least once.
        i = 0
        while hub.overflows == 0:
            await view.node(node("slow").model_copy(update={"labels": big, "last_seen": float(i)}), "updated")
            i += 1
            assert i < 5000, "the queue never overflowed"
            if i % 20 == 0:
                await asyncio.sleep(0.01)
        await view.node(node("marker"))
        final = view.version
        # Reading again: a snapshot marked overflow, then contiguous deltas up to the last version.
        msgs: list[dict[str, Any]] = []
        while not msgs or msgs[-1].get("version") != final:
            msgs.append(await recv(ws))
        resnap = [m for m in msgs if m["type"] == "snapshot"]
        assert resnap and resnap[-1]["reason"] == "overflow"
        after = msgs[msgs.index(resnap[-1]) :]
        assert [m["version"] for m in after] == list(range(after[0]["version"], final + 1))
        assert len(msgs) < i  # most of the deltas were replaced by the snapshot


async def test_many_clients_share_one_redis_subscription(
    gateway, view: ViewWriter, redis_client: aioredis.Redis, names: Names
) -> None:
    await view.reset(epoch="e1")
    async with aiohttp.ClientSession() as session:
        url = gateway.make_url("/ws?topics=nodes")
        sockets = [await session.ws_connect(url) for _ in range(8)]
        try:
            for ws in sockets:
                assert (await recv(ws))["type"] == "snapshot"
            counts = dict(await redis_client.pubsub_numsub(names.view_events, names.transfer_events))
            assert list(counts.values()) == [1, 1]
            await view.node(node("n"))
            for ws in sockets:
                assert (await next_view(ws))["id"] == "c1-n"
        finally:
            for ws in sockets:
                await ws.close()
    await wait_for(lambda: gateway.server.app[keys.HUB].subscribers == 0, what="subscribers to leave")


async def test_original_event_names_and_status_update(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1")
    # status_update is opt-in once topics are named (it is the whole view): this client names it.
    async with gateway.ws_connect("/ws?topics=clusters,nodes,status") as ws:
        await recv(ws)
        manual = cluster("m1", port=8266, found_by="manual")
        await view.found(manual)
        await view.node(node("h", "m1", head=True))
        discovered, _ = await recv_until(ws, of_type("external_cluster_discovered"))
        assert [c["id"] for c in discovered["discovered_clusters"]] == ["m1"]
        assert isinstance(discovered["external_nodes_count"], int)
        connected, _ = await recv_until(ws, of_type("external_cluster_connected"))
        assert connected["cluster_address"] == "127.0.0.1:8266"
        status, _ = await recv_until(
            ws, lambda m: m["type"] == "status_update" and m["data"]["total_nodes"] == 1
        )
        assert status["data"]["active_nodes"] == 1 and status["data"]["node_statuses"][0]["node_id"] == "m1-h"

        await view.found(manual.model_copy(update={"last_seen": 5.0}))  # an update, not news
        await view.removed(manual)
        msg, before = await recv_until(ws, of_type("external_cluster_disconnected"))
        assert "ray-m1" in msg["message"] and msg["cluster_id"] == "m1"
        assert not [m for m in before if m["type"].startswith("external_cluster_")]


async def test_transfer_events_keep_the_original_transfer_activity(
    gateway, redis_client: aioredis.Redis, names: Names
) -> None:
    bus = Bus(redis_client, names, source="test-transfer")
    async with gateway.ws_connect("/ws?topics=transfers") as ws:
        await recv(ws)
        await bus.publish(
            names.transfer_events,
            TransferStarted(transfer_id="t9", mode="multicast", targets=["a", "b"], file_name="f.bin"),
        )
        started, activity = await recv(ws), await recv(ws)
        assert started["type"] == "transfer-started" and started["targets"] == ["a", "b"]
        assert activity == {
            "type": "transfer_activity",
            "data": {
                "transfer_id": "t9",
                "type": "transfer_start",
                "recipients": ["a", "b"],
                "file_name": "f.bin",
                "description": "multicast f.bin",
            },
        }


async def test_lost_redis_subscription_resyncs_clients(
    gateway, view: ViewWriter, redis_client: aioredis.Redis, namespace: str
) -> None:
    await view.reset(epoch="e1")
    async with gateway.ws_connect("/ws?topics=nodes") as ws:
        await recv(ws)
        name = f"{namespace}:gateway"
        killed = 0
        for c in await redis_client.client_list():
            if c.get("name") == name and int(c.get("psub", 0)) + int(c.get("sub", 0)) > 0:
                killed += await redis_client.client_kill_filter(_id=c["id"])
        assert killed == 1
        await view.node(node("during"), publish=False)
        snap, _ = await recv_until(ws, lambda m: m["type"] == "snapshot" and m["reason"] == "reconnect")
        assert [n["id"] for n in snap["nodes"]] == ["c1-during"]


async def test_token_required_on_ws_when_set(make_gateway) -> None:
    token = "s3cret-token-of-24-chars"
    client = await make_gateway(api_token=token)
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await client.ws_connect("/ws")
    assert e.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:  # never in the query string (logs keep it)
        await client.ws_connect(f"/ws?token={token}")
    assert e.value.status == 401
    async with client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert (await recv(ws))["type"] == "snapshot"


async def test_ws_takes_the_token_as_a_subprotocol_and_never_echoes_it(make_gateway) -> None:
    token = "s3cret/token+with=odd:chars"
    client = await make_gateway(api_token=token)
    async with client.ws_connect("/ws", protocols=("castray.v1", token_protocol(token))) as ws:
        assert ws.protocol == "castray.v1"
        assert (await recv(ws))["type"] == "snapshot"
    for wrong in ("castray.bearer.d3Jvbmc", "castray.bearer.%%%"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect("/ws", protocols=("castray.v1", wrong))
        assert e.value.status == 401


async def test_a_token_subprotocol_without_castray_v1_is_refused_and_never_logged(
        make_gateway, caplog: pytest.LogCaptureFixture) -> None:
    """Offered alone, the token's subprotocol would not overlap ours, and aiohttp would log the offered
    protocols, token included. It is refused before the upgrade instead."""
    token = "s3cret-token-never-in-a-log"
    client = await make_gateway(api_token=token)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect("/ws", protocols=(token_protocol(token),))
    assert e.value.status == 400
    assert token_protocol(token) not in caplog.text


async def test_events_written_by_the_real_registry_reach_the_client(
    gateway, redis_client: aioredis.Redis, names: Names
) -> None:
    """The registry's own writer (Lua scripts) against our reader: the contract, not our copy of it."""
    await redis_client.hset(names.discovery_meta, mapping={"source": "disc", "seq": 0})
    merged = MergedView(redis_client, names)
    created = await merged.resync()
    c1 = cluster("c1")
    async with gateway.ws_connect("/ws") as ws:
        snap = await next_view(ws)
        assert (snap["epoch"], snap["version"]) == (created.epoch, created.version)
        await merged.apply(wrap(ClusterFound(cluster=c1), source="disc", seq=1, time=1.0))
        await merged.apply(wrap(NodeChanged(change="added", node=node("a")), source="disc", seq=2, time=1.0))
        found, added = await next_view(ws), await next_view(ws)
        assert (found["type"], found["cluster"]["id"]) == ("cluster-found", "c1")
        assert (added["type"], added["id"], added["version"]) == (
            "node-changed",
            "c1-a",
            found["version"] + 1,
        )
    async with gateway.ws_connect(f"/ws?epoch={created.epoch}&since={created.version}") as ws:
        assert (await next_view(ws))["type"] == "resumed"
        assert [(await next_view(ws))["type"] for _ in range(2)] == ["cluster-found", "node-changed"]


async def test_redis_down_at_connect_is_an_error_frame_and_a_close(make_gateway) -> None:
    client = await make_gateway(redis_url="redis://127.0.0.1:1/0", wait_subscribed=False)
    async with client.ws_connect("/ws") as ws:
        err = await recv(ws)
        assert (err["type"], err["code"]) == ("error", "redis_unavailable")
        msg = await ws.receive(timeout=15)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1011

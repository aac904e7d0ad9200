"""The event models and the msgpack codec: round trips, the envelope, and rejecting bad bytes."""

from __future__ import annotations

import time

import msgpack
import pytest

from castray.shared import codec, events
from castray.shared.errors import EventDecodeError


def _node(**kw: object) -> events.NodeInfo:
    base: dict[str, object] = {"id": "c1-abc", "ray_node_id": "abc" * 10, "cluster_id": "c1", "name": "head"}
    base.update(kw)
    return events.NodeInfo.model_validate(base)


PAYLOADS = [
    events.ClusterFound(cluster=events.ClusterInfo(id="c1", name="local", dashboard_url="http://h:1")),
    events.ClusterLost(cluster=events.ClusterInfo(id="c1", name="x", state="lost"), reason="3 polls failed"),
    events.ClusterRemoved(cluster=events.ClusterInfo(id="c1", name="x", state="disconnected")),
    events.NodeChanged(change="updated", node=_node(state="DEAD"),
                       changed={"state": events.FieldChange(old="ALIVE", new="DEAD")}),
    events.SourceReset(),
    events.NodeDelta(epoch="e", version=7, change="added", id="c1-abc", node=_node()),
    events.ClusterDelta(epoch="e", version=7, type="cluster-lost", change="lost", id="c1",
                        cluster=events.ClusterInfo(id="c1", name="x", state="lost")),
    events.ViewReset(epoch="e", version=8),
    events.TransferStarted(transfer_id="t", mode="broadcast", bytes_total=10, targets=["a", "b"]),
    events.TransferProgress(transfer_id="t", node_id="a", bytes_done=5, bytes_total=10, rate=1.0, eta=5.0),
    events.TransferCompleted(transfer_id="t", node_id="a", path="/x", sha256="00"),
    events.TransferFailed(transfer_id="t", node_id="b", error="node died"),
    events.TransferCancelled(transfer_id="t"),
    events.MessageSent(message_id="m", cast_type="unicast", sender="s", recipients=["a"]),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.event_type)
def test_every_event_round_trips_with_its_envelope(payload: events.Payload) -> None:
    event = events.wrap(payload, source="discovery@h:1", seq=42, time=time.time())
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert decoded.type == payload.event_type
    assert decoded.payload == payload
    assert (decoded.source, decoded.seq) == ("discovery@h:1", 42)


def test_every_payload_type_has_an_envelope_in_the_union() -> None:
    covered = {type(p) for p in PAYLOADS}
    assert covered == set(events._ENVELOPE_FOR)


def test_node_change_carries_what_changed() -> None:
    event = events.wrap(PAYLOADS[3], source="s", seq=1, time=0.0)
    wire = msgpack.unpackb(codec.encode(event))
    assert wire["type"] == "node-changed"
    assert wire["payload"]["changed"] == {"state": {"old": "ALIVE", "new": "DEAD"}}
    assert set(wire) == {"type", "source", "seq", "time", "payload"}


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"not msgpack at all \xff\xfe", msgpack.packb([1, 2]),
                                 msgpack.packb({"type": "no-such-event", "source": "s", "seq": 1, "time": 0}),
                                 msgpack.packb({"type": "node-changed", "source": "s", "seq": 1, "time": 0,
                                                "payload": {"change": "exploded"}}),
                                 msgpack.packb({"type": "source-reset", "source": "s", "seq": -1, "time": 0,
                                                "payload": {}})])
def test_bad_bytes_are_an_event_decode_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError) as info:
        codec.decode(raw, channel="ch")
    assert info.value.channel == "ch"
    assert info.value.raw_len == len(raw)


def test_records_round_trip_through_encode() -> None:
    node = _node(resources={"CPU": 2.0}, labels={"k": "v"}, is_head=True)
    assert codec.decode_model(codec.encode(node), events.NodeInfo) == node
    with pytest.raises(EventDecodeError):
        codec.decode_model(codec.pack({"id": 1}), events.NodeInfo)

"""Fuzzed decoding of what CastRay reads from Redis: events (pub/sub), stored records and stream entries.
Whatever the bytes (malformed msgpack, wrong types, nesting, huge declared sizes), decoding answers with a
typed `EventDecodeError` (an event or a record) or skips the entry (a stream), never another exception,
so a service logs and skips it and goes on."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from castray.shared import bus, codec, events
from castray.shared.errors import EventDecodeError
from castray.shared.transfers import TransferRecord, UploadRecord

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Plain msgpack data: what another process (or an attacker with Redis access) could have written.
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) \
    | st.binary(max_size=20)
keys = st.text(max_size=10) | st.integers(-(2**63), 2**63)
data = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(keys, inner, max_size=5), max_leaves=30)

# Hand-made byte strings a generator rarely finds: a map keyed by an array (unhashable in Python), a huge
# declared array or string, deep nesting, truncation, trailing bytes.
CRAFTED = [
    bytes([0x81, 0x91, 0x01, 0x02]),                  # {[1]: 2}
    bytes([0xDD, 0xFF, 0xFF, 0xFF, 0xFF]),            # an array of 4 G elements, with none there
    bytes([0xDB, 0xFF, 0xFF, 0xFF, 0xFF]) + b"x",     # a 4 GB string, 1 byte there
    bytes([0x91]) * 100_000 + bytes([0xC0]),          # 100,000 nested arrays
    codec.encode(events.wrap(events.SourceReset(), source="s", seq=1, time=1.0))[:-1],
    codec.encode(events.wrap(events.SourceReset(), source="s", seq=1, time=1.0)) + b"\x00",
    b"",
]


def _event_bytes() -> bytes:
    cancelled = events.TransferCancelled(transfer_id="t")
    return codec.encode(events.wrap(cancelled, source="fuzz", seq=1, time=1.0))


def _decodes_or_refuses(raw: bytes) -> None:
    try:
        codec.decode(raw, channel="fuzz")
    except EventDecodeError:
        pass
    for model in (TransferRecord, UploadRecord, events.NodeInfo, events.ClusterInfo):
        try:
            codec.decode_model(raw, model)
        except EventDecodeError:
            pass


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_are_refused_with_a_decode_error(raw: bytes) -> None:
    _decodes_or_refuses(raw)


@FUZZ
@given(data)
def test_any_msgpack_data_is_refused_with_a_decode_error_unless_it_is_valid(value: Any) -> None:
    _decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_a_valid_event_with_bytes_overwritten_is_refused_or_still_valid(at: int, patch: bytes) -> None:
    good = _event_bytes()
    at %= len(good)
    _decodes_or_refuses(good[:at] + patch + good[at + len(patch):])


def test_crafted_bytes_are_refused_with_a_decode_error() -> None:
    for raw in CRAFTED:
        _decodes_or_refuses(raw)


entry_ids = st.builds(lambda ms, n: f"{ms}-{n}".encode(), st.integers(0), st.integers(0))
entry_fields = st.dictionaries(st.sampled_from([b"data", b"x"]),
                               st.binary(max_size=64) | st.sampled_from(CRAFTED), max_size=2)


@FUZZ
@given(st.lists(st.tuples(entry_ids, entry_fields), max_size=4))
@example([(b"1-0", {b"data": CRAFTED[0]}), (b"2-0", {b"data": msgpack.packb({"a": 1})})])
def test_stream_entries_that_are_not_msgpack_maps_are_skipped_and_the_others_kept(
        entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    out = bus._entries(entries)
    for entry_id, fields in out:
        assert isinstance(entry_id, str) and isinstance(fields, dict)
    assert len(out) <= len(entries)

"""Asking a Ray GCS (given as host:port) where its dashboard is, without importing Ray.

The GCS speaks gRPC. Its key-value store holds the dashboard's address (key ``dashboard``, namespace
``dashboard``) and the session name (key ``session_name``, namespace ``session``), measured on Ray 2.60.
We call ``ray.rpc.InternalKVGcsService/InternalKVGet`` with a hand-encoded protobuf request (two bytes
fields) through grpcio's generic unary call, so no Ray or generated code is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from castray.discovery import errors

_KV_GET = "/ray.rpc.InternalKVGcsService/InternalKVGet"
_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 1024 * 1024),
]


@dataclass(frozen=True, slots=True)
class GcsInfo:
    address: str
    dashboard: str | None
    session_name: str | None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def encode_kv_get(key: bytes, namespace: bytes) -> bytes:
    """``InternalKVGetRequest{key=1, namespace=2}``."""
    return _field(1, key) + _field(2, namespace)


def decode_kv_value(raw: bytes) -> bytes | None:
    """Field 2 (``value``) of ``InternalKVGetReply``; None when absent or empty (key not found)."""
    i, n = 0, len(raw)
    while i < n:
        tag, i = _read_varint(raw, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _read_varint(raw, i)
        elif wire == 2:
            length, i = _read_varint(raw, i)
            if i + length > n:
                raise ValueError("truncated field")
            if number == 2:
                return raw[i : i + length] or None
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return None


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(raw) or shift > 63:
            raise ValueError("bad varint")
        b = raw[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


async def lookup(address: str, *, timeout: float) -> GcsInfo:
    """The dashboard address and session name a GCS at ``host:port`` reports."""
    try:
        async with grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS) as channel:
            call = channel.unary_unary(_KV_GET)
            dash = await call(encode_kv_get(b"dashboard", b"dashboard"), timeout=timeout)
            session = await call(encode_kv_get(b"session_name", b"session"), timeout=timeout)
    except grpc.aio.AioRpcError as e:
        code = e.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise errors.TimedOut(f"the GCS at {address} did not answer within {timeout:g} s") from e
        if code == grpc.StatusCode.UNAVAILABLE:
            raise errors.GcsUnreachable(f"GCS at {address} unreachable: {e.details()}") from e
        raise errors.NotRayDashboard(f"{address} is not a Ray GCS ({code.name})") from e
    try:
        dash_value, session_value = decode_kv_value(dash), decode_kv_value(session)
    except (ValueError, TypeError) as e:
        raise errors.NotRayDashboard(f"{address} answered gRPC that is not Ray's GCS") from e
    return GcsInfo(
        address=address,
        dashboard=dash_value.decode("utf-8", "replace")[:300] if dash_value else None,
        session_name=session_value.decode("utf-8", "replace")[:200] if session_value else None,
    )

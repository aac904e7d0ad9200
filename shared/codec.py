"""The one msgpack codec for everything CastRay puts in Redis."""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from castray.shared.errors import EventDecodeError
from castray.shared.events import EVENT_ADAPTER, Event

M = TypeVar("M", bound=BaseModel)


def pack(obj: Any) -> bytes:
    """Plain data (dicts, lists, str, numbers, bytes) to msgpack."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def as_bytes(raw: bytes | str) -> bytes:
    """A Redis reply as bytes: ours are (no decode_responses), but redis-py types them as either."""
    return raw.encode() if isinstance(raw, str) else raw


def as_text(raw: bytes | str | None) -> str | None:
    """A Redis string reply as text (None stays None): bytes here, typed as either by redis-py."""
    return raw.decode() if isinstance(raw, bytes) else raw


def unpack(raw: bytes | str) -> Any:
    """msgpack to plain data; anything that is not msgpack raises `ValueError` (msgpack's own errors are
    ValueErrors, but a map keyed by an array or a map raises TypeError: unhashable in Python)."""
    try:
        return msgpack.unpackb(as_bytes(raw), raw=False, strict_map_key=False)
    except TypeError as e:
        raise ValueError(f"not msgpack data CastRay writes: {e}") from e


def decode_model(raw: bytes | str, cls: type[M]) -> M:
    try:
        return cls.model_validate(unpack(raw))
    except (ValueError, ValidationError, msgpack.UnpackException) as e:
        raise EventDecodeError(f"not a valid {cls.__name__}", raw_len=len(raw)) from e


def encode(model: BaseModel) -> bytes:
    """An event, a record or any other of our models to bytes for Redis (`decode` / `decode_model` back)."""
    return pack(model.model_dump(mode="json"))


def decode(raw: bytes, *, channel: str | None = None) -> Event:
    """Bytes from Redis to a typed event; anything else is an `EventDecodeError`."""
    try:
        data = unpack(raw)
    except (ValueError, msgpack.UnpackException) as e:
        raise EventDecodeError("not msgpack", channel=channel, raw_len=len(raw)) from e
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as e:
        raise EventDecodeError(f"not a CastRay event: {e.errors()[0]['msg']}", channel=channel,
                               raw_len=len(raw)) from e

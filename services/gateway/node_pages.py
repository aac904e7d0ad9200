"""``GET /api/nodes``'s pages and fields, built from the `EncodedView` (each node's JSON encoded once).

A cursor is the position after the last node sent, in the view's node order
(`castray.shared.view.node_order`), not an offset: a node added or removed before it does not shift the
next page, so a client walking pages while the view changes sees every node that stayed, once.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from castray.gateway.errors import ApiError
from castray.gateway.original.status import dumps
from castray.gateway.view_cache import EncodedView, Filter, NodeKey
from castray.shared.events import NodeInfo

MAX_LIMIT = 10_000
NODE_FIELDS = tuple(NodeInfo.model_fields)


def encode_cursor(key: NodeKey) -> str:
    return base64.urlsafe_b64encode(dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> NodeKey:
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        value = None
    if (not isinstance(value, list) or len(value) != 4 or not isinstance(value[1], bool)
            or not all(isinstance(value[i], str) for i in (0, 2, 3))):
        raise ApiError(400, "cursor must be a next_cursor this API returned", code="bad_cursor")
    return value[0], value[1], value[2], value[3]


def _limit(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}", code="bad_page")
    return int(raw)


def _fields(raw: str | None) -> tuple[str, ...] | None:
    if raw is None or raw == "":
        return None
    wanted = {f.strip() for f in raw.split(",") if f.strip()}
    unknown = sorted(wanted - set(NODE_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown fields {unknown}; choose from {list(NODE_FIELDS)}", code="bad_fields")
    return tuple(f for f in NODE_FIELDS if f in wanted or f == "id")


@dataclass(frozen=True, slots=True)
class Page:
    """Which page and fields of the filtered nodes a request asks for (part of its cache key)."""

    limit: int | None = None
    after: NodeKey | None = None
    fields: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> Page:
        cursor = q.get("cursor") or None
        after = decode_cursor(cursor) if cursor else None
        return cls(_limit(q.get("limit")), after, _fields(q.get("fields")))

    @property
    def paged(self) -> bool:
        return self.limit is not None or self.after is not None


def build(ev: EncodedView, flt: Filter, page: Page) -> bytes:
    """The body: the seed's ``{success, nodes, count, epoch, version}``, plus ``total`` and ``next_cursor``
    when paged."""
    ids, keys = ev.filtered(flt)
    start = bisect_right(keys, page.after) if page.after is not None else 0
    end = len(ids) if page.limit is None else min(len(ids), start + page.limit)
    chosen = ids[start:end]
    if page.fields is None:
        nodes = ev.nodes_json(chosen)
    else:
        include = set(page.fields)
        every = ev.snapshot.nodes
        nodes = dumps([every[i].model_dump(mode="json", include=include) for i in chosen]).encode()
    tail: dict[str, Any] = {"count": len(chosen), "epoch": ev.meta.epoch, "version": ev.meta.version}
    if page.paged:
        tail["total"] = len(ids)
        tail["next_cursor"] = encode_cursor(keys[end - 1]) if end < len(ids) else None
    return b'{"success":true,"nodes":' + nodes + b"," + dumps(tail)[1:].encode()

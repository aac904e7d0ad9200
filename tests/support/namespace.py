"""Every test and bench works in a Redis namespace of its own, so that they share one Redis (and run
beside a real CastRay) without touching each other's keys; this deletes one namespace when done."""

from __future__ import annotations

import redis


def drop_namespace(url: str, namespace: str) -> None:
    """Delete every key under ``namespace`` (``<namespace>:*``) and nothing else, from Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

"""``castray health``: the container healthcheck of every service.

Exit 0 when the Redis at the configured URL answers PING and, with ``--url``, when that URL answers
HTTP 2xx (the gateway checks its own ``/api/status``); otherwise print why and exit 1.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from castray import redis_local
from castray.shared.settings import CommonSettings


def main(url: str | None = None) -> int:
    settings = CommonSettings()
    found = redis_local.probe(settings.redis_url, timeout=3.0)
    if found.result is not redis_local.RedisCheck.OK:
        print(f"unhealthy: Redis at {found.where}: {found.result.value} {found.detail}", file=sys.stderr)
        return 1
    if url:
        try:
            with urllib.request.urlopen(url, timeout=5.0) as resp:
                if not 200 <= resp.status < 300:
                    print(f"unhealthy: {url} answered {resp.status}", file=sys.stderr)
                    return 1
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return 1
    return 0

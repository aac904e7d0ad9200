"""``castray up``: every CastRay service on one machine, as one process tree with a clean Ctrl-C.

A gateway on a non-loopback ``--host`` with no ``CASTRAY_API_TOKEN`` gets a token made for the run, printed
once in the URL's fragment (``/ui#token=...``, which the page keeps and no server log sees), as Jupyter
does. Order of work: refuse a busy gateway port (before anything heavy); settle Redis (the configured one, an
embedded one, or a clear refusal); find a running Ray cluster or start a local head; start discovery,
registry, transfer and gateway as child processes configured through the environment; restart any that
dies; on SIGINT/SIGTERM stop the services, then the Ray head and Redis it started, within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from types import FrameType

import psutil
from pydantic import ValidationError

from castray import local_ray, ray_find, redis_local
from castray.children import Child, stop_all
from castray.client import AsyncClient, GatewayError, GatewayUnreachable
from castray.errors import Interrupted, RedisSetupError, SetupError
from castray.services import SERVICES
from castray.settings import UpSettings
from castray.shared import exposure
from castray.shared.lifecycle import python_module_command
from castray.shared.log import setup_logging

log = logging.getLogger("castray.up")

# Ray's unix sockets live under its temp dir and must fit AF_UNIX's 107 bytes; the session part of the
# path takes ~62 of them.
_MAX_RAY_TEMP_DIR = 40


def port_is_free(host: str, port: int) -> bool:
    """Can the gateway bind ``host:port``? (SO_REUSEADDR as aiohttp sets it, so TIME_WAIT is no clash.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _gateway_answers(base: str) -> bool:
    """Whether the gateway at ``base`` serves its API (``GET /api/status`` through castray.client): any
    answer counts, an error status too (401 without a token: it is serving)."""
    async def ask() -> None:
        async with AsyncClient(base, token="", timeout=1.0) as api:
            await api.status()

    try:
        asyncio.run(ask())
    except GatewayError:
        return True
    except (GatewayUnreachable, ValueError):
        return False
    return True


class Supervisor:
    def __init__(self, settings: UpSettings, access: exposure.ExposureSettings | None = None) -> None:
        self.settings = settings
        access = access or exposure.ExposureSettings()
        # A gateway the network can reach gets a token, made here when none was given (as Jupyter does);
        # the URL with it is printed once, when the gateway answers.
        self.generated_token: str | None = None
        if exposure.unguarded_bind(settings.host, access.api_token, access.allow_unauthenticated_network):
            self.generated_token = exposure.generate_token()
        self.data_dir = settings.data_dir.resolve()
        self.redis: redis_local.EmbeddedRedis | None = None
        self.head: local_ray.RayNode | None = None
        self.head_temp: str | None = None
        self.children: list[Child] = []
        self._signals = 0

    # -- signals -------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("got %s: stopping", signal.Signals(signum).name)
            raise Interrupted
        log.warning("second %s: killing the children now", signal.Signals(signum).name)

    def _install_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- start-up ------------------------------------------------------------------------------------
    def _check_port(self) -> None:
        s = self.settings
        if not port_is_free(s.host, s.port):
            raise SetupError(f"port {s.port} on {s.host} is already in use; stop what holds it, "
                             f"or choose another port with --port N")

    def _setup_redis(self) -> str:
        try:
            url, self.redis = redis_local.resolve(self.settings.redis_url, self.data_dir / "redis")
        except RedisSetupError as exc:
            raise SetupError(str(exc)) from None
        if self.redis is None:
            log.info("using the Redis at %s:%d", *redis_local.host_port(url))
        else:
            log.warning("nothing answers at %s; started an embedded Redis-compatible server at %s "
                        "(nothing is kept on disk)", self.settings.redis_url, url)
        return url

    def _ray_temp_dir(self) -> str:
        preferred = self.data_dir / "ray"
        if len(str(preferred)) <= _MAX_RAY_TEMP_DIR:
            preferred.mkdir(parents=True, exist_ok=True)
            return str(preferred)
        self.head_temp = tempfile.mkdtemp(prefix="castray-ray-")
        return self.head_temp

    def _setup_ray(self) -> dict[str, str]:
        """Environment for the children about Ray: nothing if a cluster runs, else our head's address."""
        found = ray_find.find_cluster(ray_find.where_discovery_looks())
        if found:
            log.info("found a running Ray cluster: %s", found)
            return {}
        if not self.settings.start_ray:
            log.warning("no running Ray cluster found, and --no-ray: discovery will keep looking")
            return {}
        dash = self.settings.ray_dashboard_port
        usable = dash != self.settings.port and local_ray.is_free(dash)
        dash_port = dash if usable else local_ray.free_port()
        log.info("no running Ray cluster found; starting a local head (takes a few seconds)")
        try:
            self.head = local_ray.start_head(self._ray_temp_dir(), num_cpus=self.settings.ray_num_cpus or
                                             (os.cpu_count() or 1), dashboard_port=dash_port,
                                             die_with_parent=True)
        except (OSError, RuntimeError, TimeoutError) as exc:  # no `ray` installed, or it would not start
            raise SetupError(f"could not start a local Ray head ({exc}); start one with `ray start --head "
                             "--port=6380 --dashboard-port=8265`, or pass --no-ray") from None
        log.info("local Ray head up: dashboard %s, GCS %s (ray status --address %s)",
                 self.head.dashboard_url, self.head.gcs_address, self.head.gcs_address)
        # Discovery reports it as the local cluster; transfer learns its GCS address from the view.
        return {"CASTRAY_LOCAL_CLUSTER": self.head.dashboard_url}

    def _child_env(self, redis_url: str, ray_env: dict[str, str]) -> dict[str, str]:
        s = self.settings
        env = {**os.environ, "CASTRAY_REDIS_URL": redis_url, "CASTRAY_DATA_DIR": str(self.data_dir),
               "CASTRAY_HOST": s.host, "CASTRAY_PORT": str(s.port), "CASTRAY_NAMESPACE": s.namespace,
               "PYTHONUNBUFFERED": "1", **ray_env}
        if self.generated_token is not None:
            env["CASTRAY_API_TOKEN"] = self.generated_token
        return env

    def _start_children(self, env: dict[str, str]) -> None:
        for name in SERVICES:
            child = Child(name, python_module_command("castray.cli", name), env,
                          max_delay=self.settings.restart_max_delay)
            self.children.append(child)
            child.start()

    # -- running -------------------------------------------------------------------------------------
    def _watch(self) -> None:
        s = self.settings
        base = f"http://{_connect_host(s.host)}:{s.port}"
        announced, next_check = False, 0.0
        while True:
            now = time.monotonic()
            for child in self.children:
                child.tick(now)
            if self.redis is not None and not self.redis.alive():
                log.error("the embedded Redis exited; starting it again on port %d", self.redis.port)
                try:
                    self.redis.start(port=self.redis.port)
                except RedisSetupError as exc:
                    raise SetupError(str(exc)) from None
            if not announced and now >= next_check:
                next_check = now + 0.5
                if _gateway_answers(base):
                    announced = True
                    print(self._announcement(base), flush=True)
            time.sleep(0.2)

    def _announcement(self, base: str) -> str:
        if self.generated_token is None:
            return f"CastRay is up: {base}/ui  (API: /api/status, docs: /api/docs)"
        fragment = f"#token={self.generated_token}"
        other = f"http://{socket.gethostname()}:{self.settings.port}/ui{fragment}"
        return (f"CastRay is up on the network, with a token made for this run: {base}/ui{fragment}  (from "
                f"other machines: {other}; programs send 'Authorization: Bearer <the token>'; set "
                "CASTRAY_API_TOKEN to choose it)")

    def run(self) -> int:
        self._install_signals()
        try:
            self._check_port()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            redis_url = self._setup_redis()
            env = self._child_env(redis_url, self._setup_ray())
            self._check_port()  # once more: Ray's start-up took seconds
            self._start_children(env)
            self._watch()
        except SetupError as exc:
            print(f"castray up: {exc}", file=sys.stderr, flush=True)
            return 2
        except Interrupted:
            return 0
        finally:
            self.shutdown()
        return 0  # not reached: _watch only ends by an exception

    # -- shutdown ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop everything we started, in order, within ~10 s; no process of our tree survives."""
        self._signals = max(self._signals, 1)  # from here a signal only hurries us (see _on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        started = time.monotonic()
        tree = _descendants()
        stop_all(self.children, self.settings.shutdown_grace, hurry=lambda: self._signals > 1)
        if self.head is not None:
            self.head.stop()
            self.head = None
        if self.head_temp:
            shutil.rmtree(self.head_temp, ignore_errors=True)
        if self.redis is not None:
            self.redis.stop()
        for proc in tree + _descendants():  # anything that slipped out of its process group
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()
        if self.children or tree:
            log.info("stopped in %.1f s", time.monotonic() - started)


def _descendants() -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return list(psutil.Process().children(recursive=True))
    return []


def main() -> int:
    """Entry point of ``castray up``; returns the exit code."""
    try:
        settings = UpSettings()
        access = exposure.ExposureSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"castray up: bad settings: {problems}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, json_lines=settings.log_json, service="up")
    return Supervisor(settings, access).run()

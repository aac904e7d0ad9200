"""Several gateway processes behind one port (``CASTRAY_GATEWAY_PROCESSES``, ``castray up --gateways N``).

The first process binds the port with ``SO_REUSEPORT`` and then starts the others, each a whole gateway
(``python -P -m castray.gateway.main``) binding the same port the same way; the kernel spreads new
connections over them. The first restarts one that dies (after 1 s, 2 s, ... at most 30 s) and stops them
all when it stops; each also gets SIGTERM if the first dies, even by SIGKILL (Linux). Every response says
which process answered in ``X-CastRay-Instance``: ``gateway:<random>``, the end of the instance name
``GET /api/services`` lists (never the host or process id: that header is on answers to anyone).

What each process keeps for itself, and why that is correct with several:

- its Redis subscription and `EventHub`: every process receives every event, so each relays each event
  once to its own WebSocket clients; a client that reconnects to another process resumes from
  ``view:log`` (in Redis) as it would from the same one;
- its `ViewCache` and status cache: caches of what Redis holds, each at the version it read;
- its heavy slots and queue (``CASTRAY_HEAVY_REQUESTS``, ``CASTRAY_HEAVY_QUEUE``) and its two file
  generations at a time: bounds per process, so N processes allow N times as many;
- its ``/metrics`` (counters of this process only: a scrape through the shared port reaches one process,
  the one named in ``X-CastRay-Instance``; scrape each process, or read ``GET /api/services``, whose
  heartbeats are per process and in Redis);
- its storage budget's pending bytes: uploads being written by the other processes are not counted against
  the quota until they are finished files (the free-space floor holds for all, see ``storage.py``).

Everything else a request needs is in Redis (the view, transfers, uploads' records, messages) or in the
data directory, which all the processes of one ``castray gateway`` share: an upload sent to one is a
transfer source, and its bytes are served, by any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping

from castray.shared.lifecycle import die_with_parent, python_module_command, stop_task

log = logging.getLogger(__name__)

STABLE_AFTER = 60.0  # a process that ran this long before dying is restarted at once
MAX_DELAY = 30.0
STOP_GRACE = 8.0


def extra_env(environ: Mapping[str, str], port: int) -> dict[str, str]:
    """The environment of an extra process: one process, the port already bound (not 0), shared."""
    return {**environ, "CASTRAY_GATEWAY_PROCESSES": "1", "CASTRAY_REUSE_PORT": "true",
            "CASTRAY_PORT": str(port)}


class ExtraProcess:
    """One extra gateway process, restarted when it dies until `close`."""

    def __init__(self, index: int, env: Mapping[str, str]) -> None:
        self.index = index
        self.env = dict(env)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name=f"gateway.process-{self.index}")

    async def _keep(self) -> None:
        delay = 0.0
        while not self._closing:
            began = time.monotonic()
            ended = await self._run_once()
            ran = time.monotonic() - began
            delay = 0.0 if ran >= STABLE_AFTER else min(MAX_DELAY, max(1.0, delay * 2))
            log.error("gateway process %d %s after %.1f s; restarting in %.0f s", self.index, ended, ran,
                      delay)
            await asyncio.sleep(delay)
            self.restarts += 1

    async def _run_once(self) -> str:
        """Start the process and wait until it exits; how it ended, for the log. A process that cannot be
        started (EMFILE, EAGAIN, ENOMEM: often passing) is tried again like one that died, rather than
        ending this task and with it every later restart."""
        try:
            self.process = await asyncio.create_subprocess_exec(
                *python_module_command("castray.gateway.main"), env=self.env,
                stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent())
        except OSError as e:
            return f"could not be started ({e})"
        log.info("gateway process %d started (pid %d)", self.index, self.process.pid)
        return f"exited with code {await self.process.wait()}"

    async def close(self) -> None:
        """No more restarts; SIGTERM, then SIGKILL after `STOP_GRACE` seconds; idempotent."""
        self._closing = True
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class GatewayProcesses:
    """The extra processes of a gateway serving ``port`` with ``count`` processes in all."""

    def __init__(self, count: int, port: int, environ: Mapping[str, str] | None = None) -> None:
        env = extra_env(os.environ if environ is None else environ, port)
        self.extras = [ExtraProcess(i, env) for i in range(1, count)]

    def start(self) -> None:
        for extra in self.extras:
            extra.start()

    async def close(self) -> None:
        await asyncio.gather(*(extra.close() for extra in self.extras))

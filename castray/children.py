"""Service processes of ``castray up``: started, watched, restarted with backoff, and stopped.

Each child runs in a process group of its own, so a Ctrl-C in the terminal reaches only ``castray up``,
which then stops the children in order (services first, their Redis and Ray last); and stopping a child
stops whatever it started. On Linux each child also gets SIGTERM if ``castray up`` itself dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from castray.shared.lifecycle import die_with_parent

log = logging.getLogger("castray.up")

class Child:
    """One supervised service process; ``tick()`` from the supervisor's loop restarts it when it dies."""

    # A child that ran this long before dying is restarted at once, and its backoff starts over.
    STABLE_AFTER = 60.0

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], *,
                 max_delay: float = 30.0) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.max_delay = max_delay
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self._delay = 0.0
        self._restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, env=self.env, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=die_with_parent())
        self.started_at = time.monotonic()
        self._restart_at = None
        log.debug("started %s (pid %d)", self.name, self.process.pid)

    def tick(self, now: float) -> None:
        """Notice an unexpected exit and restart after a growing delay (1 s, 2 s, 4 s, ... max_delay)."""
        if self._restart_at is not None:
            if now >= self._restart_at:
                self.restarts += 1
                log.warning("restarting %s (restart %d)", self.name, self.restarts)
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        ran = now - self.started_at
        self._delay = 0.0 if ran >= self.STABLE_AFTER else min(self.max_delay, max(1.0, self._delay * 2))
        log.error("%s exited with code %s after %.1f s; restarting in %.0f s",
                  self.name, self.process.returncode, ran, self._delay)
        self._restart_at = now + self._delay

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group."""
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def cancel_restart(self) -> None:
        self._restart_at = None

    def kill_group(self) -> None:
        """SIGKILL the group even if its leader is gone: a grandchild may still hold on."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def stop_all(children: Sequence[Child], grace: float, hurry: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM every child, wait up to ``grace`` seconds (less if ``hurry()``), SIGKILL the rest."""
    for child in children:
        child.cancel_restart()
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not hurry() and any(c.alive() for c in children):
        time.sleep(0.05)
    for child in children:
        if child.alive():
            log.warning("%s did not stop within %.1f s; killing it", child.name, grace)
        child.kill_group()
    for child in children:
        if child.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=2)

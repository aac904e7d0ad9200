"""Running a long-lived service: start, wait for SIGINT/SIGTERM, shut down cleanly.

A service is anything with ``async run()`` (returns when it is done) and ``async close()``
(idempotent). Tests drive the same objects without signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def serve(service: Service, *, handle_signals: bool = True, shutdown_timeout: float = 8.0) -> None:
    """Run ``service`` until it returns or a signal arrives, then close it within ``shutdown_timeout``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(service.run(), name=f"{service.name}.run")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.info("%s: stopping", service.name)
    finally:
        stopper.cancel()
        try:
            await asyncio.wait_for(service.close(), shutdown_timeout)
        except TimeoutError:
            log.warning("%s: close took longer than %.0f s", service.name, shutdown_timeout)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        raise runner.exception()  # type: ignore[misc]


# Objects allocated before a young collection runs: Python's default is 700. An event loop that relays to
# many clients keeps thousands of objects in flight (queued frames, waking tasks), and a collection that
# finds them alive promotes them; the full passes those promotions trigger walked the whole heap (60-135 ms
# with 1,000 WebSocket clients, measured by bench/scale.py: the gateway's p99 at 2x the bare broadcaster's).
YOUNG_THRESHOLD = 10_000


def freeze_startup() -> None:
    """Once a service is up: what start-up built (modules, pydantic schemas, the app, its clients) lives as
    long as the process, so it is frozen out of the collector's full passes; and young collections run
    less often, so what is in flight dies before one finds it (`YOUNG_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD)


async def stop_task(task: asyncio.Task[Any], *, every: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if a cancellation got lost.

    On Python 3.11 ``asyncio.wait_for`` drops a cancellation that arrives as its inner call completes,
    and redis-py connects through ``wait_for``: one ``cancel()`` during a (re)connect can be swallowed
    and the task then runs on for ever. Cancelling until it is done is the robust stop.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with %r", task.get_name(), task.exception())


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """`stop_task` for several tasks at once."""
    await asyncio.gather(*(stop_task(t) for t in tasks))


def run_service(service: Service) -> None:
    """Blocking entry point for ``castray <service>``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(service))


def python_module_command(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module`` in a child process, with this interpreter.

    ``-P`` (Python 3.11+) keeps the working directory off ``sys.path``: a folder named ``castray/`` there
    (the source tree, say) would otherwise shadow the installed package, whose subpackages live elsewhere
    (pyproject.toml's package-dir mapping), and ``castray.transfer`` would not be found.
    """
    return [sys.executable, "-P", "-m", module, *args]


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A function that asks the kernel to send ``sig`` to the process calling it when that process's
    parent dies, even by SIGKILL (Linux; elsewhere None). Built up front, so that it can run as a
    ``preexec_fn`` between fork and exec, where loading libc would not be safe."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return hook

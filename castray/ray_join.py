"""``castray transfer --join-ray HOST:PORT``: make this host a Ray node before the transfer worker starts.

The transfer worker drives Ray with ``ray.init(address=<gcs>)``, and Ray connects a driver only through
a raylet on the driver's own host. In a container of its own (docker compose, ``--scale transfer=3``)
there is none, so the worker first joins the cluster as a node with no CPUs, and leaves it on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator

from castray import local_ray
from castray.settings import JoinSettings


class JoinError(RuntimeError):
    """The cluster could not be joined; the message says why."""


@contextlib.contextmanager
def joined() -> Iterator[local_ray.RayNode | None]:
    """Join the cluster named by ``CASTRAY_JOIN_RAY`` for the duration of the block (nothing if unset)."""
    address = JoinSettings().join_ray
    if not address:
        yield None
        return
    temp = tempfile.mkdtemp(prefix="castray-ray-")  # short: Ray's unix socket paths live under it
    try:
        node = local_ray.join_cluster(address, temp)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise JoinError(f"could not join the Ray cluster at {address}: {exc}") from None
    # Logging is set up by the service, after this: say it plainly.
    print(f"castray transfer: joined the Ray cluster at {address} as node {node.node_id}", file=sys.stderr)
    try:
        yield node
    finally:
        leave(node)
        shutil.rmtree(temp, ignore_errors=True)


def leave(node: local_ray.RayNode, grace: float = 8.0) -> None:
    """SIGTERM ``ray start --block``, which stops its node so the cluster marks it DEAD at once (a
    killed node is noticed only after ~15 s of missed health checks); SIGKILL what remains after
    ``grace``."""
    import psutil

    group: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        group = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    with contextlib.suppress(ProcessLookupError):
        node.process.send_signal(signal.SIGTERM)
    psutil.wait_procs(group, timeout=grace)  # the raylet too: killing it now would look like a crash
    node.stop()

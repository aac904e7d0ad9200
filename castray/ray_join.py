"""``castray transfer --join-ray HOST:PORT``: make this host a Ray node before the transfer worker starts.

The transfer worker drives Ray with ``ray.init(address=<gcs>)``, and Ray connects a driver only through
a raylet on the driver's own host. In a container of its own (docker compose, ``--scale transfer=3``)
there is none, so the worker first joins the cluster as a node with no CPUs, and leaves it on exit.
"""

from __future__ import annotations

import contextlib
import shutil
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
        node.stop()
        shutil.rmtree(temp, ignore_errors=True)

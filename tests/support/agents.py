"""The processes of CastRay's node agents (`castray.transfer.agent.NodeAgent`) on a Ray node started by a
test, found among its raylet's children by the title Ray gives an actor's worker (``ray::NodeAgent``): to
stop one (SIGSTOP: a node that hangs without dying) or kill it."""

from __future__ import annotations

import contextlib

import psutil

from castray import local_ray


def agent_processes(node: local_ray.RayNode) -> list[psutil.Process]:
    """The node agents' worker processes on ``node`` (a node the test started: only its own agents)."""
    raylet = node.raylet_pid()
    if raylet is None:
        return []
    found = []
    for child in psutil.Process(raylet).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "NodeAgent" in " ".join(child.cmdline()):
                found.append(child)
    return found

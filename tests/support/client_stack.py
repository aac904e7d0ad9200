"""A real stack for the SDK's and the client commands' tests: ``castray up`` watching a Ray head of the
test module's own (and, with ``stack_with_worker``, a worker joined to it), its inbox under the test's
tmp_path, the view's node ids once every node is ALIVE in it. The head is not the session's shared one:
the workers other modules started and stopped stay listed there as DEAD, and these tests name every node
a listing shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from castray import local_ray
from castray.client import Client, ClientError
from tests.support.ray_nodes import own_head, start_worker
from tests.support.up import Up
from tests.support.waiting import STARTING, wait_for_blocking

# How long a CLI process may take to stop after Ctrl-C (it closes its /ws and its session): a hang
# guard, not a time the test checks. (A CLI that never stopped in CI had SIGINT ignored from its
# launcher: conftest's ctrl_c_reaches_children.)
EXIT_GRACE = 60


@dataclass
class Stack:
    up: Up
    inbox: Path
    node_ids: list[str]  # the view's ids of the Ray nodes, head first

    @property
    def url(self) -> str:
        return self.up.base

    def client(self) -> Client:
        return Client(self.url, token="")


def _view_ids(url: str, nodes: list[local_ray.RayNode]) -> list[str] | None:
    """The nodes' view ids once they, and no other node (a worker an earlier test stopped, which Ray
    still calls ALIVE for a while), are the ALIVE ones: a broadcast reaches exactly them."""
    with Client(url, token="") as api:
        alive = {n.ray_node_id: n.id for n in api.nodes(state="ALIVE")}
    if set(alive) != {str(node.node_id) for node in nodes}:
        return None
    return [alive[str(node.node_id)] for node in nodes]


def start_stack(start_up: Callable[..., Up], env: dict[str, str], head: local_ray.RayNode,
                nodes: list[local_ray.RayNode], inbox: Path) -> Stack:
    env = {**env, "CASTRAY_DISCOVERY_ADDRESSES": head.dashboard_url, "CASTRAY_RAY_TEMP_DIRS": head.temp_dir,
           "RAY_TMPDIR": head.temp_dir, "CASTRAY_INBOX_DIR": str(inbox)}
    up = start_up(env)
    ids = wait_for_blocking(lambda: _view_ids(up.base, nodes), "castray up to show exactly these nodes ALIVE",
                            deadline=180, ignoring=(*STARTING, ClientError))
    return Stack(up, inbox, ids)


@pytest.fixture(scope="module")
def client_head() -> Iterator[local_ray.RayNode]:
    """A head for one test module, stopped (by process group) after it."""
    with own_head(num_cpus=2) as head:
        yield head


@pytest.fixture
def stack(client_head: local_ray.RayNode, isolated_env: dict[str, str], start_up: Callable[..., Up],
          tmp_path: Path) -> Stack:
    return start_stack(start_up, isolated_env, client_head, [client_head], tmp_path / "inbox")


@pytest.fixture
def stack_with_worker(client_head: local_ray.RayNode, isolated_env: dict[str, str],
                      start_up: Callable[..., Up], tmp_path: Path) -> Iterator[Stack]:
    worker = start_worker(client_head)
    try:
        yield start_stack(start_up, isolated_env, client_head, [client_head, worker], tmp_path / "inbox")
    finally:
        worker.stop()

"""Fixtures shared by all tests: a private Redis namespace, real Ray heads and workers.

Redis: the one at ``CASTRAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); every test gets a
namespace of its own and deletes only keys under it. Ray: nodes on free ports with their own temp dir,
killed by process group when the test (or session) ends, even on failure.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import namespace as namespace_support
from tests.support import transfer_env
from tests.support.ray_nodes import own_head

# Fixtures that more than one test module uses.
pytest_plugins = ["tests.support.discovery", "tests.support.registry", "tests.support.up",
                  "tests.support.client_stack", "tests.support.terminal", "tests.support.ui_harness"]

REDIS_URL = os.environ.get("CASTRAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_children() -> None:
    """Processes the tests start take Ctrl-C as they would from a terminal, however pytest was started. A
    shell starting a command in the background without job control (``cmd &`` in a script, as a CI runner
    may) starts it with SIGINT ignored, and every child inherits that: a CLI the tests send Ctrl-C to
    would never see it. With a handler here, a child starts with SIGINT's default (only an ignored signal
    survives exec)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    ns = f"test-{uuid.uuid4().hex[:10]}"
    yield ns
    drop_namespace(ns)


def drop_namespace(ns: str) -> None:
    """Delete every key under ``ns`` (and nothing else) from the test Redis."""
    namespace_support.drop_namespace(REDIS_URL, ns)


@pytest.fixture
def names(namespace: str) -> Names:
    return Names(namespace)


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[local_ray.RayNode]:
    """One Ray head shared by the session's tests (do not kill it; start your own to do that)."""
    with own_head(num_cpus=2) as head:
        yield head


@pytest.fixture
def ray_workers(ray_head: local_ray.RayNode) -> Iterator[list[local_ray.RayNode]]:
    """Append workers from ``tests.support.ray_nodes.start_worker(ray_head)``; stopped after the test."""
    started: list[local_ray.RayNode] = []
    yield started
    for node in started:
        node.stop()


@pytest.fixture
def own_ray_head() -> Iterator[local_ray.RayNode]:
    """A head for this test alone (tests that kill or stop the head)."""
    with own_head() as head:
        yield head


@pytest.fixture
async def transfer_worker(namespace: str, tmp_path: Path, redis_client: aioredis.Redis
                          ) -> AsyncIterator[TransferWorker]:
    """A transfer worker in this test's event loop, with `transfer_env.settings_for`'s settings (data,
    inbox and files roots under ``tmp_path``); closed after the test."""
    async with transfer_env.running_worker(namespace, tmp_path, redis_client) as w:
        yield w

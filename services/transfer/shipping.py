"""The node agent's code, shipped with the driver to every node of the cluster.

A Ray cluster started by someone else, maybe on other machines, has Ray on its nodes but not CastRay. So
the driver connects with a ``runtime_env`` whose ``py_modules`` holds a small ``castray`` package: the
agent and the few modules it imports (`AGENT_MODULES`, standard library otherwise; numpy and xxhash are
optional, see `castray.transfer.agent`). Ray uploads it to the cluster's GCS once (content-addressed) and
puts it first on the path of our workers on every node, so each node runs the driver's version of the
agent, even where an older CastRay is installed.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

# Every castray module the agent imports, its packages included (tests/test_transfer_bare_node.py runs
# the agent on a node where only these exist).
AGENT_MODULES = (
    "castray",
    "castray.shared",
    "castray.shared.confined",
    "castray.shared.digest",
    "castray.shared.errors",
    "castray.shared.filegen",
    "castray.shared.safe_names",
    "castray.transfer",
    "castray.transfer.agent",
    "castray.transfer.direct_hop",
    "castray.transfer.diskio",
    "castray.transfer.errors",
    "castray.transfer.sink",
)


def agent_package(into: Path) -> Path:
    """Write the agent's ``castray`` package under ``into``; returns the package directory."""
    root = into / "castray"
    for name in AGENT_MODULES:
        source = Path(importlib.import_module(name).__file__ or "")
        parts = name.split(".")[1:]
        if source.name == "__init__.py":
            target = root.joinpath(*parts, "__init__.py")
        else:
            target = root.joinpath(*parts[:-1], parts[-1] + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return root


def agent_runtime_env(into: Path) -> dict[str, Any]:
    """The ``runtime_env`` for ``ray.init`` that brings the agent's code to every node. Ray reads the
    package during ``ray.init``: ``into`` can be removed after it."""
    return {"py_modules": [str(agent_package(into))]}

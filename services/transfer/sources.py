"""Where a transfer's chunks come from, for `castray.transfer.pipeline`.

- `AgentReader`: the node agent reads a file on its node (a node's own file, a generated one).
- `HereReader`: this driver process reads a file on its own machine and puts each chunk into the object
  store of the node it is attached to. Uploads live with the services (the gateway streams them into the
  data directory it shares with the transfer service), not on any node of a cluster, which may be on other
  machines; so they are read here (source spec ``{"kind": "here", "path": ...}``).

Both give, for each chunk in turn, an ObjectRef of the data and its digest (an ObjectRef, or a string when
read here), and at the end the file's sha256 and the bytes read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from castray.transfer.agent import SourceFile, TransferError


class AgentReader:
    """A source read by the agent of the source node (`NodeAgent.open_source` / `read` / `close_source`)."""

    def __init__(self, agent: Any, key: str) -> None:
        self.agent, self.key = agent, key

    def open(self, spec: dict[str, Any], known_sha: str | None, fast: bool) -> int:
        return int(ray.get(self.agent.open_source.remote(self.key, spec, known_sha, fast))["size"])

    def read(self, index: int, length: int) -> tuple[Any, Any]:
        data, digest = self.agent.read.remote(self.key, index, length)
        return data, digest

    def close(self) -> dict[str, Any]:
        return dict(ray.get(self.agent.close_source.remote(self.key), timeout=10))


class HereReader:
    """A source read in this process (blocking: the driver runs each transfer in a thread of its own)."""

    def __init__(self) -> None:
        self.source: SourceFile | None = None

    def open(self, spec: dict[str, Any], known_sha: str | None, fast: bool) -> int:
        path = Path(spec["path"])
        if not path.is_file():
            raise TransferError(f"source file not found beside the transfer service: {path.name}")
        self.source = SourceFile(path, False, known_sha, fast)
        return self.source.size

    def read(self, index: int, length: int) -> tuple[Any, Any]:
        assert self.source is not None
        data, digest = self.source.read(length)
        return ray.put(data), digest

    def close(self) -> dict[str, Any]:
        source, self.source = self.source, None
        if source is None:
            return {}
        source.close()
        return {"sha256": source.sha256(), "bytes": source.done}

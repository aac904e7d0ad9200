"""Where a transfer's chunks come from, for `castray.transfer.pipeline`.

- `AgentReader`: the node agent reads a file on its node (a node's own file, a generated one).
- `HereReader`: this driver process reads a file on its own machine and puts each chunk into the object
  store of the node it is attached to. Uploads live with the services (the gateway streams them into the
  data directory it shares with the transfer service), not on any node of a cluster, which may be on other
  machines; so they are read here (a `LocalFile`: beneath the data directory, without following a
  symlink). A transfer service that does not share that directory (``CASTRAY_GATEWAY_URL`` set) streams
  the upload from the gateway instead (a `GatewayFile`), still read once, chunk by chunk. A relay leg reads
  the relay copy here too.

Both give, for each chunk in turn, an ObjectRef of the data and its digest (an ObjectRef, or a string when
read here), and at the end the file's sha256 and the bytes read.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import ray

from castray.shared.confined import open_beneath
from castray.shared.errors import ConfinementError
from castray.transfer.agent import SourceEnd, SourceFile
from castray.transfer.errors import TransferError
from castray.transfer.protocol import GatewayFile, GeneratedFile, LocalFile, NodeFile


class AgentReader:
    """A source read by the agent of the source node (`NodeAgent.open_file` or `open_generated`, then
    `read`, `close_source`)."""

    def __init__(self, agent: Any, key: str, input: NodeFile | GeneratedFile) -> None:
        self.agent, self.key, self.input = agent, key, input

    def open(self, known_sha: str | None, fast: bool) -> int:
        if isinstance(self.input, NodeFile):
            ref = self.agent.open_file.remote(self.key, self.input.root, self.input.path, known_sha, fast)
        else:
            ref = self.agent.open_generated.remote(self.key, self.input.path, self.input.size,
                                                   self.input.content, known_sha, fast)
        return int(ray.get(ref))

    def read(self, index: int, length: int) -> tuple[Any, Any]:
        data, digest = self.agent.read.remote(self.key, index, length)
        return data, digest

    def close(self) -> SourceEnd | None:
        end: SourceEnd | None = ray.get(self.agent.close_source.remote(self.key), timeout=10)
        return end


class HereReader:
    """A source read in this process (blocking: the driver runs each transfer in a thread of its own)."""

    def __init__(self, input: LocalFile | GatewayFile) -> None:
        self.input = input
        self.source: SourceFile | None = None

    def open(self, known_sha: str | None, fast: bool) -> int:
        if isinstance(self.input, GatewayFile):
            self.source = fetch(self.input.url, self.input.token, known_sha, fast)
            return self.source.size
        try:  # beneath its root (the data directory, or the relay folder), never through a symlink
            fd = open_beneath(self.input.root, self.input.path)
        except ConfinementError as e:
            raise TransferError(f"source refused: {e}") from None
        except (FileNotFoundError, NotADirectoryError):
            name = self.input.path.rsplit("/", 1)[-1]
            raise TransferError(f"source file not found beside the transfer service: {name}") from None
        self.source = SourceFile.from_fd(fd, known_sha, fast)
        return self.source.size

    def read(self, index: int, length: int) -> tuple[Any, Any]:
        assert self.source is not None
        data, digest = self.source.read(length)
        return ray.put(data), digest

    def close(self) -> SourceEnd | None:
        source, self.source = self.source, None
        if source is None:
            return None
        source.close()
        return source.end()


FETCH_TIMEOUT = 60.0  # seconds without a byte from the gateway before the read fails
# Service to service: never through a proxy the environment may name for the outside world.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, token: str, known_sha: str | None, fast: bool) -> SourceFile:
    """The file the gateway serves at ``url`` (``GET /api/uploads/<id>/content``), as a source streamed
    in order (blocking)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise TransferError(f"the gateway did not serve the upload: HTTP {e.code}: {_api_error(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise TransferError(f"could not read the upload from the gateway ({url}): {why}") from None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        response.close()
        raise TransferError("the gateway sent the upload without its length")
    return SourceFile(response, int(length), known_sha, fast)


def _api_error(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(4096))
        return str(body.get("error") or e.reason)
    except (ValueError, AttributeError, OSError):
        return str(e.reason)

"""A Ray driver that opens two copies through a real `NodeAgent` and abandons one of them, for
tests/test_transfer_idle_sink.py: ``python -m tests.support.idle_sink <gcs address> <ray node id> <dir>
<idle timeout>``. It prints one JSON line: whether the abandoned copy's temporary file vanished (its sink's
idle watchdog) while the other copy kept getting writes, and how that other copy finished."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import ray

from castray.transfer.pipeline import Agents
from castray.transfer.sink import SinkSpec, temp_name

CHUNK = 64 * 1024
GIVE_UP_S = 120.0  # a busy machine: how long the abandoned copy may take to go, never asserted as a time


def main() -> None:
    address, node, folder, idle = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    ray.init(address=address, log_to_driver=False)
    agent = Agents().get(node)
    specs = {name: SinkSpec(dir=os.path.join(folder, name), file_name="copy.bin", transfer_id=name,
                            token="t", idle_timeout=idle) for name in ("abandoned", "kept")}
    ray.get([agent.open_sink.remote(name, spec) for name, spec in specs.items()])
    abandoned = os.path.join(specs["abandoned"].dir, temp_name("abandoned", "t"))
    sha = hashlib.sha256()

    def write(key: str, index: int, digest: hashlib._Hash) -> int:
        data = os.urandom(CHUNK)
        digest.update(data)
        return int(ray.get(agent.write.remote(key, index, data, digest.hexdigest())))

    write("abandoned", 0, hashlib.sha256())
    seen = os.path.exists(abandoned)
    index, end = 0, time.monotonic() + GIVE_UP_S
    while os.path.exists(abandoned) and time.monotonic() < end:
        write("kept", index, sha)  # the other copy keeps getting a write well within its idle timeout
        index += 1
        time.sleep(idle / 8)
    gone = not os.path.exists(abandoned)
    try:
        finished: object = ray.get(agent.finish.remote("kept", sha.hexdigest()))
    except ray.exceptions.RayError as e:
        finished = str(e)
    print(json.dumps({"seen": seen, "gone": gone, "writes": index, "kept": finished}), flush=True)


if __name__ == "__main__":
    main()

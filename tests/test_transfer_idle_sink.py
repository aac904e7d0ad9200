"""A copy whose driver stops speaking to it (gone, or its host cut off from it) cleans up after itself: a
real `NodeAgent` aborts a sink that receives no write, rewind or finish for its ``idle_timeout`` and removes
its temporary file, on its own node (no other host's help, no shared filesystem needed), while a copy that
keeps getting writes goes on and is placed. The driver is `tests.support.idle_sink`, a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from castray import local_ray
from castray.transfer.sink import TEMP_PREFIX

REPO = Path(__file__).resolve().parent.parent


def test_an_abandoned_copy_removes_its_temp_file_and_a_written_one_is_placed(
        ray_head: local_ray.RayNode, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.support.idle_sink", ray_head.gcs_address,
                           str(ray_head.node_id), str(tmp_path / "inbox"), "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["seen"] and outcome["gone"], outcome  # the abandoned copy existed, then removed itself
    assert outcome["writes"] > 0, outcome
    kept = outcome["kept"]
    assert isinstance(kept, dict) and Path(kept["path"]).stat().st_size == kept["bytes"], outcome
    assert kept["bytes"] == outcome["writes"] * 64 * 1024
    assert not [p for p in (tmp_path / "inbox").rglob(f"{TEMP_PREFIX}*")], "a temporary file left"

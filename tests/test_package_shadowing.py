"""The child processes CastRay starts (`castray up`'s services, the transfer service's Ray drivers) find the
installed package even when their working directory holds a folder named ``castray/`` (the source tree, as
in an image built with ``WORKDIR`` at the source). Without ``python -P``, that folder shadows the package,
and ``castray.transfer`` is not found: the containers' transfers failed that way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from castray.shared.lifecycle import python_module_command
from castray.transfer.drivers import driver_command

ROOT = Path(__file__).resolve().parent.parent


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_transfer_driver_starts_from_a_folder_that_holds_the_source(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "castray", tmp_path / "castray")  # the source folder: castray/ has no transfer/
    argv = driver_command("127.0.0.1:1", "INFO")
    assert argv[:4] == [sys.executable, "-P", "-m", "castray.transfer.driver"]
    # (An editable install resolves castray.transfer through its own finder, so plain `-m` may work here
    # too; the installed, non-editable package of the image does not: tests/test_compose_engine.py.)

    ok = _run(python_module_command("castray.transfer.driver", "--help"), tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "--address" in ok.stdout


def test_castray_up_children_start_from_a_folder_that_holds_the_source(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "castray", tmp_path / "castray")
    for service in ("gateway", "transfer"):
        out = _run(python_module_command("castray.cli", service, "--help"), tmp_path)
        assert out.returncode == 0, out.stderr

"""``mypy --strict`` (pyproject's settings) over every castray package, under the import paths the code
uses. The editable install maps them onto folders through a finder mypy cannot follow, so the test
rebuilds pyproject's ``package-dir`` mapping (each mapped folder with its sub-packages) as a tree of
symlinks and checks that."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_mypy_strict_finds_nothing(tmp_path: Path) -> None:
    config = REPO / "pyproject.toml"
    mapping = tomllib.loads(config.read_text())["tool"]["setuptools"]["package-dir"]
    tree = tmp_path / "tree"
    for package, folder in mapping.items():
        target = tree.joinpath(*package.split("."))
        for module in (REPO / folder).rglob("*.py"):  # a sub-package lives in its package's folder
            link = target / module.relative_to(REPO / folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(module)
    assert (tree / "castray" / "transfer" / "job.py").exists()
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config),
                          "--cache-dir", str(tmp_path / "cache"), "-p", "castray"],
                         cwd=tree, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]

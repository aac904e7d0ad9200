"""The README says what is true: its settings table is every setting, and .ci/run runs its commands."""

from __future__ import annotations

import os
import re
from pathlib import Path

from castray.settings_table import markdown, settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = ROOT / ".ci" / "run"


def _first_command_under(heading: str) -> str:
    section = README.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under {heading!r}"
    return block.group(1).strip()


def test_readme_settings_table_has_every_setting_with_its_default() -> None:
    rows = {line.split("|")[1].strip(" `"): line
            for line in README.splitlines() if line.startswith("| `CASTRAY_")}
    for var, default, _users, _meaning in settings():
        assert var in rows, f"{var} missing from README: python -m castray.settings_table"
        assert f"| `{default}` |" in rows[var], f"{var}: README says {rows[var]!r}, default is {default!r}"
    assert markdown().splitlines()[0] in README
    variables = [var for var, *_ in settings()]
    assert len(variables) == len(set(variables))
    expected = {"CASTRAY_REDIS_URL", "CASTRAY_PORT", "CASTRAY_DISCOVERY_ADDRESSES", "CASTRAY_START_RAY"}
    assert expected <= set(variables)


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    install, test = _first_command_under("Install"), _first_command_under("Run the tests")
    lines = [line.strip() for line in CI.read_text().splitlines()]
    assert install in lines and test in lines
    assert lines.index(install) < lines.index(test)
    assert lines[-1] == test  # the last thing CI does
    assert "set -euo pipefail" in lines
    assert os.access(CI, os.X_OK)


def test_readme_names_the_real_subcommands() -> None:
    from castray.cli import SERVICES, build_parser

    for name in SERVICES:
        assert f"castray {name}" in README
        build_parser().parse_args([name])

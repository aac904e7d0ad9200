"""The ``castray`` command line: subcommands, options -> CASTRAY_* variables, ``version``, ``health``."""

from __future__ import annotations

import importlib
import importlib.util
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from castray import cli


def _castray(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "castray.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_lists_every_subcommand_without_importing_services() -> None:
    out = _castray("--help")
    assert out.returncode == 0, out.stderr
    for name in ["up", "version", "health", *cli.SERVICES]:
        assert name in out.stdout
    # The services are imported only when their subcommand runs.
    probe = subprocess.run([sys.executable, "-c", "import sys, castray.cli; castray.cli.build_parser(); "
                            "print(sorted(m for m in sys.modules if m.startswith(('castray.gateway', "
                            "'castray.discovery', 'castray.transfer', 'castray.node_registry', 'ray'))))"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


def test_version_is_the_installed_version() -> None:
    out = _castray("version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"castray {metadata.version('castray')}"


@pytest.mark.parametrize("name", sorted(cli.SERVICES))
def test_every_service_subcommand_has_a_main(name: str) -> None:
    module = importlib.import_module(cli.SERVICES[name])
    assert callable(module.main)


def test_options_become_environment_variables() -> None:
    args = cli.build_parser().parse_args(
        ["up", "--port", "8123", "--host", "0.0.0.0", "--no-ray", "--redis-url", "redis://h:1/2",
         "--namespace", "ns1", "--data-dir", "/tmp/x", "--log-level", "DEBUG"])
    env: dict[str, str] = {}
    cli.apply_env(args, env)
    assert env == {"CASTRAY_PORT": "8123", "CASTRAY_HOST": "0.0.0.0", "CASTRAY_START_RAY": "0",
                   "CASTRAY_REDIS_URL": "redis://h:1/2", "CASTRAY_NAMESPACE": "ns1",
                   "CASTRAY_DATA_DIR": "/tmp/x", "CASTRAY_LOG_LEVEL": "DEBUG"}
    # Options not given leave the environment alone.
    env = {}
    cli.apply_env(cli.build_parser().parse_args(["registry"]), env)
    assert env == {}
    # Several gateway processes on one port: `castray up --gateways N`, `castray gateway --processes N`.
    for argv in (["up", "--gateways", "3"], ["gateway", "--processes", "3"]):
        env = {}
        cli.apply_env(cli.build_parser().parse_args(argv), env)
        assert env == {"CASTRAY_GATEWAY_PROCESSES": "3"}


def test_up_settings_read_what_the_options_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from castray.settings import UpSettings

    args = cli.build_parser().parse_args(["up", "--port", "8123", "--no-ray", "--namespace", "ns2"])
    env: dict[str, str] = {}
    cli.apply_env(args, env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = UpSettings()
    assert (settings.port, settings.start_ray, settings.namespace) == (8123, False, "ns2")


@pytest.mark.parametrize("argv", [["up", "--port", "0"], ["up", "--port", "http"], ["nonsense"], []])
def test_bad_command_lines_are_one_clear_error(argv: list[str]) -> None:
    out = _castray(*argv)
    assert out.returncode == 2
    assert "usage: castray" in out.stderr and "Traceback" not in out.stderr


def test_health_answers_for_the_real_redis(redis_url: str) -> None:
    assert _castray("health", "--redis-url", redis_url).returncode == 0


def test_health_fails_when_redis_is_away() -> None:
    out = _castray("health", "--redis-url", f"redis://127.0.0.1:{_closed_port()}/0")
    assert out.returncode == 1 and "unhealthy" in out.stderr and "Traceback" not in out.stderr


def test_health_checks_the_url_too(redis_url: str) -> None:
    out = _castray("health", "--redis-url", redis_url, "--url", f"http://127.0.0.1:{_closed_port()}/api/health")
    assert out.returncode == 1 and "unhealthy" in out.stderr


def test_bad_up_settings_are_one_clear_error() -> None:
    out = _castray("up", env={"CASTRAY_PORT": "not-a-port"})
    assert out.returncode == 2
    assert "castray up: bad settings: port" in out.stderr and "Traceback" not in out.stderr


def test_service_packages_map_onto_their_folders() -> None:
    """Import paths say which folder a module lives in (package-dir in pyproject.toml)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    expected = {"castray.discovery": "services/discovery", "castray.node_registry": "services/node-registry",
                "castray.transfer": "services/transfer", "castray.gateway": "services/gateway"}
    for package, folder in expected.items():
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        assert Path(spec.origin).parent == root / folder


def test_redis_url_falls_back_to_REDIS_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    from castray.settings import UpSettings

    monkeypatch.delenv("CASTRAY_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6390/3")
    assert UpSettings().redis_url == "redis://elsewhere:6390/3"
    monkeypatch.setenv("CASTRAY_REDIS_URL", "redis://here:6379/0")
    assert UpSettings().redis_url == "redis://here:6379/0"

"""docker-compose.yml: valid for docker-compose, and every service runs a real ``castray`` command with
the settings it needs. (No Docker engine runs here; the services themselves are exercised as processes by
tests/test_up.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from castray.cli import SERVICES, build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"

# compose service -> `castray` subcommand it must run
CASTRAY_SERVICES = {"discovery": "discovery", "node-registry": "registry", "transfer": "transfer",
                    "gateway": "gateway"}


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as docker-compose itself resolves it (anchors merged, paths absolute)."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_")}  # the file's own defaults
    out = subprocess.run([exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return dict(yaml.safe_load(out.stdout))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_services_are_the_services_the_cli_knows(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == set(CASTRAY_SERVICES) | {"redis", "ray-head"}
    assert set(CASTRAY_SERVICES.values()) == set(SERVICES)


@pytest.mark.parametrize("name", sorted(CASTRAY_SERVICES))
def test_each_service_runs_its_real_castray_subcommand(resolved: dict[str, Any], name: str) -> None:
    service = resolved["services"][name]
    command = service["command"]
    assert command[0] == "castray"
    args = build_parser().parse_args(command[1:])  # SystemExit here means: not a real subcommand
    assert args.command == CASTRAY_SERVICES[name]
    health = service["healthcheck"]["test"]
    assert health[:2] == ["CMD", "castray"]
    assert build_parser().parse_args(health[2:]).command == "health"
    assert service["restart"] == "unless-stopped"
    assert "build" in service and "image" in service


@pytest.mark.parametrize("name", sorted(CASTRAY_SERVICES))
def test_each_service_gets_the_settings_it_needs(resolved: dict[str, Any], name: str) -> None:
    env = _env(resolved["services"][name])
    assert env["CASTRAY_REDIS_URL"] == "redis://redis:6379/0"
    assert env["CASTRAY_LOG_JSON"] == "true"  # searchable logs: `docker compose logs | jq` (README, "Logs")
    if name in ("gateway", "transfer"):  # uploads and transferred files, on the shared volume
        assert env["CASTRAY_DATA_DIR"] == "/data"
        assert "castray-data:/data:rw" in resolved["services"][name]["volumes"]
    if name == "discovery":
        assert env["CASTRAY_DISCOVERY_ADDRESSES"] == "http://ray-head:8265"
    if name == "gateway":
        assert env["CASTRAY_HOST"] == "0.0.0.0" and env["CASTRAY_PORT"] == "8000"
        assert env["CASTRAY_GATEWAY_PROCESSES"] == "1"  # CASTRAY_GATEWAY_PROCESSES=2 docker compose up
    if name == "transfer":  # a driver needs a raylet on its host: each replica joins the cluster
        args = build_parser().parse_args(resolved["services"][name]["command"][1:])
        assert args.join_ray == "ray-head:6380"


def test_settings_are_real_setting_names(resolved: dict[str, Any]) -> None:
    """Every CASTRAY_* variable compose sets is a field of that service's settings class."""
    import importlib

    classes = {"discovery": ("castray.discovery.settings", "DiscoverySettings"),
               "node-registry": ("castray.node_registry.settings", "RegistrySettings"),
               "transfer": ("castray.transfer.settings", "TransferSettings"),
               "gateway": ("castray.gateway.settings", "GatewaySettings")}
    for name, (module, cls_name) in classes.items():
        fields = set(getattr(importlib.import_module(module), cls_name).model_fields)
        for var in _env(resolved["services"][name]):
            if var.startswith("CASTRAY_"):
                assert var.removeprefix("CASTRAY_").lower() in fields, f"{name}: {var} is not a setting"


def test_gateway_is_published_and_services_scale(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    # Published on this machine's loopback only, unless CASTRAY_PUBLISH says otherwise.
    assert services["gateway"]["ports"] == ["127.0.0.1:8000:8000/tcp"]
    # --scale transfer=3 (they share the work) and --scale discovery=2 (one leads, one stands by) need:
    # no fixed name, no host port.
    for name in ("transfer", "discovery", "node-registry"):
        assert "container_name" not in services[name] and "ports" not in services[name]
    # The gateway image skips Ray; the others carry it.
    assert services["gateway"]["build"]["args"]["EXTRAS"] == "gateway"
    assert services["transfer"]["build"]["args"]["EXTRAS"] == "all"


def test_redis_and_ray_head(resolved: dict[str, Any]) -> None:
    redis = resolved["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(str(v).startswith("redis-data:/data") for v in redis["volumes"])  # a named volume
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    head = resolved["services"]["ray-head"]
    cmd = head["command"]
    assert cmd[:4] == ["ray", "start", "--head", "--block"]
    # The GCS must not take Redis's port, and discovery must find the dashboard where it is told to.
    assert "--port=6380" in cmd and "--dashboard-port=8265" in cmd and "--dashboard-host=0.0.0.0" in cmd
    for name in CASTRAY_SERVICES:
        assert resolved["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(CASTRAY_SERVICES))
def test_each_healthcheck_checks_the_service_s_own_heartbeat(resolved: dict[str, Any], name: str) -> None:
    check = resolved["services"][name]["healthcheck"]
    args = build_parser().parse_args(check["test"][2:])
    assert args.command == "health" and args.service == CASTRAY_SERVICES[name]
    if name == "gateway":
        assert args.url == "http://127.0.0.1:8000/api/health"

"""The gateway fuzzed from its own OpenAPI spec with schemathesis: every operation, with the spec's
examples, its coverage cases and generated data, against `castray up` with a real Ray head, a token set,
and once with the token and once without. No answer is a 5xx, every status is one the spec documents,
and every JSON answer matches its declared content type and schema. The run is bounded by example counts
and a fixed seed, so it is the same run every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from castray import local_ray
from castray.client import Client, GatewayUnreachable, Unavailable
from tests.conftest import drop_namespace
from tests.support import processes
from tests.support.waiting import wait_for_blocking

TOKEN = "fuzz-token-" + uuid.uuid4().hex
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def gateway(ray_head: local_ray.RayNode,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`castray up` on a free port, in a namespace of its own, watching the session's Ray head, with a
    token and small size limits (the fuzzer asks for files of every size). Yields its URL and its spec (read
    with the token: the fuzzer without one still needs it)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    namespace, port = f"test-fuzz-{uuid.uuid4().hex[:8]}", local_ray.free_port()
    (tmp / "no-ray").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    env.update({
        "CASTRAY_NAMESPACE": namespace, "CASTRAY_DATA_DIR": str(tmp / "data"), "CASTRAY_API_TOKEN": TOKEN,
        "CASTRAY_DISCOVERY_ADDRESSES": ray_head.dashboard_url, "CASTRAY_SCAN_HOSTS": "",
        "CASTRAY_RAY_TEMP_DIRS": str(tmp / "no-ray"), "RAY_TMPDIR": str(tmp / "no-ray"),
        "CASTRAY_MAX_GENERATE_BYTES": str(1 << 20), "CASTRAY_MAX_UPLOAD_BYTES": str(1 << 20),
    })
    with open(tmp / "up.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "up", "--no-ray", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    spec = tmp / "openapi.json"
    api = Client(base, token=TOKEN, timeout=5)
    try:
        def fetched() -> bool:
            assert proc.poll() is None, (tmp / "up.log").read_text()
            spec.write_text(json.dumps(api.openapi()))
            return True

        wait_for_blocking(fetched, "the gateway's OpenAPI spec", deadline=120, interval=0.5,
                          ignoring=(GatewayUnreachable, Unavailable))
        yield base, spec
    finally:
        api.close()
        processes.stop(proc)
        drop_namespace(namespace)
        log_text = (tmp / "up.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-4000:]


def _schemathesis(gateway: tuple[str, Path], *headers: str) -> subprocess.CompletedProcess[str]:
    base, spec = gateway
    exe = Path(sys.executable).with_name("schemathesis")
    argv = [str(exe), "run", str(spec), "--url", base, "--checks", CHECKS, "--phases",
            "examples,coverage,fuzzing", "--max-examples", "12", "--seed", "20261201", "-w", "1",
            "--request-timeout", "30"]
    for header in headers:
        argv += ["-H", header]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=spec.parent)  # its cache too


def test_every_operation_fuzzed_with_the_token_answers_as_its_spec_says(gateway: tuple[str, Path]) -> None:
    out = _schemathesis(gateway, f"Authorization: Bearer {TOKEN}")
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "passed" in out.stdout and "failed" not in out.stdout.split("SUMMARY")[-1].lower()


def test_every_operation_fuzzed_without_the_token_answers_as_its_spec_says(gateway: tuple[str, Path]) -> None:
    out = _schemathesis(gateway)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]

"""The transfer service's contracts, without Ray: the service side never imports Ray, a plan and every
driver event survive the one codec unchanged, and a record's source is a tagged union whose JSON is the
API's own shape."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from castray.shared.transfers import GenerateSource, NodeFileSource, TransferRecord, UploadSource
from castray.transfer.protocol import (
    Cancel,
    DestinationEnded,
    Ended,
    Fatal,
    GatewayFile,
    GeneratedFile,
    LocalFile,
    NodeFile,
    Plan,
    PlanDestination,
    Progress,
    Ready,
    Run,
    Started,
    decode_command,
    decode_event,
    encode,
)


def test_the_service_side_never_imports_ray() -> None:
    code = ("import sys, castray.transfer.protocol, castray.transfer.worker, castray.transfer.main; "
            "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("read", [
    LocalFile(root="/data", path="uploads/u/a.bin"), GatewayFile(url="http://gw/api/uploads/u/content"),
    NodeFile(root="/files", path="x/y.bin"),
    GeneratedFile(path="/data/tmp/gen-t-k", size=10, content="text")])
def test_a_plan_crosses_the_codec_as_it_is(read: LocalFile | GatewayFile | NodeFile | GeneratedFile) -> None:
    plan = Plan(id="t1", token="k", input=read, source_ray_node="r" * 56, file_name="a.bin", retry=True,
                dests=[PlanDestination(node_id="c1-n", ray_node_id="n" * 56, dir="/inbox/c1-n"),
                       PlanDestination(node_id="castray-relay", dir="/data/relay/t1-k")])
    for command in (Run(plan=plan), Cancel(id="t1")):
        line = encode(command)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_command(line) == command


def test_every_driver_event_crosses_the_codec_as_it_is() -> None:
    events = [Ready(ray_version="2", pid=1, ray_node_id="r"), Fatal(error="no ray"),
              Started(id="t", bytes_total=5), Progress(id="t", dests={"a": 3}),
              DestinationEnded(id="t", node_id="a", state="completed", path="/p", sha256="0" * 64,
                               bytes_done=5),
              DestinationEnded(id="t", node_id="b", state="failed", error="disk full"),
              Ended(id="t", state="completed", sha256="0" * 64, bytes_read=5)]
    for event in events:
        assert decode_event(encode(event)) == event
    with pytest.raises(ValidationError):
        decode_event(b'{"ev": "done", "id": "t", "state": "finished"}')  # the old words are gone
    with pytest.raises(ValidationError):
        decode_event(encode(Ended(id="t", state="completed")).replace(b"completed", b"finished"))


def test_a_record_source_is_tagged_and_keeps_the_api_shape() -> None:
    shapes = {UploadSource: {"upload_id": "a" * 32},
              NodeFileSource: {"node_id": "c1-n", "path": "d/f.bin"},
              GenerateSource: {"generate": {"size": "1MiB", "content": "text", "file_name": None},
                               "node_id": None}}
    for kind, shape in shapes.items():
        record = TransferRecord(id="t", mode="unicast", source=shape, file_name="f", created_at=1.0,  # type: ignore[arg-type]
                                destinations=[])
        assert type(record.source) is kind
        assert record.model_dump(mode="json")["source"] == shape
    with pytest.raises(ValidationError, match="source must be an upload"):
        TransferRecord(id="t", mode="unicast", source={"x": 1}, file_name="f", created_at=1.0,  # type: ignore[arg-type]
                       destinations=[])

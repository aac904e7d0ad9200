"""Files are confined by the kernel, not only by a check: a symlink swapped in after a path was checked
cannot make a transfer read or write outside its root (real symlinks, the openers called directly); an
upload's path from Redis is read only beneath the data directory; bidi and format characters are refused
in file names."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.confined import open_beneath
from castray.shared.errors import ConfinementError
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.safe_names import safe_file_name
from castray.shared.transfers import UploadRecord
from castray.transfer.agent import open_node_file
from castray.transfer.errors import TransferError
from castray.transfer.protocol import LocalFile
from castray.transfer.sink import SinkSpec, open_sink
from castray.transfer.sources import HereReader
from tests.support import transfer_env as env

SECRET = b"outside the root: never to be read"


def _swap_for_link(directory: Path, target: Path) -> Path:
    """Move ``directory`` aside and put a symlink to ``target`` in its place; the moved folder."""
    moved = directory.with_name(directory.name + ".real")
    directory.rename(moved)
    directory.symlink_to(target, target_is_directory=True)
    return moved


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "a.txt").write_bytes(SECRET)
    return folder


def test_a_directory_swapped_for_a_symlink_after_the_check_cannot_be_read_through(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"inside")
    fd = open_beneath(root, "sub/a.txt")  # the path checks out, and opens
    os.close(fd)
    _swap_for_link(root / "sub", outside)  # now root/sub/a.txt "is" outside/a.txt
    assert (root / "sub" / "a.txt").read_bytes() == SECRET  # an ordinary open would follow it
    with pytest.raises(ConfinementError, match="'sub' is a symbolic link"):
        open_beneath(root, "sub/a.txt")
    with pytest.raises(TransferError, match="bad source path: 'sub' is a symbolic link"):
        open_node_file(str(root), "sub/a.txt")
    (root / "last.txt").symlink_to(outside / "a.txt")  # the file itself a symlink
    with pytest.raises(TransferError, match="'last.txt' is a symbolic link"):
        open_node_file(str(root), "last.txt")
    for escape in ("../outside/a.txt", str(outside / "a.txt")):
        with pytest.raises(TransferError, match="bad source path"):
            open_node_file(str(root), escape)


def test_an_upload_folder_swapped_for_a_symlink_is_not_read(tmp_path: Path, outside: Path) -> None:
    data = tmp_path / "data"
    (data / "uploads" / "u1").mkdir(parents=True)
    (data / "uploads" / "u1" / "a.txt").write_bytes(b"the upload")
    reader = HereReader(LocalFile(root=str(data), path="uploads/u1/a.txt"))
    assert reader.open(None, False) == 10
    reader.close()
    _swap_for_link(data / "uploads" / "u1", outside)
    with pytest.raises(TransferError, match="source refused: 'uploads/u1' is a symbolic link"):
        HereReader(LocalFile(root=str(data), path="uploads/u1/a.txt")).open(None, False)


def _sink_spec(inbox: Path, file_name: str = "a.txt", overwrite: bool = False) -> SinkSpec:
    return SinkSpec(dir=str(inbox / "node-1"), file_name=file_name, transfer_id=uuid.uuid4().hex, token="t0",
                    overwrite=overwrite)


def test_a_node_folder_swapped_for_a_symlink_after_the_sink_opened_gets_nothing_outside(
    tmp_path: Path, outside: Path
) -> None:
    inbox = tmp_path / "inbox"
    payload = b"the copy"
    sink = open_sink(_sink_spec(inbox))  # checked and opened: inbox/node-1 is a real folder now
    moved = _swap_for_link(inbox / "node-1", outside)  # then swapped for a link out of the inbox
    sink.write(bytearray(payload), hashlib.sha256(payload).hexdigest())
    out = sink.finish(hashlib.sha256(payload).hexdigest())
    sink.abort()
    assert sorted(os.listdir(outside)) == ["a.txt"] and (outside / "a.txt").read_bytes() == SECRET
    assert (moved / "a.txt").read_bytes() == payload  # the copy went where the check was made
    assert out["path"] == str((inbox / "node-1" / "a.txt").absolute())

    # A sink opened after the swap is refused, with nothing written anywhere.
    with pytest.raises(TransferError, match="inbox refused: 'node-1' is a symbolic link"):
        open_sink(_sink_spec(inbox, file_name="b.txt"))
    assert sorted(os.listdir(outside)) == ["a.txt"]


def test_a_symlink_at_the_destination_name_is_never_written_through(tmp_path: Path, outside: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "node-1").mkdir(parents=True)
    (inbox / "node-1" / "a.txt").symlink_to(outside / "a.txt")
    with pytest.raises(TransferError, match="exists"):
        open_sink(_sink_spec(inbox))
    sha = hashlib.sha256(b"new").hexdigest()
    sink = open_sink(_sink_spec(inbox, overwrite=True))
    sink.write(bytearray(b"new"), sha)
    sink.finish(sha)
    sink.abort()
    assert (outside / "a.txt").read_bytes() == SECRET  # the link was replaced, not followed
    link = inbox / "node-1" / "a.txt"
    assert not link.is_symlink() and link.read_bytes() == b"new"


async def test_an_upload_path_outside_the_data_directory_is_refused(
    namespace: str, tmp_path: Path, redis_client: aioredis.Redis, names: Names, outside: Path
) -> None:
    cluster = ClusterInfo(id="cx", name="cx", gcs_address="127.0.0.1:1")  # never contacted
    node = NodeInfo(id="cx-aaaaaaaaaaaa", ray_node_id="a" * 56, cluster_id="cx", name="a", is_head=True)
    await redis_client.hset(names.view_clusters, cluster.id, codec.encode(cluster))
    await redis_client.hset(names.view_nodes, node.id, codec.encode(node))
    upload_id = uuid.uuid4().hex
    forged = UploadRecord(upload_id=upload_id, file_name="a.txt", file_size=len(SECRET), sha256="0" * 64,
                          path=str(outside / "a.txt"), created_at=time.time())  # written into Redis by anyone
    await redis_client.set(names.upload(upload_id), codec.encode(forged))
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[node.id],
                          file_name="a.txt", mode="unicast", cluster_id="cx")
    async with env.running_worker(namespace, tmp_path, redis_client):
        got = await env.wait_record(redis_client, names, rec.id, env.done, timeout=60)
    assert got.state == "failed"
    assert "refuses to read" in str(got.error) and "outside the data directory" in str(got.error)


@pytest.mark.parametrize("name", ["evil\u202etxt.exe", "a\u200bb.txt", "x\u2066y.bin", "\ufeffbom.txt"])
def test_bidi_and_format_characters_are_refused_in_names(name: str) -> None:
    with pytest.raises(ValueError, match="format characters"):
        safe_file_name(name)


def test_a_fifo_in_place_of_a_source_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO put where a source file was expected: opening it for reading would block the opening thread
    until a writer came; it is opened non-blocking and refused as not a regular file."""
    root = tmp_path / "files"
    root.mkdir()
    os.mkfifo(root / "data.bin")
    with pytest.raises(ConfinementError, match="not a regular file"):
        open_beneath(root, "data.bin", os.O_RDONLY)

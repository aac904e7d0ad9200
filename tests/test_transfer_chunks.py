"""A source's per-chunk digests and a sink's checks, without Ray: the running sha256, or, when the
file's sha256 is known (an upload), a per-chunk xxh3; a corrupted chunk is refused before it is written,
and a file that no longer matches the known sha256 is never placed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from castray.transfer.agent import SourceFile
from castray.transfer.errors import TransferError
from castray.transfer.sink import CHUNK_DIGEST, Sink, SinkSpec, open_sink, temp_name

CHUNK = 1 << 20


def _sink(dest_dir: Path) -> Sink:
    """A sink for ``<dest_dir>/inbox/copy.bin``, writing ``_temp(dest_dir)`` first."""
    return open_sink(SinkSpec(dir=str(dest_dir / "inbox"), file_name="copy.bin", transfer_id="t",
                              token="k", overwrite=False))


def _temp(dest_dir: Path) -> Path:
    return dest_dir / "inbox" / temp_name("t", "k")


def _copy(src: Path, dest_dir: Path, known_sha: str | None) -> Sink:
    source = SourceFile.open(src, remove_after=False, known_sha=known_sha)
    sink = _sink(dest_dir)
    try:
        for offset in range(0, source.size, CHUNK):
            sink.write(*source.read(min(CHUNK, source.size - offset)))
    finally:
        source.close()
    return sink


@pytest.mark.parametrize("known", [False, True])
def test_chunks_verified_and_copy_placed(tmp_path: Path, known: bool) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * CHUNK + 777))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    source = SourceFile.open(src, remove_after=False, known_sha=sha if known else None)
    _, digest = source.read(CHUNK)
    source.close()
    assert digest.startswith(CHUNK_DIGEST) == known
    sink = _copy(src, tmp_path, sha if known else None)
    out = sink.finish(sha)
    assert out["sha256"] == sha and Path(out["path"]).read_bytes() == src.read_bytes()
    assert not _temp(tmp_path).exists()


@pytest.mark.parametrize("known", [False, True])
def test_a_corrupted_chunk_is_refused_at_once(tmp_path: Path, known: bool) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * CHUNK))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    sink = _sink(tmp_path)
    source = SourceFile.open(src, remove_after=False, known_sha=sha if known else None)
    try:
        sink.write(*source.read(CHUNK))
        data, digest = source.read(CHUNK)
        data = data.copy()
        data[5] ^= 0xFF
        with pytest.raises(TransferError, match=f"chunk at byte {CHUNK} arrived corrupted"):
            sink.write(data, digest)
        sink.writer.flush()
        assert _temp(tmp_path).stat().st_size == CHUNK  # only the good chunk was written
    finally:
        source.close()
        sink.abort()
    assert not _temp(tmp_path).exists()


def test_a_source_changed_since_upload_is_never_placed(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * CHUNK))
    recorded = hashlib.sha256(src.read_bytes()).hexdigest()
    src.write_bytes(os.urandom(2 * CHUNK))  # changed on disk after the upload recorded its sha256
    sink = _copy(src, tmp_path, recorded)
    try:
        with pytest.raises(TransferError, match="sha256 mismatch"):
            sink.finish(recorded)
    finally:
        sink.abort()
    assert not (tmp_path / "inbox" / "copy.bin").exists() and not _temp(tmp_path).exists()

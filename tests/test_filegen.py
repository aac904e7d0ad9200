"""shared/filegen.py and shared/safe_names.py: exact sizes, contents, hostile names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from castray.shared import filegen
from castray.shared.safe_names import inside, safe_file_name

SIZES = [0, 1, 15, 1023, 1024, 1025, 4096 + 7, 3 * 1000 + 1]


@pytest.mark.parametrize("content", filegen.CONTENT_TYPES)
@pytest.mark.parametrize("size", SIZES)
def test_exact_size_and_sha(tmp_path: Path, content: str, size: int) -> None:
    path = tmp_path / "f.bin"
    # a small chunk forces many chunk boundaries
    sha = filegen.write_generated(path, size, content, chunk=1000)  # type: ignore[arg-type]
    data = path.read_bytes()
    assert len(data) == size
    assert sha == hashlib.sha256(data).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left


def test_pattern_content_is_the_unit_repeated(tmp_path: Path) -> None:
    size = 5 * len(filegen.PATTERN_UNIT) + 100
    filegen.write_generated(tmp_path / "p", size, "pattern", chunk=3000)
    expected = (filegen.PATTERN_UNIT * 6)[:size]
    assert (tmp_path / "p").read_bytes() == expected
    assert expected.startswith(b"0123456789ABCDEF0123")


def test_text_content_is_numbered_lines_independent_of_chunk(tmp_path: Path) -> None:
    filegen.write_generated(tmp_path / "a", 50_000, "text", chunk=777)
    filegen.write_generated(tmp_path / "b", 50_000, "text", chunk=filegen.DEFAULT_CHUNK)
    a = (tmp_path / "a").read_bytes()
    assert a == (tmp_path / "b").read_bytes()
    lines = a.decode().split("\n")
    assert lines[0] == filegen.TEXT_LINE.format(n=1).rstrip("\n")
    assert lines[1] == filegen.TEXT_LINE.format(n=2).rstrip("\n")
    assert all(line.startswith("Line ") for line in lines[:-1])


def test_random_content_differs_between_files(tmp_path: Path) -> None:
    s1 = filegen.write_generated(tmp_path / "r1", 4096, "random")
    s2 = filegen.write_generated(tmp_path / "r2", 4096, "random")
    assert s1 != s2
    # not constant: a PRNG file has many distinct byte values
    assert len(set((tmp_path / "r1").read_bytes())) > 200


def test_bad_content_and_size_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown content"):
        filegen.write_generated(tmp_path / "x", 10, "bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        filegen.write_generated(tmp_path / "x", -1, "text")
    assert list(tmp_path.iterdir()) == []


def test_replaces_existing_atomically(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"old")
    filegen.write_generated(p, 10, "pattern")
    assert p.read_bytes() == b"0123456789"


@pytest.mark.parametrize(("raw", "expected"), [
    ("../../x", "x"), ("/etc/passwd", "passwd"), ("a\\b\\c.txt", "c.txt"), ("C:\\Users\\me\\f.txt", "f.txt"),
    ("dir/", "dir"), ("  spaced.txt ", "spaced.txt"), ("ok name.bin", "ok name.bin"),
    ("日本語.txt", "日本語.txt"), (".hidden", ".hidden"),
])
def test_safe_file_name_strips_directories(raw: str, expected: str) -> None:
    assert safe_file_name(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"), ("   ", "empty"), ("/", "empty"), ("..", "dots"), ("a/...", "dots"), ("../..", "dots"),
    ("a\x00b", "NUL"), ("a\nb", "control"), ("a\x7fb", "control"), ("x" * 256, "255 bytes"),
    ("é" * 128, "255 bytes"), ("CON", "reserved"), ("nul.txt", "reserved"), (".f.txt.part", "temporary"),
])
def test_safe_file_name_refuses_unusable(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        safe_file_name(raw)


def test_safe_file_name_allows_255_bytes() -> None:
    assert safe_file_name("x" * 255) == "x" * 255


def test_inside_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert inside(root, "a", "b.txt") == (root / "a" / "b.txt").resolve()
    for parts in (("..", "x"), ("/etc/passwd",), ("a", "..", "..", "x"), (".",), ("a\x00",)):
        with pytest.raises(ValueError):
            inside(root, *parts)
    # a symlink pointing out of root is refused too
    os.symlink(tmp_path, root / "link")
    with pytest.raises(ValueError, match="outside"):
        inside(root, "link", "x")

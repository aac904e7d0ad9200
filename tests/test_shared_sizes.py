from __future__ import annotations

import pytest

from castray.shared.errors import SizeError
from castray.shared.sizes import PRESETS, format_size, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("1KB", 1024), ("1.5MB", 1536 * 1024), ("2GB", 2 * 1024**3), ("64MiB", 64 * 1024**2), ("1 mb", 1024**2),
    ("1e3KB", 1024000), ("0", 0), ("1024", 1024), (4096, 4096), ("1GiB", 1024**3), ("7B", 7)])
def test_sizes_as_people_write_them(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["-1", "inf", "nan", "1XB", "1e400GB", "", "MB", "1.2.3KB", -5, True, "9" * 100])
def test_non_sizes_are_refused_with_a_reason(text: str | int) -> None:
    with pytest.raises(SizeError) as info:
        parse_size(text)
    assert str(info.value)


def test_format_matches_the_original() -> None:
    assert format_size(1023) == "1023 B"
    assert format_size(1024) == "1.00 KB"
    assert format_size(1536 * 1024) == "1.50 MB"
    assert PRESETS["massive"][0] == 100 * 1024**2

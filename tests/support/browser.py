"""The ``browser`` fixture of the page tests (``pytest_plugins = ("tests.support.browser",)``): Chromium,
started once per module, as it takes seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.support.ui_harness import launch_browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()

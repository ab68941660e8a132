"""Fixtures of the browser tests: a ``netbus up`` cluster, headless Chromium, artifacts."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import ARTIFACTS, CHROMIUM_ARGS, UpCluster, chromium_path


@pytest.fixture
async def up_cluster(tmp_path: Path) -> AsyncIterator[UpCluster]:
    """A running ``netbus up`` (cwd ``tmp_path/up``); always stopped afterwards."""
    cluster = UpCluster(tmp_path / "up")
    started = False
    try:
        await cluster.start()
        started = True
        yield cluster
    finally:
        code = await asyncio.to_thread(cluster.stop)
        print(f"--- netbus up (exit code {code}) ---\n{cluster.log(200)}")
    assert not started or code == 0, f"netbus up did not stop cleanly on SIGTERM: {code}"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (Playwright async API), closed afterwards."""
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """``test-artifacts/browser/<test name>/``, emptied first."""
    path = ARTIFACTS / request.node.name.replace("/", "_")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path

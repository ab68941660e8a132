"""Fixtures of the gateway tests: the shared Redis, when a test needs the Redis registry."""

from __future__ import annotations

import pytest

from tests.registry.conftest import _check_shared_redis
from tests.registry.redis_server import REDIS_URL


@pytest.fixture
async def redis_url() -> str:
    """The shared Redis (skipped when it does not answer, failed under CI); each
    `netbus.testing.TestCluster` on it works under a key prefix of its own and deletes it."""
    await _check_shared_redis()
    return REDIS_URL

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.templates import LOCKED, THREE_STEPS
from tests.support import RedisTarget


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=[False, True], ids=["once", "twice"])
def delivered_twice(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(scope="module")
def harness(
    backend: str, delivered_twice: bool, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """A running stack per (backend, delivery mode): every saga scenario runs in each."""
    tmp = tmp_path_factory.mktemp(f"stack-{backend}")
    for url in database_url(backend, tmp):
        settings = stack_settings(tmp, url, redis_target, fault_duplicate_delivery=delivered_twice)
        h = Harness(settings, redis_target).start()
        h.register(THREE_STEPS)
        h.register(LOCKED)
        try:
            yield h
        finally:
            h.stop()

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS
from tests.integration.harness import Harness, running_harness
from tests.integration.templates import FAN_OUT_HANDLERS, LOCKED, SLOW, THREE_STEPS
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
    templates = [THREE_STEPS, LOCKED, FAN_OUT_HANDLERS, SLOW]
    with running_harness(backend, tmp, redis_target, templates, fault_duplicate_delivery=delivered_twice) as h:
        yield h

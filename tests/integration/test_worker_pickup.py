"""A worker busy with one step still takes the next dispatch: with acks late and a prefetch of one
per pool process, a worker of two processes that holds a running step's message keeps consuming,
and runs what arrives meanwhile. Real stack: orchestrator and workers as subprocesses.

A worker that took no message while it held one (a prefetch limit of one message, a consumer that
fetches only when idle) would leave every dispatch behind a running step in its queue until that
step ended: at a steady pace, behind whatever step happened to be running."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import running_harness
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_running_a_step_receives_the_next_dispatch(
    backend: str, tmp_path: Path, clean_redis: RedisTarget
) -> None:
    with running_harness(backend, tmp_path, clean_redis, [THREE_STEPS]) as harness:
        held = harness.submit("it.three", {"tag": "held", "behaviour": {"one": {"hold_until_released": True}}})
        books = clean_redis.client()
        try:
            eventually(lambda: books.get("test:holding:held"), timeout=60, what="the first saga's step 'one' running")
            # alpha's worker (two pool processes) holds the running step's message: steps 'one' and
            # 'three' of another saga must run on it meanwhile.
            other = harness.submit("it.three", {"tag": "other"})
            assert harness.wait_final(other, timeout=60).state == "completed"
            assert books.get("test:holding:held") == b"one"
            assert harness.saga(held).state == "running", "the held step ended before the other saga ran"
            books.rpush("test:release:held", 1)
            assert harness.wait_final(held, timeout=60).state == "completed"
        finally:
            books.close()

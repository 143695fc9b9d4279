"""The baseline: the same three no-op steps as a raw Celery chain ``a | b | c``.

No result backend (favouring the baseline); the last task records when the chain finished.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ["BENCH_BROKER_URL"]
REDIS = os.environ["BENCH_REDIS_URL"]

app = Celery("raw_chain", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="raw",
    worker_hijack_root_logger=False,
)
_books: dict[str, redis.Redis] = {}


@app.task(name="raw.a")
def a(n: int) -> int:
    return n


@app.task(name="raw.b")
def b(n: int) -> int:
    return n


@app.task(name="raw.c")
def c(n: int) -> None:
    client = _books.get("r") or _books.setdefault("r", redis.Redis.from_url(REDIS))
    client.rpush("bench:raw:done", f"{n} {time.time()}")

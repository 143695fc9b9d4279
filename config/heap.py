"""The garbage collector's set-up for workyard's long-running processes (the API, the orchestrator,
a worker and its pool processes).

Once a process has started, most of its heap (modules, mappers, schemas, Celery's app) lives as
long as it does. Left in the collector's sight, every full collection walks all of it: in a
process claiming work items, one such collection (81 ms, once in a run of 5,000 claims) stalled
every claim in flight and made the slowest 1% of them. Frozen, a full collection walks only what
came after (about 3 ms there).
"""

from __future__ import annotations

import gc

# For the API (Python's defaults are 700, 10, 10). A batch submit builds thousands of objects that
# live until it commits: at the defaults the collector walked them over and over, a tenth of a
# batch submit's CPU. Young collections a seventieth as often hold garbage longer: a few MB for
# workyard's own objects, but as much as the cycles hold, so not where handlers (anyone's code)
# run: a handler that keeps a caught exception beside a large payload would keep thousands of them.
BATCH_THRESHOLDS = (50_000, 50, 100)


def settle(thresholds: tuple[int, int, int] | None = None) -> None:
    """Call once the process has started, before it serves: freeze what is alive out of the
    collector's sight; ``thresholds``, if given, become the collector's.

    In a process that forks workers (Celery's prefork pool), call it before the fork: the pool
    processes inherit the frozen heap, and their collections do not touch (and copy) its pages."""
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)

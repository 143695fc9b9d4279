"""What the pause check (templates and capabilities paused) adds to one dispatch, in process.

    python bench/pause_check.py [--dispatches 20000] [--pauses 50] [--database-url URL]

On a scratch database (SQLite unless --database-url names PostgreSQL), migrated to head, one saga
engine dispatches step 0 of a one-step handler template over and over (``SagaEngine.dispatch_step``:
the step run, the attempt row and the outbox row built in the unit of work, never written), as the
coordinator does for every next step. Timed three ways, in alternating rounds (so that a load that
comes and goes on the machine weighs on each alike), the best of seven rounds each:

- ``no check``: a store whose ``pauses`` answers "none" at once (what a dispatch cost before the
  check, plus one method call);
- ``check, none paused``: the real store (the process's pause book, read at most once a second);
- ``check, N paused``: the same with N capability pauses in force, none of them this saga's.

Then the check alone (``store.pauses(...)``, and ``holding(...)`` when something is paused), the best
of seven rounds of 100,000: the dispatch figures move with the machine's load by more than the
check costs, the check alone much less.

The last line is ``pause check alone: X.XX us (none paused), Y.YY us (N paused)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import log, scratch_database  # noqa: E402
from config.settings import Settings  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.tables import QueuePause  # noqa: E402
from models.template import TemplateSpec  # noqa: E402
from orchestrator.sagas.engine import SagaEngine  # noqa: E402
from orchestrator.sagas.pause_book import NONE, PauseBook, Pauses, book_of  # noqa: E402
from orchestrator.sagas.store import SqlSagaStore  # noqa: E402
from orchestrator.sagas.submit import start_saga  # noqa: E402
from orchestrator.storage.db import make_engine, make_session_factory  # noqa: E402
from orchestrator.storage.migrate import upgrade  # noqa: E402
from orchestrator.storage.unit_of_work import UnitOfWork  # noqa: E402

SPEC = TemplateSpec.model_validate(
    {"name": "bench.pause", "version": "1.0.0", "steps": [{"name": "a", "capability": "alpha", "handler": "a"}]}
)


class _Unchecked(SqlSagaStore):
    def pauses(self, max_age_s: float) -> Pauses:
        return NONE


def _frozen(pauses: Pauses) -> PauseBook:
    """A book that holds ``pauses`` and is never stale: what the check costs between reads (one
    read a second, ~0.1 ms, is 0.1 us a dispatch at a thousand dispatches a second)."""
    book = PauseBook()
    book._pauses, book._read_at = pauses, float("inf")
    return book


def _round(engine: SagaEngine, n: int) -> float:
    saga = start_saga(engine, SPEC, tenant="t", input={}, digest="d", idempotence_key=None)
    uow = engine.uow
    started = time.perf_counter()
    for i in range(n):
        engine.dispatch_step(saga, SPEC, 0)
        if i % 1000 == 999:
            uow.discard()  # keep the buffers small, as a batch's are
    return (time.perf_counter() - started) / n * 1e6


def _best(engines: list[SagaEngine], n: int) -> list[float]:
    """The best round of each engine, their rounds taken in turn."""
    best = [float("inf")] * len(engines)
    for _ in range(7):
        for i, engine in enumerate(engines):
            best[i] = min(best[i], _round(engine, n))
    return best


def _check(store: SqlSagaStore, settings: Settings, n: int = 100_000) -> float:
    """The best round of the check as ``SagaEngine._dispatch`` makes it, in microseconds."""
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(n):
            pauses = store.pauses(settings.pause_refresh_s)
            if pauses:
                pauses.holding("t", SPEC.name, "alpha")
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dispatches", type=int, default=20_000)
    parser.add_argument("--pauses", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with scratch_database(args.database_url, prefix="bench_pause", keep=False) as url:
        settings = Settings(database_url=url)
        db = make_engine(url)
        upgrade(db)
        sessions = make_session_factory(db)
        with sessions.begin() as session:
            for i in range(args.pauses):
                session.add(QueuePause(kind="capability", tenant="*", name=f"cap{i}", actor="bench", reason="bench"))
        now = utcnow()
        # One session (SQLite takes its write lock as a transaction begins): the stores read
        # through it once, if at all.
        with sessions() as session:
            plain = SagaEngine(UnitOfWork(), _Unchecked(session), settings, now)
            none_store = SqlSagaStore(session)
            none_store._book = _frozen(NONE)  # nothing paused
            some_store = SqlSagaStore(session)
            some_store._book = _frozen(book_of(session).refresh(session))
            engines = [
                plain,
                SagaEngine(UnitOfWork(), none_store, settings, now),
                SagaEngine(UnitOfWork(), some_store, settings, now),
            ]
            base, none, some = _best(engines, args.dispatches)
            check_none, check_some = _check(none_store, settings), _check(some_store, settings)
        db.dispose()
    log(f"dispatch, no check:            {base:6.2f} us")
    log(f"dispatch, check, none paused:  {none:6.2f} us")
    log(f"dispatch, check, {args.pauses} paused:    {some:6.2f} us")
    log(f"difference per dispatch: {none - base:+.2f} us (none paused), {some - base:+.2f} us ({args.pauses} paused)")
    print(f"pause check alone: {check_none:.2f} us (none paused), {check_some:.2f} us ({args.pauses} paused)")


if __name__ == "__main__":
    main()

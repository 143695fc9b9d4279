"""One orchestrator's timer loop in a process of its own, on a clock frozen at an instant, for
tests that run two of them against one database.

    python -m tests.timer_loop_process DATABASE_URL ISO_INSTANT READY_FILE

Connects, writes READY_FILE.ready-PID, waits for a line on stdin (the test writes one to each
process once both are ready, so that they start firing together), fires every timer due at the
instant, and prints how many it fired.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from config.settings import Settings
from orchestrator.service.timers import TimerService
from orchestrator.service.wiring import Wiring


def main() -> None:
    url, instant, ready = sys.argv[1], datetime.fromisoformat(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(database_url=url, data_dir=ready.parent)
    wiring = Wiring(settings)
    loop = TimerService(wiring.sessions, settings, wiring.dispatcher, clock=lambda: instant)
    with wiring.engine.connect():
        pass  # connected before saying so
    ready.with_name(f"{ready.name}.ready-{os.getpid()}").touch()
    if not sys.stdin.readline():
        sys.exit("stdin closed before the go")
    fired = 0
    while (n := loop.tick()) > 0:
        fired += n
    wiring.close()
    print(fired)


if __name__ == "__main__":
    main()

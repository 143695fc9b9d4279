"""One orchestrator's timer loop in a process of its own, on a clock frozen at an instant, for
tests that run two of them against one database.

    python -m tests.timer_loop_process DATABASE_URL ISO_INSTANT GO_FILE

Connects, writes GO_FILE.ready-PID, waits until GO_FILE exists (so that both processes start
firing together), fires every timer due at the instant, and prints how many it fired.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

from config.settings import Settings
from orchestrator.service.timers import TimerService
from orchestrator.service.wiring import Wiring


def main() -> None:
    url, instant, go = sys.argv[1], datetime.fromisoformat(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(database_url=url, data_dir=go.parent)
    wiring = Wiring(settings)
    loop = TimerService(wiring.sessions, settings, wiring.dispatcher, clock=lambda: instant)
    with wiring.engine.connect():
        pass  # connected before saying so
    go.with_name(f"{go.name}.ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go file within 60 s")
        time.sleep(0.005)
    fired = 0
    while (n := loop.tick()) > 0:
        fired += n
    wiring.close()
    print(fired)


if __name__ == "__main__":
    main()

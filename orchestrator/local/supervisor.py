"""Starts the processes of a stack and stops every one of them, on exit and on Ctrl-C."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0


@dataclass
class Child:
    """A process the supervisor started, by name."""

    name: str
    process: subprocess.Popen[bytes]


class Supervisor:
    """Tracks child processes; :meth:`stop_all` ends them (TERM, then KILL after a grace)."""

    def __init__(self, log_dir: Path | None = None):
        self.children: list[Child] = []
        self.log_dir = log_dir
        atexit.register(self.stop_all)

    def adopt(self, name: str, process: subprocess.Popen[bytes]) -> Child:
        child = Child(name, process)
        self.children.append(child)
        return child

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str], *, quiet: bool = True) -> Child:
        """Run ``argv`` as a child in its own process group, logging to ``<log_dir>/<name>.log``."""
        out: int | None = None
        handle = None
        if quiet and self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.log_dir / f"{name}.log").open("ab")
            out = handle.fileno()
        process = subprocess.Popen(
            list(argv), env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        if handle is not None:
            handle.close()
        return self.adopt(name, process)

    def failed(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None]

    def stop_all(self) -> None:
        # Stop in reverse start order: workers and services before the Redis they talk to.
        for child in reversed(self.children):
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in reversed(self.children):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", child.name, STOP_GRACE_S)
                _signal(child, signal.SIGKILL)
                child.process.wait()
        self.children.clear()


def _signal(child: Child, sig: int) -> None:
    if child.process.poll() is not None:
        return
    try:
        # The whole group: a Celery worker's pool processes go with it.
        os.killpg(child.process.pid, sig)
    except ProcessLookupError:
        pass


def python_argv(*args: str) -> list[str]:
    """Run a module of ours with the same interpreter (the venv's), whatever PATH says."""
    return [sys.executable, *args]

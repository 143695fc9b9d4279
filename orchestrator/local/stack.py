"""A whole stack on one machine: Redis (embedded), orchestrator, API, workers, Flower.

``workyard up`` and ``make demo`` use it; so do the integration tests, which is how they run
real worker processes against real Redis and a real database.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from config.settings import Settings, settings_env
from orchestrator.errors import OrchestratorError
from orchestrator.local.embedded import start_redis
from orchestrator.local.supervisor import Supervisor, python_argv
from orchestrator.service.wiring import Wiring
from orchestrator.storage.migrate import upgrade
from workers.registry import capabilities, load_handler_modules


class StackError(OrchestratorError):
    """A process of the local stack could not be started or did not come up."""

    code = "stack"


@dataclass
class WorkerSpec:
    """One worker process of a local stack: the capabilities it consumes, its handler modules, its pool."""

    capabilities: list[str]
    handlers: list[str]
    concurrency: int = 2
    pool: str = "prefork"
    name: str | None = None
    # Environment for this worker alone, over the stack's.
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class StackOptions:
    """What a local stack runs besides the orchestrator: workers, the API, Flower, more orchestrators."""

    workers: list[WorkerSpec] = field(default_factory=list)
    api: bool = True
    flower: bool = True
    orchestrators: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)


def workers_for_modules(modules: list[str], concurrency: int = 2, pool: str = "prefork") -> list[WorkerSpec]:
    """One worker per capability that the handler modules register."""
    load_handler_modules(modules)
    return [WorkerSpec([c], modules, concurrency, pool) for c in capabilities()]


class Stack:
    """A whole workyard on one machine: Redis, orchestrators, API, workers and Flower, started and stopped together."""

    def __init__(self, settings: Settings, options: StackOptions):
        self.settings = settings
        self.options = options
        self.supervisor = Supervisor(log_dir=settings.data_path / "logs")
        self.wiring = Wiring(settings)
        self.worker_names: list[str] = []
        self._node = f"{socket.gethostname()}-{os.getpid()}"

    @property
    def env(self) -> dict[str, str]:
        env = settings_env(self.settings)
        env.update(self.options.extra_env)
        return env

    @property
    def flower_credentials(self) -> tuple[str, str]:
        """Flower's basic-auth user and password: made once, kept in the data dir (owner only)."""
        path = self.settings.data_path / "flower-credentials"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.write_text(f"workyard:{secrets.token_urlsafe(18)}\n")
        path.chmod(0o600)
        user, _, password = path.read_text().strip().partition(":")
        return user, password

    def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        # The admin token, Flower's credentials, the logs and Redis's files live here: owner only.
        self.settings.data_path.mkdir(parents=True, exist_ok=True)
        self.settings.data_path.chmod(0o700)
        if self.settings.embedded_redis:
            progress(f"starting Redis on {self.settings.redis_socket}")
            self.supervisor.adopt("redis", start_redis(self.settings.data_path, self.settings.redis_socket))
        progress("applying database migrations")
        upgrade(self.wiring.engine)
        env = self.env
        for i in range(self.options.orchestrators):
            self.supervisor.spawn(f"orchestrator-{i}", python_argv("-m", "orchestrator.cli", "orchestrator"), env)
        if self.options.api:
            self.supervisor.spawn("api", python_argv("-m", "orchestrator.cli", "api"), env)
        for i, worker in enumerate(self.options.workers):
            self.start_worker(worker, index=i)
        if self.options.flower:
            # Flower's UI and HTTP API (which can stop a worker consuming a queue) take basic auth;
            # the credentials go by environment, not argv, which other local users can read.
            flower_env = env | {"FLOWER_BASIC_AUTH": ":".join(self.flower_credentials)}
            self.supervisor.spawn(
                "flower",
                python_argv(
                    "-m",
                    "celery",
                    "-A",
                    "workers.celery.instance:app",
                    "flower",
                    f"--port={self.settings.flower_port}",
                    "--address=127.0.0.1",
                ),
                flower_env,
            )
        progress("waiting for the services to answer")
        self.wait_ready()

    def start_worker(self, worker: WorkerSpec, *, index: int | None = None) -> str:
        name = (
            worker.name
            or f"{'+'.join(worker.capabilities)}-{index if index is not None else len(self.worker_names)}@{self._node}"
        )
        argv = [
            "-m",
            "orchestrator.cli",
            "worker",
            "--concurrency",
            str(worker.concurrency),
            "--pool",
            worker.pool,
            "--hostname",
            name,
        ]
        for cap in worker.capabilities:
            argv += ["--capability", cap]
        for module in worker.handlers:
            argv += ["--handlers", module]
        self.supervisor.spawn(f"worker-{name.split('@')[0]}", python_argv(*argv), self.env | worker.env)
        self.worker_names.append(name)
        return name

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        if self.options.api:
            self._wait(deadline, "the API", self._api_up)
        if self.worker_names:
            self._wait(deadline, "the workers", lambda: set(self.worker_names) <= self.ping_workers())

    def ping_workers(self) -> set[str]:
        replies = self.wiring.app.control.ping(timeout=0.5) or []
        return {name for reply in replies for name in reply}

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.settings.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            dead = self.supervisor.failed()
            if dead:
                logs = self.settings.data_path / "logs"
                raise StackError(f"{', '.join(c.name for c in dead)} exited while starting; see {logs}")
            if ready():
                return
            time.sleep(0.2)
        raise StackError(f"{what} did not answer in time; see {self.settings.data_path / 'logs'}")

    def stop(self) -> None:
        self.wiring.close()
        self.supervisor.stop_all()

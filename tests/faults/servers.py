"""Servers a fault run owns, so that it can kill and restart them: a Redis and a PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server on a TCP port of its own, in ``directory``. ``appendfsync`` "always": a
    write Redis acknowledged survives a kill -9; None: no persistence at all."""

    def __init__(self, directory: Path, *, appendfsync: str | None = "always"):
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""]
            if self.appendfsync
            else ["--appendonly", "no", "--save", ""]
        )
        log = open(self.directory / "redis.log", "ab")  # handed to the child, closed here once it has it
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                *persistence,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: nothing flushed beyond what its fsync policy already wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def wipe(self) -> None:
        """Lose every file Redis kept (as a server without persistence loses its data)."""
        for entry in self.directory.iterdir():
            if entry.name != "redis.log":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class PostgresServer:
    """A PostgreSQL cluster of the run's own (initdb into ``directory``), so it can be restarted.
    As root, the cluster runs as the ``postgres`` user (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        # Its own directory right under the temporary root: as root the cluster runs as
        # ``postgres``, which could not reach into a directory private to root.
        self.directory = Path(tempfile.mkdtemp(prefix="wy-fault-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()

    @staticmethod
    def available() -> str | None:
        """Why this machine cannot run one, or None."""
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            return "initdb/pg_ctl not installed"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser"
        return None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl("start", "-w")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=on -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "postgres.log"), "-o", options, action, *extra
        )

    def restart(self) -> None:
        """Stop at once (as a crash: no shutdown checkpoint, connections cut) and start again."""
        self._pg_ctl("stop", "-m", "immediate")
        self._pg_ctl("start", "-w")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", "fast")
        shutil.rmtree(self.directory, ignore_errors=True)

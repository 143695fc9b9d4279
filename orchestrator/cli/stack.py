"""Running workyard: the whole stack (``up``), or one part of it (``orchestrator``, ``api``, ``worker``)."""

from __future__ import annotations

import signal
import threading

import click

from config import heap
from orchestrator.cli.base import Failure, admin_token, current_settings, handlers_from_cwd, main, open_wiring

# -- running the stack ---------------------------------------------------------------------------


@main.command()
@click.option("--handlers", "modules", multiple=True, help="Handler module; starts one worker per capability in it.")
@click.option("--concurrency", default=2, show_default=True, help="Processes per worker.")
@click.option("--flower/--no-flower", default=True, show_default=True)
def up(modules: tuple[str, ...], concurrency: int, flower: bool) -> None:
    """Run the whole stack in the foreground until Ctrl-C."""
    from orchestrator.local.stack import Stack, StackOptions, workers_for_modules

    settings = current_settings()
    handlers_from_cwd()
    workers = workers_for_modules(list(modules), concurrency) if modules else []
    stack = Stack(settings, StackOptions(workers=workers, flower=flower))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start(progress=lambda m: click.echo(f"… {m}"))
        click.echo(f"workyard is up (data dir {settings.data_path})")
        click.echo(f"  API     {settings.api_url}   (OpenAPI at {settings.api_url}/docs)")
        click.echo(f"  UI      {settings.api_url}/ui   (sign in with the admin token below)")
        if flower:
            user, password = stack.flower_credentials
            click.echo(
                f"  Flower  http://127.0.0.1:{settings.flower_port}   (user {user}, password {password}; "
                f"kept in {settings.data_path / 'flower-credentials'})"
            )
        # An operator's token for the API, on whichever database the stack runs.
        click.echo(f"  admin token {admin_token(settings)}   (kept in {settings.data_path / 'admin-token'})")
        click.echo(f"  database {settings.effective_database_url()}")
        click.echo(f"  broker   {settings.effective_broker_url()}")
        for name in stack.worker_names:
            click.echo(f"  worker   {name}")
        if not workers:
            click.echo("  no workers: start some with `workyard worker --capability CAP --handlers MODULE`")
        click.echo("Ctrl-C stops everything.")
        while not stop.wait(1.0):
            dead = stack.supervisor.failed()
            if dead:
                raise Failure(f"{', '.join(c.name for c in dead)} stopped; see {settings.data_path / 'logs'}")
    finally:
        click.echo("stopping…")
        stack.stop()


@main.command()
def orchestrator() -> None:
    """Run the coordinator, the outbox sweep and the timers (no API)."""
    from config.tracing import setup_tracing
    from orchestrator.service.loops import run_orchestrator

    setup_tracing("workyard-orchestrator")
    wiring = open_wiring()
    heap.settle()
    run_orchestrator(wiring)


@main.command()
def api() -> None:
    """Serve the HTTP API on WORKYARD_API_HOST:WORKYARD_API_PORT."""
    import uvicorn

    from config.tracing import setup_tracing
    from orchestrator.api.app import create_app

    settings = current_settings()
    setup_tracing("workyard-api")
    # uvicorn's own lines go through workyard's logging set-up (its format, JSON or text), and
    # its access log gives way to workyard's (orchestrator.api.context), which names the
    # request id and the principal.
    # Its HTTP parser and event loop are its "auto" choice: httptools and uvloop, which workyard
    # depends on (C, where h11 and asyncio's loop are Python); h11 and asyncio where they are missing.
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        log_config=None,
        access_log=False,
    )


@main.command()
@click.option("--capability", "capabilities", multiple=True, required=True, help="Repeat for several.")
@click.option("--handlers", "modules", multiple=True, required=True, help="Module(s) with @step handlers.")
@click.option("--concurrency", default=2, show_default=True)
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True)
@click.option("--hostname", default=None, help="Celery node name (default CAPS@host).")
def worker(
    capabilities: tuple[str, ...], modules: tuple[str, ...], concurrency: int, pool: str, hostname: str | None
) -> None:
    """Run a worker for some capabilities (needs only the broker and Redis)."""
    from config.tracing import setup_tracing
    from workers.celery.main import run_worker

    handlers_from_cwd()
    setup_tracing("workyard-worker")
    code = run_worker(
        current_settings(), list(capabilities), list(modules), concurrency=concurrency, pool=pool, hostname=hostname
    )
    if code:
        raise SystemExit(code)

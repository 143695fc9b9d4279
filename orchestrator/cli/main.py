"""The ``workyard`` command."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from config.logging import setup_logging
from config.settings import Settings, get_settings
from models.enums import SagaState
from models.errors import WorkyardError
from orchestrator.service.wiring import Wiring


class Failure(click.ClickException):
    """An error shown as one clear line, exit code 1."""


def _settings() -> Settings:
    return get_settings()


def _wiring(require_db: bool = True) -> Wiring:
    settings = _settings()
    wiring = Wiring(settings)
    if not require_db:
        return wiring
    sqlite_file = settings.data_path / "workyard.db"
    if settings.database_url is None and not sqlite_file.exists():
        raise Failure(
            f"no workyard database at {sqlite_file}: run `workyard up` or `workyard db upgrade` "
            "first (or set WORKYARD_DATA_DIR / WORKYARD_DATABASE_URL to the stack you mean)"
        )
    try:
        migrated = inspect(wiring.engine).has_table("saga_runs")
    except SQLAlchemyError as exc:
        raise Failure(
            f"cannot reach the database at {settings.effective_database_url()}: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', exc)}"
        ) from exc
    if not migrated:
        raise Failure(
            f"no workyard database at {wiring.settings.effective_database_url()}: run "
            "`workyard up` or `workyard db upgrade` first (or set WORKYARD_DATA_DIR / "
            "WORKYARD_DATABASE_URL to the stack you mean)"
        )
    return wiring


def _handlers_from_cwd() -> None:
    """Let --handlers name modules in the current directory, as `python -m` would."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            raise Failure(f"database error: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}") from exc
        except WorkyardError as exc:
            raise Failure(exc.message) from exc


@click.group(cls=_Group)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO, or WORKYARD_LOG_LEVEL).")
def main(log_level: str | None) -> None:
    """workyard: sagas of work across AI agents, people and ordinary workers."""
    setup_logging(log_level)


def _admin_token(settings: Settings) -> str:
    from orchestrator.work.tokens import ensure_admin_token

    wiring = Wiring(settings)
    try:
        with wiring.sessions.begin() as session:
            return ensure_admin_token(session, settings.data_path / "admin-token")
    finally:
        wiring.close()


# -- running the stack ---------------------------------------------------------------------------


@main.command()
@click.option("--handlers", "modules", multiple=True, help="Handler module; starts one worker per capability in it.")
@click.option("--concurrency", default=2, show_default=True, help="Processes per worker.")
@click.option("--flower/--no-flower", default=True, show_default=True)
def up(modules: tuple[str, ...], concurrency: int, flower: bool) -> None:
    """Run the whole stack in the foreground until Ctrl-C."""
    from orchestrator.local.stack import Stack, StackOptions, workers_for_modules

    settings = _settings()
    _handlers_from_cwd()
    workers = workers_for_modules(list(modules), concurrency) if modules else []
    stack = Stack(settings, StackOptions(workers=workers, flower=flower))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start(progress=lambda m: click.echo(f"… {m}"))
        click.echo(f"workyard is up (data dir {settings.data_path})")
        click.echo(f"  API     {settings.api_url}   (OpenAPI at {settings.api_url}/docs)")
        if flower:
            click.echo(f"  Flower  http://127.0.0.1:{settings.flower_port}")
        if settings.database_url is None:
            # The embedded default: hand the operator a token for the work-item API.
            click.echo(f"  admin token {_admin_token(settings)}   (kept in {settings.data_path / 'admin-token'})")
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
    from orchestrator.service.loops import run_orchestrator

    run_orchestrator(_wiring())


@main.command()
def api() -> None:
    """Serve the HTTP API on WORKYARD_API_HOST:WORKYARD_API_PORT."""
    import uvicorn

    from orchestrator.api.app import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning")


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
    from workers.celery.main import run_worker

    _handlers_from_cwd()
    run_worker(_settings(), list(capabilities), list(modules), concurrency=concurrency, pool=pool, hostname=hostname)


# -- sagas ---------------------------------------------------------------------------------------


@main.group()
def saga() -> None:
    """Submit and inspect sagas."""


@saga.command("submit")
@click.argument("template")
@click.option("--input", "input_json", default="{}", help="The saga's input as JSON.")
@click.option("--version", default=None, help="Template version (default: the highest).")
@click.option("--idempotence-key", default=None, help="A retry with the same key returns the same saga.")
@click.option("--wait/--no-wait", default=False, help="Follow the timeline until the saga ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
def saga_submit(
    template: str, input_json: str, version: str | None, idempotence_key: str | None, wait: bool, timeout: float
) -> None:
    """Start a saga of TEMPLATE."""
    from orchestrator.sagas.submit import submit_saga

    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise Failure(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Failure('--input must be a JSON object, such as \'{"order_id": "A-1"}\'')
    wiring = _wiring()
    submitted = submit_saga(
        wiring.sessions,
        wiring.settings,
        template=template,
        version=version,
        input=data,
        idempotence_key=idempotence_key,
    )
    try:
        wiring.dispatcher.publish(submitted.outbox)
    except Exception as exc:
        click.echo(f"note: could not reach the broker ({exc}); the orchestrator will publish it", err=True)
    verb = "submitted" if submitted.created else "already submitted with this idempotence key"
    click.echo(f"saga {submitted.saga.id} {verb}")
    if wait:
        final = follow(wiring, submitted.saga.id, timeout)
        if final not in (SagaState.completed,):
            sys.exit(3)


def follow(wiring: Wiring, saga_id: str, timeout: float, echo: Any = click.echo) -> SagaState:
    """Print a saga's timeline as attempts settle; returns its final state."""
    from orchestrator.sagas.queries import read_saga
    from orchestrator.sagas.timeline import attempt_line

    shown: set[tuple[int, str, int, str]] = set()
    deadline = time.monotonic() + timeout
    while True:
        with wiring.sessions() as session:
            current = read_saga(session, saga_id)
        for attempt in current.attempts:
            key = (attempt.step_index, attempt.phase, attempt.attempt, attempt.outcome)
            if attempt.outcome != "running" and key not in shown:
                shown.add(key)
                echo(attempt_line(attempt))
        if current.state.terminal:
            echo(f"saga {saga_id}: {current.state}" + (f" ({current.error})" if current.error else ""))
            return current.state
        if time.monotonic() > deadline:
            raise Failure(f"saga {saga_id} is still {current.state} after {timeout:.0f} s")
        time.sleep(0.1)


@saga.command("show")
@click.argument("saga_id")
def saga_show(saga_id: str) -> None:
    """A saga's state and timeline."""
    from orchestrator.sagas.queries import read_saga
    from orchestrator.sagas.timeline import render_saga

    wiring = _wiring()
    with wiring.sessions() as session:
        click.echo(render_saga(read_saga(session, saga_id)))


@saga.command("list")
@click.option("--state", type=click.Choice([s.value for s in SagaState]), default=None)
@click.option("--template", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
def saga_list(state: str | None, template: str | None, limit: int) -> None:
    """Sagas, newest first."""
    from orchestrator.sagas.queries import list_sagas

    wiring = _wiring()
    with wiring.sessions() as session:
        page = list_sagas(session, state=SagaState(state) if state else None, template=template, limit=limit)
    if not page.items:
        click.echo("no sagas")
    for s in page.items:
        click.echo(f"{s.id}  {s.state:<20} {s.template_name} {s.template_version}  {s.created_at:%Y-%m-%d %H:%M:%S}")


# -- templates and database ----------------------------------------------------------------------


@main.group()
def template() -> None:
    """Register and list saga templates."""


@template.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def template_add(file: Path) -> None:
    """Register a template from a YAML or JSON file."""
    from orchestrator.sagas.templates import parse_template, register_template

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise Failure(f"{file} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise Failure(f"{file} is not valid YAML/JSON: {exc}") from exc
    spec = parse_template(data)
    wiring = _wiring()
    _, created = register_template(wiring.sessions, spec)
    click.echo(f"template {spec.name} {spec.version} " + ("registered" if created else "was already registered"))


@template.command("list")
def template_list() -> None:
    from orchestrator.sagas.templates import list_templates

    wiring = _wiring()
    with wiring.sessions() as session:
        for row in list_templates(session):
            click.echo(f"{row.name} {row.version}  ({len(row.spec['steps'])} steps)")


@main.command("dead-letters")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def dead_letters(limit: int) -> None:
    """Messages nobody could act on, newest first, with the reason."""
    from sqlalchemy import select

    from models.tables import DeadLetter

    wiring = _wiring()
    with wiring.sessions() as session:
        rows = session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)).all()
    if not rows:
        click.echo("no dead letters")
    for row in rows:
        click.echo(f"{row.received_at:%Y-%m-%d %H:%M:%S}  {row.source}  {row.reason}\n    {row.body[:200]}")


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--due/--all", "due_only", default=False, help="Only timers and deadlines already due.")
def timers(limit: int, due_only: bool) -> None:
    """Durable timers, soonest first: retries, deadlines, SLA warnings, breaches, escalations, lease
    expiries; then the deadlines of running attempts."""
    from sqlalchemy import func, select

    from models.base import utcnow
    from models.enums import Outcome
    from models.tables import StepAttempt, Timer

    wiring = _wiring()
    now = utcnow()
    running = (StepAttempt.outcome == Outcome.running, StepAttempt.deadline_at.is_not(None))
    with wiring.sessions() as session:
        query = select(Timer).order_by(Timer.due_at, Timer.id).limit(limit)
        attempts = select(StepAttempt).where(*running).order_by(StepAttempt.deadline_at).limit(limit)
        if due_only:
            query = query.where(Timer.due_at <= now)
            attempts = attempts.where(StepAttempt.deadline_at <= now)
        rows = session.scalars(query).all()
        deadlines = session.scalars(attempts).all()
        total = session.scalar(select(func.count()).select_from(Timer)) or 0
        overdue = session.scalar(select(func.count()).select_from(Timer).where(Timer.due_at <= now)) or 0
        watched = session.scalar(select(func.count()).select_from(StepAttempt).where(*running)) or 0
        late = (
            session.scalar(
                select(func.count()).select_from(StepAttempt).where(*running, StepAttempt.deadline_at <= now)
            )
            or 0
        )
    wiring.close()
    click.echo(f"{total} timer(s), {overdue} due now")
    for timer in rows:
        subject = f"saga {timer.saga_id}" if timer.saga_id else f"item {timer.item_id}"
        click.echo(f"  {_when(timer.due_at, now)}  {timer.kind:<14} {subject}  {timer.payload or ''}")
    click.echo(f"{watched} running attempt(s) with a deadline, {late} past it")
    for attempt in deadlines:
        assert attempt.deadline_at is not None
        click.echo(
            f"  {_when(attempt.deadline_at, now)}  {'deadline':<14} saga {attempt.saga_id}  "
            f"step {attempt.step_name} {attempt.phase} attempt {attempt.attempt}"
        )


def _when(due_at: datetime, now: datetime) -> str:
    seconds = (due_at - now).total_seconds()
    return f"{due_at:%Y-%m-%d %H:%M:%S}  " + (f"in {seconds:8.1f} s" if seconds >= 0 else f"{-seconds:7.1f} s late")


@main.command("webhooks")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--tenant", default=None, help="Only this tenant's webhooks.")
def webhooks_log(limit: int, tenant: str | None) -> None:
    """The webhook delivery log, newest first: event, state, attempts, last answer."""
    from orchestrator.work.webhooks import deliveries

    wiring = _wiring()
    with wiring.sessions() as session:
        rows = deliveries(session, tenant=tenant, limit=limit)
    wiring.close()
    if not rows:
        click.echo("no webhook deliveries (register webhooks with POST /api/v1/webhooks)")
    for delivery, url in rows:
        answer = f"HTTP {delivery.last_status}" if delivery.last_status else (delivery.last_error or "-")
        click.echo(
            f"{delivery.id:>6}  {delivery.created_at:%Y-%m-%d %H:%M:%S}  {delivery.event:<24} {delivery.state:<9} "
            f"attempts={delivery.attempts}  {answer[:60]}  {url}"
        )


@main.group()
def token() -> None:
    """API tokens for people, agents and upstream systems."""


@token.command("create")
@click.option("--principal", required=True, help="user:<id> or agent:<id>.")
@click.option("--tenant", required=True, help="The tenant the token acts in ('*' for all: operators only).")
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat: work:read, work:write, work:claim, …")
@click.option("--group", "groups", multiple=True, help="Groups the principal is in (offers to a group).")
@click.option("--capability", "capabilities", multiple=True, help="An agent's capabilities (offers to agents).")
@click.option("--description", default="", help="What the token is for.")
def token_create(
    principal: str,
    tenant: str,
    scopes: tuple[str, ...],
    groups: tuple[str, ...],
    capabilities: tuple[str, ...],
    description: str,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from models.principal import parse_principal
    from orchestrator.work.tokens import create_token

    try:
        kind, ident = parse_principal(principal)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--principal") from exc
    wiring = _wiring()
    try:
        with wiring.sessions.begin() as session:
            issued = create_token(
                session,
                principal_type=kind,
                principal_id=ident,
                tenant=tenant,
                scopes=scopes,
                groups=groups,
                capabilities=capabilities,
                description=description,
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    finally:
        wiring.close()
    click.echo(issued.secret)
    click.echo(f"token {issued.id} for {principal} in tenant {tenant}; it is not shown again", err=True)


@token.command("list")
def token_list() -> None:
    """Tokens (never their secrets)."""
    from orchestrator.work.tokens import list_tokens

    wiring = _wiring()
    with wiring.sessions() as session:
        for row in list_tokens(session):
            state = "revoked" if row.revoked_at else "active"
            click.echo(
                f"{row.id}  {row.principal_type}:{row.principal_id}  tenant={row.tenant}  "
                f"scopes={','.join(row.scopes)}  groups={','.join(row.groups) or '-'}  {state}"
            )
    wiring.close()


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (it stops working within seconds)."""
    from orchestrator.work.tokens import revoke_token

    wiring = _wiring()
    try:
        with wiring.sessions.begin() as session:
            if not revoke_token(session, token_id):
                raise Failure(f"no active token {token_id!r}; `workyard token list` shows them")
    finally:
        wiring.close()
    click.echo(f"revoked {token_id}")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to WORKYARD_DATABASE_URL (or the embedded SQLite)."""
    from orchestrator.storage.migrate import upgrade

    wiring = _wiring(require_db=False)
    wiring.settings.data_path.mkdir(parents=True, exist_ok=True)
    upgrade(wiring.engine)
    click.echo(f"database at {wiring.engine.url.render_as_string(hide_password=True)} is up to date")


@main.command()
@click.option("--keep-running/--no-keep-running", default=False, help="Leave the stack up after the demo.")
def demo(keep_running: bool) -> None:
    """Run the shop demo on the embedded default: one order completes, one is compensated."""
    from orchestrator.cli.demo import run_demo

    run_demo(_settings(), keep_running=keep_running)


if __name__ == "__main__":
    main()

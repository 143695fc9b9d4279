"""``workyard saga``: submit, follow, show and list sagas."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from models.enums import SagaState
from orchestrator.cli.base import Failure, main, open_wiring
from orchestrator.service.wiring import Wiring

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
@click.option(
    "--tenant", default="*", show_default=True, help="The tenant to run it for ('*': none; its work items cannot open)."
)
def saga_submit(
    template: str,
    input_json: str,
    version: str | None,
    idempotence_key: str | None,
    wait: bool,
    timeout: float,
    tenant: str,
) -> None:
    """Start a saga of TEMPLATE."""
    from orchestrator.sagas.submit import submit_saga

    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise Failure(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Failure('--input must be a JSON object, such as \'{"order_id": "A-1"}\'')
    wiring = open_wiring()
    submitted = submit_saga(
        wiring.sessions,
        wiring.settings,
        template=template,
        version=version,
        input=data,
        idempotence_key=idempotence_key,
        tenant=tenant,
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

    wiring = open_wiring()
    with wiring.sessions() as session:
        click.echo(render_saga(read_saga(session, saga_id)))


@saga.command("list")
@click.option("--state", type=click.Choice([s.value for s in SagaState]), default=None)
@click.option("--template", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
def saga_list(state: str | None, template: str | None, limit: int) -> None:
    """Sagas, newest first."""
    from orchestrator.sagas.queries import list_sagas

    wiring = open_wiring()
    with wiring.sessions() as session:
        page = list_sagas(session, state=SagaState(state) if state else None, template=template, limit=limit)
    if not page.items:
        click.echo("no sagas")
    for s in page.items:
        click.echo(f"{s.id}  {s.state:<20} {s.template_name} {s.template_version}  {s.created_at:%Y-%m-%d %H:%M:%S}")


def _control(saga_id: str, action: str, reason: str) -> None:
    import getpass

    from models.enums import SagaControl
    from orchestrator.sagas.controls import control_saga
    from orchestrator.sagas.queries import read_saga
    from orchestrator.sagas.timeline import render_saga

    wiring = open_wiring()
    actor = f"user:{getpass.getuser()}"
    done = control_saga(wiring.sessions, wiring.settings, saga_id, SagaControl(action), actor=actor, reason=reason)
    try:
        wiring.dispatcher.publish(done.outbox)
    except Exception as exc:
        click.echo(f"note: could not reach the broker ({exc}); the orchestrator will publish it", err=True)
    click.echo(f"saga {saga_id}: {action} ({done.detail['from']} -> {done.detail['to']})")
    with wiring.sessions() as session:
        click.echo(render_saga(read_saga(session, saga_id)))


_REASON = click.option("--reason", required=True, help="Why: kept in the saga's audit trail and its error.")


@saga.command("cancel")
@click.argument("saga_id")
@_REASON
def saga_cancel(saga_id: str, reason: str) -> None:
    """Cancel a running saga: dispatch nothing more and undo what it did, in reverse order."""
    _control(saga_id, "cancel", reason)


@saga.command("terminate")
@click.argument("saga_id")
@_REASON
def saga_terminate(saga_id: str, reason: str) -> None:
    """Stop a running or compensating saga where it stands, undoing nothing."""
    _control(saga_id, "terminate", reason)


@saga.command("pause")
@click.argument("saga_id")
@_REASON
def saga_pause(saga_id: str, reason: str) -> None:
    """Dispatch nothing new for a saga (what is under way goes on); its clocks stand still."""
    _control(saga_id, "pause", reason)


@saga.command("resume")
@click.argument("saga_id")
@_REASON
def saga_resume(saga_id: str, reason: str) -> None:
    """Send what a paused saga held back, and start its clocks again."""
    _control(saga_id, "resume", reason)


@saga.command("retry-compensation")
@click.argument("saga_id")
@_REASON
def saga_retry_compensation(saga_id: str, reason: str) -> None:
    """Dispatch again the compensation that gave up (once fixed), closing its remediation items."""
    _control(saga_id, "retry_compensation", reason)


@saga.command("bulk")
@click.argument("action", type=click.Choice(["cancel", "terminate", "pause", "resume", "retry-compensation"]))
@click.option(
    "--state", type=click.Choice([s.value for s in SagaState]), default=None, help="Only sagas in this state."
)
@click.option("--template", default=None, help="Only sagas of this template.")
@click.option("--tenant", default=None, help="Only this tenant's sagas.")
@click.option("--since", type=click.DateTime(), default=None, help="Only sagas submitted at or after this time (UTC).")
@click.option("--until", type=click.DateTime(), default=None, help="Only sagas submitted before this time (UTC).")
@_REASON
@click.option("--yes", is_flag=True, help="Act without asking (the count is still shown).")
def saga_bulk(
    action: str,
    state: str | None,
    template: str | None,
    tenant: str | None,
    since: Any,
    until: Any,
    reason: str,
    yes: bool,
) -> None:
    """Apply ACTION to every saga the filter matches: shows how many first, then asks."""
    import getpass
    from datetime import UTC

    from models.api import SagaBulkControl, SagaFilter
    from models.enums import SagaControl
    from orchestrator.sagas.bulk_controls import bulk_control

    wiring = open_wiring()
    where = SagaFilter(
        state=SagaState(state) if state else None,
        template=template,
        tenant=tenant,
        created_after=since.replace(tzinfo=UTC) if since else None,
        created_before=until.replace(tzinfo=UTC) if until else None,
    )
    request = SagaBulkControl(action=SagaControl(action.replace("-", "_")), reason=reason, filter=where)

    def publish(outbox: list[Any]) -> None:
        try:
            wiring.dispatcher.publish(outbox)
        except Exception as exc:
            click.echo(f"note: could not reach the broker ({exc}); the orchestrator will publish it", err=True)

    actor = f"user:{getpass.getuser()}"
    counted = bulk_control(wiring.sessions, wiring.settings, request, actor=actor, tenant="*", publish=publish)
    if counted.matched > request.limit:
        raise Failure(f"more than {request.limit} sagas match: narrow the filter (--state, --template, --since)")
    click.echo(f"{counted.matched} saga(s) match" + (": " + ", ".join(counted.sample) if counted.sample else ""))
    if counted.matched > len(counted.sample):
        click.echo(f"  (and {counted.matched - len(counted.sample)} more)")
    if not counted.matched:
        return
    if not yes:
        click.confirm(f"{action} {counted.matched} saga(s)?", abort=True)
    request = request.model_copy(update={"dry_run": False, "expect": counted.matched})
    done = bulk_control(wiring.sessions, wiring.settings, request, actor=actor, tenant="*", publish=publish)
    for result in done.results:
        if result.error:
            click.echo(f"  {result.id}: not done: {result.error}")
    click.echo(f"{action}: {done.done} done, {done.refused} not done")


@saga.command("rerun")
@click.argument("saga_id")
@click.option("--from", "from_step", default=None, help="The step to run again from (default: the first that failed).")
@click.option("--input-patch", default=None, help="A JSON merge patch for the saga's input, e.g. '{\"amount\": 5}'.")
@click.option("--dry-run", is_flag=True, help="Only show which steps keep their result and which run again.")
@_REASON
def saga_rerun(saga_id: str, from_step: str | None, input_patch: str | None, dry_run: bool, reason: str) -> None:
    """Run a saga that ended without completing again, from a step."""
    import getpass

    from models.enums import SagaControl
    from orchestrator.sagas.controls import control_saga

    patch = None
    if input_patch is not None:
        try:
            patch = json.loads(input_patch)
        except json.JSONDecodeError as exc:
            raise Failure(f"--input-patch is not valid JSON: {exc}") from exc
        if not isinstance(patch, dict):
            raise Failure("--input-patch must be a JSON object, such as '{\"amount\": 5}'")
    wiring = open_wiring()
    done = control_saga(
        wiring.sessions,
        wiring.settings,
        saga_id,
        SagaControl.rerun,
        actor=f"user:{getpass.getuser()}",
        reason=reason,
        from_step=from_step,
        input_patch=patch,
        dry_run=dry_run,
    )
    click.echo(f"saga {saga_id}: {'would rerun' if dry_run else 'rerun'} from {done.detail['start']}")
    for step in done.detail["steps"]:
        click.echo(f"  {step['name']:<24} {'runs' if step['runs'] else 'keeps'}: {step['why']}")
    if not dry_run:
        try:
            wiring.dispatcher.publish(done.outbox)
        except Exception as exc:
            click.echo(f"note: could not reach the broker ({exc}); the orchestrator will publish it", err=True)

"""``workyard saga``: submit, follow, show, list and control sagas, over the API."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from models.enums import SagaState
from orchestrator.cli.base import Failure, main
from orchestrator.cli.consumers import idle_capabilities
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, pages, segment, when

if TYPE_CHECKING:
    from models.api import SagaRead

POLL_S = 0.2


@main.group()
def saga() -> None:
    """Submit, inspect and control sagas (over the API: --url/--token, WORKYARD_URL/WORKYARD_TOKEN)."""


@saga.command("submit")
@click.argument("template")
@click.option("--input", "input_json", default="{}", help="The saga's input as JSON.")
@click.option("--version", default=None, help="Template version (default: the highest).")
@click.option("--idempotence-key", default=None, help="A retry with the same key returns the same saga.")
@click.option("--wait/--no-wait", default=False, help="Follow the timeline until the saga ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@click.option(
    "--tenant",
    default=None,
    help="The tenant to run it for (an operator's token only; default: the token's own, '*' for an operator's).",
)
@over_api
def saga_submit(
    api: Api,
    template: str,
    input_json: str,
    version: str | None,
    idempotence_key: str | None,
    wait: bool,
    timeout: float,
    tenant: str | None,
) -> None:
    """Start a saga of TEMPLATE. With --wait, follow it until it ends: exit 0 if it completed,
    3 if it ended otherwise."""
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise Failure(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Failure('--input must be a JSON object, such as \'{"order_id": "A-1"}\'')
    body = {"template": template, "input": data, "version": version, "idempotence_key": idempotence_key}
    if tenant is not None:
        body["tenant"] = tenant
    response = api.send("POST", "/api/v1/sagas", json={k: v for k, v in body.items() if v is not None})
    saga_id = response.json()["id"]
    verb = "submitted" if response.status_code == 202 else "already submitted with this idempotence key"
    click.echo(f"saga {saga_id} {verb}")
    if wait:
        final = follow(api, saga_id, timeout)
        if final != SagaState.completed:
            sys.exit(3)


def follow(api: Api, saga_id: str, timeout: float) -> str:
    """Print a saga's timeline as attempts settle, with a progress line on stderr (what runs
    now, for how long); returns its final state."""
    from models.api import SagaRead
    from orchestrator.sagas.timeline import attempt_line

    progress = Progress()
    shown: set[tuple[int, str, int, str]] = set()
    started = time.monotonic()
    deadline = started + timeout
    while True:
        current = SagaRead.model_validate(api.get(f"/api/v1/sagas/{segment(saga_id)}"))
        for attempt in current.attempts:
            key = (attempt.step_index, attempt.phase, attempt.attempt, attempt.outcome)
            if attempt.outcome != "running" and key not in shown:
                shown.add(key)
                progress.clear()
                click.echo(attempt_line(attempt))
        if current.state.terminal:
            progress.clear()
            click.echo(f"saga {saga_id}: {current.state}" + (f" ({current.error})" if current.error else ""))
            return current.state
        if time.monotonic() > deadline:
            progress.clear()
            raise Failure(f"saga {saga_id} is still {current.state} after {timeout:.0f} s ({_running(current)})")
        progress.show(f"… saga {saga_id} {current.state}: {_running(current)}", time.monotonic() - started)
        time.sleep(POLL_S)


def _running(saga: SagaRead) -> str:
    """What the saga waits on now: its running attempts (step, attempt, worker), or its pause."""
    if saga.paused_at is not None:
        return "paused"
    if saga.held_by is not None and saga.held_at is not None:
        from orchestrator.sagas.timeline import held_line

        return held_line(saga)
    running = [a for a in saga.attempts if a.outcome == "running"]
    if not running:
        return "waiting for its next step to be dispatched"
    parts = []
    for a in running:
        phase = " (compensate)" if a.phase == "compensate" else ""
        where = f" on {a.worker}" if a.worker else " (not started by a worker yet)"
        parts.append(f"{a.step_name}{phase} attempt {a.attempt}{where}")
    return ", ".join(parts)


class Progress:
    """The wait's progress line on stderr: rewritten in place on a terminal; elsewhere (a log, a
    pipe) a line each time what it says changes, so that a log is not flooded."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.width = 0

    def show(self, what: str, elapsed_s: float) -> None:
        if self.tty:
            line = f"{what}  {elapsed_s:.1f} s"
            click.echo("\r" + line.ljust(self.width), err=True, nl=False)
            self.width = len(line)
        elif what != self.last:
            click.echo(f"{what}  (after {elapsed_s:.1f} s)", err=True)
        self.last = what

    def clear(self) -> None:
        if self.tty and self.width:
            click.echo("\r" + " " * self.width + "\r", err=True, nl=False)
            self.width = 0


@saga.command("show")
@click.argument("saga_id")
@json_option
@over_api
def saga_show(api: Api, saga_id: str, as_json: bool) -> None:
    """A saga's state and timeline; for a saga under way, a capability no live worker consumes."""
    from models.api import SagaRead
    from orchestrator.sagas.timeline import render_saga

    raw = api.get(f"/api/v1/sagas/{segment(saga_id)}")
    if as_json:
        echo_json(raw)
        return
    current = SagaRead.model_validate(raw)
    click.echo(render_saga(current))
    if not current.state.terminal:
        for line in _idle_steps(api, current):
            click.echo(line)


def _idle_steps(api: Api, current: SagaRead) -> list[str]:
    """A warning for each running step whose capability no live worker consumes."""
    running = {a.step_name for a in current.attempts if a.outcome == "running"}
    if not running:
        return []
    template = api.get(f"/api/v1/templates/{segment(current.template_name)}/{segment(current.template_version)}")
    capabilities = {
        s["capability"]: s["name"] for s in template["spec"]["steps"] if s["name"] in running and s.get("capability")
    }
    idle = idle_capabilities(api, sorted(capabilities))
    return [f"  warning: step {capabilities[cap]}: {why}" for cap, why in idle.items()]


@saga.command("list")
@click.option("--state", type=click.Choice([s.value for s in SagaState]), default=None)
@click.option("--template", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@over_api
def saga_list(api: Api, state: str | None, template: str | None, limit: int, as_json: bool) -> None:
    """Sagas, newest first (the token's tenant's; an operator's token: every tenant's)."""
    items = list(pages(api, "/api/v1/sagas", limit, state=state, template=template))
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no sagas")
    for s in items:
        click.echo(f"{s['id']}  {s['state']:<20} {s['template_name']} {s['template_version']}  {when(s['created_at'])}")


def _control(api: Api, saga_id: str, action: str, reason: str) -> None:
    from models.api import SagaRead
    from orchestrator.sagas.timeline import render_saga

    path = action.replace("_", "-")
    current = SagaRead.model_validate(api.post(f"/api/v1/sagas/{segment(saga_id)}/{path}", {"reason": reason}))
    done = [entry for entry in current.audit if entry.action == action]
    if done:
        click.echo(f"saga {saga_id}: {action} ({done[-1].detail.get('from')} -> {done[-1].detail.get('to')})")
    click.echo(render_saga(current))


_REASON = click.option("--reason", required=True, help="Why: kept in the saga's audit trail and its error.")


@saga.command("cancel")
@click.argument("saga_id")
@_REASON
@over_api
def saga_cancel(api: Api, saga_id: str, reason: str) -> None:
    """Cancel a running saga: dispatch nothing more and undo what it did, in reverse order."""
    _control(api, saga_id, "cancel", reason)


@saga.command("terminate")
@click.argument("saga_id")
@_REASON
@over_api
def saga_terminate(api: Api, saga_id: str, reason: str) -> None:
    """Stop a running or compensating saga where it stands, undoing nothing."""
    _control(api, saga_id, "terminate", reason)


@saga.command("pause")
@click.argument("saga_id")
@_REASON
@over_api
def saga_pause(api: Api, saga_id: str, reason: str) -> None:
    """Dispatch nothing new for a saga (what is under way goes on); its clocks stand still."""
    _control(api, saga_id, "pause", reason)


@saga.command("resume")
@click.argument("saga_id")
@_REASON
@over_api
def saga_resume(api: Api, saga_id: str, reason: str) -> None:
    """Send what a paused saga held back, and start its clocks again."""
    _control(api, saga_id, "resume", reason)


@saga.command("retry-compensation")
@click.argument("saga_id")
@_REASON
@over_api
def saga_retry_compensation(api: Api, saga_id: str, reason: str) -> None:
    """Dispatch again the compensation that gave up (once fixed), closing its remediation items."""
    _control(api, saga_id, "retry_compensation", reason)


@saga.command("bulk")
@click.argument("action", type=click.Choice(["cancel", "terminate", "pause", "resume", "retry-compensation", "rerun"]))
@click.option(
    "--state", type=click.Choice([s.value for s in SagaState]), default=None, help="Only sagas in this state."
)
@click.option("--template", default=None, help="Only sagas of this template.")
@click.option("--tenant", default=None, help="Only this tenant's sagas (an operator's token).")
@click.option("--since", type=click.DateTime(), default=None, help="Only sagas submitted at or after this time (UTC).")
@click.option("--until", type=click.DateTime(), default=None, help="Only sagas submitted before this time (UTC).")
@_REASON
@click.option("--yes", is_flag=True, help="Act without asking (the count is still shown).")
@json_option
@over_api
def saga_bulk(
    api: Api,
    action: str,
    state: str | None,
    template: str | None,
    tenant: str | None,
    since: Any,
    until: Any,
    reason: str,
    yes: bool,
    as_json: bool,
) -> None:
    """Apply ACTION to every saga the filter matches: shows how many first, then asks."""
    where = {
        "state": state,
        "template": template,
        "tenant": tenant,
        "created_after": f"{since.isoformat()}Z" if since else None,
        "created_before": f"{until.isoformat()}Z" if until else None,
    }
    request: dict[str, Any] = {
        "action": action.replace("-", "_"),
        "reason": reason,
        "filter": {k: v for k, v in where.items() if v is not None},
    }
    counted = api.post("/api/v1/sagas/bulk", request)
    limit = 1000
    if counted["matched"] > limit:
        raise Failure(f"more than {limit} sagas match: narrow the filter (--state, --template, --since)")
    sample = counted["sample"]
    click.echo(f"{counted['matched']} saga(s) match" + (": " + ", ".join(sample) if sample else ""), err=as_json)
    if counted["matched"] > len(sample):
        click.echo(f"  (and {counted['matched'] - len(sample)} more)", err=as_json)
    if not counted["matched"]:
        if as_json:
            echo_json(counted)
        return
    if not yes:
        click.confirm(f"{action} {counted['matched']} saga(s)?", abort=True, err=True)
    done = api.post("/api/v1/sagas/bulk", {**request, "dry_run": False, "expect": counted["matched"]})
    if as_json:
        echo_json(done)
        return
    for result in done["results"]:
        if result.get("error"):
            click.echo(f"  {result['id']}: not done: {result['error']}")
    click.echo(f"{action}: {done['done']} done, {done['refused']} not done")


@saga.command("rerun")
@click.argument("saga_id")
@click.option("--from", "from_step", default=None, help="The step to run again from (default: the first that failed).")
@click.option("--input-patch", default=None, help="A JSON merge patch for the saga's input, e.g. '{\"amount\": 5}'.")
@click.option("--dry-run", is_flag=True, help="Only show which steps keep their result and which run again.")
@_REASON
@json_option
@over_api
def saga_rerun(
    api: Api, saga_id: str, from_step: str | None, input_patch: str | None, dry_run: bool, reason: str, as_json: bool
) -> None:
    """Run a saga that ended without completing again, from a step (see --dry-run first)."""
    patch = None
    if input_patch is not None:
        try:
            patch = json.loads(input_patch)
        except json.JSONDecodeError as exc:
            raise Failure(f"--input-patch is not valid JSON: {exc}") from exc
        if not isinstance(patch, dict):
            raise Failure("--input-patch must be a JSON object, such as '{\"amount\": 5}'")
    body = {"reason": reason, "from_step": from_step, "input_patch": patch, "dry_run": dry_run}
    done = api.post(f"/api/v1/sagas/{segment(saga_id)}/rerun", body)
    if as_json:
        echo_json(done)
        return
    click.echo(f"saga {saga_id}: {'would rerun' if dry_run else 'rerun'} from {done['start']}")
    for step in done["steps"]:
        click.echo(f"  {step['name']:<24} {'runs' if step['runs'] else 'keeps'}: {step['why']}")

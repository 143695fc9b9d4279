"""``make demo``: the shop saga on the embedded default, end to end, then everything stops."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.base import Failure, current_settings, main

if TYPE_CHECKING:
    from config.settings import Settings
    from models.enums import SagaState
    from orchestrator.service.wiring import Wiring

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "shop.order.yaml"


def _template_path() -> Path:
    if TEMPLATE.exists():
        return TEMPLATE
    import examples

    return Path(examples.__file__).with_name("shop.order.yaml")


def run_demo(settings: Settings, *, keep_running: bool = False) -> None:
    import yaml

    from orchestrator.local.stack import Stack, StackOptions, workers_for_modules
    from orchestrator.sagas.submit import submit_saga
    from orchestrator.sagas.templates import parse_template, register_template

    started = time.monotonic()
    stack = Stack(settings, StackOptions(workers=workers_for_modules(["examples.shop"], concurrency=1)))
    try:
        stack.start(progress=lambda m: click.echo(f"… {m}"))
        click.echo(
            f"stack up in {time.monotonic() - started:.1f} s: API {settings.api_url}, "
            f"Flower http://127.0.0.1:{settings.flower_port} (user and password in "
            f"{settings.data_path / 'flower-credentials'}), workers {', '.join(stack.worker_names)}"
        )
        wiring = stack.wiring
        spec = parse_template(yaml.safe_load(_template_path().read_text()))
        register_template(wiring.sessions, spec)
        click.echo(f"template {spec.name} {spec.version} registered")
        run = uuid.uuid4().hex[:6]
        orders = [
            ("an order that ships", {"order_id": f"A-{run}", "amount": 42.0}),
            ("an order whose shipping fails for good", {"order_id": f"B-{run}", "amount": 17.5, "fail_at": "ship"}),
        ]
        outcomes = []
        for title, data in orders:
            submitted = submit_saga(
                wiring.sessions, settings, template=spec.name, input=data, idempotence_key=f"demo-{data['order_id']}"
            )
            wiring.dispatcher.publish(submitted.outbox)
            click.echo(f"\n== {title}: saga {submitted.saga.id}")
            click.echo("   step                               attempt outcome    duration   worker")
            outcomes.append(_follow(wiring, submitted.saga.id, timeout=120))
        click.echo(
            f"\nFlower was at http://127.0.0.1:{settings.flower_port} (run `make up` to keep the stack and look around)"
        )
        click.echo(f"demo done in {time.monotonic() - started:.1f} s: " + ", ".join(outcomes))
        if keep_running:
            click.echo("stack left running; Ctrl-C stops it")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


def _follow(wiring: Wiring, saga_id: str, timeout: float) -> SagaState:
    """Print a saga's timeline as attempts settle, from the stack's own database; its final state."""
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
                click.echo(attempt_line(attempt))
        if current.state.terminal:
            click.echo(f"saga {saga_id}: {current.state}" + (f" ({current.error})" if current.error else ""))
            return current.state
        if time.monotonic() > deadline:
            raise Failure(f"saga {saga_id} is still {current.state} after {timeout:.0f} s")
        time.sleep(0.1)


@main.command()
@click.option("--keep-running/--no-keep-running", default=False, help="Leave the stack up after the demo.")
def demo(keep_running: bool) -> None:
    """Run the shop demo on the embedded default: one order completes, one is compensated."""
    run_demo(current_settings(), keep_running=keep_running)

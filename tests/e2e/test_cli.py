"""The CLI as a user drives it: `workyard up` in one terminal, everything else from another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import free_port
from tests.support import consistently, eventually

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop.order.yaml"


def workyard(
    env: dict[str, str], *args: str, timeout: float = 120, answer: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; ``answer``: what the user types if it asks (nothing: EOF)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        cwd=ROOT,
        input=answer,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`workyard up` on the embedded default (its own Redis and SQLite) in a fresh data dir."""
    data_dir = tmp_path_factory.mktemp("up")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env.update(
        {
            "WORKYARD_DATA_DIR": str(data_dir),
            "WORKYARD_API_PORT": str(free_port()),
            "WORKYARD_FLOWER_PORT": str(free_port()),
        }
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "up", "--no-flower"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{env['WORKYARD_API_PORT']}"

    def api_up() -> bool:
        try:
            return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert up.poll() is None, up.stdout.read() if up.stdout else "workyard up exited"
            return False

    eventually(api_up, timeout=60, what="workyard up to serve its API")
    eventually(lambda: (data_dir / "admin-token").exists(), timeout=30, what="workyard up to write its admin token")
    # A worker from a "second terminal": it finds the embedded Redis through the data dir.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "worker",
            "--capability",
            "inventory",
            "--capability",
            "payments",
            "--capability",
            "shipping",
            "--handlers",
            "examples.shop",
            "--concurrency",
            "1",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env["WORKYARD_TEST_API"] = api
    try:
        yield env
    finally:
        for process in (worker, up):
            os.killpg(process.pid, signal.SIGINT if process is up else signal.SIGTERM)
        for process in (worker, up):
            process.wait(timeout=30)
        output = up.stdout.read() if up.stdout else ""
        if up.stdout:
            up.stdout.close()
        assert "stopping" in output
        assert f"admin token {(data_dir / 'admin-token').read_text().strip()}" in output
        assert not (data_dir / "redis.sock").exists() or not _answers(data_dir / "redis.sock"), (
            "workyard up left its Redis running"
        )


def _answers(socket_path: Path) -> bool:
    from orchestrator.local.embedded import ping

    return ping(socket_path)


def test_template_add_submit_wait_show_and_list(stack_env: dict[str, str]) -> None:
    added = workyard(stack_env, "template", "add", str(SHOP))
    assert added.returncode == 0, added.stderr
    assert "shop.order 1.0.0 (shared) registered" in added.stdout

    order = [
        "saga",
        "submit",
        "shop.order",
        "--input",
        '{"order_id": "E-1", "amount": 3}',
        "--idempotence-key",
        "e2e-1",
    ]
    done = workyard(stack_env, *order, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout and "ship" in done.stdout
    saga_id = done.stdout.split()[1]

    shown = workyard(stack_env, "saga", "show", saga_id)
    assert shown.returncode == 0 and "state: completed" in shown.stdout
    assert shown.stdout.index("reserve_stock") < shown.stdout.index("charge_card") < shown.stdout.index("ship ")

    again = workyard(stack_env, *order)
    assert f"saga {saga_id} already submitted" in again.stdout

    failed = workyard(
        stack_env,
        "saga",
        "submit",
        "shop.order",
        "--input",
        '{"order_id": "E-2", "amount": 3, "fail_at": "ship"}',
        "--wait",
    )
    assert failed.returncode == 3
    lines = [line for line in failed.stdout.splitlines() if "(compensate)" in line]
    assert [line.split()[0] for line in lines] == ["charge_card", "reserve_stock"]

    listed = workyard(stack_env, "saga", "list", "--state", "compensated")
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 1

    admin = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    over_http = httpx.get(
        f"{stack_env['WORKYARD_TEST_API']}/api/v1/sagas/{saga_id}", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    assert over_http["state"] == "completed"


def test_an_operator_cancels_pauses_and_terminates_stuck_sagas(stack_env: dict[str, str], tmp_path: Path) -> None:
    # A template whose capability no worker consumes: its sagas wait on their first step.
    stuck = tmp_path / "stuck.yaml"
    stuck.write_text("name: e2e.stuck\nversion: 1.0.0\nsteps:\n  - name: a\n    capability: nobody\n    handler: h\n")
    assert workyard(stack_env, "template", "add", str(stuck)).returncode == 0
    ids = [workyard(stack_env, "saga", "submit", "e2e.stuck").stdout.split()[1] for _ in range(3)]

    cancelled = workyard(stack_env, "saga", "cancel", ids[0], "--reason", "no worker for nobody")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"saga {ids[0]}: cancel (running -> cancelled)" in cancelled.stdout
    assert (
        "state: cancelled" in cancelled.stdout
        and "cancel (running -> cancelled): no worker for nobody" in cancelled.stdout
    )
    again = workyard(stack_env, "saga", "cancel", ids[0], "--reason", "again")
    assert again.returncode == 1 and "is cancelled already" in again.stderr and "Traceback" not in again.stderr
    missing = workyard(stack_env, "saga", "cancel", ids[0])
    assert missing.returncode == 2 and "--reason" in missing.stderr

    paused = workyard(
        stack_env, "saga", "bulk", "pause", "--template", "e2e.stuck", "--state", "running", "--reason", "hold", "--yes"
    )
    assert paused.returncode == 0, paused.stderr
    assert "2 saga(s) match" in paused.stdout and "pause: 2 done, 0 not done" in paused.stdout
    asked = workyard(
        stack_env, "saga", "bulk", "terminate", "--template", "e2e.stuck", "--state", "running", "--reason", "x"
    )
    assert asked.returncode == 1 and "Aborted" in asked.stderr  # no answer to the question: nothing done
    terminated = workyard(
        stack_env,
        "saga",
        "bulk",
        "terminate",
        "--template",
        "e2e.stuck",
        "--state",
        "running",
        "--reason",
        "gone",
        "--yes",
    )
    assert "terminate: 2 done, 0 not done" in terminated.stdout
    listed = workyard(stack_env, "saga", "list", "--template", "e2e.stuck", "--state", "terminated")
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(ids[1:])
    shown = workyard(stack_env, "saga", "show", ids[1])
    assert (
        "pause (running -> paused): hold" in shown.stdout and "terminate (running -> terminated): gone" in shown.stdout
    )
    planned = workyard(stack_env, "saga", "rerun", ids[1], "--dry-run", "--input-patch", '{"x": 1}', "--reason", "r")
    assert planned.returncode == 0, planned.stderr
    assert f"saga {ids[1]}: would rerun from a" in planned.stdout and "runs: runs again" in planned.stdout
    bad_patch = workyard(stack_env, "saga", "rerun", ids[1], "--input-patch", "[1]", "--reason", "r")
    assert bad_patch.returncode == 1 and "--input-patch must be a JSON object" in bad_patch.stderr
    rerun = workyard(stack_env, "saga", "rerun", ids[1], "--reason", "try again")
    assert rerun.returncode == 0 and f"saga {ids[1]}: rerun from a" in rerun.stdout
    assert "state: running" in workyard(stack_env, "saga", "show", ids[1]).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saga", "submit", "no.such", "--input", "{}"], "no template named 'no.such'"),
        (["saga", "submit", "shop.order", "--input", "{not json"], "--input is not valid JSON"),
        (["saga", "submit", "shop.order", "--input", '{"order_id": 1}'], "input does not match"),
        (["saga", "show", "nope"], "no saga with id 'nope'"),
    ],
)
def test_bad_input_is_one_clear_line_not_a_traceback(stack_env: dict[str, str], args: list[str], message: str) -> None:
    workyard(stack_env, "template", "add", str(SHOP))
    before = workyard(stack_env, "saga", "list", "--limit", "500").stdout
    result = workyard(stack_env, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert workyard(stack_env, "saga", "list", "--limit", "500").stdout == before


def test_a_bad_template_file_names_the_field(stack_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: h\n")
    result = workyard(stack_env, "template", "add", str(bad))
    assert (
        result.returncode == 1 and "steps.0.capability: Value error, a handler step needs a capability" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_commands_without_a_stack_say_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    env["WORKYARD_DATA_DIR"] = str(tmp_path / "empty")
    no_token = workyard(env, "saga", "list")
    assert no_token.returncode == 1 and "Traceback" not in no_token.stderr
    assert "pass --token or set WORKYARD_TOKEN" in no_token.stderr and "workyard up" in no_token.stderr
    port = free_port()
    away = workyard({**env, "WORKYARD_TOKEN": "wy_x", "WORKYARD_API_PORT": str(port)}, "template", "list")
    assert away.returncode == 1 and "Traceback" not in away.stderr
    assert f"cannot reach the workyard API at http://127.0.0.1:{port}" in away.stderr
    assert "WORKYARD_URL" in away.stderr and len(away.stderr.strip().splitlines()) == 1


def test_an_agent_works_an_item_over_http_with_a_cli_token(stack_env: dict[str, str]) -> None:
    from models.agents import AgentSpec, AgentType, CapabilityDecl
    from workers.client import ApiError, WorkyardClient

    admin_token = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    made = workyard(
        stack_env,
        "token",
        "create",
        "--principal",
        "agent:summarizer-1",
        "--tenant",
        "acme",
        "--scope",
        "work:claim",
        "--scope",
        "work:read",
        "--scope",
        "agents:register",
        "--capability",
        "summarize",
    )
    assert made.returncode == 0, made.stderr
    assert "not shown again" in made.stderr
    agent_token = made.stdout.strip()
    api = stack_env["WORKYARD_TEST_API"]
    with WorkyardClient(api, admin_token) as admin, WorkyardClient(api, agent_token) as agent:
        # The agent registers itself in the registry, declaring what its token grants.
        me = agent.register_agent(
            "summarizer-1",
            AgentSpec(agent_type=AgentType.stateless_tool_caller, capabilities=[CapabilityDecl(name="summarize")]),
        )
        assert (me.tenant, me.liveness, me.capacity) == ("acme", "live", 1)
        item = admin.create_work_item(
            {
                "type": "task",
                "tenant": "acme",
                "title": "summarize the incident",
                "payload": {"doc": "INC-7"},
                "offer": {"type": "agent", "capability": "summarize"},
            },
            idempotence_key="inc-7-summary",
        )
        claimed = agent.claim_next(ttl_s=1.5)
        assert claimed is not None and claimed.id == item.id
        started = agent.start(claimed)
        with agent.keep_alive(started):
            # Twice the lease, on the server's clock: only the heartbeats (every 0.5 s) keep it.
            consistently(
                lambda: (claim := admin.get_work_item(item).claim) is not None and claim.id == "summarizer-1",
                duration=3.0,
                interval=0.25,
                what="the agent's heartbeated claim",
            )
        assert admin.get_agent("summarizer-1").load == 1
        done = agent.complete(started, {"summary": "disk filled up"}, cost=0.25)
        assert done.status == "review" and done.result == {"summary": "disk filled up"}
        shown = admin.get_agent("summarizer-1")
        assert (shown.load, shown.spent) == (0, 0.25)
        assert admin.transition(item, "done", reason="reads well").status == "done"
        actions = [(e.action, e.actor) for e in admin.history(item)]
        assert actions == [
            ("created", "user:admin"),
            ("claimed", "agent:summarizer-1"),
            ("started", "agent:summarizer-1"),
            ("completed", "agent:summarizer-1"),
            ("transition", "user:admin"),
        ]
        with pytest.raises(ApiError) as refused:
            agent.create_work_item({"type": "task", "title": "x", "description": "y"})
        assert refused.value.status == 403 and refused.value.code == "forbidden"
    listed = workyard(stack_env, "token", "list")
    assert "agent:summarizer-1" in listed.stdout and agent_token not in listed.stdout


def readme_block(marker: str) -> str:
    """The shell block that follows ``marker`` in the README, as a reader would copy it."""
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index(marker) :]
    start = after.index("```sh\n") + len("```sh\n")
    return after[start : after.index("```", start)]


def run_readme_block(block: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A README block in bash, as a reader in the project's folder would run it (the data dir as
    ``.workyard``), but for the API's port; every curl fails loudly on an error status."""
    links = {".workyard": Path(env["WORKYARD_DATA_DIR"]), ".venv": Path(sys.executable).parents[1]}
    for name, target in {**links, "examples": ROOT / "examples"}.items():
        if not (cwd / name).exists():
            (cwd / name).symlink_to(target)
    script = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; }\n'
    script += block.replace("localhost:8700", env["WORKYARD_TEST_API"].removeprefix("http://"))
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_readmes_calls_over_http_run_as_written(stack_env: dict[str, str], tmp_path: Path) -> None:
    ran = run_readme_block(readme_block("<!-- over-http:"), stack_env, tmp_path)
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert '"order_id":"A-3"' in ran.stdout.replace(" ", "")


def test_the_readmes_agent_loop_runs_as_written_ten_times(stack_env: dict[str, str], tmp_path: Path) -> None:
    from workers.client import WorkyardClient

    loop = readme_block("<!-- agent-loop:")
    api = stack_env["WORKYARD_TEST_API"]
    made = workyard(
        stack_env,
        *("token", "create", "--principal", "agent:summarizer-2", "--tenant", "acme"),
        *("--scope", "work:claim", "--scope", "work:read", "--capability", "summarize"),
    )
    assert made.returncode == 0, made.stderr
    env = {**stack_env, "AGENT_TOKEN": made.stdout.strip()}
    admin_token = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    with WorkyardClient(api, admin_token) as admin, WorkyardClient(api, env["AGENT_TOKEN"]) as vanishing:
        for run in range(10):
            item = admin.create_work_item(
                {
                    "type": "task",
                    "tenant": "acme",
                    "title": f"summarize INC-{run}",
                    "payload": {"doc": f"INC-{run}"},
                    "offer": {"type": "agent", "capability": "summarize"},
                }
            )
            if run % 2:
                # An agent takes it, starts it and dies; its short lease lapses before the loop runs.
                held = vanishing.claim_next(ttl_s=0.5)
                assert held is not None and held.id == item.id
                vanishing.start(held)
                time.sleep(1.0)  # real time: the lease lapses on the server's clock
            ran = run_readme_block(loop, env, tmp_path)
            assert ran.returncode == 0, f"run {run}: {ran.stdout}\n{ran.stderr}"
            finished = admin.get_work_item(item)
            assert finished.status == "review", f"run {run}: {finished.status}"
            assert finished.result == {"summary": "the disk filled up"}
            assert finished.progress == {"done": 1, "of": 2} and finished.claim is None
            actions = [e.action for e in admin.history(item)]
            expected = ["created", "claimed", "started", "completed"]
            if run % 2:
                expected = ["created", "claimed", "started", "lease_expired", "claimed", "resumed", "completed"]
            assert actions == expected, f"run {run}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--principal", "summarizer", "--tenant", "acme", "--scope", "work:read"], "must look like user:<id>"),
        (["--principal", "agent:a", "--tenant", "acme", "--scope", "work:everything"], "unknown scope(s) work:every"),
    ],
)
def test_token_create_refuses_bad_input_clearly(stack_env: dict[str, str], args: list[str], message: str) -> None:
    result = workyard(stack_env, "token", "create", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_timers_lists_an_items_sla_clock(stack_env: dict[str, str]) -> None:
    from workers.client import WorkyardClient

    admin_token = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    with WorkyardClient(stack_env["WORKYARD_TEST_API"], admin_token) as admin:
        item = admin.create_work_item(
            {
                "type": "task",
                "tenant": "acme",
                "title": "answer the customer",
                "description": "within the hour",
                "sla": {"target_ms": 3_600_000, "warn_at_pct": 50},
            }
        )
    listed = workyard(stack_env, "timers")
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if item.id in line]
    assert [line.split()[5] for line in lines] == ["sla_warn", "sla_breach"], listed.stdout


def _over_http_only(stack_env: dict[str, str], tmp_path: Path, token: str | None = None) -> dict[str, str]:
    """An operator's terminal on another host: the API's URL and a token, no data dir of the
    stack and a database URL that leads nowhere."""
    env = {k: v for k, v in stack_env.items() if not k.startswith("WORKYARD_")}
    admin = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    env.update(
        {
            "WORKYARD_URL": stack_env["WORKYARD_TEST_API"],
            "WORKYARD_TOKEN": token or admin,
            "WORKYARD_DATA_DIR": str(tmp_path / "elsewhere"),
            "WORKYARD_DATABASE_URL": "postgresql+psycopg://nobody:wrong@127.0.0.1:1/nothing",
            "WORKYARD_BROKER_URL": "redis://127.0.0.1:1/0",
            "WORKYARD_REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )
    return env


def test_the_cli_needs_only_the_apis_url_and_a_token(stack_env: dict[str, str], tmp_path: Path) -> None:
    env = _over_http_only(stack_env, tmp_path)
    added = workyard(env, "template", "add", str(SHOP))
    assert added.returncode == 0, added.stderr
    done = workyard(env, "saga", "submit", "shop.order", "--input", '{"order_id": "H-1", "amount": 2}', "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ship" in done.stdout and "completed" in done.stdout
    saga_id = done.stdout.split()[1]
    assert saga_id in workyard(env, "saga", "list", "--state", "completed").stdout
    assert "state: completed" in workyard(env, "saga", "show", saga_id).stdout
    assert "shop.order 1.0.0" in workyard(env, "template", "list").stdout
    # The same from flags alone, and against the wrong URL: one line naming it.
    bare = {k: v for k, v in env.items() if k not in ("WORKYARD_URL", "WORKYARD_TOKEN")}
    flags = ("--url", env["WORKYARD_URL"], "--token", env["WORKYARD_TOKEN"])
    assert saga_id in workyard(bare, "saga", "list", *flags).stdout
    wrong = workyard(env, "saga", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert wrong.returncode == 1 and "cannot reach the workyard API" in wrong.stderr and "--url" in wrong.stderr


def test_a_bad_token_or_a_missing_scope_is_one_clear_line(stack_env: dict[str, str], tmp_path: Path) -> None:
    bad = workyard(_over_http_only(stack_env, tmp_path, token="wy_nope"), "saga", "list")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "does not accept the token from --token or WORKYARD_TOKEN" in bad.stderr
    made = workyard(
        stack_env, "token", "create", "--principal", "user:viewer", "--tenant", "acme", "--scope", "work:read"
    )
    assert made.returncode == 0, made.stderr
    viewer = _over_http_only(stack_env, tmp_path, token=made.stdout.strip())
    for args in (("saga", "list"), ("dead-letters", "list")):
        refused = workyard(viewer, *args)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "the token from --token or WORKYARD_TOKEN may not do this" in refused.stderr, refused.stderr
    assert "lacks the sagas:read scope" in workyard(viewer, "saga", "list").stderr


def test_every_listing_prints_json_with_json(stack_env: dict[str, str]) -> None:
    import json

    assert workyard(stack_env, "template", "add", str(SHOP)).returncode == 0
    submitted = workyard(stack_env, "saga", "submit", "shop.order", "--input", '{"order_id": "J-1", "amount": 1}')
    saga_id = submitted.stdout.split()[1]
    for args in (
        ("saga", "list"),
        ("template", "list"),
        ("item", "list"),
        ("dead-letters", "list"),
        ("saga", "show", saga_id),
    ):
        shown = workyard(stack_env, *args, "--json")
        assert shown.returncode == 0, (args, shown.stderr)
        parsed = json.loads(shown.stdout)
        assert isinstance(parsed, list if args[-1] == "list" else dict), args
    assert saga_id in [s["id"] for s in json.loads(workyard(stack_env, "saga", "list", "--json").stdout)]
    assert "shop.order" in [t["name"] for t in json.loads(workyard(stack_env, "template", "list", "--json").stdout)]


def test_a_template_nobody_consumes_is_warned_about_and_a_wait_shows_progress(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    idle = tmp_path / "idle.yaml"
    idle.write_text("name: e2e.idle\nversion: 1.0.0\nsteps:\n  - name: a\n    capability: no_one\n    handler: h\n")
    added = workyard(stack_env, "template", "add", str(idle))
    assert added.returncode == 0 and "warning: no worker consumes cap.no_one" in added.stderr
    # Every capability of the shop has a live worker (the "second terminal"): no warning.
    eventually(
        lambda: "warning" not in workyard(stack_env, "template", "add", str(SHOP)).stderr,
        timeout=30,
        what="the shop's workers to be live in the registry",
    )
    waited = workyard(stack_env, "saga", "submit", "e2e.idle", "--wait", "--timeout", "2")
    assert waited.returncode == 1 and "Traceback" not in waited.stderr
    saga_id = waited.stdout.split()[1]
    assert f"… saga {saga_id} running: a attempt 1 (not started by a worker yet)" in waited.stderr
    assert f"saga {saga_id} is still running after 2 s" in waited.stderr
    shown = workyard(stack_env, "saga", "show", saga_id)
    assert "warning: step a: no worker consumes cap.no_one" in shown.stdout
    workyard(stack_env, "saga", "terminate", saga_id, "--reason", "nobody runs it")


def test_a_person_lists_claims_starts_and_completes_an_item(stack_env: dict[str, str], tmp_path: Path) -> None:
    import json

    from workers.client import WorkyardClient

    made = workyard(
        stack_env,
        *("token", "create", "--principal", "user:dana", "--tenant", "acme", "--group", "reviewers"),
        *("--scope", "work:read", "--scope", "work:claim"),
    )
    assert made.returncode == 0, made.stderr
    dana = _over_http_only(stack_env, tmp_path, token=made.stdout.strip())
    admin_token = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    with WorkyardClient(stack_env["WORKYARD_TEST_API"], admin_token) as admin:
        item = admin.create_work_item(
            {
                "type": "task",
                "tenant": "acme",
                "title": "review the refund",
                "description": "over the limit",
                "offer": {"type": "human", "scope": "work:claim", "group": "reviewers"},
            }
        )
    available = workyard(dana, "item", "list", "--available")
    assert available.returncode == 0 and item.id in available.stdout, available.stderr
    claimed = workyard(dana, "item", "claim", item.id, "--ttl", "60")
    assert claimed.returncode == 0 and f"claimed {item.id}" in claimed.stdout, claimed.stderr
    assert workyard(dana, "item", "start", item.id).returncode == 0
    shown = workyard(dana, "item", "show", item.id)
    assert "held by user:dana" in shown.stdout and "in_progress" in shown.stdout, shown.stdout
    done = workyard(dana, "item", "complete", item.id, "--result", '{"approved": true}')
    assert done.returncode == 0 and f"completed {item.id}" in done.stdout, done.stderr
    assert json.loads(workyard(dana, "item", "show", item.id, "--json").stdout)["result"] == {"approved": True}
    history = workyard(dana, "item", "history", item.id)
    actions = [line.split()[3] for line in history.stdout.splitlines()]
    assert actions == ["created", "claimed", "started", "completed"], history.stdout
    missing = workyard(dana, "item", "claim", "WI-NOPE")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "WI-NOPE" in missing.stderr, missing.stderr


def test_an_operator_replays_and_purges_dead_letters(stack_env: dict[str, str], tmp_path: Path) -> None:
    import json

    from config.settings import Settings
    from orchestrator.service.coordinator import dead_letter_row
    from orchestrator.service.wiring import Wiring

    # A malformed report, as the coordinator keeps one; replayed, it is malformed again.
    wiring = Wiring(Settings(data_dir=Path(stack_env["WORKYARD_DATA_DIR"])))
    try:
        with wiring.sessions.begin() as session:
            from models.base import utcnow

            letter = dead_letter_row("workyard.orchestrator", "malformed report: e2e", {"kind": "nonsense"}, utcnow())
            session.add(letter)
            session.flush()
            letter_id = letter.id
    finally:
        wiring.close()
    env = _over_http_only(stack_env, tmp_path)
    listed = workyard(env, "dead-letters")
    assert listed.returncode == 0 and "malformed report: e2e" in listed.stdout, listed.stderr
    shown = workyard(env, "dead-letters", "show", str(letter_id))
    assert '{"kind": "nonsense"}' in shown.stdout and "replayable: yes" in shown.stdout
    replayed = workyard(env, "dead-letters", "replay", str(letter_id))
    assert replayed.returncode == 0 and f"dead letter {letter_id} replayed to workyard.orchestrator" in replayed.stdout

    def back() -> list[dict[str, object]]:
        rows = json.loads(workyard(env, "dead-letters", "list", "--json").stdout)
        return [r for r in rows if r["body_preview"] == '{"kind": "nonsense"}']

    # The orchestrator reads it again, and dead-letters it again with its own reason.
    eventually(
        lambda: (
            [r["reason"] for r in back()]
            == [
                "malformed report: (root): Input tag 'nonsense' found using 'kind' does not match any of the expected "
                "tags: 'step_report', 'dead_letter'"
            ]
        ),
        timeout=30,
        what="the replay to come back",
    )
    missing = workyard(env, "dead-letters", "show", "999999")
    assert missing.returncode == 1 and "no dead letter 999999" in missing.stderr
    asked = workyard(env, "dead-letters", "purge", "--all")
    assert asked.returncode == 1 and "Aborted" in asked.stderr and back()
    purged = workyard(env, "dead-letters", "purge", "--source", "workyard.orchestrator", "--yes")
    assert purged.returncode == 0 and "purged" in purged.stdout, purged.stderr
    assert back() == [] and "no dead letters" in workyard(env, "dead-letters").stdout


def register_policy(stack_env: dict[str, str], path: Path) -> None:
    """A policy registered with the operator's token (a shared one), as the README's block does."""
    admin = (Path(stack_env["WORKYARD_DATA_DIR"]) / "admin-token").read_text().strip()
    response = httpx.post(
        f"{stack_env['WORKYARD_TEST_API']}/api/v1/policies",
        content=path.read_bytes(),
        headers={"Authorization": f"Bearer {admin}", "content-type": "application/json"},
    )
    assert response.status_code in (200, 201), response.text


def test_the_catalog_registers_lists_shows_and_instantiates_a_template(stack_env: dict[str, str]) -> None:
    import json

    pci = ROOT / "examples" / "catalog" / "change.pci.yaml"
    refused = workyard(stack_env, "catalog", "add", str(pci))  # its policy is not registered yet
    assert refused.returncode != 0 and "approvalPolicyId" in refused.stderr and "Traceback" not in refused.stderr
    register_policy(stack_env, ROOT / "examples" / "policies" / "policy-change-pci-v1.json")
    added = workyard(stack_env, "catalog", "add", str(pci))
    assert added.returncode == 0, added.stderr
    assert "tpl:change:pci:1.0.0" in added.stdout
    assert "change:pci 1.0.0  (change" in workyard(stack_env, "catalog", "list").stdout
    shown = json.loads(workyard(stack_env, "catalog", "show", "change:pci").stdout)
    assert shown["approvalPolicyId"] == "policy-change-pci-v1"
    window = '{"start": "2026-12-06T01:00:00Z", "end": "2026-12-06T03:00:00Z"}'
    args = (
        "catalog",
        "instantiate",
        "change:pci",
        "-p",
        "system=vault",
        "-p",
        f"changeWindow={window}",
        "--key",
        "c-1",
        "--tenant",
        "acme",
    )
    made = workyard(stack_env, *args)
    assert made.returncode == 0, made.stderr
    assert "PCI change to vault" in made.stdout and "(created)" in made.stdout
    again = workyard(stack_env, *args)
    assert "(already created)" in again.stdout
    assert again.stdout.split()[0] == made.stdout.split()[0]
    wrong = workyard(stack_env, "catalog", "instantiate", "change:pci", "-p", "system=vault", "--tenant", "acme")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "parameters.changeWindow" in wrong.stderr


def test_the_readmes_catalog_block_runs_as_written(stack_env: dict[str, str], tmp_path: Path) -> None:
    ran = run_readme_block(readme_block("<!-- catalog:"), stack_env, tmp_path)
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert '"title":"PCIchangetopayments-db"' in ran.stdout.replace(" ", "")
    assert "change:pci 1.0.0" in ran.stdout


def test_an_operator_pauses_and_resumes_a_capability_and_a_template(stack_env: dict[str, str]) -> None:
    import json

    def show(saga_id: str) -> str:
        return workyard(stack_env, "saga", "show", saga_id).stdout

    assert workyard(stack_env, "template", "add", str(SHOP)).returncode == 0
    paused = workyard(stack_env, "capability", "pause", "payments", "--reason", "card processor down")
    assert paused.returncode == 0, paused.stderr
    assert "capability payments (every tenant) paused" in paused.stdout
    again = workyard(stack_env, "capability", "pause", "payments", "--reason", "twice")
    assert again.returncode == 1 and "paused already" in again.stderr and "Traceback" not in again.stderr
    # Each step takes a while: the orchestrator has read the pause before charge_card would go out.
    order = '{"order_id": "P-1", "amount": 2, "delay_ms": 1500}'
    saga_id = workyard(stack_env, "saga", "submit", "shop.order", "--input", order).stdout.split()[1]
    shown = eventually(lambda: "held since" in (s := show(saga_id)) and s, timeout=30, what="the hold")
    assert "by the pause of capability payments (every tenant's sagas)" in shown
    assert "card processor down" in shown and "charge_card=pending" in shown
    listed = workyard(stack_env, "pauses", "list")
    assert "capability" in listed.stdout and "payments" in listed.stdout and "1 held" in listed.stdout
    [pause] = json.loads(workyard(stack_env, "pauses", "list", "--json").stdout)
    assert (pause["kind"], pause["name"], pause["tenant"], pause["held"]) == ("capability", "payments", "*", 1)

    resumed = workyard(stack_env, "capability", "resume", "payments", "--reason", "back up")
    assert resumed.returncode == 0 and "capability payments (every tenant) resumed" in resumed.stdout
    eventually(lambda: "state: completed" in show(saga_id), timeout=60, what="the saga to complete")

    assert workyard(stack_env, "template", "pause", "shop.order", "--reason", "bad deploy").returncode == 0
    submitted = workyard(stack_env, "saga", "submit", "shop.order", "--input", '{"order_id": "P-2", "amount": 1}')
    held_id = submitted.stdout.split()[1]
    assert "by the pause of template shop.order" in show(held_id)  # held as it was submitted
    done = workyard(stack_env, "template", "resume", "shop.order", "--reason", "fixed", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["resumed"] is True
    eventually(lambda: "state: completed" in show(held_id), timeout=60, what="the held saga to complete")
    history = json.loads(workyard(stack_env, "pauses", "history", "--json").stdout)
    assert [(e["action"], e["kind"], e["name"]) for e in history[:4]] == [
        ("resume", "template", "shop.order"),
        ("pause", "template", "shop.order"),
        ("resume", "capability", "payments"),
        ("pause", "capability", "payments"),
    ]
    gone = workyard(stack_env, "template", "resume", "shop.order", "--reason", "again")
    assert gone.returncode == 1 and "is not paused" in gone.stderr


def test_webhooks_and_timers_over_the_api_only(stack_env: dict[str, str], tmp_path: Path) -> None:
    import json

    env = _over_http_only(stack_env, tmp_path)
    headers = {"Authorization": f"Bearer {env['WORKYARD_TOKEN']}"}
    # A public address (the test needs no answer from it: a delivery that fails is one to redeliver).
    hook = httpx.post(
        f"{env['WORKYARD_URL']}/api/v1/webhooks",
        json={"url": "https://93.184.216.34/hook", "events": ["*"]},
        headers=headers,
    ).json()
    listed = workyard(env, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    assert hook["id"] in listed.stdout and "enabled" in listed.stdout
    assert hook["id"] in [h["id"] for h in json.loads(workyard(env, "webhooks", "list", "--json").stdout)]
    shown = json.loads(workyard(env, "webhooks", "show", hook["id"]).stdout)
    assert shown["url"] == "https://93.184.216.34/hook" and "secret" not in shown
    disabled = workyard(env, "webhooks", "disable", hook["id"])
    assert disabled.returncode == 0 and f"disabled {hook['id']}" in disabled.stdout and "disabled " in disabled.stdout
    assert "enabled" in workyard(env, "webhooks", "enable", hook["id"]).stdout
    rotated = workyard(env, "webhooks", "rotate-secret", hook["id"])
    assert rotated.returncode == 0 and rotated.stdout.strip() and "not shown again" in rotated.stderr

    # An event for it: a saga that ends.
    assert workyard(env, "template", "add", str(SHOP)).returncode == 0
    done = workyard(env, "saga", "submit", "shop.order", "--input", '{"order_id": "W-1", "amount": 1}', "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    deliveries = eventually(
        lambda: json.loads(workyard(env, "webhooks", "--json").stdout) or None, timeout=30, what="a delivery"
    )
    delivery = deliveries[0]
    assert delivery["webhook_id"] == hook["id"]
    logged = workyard(env, "webhooks", "deliveries", "--webhook", hook["id"])
    assert logged.returncode == 0 and delivery["event"] in logged.stdout
    again = workyard(env, "webhooks", "redeliver", str(delivery["id"]))
    assert again.returncode == 0 and f"delivery {delivery['id']} is due again" in again.stdout
    missing = workyard(env, "webhooks", "redeliver", "999999999")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    deleted = workyard(env, "webhooks", "delete", hook["id"])
    assert deleted.returncode == 0 and f"deleted webhook {hook['id']}" in deleted.stdout
    gone = workyard(env, "webhooks", "show", hook["id"])
    assert gone.returncode == 1 and "Traceback" not in gone.stderr

    # Timers: a saga waiting on a capability nobody consumes has a running attempt with a deadline.
    stuck = tmp_path / "stuck.yaml"
    stuck.write_text(
        "name: e2e.timed\nversion: 1.0.0\ndeadline_ms: 3600000\n"
        "steps:\n  - name: a\n    capability: nobody_here\n    handler: h\n"
    )
    assert workyard(env, "template", "add", str(stuck)).returncode == 0
    saga_id = workyard(env, "saga", "submit", "e2e.timed").stdout.split()[1]
    timers = workyard(env, "timers", "--saga", saga_id)
    assert timers.returncode == 0, timers.stderr
    assert "1 timer(s), 0 due now" in timers.stdout and "saga_deadline" in timers.stdout
    assert f"saga {saga_id}  step a forward attempt 1" in timers.stdout
    listing = json.loads(workyard(env, "timers", "--saga", saga_id, "--kind", "deadline", "--json").stdout)
    assert listing["total"] == 0 and [d["step_name"] for d in listing["deadlines"]] == ["a"]
    assert json.loads(workyard(env, "timers", "--due", "--saga", saga_id, "--json").stdout)["timers"] == []
    bad = workyard(env, "timers", "--kind", "nope")
    assert bad.returncode == 1 and "kind" in bad.stderr and "Traceback" not in bad.stderr
    made = workyard(stack_env, "token", "create", "--principal", "user:t", "--tenant", "acme", "--scope", "sagas:read")
    tenant = workyard(_over_http_only(stack_env, tmp_path, token=made.stdout.strip()), "timers")
    assert tenant.returncode == 1 and "only an all-tenant token" in tenant.stderr
    workyard(env, "saga", "terminate", saga_id, "--reason", "done looking")

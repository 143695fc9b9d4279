"""``workyard dead-letters``: messages nobody could act on; list, show, replay, purge (over the API).

Every command needs an all-tenant token with ``dead-letters:manage`` (or ``admin``): the embedded
stack's admin token has both.
"""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.base import Failure, main
from orchestrator.cli.remote import Api, echo_json, json_option, over_api, pages, when

PATH = "/api/v1/dead-letters"


@main.group("dead-letters", invoke_without_command=True)
@click.pass_context
def dead_letters(ctx: click.Context) -> None:
    """Messages nobody could act on, with the reason: list (the default), show, replay, purge."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(dead_letters_list)


@dead_letters.command("list")
@click.option("--source", default=None, help="Only those from this queue (cap.<capability>, workyard.orchestrator).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@over_api
def dead_letters_list(api: Api, source: str | None, limit: int, as_json: bool) -> None:
    """Dead letters, newest first: id, when, source, reason, the start of the body."""
    items = list(pages(api, PATH, limit, source=source))
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no dead letters")
    for row in items:
        replay = "" if row["replayable"] else "  (not replayable)"
        click.echo(f"{row['id']:>6}  {when(row['received_at'])}  {row['source']}  {row['reason']}{replay}")
        click.echo(f"        {row['body_preview']}")


@dead_letters.command("show")
@click.argument("letter_id", type=click.IntRange(1))
@json_option
@over_api
def dead_letters_show(api: Api, letter_id: int, as_json: bool) -> None:
    """One dead letter with its whole body."""
    row = api.get(f"{PATH}/{letter_id}")
    if as_json:
        echo_json(row)
        return
    click.echo(f"dead letter {row['id']}  from {row['source']}  at {when(row['received_at'])}")
    click.echo(f"  reason: {row['reason']}")
    click.echo(f"  replayable: {'yes' if row['replayable'] else 'no'}")
    click.echo(f"  body ({row['body_chars']} characters):")
    click.echo(row["body"])


@dead_letters.command("replay")
@click.argument("letter_ids", nargs=-1, required=True, type=click.IntRange(1))
@over_api
def dead_letters_replay(api: Api, letter_ids: tuple[int, ...]) -> None:
    """Publish dead letters again to the queues they came from (once what made them fail is
    fixed), deleting them; one that fails again comes back as a new dead letter."""
    failed = 0
    for letter_id in letter_ids:
        try:
            done = api.post(f"{PATH}/{letter_id}/replay")
        except Failure as exc:
            failed += 1
            click.echo(f"dead letter {letter_id}: not replayed: {exc.message}", err=True)
            continue
        click.echo(f"dead letter {letter_id} replayed to {done['queue']}")
    if failed:
        raise Failure(f"{failed} of {len(letter_ids)} dead letter(s) were not replayed")


@dead_letters.command("purge")
@click.argument("letter_ids", nargs=-1, type=click.IntRange(1))
@click.option("--source", default=None, help="Every one from this queue.")
@click.option("--reason-contains", default=None, help="Every one whose reason contains this text.")
@click.option("--before", type=click.DateTime(), default=None, help="Every one received before this time (UTC).")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--yes", is_flag=True, help="Delete without asking (the count is still shown).")
@json_option
@over_api
def dead_letters_purge(
    api: Api,
    letter_ids: tuple[int, ...],
    source: str | None,
    reason_contains: str | None,
    before: Any,
    everything: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead letters: the ids given, or every one a filter matches (shows how many, then asks)."""
    where = {
        "source": source,
        "reason_contains": reason_contains,
        "received_before": f"{before.isoformat()}Z" if before else None,
    }
    where = {k: v for k, v in where.items() if v is not None}
    if letter_ids:
        if where or everything:
            raise Failure("give ids, or a filter (--source, --reason-contains, --before, --all), not both")
        for letter_id in letter_ids:
            api.send("DELETE", f"{PATH}/{letter_id}")
            click.echo(f"dead letter {letter_id} deleted")
        return
    if not where and not everything:
        raise Failure("say what to purge: ids, a filter (--source, --reason-contains, --before), or --all")
    counted = api.post(f"{PATH}/purge", {"filter": where})
    click.echo(f"{counted['matched']} dead letter(s) match", err=as_json)
    if not counted["matched"]:
        if as_json:
            echo_json(counted)
        return
    if not yes:
        click.confirm(f"delete {counted['matched']} dead letter(s)?", abort=True, err=True)
    done = api.post(f"{PATH}/purge", {"filter": where, "dry_run": False, "expect": counted["matched"]})
    if as_json:
        echo_json(done)
        return
    click.echo(f"purged {done['deleted']} dead letter(s)")

"""CLI commands for queue surgery and for describing one item or run.

`queue hold|resume`, `item top|bottom|priority|move` and `describe`: each is a thin
client of one LaunchService call, registered on the groups tui/cli.py defines
(it imports this module at its end).
"""

from __future__ import annotations

import click

from launch_tui.core import explain
from launch_tui.core.errors import NotFound
from launch_tui.core.model import Priority, QueueItem
from launch_tui.core.service import LaunchService
from launch_tui.tui.cli import (
    ago,
    cli,
    emit_json,
    json_option,
    project_option,
    queue,
    run_with_service,
    to_jsonable,
)


def _item_id(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    text = value.lstrip("#")
    if not text.isdigit():
        raise click.BadParameter(f"'{value}' is not an item number (#12 or 12).")
    return int(text)


def _placed(item: QueueItem) -> str:
    return (f"item #{item.id} ({item.job_ref}) is at position {item.position or '-'} on "
            f"{item.queue} (priority {item.priority})")


# ---------------------------------------------------------------------- queues


@queue.command("hold")
@click.argument("name")
@click.option("--reason", "-r", default=None, help="Why (shown to whoever looks at it).")
@project_option
@run_with_service
async def queue_hold(service: LaunchService, name: str, reason: str | None,
                     project: str | None) -> None:
    """Stop agents taking items from a queue (what runs goes on)."""
    q = await service.hold_queue(name, project=project, reason=reason)
    click.echo(f"queue {q.name} held: agents take nothing from it until "
               f"`launch-tui queue resume {q.name}` ({q.pending} waiting)")


@queue.command("resume")
@click.argument("name")
@project_option
@run_with_service
async def queue_resume(service: LaunchService, name: str, project: str | None) -> None:
    """Let agents take items from a held queue again."""
    q = await service.resume_queue(name, project=project)
    click.echo(f"queue {q.name} resumed ({q.pending} waiting)")


# ---------------------------------------------------------------------- items


@cli.group()
def item() -> None:
    """Move a waiting item: to the top or bottom, to a priority, to another queue."""


@item.command("top")
@click.argument("item_id", metavar="ITEM", callback=_item_id)
@run_with_service
async def item_top(service: LaunchService, item_id: int) -> None:
    """Make a waiting item the next its queue gives out (raising its priority to the
    first item's if that is higher)."""
    click.echo(_placed(await service.move_item(item_id, "top")))


@item.command("bottom")
@click.argument("item_id", metavar="ITEM", callback=_item_id)
@run_with_service
async def item_bottom(service: LaunchService, item_id: int) -> None:
    """Send a waiting item to the back of its queue, as if enqueued now (lowering its
    priority to the last item's if that is lower)."""
    click.echo(_placed(await service.move_item(item_id, "bottom")))


@item.command("priority")
@click.argument("item_id", metavar="ITEM", callback=_item_id)
@click.argument("priority", type=click.Choice([p.value for p in Priority]))
@run_with_service
async def item_priority(service: LaunchService, item_id: int, priority: str) -> None:
    """Give a waiting item another priority."""
    click.echo(_placed(await service.set_item_priority(item_id, priority)))


@item.command("move")
@click.argument("item_id", metavar="ITEM", callback=_item_id)
@click.argument("queue_name", metavar="QUEUE")
@run_with_service
async def item_move(service: LaunchService, item_id: int, queue_name: str) -> None:
    """Move a waiting item to another queue (checked against its config)."""
    click.echo(_placed(await service.move_item_to_queue(item_id, queue_name)))


# ---------------------------------------------------------------------- describe


@cli.command()
@click.argument("target", metavar="RUN_OR_ITEM")
@json_option
@run_with_service
async def describe(service: LaunchService, target: str, as_json: bool) -> None:
    """An item (#ID) or a run: its state, why it waits or how it ended, its timeline."""
    text = target.lstrip("#")
    if text.isdigit():
        it = await service.get_item(int(text))
        run = await service.get_run(it.run_id) if it.run_id else None
    else:
        try:
            run = await service.get_run(text)
        except NotFound:
            raise NotFound(f"run: '{target}' does not exist (an item is #ID).") from None
        it = await service.get_item(run.item_id)
    why = it.why if run is None else explain.run_why(run, 0.0)
    if as_json:
        emit_json({"item": to_jsonable(it), "run": to_jsonable(run), "why": why})
        return
    click.echo(f"item #{it.id}  {it.job_ref} on {it.queue}  priority {it.priority}  "
               f"{it.outcome or it.state}  enqueued {ago(it.created_at)} ago")
    if run is not None:
        click.echo(f"run {run.id}  {run.state}  agent {run.agent or '-'}  "
                   f"exit {'-' if run.exit_code is None else run.exit_code}")
        for state, at in sorted(run.timestamps.items(), key=lambda kv: kv[1]):
            click.echo(f"  {state:<10} {ago(at)} ago")
    if why:
        click.echo(f"why: {why}")

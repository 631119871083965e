"""`launch-tui`: the command line. Every command is a thin client of LaunchService.

Errors are printed to stderr as one sentence (`launch-tui: error: …`) with exit
status 1; usage mistakes exit 2 (click's convention). List and describe
commands take `--json` and then print exactly one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import click

from launch_tui.core import explain
from launch_tui.core.configfile import load_mapping, parse_assignments
from launch_tui.core.errors import LaunchError, ValidationError
from launch_tui.core.events import RunLogAppended, RunStateChanged
from launch_tui.core.model import (
    TERMINAL_RUN_STATES,
    ItemState,
    Priority,
    QueueItem,
    RunState,
)
from launch_tui.core.service import LaunchService
from launch_tui.tui.listing import jsonable, parse_since, write_json_array

T = TypeVar("T")


# ---------------------------------------------------------------------- plumbing


def to_jsonable(value: Any) -> Any:
    """Snapshots (dataclasses, enums, tuples) as plain JSON values, by the same rule
    the streamed listings use (`listing.jsonable`)."""
    return json.loads(json.dumps(value, default=jsonable))


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=jsonable))


class Ctx:
    def __init__(self, store: str | None, home: str | None, project: str | None = None) -> None:
        self.store = store
        self.home = home
        self.project = project  # `launch-tui --project P <command>`: the command's default

    async def open(self) -> LaunchService:
        return await LaunchService.open(store=self.store, home=self.home)


def run_with_service(fn: Callable[..., Awaitable[T]]) -> Callable[..., T | None]:
    """Open the service, run the command, turn LaunchError into one line on stderr."""

    @click.pass_obj
    @wraps(fn)
    def wrapper(ctx: Ctx, *args: Any, **kwargs: Any) -> T | None:
        if "project" in kwargs and kwargs["project"] is None:
            kwargs["project"] = ctx.project

        async def main() -> T:
            service = await ctx.open()
            try:
                return await fn(service, *args, **kwargs)
            finally:
                await service.close()

        try:
            return asyncio.run(main())
        except LaunchError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            sys.exit(130)
        return None

    return wrapper


def fail(message: str) -> None:
    click.echo(f"launch-tui: error: {message}", err=True)
    sys.exit(1)


def guard(fn: Callable[[], T]) -> T:
    """Run a pre-flight step (parsing files, options) with the same error format."""
    try:
        return fn()
    except LaunchError as exc:
        fail(str(exc))
        raise  # unreachable


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, time.time() - ts)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def _line(text: str | None, width: int = 70) -> str:
    """The first line of a sentence, cut to fit a table column."""
    first = (text or "").splitlines()[0] if text else ""
    return first if len(first) <= width else first[:width - 1] + "…"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def table(headers: list[str], body: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in body]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
project_option = click.option("--project", "-p", "project", default=None,
                              help="Project (default: the settings' default project).")



def _known_resource(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A usage error (exit 2) for an unknown target, like click.Choice, but the
    installed targets are looked up only when the option is used."""
    from launch_tui.core.registry import resource_names

    if value is not None and value not in resource_names():
        raise click.BadParameter(f"'{value}' is not one of {', '.join(resource_names())}.")
    return value


# ---------------------------------------------------------------------- root


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", envvar="LAUNCH_TUI_STORE", default=None,
              help="Store URL or SQLite path (default: $LAUNCH_TUI_HOME/launch.db).")
@click.option("--home", envvar="LAUNCH_TUI_HOME", default=None,
              help="Data directory (default: ~/.local/share/launch-tui).")
@click.option("--agent", "agent_queues", multiple=True, metavar="QUEUE",
              help="Run an agent on QUEUE inside the app (repeatable).")
@project_option
@click.pass_context
def cli(ctx: click.Context, store: str | None, home: str | None, agent_queues: tuple[str, ...],
        project: str | None) -> None:
    """A keyboard-driven launcher for machine-learning jobs.

    With no command, opens the terminal UI.
    """
    ctx.obj = Ctx(store, home, project)
    if ctx.invoked_subcommand is None:
        open_app(ctx.obj, list(agent_queues), project)


def open_app(ctx: Ctx, agent_queues: list[str], project: str | None) -> None:
    from launch_tui.tui.app import run_app

    try:
        run_app(store=ctx.store, home=ctx.home, agent_queues=agent_queues, project=project)
    except LaunchError as exc:
        fail(str(exc))


@cli.command()
@click.option("--no-app", is_flag=True, help="Only seed the demo data; do not open the app.")
@click.pass_obj
def demo(ctx: Ctx, no_app: bool) -> None:
    """Seed a demo project, jobs and a local queue, then open the app with an agent."""
    from launch_tui.tui.demo import seed_demo

    async def main() -> tuple[str, str, bool]:
        service = await ctx.open()
        try:
            return await seed_demo(service)
        finally:
            await service.close()

    try:
        project, queue, enqueued = asyncio.run(main())
    except LaunchError as exc:
        fail(str(exc))
        return
    if no_app:
        seeded = "2 items enqueued" if enqueued else "already seeded, nothing enqueued"
        click.echo(f"demo project '{project}' ready with queue '{queue}' ({seeded})")
        return
    open_app(ctx, [queue], project)


# ---------------------------------------------------------------------- projects


@cli.group()
def project() -> None:
    """Create and list projects."""


@project.command("create")
@click.argument("name")
@run_with_service
async def project_create(service: LaunchService, name: str) -> None:
    p = await service.create_project(name)
    click.echo(f"created project {p.name}")


@project.command("list")
@json_option
@run_with_service
async def project_list(service: LaunchService, as_json: bool) -> None:
    projects = await service.list_projects()
    if as_json:
        emit_json(projects)
    else:
        table(["name", "created"], [[p.name, ago(p.created_at)] for p in projects])


# ---------------------------------------------------------------------- queues


@cli.group()
def queue() -> None:
    """Create, change, list and describe queues."""


@queue.command("create")
@click.argument("name")
@click.option("--resource", "-r", required=True, metavar="RESOURCE", callback=_known_resource,
              help="Target resource the queue runs on.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Queue config (JSON, YAML or TOML): resource_args, template_variables, "
                   "allow_overrides, env, wandb_mode.")
@project_option
@run_with_service
async def queue_create(service: LaunchService, name: str, resource: str,
                       config_file: str | None, project: str | None) -> None:
    config = load_mapping(config_file, "--config") if config_file else {}
    q = await service.create_queue(name, resource, config, project=project)
    click.echo(f"created queue {q.name} ({q.resource}) in project {q.project}")


@queue.command("update")
@click.argument("name")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False),
              help="The new queue config (replaces the old one).")
@click.option("--resource", "-r", metavar="RESOURCE", default=None, callback=_known_resource,
              help="Move the queue to another target resource.")
@project_option
@run_with_service
async def queue_update(service: LaunchService, name: str, config_file: str,
                       resource: str | None, project: str | None) -> None:
    config = load_mapping(config_file, "--config")
    q = await service.update_queue(name, config, resource=resource, project=project)
    click.echo(f"updated queue {q.name} ({q.resource})")


@queue.command("list")
@json_option
@project_option
@run_with_service
async def queue_list(service: LaunchService, as_json: bool, project: str | None) -> None:
    queues = await service.list_queues(project)
    if as_json:
        emit_json(queues)
    else:
        table(["name", "resource", "pending", "state"],
              [[q.name, q.resource, q.pending,
                "held" + (f": {q.hold_reason}" if q.hold_reason else "") if q.held else "open"]
               for q in queues])


@queue.command("describe")
@click.argument("name")
@json_option
@project_option
@run_with_service
async def queue_describe(service: LaunchService, name: str, as_json: bool,
                         project: str | None) -> None:
    q = await service.get_queue(name, project=project)
    if as_json:
        emit_json({**to_jsonable(q), "config": q.config.to_dict()})
        return
    click.echo(f"queue {q.name}  resource={q.resource}  project={q.project}  pending={q.pending}")
    if q.held:
        because = f": {q.hold_reason}" if q.hold_reason else ""
        click.echo(f"held {ago(q.held_at)} ago{because} (agents take nothing from it)")
    click.echo(json.dumps(q.config.to_dict(), indent=2, sort_keys=True))


# ---------------------------------------------------------------------- jobs


@cli.group()
def job() -> None:
    """Create, list and describe jobs."""


@job.group("create")
def job_create() -> None:
    """Create a code, git or image job (or a new version of one)."""


def _job_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--name", "-n", default=None, help="Job name (default: from the source).")(fn)
    fn = project_option(fn)
    fn = click.option("--alias", "-a", "aliases", multiple=True,
                      help="Alias for this version (repeatable); 'latest' is automatic.")(fn)
    fn = click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False),
                      help="Input config defaults (JSON, YAML or TOML).")(fn)
    fn = click.option("--schema", "schema_file", type=click.Path(dir_okay=False),
                      help="Input JSON schema (default: inferred from the config's types).")(fn)
    return fn


def _load_job_config(config_file: str | None, schema_file: str | None
                     ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    defaults = load_mapping(config_file, "--config") if config_file else None
    schema = load_mapping(schema_file, "--schema") if schema_file else None
    return defaults, schema


def _report_version(result: Any) -> None:
    v = result.version
    if result.created:
        click.echo(f"created job {v.project}/{v.ref} (aliases: {', '.join(v.aliases)})")
    else:
        click.echo(f"job {v.project}/{v.ref} already has this content "
                   f"(aliases: {', '.join(v.aliases)})")


@job_create.command("code")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--entrypoint", "-e", required=True, help='Command to run, e.g. "python train.py".')
@click.option("--base-image", default=None, help="Base image for container builds.")
@_job_options
@run_with_service
async def job_create_code(service: LaunchService, path: str, entrypoint: str,
                          base_image: str | None, name: str | None, project: str | None,
                          aliases: tuple[str, ...], config_file: str | None,
                          schema_file: str | None) -> None:
    defaults, schema = _load_job_config(config_file, schema_file)
    result = await service.create_code_job(
        path, entrypoint, name=name, project=project, aliases=aliases,
        config_defaults=defaults, input_schema=schema, base_image=base_image,
    )
    _report_version(result)


@job_create.command("git")
@click.argument("url")
@click.option("--entrypoint", "-e", required=True, help='Command to run, e.g. "python train.py".')
@click.option("--ref", default=None, help="Branch, tag or commit (default: the remote's HEAD).")
@click.option("--base-image", default=None, help="Base image for container builds.")
@_job_options
@run_with_service
async def job_create_git(service: LaunchService, url: str, entrypoint: str, ref: str | None,
                         base_image: str | None, name: str | None, project: str | None,
                         aliases: tuple[str, ...], config_file: str | None,
                         schema_file: str | None) -> None:
    defaults, schema = _load_job_config(config_file, schema_file)
    result = await service.create_git_job(
        url, entrypoint, ref=ref, name=name, project=project, aliases=aliases,
        config_defaults=defaults, input_schema=schema, base_image=base_image,
    )
    _report_version(result)


@job_create.command("image")
@click.argument("image")
@click.option("--entrypoint", "-e", default=None, help="Command (default: the image's own).")
@_job_options
@run_with_service
async def job_create_image(service: LaunchService, image: str, entrypoint: str | None,
                           name: str | None, project: str | None, aliases: tuple[str, ...],
                           config_file: str | None, schema_file: str | None) -> None:
    defaults, schema = _load_job_config(config_file, schema_file)
    result = await service.create_image_job(
        image, entrypoint=entrypoint, name=name, project=project, aliases=aliases,
        config_defaults=defaults, input_schema=schema,
    )
    _report_version(result)


@job.command("list")
@json_option
@project_option
@run_with_service
async def job_list(service: LaunchService, as_json: bool, project: str | None) -> None:
    jobs = await service.list_jobs(project)
    if as_json:
        emit_json([{"name": j.name, "project": j.project, "kind": j.kind,
                    "versions": len(j.versions), "aliases": j.aliases} for j in jobs])
        return
    table(["name", "kind", "latest", "versions", "aliases"],
          [[j.name, j.kind, f"v{j.aliases['latest']}", len(j.versions),
            ", ".join(f"{a}=v{v}" for a, v in sorted(j.aliases.items()))] for j in jobs])


@job.command("describe")
@click.argument("job_ref", metavar="JOB")
@json_option
@project_option
@run_with_service
async def job_describe(service: LaunchService, job_ref: str, as_json: bool,
                       project: str | None) -> None:
    j = await service.get_job(job_ref, project=project)
    if as_json:
        emit_json(j)
        return
    click.echo(f"job {j.project}/{j.name} ({j.kind})")
    for v in j.versions:
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        click.echo(f"  v{v.version}{aliases}  {' '.join(v.entrypoint) or '(image default)'}  "
                   f"digest {v.digest[:12]}  {ago(v.created_at)} ago")
    latest = j.latest
    click.echo("config defaults (latest):")
    click.echo(json.dumps(latest.config_defaults, indent=2, sort_keys=True))


@job.command("alias")
@click.argument("job_ref", metavar="JOB[:ALIAS|:vN]")
@click.argument("alias")
@project_option
@run_with_service
async def job_alias(service: LaunchService, job_ref: str, alias: str, project: str | None) -> None:
    """Point ALIAS at a version of a job."""
    v = await service.set_alias(job_ref, alias, project=project)
    click.echo(f"{alias} -> {v.ref}")


# ---------------------------------------------------------------------- launch


@cli.command()
@click.option("--job", "-j", "job_ref", required=True, metavar="JOB[:ALIAS|:vN]")
@click.option("--queue", "-q", "queue_name", required=True)
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False),
              help="Config overrides (JSON, YAML or TOML).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A config override; dotted keys nest (repeatable).")
@click.option("--resource-args", "-R", "resource_file", type=click.Path(dir_okay=False),
              help="Resource arg overrides (JSON, YAML or TOML), if the queue allows them.")
@click.option("--var", "-v", "variables", multiple=True, metavar="NAME=VALUE",
              help="A queue template variable (repeatable).")
@click.option("--priority", "-P", default="medium",
              type=click.Choice([p.value for p in Priority]))
@json_option
@project_option
@run_with_service
async def launch(service: LaunchService, job_ref: str, queue_name: str, config_file: str | None,
                 sets: tuple[str, ...], resource_file: str | None, variables: tuple[str, ...],
                 priority: str, as_json: bool, project: str | None) -> None:
    """Enqueue a job version on a queue."""
    from launch_tui.core.configfile import deep_merge

    config = load_mapping(config_file, "--config") if config_file else {}
    config = deep_merge(config, parse_assignments(sets, "--set"))
    resource_args = load_mapping(resource_file, "--resource-args") if resource_file else {}
    values = {}
    for pair in variables:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ValidationError(f"--var: '{pair}' must have the form name=value.")
        values[name.strip()] = raw
    item = await service.enqueue(
        job_ref, queue_name, project=project, config=config, resource_args=resource_args,
        template_values=values, priority=priority,
    )
    item = await service.placed(item)
    if as_json:
        emit_json(item)
    else:
        click.echo(enqueued_line(item))


def enqueued_line(item: QueueItem) -> str:
    where = (f"at position {item.position:,}" if item.position is not None
             else f"({item.state} already)")
    return f"enqueued item #{item.id} ({item.job_ref}) on {item.queue} {where} ({item.priority})"


# ---------------------------------------------------------------------- items, runs, logs


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """`--since` as an epoch time; bad input is one sentence and exit 1, before the
    store is opened."""
    return None if value is None else guard(lambda: parse_since(value))


since_option = click.option("--since", default=None, metavar="WHEN", callback=_since,
                            help="Only those created since WHEN: a duration back from now "
                                 "(30m, 2h, 3d) or an ISO time (2024-05-01T12:00).")


@cli.command()
@click.option("--queue", "-q", "queue_name", default=None)
@click.option("--all", "all_states", is_flag=True,
              help="Include the history: items done with, by outcome (finished, failed, "
                   "stopped, cancelled, …), after the waiting, newest first.")
@click.option("--limit", "-n", default=0, type=click.IntRange(min=0),
              help="At most N items (0, the default: all).")
@since_option
@json_option
@project_option
@run_with_service
async def items(service: LaunchService, queue_name: str | None, all_states: bool, limit: int,
                since: float | None, as_json: bool, project: str | None) -> None:
    """Queue items in the order they will be taken."""
    states = None if all_states else (ItemState.PENDING, ItemState.LEASED)
    pages = service.item_pages(queue_name, project=project, states=states, limit=limit or None,
                               since=since)
    if as_json:
        await write_json_array(pages)  # page by page, never the whole list
        return
    found = [i async for page in pages for i in page]
    table(["pos", "id", "queue", "job", "priority", "outcome", "age", "took", "why"],
          [[i.position or "-", f"#{i.id}", i.queue, i.job_ref, i.priority, i.outcome or i.state,
            ago(i.created_at), _took(i.duration_s), _line(i.why)]
           for i in found])


@cli.command()
@click.option("--queue", "-q", "queue_name", default=None)
@click.option("--state", "-s", "states", multiple=True,
              type=click.Choice([s.value for s in RunState]))
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(min=0),
              help="At most N runs (0: all).")
@since_option
@json_option
@project_option
@run_with_service
async def runs(service: LaunchService, queue_name: str | None, states: tuple[str, ...],
               limit: int, since: float | None, as_json: bool, project: str | None) -> None:
    """Runs, newest first."""
    pages = service.run_pages(queue_name, project=project, states=states or None,
                              limit=limit or None, since=since)
    if as_json:
        await write_json_array(pages)  # page by page, never the whole list
        return
    found = [r async for page in pages for r in page]
    table(["run", "item", "job", "queue", "state", "agent", "exit", "age", "reason"],
          [[r.id, f"#{r.item_id}", r.job_ref, r.queue, r.state, r.agent or "-",
            "-" if r.exit_code is None else r.exit_code, ago(r.created_at),
            _line(explain.run_why(r, 0.0))]
           for r in found])
    if limit and len(found) == limit:
        click.echo(f"(the newest {limit}; --limit N or 0 for more)", err=True)


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its time.")
@click.option("--full", is_flag=True,
              help="Every line the run printed, read from where its backend keeps them "
                   "(when the stored log says lines were not stored).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON array of the lines (ts, stream, source, text, …).")
@run_with_service
async def logs(service: LaunchService, run_id: str, follow: bool, timestamps: bool,
               full: bool, as_json: bool) -> None:
    """Print a run's logs. A line from one of a run's several sources (a pod) is
    shown as `[source] text`."""
    await service.get_run(run_id)  # unknown run -> clear error
    pages = (_full_pages(service, run_id) if full
             else _log_pages(service, run_id, follow))
    if as_json:
        await write_json_array(pages)  # page by page, as they are read
        return
    async for page in pages:
        for line in page:
            click.echo(_log_text(line, timestamps))


def _log_text(line: Any, timestamps: bool) -> str:
    """`[HH:MM:SS ][[source] ][[stream] ]text` of a stored LogLine or a backend's LogChunk."""
    prefix = time.strftime("%H:%M:%S ", time.localtime(line.ts)) if timestamps else ""
    source = f"[{line.source}] " if line.source else ""
    stream = "" if line.stream == "stdout" else f"[{line.stream}] "
    return f"{prefix}{source}{stream}{line.text}"


async def _full_pages(service: LaunchService, run_id: str,
                      size: int = 2000) -> AsyncIterator[list[Any]]:
    page: list[Any] = []
    async for chunk in service.full_output(run_id):
        page.append(chunk)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


async def _log_pages(service: LaunchService, run_id: str, follow: bool
                     ) -> AsyncIterator[list[Any]]:
    """The run's stored lines a page at a time; with `follow`, then the lines stored
    after, as the change feed announces them, until the run ends (said on stderr)."""
    # Where the change feed stands before the first read: whatever is written after
    # that read is announced after this point, so following misses nothing.
    seq = await service.last_event_seq() if follow else 0
    last = 0
    async for page in _stored_pages(service, run_id, last):
        last = page[-1].id
        yield page
    if not follow:
        return
    run = await service.get_run(run_id)
    if run.state not in TERMINAL_RUN_STATES:
        # Woken by the feed (LISTEN/NOTIFY or the SQLite file watch), never a fixed poll.
        async for ev in service.subscribe(after=seq):
            if getattr(ev, "run_id", None) != run_id:
                continue
            if isinstance(ev, RunLogAppended):
                async for page in _stored_pages(service, run_id, last):
                    last = page[-1].id
                    yield page
            elif isinstance(ev, RunStateChanged) and RunState(ev.state) in TERMINAL_RUN_STATES:
                break
        run = await service.get_run(run_id)
    # Lines stored between the last read and the final state.
    async for page in _stored_pages(service, run_id, last):
        yield page
    click.echo(f"-- run {run.id} {run.state}"
               + (f" (exit code {run.exit_code})" if run.exit_code is not None else ""),
               err=True)


async def _stored_pages(service: LaunchService, run_id: str, after: int
                        ) -> AsyncIterator[list[Any]]:
    """The run's stored lines after line id `after`, a page at a time."""
    while True:
        batch = await service.run_logs(run_id, after=after, limit=2000)
        if batch:
            yield batch
            after = batch[-1].id
        if len(batch) < 2000:
            return


@cli.command()
@click.argument("targets", metavar="RUN_OR_ITEM...", nargs=-1, required=True)
@run_with_service
async def cancel(service: LaunchService, targets: tuple[str, ...]) -> None:
    """Cancel pending items (#ID or ID) or stop runs; each on its own, so one that an
    agent took meanwhile is reported and the others still go. Exit 1 if any failed."""
    if len(targets) == 1:
        click.echo(await service.cancel(targets[0]))
        return
    failed = 0
    for _target, done, what in await service.cancel_many(list(targets)):
        if done:
            click.echo(what)
        else:
            failed += 1
            click.echo(f"launch-tui: error: {what}", err=True)
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("target", metavar="RUN_OR_ITEM")
@click.option("--priority", "-P", default=None, type=click.Choice([p.value for p in Priority]))
@run_with_service
async def requeue(service: LaunchService, target: str, priority: str | None) -> None:
    """Enqueue again what a run or item ran, with the same overrides."""
    item = await service.placed(await service.requeue(target, priority=priority))
    click.echo(enqueued_line(item))


# ---------------------------------------------------------------------- agent


@cli.command()
@click.option("--queue", "-q", "queues", multiple=True, required=True, help="Queue (repeatable).")
@click.option("--max-jobs", "-j", default=1, type=click.IntRange(min=1),
              help="Runs at the same time.")
@click.option("--name", default=None, help="Agent name (default: host and queues; stable, so a "
                                             "restarted agent re-attaches its runs).")
@click.option("--poll-interval", default=None, type=click.FloatRange(min=0.05),
              help="Seconds between polls when no change is signalled.")
@click.option("--no-events", is_flag=True, help="Only poll; ignore the change feed.")
@project_option
@run_with_service
async def agent(service: LaunchService, queues: tuple[str, ...], max_jobs: int, name: str | None,
                poll_interval: float | None, no_events: bool, project: str | None) -> None:
    """Run an agent in the foreground until interrupted (Ctrl-C, SIGTERM, or SIGHUP
    unless it runs under nohup); its runs keep going."""
    import logging

    from launch_tui.core.agent import LaunchAgent
    from launch_tui.core.store.writelock import stop_between_transactions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    runner = LaunchAgent(service, list(queues), name=name, project=project, max_jobs=max_jobs,
                         poll_interval_s=poll_interval, event_driven=not no_events)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A hang-up (the SSH session ended) stops the agent cleanly, freeing its name;
        # under nohup SIGHUP stays ignored, as the user asked.
        if sig != signal.SIGHUP or signal.getsignal(sig) != signal.SIG_IGN:
            loop.add_signal_handler(sig, stop.set)
    # Ctrl-Z: stopped inside a write transaction, the agent would stop every writer
    # of the store with it (SQLite's lock is a file lock); it stops between them.
    loop.add_signal_handler(signal.SIGTSTP, stop_between_transactions)
    await runner.start()
    signalled = asyncio.create_task(stop.wait())
    ended = asyncio.create_task(runner.wait())  # raises AgentFailed if it stopped itself
    await asyncio.wait({signalled, ended}, return_when=asyncio.FIRST_COMPLETED)
    if not ended.done():
        await runner.stop()
    signalled.cancel()
    await ended


# ---------------------------------------------------------------------- retention


@cli.command()
@click.option("--events-days", type=float, default=None, metavar="DAYS",
              help="Keep events this long (default: retention.events_days in settings).")
@click.option("--logs-days", type=float, default=None, metavar="DAYS",
              help="Keep the log lines of ended runs this long (default: retention.logs_days).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
@run_with_service
async def gc(service: LaunchService, events_days: float | None, logs_days: float | None,
             dry_run: bool, as_json: bool) -> None:
    """Delete old history now: events, output of runs that ended long ago, gone agents.

    Agents do this in the background every few minutes (retention in settings.toml);
    this runs it by hand, to the end.
    """
    for flag, days in (("--events-days", events_days), ("--logs-days", logs_days)):
        if days is not None and not days >= 0:
            raise ValidationError(f"{flag}: must be a number of days, 0 or more (got {days:g}).")
    report = await service.prune(events_days=events_days, logs_days=logs_days,
                                 dry_run=dry_run, budget_s=None)
    if as_json:
        emit_json({**to_jsonable(report), "tables": report.tables()})
        return
    table(["table", "would delete" if dry_run else "deleted"],
          [[name, f"{n:,}"] for name, n in report.tables().items()])
    if report.notices:
        click.echo(f"(events include {report.notices:,} heartbeats and output notices)")
    click.echo(f"{'counted' if dry_run else 'done'} in {report.seconds:.2f}s")


# Registers `queue hold|resume`, `item …` and `describe` on the groups above.
from launch_tui.tui import cli_surgery  # noqa: E402,F401


def main() -> None:
    cli(prog_name="launch-tui")


if __name__ == "__main__":
    # Run as `python -m launch_tui.tui.cli`: this file is then `__main__`, and the
    # commands cli_surgery registers went to the module of the real name; use it.
    from launch_tui.tui.cli import main as _main

    _main()

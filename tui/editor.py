"""Editing a job's config defaults or a queue's config as TOML in $EDITOR.

The app suspends, the editor owns the terminal, and what comes back is parsed
and checked by the service. A broken edit reopens the editor with the error as
a TOML comment at the top and the user's text below it, so nothing is lost.
Emptying the file cancels. The event loop keeps running meanwhile (an agent in
the app keeps working); the app only stops drawing.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import tempfile
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w
from textual.app import SuspendNotSupported

from launch_tui.core.errors import LaunchError

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp

# Lines starting with this are our error notes; they are dropped when reading back.
ERROR_MARK = "# ! "


class EditorFailed(LaunchError):
    """The editor could not be started or exited with an error."""


def editor_command() -> list[str]:
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def strip_notes(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(ERROR_MARK)
    )


def with_error(error: str, body: str) -> str:
    note = [f"{ERROR_MARK}{line}" for line in error.splitlines() or [error]]
    note.append(f"{ERROR_MARK}Fix it and save again; empty the file to cancel.")
    return "\n".join(note) + "\n" + body


_AT_LINE = re.compile(r"\bline (\d+)")


def toml_error(exc: tomllib.TOMLDecodeError) -> str:
    """The parser's message with its line number counted in the file the user sees
    next: `body` there sits under the note, which is this message plus one line."""
    message = f"not valid TOML: {exc}"
    shift = len(message.splitlines()) + 1
    return _AT_LINE.sub(lambda m: f"line {int(m.group(1)) + shift}", message)


async def run_editor(app: LaunchApp, text: str) -> str:
    """Open `text` in the user's editor and return what they saved."""
    fd, name = tempfile.mkstemp(prefix="launch-tui-", suffix=".toml")
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        command = [*editor_command(), str(path)]
        try:
            # Nothing is drawn while the editor owns the terminal; the loop keeps going.
            with app.batch_update(), app.suspend():
                code = await _wait(command, interactive=True)
        except SuspendNotSupported:
            # Headless (tests, pipes): no terminal to hand over; run it detached.
            code = await _wait(command, interactive=False)
        if code != 0:
            raise EditorFailed(
                f"editor: {' '.join(command[:-1])} exited with status {code}; nothing changed."
            )
        return path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)


async def _wait(command: list[str], *, interactive: bool) -> int:
    try:
        if interactive:
            process = await asyncio.create_subprocess_exec(*command)
        else:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
    except OSError as exc:
        raise EditorFailed(
            f"editor: cannot start '{command[0]}' ({exc.strerror}); set $EDITOR."
        ) from exc
    return await process.wait()


async def edit_toml(
    app: LaunchApp,
    header: str,
    data: dict[str, Any],
    apply: Callable[[dict[str, Any]], Awaitable[str]],
) -> str | None:
    """Round trip `data` through the editor until `apply` accepts it; its message, or None."""
    try:
        body = header + tomli_w.dumps(data)
    except TypeError as exc:
        app.notify(f"This config cannot be written as TOML ({exc}); use the form.",
                   severity="error")
        return None
    original = body
    text = body
    while True:
        try:
            edited = await run_editor(app, text)
        except LaunchError as exc:
            app.notify(str(exc), severity="error", title="Editor")
            return None
        body = strip_notes(edited)
        if not body.strip():
            return "Empty file: nothing changed."
        if body == original:
            return "No changes."
        try:
            parsed = tomllib.loads(body)
            return await apply(parsed)
        except tomllib.TOMLDecodeError as exc:
            text = with_error(toml_error(exc), body)
        except LaunchError as exc:
            text = with_error(str(exc), body)


async def edit_job_config(app: LaunchApp, job: str) -> str | None:
    service = app.service
    model = app.model
    if service is None or model is None:
        return None
    version = await app.call(service.job_version(f"{job}:latest", project=model.project))
    if version is None:
        return None
    header = (
        f"# Config defaults of {version.ref}. Saving makes a new version of '{job}'.\n"
        "# Empty the file to cancel.\n\n"
    )

    async def apply(data: dict[str, Any]) -> str:
        result = await service.update_job_config(version.ref, data, project=model.project)
        if not result.created:
            return f"{job}: same as v{result.version.version}; no new version."
        return f"{job}: v{result.version.version} created (latest)."

    return await edit_toml(app, header, version.config_defaults, apply)


async def edit_queue_config(app: LaunchApp, queue: str) -> str | None:
    service = app.service
    model = app.model
    if service is None or model is None:
        return None
    current = await app.call(service.get_queue(queue, project=model.project))
    if current is None:
        return None
    header = (
        f"# Queue '{queue}'. `resource` is the target resource; the rest is its config.\n"
        "# Empty the file to cancel.\n\n"
    )
    data = {"resource": current.resource, **current.config.to_dict()}

    async def apply(edited: dict[str, Any]) -> str:
        resource = edited.pop("resource", current.resource)
        if not isinstance(resource, str):
            raise LaunchError("resource: must be the name of a target resource.")
        await service.update_queue(queue, edited, resource=resource, project=model.project)
        return f"Queue {queue} updated."

    return await edit_toml(app, header, data, apply)

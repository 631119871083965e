"""Check out a git job's source at a ref, safely and without blocking the event loop.

Used by every builder that needs a git job's files (local-process venvs, Docker
builds). Git runs as an asyncio subprocess with the transport locked down:
job URLs come from users, so `file://`, plain local paths and `ext::` (which
runs an arbitrary command) are refused, also inside submodules, and git never
waits for a password on a terminal that is not there.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from launch_tui.core import jobenv
from launch_tui.core.backend import BuildLog
from launch_tui.core.errors import BuildError

# Only network transports. GIT_ALLOW_PROTOCOL is read by every git process,
# including the clones `git submodule` spawns, so it also guards submodule URLs
# (which git strips most `-c` settings from).
_ALLOWED_PROTOCOLS = "https:ssh:git:http"
_SAFE_CONFIG = (
    "-c",
    "protocol.file.allow=never",
    "-c",
    "protocol.ext.allow=never",
)

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def redact(text: str) -> str:
    """Hide `user:token@` in URLs so credentials never reach logs or errors."""
    return _USERINFO.sub("***@", text)


def _git_env() -> dict[str, str]:
    # Git has no business with the store's URL or database password (core.jobenv).
    env = jobenv.without_control_plane(os.environ)
    # A parent repository's variables (e.g. when run from a git hook) must not
    # redirect our clone.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_PARAMETERS"):
        env.pop(var, None)
    env.update(
        GIT_ALLOW_PROTOCOL=_ALLOWED_PROTOCOLS,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",  # answers an empty password: fail fast instead of hanging
        SSH_ASKPASS="true",
        GIT_SSH_COMMAND="ssh -o BatchMode=yes",
        LC_ALL="C",  # stable English messages for the errors we extract
    )
    return env


def _last_error(output: str) -> str:
    """The most telling line of git's output: the last fatal/error line, else the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if low.startswith(("fatal:", "error:")):
            return ln.split(":", 1)[1].strip()
    return lines[-1] if lines else "no output"


async def _git(args: list[str], cwd: Path | None, log: BuildLog | None) -> tuple[int, str]:
    """Run one git command; stream its merged output to `log`; return (code, output)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *_SAFE_CONFIG,
        *args,
        cwd=cwd,
        env=_git_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async for raw in proc.stdout:
            line = redact(raw.decode("utf-8", "replace").rstrip())
            lines.append(line)
            if log is not None and line:
                await log(f"git: {line}")
        code = await proc.wait()
    except BaseException:
        # Cancelled (or log raised): do not leave git running behind us.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return code, "\n".join(lines)


async def _resolve(dest: Path, ref: str) -> str | None:
    """The commit `ref` names in the fresh clone: a branch, a tag, or a (short) sha."""
    candidates = [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}"]
    if _SHA.match(ref):
        candidates.append(ref)
    for cand in candidates:
        code, out = await _git(
            ["rev-parse", "--verify", "--quiet", f"{cand}^{{commit}}"], dest, None
        )
        if code == 0 and out.strip():
            return out.strip().splitlines()[-1]
    return None


async def checkout(url: str, ref: str | None, dest: Path, log: BuildLog | None = None) -> str:
    """Clone `url` into `dest` (absent or empty), check out `ref`, init submodules.

    `ref` may be a branch, a tag or a commit sha; None means the remote's HEAD.
    Returns the full sha of the checked-out commit. Raises BuildError with one
    sentence naming what failed.
    """
    shown = redact(url)
    if url.startswith("-") or (ref is not None and ref.startswith("-")):
        # Would be read as a git option.
        raise BuildError(f"git: refusing URL '{shown}' or ref '{ref}' that starts with '-'.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if log is not None:
        await log(f"git: cloning {shown}" + (f" at {ref}" if ref else ""))

    # A full clone (not shallow): a plain git server only serves advertised
    # refs, so an arbitrary commit sha is reachable only through history.
    clone = ["clone", "--quiet"]
    if ref is not None:
        clone.append("--no-checkout")
    code, out = await _git([*clone, "--", url, str(dest)], None, log)
    if code != 0:
        raise BuildError(f"git: cannot clone '{shown}': {_last_error(out)}.")

    if ref is not None:
        sha = await _resolve(dest, ref)
        if sha is None:
            raise BuildError(
                f"git: ref '{ref}' was not found in '{shown}' (not a branch, tag or commit)."
            )
        code, out = await _git(["checkout", "--quiet", "--detach", sha], dest, log)
        if code != 0:
            raise BuildError(f"git: cannot check out '{ref}' of '{shown}': {_last_error(out)}.")

    code, out = await _git(["submodule", "update", "--init", "--recursive"], dest, log)
    if code != 0:
        raise BuildError(f"git: cannot fetch the submodules of '{shown}': {_last_error(out)}.")

    code, out = await _git(["rev-parse", "HEAD"], dest, None)
    if code != 0:
        raise BuildError(f"git: '{shown}' has no commit to check out: {_last_error(out)}.")
    commit = out.strip().splitlines()[-1]
    if log is not None:
        await log(f"git: checked out {commit}")
    return commit

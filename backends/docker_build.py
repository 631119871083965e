"""Turn a job version into a Docker image.

code jobs: the content-addressed snapshot; git jobs: a checkout at the job's
ref; image jobs: the image itself, pulled when missing. Builds use the classic
builder through the Docker API, with a generated Dockerfile whose requirements
layer comes before the code, so a code-only change rebuilds in seconds.

The docker SDK is imported inside functions only: core imports this module's
path through the registry on machines without the `docker` extra.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, TypeVar

from launch_tui.core import sdk
from launch_tui.core.backend import BackendContext, BuildLog, BuildResult
from launch_tui.core.errors import BuildError, LaunchError
from launch_tui.core.model import JobKind, RunSpec

if TYPE_CHECKING:
    import docker

T = TypeVar("T")

VENV = "/opt/venv"
APP = "/app"
SDK_DIR = "/opt/launch-tui"  # the in-job helper, importable as `launch_tui_sdk`
SDK_CONTEXT_PATH = "launch/launch_tui_sdk.py"
JOB_UID = 1000
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NAME_BAD = re.compile(r"[^a-z0-9._-]+")
_NAME_SEPS = re.compile(r"[._-]{2,}")
# The classic builder paints a step's stderr red; logs and messages want plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ---------------------------------------------------------------- shared helpers


def connect(error: type[LaunchError]) -> docker.DockerClient:
    """A client for the daemon named by DOCKER_HOST. Blocking: call it in a thread."""
    import docker

    try:
        # version="auto" asks the daemon, so an unreachable daemon fails here, clearly.
        return docker.from_env(version="auto")
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise error(
            f"docker: cannot reach the Docker daemon at {host} ({exc}); is it running?"
        ) from exc


async def iterate_in_thread(
    open_stream: Callable[[], Iterable[T]], maxsize: int = 256, name: str = "docker-stream"
) -> AsyncIterator[T]:
    """Items of a blocking stream, read by a dedicated thread, without blocking the loop.

    At most `maxsize` items wait between the thread and the consumer, so a slow
    consumer holds the reader back instead of growing memory. A dedicated
    thread (not the default executor) because a followed log may block for
    hours and must not starve `asyncio.to_thread` callers. When the consumer
    stops early, the stream's `close()` (if any, e.g. docker's
    CancellableStream) is called to unblock the reader.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    slots = threading.Semaphore(maxsize)
    stop = threading.Event()
    opened: list[Any] = []

    def put(msg: tuple[str, Any]) -> bool:
        while not slots.acquire(timeout=0.2):
            if stop.is_set():
                return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, msg)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()
            return False
        return True

    def work() -> None:
        try:
            stream = open_stream()
            opened.append(stream)
            for item in stream:
                if stop.is_set() or not put(("item", item)):
                    return
        except BaseException as exc:
            if not stop.is_set():
                put(("error", exc))
            return
        put(("end", None))

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            slots.release()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        for stream in opened:
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing a half-dead socket may fail; it is closed either way
                    pass


class Scrubber:
    """Replaces registry credentials (and their base64 forms) in text meant for people."""

    def __init__(self, *secrets: str | None) -> None:
        found = {s for s in secrets if s}
        user_pass = [s for s in secrets if s]
        if len(user_pass) == 2:
            found.add(":".join(user_pass))
        for s in list(found):
            found.add(base64.b64encode(s.encode()).decode().rstrip("="))
        # Longest first, so "user:pass" is hidden before "user".
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


def sanitise_name(job: str) -> str:
    """A job name as a Docker repository path component (lowercase, [a-z0-9._-])."""
    name = _NAME_SEPS.sub("-", _NAME_BAD.sub("-", job.lower())).strip("._-")
    return name[:100] or "job"


# ---------------------------------------------------------------- build context


def _read_dockerignore(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (ln.strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _inside(root: Path, rel: str) -> Path | None:
    """`root/rel` if it exists and stays inside root (no `..` or symlink escapes)."""
    try:
        path = (root / rel).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.exists() or not path.is_relative_to(root.resolve()):
        return None
    return path


def local_references(root: Path, requirements: str) -> list[str]:
    """Files and directories in `root` a requirements file points at.

    `-r other.txt`, `-c constraints.txt`, `--find-links ./wheels`, `./pkgs/mine`
    or `pkgs/mine-1.0-py3-none-any.whl`: they must be in the dependency layer
    too, or pip cannot see them there. Returned relative to root, sorted, the
    requirements file included. `.` (the project itself) is left out: copying
    all code into that layer would defeat its cache.
    """
    root = root.resolve()
    found: set[str] = set()
    todo = [requirements]
    while todo:
        rel = todo.pop()
        path = _inside(root, rel)
        if path is None or not path.is_file() or rel in found:
            continue
        found.add(rel)
        base = path.parent
        for raw in path.read_text(errors="replace").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            includes = line.startswith(("-r", "-c", "--requirement", "--constraint"))
            for token in re.split(r"[\s=]+", line):
                if not token or token.startswith("-") or "://" in token:
                    continue
                for candidate in (base / token, root / token):
                    try:
                        cand = candidate.resolve()
                    except (OSError, RuntimeError):
                        continue
                    if cand == root or not cand.exists() or not cand.is_relative_to(root):
                        continue
                    ref = cand.relative_to(root).as_posix()
                    if includes and cand.is_file():
                        todo.append(ref)
                    else:
                        found.add(ref)
    # A directory already covers what lies below it.
    ordered = sorted(found)
    return [p for p in ordered if not any(p.startswith(q + "/") for q in ordered if q != p)]


def pyproject_dependencies(root: Path) -> list[str]:
    """[project].dependencies of root/pyproject.toml (the project itself runs from /app)."""
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BuildError("environment.pyproject: the job has no pyproject.toml.") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(
            f"environment.pyproject: pyproject.toml is not valid TOML: {exc}."
        ) from exc
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError("environment.pyproject: [project].dependencies must be a list of strings.")
    return deps


def _json(*parts: str) -> str:
    return json.dumps(list(parts))


def generate_dockerfile(
    base_image: str,
    requirements: str | None,
    req_refs: list[str],
    pyproject_deps: bool,
    entrypoint: tuple[str, ...],
    labels: dict[str, str] | None = None,
    sdk_digest: str | None = None,
) -> str:
    """The Dockerfile for a code or git job. The context holds code/ and launch/.

    Layers, cheapest to change last: base + venv + user (shared by every job
    on the same base), dependencies (only the files they need), then the code.
    With `sdk_digest`, the in-job helper (launch/launch_tui_sdk.py in the
    context) goes to SDK_DIR, which is on PYTHONPATH; its digest is written
    into the Dockerfile so a changed helper makes a new image tag.
    """
    pythonpath = f"{APP}:{APP}/src" + (f":{SDK_DIR}" if sdk_digest else "")
    lines = [
        f"FROM {base_image}",
        # Debian's python is "externally managed": install into a venv instead.
        f"ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 "
        f"PIP_NO_INPUT=1 VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH "
        # src/ layouts import without installing the project.
        f"HOME=/home/job PYTHONPATH={pythonpath}",
        f"RUN python3 -m venv {VENV} "
        f"&& (useradd --create-home --uid {JOB_UID} --shell /bin/sh job "
        f"|| adduser -D -u {JOB_UID} job || true) "
        f"&& mkdir -p {APP} /home/job && chown {JOB_UID}:{JOB_UID} {APP} /home/job",
        f"WORKDIR {APP}",
    ]
    installs: list[str] = []
    if requirements is not None:
        for ref in req_refs:
            lines.append(f"COPY {_json('code/' + ref, f'{APP}/{ref}')}")
        installs.append(f"-r {requirements}")
    if pyproject_deps:
        lines.append(f"COPY {_json('launch/pyproject-requirements.txt', '/opt/launch/')}")
        installs.append("-r /opt/launch/pyproject-requirements.txt")
    if installs:
        lines.append(f"RUN pip install {' '.join(installs)}")
    if sdk_digest:
        lines.append(f"# in-job helper launch_tui_sdk, sha256 {sdk_digest}")
        lines.append(f"COPY {_json(SDK_CONTEXT_PATH, f'{SDK_DIR}/launch_tui_sdk.py')}")
    lines += [
        f"COPY --chown={JOB_UID}:{JOB_UID} code/ {APP}/",
        f"USER {JOB_UID}",
    ]
    if entrypoint:
        # The backend passes the entrypoint as the command; this only makes
        # `docker run IMAGE` do the same thing by hand.
        lines.append(f"CMD {_json(*entrypoint)}")
    if labels:
        # One instruction: each label passed through the API would be a step of its own.
        lines.append(
            "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items())
        )
    return "\n".join(lines) + "\n"


def _write_context(
    fileobj: IO[bytes],
    root: Path,
    prefix: str,
    extra: dict[str, str],
    dockerfile: str | None,
    ignore: tuple[str, ...] = (),
) -> None:
    """Tar `root` (minus .dockerignore and `ignore`) under `prefix`, plus generated files."""
    from docker.utils.build import exclude_paths

    patterns = [*_read_dockerignore(root), *ignore]
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for rel in sorted(exclude_paths(str(root), patterns, dockerfile=dockerfile)):
            info = tar.gettarinfo(str(root / rel), arcname=f"{prefix}{rel}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(root / rel, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        for name, text in extra.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, fileobj=io.BytesIO(data))
    fileobj.seek(0)


# ---------------------------------------------------------------- the builder


class _Plan:
    """What to build: context root, Dockerfile text, how to pack, which network."""

    def __init__(
        self,
        root: Path,
        dockerfile: str,
        user_dockerfile: str | None,
        extra: dict[str, str],
        network: str,
    ) -> None:
        self.root = root
        self.dockerfile = dockerfile
        self.user_dockerfile = user_dockerfile  # path in root, or None when generated
        self.extra = extra
        self.network = network
        self.ignore: tuple[str, ...] = ()  # .dockerignore patterns added by the builder


class DockerBuilder:
    """Builds (or pulls) the image a Docker run starts from."""

    name = "docker"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._client: docker.DockerClient | None = None
        self._client_lock = asyncio.Lock()
        reg = ctx.settings.get("registry") or {}
        self._registry: dict[str, Any] = reg if isinstance(reg, dict) else {}
        password = self._registry.get("password")
        if not password and self._registry.get("password_env"):
            password = os.environ.get(str(self._registry["password_env"]))
        self._username: str | None = self._registry.get("username")
        self._password: str | None = password
        self.scrub = Scrubber(self._username, self._password)

    async def client(self) -> docker.DockerClient:
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(connect, BuildError)
            return self._client

    def _auth(self) -> dict[str, str] | None:
        if self._username and self._password:
            return {"username": self._username, "password": self._password}
        return None

    def base_image(self, spec: RunSpec) -> str:
        return (
            spec.queue_config.get("base_image")
            or self.ctx.settings.get("base_image")
            or spec.environment.get("base_image")
            or f"python:{spec.environment.get('python') or '3.11'}-slim"
        )

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        if spec.kind is JobKind.IMAGE:
            return await self._ensure_image(spec, log)
        if spec.kind is JobKind.CODE:
            root = self.ctx.snapshot_dir(str(spec.source.get("snapshot", "")))
            if not spec.source.get("snapshot") or not root.is_dir():
                raise BuildError(f"code: the job's snapshot is missing from {root}.")
            return await self._build_from(spec, root, None, log)
        if spec.kind is JobKind.GIT:
            from launch_tui.backends.git_source import checkout

            build_root = self.ctx.work_dir / "docker-build"
            build_root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{spec.run_id}-", dir=build_root))
            try:
                dest = tmp / "src"
                commit = await checkout(spec.source["url"], spec.source.get("ref"), dest, log)
                # Keep .git (and any credentials in its remote URL) out of the image.
                return await self._build_from(spec, dest, commit, log, (".git", "**/.git"))
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
        raise BuildError(f"job: cannot build a job of kind '{spec.kind}' for docker.")

    # ---------------------------------------------------------------- image jobs

    async def _ensure_image(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        import docker

        ref = spec.source.get("image") or spec.image
        if not ref:
            raise BuildError("image: the job names no image.")
        client = await self.client()
        try:
            await asyncio.to_thread(client.api.inspect_image, ref)
            await log(f"image: {ref} is present locally")
            return BuildResult(image=ref, cached=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise BuildError(f"image: cannot inspect '{ref}': {self._reason(exc)}.") from exc
        await log(f"image: pulling {ref}")
        repo, tag = _split_ref(ref)
        auth = self._auth() if self._same_registry(ref) else None

        def open_pull() -> Iterable[dict[str, Any]]:
            return client.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=auth)

        try:
            await self._follow_status(open_pull, log, f"cannot pull '{ref}'")
        except BuildError:
            raise
        except docker.errors.DockerException as exc:
            raise BuildError(f"image: cannot pull '{ref}': {self._reason(exc)}.") from exc
        return BuildResult(image=ref, cached=False)

    def _same_registry(self, ref: str) -> bool:
        dest = str(self._registry.get("destination") or "")
        return bool(dest) and ref.split("/", 1)[0] == dest.split("/", 1)[0]

    async def _follow_status(
        self, open_stream: Callable[[], Iterable[dict[str, Any]]], log: BuildLog, what: str
    ) -> None:
        """Log a pull/push stream's distinct status lines; raise on its error line."""
        last = None
        async for msg in iterate_in_thread(open_stream, name="docker-pull-push"):
            if "error" in msg:
                detail = msg.get("errorDetail", {}).get("message") or msg["error"]
                raise BuildError(f"image: {what}: {self.scrub(str(detail)).rstrip('.')}.")
            status = msg.get("status")
            # Per-layer progress ("Downloading 12MB/80MB") would flood the log.
            if status and "progress" not in msg and status != last:
                last = status
                layer = f"{msg['id']}: " if msg.get("id") else ""
                await log(self.scrub(f"image: {layer}{status}"))

    def _reason(self, exc: Exception) -> str:
        explanation = getattr(exc, "explanation", None) or str(exc)
        return self.scrub(str(explanation)).rstrip(".")

    # ---------------------------------------------------------------- code and git jobs

    def _plan(self, spec: RunSpec, root: Path) -> _Plan:
        env = spec.environment
        base = self.base_image(spec)
        user_df = env.get("dockerfile")
        if user_df:
            path = _inside(root, str(user_df))
            if path is None or not path.is_file():
                raise BuildError(f"environment.dockerfile: '{user_df}' is not in the job's files.")
            # A hand-written Dockerfile may install anything: give it the network.
            return _Plan(root, path.read_text(), str(user_df), {}, "host")

        requirements = env.get("requirements")
        refs: list[str] = []
        if requirements:
            path = _inside(root, str(requirements))
            if path is None or not path.is_file():
                raise BuildError(
                    f"environment.requirements: '{requirements}' is not in the job's files."
                )
            requirements = path.relative_to(root.resolve()).as_posix()
            refs = local_references(root, requirements)
        else:
            requirements = None
        extra: dict[str, str] = {}
        deps = pyproject_dependencies(root) if env.get("pyproject") else []
        if deps:
            extra["launch/pyproject-requirements.txt"] = "\n".join(deps) + "\n"
        sdk_text = Path(sdk.__file__).read_text()
        extra[SDK_CONTEXT_PATH] = sdk_text
        text = generate_dockerfile(
            base, requirements, refs, bool(deps), spec.entrypoint, _labels(spec),
            sdk_digest=hashlib.sha256(sdk_text.encode()).hexdigest(),
        )
        extra["launch/Dockerfile"] = text
        # Network only when pip must fetch something; plain code builds stay offline.
        network = "host" if (requirements or deps) else "none"
        return _Plan(root, text, None, extra, network)

    def image_tag(self, spec: RunSpec, dockerfile: str, commit: str | None) -> str:
        h = hashlib.sha256()
        for part in (spec.job_digest, dockerfile, self.base_image(spec), commit or ""):
            h.update(part.encode())
            h.update(b"\0")
        return f"launch-tui/{sanitise_name(spec.job)}:{h.hexdigest()[:24]}"

    async def _build_from(
        self,
        spec: RunSpec,
        root: Path,
        commit: str | None,
        log: BuildLog,
        ignore: tuple[str, ...] = (),
    ) -> BuildResult:
        import docker

        plan = await asyncio.to_thread(self._plan, spec, root)
        plan.ignore = ignore
        tag = self.image_tag(spec, plan.dockerfile, commit)
        details: dict[str, Any] = {"local_image": tag, "base_image": self.base_image(spec)}
        client = await self.client()
        dest = self.destination(spec)
        if dest:
            remote = remote_ref(dest, tag)
            if await self._in_registry(client, remote):
                await log(f"build: {remote} is already in the registry; not building or "
                          "pushing it again")
                return BuildResult(image=remote, cached=True, commit=commit,
                                   details={**details, "pushed": False})
        try:
            await asyncio.to_thread(client.api.inspect_image, tag)
            cached = True
            await log(f"build: {tag} already built; reusing it")
        except docker.errors.ImageNotFound:
            cached = False
        if not cached:
            await self._run_build(client, spec, plan, tag, log)
        image = tag
        if self.destination(spec):
            image = await self._push(client, tag, self.destination(spec), log)
        return BuildResult(image=image, cached=cached, commit=commit, details=details)

    def destination(self, spec: RunSpec) -> str | None:
        """The registry repository built images are pushed to: the queue's
        `builder.destination`, else the agent's `registry.destination` setting."""
        builder = spec.queue_config.get("builder")
        dest = builder.get("destination") if isinstance(builder, dict) else None
        return str(dest or self._registry.get("destination") or "").rstrip("/") or None

    async def _in_registry(self, client: docker.DockerClient, remote: str) -> bool:
        """Whether the registry has `remote` already (then nothing is built or pushed)."""
        import docker

        try:
            await asyncio.to_thread(client.api.inspect_distribution, remote,
                                    auth_config=self._auth())
            return True
        except docker.errors.DockerException:
            # Not there (404, "manifest unknown"), no pull rights, or a registry that
            # does not answer: build and push as usual; the push says what is wrong.
            return False

    async def _run_build(
        self, client: docker.DockerClient, spec: RunSpec, plan: _Plan, tag: str, log: BuildLog
    ) -> None:
        import docker

        await log(f"build: {tag} from {self.base_image(spec)} (network {plan.network})")
        ctx_file = tempfile.TemporaryFile()
        prefix = "" if plan.user_dockerfile else "code/"
        try:
            await asyncio.to_thread(
                _write_context,
                ctx_file,
                plan.root,
                prefix,
                plan.extra,
                plan.user_dockerfile,
                plan.ignore,
            )
            # A generated Dockerfile carries its labels already.
            labels = _labels(spec) if plan.user_dockerfile else None

            def open_build() -> Iterator[dict[str, Any]]:
                return client.api.build(
                    fileobj=ctx_file,
                    custom_context=True,
                    dockerfile=plan.user_dockerfile or "launch/Dockerfile",
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    network_mode=plan.network,
                    labels=labels,
                    decode=True,
                    timeout=None,  # a quiet `pip install` may take long
                )

            await self._stream_build(open_build, log)
        except docker.errors.DockerException as exc:
            raise BuildError(f"build: docker refused the build: {self._reason(exc)}.") from exc
        finally:
            ctx_file.close()

    async def _stream_build(
        self, open_build: Callable[[], Iterable[dict[str, Any]]], log: BuildLog
    ) -> None:
        """Log the build line by line; on an error, name the step that failed."""
        step: str | None = None
        step_output: list[str] = []
        pending = ""
        async for msg in iterate_in_thread(open_build, name="docker-build"):
            if "stream" in msg:
                pending += str(msg["stream"])
                *lines, pending = pending.split("\n")
                for line in lines:
                    line = _ANSI.sub("", line).rstrip("\r")
                    if not line.strip():
                        continue
                    m = _STEP.match(line)
                    if m:
                        step = f"step {m[1]}/{m[2]} ({m[3]})"
                        step_output = []
                    else:
                        step_output = [*step_output[-30:], line]
                    await log(line)
            elif "error" in msg:
                if pending.strip():
                    pending = _ANSI.sub("", pending)
                    step_output.append(pending.strip())
                    await log(pending.rstrip())
                detail = msg.get("errorDetail", {}).get("message") or msg["error"]
                raise BuildError(_build_failure(step, str(detail), step_output))
        if pending.strip():
            await log(_ANSI.sub("", pending).rstrip())

    async def _push(self, client: docker.DockerClient, tag: str, dest: str, log: BuildLog
                    ) -> str:
        import docker

        remote = remote_ref(dest, tag)
        remote_repo, version = remote.rsplit(":", 1)
        await log(f"push: {remote}")
        auth = self._auth()
        try:
            await asyncio.to_thread(client.api.tag, tag, remote_repo, version)

            def open_push() -> Iterable[dict[str, Any]]:
                return client.api.push(
                    remote_repo, tag=version, stream=True, decode=True, auth_config=auth
                )

            await self._follow_status(open_push, log, f"cannot push '{remote}'")
        except docker.errors.DockerException as exc:
            raise BuildError(f"image: cannot push '{remote}': {self._reason(exc)}.") from exc
        return remote


def remote_ref(dest: str, tag: str) -> str:
    """`launch-tui/job:hash` pushed to `dest` (host/path): `host/path/job:hash`."""
    local_repo, version = tag.rsplit(":", 1)
    return f"{dest.rstrip('/')}/{local_repo.split('/', 1)[1]}:{version}"


def _labels(spec: RunSpec) -> dict[str, str]:
    return {
        "launch-tui.project": spec.project,
        "launch-tui.job": spec.job,
        "launch-tui.job_digest": spec.job_digest,
    }


def _split_ref(ref: str) -> tuple[str, str | None]:
    """'repo:tag' / 'host:5000/repo@sha256:…' -> (repo, tag or digest)."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = PurePosixPath(ref).name
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def _build_failure(step: str | None, error: str, output: list[str]) -> str:
    """One sentence: which step failed, docker's error, and the tool's own last error line."""
    error = error.strip().rstrip(".")
    hint = next(
        (ln.strip() for ln in reversed(output) if re.match(r"^\s*(error|fatal)\b", ln, re.I)),
        None,
    )
    where = f"{step} failed" if step else "the build failed"
    msg = f"docker build: {where}: {error}"
    if hint and hint not in error:
        msg += f" ({hint.rstrip('.')})"
    return msg + "."

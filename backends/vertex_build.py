"""Images Vertex AI can pull: code and git jobs built with Docker and pushed to the
queue's Artifact Registry repository.

The Docker builder does the work (`docker_build.DockerBuilder`): it builds the
job's image on the agent's Docker daemon, tags it by the build's hash and pushes
it to the queue's `builder.destination` (e.g.
`us-central1-docker.pkg.dev/PROJECT/REPOSITORY`); an image the registry already has
under that tag is neither built nor pushed again. Image jobs are run as given:
Vertex pulls them itself, so an agent without Docker serves image jobs.

Pushing to Artifact Registry (`*-docker.pkg.dev`) or Container Registry (`gcr.io`)
without `[backends.vertex] registry = {username, password_env}` logs in as
`oauth2accesstoken` with an access token of the agent's Google credentials
(vertex_api.credentials); the token is scrubbed from the build's output and held
for this build's task only.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from launch_tui.backends import vertex_api as api
from launch_tui.backends.docker_build import DockerBuilder, Scrubber
from launch_tui.core.backend import BuildLog, BuildResult
from launch_tui.core.errors import BackendError, BuildError
from launch_tui.core.model import JobKind, RunSpec

_GOOGLE_AUTH: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "vertex_registry_auth", default=None)


def google_registry(dest: str) -> bool:
    host = dest.split("/", 1)[0]
    return host.endswith("-docker.pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


class VertexBuilder(DockerBuilder):
    name = "vertex"

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        if spec.kind is JobKind.IMAGE:
            ref = spec.source.get("image") or spec.image
            if not ref:
                raise BuildError("image: the job names no image.")
            await log(f"image: {ref} (Vertex AI pulls it)")
            return BuildResult(image=str(ref), cached=True)
        dest = self.destination(spec)
        if not dest:
            raise BuildError(
                f"builder.destination: queue '{spec.queue}' names no Artifact Registry "
                f"repository to push the image of this {spec.kind} job to, so Vertex AI could "
                "not pull it (set builder: {destination: "
                "REGION-docker.pkg.dev/PROJECT/REPOSITORY} in its config).")
        auth = None
        if google_registry(dest) and super()._auth() is None:
            auth = await self._google_login(spec)
        reset = _GOOGLE_AUTH.set(auth)
        try:
            return await super().build(spec, log)
        finally:
            _GOOGLE_AUTH.reset(reset)

    async def _google_login(self, spec: RunSpec) -> dict[str, str]:
        project = str(spec.queue_config.get("project") or self.ctx.settings.get("project")
                      or "-")
        location = str(spec.queue_config.get("location") or self.ctx.settings.get("location")
                       or "-")
        target = api.target(project, location, spec.queue_config, self.ctx.settings)
        try:
            token = await asyncio.to_thread(_access_token, target)
        except BackendError as exc:
            raise BuildError(str(exc)) from exc
        self.scrub = Scrubber(self._username, self._password, token)
        return {"username": "oauth2accesstoken", "password": token}

    def _auth(self) -> dict[str, str] | None:
        return _GOOGLE_AUTH.get() or super()._auth()


def _access_token(target: api.Target) -> str:
    from google.auth.transport.requests import Request

    creds: Any = api.credentials(target)
    try:
        creds.refresh(Request())
    except Exception as exc:
        raise BackendError(f"vertex: cannot get an access token to push to Artifact "
                           f"Registry: {str(exc).strip().rstrip('.')}.") from exc
    if not creds.token:
        raise BackendError("vertex: the agent's Google credentials give no access token to "
                           "push to Artifact Registry; set [backends.vertex] registry.")
    return str(creds.token)

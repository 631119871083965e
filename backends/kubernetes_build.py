"""Images a cluster can pull: code and git jobs built with Docker and pushed.

The Docker builder does the work (`docker_build.DockerBuilder`): it builds the
job's image on the agent's Docker daemon, tags it by the build's hash and
pushes it to the queue's `builder.destination`; an image the registry already
has under that tag is neither built nor pushed again. Image jobs are run as
given: the cluster pulls them, so an agent without Docker (one running in a
pod) serves image jobs.

Registry credentials come from the agent's settings (`[backends.kubernetes]
registry = {username = "…", password_env = "…"}`) or Docker's own config file
(`~/.docker/config.json`, `DOCKER_CONFIG`); they are scrubbed from build output.
"""

from __future__ import annotations

from launch_tui.backends.docker_build import DockerBuilder
from launch_tui.core.backend import BuildLog, BuildResult
from launch_tui.core.errors import BuildError
from launch_tui.core.model import JobKind, RunSpec


class KubernetesBuilder(DockerBuilder):
    name = "kubernetes"

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        if spec.kind is JobKind.IMAGE:
            ref = spec.source.get("image") or spec.image
            if not ref:
                raise BuildError("image: the job names no image.")
            await log(f"image: {ref} (the cluster pulls it)")
            return BuildResult(image=str(ref), cached=True)
        if not self.destination(spec):
            raise BuildError(
                f"builder.destination: queue '{spec.queue}' names no registry to push the "
                f"image of this {spec.kind} job to, so the cluster could not pull it (set "
                "builder: {destination: registry.example.com/team/launch} in its config).")
        return await super().build(spec, log)

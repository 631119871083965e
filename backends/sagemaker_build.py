"""Images SageMaker can pull: code and git jobs built with Docker and pushed to ECR.

The Docker builder does the work (`docker_build.DockerBuilder`): it builds the
job's image on the agent's Docker daemon, tags it by the build's hash and pushes
it; an image the registry already has under that tag is neither built nor pushed
again. This builder says where to:

    {account}.dkr.ecr.{region}.amazonaws.com/{ecr_repository}/{job}:{hash}

`ecr_repository` is the queue's (default `launch-tui`); the repository
`{ecr_repository}/{job}` is created when missing (`ecr:CreateRepository`). The
push logs in with `ecr:GetAuthorizationToken`; the token is scrubbed from
everything the build logs.

A queue's `builder.destination` replaces the ECR registry as where the bytes
go (a pull-through mirror, or the loopback registry of the tests) while the ECR
repository is still made; ECR's token is then never sent there (the agent's
`[backends.sagemaker] registry` credentials are, as for the Docker builder).

Image jobs are run as given: SageMaker pulls them itself, so an agent without
Docker serves image jobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from typing import Any

from launch_tui.backends import sagemaker_aws as sa
from launch_tui.backends import sagemaker_rules as rules
from launch_tui.backends.docker_build import DockerBuilder, Scrubber, sanitise_name
from launch_tui.core.backend import BuildLog, BuildResult
from launch_tui.core.errors import BackendError, BuildError
from launch_tui.core.model import JobKind, RunSpec

# The registry login of the build running in this task (each run is its own task,
# and threads started with asyncio.to_thread see it too).
_ECR_AUTH: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "sagemaker_ecr_auth", default=None)


class SageMakerBuilder(DockerBuilder):
    name = "sagemaker"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._aws: dict[sa.Target, sa.Aws] = {}
        # Where this build pushes (set by `build`, read by `destination`/`_auth`).
        self._dest: dict[str, str] = {}
        self._tokens: list[str] = []  # every ECR secret seen, scrubbed from build output

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        if spec.kind is JobKind.IMAGE:
            ref = spec.source.get("image") or spec.image
            if not ref:
                raise BuildError("image: the job names no image.")
            await log(f"image: {ref} (SageMaker pulls it)")
            return BuildResult(image=str(ref), cached=True)
        try:
            auth = await self._prepare_push(spec, log)
        except BackendError as exc:
            raise BuildError(str(exc)) from exc
        reset = _ECR_AUTH.set(auth)
        try:
            return await super().build(spec, log)
        finally:
            _ECR_AUTH.reset(reset)
            self._dest.pop(spec.run_id, None)

    async def _prepare_push(self, spec: RunSpec, log: BuildLog) -> dict[str, str] | None:
        """Make the job's ECR repository if missing; the ECR login to push with (None
        when the queue's builder.destination is not ECR)."""
        target = sa.target_for(spec.queue_config, self.ctx.settings)
        if target not in self._aws:
            self._aws[target] = await asyncio.to_thread(sa.Aws, target)
        aws = self._aws[target]
        who = await sa.call("read the AWS account (sts:GetCallerIdentity)", aws.identity)
        namespace = str(spec.queue_config.get("ecr_repository") or rules.DEFAULT_ECR_REPOSITORY)
        repository = f"{namespace}/{sanitise_name(spec.job)}"
        ecr = aws.client("ecr")
        try:
            await sa.call(f"create ECR repository {repository}", ecr.create_repository,
                          repositoryName=repository, imageTagMutability="MUTABLE")
            await log(f"push: created ECR repository {repository}")
        except BackendError:
            raise
        except Exception as exc:
            if sa.error_code(exc) != "RepositoryAlreadyExistsException":
                raise sa.refused(f"create ECR repository {repository}", exc) from exc
        registry = rules.ecr_registry(who.account, str(aws.region))
        override = super().destination(spec)
        self._dest[spec.run_id] = override or f"{registry}/{namespace}"
        if override:
            await log(f"push: to {override} (the queue's builder.destination) instead of "
                      f"{registry}")
            return None
        try:
            token = await sa.call("log in to ECR (ecr:GetAuthorizationToken)",
                                  ecr.get_authorization_token)
        except BackendError:
            raise
        except Exception as exc:
            raise sa.refused("log in to ECR (ecr:GetAuthorizationToken)", exc) from exc
        data = (token.get("authorizationData") or [{}])[0]
        user, _, password = base64.b64decode(data.get("authorizationToken") or "").decode(
        ).partition(":")
        self._tokens.extend(t for t in (password, data.get("authorizationToken")) if t)
        self.scrub = Scrubber(self._username, self._password, *self._tokens[-16:])
        return {"username": user, "password": password,
                "serveraddress": str(data.get("proxyEndpoint") or "")}

    def destination(self, spec: RunSpec) -> str | None:
        return self._dest.get(spec.run_id) or super().destination(spec)

    def _auth(self) -> dict[str, str] | None:
        # The Docker builder asks without naming the run; the ECR login belongs to
        # the build of this task only, so it never reaches another run's registry.
        return _ECR_AUTH.get() or super()._auth()

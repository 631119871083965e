"""The facade's catalog commands: projects, jobs, versions, aliases, snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch_tui.core import redact
from launch_tui.core.facade.parts import Config, Parts, shown
from launch_tui.core.model import Job, JobVersion, Project

if TYPE_CHECKING:
    from launch_tui.core.catalog import JobVersionResult


class CatalogCommands(Parts):
    async def create_project(self, name: str) -> Project:
        return await self._catalog.create_project(name)

    async def list_projects(self) -> list[Project]:
        return await self._catalog.list_projects()

    async def create_code_job(
        self, path: str | Path, entrypoint: str | Sequence[str], *, name: str | None = None,
        project: str | None = None, aliases: Iterable[str] = (), config_defaults: Config = None,
        input_schema: Config = None, base_image: str | None = None,
    ) -> JobVersionResult:
        return shown(await self._catalog.create_code_job(
            path, entrypoint, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema, base_image=base_image))

    async def create_git_job(
        self, url: str, entrypoint: str | Sequence[str], *, ref: str | None = None,
        name: str | None = None, project: str | None = None, aliases: Iterable[str] = (),
        config_defaults: Config = None, input_schema: Config = None,
        base_image: str | None = None, requirements: str | None = "requirements.txt",
    ) -> JobVersionResult:
        return shown(await self._catalog.create_git_job(
            url, entrypoint, ref=ref, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema, base_image=base_image,
            requirements=requirements))

    async def create_image_job(
        self, image: str, *, entrypoint: str | Sequence[str] | None = None,
        name: str | None = None, project: str | None = None, aliases: Iterable[str] = (),
        config_defaults: Config = None, input_schema: Config = None,
    ) -> JobVersionResult:
        return shown(await self._catalog.create_image_job(
            image, entrypoint=entrypoint, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema))

    async def update_job_config(
        self, job_ref: str, config_defaults: dict[str, Any], *, project: str | None = None,
        input_schema: Config = None, aliases: Iterable[str] = (),
    ) -> JobVersionResult:
        """Make a new version of a job with other config defaults (same code and entrypoint)."""
        return shown(await self._catalog.update_job_config(
            job_ref, config_defaults, project=project, input_schema=input_schema, aliases=aliases))

    async def set_alias(self, job_ref: str, alias: str, *, project: str | None = None
                        ) -> JobVersion:
        return redact.version(await self._catalog.set_alias(job_ref, alias, project=project))

    async def list_jobs(self, project: str | None = None) -> list[Job]:
        return redact.each(await self._catalog.list_jobs(project), redact.job)

    async def get_job(self, name: str, *, project: str | None = None) -> Job:
        return redact.job(await self._catalog.get_job(name, project=project))

    async def job_version(self, job_ref: str, *, project: str | None = None) -> JobVersion:
        return redact.version(await self._catalog.job_version(job_ref, project=project))

    async def ensure_snapshot(self, digest: str, what: str) -> bool:
        """Make sure this machine's artifacts hold the code snapshot `digest` of `what`
        ("job:vN"), fetched from the store if need be (True when it was). BuildError,
        naming both, when neither has it."""
        return await self._snapshots.ensure_local(digest, what)

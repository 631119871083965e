"""Backend name -> import paths. Importing happens only when a backend is used.

Resource schemas live in `backends.schemas`, which imports no SDK, so queues
for any backend can be validated on a machine without that backend's extras.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from core.backend import Backend, BackendContext, Builder
from core.errors import BackendError, ValidationError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    schema: str
    backend: str | None  # None: schema known, runner not in this version
    builder: str | None
    extra: str | None = None  # pip extra that brings its SDK


BACKENDS: dict[str, BackendEntry] = {
    e.name: e
    for e in (
        BackendEntry(
            "local-process",
            "backends.schemas:LOCAL_PROCESS",
            "backends.local_process:LocalProcessBackend",
            "backends.local_process:LocalEnvBuilder",
        ),
        BackendEntry(
            "docker",
            "backends.schemas:DOCKER",
            "backends.docker_backend:DockerBackend",
            "backends.docker_build:DockerBuilder",
            extra="docker",
        ),
        BackendEntry("kubernetes", "backends.schemas:KUBERNETES", None, None, extra="kubernetes"),
        BackendEntry("sagemaker", "backends.schemas:SAGEMAKER", None, None, extra="sagemaker"),
        BackendEntry("vertex", "backends.schemas:VERTEX", None, None, extra="vertex"),
    )
}

RESOURCE_NAMES = tuple(BACKENDS)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def entry(name: str) -> BackendEntry:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValidationError(
            f"resource: '{name}' is not a known target resource "
            f"(choose one of {', '.join(RESOURCE_NAMES)}).",
            field="resource",
        ) from None


def resource_schema(name: str) -> dict[str, Any]:
    return _load(entry(name).schema)


def create_backend(name: str, ctx: BackendContext) -> Backend:
    e = entry(name)
    if e.backend is None:
        raise BackendError(f"resource: running on '{name}' is not available in this version.")
    try:
        cls = _load(e.backend)
    except ImportError as exc:
        hint = f" (pip install 'launch-tui[{e.extra}]')" if e.extra else ""
        raise BackendError(f"resource: the '{name}' backend cannot load: {exc}{hint}.") from exc
    return cls(ctx)


def create_builder(name: str, ctx: BackendContext) -> Builder:
    e = entry(name)
    if e.builder is None:
        raise BackendError(f"resource: building for '{name}' is not available in this version.")
    try:
        cls = _load(e.builder)
    except ImportError as exc:
        hint = f" (pip install 'launch-tui[{e.extra}]')" if e.extra else ""
        raise BackendError(f"resource: the '{name}' builder cannot load: {exc}{hint}.") from exc
    return cls(ctx)

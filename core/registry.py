"""Target resources, discovered through the `launch_tui.backends` entry-point group.

Core names no backend: every target (the built-in ones included) is a
`BackendPlugin` that an installed distribution declares, so a third party adds
one by installing a package. Discovery reads package metadata only; a backend's
SDK is imported when a queue first runs on it, never to validate or draw a form.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from launch_tui.core.backend import Backend, BackendContext, BackendPlugin, Builder
from launch_tui.core.errors import BackendError, ValidationError

ENTRY_POINT_GROUP = "launch_tui.backends"


@functools.cache
def plugins() -> dict[str, BackendPlugin]:
    """Every installed target resource by name, built-ins first."""
    found: list[BackendPlugin] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party package must not break the app
            raise BackendError(
                f"resource: the target resource '{ep.name}' ({ep.value}) cannot load: {exc}."
            ) from exc
        if not isinstance(plugin, BackendPlugin) or plugin.name != ep.name:
            raise BackendError(
                f"resource: entry point '{ep.name}' ({ep.value}) is not a BackendPlugin "
                f"named '{ep.name}'."
            )
        found.append(plugin)
    found.sort(key=lambda p: (p.order, p.name))
    return {p.name: p for p in found}


def resource_names() -> tuple[str, ...]:
    return tuple(plugins())


def plugin(name: str) -> BackendPlugin:
    try:
        return plugins()[name]
    except KeyError:
        raise ValidationError(
            f"resource: '{name}' is not a known target resource "
            f"(choose one of {', '.join(resource_names())}).",
            field="resource",
        ) from None


def resource_schema(name: str) -> dict:
    return plugin(name).resource_schema


def create_backend(name: str, ctx: BackendContext) -> Backend:
    p = plugin(name)
    if p.backend is None:
        raise BackendError(f"resource: running on '{name}' is not available in this version.")
    try:
        return p.backend(ctx)
    except ImportError as exc:
        raise BackendError(f"resource: the '{name}' backend cannot load: {exc}{_hint(p)}.") from exc


def create_builder(name: str, ctx: BackendContext) -> Builder:
    p = plugin(name)
    if p.builder is None:
        raise BackendError(f"resource: building for '{name}' is not available in this version.")
    try:
        return p.builder(ctx)
    except ImportError as exc:
        raise BackendError(f"resource: the '{name}' builder cannot load: {exc}{_hint(p)}.") from exc


def _hint(p: BackendPlugin) -> str:
    return f" (pip install 'launch-tui[{p.extra}]')" if p.extra else ""

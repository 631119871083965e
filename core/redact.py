"""What listings, descriptions, events and screens show of secrets: a mask.

Masked are: values of environment entries (queue `env`, resource-args `env`, a
run's resolved env) whose name looks secret (…KEY, …TOKEN, …SECRET,
…PASSWORD, …CREDENTIAL(S), …AUTH…) or that the queue lists in `secret_env`,
and the password part of any URL (`https://user:token@host/…`,
`postgresql://u:pw@…`), wherever it stands. The store keeps the real values:
the facade masks what it returns to people, the agent's port gets them whole.

A masked value sent back unchanged (a queue config read, edited and saved)
means "keep what is stored": see `unmask_env` and `unmask_config`. A mask left
where nothing is stored to keep is refused (`refuse_masks`): the job would
otherwise get eight asterisks for a token.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from launch_tui.core.errors import ValidationError
from launch_tui.core.model import Job, JobVersion, Queue, QueueConfig, QueueItem, Run

MASK = "********"
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|AUTH|PRIVATE|COOKIE)",
    re.IGNORECASE,
)
# scheme://user:password@host — the password is what gets masked.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^/@\s]+)@")

T = TypeVar("T")


def secret_name(name: str, listed: Iterable[str] = ()) -> bool:
    return name in set(listed) or bool(_SECRET_NAME.search(name))


def mask_url(text: str) -> str:
    """Mask every URL password in `text` (other text is left as it is)."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def mask_env(env: Mapping[str, Any], listed: Iterable[str] = ()) -> dict[str, Any]:
    listed = tuple(listed)
    return {
        k: MASK if secret_name(k, listed) else (mask_url(v) if isinstance(v, str) else v)
        for k, v in env.items()
    }


def unmask_env(new: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A value sent back as the mask keeps the stored value (an edit of a masked listing)."""
    return {k: stored.get(k, v) if v == MASK else v for k, v in new.items()}


def unmask_config(new: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """`new` (a queue config mapping) with every part that still reads as people were
    shown the stored config (`stored`, raw) replaced by the stored value."""
    shown = _deep(dict(stored), _listed(stored))
    return dict(_unmask(new, stored, shown))


def _unmask(new: Any, stored: Any, shown: Any) -> Any:
    if new == shown and shown != stored:
        return stored
    if isinstance(new, dict) and isinstance(stored, dict) and isinstance(shown, dict):
        return {k: _unmask(v, stored[k], shown[k]) if k in stored and k in shown else v
                for k, v in new.items()}
    if (isinstance(new, list) and isinstance(stored, list) and isinstance(shown, list)
            and len(new) == len(stored) == len(shown)):
        return [_unmask(*parts) for parts in zip(new, stored, shown, strict=True)]
    return new


def refuse_masks(env: Any, field: str) -> None:
    """Refuse an `env` mapping that still holds the mask where no value is stored."""
    if not isinstance(env, Mapping):
        return
    for name, value in env.items():
        if isinstance(value, str) and MASK in value:
            raise ValidationError(
                f"{field}.{name}: the value shows the mask ({MASK}) in place of a secret, "
                "and no value is stored to keep; give the real value.",
                field=f"{field}.{name}",
            )


def _deep(value: Any, listed: tuple[str, ...]) -> Any:
    """Mask URL passwords anywhere, and `env` mappings wherever they appear."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, list):
        return [_deep(v, listed) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "env" and isinstance(v, dict):
                out[k] = mask_env(v, listed)
            else:
                out[k] = _deep(v, listed)
        return out
    return value


def _listed(queue_config: Mapping[str, Any] | QueueConfig | None) -> tuple[str, ...]:
    if queue_config is None:
        return ()
    raw = queue_config.to_dict() if isinstance(queue_config, QueueConfig) else queue_config
    names = raw.get("secret_env") or ()
    return tuple(str(n) for n in names) if isinstance(names, list | tuple) else ()


def queue(q: Queue) -> Queue:
    listed = _listed(q.config)
    config = dataclasses.replace(
        q.config,
        env=mask_env(q.config.env, listed),
        resource_args=_deep(q.config.resource_args, listed),
        extra=_deep(q.config.extra, listed),
    )
    return dataclasses.replace(q, config=config)


def version(v: JobVersion) -> JobVersion:
    return dataclasses.replace(v, source=_deep(v.source, ()))


def job(j: Job) -> Job:
    return dataclasses.replace(j, versions=tuple(version(v) for v in j.versions))


def item(i: QueueItem) -> QueueItem:
    overrides = _deep(i.resource_overrides, ())
    message = mask_url(i.error_message) if i.error_message else i.error_message
    if overrides == i.resource_overrides and message == i.error_message:
        # Nothing to mask (the usual case): an item is read fresh from the store for
        # each caller, so it is returned as it is; a copy costs every enqueue ~30 us.
        return i
    return dataclasses.replace(i, resource_overrides=overrides, error_message=message)


def preview(spec: dict[str, Any], queue_config: QueueConfig) -> dict[str, Any]:
    """A resolved spec as `preview` returns it, masked by the queue's rules."""
    return dict(_deep(spec, _listed(queue_config)))


def run(r: Run) -> Run:
    spec = r.spec or {}
    listed = _listed(spec.get("queue_config"))
    return dataclasses.replace(
        r,
        spec=_deep(spec, listed),
        # A failed git fetch or push quotes the URL it tried.
        reason=mask_url(r.reason) if r.reason else r.reason,
        error_message=mask_url(r.error_message) if r.error_message else r.error_message,
    )


def each(values: Iterable[T], fn: Any) -> list[T]:
    return [fn(v) for v in values]

"""Rules for job definitions: names, refs, git remotes, image references, input schemas."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from launch_tui.core.errors import ValidationError
from launch_tui.core.schemas import check_schema

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
VERSION_ALIAS_RE = re.compile(r"^v(\d+)$")

# Docker reference grammar (distribution/reference), simplified to one regex.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_SCP_GIT_RE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[^/\\][^\\]*$")


def check_name(value: str, field: str) -> str:
    if not NAME_RE.match(value or ""):
        raise ValidationError(
            f"{field}: '{value}' must start with a letter or digit and use only letters, "
            "digits, '.', '_' or '-' (at most 128 characters).",
            field=field,
        )
    return value


def check_alias(value: str) -> str:
    if not ALIAS_RE.match(value or "") or VERSION_ALIAS_RE.match(value):
        raise ValidationError(
            f"alias: '{value}' must start with a letter, use letters, digits, '.', '_' or '-', "
            "and not look like a version (v0, v1, …).",
            field="alias",
        )
    return value


def parse_job_ref(ref: str) -> tuple[str, str | None]:
    """`name`, `name:alias` or `name:vN` -> (name, alias-or-version or None)."""
    name, sep, tag = ref.partition(":")
    check_name(name, "job")
    if sep and not tag:
        raise ValidationError(f"job: '{ref}' has an empty alias after ':'.", field="job")
    return name, (tag or None)


def parse_entrypoint(entrypoint: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if entrypoint is None:
        return ()
    if isinstance(entrypoint, str):
        try:
            parts = shlex.split(entrypoint)
        except ValueError as exc:
            raise ValidationError(
                f"entrypoint: cannot be parsed ({exc}).", field="entrypoint"
            ) from exc
    else:
        parts = list(entrypoint)
    if not parts:
        raise ValidationError("entrypoint: must name a command, e.g. 'python train.py'.")
    return tuple(parts)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_git_url(url: str) -> str:
    """Allow https://, ssh:// and git@host:path; git:// and http:// only on loopback."""
    if _SCP_GIT_RE.match(url) and "://" not in url:
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("https", "ssh") and parts.hostname:
        return url
    if scheme in ("git", "http") and _is_loopback(parts.hostname):
        return url
    if scheme in ("git", "http"):
        raise ValidationError(
            f"url: '{url}' uses {scheme}://, which is unencrypted and allowed only for "
            "loopback hosts; use https://, ssh:// or git@host:path.",
            field="url",
        )
    raise ValidationError(
        f"url: '{url}' is not an allowed git remote; use https://, ssh:// or git@host:path.",
        field="url",
    )


def check_git_ref(ref: str | None) -> str | None:
    if ref is None:
        return None
    if not ref or ref.startswith("-") or any(c in ref for c in " ~^:?*[\\") or ".." in ref:
        raise ValidationError(f"ref: '{ref}' is not a valid git ref.", field="ref")
    return ref


def check_image(image: str) -> str:
    if len(image) > 255 or not IMAGE_RE.match(image):
        raise ValidationError(
            f"image: '{image}' is not a valid image reference "
            "(expected [registry/]name[:tag][@digest], lower-case name).",
            field="image",
        )
    return image


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def infer_schema(defaults: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema typing each default, so overrides of the wrong type are caught.

    Unknown keys are refused when there are defaults (a typo in `--set lrr=…` should
    not pass silently); a job with no defaults accepts any config.
    """
    if not defaults:
        return {"type": "object"}
    return {
        "type": "object",
        "properties": {k: _infer_value(v) for k, v in defaults.items()},
        "additionalProperties": False,
    }


def _infer_value(value: Any) -> dict[str, Any]:
    for py, name in _JSON_TYPES:
        if isinstance(value, py):
            return {"type": name}
    if isinstance(value, dict):
        return infer_schema(value)
    if isinstance(value, list):
        return {"type": "array"}
    return {}


def check_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    problem = check_schema(schema)
    if problem is not None:
        raise ValidationError(f"schema: not a valid JSON schema ({problem}).", field="schema")
    if schema.get("type", "object") != "object":
        raise ValidationError("schema: the input schema must describe an object.", field="schema")
    return schema


@dataclass(frozen=True)
class VersionSpec:
    """Everything that identifies a job version; its digest decides whether it is new."""

    kind: str
    entrypoint: tuple[str, ...]
    source: dict[str, Any]
    environment: dict[str, Any]
    config_defaults: dict[str, Any]
    input_schema: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "entrypoint": list(self.entrypoint),
            "source": self.source,
            "environment": self.environment,
            "config_defaults": self.config_defaults,
            "input_schema": self.input_schema,
        }

    def digest(self) -> str:
        # Sizes and counts are descriptive; only content-bearing fields decide identity.
        source = {k: v for k, v in self.source.items() if k not in ("files", "bytes")}
        blob = json.dumps({**self.to_dict(), "source": source}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

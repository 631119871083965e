"""Reading config files (JSON, YAML or TOML) and `key=value` assignments.

YAML is read with a bound on how far aliases expand: a 1 KB document of nested
`*` references ("billion laughs") would otherwise become billions of values the
moment anything walks it, and take minutes and all memory before failing.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch_tui.core.errors import ValidationError

if TYPE_CHECKING:
    # yaml is imported where it is used: most commands read no YAML and should not
    # pay for loading it.
    import yaml

# How many values a YAML document may expand to, aliases followed. Real configs
# have hundreds; the bound only stops documents built to explode.
MAX_YAML_VALUES = 100_000
MAX_FILE_BYTES = 16 * 2**20


class _TooLarge(Exception):
    pass


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Values in `node` with every alias expanded; shared nodes are counted once per use."""
    import yaml

    known = memo.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    if size > MAX_YAML_VALUES:
        raise _TooLarge
    memo[id(node)] = size
    return size


def safe_load_yaml(text: str, what: str, where: str) -> Any:
    """yaml.safe_load, refusing documents whose aliases expand beyond MAX_YAML_VALUES."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _expanded_size(node, {})
        except (_TooLarge, RecursionError):
            raise ValidationError(
                f"{what}: {where} expands to more than {MAX_YAML_VALUES:,} values through "
                "YAML aliases (*refs); write the values out instead.",
                field=what,
            ) from None
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Load a JSON, YAML or TOML file whose top level is a mapping."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValidationError(f"{what}: {p} does not exist or is not a file.", field=what)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ValidationError(
                f"{what}: {p} is larger than {MAX_FILE_BYTES // 2**20} MiB; a config file "
                "is not that big.",
                field=what,
            )
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValidationError(
            f"{what}: cannot read {p} ({exc.strerror or exc}).", field=what
        ) from exc
    suffix = p.suffix.lower()
    import yaml

    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = safe_load_yaml(text, what, str(p))
        else:
            data = parse_mapping_text(text, what, str(p))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0]
        raise ValidationError(
            f"{what}: {p} is not valid {suffix.lstrip('.').upper()} ({detail}).", field=what
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError(
            f"{what}: {p} must hold a mapping of keys to values at the top level, "
            f"not a {type(data).__name__}.",
            field=what,
        )
    return data


def parse_mapping_text(text: str, what: str, where: str = "text") -> dict[str, Any]:
    """Parse text of unknown format: JSON first, then TOML, then YAML."""
    import yaml

    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            try:
                data = safe_load_yaml(text, what, where)
            except yaml.YAMLError as exc:
                detail = str(exc).splitlines()[0]
                raise ValidationError(
                    f"{what}: {where} is not valid JSON, TOML or YAML ({detail}).", field=what
                ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{what}: {where} must hold a mapping at the top level.", field=what)
    return data


def parse_value(text: str) -> Any:
    """`5` -> 5, `0.1` -> 0.1, `true` -> True, `[1,2]` -> [1, 2], otherwise the string."""
    import yaml

    try:
        value = safe_load_yaml(text, "value", repr(text))
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list, int, float, bool)) or value is None:
        return value
    return text


def parse_assignments(pairs: list[str] | tuple[str, ...], option: str) -> dict[str, Any]:
    """Turn `a.b=1` style assignments into a nested mapping."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(
                f"{option}: '{pair}' must have the form key=value.", field=option
            )
        target = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ValidationError(f"{option}: '{key}' conflicts with an earlier value.")
            target = nxt
        target[parts[-1]] = parse_value(raw)
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in `override` replaces what `base` had."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out

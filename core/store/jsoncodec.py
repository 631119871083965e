"""The store's JSON codec for JSON columns and snapshot copies: orjson, with the
standard library behind it for what orjson refuses.

A lifecycle on the dispatch path (enqueue, claim, finish) encodes ~16 and decodes
~9 JSON values (specs, configs, timestamps, event payloads); with `json` that was
a tenth of its time, with orjson a fiftieth (benchmarks/claim_throughput.py).

What differs from `json`: output is compact; NaN and infinities are written as
null (they are not JSON, and PostgreSQL refuses them). What falls back to `json`:
integers beyond 64 bits (written), and rows written by older versions with NaN or
Infinity tokens in them (read).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: x} as {"1": x}, as `json` writes it


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)  # big integers; anything else raises as `json` would


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def copy(value: Any) -> Any:
    """`value` as it would read back from a JSON column (tuples become lists), sharing
    no mutable part with the original."""
    return loads(dumps(value))

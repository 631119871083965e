"""The small pieces of Kubernetes API semantics that kmock 0.8 does not have and the
stand-in needs: label and field selectors, the three PATCH flavours, `Status` error
bodies and the API's timestamp formats. Pure functions, no server state."""

from __future__ import annotations

import copy
import datetime as dt
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

# --------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error the API answers with a `Status` body (as the real server does), which
    the `kubernetes` client turns into `ApiException(status=code)`."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(group: str, plural: str) -> str:
    """`jobs.batch`, `pods`: how the API names a resource in its messages."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(group, plural)} "{name}" not found',
                    {"name": name, "group": group, "kind": plural})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(group, plural)} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# ----------------------------------------------------------------- timestamps


def now_rfc3339() -> str:
    """metadata/status timestamps: whole seconds, as the API serialises metav1.Time."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ns() -> int:
    return time.time_ns()


def rfc3339_nano_fixed(ns: int) -> str:
    """The kubelet's log timestamp: always nine fractional digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_rfc3339_ns(text: str) -> int:
    """RFC 3339 with any fraction (sinceTime) to nanoseconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        raise bad_request(f'parsing time "{text}" as RFC3339: cannot parse')
    base = dt.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return int(base.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


# ------------------------------------------------------------------ selectors

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b=c`)."""
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t.strip() for t in terms if t.strip()]


def label_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over labels for `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
    `a notin (x)`, all ANDed by commas (kmock ignores labelSelector altogether)."""
    if not selector:
        return lambda labels: True
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_terms(selector):
        m = _SET_RE.match(term)
        if m:
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                checks.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            checks.append(lambda lb, k=absent: k not in lb)
        else:
            checks.append(lambda lb, k=term: k in lb)
    return lambda labels: all(check(labels) for check in checks)


def _field(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for `metadata.name=x`, `metadata.namespace!=y`, `status.phase=Running`
    (the API allows only a few fields per kind; we accept any dotted path)."""
    if not selector:
        return lambda obj: True
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_terms(selector):
        neg = "!=" in term
        key, value = (s.strip() for s in term.replace("==", "=").split("!=" if neg else "=", 1))
        if neg:
            checks.append(lambda o, k=key, v=value: str(_field(o, k) or "") != v)
        else:
            checks.append(lambda o, k=key, v=value: str(_field(o, k) or "") == v)
    return lambda obj: all(check(obj) for check in checks)


# -------------------------------------------------------------------- patches

# Strategic merge patch merges these lists element by element on their key; every
# other list is replaced, as in a JSON merge patch. Enough for the fields tests touch.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort",
              "conditions": "type", "containerStatuses": "name", "ownerReferences": "uid"}


def merge_patch(target: Any, patch: Any, *, strategic: bool = False, key: str = "") -> Any:
    """RFC 7386 merge patch (None deletes); with `strategic`, the lists in MERGE_KEYS
    merge by their key, roughly as the API's strategic merge patch does."""
    if not isinstance(patch, Mapping):
        if strategic and isinstance(patch, list) and isinstance(target, list) \
                and key in MERGE_KEYS:
            mk = MERGE_KEYS[key]
            out = [copy.deepcopy(t) for t in target]
            for item in patch:
                idx = next((i for i, t in enumerate(out) if isinstance(t, Mapping)
                            and isinstance(item, Mapping) and t.get(mk) == item.get(mk)), None)
                if idx is None:
                    out.append(copy.deepcopy(item))
                else:
                    out[idx] = merge_patch(out[idx], item, strategic=True)
            return out
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if k == "$patch":
            continue
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v, strategic=strategic, key=k)
    return result


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, test (what clients send as a list body)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1] if parts else ""
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ApiError(422, "Invalid", f"the test op failed at {op['path']}")
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last)
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise bad_request(f"unsupported JSON patch op {kind!r}")
    return doc


def apply_patch(target: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct == "application/json-patch+json" or isinstance(body, list):
        return json_patch(target, body)
    if ct == "application/merge-patch+json":
        return merge_patch(target, body)
    if ct in ("application/strategic-merge-patch+json", "application/json", ""):
        return merge_patch(target, body, strategic=True)
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                                f"format - accepted media types include: "
                                                f"application/json-patch+json, "
                                                f"application/merge-patch+json, "
                                                f"application/strategic-merge-patch+json "
                                                f"(got {ct})")

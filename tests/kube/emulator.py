"""kmock's KubernetesEmulator with the gaps closed that matter to the real `kubernetes`
client and to the backend's watches.

kmock 0.8 keeps objects and serves discovery, which we reuse (its object store
`.objects`, request parsing, discovery and error rendering). Its own CRUD/watch
fallbacks are bypassed for the resources in RESOURCES, because closing its gaps
needs a different data flow (every gap is marked `kmock gap:` below):

* one global resourceVersion stamped on every change, with a bounded event history
  that watches replay from, and `410 Gone` for a version older than the history;
* uid, creationTimestamp, generateName, Status bodies with the API's reasons;
* selectors, watch timeouts and the client's spelling of `watch=True`;
* server-side garbage collection of a Job's pods on a propagating delete;
* `pods/log`, fed by the harness's kubelet.

Everything here runs on the stand-in's own event loop thread (tests/kube/apiserver.py
marshals calls from other threads), so no locks are needed.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, ResourceInfo, resource
from kmock._internal import apps, rendering

from tests.kube import podlogs
from tests.kube.apimachinery import (
    ApiError,
    already_exists,
    apply_patch,
    bad_request,
    field_matcher,
    label_matcher,
    not_found,
    now_rfc3339,
)

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS = [
    Kind("", "v1", "pods", "Pod", subresources=("log", "status"), short=("po",)),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "events", "Event", short=("ev",)),
    Kind("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, subresources=("status",),
         short=("ns",)),
    Kind("batch", "v1", "jobs", "Job", subresources=("status",)),
    Kind("apps", "v1", "deployments", "Deployment", subresources=("status", "scale"),
         short=("deploy",)),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
]
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}

HISTORY = 5000  # watch events kept for resumption; older versions get 410 Gone


@dataclass
class Event:
    rv: int
    kind: Kind
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


def truthy(value: str | None) -> bool:
    """Go's strconv.ParseBool, which the API uses for `watch`; kmock gap: it accepts
    only `watch=true`, while the Python client sends `watch=True`."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


@attrs.define(kw_only=True)
class StandInEmulator(KubernetesEmulator):
    rv: int = attrs.field(default=1, init=False)  # "0" means "any version" to a watch
    compacted: int = attrs.field(default=0, init=False)  # watches from below this get 410
    history: collections.deque[Event] = attrs.field(
        factory=lambda: collections.deque(maxlen=HISTORY), init=False)
    verb_log: list[tuple[str, str, str, str]] = attrs.field(factory=list, init=False)
    listeners: list[Callable[[Event], None]] = attrs.field(factory=list, init=False)
    logs: podlogs.PodLogs = attrs.field(factory=podlogs.PodLogs, init=False)
    closing: bool = attrs.field(default=False, init=False)
    _wake: asyncio.Event | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for k in KINDS:  # discovery documents come from kmock's declared resources
            self.resources[resource(k.group, k.version, k.plural)] = ResourceInfo(
                kind=k.kind, singular=k.kind.lower(), namespaced=k.namespaced, verbs=VERBS,
                subresources=k.subresources, shortnames=k.short)

    async def _serve_version(self, request: rendering.Request) -> Any:
        # kmock gap: /api/v1 said groupVersion "/v1", so kubectl found no core kinds.
        doc = await super()._serve_version(request)
        if request.resource is not None and request.resource.group == "":
            doc["groupVersion"] = request.resource.version
        return doc

    async def _serve_server_version(self, request: rendering.Request) -> Any:
        doc = await super()._serve_server_version(request)
        return {**doc, "minor": "31", "gitVersion": "v1.31.0-standin"}  # Job conditions as 1.31

    # ------------------------------------------------------------- plumbing

    def wake(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def poke(self) -> None:
        """Wake every watch and log stream to look for news."""
        old, self._wake = self.wake(), asyncio.Event()
        old.set()

    def _key(self, k: Kind, ns: str | None, name: str) -> tuple[Any, str | None, str]:
        return (resource(k.group, k.version, k.plural), ns if k.namespaced else None, name)

    def items(self, k: Kind, ns: str | None) -> Iterator[dict[str, Any]]:
        res = resource(k.group, k.version, k.plural)
        for (r, o_ns, _), obj in list(self.objects.items()):
            if r == res and not obj.deleted and (ns is None or o_ns == ns):
                yield obj.raw

    def emit(self, k: Kind, type_: str, obj: dict[str, Any],
             old: dict[str, Any] | None = None) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted = self.history[0].rv
        ev = Event(self.rv, k, type_, copy.deepcopy(obj), copy.deepcopy(old))
        self.history.append(ev)
        self.poke()
        for listener in list(self.listeners):
            listener(ev)

    def expire_history(self) -> None:
        """Forget every event so far: any resourceVersion handed out before is now too
        old to watch from (the API's etcd compaction)."""
        self.rv += 1
        self.compacted = self.rv
        self.history.clear()

    def _stamp(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)

    # ------------------------------------------------------- object operations

    def get_object(self, k: Kind, ns: str | None, name: str) -> dict[str, Any]:
        key = self._key(k, ns, name)
        if key not in self.objects or self.objects[key].deleted:
            raise not_found(k.group, k.plural, name)
        return copy.deepcopy(self.objects[key].raw)

    def find(self, k: Kind, ns: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.get_object(k, ns, name)
        except ApiError:
            return None

    def list_objects(self, k: Kind, ns: str | None, label_selector: str | None = None,
                     field_selector: str | None = None) -> list[dict[str, Any]]:
        lm, fm = label_matcher(label_selector), field_matcher(field_selector)
        found = [copy.deepcopy(o) for o in self.items(k, ns)
                 if lm((o.get("metadata") or {}).get("labels") or {}) and fm(o)]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace") or "",
                                            o["metadata"]["name"]))

    def create_object(self, k: Kind, ns: str | None, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if k.namespaced:
            if ns and meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            ns = ns or meta.get("namespace") or "default"
            meta["namespace"] = ns  # kmock gap: live watch events need it in the body
        # kmock gap: generateName was ignored (and a nameless object stored as None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{k.kind} \"\" is invalid: metadata.name: "
                                               "Required value: name or generateName is "
                                               "required")
            meta["name"] = meta["generateName"] + _suffix()
        key = self._key(k, ns, meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise already_exists(k.group, k.plural, meta["name"])  # kmock: not a Status
        # kmock gap: no uid, creationTimestamp or resourceVersion
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        obj["kind"], obj["apiVersion"] = k.kind, k.api_version
        self._defaults(k, obj)
        self._stamp(obj)
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        if k.plural == "pods":
            self.logs.reset(ns or "", meta["name"])
        self.emit(k, "ADDED", obj)
        return copy.deepcopy(obj)

    def _defaults(self, k: Kind, obj: dict[str, Any]) -> None:
        """What the API's defaulting does for the kinds the harness drives."""
        if k.plural == "secrets" and obj.get("stringData"):
            import base64
            data = obj.setdefault("data", {})
            for name, value in obj.pop("stringData").items():
                data[name] = base64.b64encode(str(value).encode()).decode()
        if k.plural == "jobs":
            spec = obj.setdefault("spec", {})
            spec.setdefault("parallelism", 1)
            spec.setdefault("completions", spec["parallelism"] if spec.get("parallelism")
                            else 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid":
                                                         uid}})
            labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault(
                "labels", {})
            labels.update({"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                           "batch.kubernetes.io/job-name": name, "job-name": name})
            obj.setdefault("status", {})
        if k.plural == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            obj["status"].setdefault("qosClass", "BestEffort")

    def replace_object(self, k: Kind, ns: str | None, name: str, body: dict[str, Any],
                       status_only: bool = False) -> dict[str, Any]:
        current = self.get_object(k, ns, name)
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                           f'{k.plural}{"." + k.group if k.group else ""} "{name}": the object '
                           "has been modified; please apply your changes to the latest "
                           "version and try again")
        return self._store_new(k, ns, name, current, copy.deepcopy(body), status_only)

    def patch_object(self, k: Kind, ns: str | None, name: str, patch: Any,
                     content_type: str = "application/merge-patch+json",
                     status_only: bool = False) -> dict[str, Any]:
        current = self.get_object(k, ns, name)
        new = apply_patch(current, patch, content_type)
        return self._store_new(k, ns, name, current, new, status_only)

    def _store_new(self, k: Kind, ns: str | None, name: str, current: dict[str, Any],
                   new: dict[str, Any], status_only: bool) -> dict[str, Any]:
        if status_only:  # the status subresource changes only the status
            new = dict(current, status=new.get("status") or {})
        elif "status" in k.subresources:  # and the main resource never does
            new["status"] = current.get("status")
            if new["status"] is None:
                new.pop("status")
        meta = new.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        if new.get("spec") != current.get("spec"):
            meta["generation"] = int(meta.get("generation") or 1) + 1
        new["kind"], new["apiVersion"] = k.kind, k.api_version
        self._stamp(new)
        key = self._key(k, ns, name)
        self.objects[key].history.append(new)
        self.emit(k, "MODIFIED", new, current)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(k, ns, name)
        return copy.deepcopy(new)

    def delete_object(self, k: Kind, ns: str | None, name: str,
                      policy: str | None = None) -> dict[str, Any]:
        obj = self.get_object(k, ns, name)
        if policy is None:  # batch/v1 Jobs still default to orphaning their pods
            policy = "Orphan" if k.plural == "jobs" else "Background"
        uid = obj["metadata"]["uid"]
        pods = [p for p in self.items(BY_PLURAL["pods"], ns)
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]
        if policy == "Foreground" and pods:
            # The API marks the owner first and deletes it once its dependents are gone.
            meta = obj["metadata"]
            meta["deletionTimestamp"] = now_rfc3339()
            meta["finalizers"] = [*meta.get("finalizers", []), "foregroundDeletion"]
            obj = self._store_raw(k, ns, name, obj)
        # The garbage collector's work (a controller on a real cluster), done server-side
        # and at once here: dependents go with a propagating delete, or lose their owner.
        for pod in pods:
            pname = pod["metadata"]["name"]
            if policy in ("Foreground", "Background"):
                self._remove(BY_PLURAL["pods"], ns, pname)
            else:
                refs = [r for r in pod["metadata"]["ownerReferences"] if r.get("uid") != uid]
                self.patch_object(BY_PLURAL["pods"], ns, pname,
                                  [{"op": "replace", "path": "/metadata/ownerReferences",
                                    "value": refs}], "application/json-patch+json")
        if obj["metadata"].get("finalizers") and "foregroundDeletion" not in \
                obj["metadata"]["finalizers"]:
            meta = obj["metadata"]
            meta.setdefault("deletionTimestamp", now_rfc3339())
            return self._store_raw(k, ns, name, obj)
        return self._remove(k, ns, name)

    def _store_raw(self, k: Kind, ns: str | None, name: str,
                   obj: dict[str, Any]) -> dict[str, Any]:
        current = self.get_object(k, ns, name)
        self._stamp(obj)
        self.objects[self._key(k, ns, name)].history.append(copy.deepcopy(obj))
        self.emit(k, "MODIFIED", obj, current)
        return obj

    def _remove(self, k: Kind, ns: str | None, name: str) -> dict[str, Any]:
        key = self._key(k, ns, name)
        obj = copy.deepcopy(self.objects[key].raw)
        self._stamp(obj)  # the DELETED event carries a version of its own
        self.objects[key].history.append(obj)
        self.objects[key].delete()
        if k.plural == "pods":
            self.logs.drop(ns or "", name)
        self.emit(k, "DELETED", obj, obj)
        return obj

    # ----------------------------------------------------------------- HTTP

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        k = BY_PATH.get((res.group, res.version, res.plural)) if res is not None else None
        if k is None:
            if res is not None and res.plural:
                self.verb_log.append((request.method.lower(), res.group or "", res.plural,
                                      request.subresource or ""))
                return self._error(ApiError(404, "NotFound",
                                            "the server could not find the requested resource"))
            return await apps.RawHandler._handle(self, request)  # discovery: kmock's own
        raw = request._raw_request
        assert raw is not None
        q = request.params
        ns, name, sub = request.namespace, request.name, request.subresource or ""
        method = request.method.upper()
        watching = method == "GET" and truthy(q.get("watch"))
        verb = ("watch" if watching else "get" if name else "list") if method == "GET" else {
            "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())
        self.verb_log.append((verb, k.group, k.plural, sub))
        try:
            if sub == "log" and k.plural == "pods" and method == "GET" and name:
                return await podlogs.serve(self, raw, ns or "", name, q)
            if sub and sub != "status":
                raise ApiError(404, "NotFound", "the server could not find the requested "
                                                "resource")
            status_only = sub == "status"
            if watching:
                return await self._serve_watch_stream(raw, k, ns, name, q)
            if verb == "get":
                return self._json(self.get_object(k, ns, name))
            if verb == "list":
                items = self.list_objects(k, ns, q.get("labelSelector"), q.get("fieldSelector"))
                for item in items:  # list items carry no kind/apiVersion of their own
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                return self._json({"kind": f"{k.kind}List", "apiVersion": k.api_version,
                                   "metadata": {"resourceVersion": str(self.rv)},
                                   "items": items})
            body = request.data
            if verb == "create":
                if not isinstance(body, dict):
                    raise bad_request("the request body is not a JSON object")
                return self._json(self.create_object(k, ns, body), 201)
            if verb == "update":
                return self._json(self.replace_object(k, ns, name, body, status_only))
            if verb == "patch":
                ct = request.headers.get("Content-Type", "")
                return self._json(self.patch_object(k, ns, name, body, ct, status_only))
            opts = body if isinstance(body, dict) else {}
            policy = q.get("propagationPolicy") or opts.get("propagationPolicy")
            if opts.get("orphanDependents") is True or q.get("orphanDependents") == "true":
                policy = "Orphan"
            if verb == "delete":
                obj = self.delete_object(k, ns, name, policy)
                if k.plural == "pods" or obj["metadata"].get("deletionTimestamp"):
                    return self._json(obj)
                return self._json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                   "status": "Success", "details": {
                                       "name": name, "group": k.group, "kind": k.plural,
                                       "uid": obj["metadata"]["uid"]}})
            if verb == "deletecollection":
                gone = [self.delete_object(k, ns, o["metadata"]["name"], policy)
                        for o in self.list_objects(k, ns, q.get("labelSelector"),
                                                   q.get("fieldSelector"))]
                return self._json({"kind": f"{k.kind}List", "apiVersion": k.api_version,
                                   "metadata": {"resourceVersion": str(self.rv)},
                                   "items": gone})
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method "
                                                    f"on the requested resource ({method})")
        except ApiError as exc:
            return self._error(exc)

    @staticmethod
    def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(body, status=status)

    @staticmethod
    def _error(exc: ApiError) -> aiohttp.web.Response:
        return aiohttp.web.json_response(exc.status(), status=exc.code)

    async def _serve_watch_stream(self, raw: aiohttp.web.BaseRequest, k: Kind, ns: str | None,
                                  name: str | None, q: Any) -> aiohttp.web.StreamResponse:
        fsel = q.get("fieldSelector") or ""
        if name:  # a watch on one named object is a watch with a name field selector
            fsel = ",".join(filter(None, [fsel, f"metadata.name={name}"]))
        lm, fm = label_matcher(q.get("labelSelector")), field_matcher(fsel)

        def matches(obj: dict[str, Any] | None) -> bool:
            return obj is not None and (ns is None or obj["metadata"].get("namespace") == ns) \
                and lm(obj["metadata"].get("labels") or {}) and fm(obj)

        loop = asyncio.get_running_loop()
        # kmock gap: timeoutSeconds was ignored; the API ends the watch after it.
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        deadline = loop.time() + timeout if timeout is not None else None
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(raw)

        async def send(event: dict[str, Any]) -> None:
            await resp.write(json.dumps(event).encode() + b"\n")

        start = q.get("resourceVersion")
        try:
            if start in (None, "", "0"):
                # Without a version the API first sends every object as ADDED.
                cursor = self.rv
                for obj in self.list_objects(k, ns, q.get("labelSelector"), fsel):
                    await send({"type": "ADDED", "object": obj})
            else:
                cursor = int(start)
            while not self.closing:
                # kmock gap: no resourceVersion, so a watch could not resume; too old → 410
                if cursor < self.compacted:
                    await send({"type": "ERROR", "object": ApiError(
                        410, "Expired", f"too old resource version: {cursor} "
                                        f"({self.compacted})").status()})
                    break
                wake = self.wake()
                for ev in [e for e in self.history if e.rv > cursor]:
                    cursor = ev.rv
                    if ev.kind is not k:
                        continue
                    now, before = matches(ev.obj), matches(ev.old)
                    if ev.type == "DELETED":
                        kind = "DELETED" if now else None
                    elif now:
                        kind = ev.type if before or ev.type == "ADDED" else "ADDED"
                    else:
                        kind = "DELETED" if before and ev.type == "MODIFIED" else None
                    if kind is not None:
                        await send({"type": kind, "object": ev.obj})
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    if truthy(q.get("allowWatchBookmarks")):
                        await send({"type": "BOOKMARK", "object": {
                            "kind": k.kind, "apiVersion": k.api_version,
                            "metadata": {"resourceVersion": str(self.rv)}}})
                    break
                if raw.transport is None or raw.transport.is_closing():
                    break
                try:
                    await asyncio.wait_for(wake.wait(), min(remaining or 1.0, 1.0))
                except TimeoutError:
                    pass
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return resp

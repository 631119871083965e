"""Talking to one cluster: which credentials, which namespace, and raw JSON calls.

Where the credentials come from, in order: the queue's `context` in the agent's
kubeconfig (`[backends.kubernetes] kubeconfig`, else `KUBECONFIG`, else
`~/.kube/config`), that file's current context, and inside a pod without a
kubeconfig, the pod's service account.

The namespace of a run: its resource args, then the queue config, then the
kubeconfig context's namespace (or the service account's), then `default`.

Objects are read as plain JSON (`_preload_content=False`): the backend works on
dicts the way `kubectl get -o json` shows them, and is spared the client's model
classes (and their bugs: kubernetes-client/python#2596 mangles preloaded logs).
Every call here blocks; the backend runs them in threads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch_tui.core.errors import BackendError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Target:
    """Which cluster (kubeconfig file and context; None: in-cluster or the default)."""

    kubeconfig: str | None
    context: str | None


class Cluster:
    """One cluster's API clients and the namespace its context names."""

    def __init__(self, target: Target) -> None:
        from kubernetes import client, config

        self.target = target
        cfg = client.Configuration()
        self.context_namespace: str | None = None
        path = target.kubeconfig or os.environ.get("KUBECONFIG") or str(
            Path.home() / ".kube" / "config")
        in_cluster = not Path(path.split(os.pathsep)[0]).is_file() and bool(
            os.environ.get("KUBERNETES_SERVICE_HOST"))
        try:
            if in_cluster and target.context is None:
                config.load_incluster_config(client_configuration=cfg)
                ns_file = SA_DIR / "namespace"
                if ns_file.is_file():
                    self.context_namespace = ns_file.read_text().strip() or None
            else:
                config.load_kube_config(config_file=path, context=target.context,
                                        client_configuration=cfg, persist_config=False)
                contexts, active = config.list_kube_config_contexts(config_file=path)
                chosen = active
                if target.context is not None:
                    chosen = next((c for c in contexts if c.get("name") == target.context), None)
                self.context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
        except config.ConfigException as exc:
            where = f"context '{target.context}' of " if target.context else ""
            raise BackendError(
                f"kubernetes: cannot use {where}kubeconfig {path}: {exc}.") from exc
        except OSError as exc:
            raise BackendError(f"kubernetes: cannot read kubeconfig {path}: {exc}.") from exc
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)

    def namespace(self, resource_args: dict[str, Any], queue_config: dict[str, Any]) -> str:
        return str(resource_args.get("namespace") or queue_config.get("namespace")
                   or self.context_namespace or DEFAULT_NAMESPACE)

    # ------------------------------------------------------------ raw JSON calls

    def call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """`method(*args)` with its JSON body as a dict; ApiException is the caller's."""
        resp = method(*args, _preload_content=False, **kwargs)
        try:
            return json.loads(resp.data or b"{}")
        finally:
            resp.release_conn()


def status_code(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def api_message(exc: BaseException) -> str:
    """The API server's own sentence from an ApiException (its Status body)."""
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
            if message:
                return str(message).rstrip(".")
        except (ValueError, AttributeError):
            pass
    reason = getattr(exc, "reason", None) or str(exc)
    return str(reason).strip().rstrip(".")

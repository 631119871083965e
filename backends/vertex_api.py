"""Talking to Vertex AI's JobService with `google-cloud-aiplatform`'s low-level client.

The SDK is imported here on first use only (it takes seconds to import), never by
the plugin, core or the CLI. Every call blocks; the backend runs them in threads.

Where: `{location}-aiplatform.googleapis.com` over REST, or the queue's (or the
agent's `[backends.vertex]`) `api_endpoint`. Credentials, in order: anonymous for
a plain `http://` endpoint (a stand-in on loopback: nothing is sent to Google) or
with `anonymous = true`; the service-account key file `credentials_file`; else
Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's,
a metadata server). A missing one is one sentence, not a traceback.

Job states are compared as `JobState` members: on Python 3.11 proto-plus enums
stringify as numbers, so `str(state)` is "3", not "JOB_STATE_RUNNING".
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launch_tui.core.backend import RunStatus
from launch_tui.core.errors import BackendError
from launch_tui.core.model import RunState

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_REST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")


@dataclass(frozen=True)
class Target:
    """Which JobService, as whom."""

    project: str
    location: str
    api_endpoint: str | None = None
    credentials_file: str | None = None
    anonymous: bool = False

    @property
    def endpoint(self) -> str:
        return self.api_endpoint or f"{self.location}-aiplatform.googleapis.com"

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


def target(project: str, location: str, queue_config: Mapping[str, Any],
           settings: Mapping[str, Any], endpoint: str | None = None) -> Target:
    path = settings.get("credentials_file")
    return Target(
        project=project, location=location,
        api_endpoint=(endpoint or queue_config.get("api_endpoint")
                      or settings.get("api_endpoint") or None),
        credentials_file=os.path.expanduser(str(path)) if path else None,
        anonymous=settings.get("anonymous") is True,
    )


def credentials(t: Target) -> Any:
    """The credentials calls to `t` go with; BackendError naming what is missing."""
    from google.auth.credentials import AnonymousCredentials

    if t.anonymous or t.endpoint.startswith("http://"):
        return AnonymousCredentials()
    if t.credentials_file:
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(
                t.credentials_file, scopes=SCOPES)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"vertex: cannot use credentials_file {t.credentials_file} "
                f"([backends.vertex] in settings.toml): {_first_line(exc)}.") from exc
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise BackendError(
            f"vertex: no Google Cloud credentials for project {t.project}: set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth "
            "application-default login`, or set [backends.vertex] credentials_file in the "
            "agent's settings.toml.") from exc
    return creds


class Vertex:
    """One JobService client (one endpoint, one set of credentials)."""

    def __init__(self, t: Target) -> None:
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.target = t
        self.client = JobServiceClient(
            credentials=credentials(t), transport="rest",
            client_options={"api_endpoint": t.endpoint})

    def create(self, parent: str, body: dict[str, Any]) -> Any:
        return self.client.create_custom_job(parent=parent, custom_job=custom_job(body))

    def get(self, name: str) -> Any:
        return self.client.get_custom_job(name=name)

    def find(self, parent: str, filter_: str) -> list[Any]:
        pages = self.client.list_custom_jobs(request={"parent": parent, "filter": filter_})
        return list(pages)

    def cancel(self, name: str) -> None:
        self.client.cancel_custom_job(name=name)


def custom_job(body: dict[str, Any]) -> Any:
    """The library's CustomJob message from `vertex_rules.custom_job_body`; a field the
    API does not know is one sentence naming it."""
    from google.cloud.aiplatform_v1.types import CustomJob
    from google.protobuf import json_format

    message = CustomJob.pb(CustomJob())
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise BackendError(f"vertex: resource_args.spec does not fit a Vertex AI custom job: "
                           f"{_first_line(exc)}.") from exc
    return CustomJob.wrap(message)


# ---------------------------------------------------------------- errors

def code(exc: BaseException) -> int | None:
    """The HTTP status of a refused call (google.api_core.exceptions), else None."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.GoogleAPICallError):
        return int(exc.code) if exc.code is not None else None
    return None


def refused(what: str, t: Target, exc: BaseException) -> BackendError:
    """One sentence for a call that failed: the service's own message, or why it could
    not be reached (an unreachable endpoint, credentials that do not refresh)."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.GoogleAPICallError):
        message = _REST_PREFIX.sub("", str(exc.message or exc)).strip()
        return BackendError(f"vertex: cannot {what}: {message.rstrip('.')} "
                            f"(HTTP {exc.code}).")
    return BackendError(f"vertex: cannot {what}: {t.endpoint} did not answer "
                        f"({_first_line(exc)}).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


# ---------------------------------------------------------------- states

def _state_table() -> dict[Any, tuple[RunState, str | None]]:
    from google.cloud.aiplatform_v1.types import JobState as S

    return {
        S.JOB_STATE_UNSPECIFIED: (RunState.STARTING, "Vertex AI: the job's state is not "
                                                     "reported yet"),
        S.JOB_STATE_QUEUED: (RunState.STARTING, "Vertex AI: job queued"),
        S.JOB_STATE_PENDING: (RunState.STARTING, "Vertex AI: job pending (provisioning "
                                                 "resources)"),
        S.JOB_STATE_PAUSED: (RunState.STARTING, "Vertex AI: job paused"),
        S.JOB_STATE_RUNNING: (RunState.RUNNING, None),
        S.JOB_STATE_UPDATING: (RunState.RUNNING, None),
        S.JOB_STATE_SUCCEEDED: (RunState.FINISHED, None),
        S.JOB_STATE_FAILED: (RunState.FAILED, "Vertex AI: job failed"),
        S.JOB_STATE_EXPIRED: (RunState.FAILED, "Vertex AI: job expired"),
        S.JOB_STATE_CANCELLING: (RunState.STOPPING, "Vertex AI: job cancelling"),
        S.JOB_STATE_CANCELLED: (RunState.STOPPED, "cancelled on Vertex AI"),
        S.JOB_STATE_PARTIALLY_SUCCEEDED: (
            RunState.FAILED, "Vertex AI: job partially succeeded (some of its workers "
                             "failed), which launch-tui counts as failed"),
    }


_TABLE: dict[Any, tuple[RunState, str | None]] = {}


def status_of(job: Any) -> RunStatus:
    """The run's status from a CustomJob: its `state` member, and for a failure the
    service's `error.message`."""
    if not _TABLE:
        _TABLE.update(_state_table())
    state = job.state
    run_state, reason = _TABLE.get(state, (RunState.STARTING, None))
    if reason is None and run_state == RunState.STARTING:
        reason = f"Vertex AI: job state {state_name(state)}"
    message = error_message(job)
    if run_state == RunState.FAILED and message:
        reason = f"{reason}: {message}"
    return RunStatus(run_state, reason)


def state_name(state: Any) -> str:
    name = getattr(state, "name", None) or f"state {int(state)}"
    return str(name).removeprefix("JOB_STATE_")


def error_message(job: Any) -> str:
    error = getattr(job, "error", None)
    return str(getattr(error, "message", "") or "").strip() if error is not None else ""


def job_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# ---------------------------------------------------------------- the run's log

def history(job: Any) -> list[tuple[float, str]]:
    """What the run's log shows of the job, without Cloud Logging: a line saying so,
    then the job's creation, start, cancellation, end and error, each once.

    Derived from the job alone, so the lines are the same (and in the same order) when
    an agent re-attaches and reads them again; each call returns the earlier lines
    first, then any new ones."""
    from google.cloud.aiplatform_v1.types import JobState as S

    created = _ts(job.create_time)
    lines = [
        (created, f"[vertex] Cloud Logging is not read by launch-tui: this log shows the "
                  f"job's state changes and errors; its own output is in Cloud Logging "
                  f"(resource.type=ml_job, job_id={job_id(job.name)})."),
        (created, f"[vertex] custom job {job.name} ({job.display_name}) created"),
    ]
    if job.start_time:
        lines.append((_ts(job.start_time), "[vertex] job running"))
    state = job.state
    if state in (S.JOB_STATE_CANCELLING, S.JOB_STATE_CANCELLED):
        lines.append((_ts(job.update_time), "[vertex] cancel requested: job cancelling"))
    status = status_of(job)
    if status.state.terminal:
        ended = _ts(job.end_time) or _ts(job.update_time)
        lines.append((ended, f"[vertex] job ended: {state_name(state)}"))
        message = error_message(job)
        if message and state != S.JOB_STATE_CANCELLED:
            lines.append((ended, f"[vertex] error: {message}"))
    return lines


def _ts(value: Any) -> float:
    if not value:
        return time.time()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value.timestamp())

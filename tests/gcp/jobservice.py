"""A stand-in for Vertex AI's JobService, on 127.0.0.1, for the real SDK client.

Google ships no emulator for Vertex AI. The REST surface of the custom-job half
of JobService is small, and the library's own proto-plus messages (de)serialize
its bodies, so this serves what `aiplatform_v1.JobServiceClient(transport="rest")`
sends, byte for byte as the library reads and writes it:

    POST /v1/projects/{p}/locations/{l}/customJobs                CreateCustomJob
    GET  /v1/projects/{p}/locations/{l}/customJobs/{id}           GetCustomJob
    GET  /v1/projects/{p}/locations/{l}/customJobs?filter=…       ListCustomJobs
    POST /v1/projects/{p}/locations/{l}/customJobs/{id}:cancel    CancelCustomJob

Bodies are parsed with `CustomJob.from_json` (unknown fields refused, as Vertex
does) and written with `CustomJob.to_json`. Errors are Google's JSON error body
(`{"error": {"code", "message", "status"}}`), which the client turns into
`google.api_core.exceptions`. `filter` understands what the backend sends:
`labels.KEY="VALUE"` terms joined by AND.

No controller runs the jobs: a created job stays `JOB_STATE_QUEUED` until the test
moves it (`set_state`, `fail`). A cancel moves it to `JOB_STATE_CANCELLING`, and
`cancel_after_s` later to `JOB_STATE_CANCELLED` with the error Vertex gives a
cancelled job (code 1, "CANCELED"); None leaves that to the test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_JOBS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/customJobs$")
_JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/customJobs/[^/:]+)(:cancel)?$")
_FILTER_TERM = re.compile(r'^labels\.([A-Za-z0-9_-]+)\s*=\s*"?([^"]*)"?$')
_TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
             "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}


class ServiceError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None


@dataclass
class JobService:
    """The jobs and the hooks a test drives them with. Thread-safe."""

    cancel_after_s: float | None = 0.3
    jobs: dict[str, Any] = field(default_factory=dict)  # name -> aiplatform_v1.CustomJob
    calls: list[Call] = field(default_factory=list)
    # A create answered with this error, once (code, status, message).
    fail_next_create: tuple[int, str, str] | None = None
    # Seconds a create waits after storing the job and before answering (a client
    # that dies meanwhile made a job it never heard of).
    create_delay_s: float = 0.0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _next: int = 1000
    _timers: list[threading.Timer] = field(default_factory=list)
    endpoint: str = ""

    # ------------------------------------------------------------ hooks

    def created(self) -> list[Any]:
        with self._lock:
            return list(self.jobs.values())

    def only_job(self) -> Any:
        jobs = self.created()
        assert len(jobs) == 1, [j.name for j in jobs]
        return jobs[0]

    def set_state(self, name: str, state: str, message: str | None = None,
                  code: int = 13) -> None:
        """Move a job to `state` (a JobState name, with or without JOB_STATE_); with
        `message`, set its error as Vertex does for failed jobs."""
        from google.cloud.aiplatform_v1.types import JobState
        from google.rpc import status_pb2

        if not state.startswith("JOB_STATE_"):
            state = f"JOB_STATE_{state}"
        with self._lock:
            job = self.jobs[name]
            now = _now()
            job.state = JobState[state]
            job.update_time = now
            if state == "JOB_STATE_RUNNING" and not job.start_time:
                job.start_time = now
            if state in _TERMINAL:
                job.end_time = now
            if message is not None:
                job.error = status_pb2.Status(code=code, message=message)

    def fail(self, name: str, message: str) -> None:
        self.set_state(name, "FAILED", message)

    def creates(self) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.method == "POST" and c.path.endswith("Jobs"))

    # ------------------------------------------------------------ the API

    def create(self, parent: str, body: bytes) -> Any:
        from google.cloud.aiplatform_v1.types import CustomJob, JobState

        with self._lock:
            if self.fail_next_create is not None:
                code, status, message = self.fail_next_create
                self.fail_next_create = None
                raise ServiceError(code, status, message)
        try:
            job = CustomJob.from_json(body.decode())
        except Exception as exc:
            raise ServiceError(400, "INVALID_ARGUMENT", f"Invalid JSON payload: {exc}") from exc
        if not job.display_name:
            raise ServiceError(400, "INVALID_ARGUMENT", "display_name is required.")
        if not job.job_spec.worker_pool_specs:
            raise ServiceError(400, "INVALID_ARGUMENT",
                               "job_spec.worker_pool_specs must not be empty.")
        for i, pool in enumerate(job.job_spec.worker_pool_specs):
            if not pool.container_spec.image_uri:
                raise ServiceError(400, "INVALID_ARGUMENT",
                                   f"worker_pool_specs[{i}].container_spec.image_uri is "
                                   "required.")
        with self._lock:
            self._next += 1
            job.name = f"{parent}/customJobs/{self._next}"
            job.state = JobState.JOB_STATE_QUEUED
            job.create_time = job.update_time = _now()
            self.jobs[job.name] = job
        if self.create_delay_s:
            time.sleep(self.create_delay_s)
        return job

    def get(self, name: str) -> Any:
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                raise ServiceError(404, "NOT_FOUND", f'The CustomJob "{name}" does not exist.')
            return job

    def list(self, parent: str, query: dict[str, list[str]]) -> list[Any]:
        wanted: dict[str, str] = {}
        text = (query.get("filter") or [""])[0].strip()
        for term in filter(None, (t.strip() for t in re.split(r"\s+AND\s+", text))):
            m = _FILTER_TERM.match(term)
            if not m:
                raise ServiceError(400, "INVALID_ARGUMENT", f"Unsupported filter: {term}")
            wanted[m.group(1)] = m.group(2)
        with self._lock:
            return [j for n, j in self.jobs.items() if n.startswith(parent + "/")
                    and all(j.labels.get(k) == v for k, v in wanted.items())]

    def cancel(self, name: str) -> None:
        job = self.get(name)
        from google.cloud.aiplatform_v1.types import JobState

        with self._lock:
            if job.state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED,
                             JobState.JOB_STATE_CANCELLED, JobState.JOB_STATE_EXPIRED,
                             JobState.JOB_STATE_PARTIALLY_SUCCEEDED):
                raise ServiceError(400, "FAILED_PRECONDITION",
                                   f"Cannot cancel {name}: it has ended.")
            self.set_state(name, "CANCELLING")
            if self.cancel_after_s is not None:
                timer = threading.Timer(self.cancel_after_s, self.set_state,
                                        (name, "CANCELLED", "CANCELED", 1))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _handler(service: JobService) -> type[BaseHTTPRequestHandler]:
    from google.cloud.aiplatform_v1.types import CustomJob

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, code: int, body: dict[str, Any] | str) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body: dict[str, Any] | None = None
            with contextlib.suppress(ValueError):
                body = json.loads(raw) if raw else None
            with service._lock:
                service.calls.append(Call(method, url.path, query, body))
            try:
                self._reply(200, self._route(method, url.path, query, raw))
            except ServiceError as exc:
                self._reply(exc.code, {"error": {"code": exc.code, "message": exc.message,
                                                 "status": exc.status}})

        def _route(self, method: str, path: str, query: dict[str, list[str]],
                   raw: bytes) -> dict[str, Any] | str:
            m = _JOBS.match(path)
            if m and method == "POST":
                return CustomJob.to_json(service.create(m.group(1), raw))
            if m and method == "GET":
                jobs = service.list(m.group(1), query)
                return {"customJobs": [json.loads(CustomJob.to_json(j)) for j in jobs]}
            m = _JOB.match(path)
            if m and method == "GET" and not m.group(2):
                return CustomJob.to_json(service.get(m.group(1)))
            if m and method == "POST" and m.group(2):
                service.cancel(m.group(1))
                return {}
            raise ServiceError(404, "NOT_FOUND", f"{method} {path} is not served here.")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-call (the tests SIGKILL agents) is not the server's error.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(service: JobService | None = None) -> Iterator[JobService]:
    """The stand-in on a free port of 127.0.0.1; `service.endpoint` is its URL."""
    service = service or JobService()
    server = _Server(("127.0.0.1", 0), _handler(service))
    thread = threading.Thread(target=server.serve_forever, name="vertex-standin", daemon=True)
    thread.start()
    service.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        service.close()
        thread.join(5)

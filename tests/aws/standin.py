"""A SageMaker stand-in on 127.0.0.1: moto's server, its SageMaker backend extended.

`moto[server]`'s `ThreadedMotoServer` serves the real AWS wire protocols (boto3
talks to it by `endpoint_url`); STS, IAM, S3, ECR and CloudWatch Logs work as
they are. Plain moto 5.2 gets a training job wrong in ways the backend would
never notice, so the server's SageMaker handlers are extended (server side, in
this process; the client is untouched):

    CreateTrainingJob   the job starts InProgress/Starting, not Completed; its
                        Environment is kept; a second job of a name is refused
                        with SageMaker's own ResourceInUse error; a role that is
                        not in IAM is refused as SageMaker refuses it ("Could not
                        assume role …"); each call is counted per name, and the
                        answer can be held back (`create_delay_s`) after the job is made
    StopTrainingJob     implemented: InProgress → Stopping, then Stopped after
                        `stop_delay_s` (SageMaker waits for the container to exit);
                        a job not InProgress is refused with ValidationException
    DescribeTrainingJob no TrainingEndTime while the job runs

The test plays SageMaker's control plane and the "training container" with the
hooks: `set_state` moves a job's status, SecondaryStatus (with a message) and
FailureReason; `write_logs` puts lines into the job's CloudWatch streams
(`/aws/sagemaker/TrainingJobs`, `{job}/algo-N-…`) through boto3.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import boto3
from moto.core.utils import utcnow
from moto.iam.models import iam_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.responses import SageMakerResponse

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
TERMINAL = ("Completed", "Failed", "Stopped")

_lock = threading.Lock()
_installed = False
# Server-side bookkeeping the stand-in keeps beside moto's objects (attributes added
# to moto's job would show up in its describe output).
_create_calls: collections.Counter[str] = collections.Counter()
_stop_delay_s = [0.3]
_create_delay_s = [0.0]  # between making a job and answering: a client that dies meanwhile


def _job(backend: Any, name: str) -> Any:
    try:
        return backend.training_jobs[name]
    except KeyError:
        arn = sm_models.FakeTrainingJob.arn_formatter(name, backend.account_id,
                                                      backend.region_name)
        raise ValidationError(message=f"Requested resource not found: Could not find "
                                      f"training job '{arn}'.") from None


def _transition(job: Any, secondary: str, message: str) -> None:
    now = utcnow()
    transitions = job.secondary_status_transitions
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
    job.secondary_status = secondary
    job.last_modified_time = now


def _apply(job: Any, status: str, secondary: str | None, message: str | None,
           failure_reason: str | None) -> None:
    with _lock:
        job.training_job_status = status
        _transition(job, secondary or status, message or "")
        if failure_reason is not None:
            job.failure_reason = failure_reason
        if status in TERMINAL:
            job.training_end_time = utcnow()
            last = job.secondary_status_transitions[-1]
            last.setdefault("EndTime", job.training_end_time)


_moto_create = SageMakerResponse.create_training_job


def _create_training_job(self: SageMakerResponse) -> Any:
    name = self._get_param("TrainingJobName")
    backend = self.sagemaker_backend
    with _lock:
        _create_calls[name] += 1
        if name in backend.training_jobs:
            arn = backend.training_jobs[name].arn
            raise ResourceInUseException(
                message="Training job names must be unique within an AWS account and region, "
                        f"and a training job with this name already exists ({arn})")
        role = self._get_param("RoleArn") or ""
        roles = iam_backends[backend.account_id][backend.partition].roles.values()
        if not any(r.arn == role for r in roles):
            raise ValidationError(
                message=f"Could not assume role {role}. Please ensure that the role exists and "
                        "allows principal 'sagemaker.amazonaws.com' to assume the role.")
        result = _moto_create(self)
        job = backend.training_jobs[name]
        job.environment = self._get_param("Environment") or {}
        job.training_job_status = "InProgress"
        job.training_end_time = None
        job.training_start_time = None
        job.secondary_status_transitions = []
        _transition(job, "Starting", "Launching requested ML instances")
    if _create_delay_s[0]:
        time.sleep(_create_delay_s[0])
    return result


def _stop_training_job(self: SageMakerResponse) -> Any:
    from moto.core.responses import EmptyResult

    name = self._get_param("TrainingJobName")
    job = _job(self.sagemaker_backend, name)
    with _lock:
        if job.training_job_status != "InProgress":
            raise ValidationError(message="The request was rejected because the training job "
                                          f"is in status {job.training_job_status}.")
    _apply(job, "Stopping", "Stopping", "Stopping the training job", None)

    def stopped() -> None:
        time.sleep(_stop_delay_s[0])
        if job.training_job_status == "Stopping":
            _apply(job, "Stopped", "Stopped", "The training job was stopped", None)

    threading.Thread(target=stopped, daemon=True).start()
    return EmptyResult()


def install() -> None:
    """Extend moto's SageMaker handlers in this process (once)."""
    global _installed
    with _lock:
        if _installed:
            return
        SageMakerResponse.create_training_job = _create_training_job  # type: ignore[method-assign]
        SageMakerResponse.stop_training_job = _stop_training_job  # type: ignore[attr-defined]
        _installed = True


class StandIn:
    """The running server, clients to it, and the test's hooks."""

    def __init__(self) -> None:
        install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name=REGION)
        self._clients: dict[str, Any] = {}
        self._log_ts = 0

    def stop(self) -> None:
        self.server.stop()

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self.endpoint)
        return self._clients[service]

    @property
    def stop_delay_s(self) -> float:
        return _stop_delay_s[0]

    @stop_delay_s.setter
    def stop_delay_s(self, value: float) -> None:
        _stop_delay_s[0] = value

    @property
    def create_delay_s(self) -> float:
        return _create_delay_s[0]

    @create_delay_s.setter
    def create_delay_s(self, value: float) -> None:
        _create_delay_s[0] = value

    # ------------------------------------------------------------ world

    def create_role(self, name: str) -> str:
        iam = self.client("iam")
        try:
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def create_bucket(self, name: str) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return f"s3://{name}"

    # ------------------------------------------------------------ SageMaker's side

    def backend(self) -> Any:
        return sm_models.sagemaker_backends[ACCOUNT][REGION]

    def job_names(self) -> list[str]:
        return sorted(self.backend().training_jobs)

    def create_calls(self, name: str) -> int:
        return _create_calls[name]

    def describe(self, name: str) -> dict[str, Any]:
        return self.client("sagemaker").describe_training_job(TrainingJobName=name)

    def set_state(self, name: str, status: str, secondary: str | None = None,
                  message: str | None = None, failure_reason: str | None = None) -> None:
        """Move a job as SageMaker would: `InProgress`/`Training`, `Failed` with a reason…"""
        _apply(_job(self.backend(), name), status, secondary, message, failure_reason)

    # ------------------------------------------------------------ the training container

    def write_logs(self, job: str, stream: str, *lines: str) -> str:
        """Append `lines` to the job's stream `{job}/{stream}` (made when missing)."""
        logs = self.client("logs")
        full = f"{job}/{stream}"
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        try:
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=full)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        events = []
        for line in lines:
            # Strictly increasing times keep each stream's order on any reader.
            self._log_ts = max(self._log_ts + 1, int(time.time() * 1000))
            events.append({"timestamp": self._log_ts, "message": line})
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=full, logEvents=events)
        return full

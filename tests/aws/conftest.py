"""The SageMaker stand-in (tests/aws/standin.py) as fixtures.

`aws_server`: one moto server on 127.0.0.1 for the session. `aws`: per test, that
server plus this process's environment pointed at it the way an agent's would be
(fake credentials; no shared config files; the instance-metadata lookup off, so
nothing is ever sent beyond loopback), and an IAM role and an S3 bucket to use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.aws.standin import CREDENTIALS, REGION, StandIn

ROLE = "launch-tui-training"


@pytest.fixture(scope="session")
def aws_server() -> Iterator[StandIn]:
    server = StandIn()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Aws:
    server: StandIn
    role_arn: str
    bucket: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def settings(self, **extra: object) -> str:
        """The agent's settings.toml section pointing at the stand-in, polling fast."""
        lines = ["[backends.sagemaker]", f'endpoint_url = "{self.endpoint}"',
                 "poll_max_s = 0.5", "log_settle_s = 0.3"]
        lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}"
                  for k, v in extra.items()]
        return "\n".join(lines) + "\n"


def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws(aws_server: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Aws:
    aws_environment(monkeypatch, tmp_path)
    aws_server.stop_delay_s = 0.3
    aws_server.create_delay_s = 0.0
    return Aws(aws_server, aws_server.create_role(ROLE),
               aws_server.create_bucket("launch-tui-test-output"))


__all__ = ["REGION", "Aws"]

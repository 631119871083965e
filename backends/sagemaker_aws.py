"""Talking to AWS for a sagemaker queue: which credentials, which region, which endpoint.

Where they come from, in order:

    region       the queue's `region`, `[backends.sagemaker] region`, then boto3's own
                 (AWS_REGION / AWS_DEFAULT_REGION, the profile's region)
    profile      the queue's `profile`, `[backends.sagemaker] profile`, then boto3's
                 (AWS_PROFILE, `default`)
    credentials  boto3's chain for that profile (environment, files, SSO, instance role)
    endpoint     `[backends.sagemaker] endpoint_url` (one URL for every service, e.g. a
                 moto server in the tests), then boto3's AWS_ENDPOINT_URL. Not a queue
                 key: the agent's credentials sign what goes there, so the agent's
                 owner picks it, not whoever writes a queue's config.

boto3 is imported here only, and only when a sagemaker queue runs. Every call
blocks; `call` runs one in a thread and turns what went wrong into one
`BackendError` sentence (the service's own message for refusals).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from launch_tui.core.errors import BackendError


@dataclass(frozen=True)
class Target:
    region: str | None
    profile: str | None
    endpoint_url: str | None


@dataclass(frozen=True)
class Identity:
    account: str
    partition: str


def target_for(queue_config: dict[str, Any], settings: dict[str, Any]) -> Target:
    return Target(
        region=queue_config.get("region") or settings.get("region") or None,
        profile=queue_config.get("profile") or settings.get("profile") or None,
        endpoint_url=settings.get("endpoint_url") or None,
    )


class Aws:
    """One (region, profile, endpoint)'s clients, made on first use."""

    def __init__(self, target: Target) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        self.target = target
        try:
            self.session = boto3.session.Session(profile_name=target.profile,
                                                 region_name=target.region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise BackendError(f"sagemaker: AWS profile '{target.profile}' is not configured "
                               "on this agent's machine (~/.aws/config).") from exc
        self.region: str | None = self.session.region_name
        if not self.region:
            raise BackendError(
                "sagemaker: no AWS region: set region in the queue's config (or "
                "[backends.sagemaker] region in the agent's settings, or AWS_REGION).")
        self._config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 4},
                                              connect_timeout=10, read_timeout=30)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._identity: Identity | None = None

    def client(self, service: str) -> Any:
        with self._lock:  # boto3 sessions are not safe to make clients from concurrently
            if service not in self._clients:
                self._clients[service] = self.session.client(
                    service, endpoint_url=self.target.endpoint_url, config=self._config)
            return self._clients[service]

    def identity(self) -> Identity:
        """The caller's account and partition (STS GetCallerIdentity), cached."""
        if self._identity is None:
            who = self.client("sts").get_caller_identity()
            arn = str(who.get("Arn") or "arn:aws:")
            self._identity = Identity(account=str(who["Account"]),
                                      partition=arn.split(":")[1] or "aws")
        return self._identity


async def call(what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """`fn(*args, **kw)` in a thread; a ClientError is the caller's to judge (its code
    and message: `error_code`, `error_message`); anything else is one sentence."""
    import botocore.exceptions as bx

    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except bx.ClientError:
        raise
    except BackendError:
        raise
    except bx.NoCredentialsError as exc:
        raise BackendError(
            f"sagemaker: cannot {what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or a profile with credentials).") from exc
    except bx.NoRegionError as exc:
        raise BackendError(f"sagemaker: cannot {what}: no AWS region is set.") from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise BackendError(f"sagemaker: cannot {what}: {_sentence(exc)}.") from exc
    except bx.BotoCoreError as exc:
        raise BackendError(f"sagemaker: cannot {what}: {_sentence(exc)}.") from exc


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


def error_message(exc: BaseException) -> str:
    err = getattr(exc, "response", {}).get("Error", {})
    return _sentence(err.get("Message") or exc)


def refused(what: str, exc: BaseException) -> BackendError:
    """A ClientError as one sentence: what was being done, and the service's reason."""
    code = error_code(exc)
    if code in ("UnrecognizedClientException", "InvalidClientTokenId",
                "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException"):
        return BackendError(f"sagemaker: cannot {what}: AWS refused the agent's credentials "
                            f"({code}: {error_message(exc)}).")
    return BackendError(f"sagemaker: cannot {what}: {error_message(exc)}.")


def _sentence(value: object) -> str:
    return " ".join(str(value).split()).rstrip(".")

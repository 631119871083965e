"""Masking rules for secrets in what people are shown (unit level; the CLI and the
facade are checked in test_secrets.py)."""

from __future__ import annotations

from launch_tui.core import redact
from launch_tui.core.model import ItemState, Priority, Queue, QueueConfig, QueueItem


def test_url_passwords_are_masked_wherever_they_stand() -> None:
    text = "fatal: could not read https://bob:ghp_abc123@github.com/x/y.git (exit 128)"
    assert redact.mask_url(text) == (
        "fatal: could not read https://bob:********@github.com/x/y.git (exit 128)"
    )
    assert redact.mask_url("postgresql://u:p%40ss@db:5432/launch") == (
        "postgresql://u:********@db:5432/launch"
    )
    # No password, nothing to mask; a user name alone is not a secret.
    for plain in ("https://github.com/x/y.git", "ssh://git@host/x", "git@host:x/y.git"):
        assert redact.mask_url(plain) == plain


def test_env_values_are_masked_by_name_or_by_the_queue_list() -> None:
    env = {"WANDB_API_KEY": "k", "HF_TOKEN": "t", "DB_PASSWORD": "p", "HF_HOME": "/data/hf",
           "MY_VAR": "v", "DATABASE_URL": "postgresql://a:b@h/d"}
    masked = redact.mask_env(env, ["MY_VAR"])
    assert masked == {"WANDB_API_KEY": redact.MASK, "HF_TOKEN": redact.MASK,
                      "DB_PASSWORD": redact.MASK, "HF_HOME": "/data/hf", "MY_VAR": redact.MASK,
                      "DATABASE_URL": f"postgresql://a:{redact.MASK}@h/d"}


def test_a_masked_value_sent_back_keeps_the_stored_one() -> None:
    stored = {"WANDB_API_KEY": "real", "HF_HOME": "/a"}
    new = {"WANDB_API_KEY": redact.MASK, "HF_HOME": "/b", "NEW_TOKEN": "n"}
    assert redact.unmask_env(new, stored) == {"WANDB_API_KEY": "real", "HF_HOME": "/b",
                                              "NEW_TOKEN": "n"}


def test_a_queue_snapshot_is_masked_and_the_original_untouched() -> None:
    config = QueueConfig(resource_args={"env": {"S3_SECRET": "s"}, "timeout_s": 5},
                         env={"WANDB_API_KEY": "k", "X": "1"},
                         extra={"secret_env": ["X"]})
    q = Queue("p", "q", "docker", config, 0.0, 0.0)
    shown = redact.queue(q)
    assert shown.config.env == {"WANDB_API_KEY": redact.MASK, "X": redact.MASK}
    assert shown.config.resource_args == {"env": {"S3_SECRET": redact.MASK}, "timeout_s": 5}
    assert q.config.env == {"WANDB_API_KEY": "k", "X": "1"}


def test_an_item_shows_its_overrides_and_error_masked() -> None:
    item = QueueItem(1, "p", "q", "j", 0, {}, {"env": {"HF_TOKEN": "t"}}, {}, Priority.MEDIUM,
                     ItemState.FAILED, 0.0, 0.0,
                     error_message="fetch https://u:tok@h/x.git failed")
    shown = redact.item(item)
    assert shown.resource_overrides == {"env": {"HF_TOKEN": redact.MASK}}
    assert shown.error_message == f"fetch https://u:{redact.MASK}@h/x.git failed"
    assert item.error_message == "fetch https://u:tok@h/x.git failed"

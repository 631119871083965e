"""Validation against frozen schemas, whose accepted instances are remembered."""

from __future__ import annotations

import pytest

from launch_tui.core.errors import ValidationError
from launch_tui.core.schemas import validate

SCHEMA = {
    "type": "object",
    "properties": {"lr": {"type": "number", "maximum": 1}, "tag": {"type": "string"}},
    "additionalProperties": False,
}


def test_an_accepted_instance_does_not_vouch_for_a_different_one() -> None:
    validate({"lr": 0.5, "tag": "a"}, SCHEMA, "config", frozen=True)
    validate({"tag": "a", "lr": 0.5}, SCHEMA, "config", frozen=True)  # same, keys reordered
    with pytest.raises(ValidationError, match=r"config\.lr: 5 is greater than the maximum"):
        validate({"lr": 5, "tag": "a"}, SCHEMA, "config", frozen=True)
    # 1 and true are different JSON values: remembering one must not accept the other.
    validate({"lr": 1}, SCHEMA, "config", frozen=True)
    with pytest.raises(ValidationError, match=r"config\.lr: True is not of type 'number'"):
        validate({"lr": True}, SCHEMA, "config", frozen=True)


@pytest.mark.parametrize("instance", [{"lr": 2**70}, {"lr": 0.5, 1: "x"}])
def test_instances_json_cannot_spell_are_still_validated(instance: dict) -> None:
    # Beyond 64 bits, or with a non-string key: not remembered, but checked every time.
    for _ in range(2):
        with pytest.raises(ValidationError):
            validate(instance, SCHEMA, "config", frozen=True)
    validate(instance, {"type": "object"}, "config", frozen=True)  # and pass when valid

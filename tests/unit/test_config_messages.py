"""Messages that changed deliberately when the role policy left the library's models."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import StackConfig, new_problems


def test_an_invalid_restore_check_is_not_also_a_missing_observability(stack_config: StackConfig) -> None:
    # Before the split, a production refinement failing inside platform:operations made the whole
    # key invalid, and the role rule then also reported observability as missing although it was set.
    def short(raw: dict[str, Any]) -> None:
        raw["platform:operations"]["restoreCheck"]["retentionDays"] = 3

    assert new_problems(stack_config, "prod", short) == [
        "platform:operations.restoreCheck.retentionDays: must be >= 7 for role production (got 3)"
    ]


@pytest.mark.parametrize(
    ("stack", "key"), [("prod", "database"), ("tooling", "cluster"), ("prod", "operations")]
)
def test_a_key_that_is_not_a_map_says_so_without_class_names(
    stack_config: StackConfig, stack: str, key: str
) -> None:
    def text(raw: dict[str, Any]) -> None:
        raw[f"platform:{key}"] = "fast"

    problems = new_problems(stack_config, stack, text)
    assert f"platform:{key}: must be a map of keys (got 'fast')" in problems
    assert not any("instance of" in p or "Settings" in p or "Production" in p for p in problems), problems

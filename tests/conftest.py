"""Shared fixtures: run the real program under recording mocks.

The suite is split by cost, and each folder's tests carry its marker (``-m unit`` and so on):
``tests/unit`` mirrors the library and the program (components, settings, rules, under mocks),
``tests/stacks`` plans the committed stacks end to end, ``tests/integration`` runs the tools and
servers nobody here wrote (checkov, the upstream schemas, PostgreSQL, promtool, git, pip).

``offline.mocks.RecordingMonitor`` records every registered resource with its options (parent,
provider, protect, dependencies) and raises on a duplicate URN, so every test that plans a stack
also checks URN uniqueness.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from program.environments import Environments

_KINDS = ("unit", "stacks", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its folder's kind; a test outside the three folders is an error."""
    for item in items:
        kind = next((k for k in _KINDS if f"/tests/{k}/" in str(item.path)), None)
        if kind is None:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in tests/unit, tests/stacks or tests/integration"
            )
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def stack_config() -> Callable[[str], dict[str, Any]]:
    """A deep copy of a committed stack file's config, safe to mutate in a test."""
    cache: dict[str, dict[str, Any]] = {}

    def load(stack: str) -> dict[str, Any]:
        if stack not in cache:
            cache[stack] = runner.read_stack_config(stack)
        return copy.deepcopy(cache[stack])

    return load


@pytest.fixture(scope="session")
def committed_plans() -> dict[str, runner.Plan]:
    """One plan per committed stack file, computed once per test session."""
    return {stack: runner.run(stack) for stack in runner.stack_names()}


@pytest.fixture
def plan_with() -> Callable[..., runner.Plan]:
    """Plan a stack with its config altered: ``plan_with("prod", {"platform:cluster": ...})``;
    ``environments`` (``tests.harness.environments_with``) replaces the committed environments.yaml."""

    def plan(
        stack: str,
        changes: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        environments: Environments | None = None,
    ) -> runner.Plan:
        config = runner.read_stack_config(stack)
        config.update(changes or {})
        for key in remove:
            config.pop(key, None)
        return runner.run(stack, config=config, environments=environments)

    return plan

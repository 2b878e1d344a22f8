"""Evaluating the platform's ValidatingAdmissionPolicy CEL with cel-python, for the tests of every
policy (Argo CD's, the CI build pods', the workloads from Git): one evaluator, so the policies are
all judged the same way."""

from __future__ import annotations

import functools
from typing import Any

import pytest


def celpy_module() -> Any:
    """cel-python, or the test is skipped saying why."""
    return pytest.importorskip(
        "celpy", reason="cel-python is not installed (pip install cel-python==0.5.0): CEL not evaluated"
    )


@functools.cache
def program(expression: str) -> Any:
    celpy = celpy_module()
    env = celpy.Environment()
    return env.program(env.compile(expression))


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    """The expression's value; an evaluation error fails the test (the API server would deny
    through failurePolicy Fail)."""
    celpy = celpy_module()
    try:
        return program(expression).evaluate(activation)
    except celpy.CELEvalError as error:
        pytest.fail(f"CEL evaluation error (would deny through failurePolicy): {error}\n  in: {expression}")


def holds(expression: str, activation: dict[str, Any]) -> bool:
    result = evaluate(expression, activation)
    assert isinstance(result, celpy_module().celtypes.BoolType), f"not a bool: {result!r} from {expression}"
    return bool(result)

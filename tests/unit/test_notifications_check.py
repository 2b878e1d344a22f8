"""The offline notifications check reads what the plan declares, so a plan whose notification
config and ExternalSecret disagree fails it (it does not re-render the config from settings)."""

from __future__ import annotations

import copy
import dataclasses

from offline import runner, validate
from offline.mocks import unwrap_secrets

RELEASE = "kubernetes:helm.sh/v3:Release"


def _tampered(plan: runner.Plan, *, drop_secret: bool = False, key: str | None = None) -> runner.Plan:
    registrations = []
    for reg in plan.registrations:
        if drop_secret and reg.inputs.get("metadata", {}).get("name") == "argocd-notifications-secret":
            continue
        if key is not None and reg.type == RELEASE and reg.inputs.get("chart") == "argo-cd":
            inputs = copy.deepcopy(reg.inputs)
            values = unwrap_secrets(inputs["values"])
            values["notifications"]["notifiers"] = {"service.telegram.deploys": f"token: ${key}\n"}
            inputs["values"] = values
            registrations.append(dataclasses.replace(reg, inputs=inputs))
            continue
        registrations.append(reg)
    return dataclasses.replace(plan, registrations=registrations)


def test_the_committed_tooling_plan_passes(committed_plans: dict[str, runner.Plan]) -> None:
    result = validate.check_stack_notifications(committed_plans["tooling"])
    assert result.failures == [] and result.objects == 1


def test_a_service_key_the_external_secret_does_not_provide_fails(
    committed_plans: dict[str, runner.Plan],
) -> None:
    result = validate.check_stack_notifications(_tampered(committed_plans["tooling"], key="telegram-other"))
    assert any("telegram-other" in failure.message for failure in result.failures), result.failures


def test_notifications_without_their_external_secret_fail(committed_plans: dict[str, runner.Plan]) -> None:
    result = validate.check_stack_notifications(_tampered(committed_plans["tooling"], drop_secret=True))
    assert any("no ExternalSecret argocd-notifications-secret" in f.message for f in result.failures)


def test_a_stack_without_argocd_is_not_counted(committed_plans: dict[str, runner.Plan]) -> None:
    result = validate.check_stack_notifications(committed_plans["prod"])
    assert result.failures == [] and result.objects == 0 and result.notes

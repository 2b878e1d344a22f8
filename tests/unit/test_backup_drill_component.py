"""platform:operations.backupDrill: the monthly managed-backup drill, fenced, with its own identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from scw_platform import drill
from tests.harness import StackConfig, new_problems, plaintext_secrets, unwrap

OPS_IMAGE = "rg.fr-par.scw.cloud/acme-platform/platform-ops@sha256:" + "a" * 64


@pytest.fixture(scope="module")
def prod_with_drill() -> runner.Plan:
    config = runner.read_stack_config("prod")
    operations = dict(config["platform:operations"])
    operations["backupDrill"] = {"image": OPS_IMAGE}
    config["platform:operations"] = operations
    return runner.run("prod", config=config)


def _named(plan: runner.Plan, name: str) -> Any:
    (found,) = [r for r in plan.registrations if r.name == name]
    return found


def test_the_drill_is_opt_in(committed_plans: dict[str, runner.Plan]) -> None:
    assert not [r for r in committed_plans["prod"].registrations if r.type == "platform:backup:BackupDrill"]


def test_the_drill_runs_monthly_once_with_the_environments_instance(prod_with_drill: runner.Plan) -> None:
    cron = _named(prod_with_drill, "prod-backup-drill-cronjob").inputs["spec"]
    assert cron["schedule"] == "0 4 1 * *" and cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed drill is reported, never retried into a second instance"
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    command = unwrap(container["command"])
    assert command[:3] == ["python", "-m", "ops.backup_drill"]
    instance = unwrap(_named(prod_with_drill, "prod-postgres-instance").id)
    assert command[command.index("--instance-id") + 1] == instance.rsplit("/", 1)[-1]
    databases = [command[i + 1] for i, part in enumerate(command) if part == "--database"]
    assert databases == ["website", "newsletter"]
    assert container["image"] == OPS_IMAGE
    assert container["envFrom"] == [{"secretRef": {"name": drill.DRILL_CREDENTIALS}}]
    assert pod["terminationGracePeriodSeconds"] >= 120, "time to delete the scratch instance"


def test_the_drill_is_fenced_and_its_key_secret(prod_with_drill: runner.Plan) -> None:
    labels = _named(prod_with_drill, "prod-backup-drill-namespace").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    egress = _named(prod_with_drill, "prod-backup-drill-egress").inputs["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/20"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    } in egress
    policy = _named(prod_with_drill, "prod-backup-drill-identity-policy").inputs["rules"]
    assert [r["permissionSetNames"] for r in policy] == [["RelationalDatabasesFullAccess"]]
    assert all("projectIds" in r for r in policy), "project-scoped, never the organisation"
    secret = _named(prod_with_drill, "prod-backup-drill-credentials")
    assert not plaintext_secrets(secret.inputs)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("rg.fr-par.scw.cloud/acme-platform/platform-ops", "has no tag or digest"),
        ("rg.fr-par.scw.cloud/acme-platform/platform-ops:latest", "uses the tag latest"),
    ],
)
def test_the_drill_image_is_pinned(stack_config: StackConfig, image: str, expected: str) -> None:
    def drill_with(raw: dict[str, Any]) -> None:
        raw["platform:operations"]["backupDrill"] = {"image": image}

    problems = new_problems(stack_config, "prod", drill_with)
    assert any(p.startswith("platform:operations.backupDrill.image:") and expected in p for p in problems)


def test_the_drill_is_production_only(stack_config: StackConfig) -> None:
    """Development may now have a database, but the drill guards production's: refused elsewhere."""
    mutate: Callable[[dict[str, Any]], None] = lambda raw: raw.update(  # noqa: E731
        {"platform:operations": {**raw.get("platform:operations", {}), "backupDrill": {"image": OPS_IMAGE}}}
    )
    problems = new_problems(stack_config, "dev", mutate)
    assert "platform:operations.backupDrill: not allowed for role development (only: production)" in problems

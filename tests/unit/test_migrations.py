"""Schema migrations in the rollout: the migrator's own Secret, the PreSync hook after the parity
gate, and the connection budget; with their bad input."""

from __future__ import annotations

from typing import Any

import pytest

from offline import migrations, parity, runner
from program.model import PlatformConfig
from scw_platform.apps import migrator_secret_name
from tests.harness import StackConfig, new_problems

APPS = "platform:apps"


@pytest.fixture(scope="module")
def prod_config() -> PlatformConfig:
    return parity.load_stack("prod")


@pytest.fixture(scope="module")
def hook(prod_config: PlatformConfig) -> dict[str, Any]:
    files = migrations.migration_files(prod_config)
    assert list(files) == [f"apps/website/envs/prod/{migrations.MIGRATE_FILE}"], "only the website migrates"
    return files[f"apps/website/envs/prod/{migrations.MIGRATE_FILE}"]


def test_the_hook_runs_after_the_gate_and_fails_the_sync(
    hook: dict[str, Any], prod_config: PlatformConfig
) -> None:
    annotations = hook["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    gate = parity.gate_job(prod_config.apps[0], with_database=True)["metadata"]["annotations"]
    gate_wave = int(gate.get("argocd.argoproj.io/sync-wave", "0"))
    assert int(annotations["argocd.argoproj.io/sync-wave"]) > gate_wave, "the gate comes first"
    assert hook["spec"]["backoffLimit"] == 0, "one failure fails the sync"
    assert hook["metadata"]["namespace"] == "website" and hook["metadata"]["name"] == migrations.MIGRATE_JOB
    assert hook["spec"]["activeDeadlineSeconds"] == 15 * 60


def test_the_hook_runs_the_apps_command_as_the_migrator(hook: dict[str, Any]) -> None:
    pod = hook["spec"]["template"]["spec"]
    (grants,) = pod["initContainers"]
    (migrate,) = pod["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["image"].startswith("rg.fr-par.scw.cloud/acme-platform/website:")
    for container in (grants, migrate):
        assert container["envFrom"] == [{"secretRef": {"name": migrator_secret_name("website")}}]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    sql = grants["command"][-1]
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "website_migrator"' in sql
    assert '"website"' in sql and '"website_reader"' in sql
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pods_never_get_the_migrators_credentials(committed_plans: dict[str, runner.Plan]) -> None:
    prod = committed_plans["prod"]
    by_name = {r.name: r for r in prod.registrations}
    env = by_name["app-website-env"].inputs["spec"]
    assert "platform-database-migrator" not in str(env), "the pods' Secret maps no migrator key"
    migrator = by_name["app-website-migrator"].inputs
    assert migrator["metadata"]["name"] == "website-migrator"
    assert migrator["spec"]["target"]["name"] == "website-migrator"
    refs = {d["remoteRef"]["key"] for d in migrator["spec"]["data"]}
    assert refs == {"path:/prod/website/platform-database-migrator"}
    assert "app-newsletter-migrator" not in by_name, "no migrate, no migrator Secret"


# --- bad input -----------------------------------------------------------------------------------


def _website(**changes: Any) -> Any:
    def mutate(raw: dict[str, Any]) -> None:
        raw[APPS][0].update(changes)

    return mutate


@pytest.mark.parametrize(
    ("migrate", "expected"),
    [
        (
            {"command": "python manage.py migrate"},
            "platform:apps[0].migrate.command: Input should be a valid list",
        ),
        ({"command": [1, 2]}, "platform:apps[0].migrate.command[0]: Input should be a valid string"),
        ({"command": []}, "platform:apps[0].migrate.command: List should have at least 1 item"),
        ({"command": ["x"], "timeoutMinutes": 0}, "platform:apps[0].migrate.timeoutMinutes: Input should be"),
    ],
)
def test_a_migrate_command_is_a_list_of_strings(
    stack_config: StackConfig, migrate: Any, expected: str
) -> None:
    problems = new_problems(stack_config, "prod", _website(migrate=migrate))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_migration_needs_a_database(stack_config: StackConfig) -> None:
    def without(raw: dict[str, Any]) -> None:
        raw[APPS][1]["migrate"] = {"command": ["true"]}
        raw[APPS][1].pop("database")

    problems = new_problems(stack_config, "prod", without)
    assert problems == [
        "platform:apps[1].migrate: requires platform:apps[].database: the migration runs as that "
        "database's migrator"
    ]


def test_the_connection_budget_names_the_apps_and_the_numbers(stack_config: StackConfig) -> None:
    problems = new_problems(stack_config, "prod", _website(maxConnections=20))
    assert problems == [
        "platform:database.maxConnections: 149 connections needed, more than the limit 100: website "
        "20 x 6 = 120, newsletter 5 x 4 = 20 (maxConnections x replicas x 2 for a rolling update), "
        "platform 9; lower the apps' maxConnections or replicas, or raise the limit"
    ]
    assert new_problems(stack_config, "prod", _website(maxConnections=0))[0].startswith(
        "platform:apps[0].maxConnections: Input should be greater than or equal to 1"
    )

"""platform:operations.backupDrill: the monthly managed-backup drill, fenced, with its own identity,
in the restore check's image, running the daily restore check's checks on its copy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import pytest

from offline import runner
from ops.restore_check import restore_check as rc
from scw_platform import backup, drill
from scw_platform.backup import RestoreCheckDatabase
from tests.harness import StackConfig, new_problems, plaintext_secrets, unwrap

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "rg.fr-par.scw.cloud/acme-platform/restore-check@sha256:" + "a" * 64
CHECK_COMMAND = (
    "/opt/restore-check/venv/bin/python3 /opt/restore-check/restore_check.py "
    "--spec /etc/backup-drill/{database}.json --work-dir /work"
)


@pytest.fixture(scope="module")
def prod_with_drill() -> runner.Plan:
    config = runner.read_stack_config("prod")
    operations = dict(config["platform:operations"])
    operations["backupDrill"] = {"image": IMAGE}
    config["platform:operations"] = operations
    return runner.run("prod", config=config)


def _named(plan: runner.Plan, name: str) -> Any:
    (found,) = [r for r in plan.registrations if r.name == name]
    return found


def _pod(plan: runner.Plan) -> Any:
    return _named(plan, "prod-backup-drill-cronjob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _restore_check_settings() -> backup.RestoreCheckSettings:
    raw = runner.read_stack_config("prod")["platform:operations"]["restoreCheck"]
    return backup.RestoreCheckSettings.model_validate(raw)


def test_the_drill_is_opt_in(committed_plans: dict[str, runner.Plan]) -> None:
    assert not [r for r in committed_plans["prod"].registrations if r.type == "platform:backup:BackupDrill"]


def test_the_drill_runs_monthly_once_with_the_environments_instance(prod_with_drill: runner.Plan) -> None:
    cron = _named(prod_with_drill, "prod-backup-drill-cronjob").inputs["spec"]
    assert cron["schedule"] == "0 4 1 * *" and cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed drill is reported, never retried into a second instance"
    # Two databases: the instance, 4 changes, 2 x (grant or restore, checks), the deletion.
    assert job["activeDeadlineSeconds"] == (60 * (6 + 2 * 2) + 10) * 60
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    command = unwrap(container["command"])
    assert command[:3] == ["/opt/restore-check/venv/bin/python3", "-m", "ops.backup_drill"]
    instance = unwrap(_named(prod_with_drill, "prod-postgres-instance").id)
    assert command[command.index("--instance-id") + 1] == instance.rsplit("/", 1)[-1]
    databases = [command[i + 1] for i, part in enumerate(command) if part == "--database"]
    assert databases == ["website", "newsletter"]
    assert "--source" not in command, "the instance's volume type chooses snapshots or backups"
    assert container["envFrom"] == [{"secretRef": {"name": drill.DRILL_CREDENTIALS}}]
    # The deletion retries after a SIGTERM run up to the timeout (60 minutes by default): the
    # grace period outlasts them, or Kubernetes would SIGKILL the drill mid-cleanup.
    assert pod["terminationGracePeriodSeconds"] >= 60 * 60 + 60


def test_the_drill_runs_in_the_restore_check_image_with_its_checks(prod_with_drill: runner.Plan) -> None:
    (container,) = _pod(prod_with_drill)["containers"]
    assert container["image"] == IMAGE
    command = unwrap(container["command"])
    assert command[command.index("--check-command") + 1] == CHECK_COMMAND
    assert drill.check_command() == CHECK_COMMAND
    assert drill.check_command(runner=("runuser", "-u", "postgres", "--"), spec_dir="/s", work_dir="/w") == (
        "runuser -u postgres -- /opt/restore-check/venv/bin/python3 /opt/restore-check/restore_check.py "
        "--spec /s/{database}.json --work-dir /w"
    )


def test_the_pod_is_restricted_with_scratch_space_as_the_restore_checks(prod_with_drill: runner.Plan) -> None:
    pod = _pod(prod_with_drill)
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "fsGroup": 999,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["volumes"] == [
        {"name": "specs", "configMap": {"name": drill.DRILL_SPECS}},
        {"name": "work", "emptyDir": {"sizeLimit": "20Gi"}},  # restoreCheck.scratchSizeGb
    ]
    assert container["volumeMounts"] == [
        {"name": "specs", "mountPath": "/etc/backup-drill", "readOnly": True},
        {"name": "work", "mountPath": "/work"},
    ]
    assert {"name": "TMPDIR", "value": "/work"} in container["env"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    # The CronJob's departures from checkov's defaults, each with its reason (no digest: a third).
    annotations = _named(prod_with_drill, "prod-backup-drill-cronjob").inputs["metadata"]["annotations"]
    assert sorted(v.split("=", 1)[0] for v in annotations.values()) == ["CKV_K8S_35", "CKV_K8S_40"]
    assert "checkov.io/skip3" in drill.checkov_skips("rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-3")


def test_each_spec_carries_the_daily_checks_and_takes_the_connection_from_pg(
    prod_with_drill: runner.Plan,
) -> None:
    data = _named(prod_with_drill, "prod-backup-drill-specs").inputs["data"]
    assert set(data) == {"website.json", "newsletter.json"}
    daily = json.loads(
        unwrap(_named(prod_with_drill, "prod-restore-check-config").inputs["data"]["spec.json"])
    )
    daily_checks = {entry["name"]: entry["checks"] for entry in daily["databases"]}
    # prod's managed backups run every 24 hours: each freshness check allows one period more
    # (the restored backup may be a day old), everything else is the daily check's.
    widened = {"26h": "50h", "7d": "192h"}
    for database in ("website", "newsletter"):
        document = json.loads(data[f"{database}.json"])
        expected = {
            **daily_checks[database],
            "freshness": [
                {**entry, "maxAge": widened[entry["maxAge"]]} for entry in daily_checks[database]["freshness"]
            ],
        }
        assert document == {
            "databases": [
                {
                    "name": database,
                    "connection": {"dbname": database, "passwordEnv": "PGPASSWORD"},
                    "checks": expected,
                }
            ],
            "storage": {"type": "none"},
        }
        spec = rc.load_spec(document)  # the restore check accepts it as it is
        (db,) = spec.databases
        assert (db.connection.host, db.connection.port, db.connection.user) == (None, None, None)
        assert spec.encryption is None and spec.storage.type == "none"
    assert json.loads(data["website.json"])["databases"][0]["checks"] == {
        "tables": ["members", "orders", "payments"],
        "minRows": {"members": 100, "orders": 10},
        "freshness": [{"table": "orders", "column": "created_at", "maxAge": "50h"}],
    }


@pytest.mark.parametrize(
    ("max_age", "allowance", "expected"),
    [("26h", 24, "50h"), ("7d", 0, "168h"), ("90s", 1, "62m"), ("1w", 12, "180h"), ("45m", 6, "405m")],
)
def test_freshness_allows_one_backup_period_more(max_age: str, allowance: int, expected: str) -> None:
    db = RestoreCheckDatabase.model_validate(
        {"database": "website", "freshness": [{"table": "orders", "column": "created_at", "maxAge": max_age}]}
    )
    (entry,) = drill.drill_checks(db, allowance)["freshness"]
    assert entry["maxAge"] == expected
    # What the restore check itself reads back: the same number of seconds, rounded up to minutes.
    assert rc.parse_duration(entry["maxAge"], "maxAge") == rc.parse_duration(expected, "maxAge")
    assert (
        rc.parse_duration(entry["maxAge"], "maxAge")
        >= rc.parse_duration(max_age, "maxAge") + 3600 * allowance
    )


def test_the_drill_pulls_its_image_with_its_environments_own_key(prod_with_drill: runner.Plan) -> None:
    pull = _named(prod_with_drill, "prod-backup-drill-registry-pull")
    assert pull.inputs["type"] == "kubernetes.io/dockerconfigjson"
    assert pull.inputs["metadata"] == {"namespace": "backup-drill", "name": "registry-pull"}
    cronjob = _named(prod_with_drill, "prod-backup-drill-cronjob")
    pod = cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]
    assert pull.urn in cronjob.dependencies
    # prod's own pull identity's key (scw_platform.registry.pull_identity), read-only.
    key = _named(prod_with_drill, "prod-registry-pull-key")
    config = json.loads(unwrap(pull.inputs["stringData"])[".dockerconfigjson"])
    assert config["auths"]["rg.fr-par.scw.cloud"]["password"] == unwrap(key.state["secretKey"])
    assert key.urn in pull.dependencies


def test_the_drill_runs_its_digest_and_never_pulls_always(prod_with_drill: runner.Plan) -> None:
    (container,) = _pod(prod_with_drill)["containers"]
    assert container["image"] == IMAGE and backup.has_digest(container["image"])
    assert container["imagePullPolicy"] == "IfNotPresent"


def _drill_args(image: str, *, require_digest: bool) -> drill.BackupDrillArgs:
    return drill.BackupDrillArgs(
        provider=cast(Any, None),
        environment="prod",
        region="fr-par",
        project_id="6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41",
        settings=drill.BackupDrillSettings(image=image),
        restore_check=_restore_check_settings(),
        instance_id="fr-par/11111111-2222-3333-4444-555555555555",
        private_network_id="fr-par/66666666-7777-8888-9999-000000000000",
        subnet="10.20.0.0/20",
        databases=["website"],
        backup_period_hours=24,
        require_digest=require_digest,
    )


def test_require_digest_refuses_a_tag_and_accepts_a_digest() -> None:
    tagged = "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-3"
    with pytest.raises(ValueError, match=r"backup drill image: .*:16\.9-3 is a tag"):
        _drill_args(tagged, require_digest=True)
    assert _drill_args(tagged, require_digest=False).settings.image == tagged
    assert _drill_args(f"{tagged}@sha256:{'b' * 64}", require_digest=True).require_digest


def test_a_database_the_daily_check_does_not_cover_gets_a_spec_without_checks() -> None:
    settings = _restore_check_settings()
    specs = drill.check_specs(settings, ["website", "_audit"], allowance_hours=24)
    audit = json.loads(specs["_audit.json"])
    (entry,) = audit["databases"]
    assert entry == {
        "name": "db_audit",
        "connection": {"dbname": "_audit", "passwordEnv": "PGPASSWORD"},
        "checks": {},
    }
    rc.load_spec(audit)
    assert json.loads(specs["website.json"])["databases"][0]["checks"]["minRows"] == {
        "members": 100,
        "orders": 10,
    }


def test_the_restore_check_image_holds_the_drill_and_its_pinned_sdk() -> None:
    dockerfile = (ROOT / "ops" / "restore_check" / "Dockerfile").read_text()
    assert "COPY ops/__init__.py ops/backup_drill.py ops/scaleway_api.py /opt/platform/ops/" in dockerfile
    assert re.search(r"PYTHONPATH=/opt/platform\b", dockerfile)
    # What ops.backup_drill imports from the repository: only those modules.
    imports = set(
        re.findall(r"^from ops(?:\.(\w+))? import (\w+)", (ROOT / "ops/backup_drill.py").read_text(), re.M)
    )
    assert imports == {("", "scaleway_api")}

    def pins(path: Path) -> dict[str, str]:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        return {name.lower(): version for name, version in (line.split("==") for line in lines)}

    image, ops_image = pins(ROOT / "ops/restore_check/requirements.txt"), pins(ROOT / "ops/requirements.txt")
    closure = (
        *("scaleway", "scaleway-core", "pyyaml", "python-dateutil", "six", "requests", "urllib3"),
        *("certifi", "charset-normalizer", "idna"),
    )
    assert {name: image[name] for name in closure} == {name: ops_image[name] for name in closure}
    assert image["boto3"] == image["botocore"] == "1.44.8"


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
        ("rg.fr-par.scw.cloud/acme-platform/restore-check", "has no tag or digest"),
        ("rg.fr-par.scw.cloud/acme-platform/restore-check:latest", "uses the tag latest"),
        ("rg.fr-par.scw.cloud/acme-platform/platform-ops@sha256:" + "a" * 64, "is the ops image"),
    ],
)
def test_the_drill_image_is_pinned_and_the_restore_checks(
    stack_config: StackConfig, image: str, expected: str
) -> None:
    def drill_with(raw: dict[str, Any]) -> None:
        raw["platform:operations"]["backupDrill"] = {"image": image}

    problems = new_problems(stack_config, "prod", drill_with)
    assert any(p.startswith("platform:operations.backupDrill.image:") and expected in p for p in problems)


def test_the_drill_is_production_only(stack_config: StackConfig) -> None:
    """Development may have a database of its own, but no managed backups to drill."""

    def mutate(raw: dict[str, Any]) -> None:
        raw["platform:operations"] = {**raw.get("platform:operations", {}), "backupDrill": {"image": IMAGE}}

    problems = new_problems(stack_config, "dev", mutate)
    assert problems == [
        "platform:operations.backupDrill: not allowed for role development (only: production)"
    ]


@pytest.mark.parametrize("dockerfile", ["ops/restore_check/Dockerfile", "ops/Dockerfile"])
def test_the_build_context_sends_what_the_dockerfile_copies(dockerfile: str) -> None:
    """Both images build from the repository root: their Dockerfile-specific ignore files keep
    .venv, build/ and the stack files out of the context, yet every COPY source must get in."""
    sources = [
        source
        for line in (ROOT / dockerfile).read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    rules = [
        line
        for line in (ROOT / f"{dockerfile}.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*", "everything is out unless listed"
    admitted = [rule[1:] for rule in rules if rule.startswith("!")]
    excluded = [rule for rule in rules[1:] if not rule.startswith("!")]
    for source in sources:
        assert any(source == rule or source.startswith(rule.rstrip("/") + "/") for rule in admitted), source
        assert not any(source.startswith(rule.rstrip("/") + "/") for rule in excluded), source

"""The restore check as the program declares it: namespace, bucket, identity, script and spec,
credentials, CronJob and network policies. The script itself is tested against a real PostgreSQL
server in tests/test_restore_check.py; here the spec the program generates is fed to that script.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from offline import runner
from offline.mocks import Registration
from ops.restore_check import restore_check
from policy.rules import image_problem
from program.paths import RESTORE_CHECK_SCRIPT
from scw_platform import backup
from scw_platform.backup import RestoreCheckSettings
from scw_platform.database import DatabaseCredentials
from tests.harness import Recording, is_secret, plaintext_secrets, record, unwrap

CRONJOB = "kubernetes:batch/v1:CronJob"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RFC1918 = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}


def _under(plan: runner.Plan, component_type: str) -> list[Registration]:
    parents = {r.urn for r in plan.registrations if r.type == component_type}
    found: list[Registration] = []
    frontier = set(parents)
    while frontier:
        children = [r for r in plan.registrations if r.parent in frontier]
        found.extend(children)
        frontier = {r.urn for r in children}
    return found


def _one(regs: list[Registration], type_token: str, name_part: str = "") -> Registration:
    found = [r for r in regs if r.type == type_token and name_part in r.name]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


@pytest.fixture(scope="module")
def prod(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


@pytest.fixture(scope="module")
def members(prod: runner.Plan) -> list[Registration]:
    return _under(prod, "platform:backup:RestoreCheck")


@pytest.fixture(scope="module")
def settings(stack_config: Any) -> RestoreCheckSettings:
    raw = stack_config("prod")["platform:operations"]["restoreCheck"]
    return RestoreCheckSettings.model_validate(raw, context={"role": "production", "region": "fr-par"})


def test_only_production_runs_the_restore_check(committed_plans: dict[str, runner.Plan]) -> None:
    counts = {
        stack: len(plan.by_type("platform:backup:RestoreCheck")) for stack, plan in committed_plans.items()
    }
    assert counts["prod"] == 1
    assert counts["tooling"] == 0 and counts.get("dev", 0) == 0


def test_namespace_enforces_restricted_pod_security(members: list[Registration]) -> None:
    namespace = _one(members, "kubernetes:core/v1:Namespace")
    labels = namespace.inputs["metadata"]["labels"]
    assert namespace.inputs["metadata"]["name"] == backup.RESTORE_CHECK_NAMESPACE
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["platform.scw/platform-namespace"] == "true"


def test_bucket_is_versioned_expires_dumps_and_is_protected(
    members: list[Registration], settings: Any
) -> None:
    bucket = _one(members, "scaleway:object/bucket:Bucket")
    assert bucket.protect, "the backup bucket is protected in production"
    assert bucket.inputs["versioning"] == {"enabled": True}
    assert bucket.inputs["forceDestroy"] is False
    (rule,) = bucket.inputs["lifecycleRules"]
    assert rule["enabled"] is True and rule["prefix"] == backup.DUMP_PREFIX
    assert rule["expiration"] == {"days": settings.retention_days}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": settings.retention_days}
    assert bucket.inputs["name"] == "prod-db-dumps-6a0c2f3e"


def test_identity_holds_object_storage_permissions_only(members: list[Registration]) -> None:
    policy = _one(members, "scaleway:iam/policy:Policy")
    (rule,) = policy.inputs["rules"]
    assert rule["permissionSetNames"] and all(
        s.startswith("ObjectStorage") for s in rule["permissionSetNames"]
    )
    assert len(rule["projectIds"]) == 1
    assert _one(members, "scaleway:iam/apiKey:ApiKey")


def test_config_map_ships_the_script_and_the_spec(members: list[Registration], prod: runner.Plan) -> None:
    config = _one(members, "kubernetes:core/v1:ConfigMap")
    data = config.inputs["data"]
    shipped = RESTORE_CHECK_SCRIPT.read_text(encoding="utf-8")
    assert data["restore_check.py"] == shipped, "the reviewed script ships"
    spec = json.loads(data["spec.json"])
    host = prod.exports["databaseHost"].value
    assert {db["connection"]["host"] for db in spec["databases"]} == {host}
    assert {db["connection"]["dbname"] for db in spec["databases"]} == {"website", "newsletter"}
    bucket = _one(members, "scaleway:object/bucket:Bucket")
    assert spec["storage"]["bucket"] == bucket.inputs["name"]
    assert spec["storage"]["endpoint"] == "https://s3.fr-par.scw.cloud"
    # The script's own parser accepts it, checks included.
    parsed = restore_check.load_spec(spec)
    website = next(db for db in parsed.databases if db.name == "website")
    assert [t.given for t in website.tables] == ["members", "orders", "payments"]
    assert website.freshness[0].max_age_seconds == 26 * 3600


def test_the_script_validates_the_generated_spec(members: list[Registration], tmp_path: Path) -> None:
    """Run exactly what the CronJob runs, with --validate: the spec is accepted (exit 0)."""
    config = _one(members, "kubernetes:core/v1:ConfigMap")
    (tmp_path / "restore_check.py").write_text(config.inputs["data"]["restore_check.py"])
    (tmp_path / "spec.json").write_text(config.inputs["data"]["spec.json"])
    python = shutil.which("python3") or sys.executable
    env = {"PATH": os.environ.get("PATH", ""), backup.ACCESS_KEY_ENV: "SCWXXX", backup.SECRET_KEY_ENV: "x"}
    proc = subprocess.run(
        [python, "-I", "restore_check.py", "--spec", "spec.json", "--validate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == restore_check.EXIT_OK, proc.stdout + proc.stderr
    assert "spec ok: 2 database(s): website, newsletter" in proc.stdout
    # A broken spec is refused by the same command (exit 2), so the check above means something.
    spec = json.loads(config.inputs["data"]["spec.json"])
    spec["databases"][0]["checks"]["freshness"][0]["maxAge"] = "a day"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [python, "-I", "restore_check.py", "--spec", "spec.json", "--validate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == restore_check.EXIT_USAGE and "maxAge" in proc.stderr


def test_credentials_are_pulumi_secrets(members: list[Registration], settings: Any) -> None:
    secret = _one(members, "kubernetes:core/v1:Secret", "credentials")
    assert is_secret(secret.inputs["stringData"])
    keys = set(unwrap(secret.inputs["stringData"]))
    expected = {backup.password_key(d.database) for d in settings.databases}
    assert keys == expected | {backup.ACCESS_KEY_ENV, backup.SECRET_KEY_ENV}
    for reg in members:
        assert plaintext_secrets(reg.inputs) == [], reg.name


def test_cronjob(members: list[Registration], settings: Any) -> None:
    cronjob = _one(members, CRONJOB)
    assert cronjob.inputs["metadata"]["name"] == backup.RESTORE_CHECK_CRONJOB
    assert cronjob.inputs["metadata"]["namespace"] == backup.RESTORE_CHECK_NAMESPACE
    spec = cronjob.inputs["spec"]
    assert spec["schedule"] == settings.schedule and spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1 and job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == settings.image and image_problem(container["image"]) is None
    security = container["securityContext"]
    # What Pod Security "restricted" demands, plus a read-only root filesystem.
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The ConfigMap's script runs, with the spec from the same ConfigMap.
    assert container["command"] == ["python3", f"{backup.CONFIG_MOUNT}/restore_check.py"]
    assert container["args"][:2] == ["--spec", f"{backup.CONFIG_MOUNT}/spec.json"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes[mounts[backup.WORK_DIR]["name"]]["emptyDir"]["sizeLimit"] == f"{settings.scratch_size_gb}Gi"
    )
    assert {"name": "TMPDIR", "value": backup.WORK_DIR} in container["env"]
    credentials = volumes[mounts[backup.SECRETS_MOUNT]["name"]]["secret"]
    # Every passwordFile in the spec is a mounted key of the Secret.
    mounted = {f"{backup.SECRETS_MOUNT}/{item['path']}" for item in credentials["items"]}
    assert mounted == {backup.password_file(d.database) for d in settings.databases}
    assert pod["imagePullSecrets"] == [{"name": backup.PULL_SECRET}]


def test_network_policies_allow_only_dns_the_database_and_public_https(
    members: list[Registration], prod: runner.Plan
) -> None:
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in members if r.type == NETWORK_POLICY}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = policies["restore-check-egress"]
    assert "ingress" not in allow and set(allow["policyTypes"]) == {"Ingress", "Egress"}
    dns, database, https = allow["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert database["to"] == [{"ipBlock": {"cidr": f"{prod.exports['databaseHost'].value}/32"}}]
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    (block,) = https["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0" and set(block["ipBlock"]["except"]) >= RFC1918
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]


def test_every_kubernetes_child_is_explicit_and_parented(members: list[Registration]) -> None:
    component = {r.parent for r in members if r.type.startswith("kubernetes:")}
    assert len(component) == 1
    for reg in members:
        if reg.type.startswith("kubernetes:"):
            assert reg.provider_urn.endswith("prod-k8s"), reg.name
            assert reg.name.startswith("prod-restore-check-"), reg.name


# --- The component on its own ---------------------------------------------------------------------


def _settings(**changes: Any) -> RestoreCheckSettings:
    raw: dict[str, Any] = {
        "image": "rg.fr-par.scw.cloud/acme/restore-check:16.9-1",
        "databases": [{"database": "_legacy", "tables": ["public.items"], "minRows": {"items": 1}}],
        **changes,
    }
    return RestoreCheckSettings.model_validate(raw, context={"role": "development", "region": "fr-par"})


def _component(
    *, protect: bool, credentials: dict[str, str] | None = None, bucket_admins: tuple[str, ...] = ()
) -> Recording:
    def program() -> dict[str, Any]:
        provider = k8s.Provider("unit-k8s", kubeconfig=pulumi.Output.secret("apiVersion: v1"))
        creds = {
            name: DatabaseCredentials(database=name, user=user, password=pulumi.Output.secret("pw"))
            for name, user in (credentials or {"_legacy": "legacy_app"}).items()
        }
        check = backup.RestoreCheck(
            "unit-restore-check",
            backup.RestoreCheckArgs(
                provider=provider,
                environment="dev",
                region="nl-ams",
                project_id="11111111-2222-3333-4444-555555555555",
                settings=_settings(),
                script="print('the restore check')\n",
                database_host="10.30.0.5",
                database_port=5432,
                credentials=creds,
                protect=protect,
                bucket_admins=bucket_admins,
            ),
        )
        return {"spec": check.spec, "bucket": check.bucket_name}

    return record(program)


def test_component_without_registry_and_unprotected() -> None:
    recording = _component(protect=False)
    bucket = recording.by_type("scaleway:object/bucket:Bucket")[0]
    assert not bucket.protect
    assert recording.outputs["bucket"].value == "dev-db-dumps-11111111"
    secrets = [r.inputs["metadata"]["name"] for r in recording.by_type("kubernetes:core/v1:Secret")]
    assert backup.PULL_SECRET not in secrets
    cronjob = recording.by_type(CRONJOB)[0]
    assert "imagePullSecrets" not in cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    # A database name the script would refuse (leading underscore) is renamed, its dbname kept.
    spec = json.loads(recording.outputs["spec"].value)
    (db,) = spec["databases"]
    assert db["name"] == "db_legacy" and db["connection"]["dbname"] == "_legacy"
    assert db["connection"]["user"] == "legacy_app"
    assert spec["storage"]["endpoint"] == "https://s3.nl-ams.scw.cloud"
    restore_check.load_spec(spec)


def test_component_refuses_a_check_without_credentials() -> None:
    with pytest.raises(ValueError, match="without credentials: _legacy"):
        _component(protect=False, credentials={"website": "website"})


def test_checkov_skips_carry_reasons() -> None:
    tagged = backup.checkov_skips("rg.fr-par.scw.cloud/acme/restore-check:16.9-1")
    assert all("=" in v and v.split("=", 1)[1].strip() for v in tagged.values())
    assert any(v.startswith("CKV_K8S_43=") for v in tagged.values())
    pinned = backup.checkov_skips("rg.fr-par.scw.cloud/acme/restore-check@sha256:" + "a" * 64)
    assert not any(v.startswith("CKV_K8S_43=") for v in pinned.values())


# --- The bucket policy ------------------------------------------------------------------------------

OPERATOR = "user_id:0b5e6c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
DEPLOYER = "application_id:7d8e9f0a-1b2c-4d3e-9f4a-5b6c7d8e9f0a"
WRITER = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
BUCKET_POLICY = "scaleway:object/bucketPolicy:BucketPolicy"


def _statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in document["Statement"]}


def test_bucket_policy_lets_the_job_only_write_dumps_and_keeps_the_admins() -> None:
    document = backup.bucket_policy_document("prod-db-dumps-6a0c2f3e", WRITER, [OPERATOR, DEPLOYER])
    # The current language: what it does not allow is denied, whatever IAM grants.
    assert document["Version"] == "2023-04-17"
    statements = _statements(document)
    assert set(statements) == {"RestoreCheckWritesDumps", "AdminsKeepFullAccess"}
    assert all(s["Effect"] == "Allow" for s in statements.values()), "Deny statements do nothing"
    writer = statements["RestoreCheckWritesDumps"]
    assert writer["Principal"] == {"SCW": f"application_id:{WRITER}"}
    # PUT only: no listing, reading, deleting (any version) or bucket configuration, and only
    # under the dumps' prefix, which is the prefix the script writes to.
    assert writer["Action"] == ["s3:PutObject"]
    assert writer["Resource"] == ["prod-db-dumps-6a0c2f3e/restore-check/*"]
    key = restore_check.dump_key(backup.DUMP_PREFIX, "website", dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert fnmatch.fnmatchcase(f"prod-db-dumps-6a0c2f3e/{key}", writer["Resource"][0])
    admins = statements["AdminsKeepFullAccess"]
    assert admins["Principal"] == {"SCW": [OPERATOR, DEPLOYER]}
    assert admins["Action"] == ["s3:*"]
    assert admins["Resource"] == ["prod-db-dumps-6a0c2f3e", "prod-db-dumps-6a0c2f3e/*"]


def test_component_applies_the_bucket_policy_with_bucket_admins() -> None:
    recording = _component(protect=True, bucket_admins=(OPERATOR, DEPLOYER))
    (policy,) = recording.by_type(BUCKET_POLICY)
    bucket = recording.by_type("scaleway:object/bucket:Bucket")[0]
    (application,) = recording.by_type("scaleway:iam/application:Application")
    assert policy.inputs["bucket"] == bucket.inputs["name"] == "dev-db-dumps-11111111"
    assert policy.inputs["projectId"] == "11111111-2222-3333-4444-555555555555"
    assert policy.inputs["region"] == "nl-ams"
    document = json.loads(policy.inputs["policy"])
    assert document == backup.bucket_policy_document(
        bucket.inputs["name"], application.id, [OPERATOR, DEPLOYER]
    )
    assert policy.parent == recording.by_type("platform:backup:RestoreCheck")[0].urn


def test_no_bucket_admins_no_bucket_policy() -> None:
    """A policy listing nobody but the job would lock out everyone else, the program included."""
    assert _component(protect=False).by_type(BUCKET_POLICY) == []


def test_bucket_admins_must_be_users_or_applications_by_id() -> None:
    for bad in ("project_id:11111111-2222-3333-4444-555555555555", "user_id:alice", "*"):
        with pytest.raises(ValueError, match="bucket admins must be"):
            _component(protect=False, bucket_admins=(bad,))

"""The restore check as the program declares it: namespace, bucket, identity, script and spec,
credentials (the read-only users'), the age identity from the vault, CronJob and network policies.
The script itself is tested against a real PostgreSQL server, age and moto's S3 server in
tests/integration/test_restore_check.py; here the spec the program generates is fed to that script.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pydantic
import pytest

from offline import runner
from offline.mocks import Registration
from ops.restore_check import restore_check
from policy.rules import image_problem
from program.paths import RESTORE_CHECK_SCRIPT
from scw_platform import backup
from scw_platform.backup import RestoreCheckSettings
from scw_platform.database import DatabaseCredentials, DatabaseUser
from tests.harness import Recording, is_secret, plaintext_secrets, record, unwrap

CRONJOB = "kubernetes:batch/v1:CronJob"
EXTERNAL_SECRET = "kubernetes:external-secrets.io/v1:ExternalSecret"
#: age public keys from age-keygen (their private keys were thrown away).
AGE_RECIPIENT = "age1ujqga9uak877kuhxdzz9yvft52fwcfm6pj7yp5y42xnxcu8n0ansnt44wp"
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
    # Read and write objects, nothing else: no FullAccess (buckets, bucket policies, deletions),
    # no ObjectsDelete, no bucket sets.
    assert rule["permissionSetNames"] == ["ObjectStorageObjectsRead", "ObjectStorageObjectsWrite"]
    assert rule["projectIds"] == ["6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"], "prod's own project only"
    assert _one(members, "scaleway:iam/apiKey:ApiKey")


def test_production_always_applies_the_bucket_policy(members: list[Registration]) -> None:
    """The committed stack's restore check: its bucket carries the policy naming the job's
    application (the identity's IAM sets reach every bucket of the project; the policy is what
    confines the key to its prefix)."""
    policy = _one(members, BUCKET_POLICY)
    application = _one(members, "scaleway:iam/application:Application")
    bucket = _one(members, "scaleway:object/bucket:Bucket")
    document = json.loads(policy.inputs["policy"])
    statements = _statements(document)
    assert statements["RestoreCheckWritesAndReadsBackDumps"]["Principal"] == {
        "SCW": f"application_id:{application.id}"
    }
    assert policy.inputs["bucket"] == bucket.inputs["name"]


def test_config_map_ships_the_script_and_the_spec(
    members: list[Registration], prod: runner.Plan, settings: RestoreCheckSettings
) -> None:
    config = _one(members, "kubernetes:core/v1:ConfigMap")
    data = config.inputs["data"]
    shipped = RESTORE_CHECK_SCRIPT.read_text(encoding="utf-8")
    assert data["restore_check.py"] == shipped, "the reviewed script ships"
    spec = json.loads(data["spec.json"])
    host = prod.exports["databaseHost"].value
    assert {db["connection"]["host"] for db in spec["databases"]} == {host}
    assert {db["connection"]["dbname"] for db in spec["databases"]} == {"website", "newsletter"}
    # The dump runs as each database's read-only user, never the app's read-write one.
    assert {db["connection"]["user"] for db in spec["databases"]} == {"website_reader", "newsletter_reader"}
    # Encrypted to the configured key, decrypted with the identity the job mounts; the clock's targets.
    assert spec["encryption"] == {
        "recipient": settings.encryption_recipient,
        "identityFile": backup.AGE_IDENTITY_FILE,
    }
    assert spec["targets"] == {"rtoMinutes": settings.rto_minutes, "rpoHours": settings.rpo_hours}
    bucket = _one(members, "scaleway:object/bucket:Bucket")
    assert spec["storage"]["bucket"] == bucket.inputs["name"]
    assert spec["storage"]["endpoint"] == "https://s3.fr-par.scw.cloud"
    # The script's own parser accepts it, checks included.
    parsed = restore_check.load_spec(spec)
    website = next(db for db in parsed.databases if db.name == "website")
    assert [t.given for t in website.tables] == ["members", "orders", "payments"]
    assert website.freshness[0].max_age_seconds == 26 * 3600
    assert parsed.encryption is not None and parsed.targets.rto_minutes == settings.rto_minutes


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
    # Production pins the digest and never re-pulls a tag on every run.
    assert backup.has_digest(container["image"])
    assert container["imagePullPolicy"] == "IfNotPresent"
    security = container["securityContext"]
    # What Pod Security "restricted" demands, plus a read-only root filesystem.
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The ConfigMap's script runs, with the spec from the same ConfigMap.
    assert container["command"] == [backup.PYTHON, f"{backup.CONFIG_MOUNT}/restore_check.py"]
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
    # The age identity: the ExternalSecret's target, mounted read-only where the spec says.
    identity = volumes[mounts[backup.AGE_IDENTITY_MOUNT]["name"]]["secret"]
    assert mounts[backup.AGE_IDENTITY_MOUNT]["readOnly"] is True
    assert identity["secretName"] == backup.AGE_IDENTITY_SECRET and identity["defaultMode"] == 0o400
    (item,) = identity["items"]
    assert f"{backup.AGE_IDENTITY_MOUNT}/{item['path']}" == backup.AGE_IDENTITY_FILE
    assert pod["imagePullSecrets"] == [{"name": backup.PULL_SECRET}]
    # The CronJob waits for the identity's ExternalSecret (its first run mounts the Secret).
    external = _one(members, EXTERNAL_SECRET)
    assert external.urn in cronjob.dependencies


def test_the_age_identity_comes_from_the_vault_never_from_pulumi(members: list[Registration]) -> None:
    external = _one(members, EXTERNAL_SECRET)
    assert external.inputs["metadata"]["namespace"] == backup.RESTORE_CHECK_NAMESPACE
    spec = external.inputs["spec"]
    assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "platform-scaleway"}
    assert spec["data"] == [
        {
            "secretKey": backup.AGE_IDENTITY_KEY,
            "remoteRef": {"key": "path:/platform/restore-check/age-identity"},
        }
    ]
    assert spec["target"]["name"] == backup.AGE_IDENTITY_SECRET
    # No private key anywhere in the plan: only the public recipient is config.
    identity = re.compile(r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}")
    for reg in members:
        assert not identity.search(json.dumps(reg.inputs, default=str)), reg.name


def test_network_policies_allow_only_dns_the_database_public_https_and_the_pushgateway(
    members: list[Registration], prod: runner.Plan
) -> None:
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in members if r.type == NETWORK_POLICY}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = policies["restore-check-egress"]
    assert "ingress" not in allow and set(allow["policyTypes"]) == {"Ingress", "Egress"}
    dns, database, https, pushgateway = allow["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert database["to"] == [{"ipBlock": {"cidr": f"{prod.exports['databaseHost'].value}/32"}}]
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    (block,) = https["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0" and set(block["ipBlock"]["except"]) >= RFC1918
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    # The figures go to the monitoring namespace's Pushgateway pods, on its port only.
    assert pushgateway == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "pushgateway",
                        "app.kubernetes.io/instance": "pushgateway",
                    }
                },
            }
        ],
        "ports": [{"protocol": "TCP", "port": 9091}],
    }


def test_the_job_pushes_its_figures_to_the_stacks_pushgateway(members: list[Registration]) -> None:
    (cronjob,) = [r for r in members if r.type == "kubernetes:batch/v1:CronJob"]
    (container,) = cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--pushgateway") + 1] == "http://pushgateway.monitoring.svc:9091"


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
        "databases": [
            {
                "database": "_legacy",
                "tables": ["public.items"],
                "minRows": {"items": 1},
                "freshness": [{"table": "items", "column": "updated_at", "maxAge": "2d"}],
            }
        ],
        "encryptionRecipient": AGE_RECIPIENT,
        "rtoMinutes": 30,
        "rpoHours": 48,
        "bucketAdmins": [UNIT_ADMIN],
        **changes,
    }
    return RestoreCheckSettings.model_validate(raw, context={"role": "development", "region": "fr-par"})


#: The unit component's bucket admin (whoever runs pulumi up).
UNIT_ADMIN = "user_id:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


#: The runtime (read-write) and the read-only user's passwords of the unit component's database.
RW_PASSWORD, RO_PASSWORD = "rw-password-of-the-app", "ro-password-of-the-reader"


def _component(
    *,
    protect: bool,
    credentials: dict[str, str] | None = None,
    bucket_admins: tuple[str, ...] = (UNIT_ADMIN,),
    readers: bool = True,
    secrets_depends_on: tuple[pulumi.Resource, ...] = (),
    settings: RestoreCheckSettings | None = None,
    require_digest: bool = False,
) -> Recording:
    def program() -> dict[str, Any]:
        provider = k8s.Provider("unit-k8s", kubeconfig=pulumi.Output.secret("apiVersion: v1"))
        creds = {
            name: DatabaseCredentials(
                database=name,
                user=user,
                password=pulumi.Output.secret(RW_PASSWORD),
                reader=DatabaseUser(f"{user}_reader", pulumi.Output.secret(RO_PASSWORD)) if readers else None,
            )
            for name, user in (credentials or {"_legacy": "legacy_app"}).items()
        }
        check = backup.RestoreCheck(
            "unit-restore-check",
            backup.RestoreCheckArgs(
                provider=provider,
                environment="dev",
                region="nl-ams",
                project_id="11111111-2222-3333-4444-555555555555",
                settings=settings or _settings(),
                script="print('the restore check')\n",
                database_host="10.30.0.5",
                database_port=5432,
                credentials=creds,
                protect=protect,
                bucket_admins=bucket_admins,
                secret_store="unit-store",
                secrets_depends_on=secrets_depends_on,
                require_digest=require_digest,
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
    assert db["connection"]["user"] == "legacy_app_reader", "the read-only user dumps"
    assert spec["storage"]["endpoint"] == "https://s3.nl-ams.scw.cloud"
    assert spec["encryption"]["recipient"] == AGE_RECIPIENT
    assert spec["targets"] == {"rtoMinutes": 30, "rpoHours": 48}
    restore_check.load_spec(spec)
    # The identity's ExternalSecret reads the given store.
    (external,) = recording.by_type(EXTERNAL_SECRET)
    assert external.inputs["spec"]["secretStoreRef"]["name"] == "unit-store"


def test_only_the_read_only_password_reaches_the_namespace() -> None:
    recording = _component(protect=False)
    (secret,) = [
        r
        for r in recording.by_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"]["name"] == "restore-check-credentials"
    ]
    data = unwrap(secret.inputs["stringData"])
    assert data[backup.password_key("_legacy")] == RO_PASSWORD
    everything = json.dumps([r.inputs for r in recording.registrations], default=str)
    assert RW_PASSWORD not in everything, "the app's read-write password never reaches the restore check"


def test_component_refuses_a_check_without_credentials() -> None:
    with pytest.raises(ValueError, match="without credentials: _legacy"):
        _component(protect=False, credentials={"website": "website"})


def test_component_refuses_a_database_without_a_read_only_user() -> None:
    with pytest.raises(ValueError, match=r"without a read-only user: _legacy \(DatabaseCredentials.reader\)"):
        _component(protect=False, readers=False)


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


def test_bucket_policy_lets_the_job_only_write_and_read_back_dumps_and_keeps_the_admins() -> None:
    document = backup.bucket_policy_document("prod-db-dumps-6a0c2f3e", WRITER, [OPERATOR, DEPLOYER])
    # The current language: what it does not allow is denied, whatever IAM grants.
    assert document["Version"] == "2023-04-17"
    statements = _statements(document)
    assert set(statements) == {"RestoreCheckWritesAndReadsBackDumps", "AdminsKeepFullAccess"}
    assert all(s["Effect"] == "Allow" for s in statements.values()), "Deny statements do nothing"
    writer = statements["RestoreCheckWritesAndReadsBackDumps"]
    assert writer["Principal"] == {"SCW": f"application_id:{WRITER}"}
    # PUT, and GET of what it wrote (the restore reads the stored version back): no listing,
    # deleting (any version) or bucket configuration, and only under the dumps' prefix, which is
    # the prefix the script writes to.
    assert writer["Action"] == ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"]
    assert writer["Resource"] == ["prod-db-dumps-6a0c2f3e/restore-check/*"]
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    for encrypted in (False, True):
        key = restore_check.dump_key(backup.DUMP_PREFIX, "website", when, encrypted=encrypted)
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


def test_no_restore_check_without_its_bucket_policy() -> None:
    """Without the policy the key's IAM sets alone would apply (every bucket of the project); and a
    policy listing nobody but the job would lock out everyone else, the program included. So
    bucket admins are required, in the settings (naming the key) and in the component's args."""
    with pytest.raises(pydantic.ValidationError) as raised:
        _settings(bucketAdmins=[])
    (error,) = raised.value.errors()
    assert error["loc"] == ("bucketAdmins",)
    assert "required: at least one principal" in error["msg"]
    with pytest.raises(pydantic.ValidationError) as missing:
        RestoreCheckSettings.model_validate(
            {k: v for k, v in _settings().model_dump(by_alias=True).items() if k != "bucketAdmins"}
        )
    (error,) = missing.value.errors()
    assert "required: at least one principal" in error["msg"], "a missing key is as wrong as an empty one"
    with pytest.raises(ValueError, match="bucket_admins is required"):
        _component(protect=False, bucket_admins=())
    # With them, the policy is there.
    (policy,) = _component(protect=False).by_type(BUCKET_POLICY)
    assert UNIT_ADMIN in json.dumps(json.loads(policy.inputs["policy"]))


DIGEST = "sha256:" + "4f" * 32


@pytest.mark.parametrize(
    "image",
    [
        "rg.fr-par.scw.cloud/acme/restore-check:16.9-1",
        f"rg.fr-par.scw.cloud/acme/restore-check:16.9-1@{DIGEST}",
        f"rg.fr-par.scw.cloud/acme/restore-check@{DIGEST}",
    ],
)
def test_the_job_never_pulls_always(image: str) -> None:
    """A digest fixes what runs; a tag (outside production) is not re-pulled on every run."""
    (cronjob,) = _component(protect=False, settings=_settings(image=image)).by_type(CRONJOB)
    (container,) = cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_require_digest_refuses_a_tag_and_accepts_a_digest() -> None:
    tagged = _settings(image="rg.fr-par.scw.cloud/acme/restore-check:16.9-1")
    with pytest.raises(ValueError, match=r"restore check image: .*16\.9-1 is a tag, which whoever may push"):
        _component(protect=False, settings=tagged, require_digest=True)
    pinned = _settings(image=f"rg.fr-par.scw.cloud/acme/restore-check:16.9-1@{DIGEST}")
    assert _component(protect=False, settings=pinned, require_digest=True).by_type(CRONJOB)


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        (f"rg.fr-par.scw.cloud/acme/restore-check:16.9-1@{DIGEST}", True),
        (f"rg.fr-par.scw.cloud/acme/restore-check@{DIGEST}", True),
        ("rg.fr-par.scw.cloud/acme/restore-check:16.9-1", False),
        # Not a digest: too short, upper case, another algorithm, a digest-looking tag.
        ("rg.fr-par.scw.cloud/acme/restore-check@sha256:" + "a" * 63, False),
        ("rg.fr-par.scw.cloud/acme/restore-check@sha256:" + "A" * 64, False),
        ("rg.fr-par.scw.cloud/acme/restore-check@sha512:" + "a" * 128, False),
        ("rg.fr-par.scw.cloud/acme/restore-check:sha256-" + "a" * 64, False),
    ],
)
def test_has_digest(image: str, pinned: bool) -> None:
    assert backup.has_digest(image) is pinned
    assert (backup.digest_problem(image) is None) is pinned


def test_bucket_admins_must_be_users_or_applications_by_id() -> None:
    for bad in ("project_id:11111111-2222-3333-4444-555555555555", "user_id:alice", "*"):
        with pytest.raises(ValueError, match="bucket admins must be"):
            _component(protect=False, bucket_admins=(bad,))


def _allowed(document: dict[str, Any], principal: str, action: str, resource: str) -> bool:
    """Scaleway's 2023-04-17 evaluation as its documentation states it: an action is permitted
    only if an Allow statement names the principal, the action (``*``, ``s3:*`` or itself) and a
    matching resource; everything else is denied ("Deny statements are therefore useless")."""
    for statement in document["Statement"]:
        named = statement["Principal"]["SCW"]
        principals = [named] if isinstance(named, str) else named
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if (
            statement["Effect"] == "Allow"
            and principal in principals
            and any(fnmatch.fnmatchcase(action, a) for a in actions)
            and any(fnmatch.fnmatchcase(resource, r) for r in statement["Resource"])
        ):
            return True
    return False


def test_the_bucket_policy_denies_the_job_every_deletion() -> None:
    """What the policy document means for the job's principal. moto's S3 server enforces only
    AWS-dialect Deny statements and ignores principals (tests/integration/test_restore_check.py
    shows what it does enforce), so Scaleway's reading of this document is evaluated here."""
    bucket = "prod-db-dumps-6a0c2f3e"
    document = backup.bucket_policy_document(bucket, WRITER, [OPERATOR])
    job = f"application_id:{WRITER}"
    key = restore_check.dump_key(backup.DUMP_PREFIX, "website", dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    dump = f"{bucket}/{key}"
    for action in ("s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"):
        assert _allowed(document, job, action, dump), action
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutObjectRetention",
        "s3:ListBucket",
        "s3:ListBucketVersions",
    ):
        assert not _allowed(document, job, action, dump), action
        assert not _allowed(document, job, action, bucket), action
    # Outside its prefix the job may not even write; the admins may do anything, deleting included.
    assert not _allowed(document, job, "s3:PutObject", f"{bucket}/elsewhere.dump")
    assert _allowed(document, OPERATOR, "s3:DeleteObjectVersion", dump)


# --- Settings: the recipient, the clock -----------------------------------------------------------

#: More public keys from age-keygen, and near misses of the first.
RECIPIENTS = (
    AGE_RECIPIENT,
    "age1xvvf82f7r04ua2kwwlav65my35j6ljz04vzmy8avvhd82t4n7eascpsp66",
    "age1frlcqq6au2k8gzujh6n74z2gsgtkgezug97pu2dj7z36mqe0h30sexx3w7",
)
NOT_RECIPIENTS = {
    "checksum": AGE_RECIPIENT[:-1] + ("q" if AGE_RECIPIENT[-1] != "q" else "p"),
    "typo": AGE_RECIPIENT[:10] + ("q" if AGE_RECIPIENT[10] != "q" else "p") + AGE_RECIPIENT[11:],
    "uppercase": AGE_RECIPIENT.upper(),
    "short": AGE_RECIPIENT[:-2],
    "long": AGE_RECIPIENT + "q",
    "not bech32": AGE_RECIPIENT[:20] + "b" + AGE_RECIPIENT[21:],
    "ssh key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk5f1O8xoqwHP5UwoUD7Ge4vK4Q9eG9GrSuQkRv5Qel",
    "plugin": "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t",
    "empty": "",
}


def test_age_public_keys_are_accepted() -> None:
    for recipient in RECIPIENTS:
        assert _settings(encryptionRecipient=recipient).encryption_recipient == recipient
        assert restore_check.age_recipient_problem(recipient) is None


@pytest.mark.parametrize("kind", sorted(NOT_RECIPIENTS))
def test_anything_else_is_refused_by_the_config_and_by_the_script(kind: str) -> None:
    bad = NOT_RECIPIENTS[kind]
    with pytest.raises(ValueError, match="age") as err:
        _settings(encryptionRecipient=bad)
    assert "encryptionRecipient" in str(err.value)
    assert restore_check.age_recipient_problem(bad) is not None, "the script agrees"


def test_a_private_key_in_place_of_the_recipient_is_refused_and_never_echoed() -> None:
    # The format of an identity (age-keygen's AGE-SECRET-KEY-1 line); not a real key.
    identity = "AGE-SECRET-KEY-1" + "Q" * 58
    with pytest.raises(ValueError, match="a private key") as err:
        _settings(encryptionRecipient=identity)
    assert identity not in str(err.value)
    problem = restore_check.age_recipient_problem(identity)
    assert problem is not None and identity not in problem


def test_padding_bits_must_be_zero() -> None:
    """A Bech32 string with a valid checksum whose last data character sets a padding bit."""
    data = [backup._BECH32.index(c) for c in AGE_RECIPIENT[4:-6]]
    data[-1] ^= 1  # a padding bit
    polymod = backup._bech32_polymod([*backup._AGE_HRP, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    forged = "age1" + "".join(backup._BECH32[v] for v in data + checksum)
    assert backup._bech32_polymod([*backup._AGE_HRP, *data, *checksum]) == 1
    with pytest.raises(ValueError, match="padding bits"):
        _settings(encryptionRecipient=forged)
    assert "padding" in (restore_check.age_recipient_problem(forged) or "")


@pytest.mark.parametrize(
    ("key", "value"), [("rtoMinutes", 0), ("rtoMinutes", -5), ("rpoHours", 0), ("rpoHours", -1)]
)
def test_targets_must_be_positive(key: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"{key}\n.*greater than 0"):
        _settings(**{key: value})


@pytest.mark.parametrize(("key", "value"), [("rtoMinutes", True), ("rpoHours", "26"), ("rtoMinutes", 1.5)])
def test_targets_are_whole_numbers(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{key}\n.*valid integer"):
        _settings(**{key: value})

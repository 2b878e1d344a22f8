"""The daily restore check: prove that the app databases' logical backups restore.

Besides the managed database's own backups (platform:database.backups), a CronJob in the
production cluster runs ``ops/restore_check/restore_check.py`` every day. For each app database it
dumps the source (``pg_dump -Fc`` over the private network), stores the dump in a versioned Object
Storage bucket, restores it into a scratch PostgreSQL inside the job, and runs the sanity checks
declared in ``platform:operations.restoreCheck`` (tables, minimum row counts, freshness). The job
exits non-zero naming each failed check; kube-state-metrics reports the Job's outcome and the
CronJob's last success to alerting (``ops/alerts/platform-rules.yaml``, group platform-backups).

What this component declares:

* the namespace ``restore-check`` (Pod Security ``restricted`` enforced, platform namespace label);
* a versioned bucket whose lifecycle expires dumps (current and replaced versions) after
  ``retentionDays``; protected in production;
* a ``ScopedIdentity`` holding object-storage permission sets only, its key in a Secret;
* with ``bucket_admins``, a bucket policy: the job's key may only write dumps under its prefix,
  the listed principals keep full access (see ``PERMISSION_SETS`` for what that protects);
* a ConfigMap with the script itself (read from the repository at plan time, so what runs is what
  was reviewed) and the generated JSON spec (``restore_check.py --validate`` accepts it: tested);
* a Secret with each database user's password (mounted as files) and the storage keys;
* the CronJob (Forbid concurrency, a retry, a deadline, restricted security context, read-only root
  filesystem with an ``emptyDir`` at ``/work``, resources, pinned image);
* a default-deny NetworkPolicy plus one allowing only DNS, the database on 5432 and public HTTPS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import AfterValidator, Field, StringConstraints, field_validator

from scw_platform import kube
from scw_platform.database import DatabaseCredentials
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.settings import PgIdentifier, Settings, no_duplicates

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:operations.restoreCheck).
# --------------------------------------------------------------------------------------------

#: One cron field: ``*``, a number or a range, an optional ``/step``, comma-separated.
_CRON_FIELD = r"(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?(,(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?)*"
_CRON = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")
#: Field names and bounds of a Kubernetes CronJob schedule (day of week: 0 is Sunday).
_CRON_BOUNDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)
#: The restore check's own duration syntax (ops/restore_check/restore_check.py parse_duration).
_DURATION = re.compile(r"^[1-9][0-9]{0,5}[smhdw]$")
_PG_NAME = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
#: ``orders`` or ``schema.orders`` (the restore check's table syntax).
_PG_TABLE = re.compile(rf"^({_PG_NAME}\.)?{_PG_NAME}$")
_PG_COLUMN = re.compile(rf"^{_PG_NAME}$")
#: ``registry/repository:tag``, ``...@sha256:<digest>`` or both; the tag is mandatory without a digest.
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def _pg_table(name: str) -> str:
    if not _PG_TABLE.fullmatch(name):
        raise ValueError(f"{name!r} is not a table name (use orders or schema.orders)")
    return name


def _pg_column(name: str) -> str:
    if not _PG_COLUMN.fullmatch(name):
        raise ValueError(f"{name!r} is not a column name")
    return name


def _duration(value: str) -> str:
    if not _DURATION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a duration; use a whole number followed by one unit "
            "(s, m, h, d or w), e.g. 30m, 26h, 7d"
        )
    return value


PgTable = Annotated[str, AfterValidator(_pg_table)]
PgColumn = Annotated[str, AfterValidator(_pg_column)]
Duration = Annotated[str, AfterValidator(_duration)]


#: An IAM principal by ID: ``user_id:<uuid>`` or ``application_id:<uuid>``.
BucketAdmin = Annotated[
    str, StringConstraints(pattern=r"^(user_id|application_id):[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
]


class FreshnessCheck(Settings):
    """The newest value of ``table.column`` must be at most ``maxAge`` older than the dump."""

    table: PgTable
    """Table name, orders or schema.orders."""
    column: PgColumn
    """A timestamp column of the table."""
    max_age: Duration
    """Greatest age of the newest value, e.g. 26h or 7d."""


class RestoreCheckDatabase(Settings):
    """Sanity checks run against the restored copy of one app database."""

    database: PgIdentifier
    """A database declared in platform:database.databases."""
    tables: list[PgTable] = Field(default_factory=list)
    """Tables that must exist."""
    min_rows: dict[PgTable, Annotated[int, Field(strict=True, ge=0, le=10**12)]] = Field(default_factory=dict)
    """Table -> minimum row count (a whole number, never a boolean)."""
    freshness: list[FreshnessCheck] = Field(default_factory=list)
    """Freshness checks: the newest value of a column is recent enough."""

    @field_validator("tables")
    @classmethod
    def _tables_once(cls, tables: list[str]) -> list[str]:
        no_duplicates("table", tables)
        return tables

    @field_validator("freshness")
    @classmethod
    def _freshness_once(cls, checks: list[FreshnessCheck]) -> list[FreshnessCheck]:
        no_duplicates("freshness check", [f"{c.table}.{c.column}" for c in checks])
        return checks


class RestoreCheckSettings(Settings):
    """``platform:operations.restoreCheck``: the daily dump, restore and sanity check."""

    schedule: str = "30 3 * * *"
    """Cron schedule (UTC) of the CronJob."""
    image: str
    """The job's image (ops/restore_check/Dockerfile): a tag or a digest, never latest."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days a dump is kept in the bucket (current and replaced versions alike)."""
    scratch_size_gb: int = Field(default=20, ge=1, le=500)
    """Size of the job's scratch volume: the dump plus the restored copy must fit."""
    databases: list[RestoreCheckDatabase] = Field(min_length=1)
    """The app databases to dump, restore and check (each declared under platform:database.databases)."""
    bucket_admins: list[BucketAdmin] = Field(default_factory=list)
    """Who keeps full access to the backup bucket (``user_id:<uuid>`` or ``application_id:<uuid>``). The
    bucket policy denies everyone it does not list, so this must include whoever runs ``pulumi up``; the
    job's own key may then only write dumps. Required in production.
    """

    @field_validator("bucket_admins")
    @classmethod
    def _admins_once_each(cls, admins: list[str]) -> list[str]:
        no_duplicates("bucket admin", admins)
        return admins

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        if not _CRON.fullmatch(schedule):
            raise ValueError(f"must be a cron schedule of five fields such as '30 3 * * *', got {schedule!r}")
        for field_text, (name, low, high) in zip(schedule.split(), _CRON_BOUNDS, strict=True):
            for part in field_text.split(","):
                base, _, step = part.partition("/")
                bounds = [int(n) for n in base.split("-")] if base != "*" else []
                if any(not low <= n <= high for n in bounds) or (step and not 1 <= int(step) <= high):
                    raise ValueError(
                        f"{name} must be within {low}-{high} in a cron schedule, got {schedule!r}"
                    )
        return schedule

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        match = _IMAGE.fullmatch(image)
        if match is None:
            raise ValueError(
                "must be an image reference such as rg.fr-par.scw.cloud/acme/restore-check:16.9-1 "
                f"(got {image!r})"
            )
        if match["tag"] is None and match["digest"] is None:
            raise ValueError(f"{image} has no tag or digest: pin the image (the tag latest is refused too)")
        if match["tag"] == "latest":
            raise ValueError(f"{image} uses the tag latest: pin a version or a digest")
        return image

    @field_validator("databases")
    @classmethod
    def _once_each(cls, databases: list[RestoreCheckDatabase]) -> list[RestoreCheckDatabase]:
        no_duplicates("database", [d.database for d in databases])
        return databases


RESTORE_CHECK_NAMESPACE = "restore-check"
RESTORE_CHECK_CRONJOB = "restore-check"
CONFIG_MAP = "restore-check"
CREDENTIALS_SECRET = "restore-check-credentials"
PULL_SECRET = kube.PULL_SECRET
SERVICE_ACCOUNT = "restore-check"
POD_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "restore-check",
    "app.kubernetes.io/part-of": "platform",
}

CONFIG_MOUNT = "/etc/restore-check"
SECRETS_MOUNT = "/var/run/secrets/restore-check"
WORK_DIR = "/work"
#: The image's postgres user: initdb refuses root and needs a uid with a passwd entry.
RUN_AS = 999
DUMP_PREFIX = "restore-check/"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
#: Scaleway IAM scopes object storage to a project, not to a bucket, and this set lets its holder
#: delete any object version and change a bucket's versioning and lifecycle: versioning alone does
#: not make a deletion by this key recoverable. What protects the dumps is the bucket policy
#: (``bucket_policy_document``, applied when ``RestoreCheckArgs.bucket_admins`` is set): on this
#: bucket the key may only ``s3:PutObject`` under ``DUMP_PREFIX``. Under policy version 2023-04-17
#: "only actions explicitly allowed by the bucket policy are permitted, if the principal is also
#: allowed by an IAM policy" (https://www.scaleway.com/en/docs/object-storage/api-cli/bucket-policy/),
#: so the key can neither read nor delete a dump (current or older version) nor touch the bucket's
#: configuration. An overwrite only adds a version, which versioning keeps for ``retentionDays``.
#: What it does not cover: a bucket policy cannot name the calls that put or delete the policy
#: itself (they are not in Scaleway's action list), so those are decided by IAM alone, and the
#: documentation does not say whether this set grants them. ``ObjectStorageObjectsWrite`` ("create
#: and edit objects"; deleting is a set of its own) would narrow IAM to what the job does;
#: ``identity.PERMISSION_SETS`` does not admit it yet.
#: Without ``bucket_admins`` no policy is applied and only this IAM set limits the key.
PERMISSION_SETS = ("ObjectStorageFullAccess",)
#: Scaleway's current bucket-policy language (2012-10-17 is deprecated there).
BUCKET_POLICY_VERSION = "2023-04-17"
#: The principals a 2023-04-17 bucket policy can name: IAM users and applications (no groups or
#: projects), by ID.
_PRINCIPAL = re.compile(r"^(user_id|application_id):[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")

RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}
#: A run gets this long (dump, upload, restore, checks) before Kubernetes stops it.
ACTIVE_DEADLINE_SECONDS = 3 * 3600


@dataclass(frozen=True, kw_only=True)
class RegistryPull:
    """Read-only credentials for the private registry the image lives in."""

    host: pulumi.Input[str]
    #: Secret.
    password: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class RestoreCheckArgs:
    provider: k8s.Provider
    environment: str
    region: str
    project_id: str
    settings: RestoreCheckSettings
    #: Source of the restore check script the job runs (the program's ops/restore_check), mounted
    #: from a ConfigMap into the pinned image: a reviewed change to it rolls out with the plan.
    script: str
    #: The database's private endpoint.
    database_host: pulumi.Input[str]
    database_port: pulumi.Input[int]
    #: Every app database's credentials, by database name (ManagedPostgres.credentials).
    credentials: Mapping[str, DatabaseCredentials]
    #: Protect the bucket (every role but development).
    protect: bool
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    registry: RegistryPull | None = None
    #: Principals (``user_id:<uuid>``, ``application_id:<uuid>``) that keep full access to the bucket
    #: once its policy applies. A 2023-04-17 policy denies everyone it does not list "regardless of
    #: what is defined in the IAM policy"; the Organization Owner keeps only the right to put and
    #: delete the policy (https://www.scaleway.com/en/docs/object-storage/api-cli/bucket-policy/,
    #: .../combining-iam-and-object-storage/). List the identity that runs ``pulumi up`` (it reads
    #: and updates the bucket and the policy) and the operators who restore from the dumps. Empty:
    #: no bucket policy (see ``PERMISSION_SETS``).
    bucket_admins: Sequence[str] = field(default_factory=tuple)
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unknown = sorted({d.database for d in self.settings.databases} - set(self.credentials))
        if unknown:
            raise ValueError(f"restore check for databases without credentials: {', '.join(unknown)}")
        malformed = [p for p in self.bucket_admins if not _PRINCIPAL.fullmatch(p)]
        if malformed:
            raise ValueError(
                f"bucket admins must be user_id:<uuid> or application_id:<uuid>, got {', '.join(malformed)}"
            )


# --- Pure functions (tested without Pulumi) ----------------------------------------------------------


def bucket_name(environment: str, project_id: str) -> str:
    """Bucket names are global across Scaleway: the project's first UUID group makes it unique."""
    return f"{environment}-db-dumps-{project_id.split('-', 1)[0]}"


def object_storage_endpoint(region: str) -> str:
    return f"https://s3.{region}.scw.cloud"


def password_key(database: str) -> str:
    return f"password-{database}"


def password_file(database: str) -> str:
    return f"{SECRETS_MOUNT}/{database}/password"


def lifecycle_rules(retention_days: int) -> Any:
    return [
        {
            "id": "expire-dumps",
            "enabled": True,
            "prefix": DUMP_PREFIX,
            "expiration": {"days": retention_days},
            # Versioning keeps what is overwritten or deleted; keep that no longer than the dumps.
            "noncurrent_version_expiration": {"noncurrent_days": retention_days},
            "abort_incomplete_multipart_upload_days": 1,
        }
    ]


def spec_document(
    databases: Sequence[RestoreCheckDatabase],
    users: Mapping[str, str],
    *,
    host: str,
    port: int,
    bucket: str,
    region: str,
) -> dict[str, Any]:
    """The restore check's spec (ops/restore_check/restore_check.py ``load_spec``)."""
    entries = []
    for db in databases:
        checks: dict[str, Any] = {}
        if db.tables:
            checks["tables"] = list(db.tables)
        if db.min_rows:
            checks["minRows"] = dict(db.min_rows)
        if db.freshness:
            checks["freshness"] = [
                {"table": f.table, "column": f.column, "maxAge": f.max_age} for f in db.freshness
            ]
        entries.append(
            {
                # The script's names start with a letter or digit (they name dump objects).
                "name": db.database if db.database[0] != "_" else f"db{db.database}",
                "connection": {
                    "dbname": db.database,
                    "host": host,
                    "port": port,
                    "user": users[db.database],
                    # The managed database serves TLS on its private endpoint too.
                    "sslmode": "require",
                    "passwordFile": password_file(db.database),
                },
                "checks": checks,
            }
        )
    return {
        "databases": entries,
        "storage": {
            "type": "s3",
            "endpoint": object_storage_endpoint(region),
            "region": region,
            "bucket": bucket,
            "prefix": DUMP_PREFIX,
            "addressing": "virtual",
            "accessKeyEnv": ACCESS_KEY_ENV,
            "secretKeyEnv": SECRET_KEY_ENV,
        },
    }


def render_spec(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def bucket_policy_document(bucket: str, writer_application_id: str, admins: Sequence[str]) -> dict[str, Any]:
    """The bucket's policy: the restore check's application may only write dumps under its prefix
    (the script only PUTs: it never lists, reads or deletes), the admins keep every action."""
    return {
        "Version": BUCKET_POLICY_VERSION,
        "Id": "restore-check-dumps",
        "Statement": [
            {
                "Sid": "RestoreCheckWritesDumps",
                "Effect": "Allow",
                "Principal": {"SCW": f"application_id:{writer_application_id}"},
                "Action": ["s3:PutObject"],
                "Resource": [f"{bucket}/{DUMP_PREFIX}*"],
            },
            {
                "Sid": "AdminsKeepFullAccess",
                "Effect": "Allow",
                "Principal": {"SCW": list(admins)},
                "Action": ["s3:*"],
                "Resource": [bucket, f"{bucket}/*"],
            },
        ],
    }


def egress_spec(database_cidr: pulumi.Input[str], database_port: pulumi.Input[int]) -> Any:
    """What the job may reach on top of the default deny (nothing may reach it)."""
    return {
        "podSelector": {"matchLabels": dict(POD_LABELS)},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [
            kube.dns_egress_rule(),
            # The database's private endpoint only, not the private network.
            {
                "to": [{"ipBlock": {"cidr": database_cidr}}],
                "ports": [{"protocol": "TCP", "port": database_port}],
            },
            # The bucket (s3.<region>.scw.cloud has no published address range).
            kube.public_https_egress_rule(),
        ],
    }


def _restore_container(settings: RestoreCheckSettings) -> dict[str, Any]:
    """The job's one container: the reviewed script from the ConfigMap, hardened, keys from the Secret.

    A step of :func:`cronjob_spec`.
    """
    container_security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "name": "restore-check",
        "image": settings.image,
        "imagePullPolicy": "Always",
        # The script from the ConfigMap, not the image's copy: what runs is what was planned.
        "command": ["python3", f"{CONFIG_MOUNT}/restore_check.py"],
        "args": ["--spec", f"{CONFIG_MOUNT}/spec.json", "--work-dir", WORK_DIR],
        "env": [
            {"name": "TMPDIR", "value": WORK_DIR},
            {"name": "PGCONNECT_TIMEOUT", "value": "15"},
            *(
                {"name": env, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": env}}}
                for env in (ACCESS_KEY_ENV, SECRET_KEY_ENV)
            ),
        ],
        "resources": {k: dict(v) for k, v in RESOURCES.items()},
        "securityContext": container_security,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "credentials", "mountPath": SECRETS_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": WORK_DIR},
        ],
    }


def _restore_pod(
    settings: RestoreCheckSettings, *, databases: Sequence[str], pull_secret: bool
) -> dict[str, Any]:
    """The job's pod: no API token, restricted security context, its config, passwords and scratch space.

    A step of :func:`cronjob_spec`.
    """
    pod: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        # The job never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_restore_container(settings)],
        "volumes": [
            {"name": "config", "configMap": {"name": CONFIG_MAP}},
            {
                "name": "credentials",
                "secret": {
                    "secretName": CREDENTIALS_SECRET,
                    "defaultMode": 0o400,
                    "items": [{"key": password_key(db), "path": f"{db}/password"} for db in databases],
                },
            },
            # The dump and the scratch cluster; the root filesystem stays read-only.
            {"name": "work", "emptyDir": {"sizeLimit": f"{settings.scratch_size_gb}Gi"}},
        ],
    }
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": PULL_SECRET}]
    return pod


def cronjob_spec(settings: RestoreCheckSettings, *, databases: Sequence[str], pull_secret: bool) -> Any:
    """The CronJob's spec (typed ``Any``: a plain dict, not the SDK's nested TypedDicts)."""
    pod = _restore_pod(settings, databases=databases, pull_secret=pull_secret)
    return {
        "schedule": settings.schedule,
        "timeZone": "Etc/UTC",
        # Two runs at once would fight over the scratch volume and double the load on the database.
        "concurrencyPolicy": "Forbid",
        # A run missed by more than an hour (cluster down) is skipped; the next day's runs.
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": dict(POD_LABELS)},
            "spec": {
                # One retry survives a lost node; a failed check fails again and stays failed.
                "backoffLimit": 1,
                "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
                "template": {"metadata": {"labels": dict(POD_LABELS)}, "spec": pod},
            },
        },
    }


def checkov_skips(image: str) -> dict[str, str]:
    """Why the CronJob departs from three checkov defaults (validate.py requires a reason)."""
    skips = {
        "checkov.io/skip1": "CKV_K8S_40=uid 999 is the image's postgres user: initdb refuses root and "
        "needs a uid with a passwd entry; runAsNonRoot and no privilege escalation still hold",
        "checkov.io/skip2": "CKV_K8S_35=restore_check.py reads the Object Storage keys from the "
        "environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, like every S3 client); the database "
        "passwords are mounted as files",
    }
    if "@sha256:" not in image:
        skips["checkov.io/skip3"] = (
            "CKV_K8S_43=pinned by the tag in platform:operations.restoreCheck.image (latest refused); "
            "a digest is accepted there too"
        )
    return skips


def _tag_map(tags: Sequence[str]) -> dict[str, str]:
    pairs = (tag.split("=", 1) if "=" in tag else [tag, tag] for tag in tags)
    return dict(pairs)


# --- The component --------------------------------------------------------------------------------


class RestoreCheck(pulumi.ComponentResource):
    namespace: str = RESTORE_CHECK_NAMESPACE
    cronjob_name: str = RESTORE_CHECK_CRONJOB
    bucket: scaleway.object.Bucket
    bucket_name: pulumi.Output[str]
    #: Applied when ``bucket_admins`` is set.
    bucket_policy: scaleway.object.BucketPolicy | None = None
    #: The generated spec (JSON text).
    spec: pulumi.Output[str]
    cronjob: k8s.batch.v1.CronJob

    def __init__(self, name: str, args: RestoreCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:backup:RestoreCheck", name, None, opts)
        settings = args.settings
        databases = [d.database for d in settings.databases]
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        self.bucket = self._bucket(name, args)
        self.bucket_name = self.bucket.name
        identity = self._writer_identity(name, args)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": RESTORE_CHECK_NAMESPACE, "labels": dict(args.namespace_labels)},
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        meta: Any = {"namespace": RESTORE_CHECK_NAMESPACE, "labels": dict(POD_LABELS)}

        self.spec = self._spec(args, databases)
        needs: list[pulumi.Resource] = [
            namespace,
            self._config(name, args, meta, in_namespace),
            self._credentials(name, args, identity, meta, in_namespace),
            *self._pod_identity(name, args, meta, in_namespace),
        ]
        self._network_policies(name, args, meta, in_namespace)
        self.cronjob = k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata={**meta, "name": RESTORE_CHECK_CRONJOB, "annotations": checkov_skips(settings.image)},
            spec=cronjob_spec(settings, databases=databases, pull_secret=args.registry is not None),
            # Its first run needs the script, the spec, the passwords and the service account.
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=needs)),
        )
        self.register_outputs(
            {
                "namespace": RESTORE_CHECK_NAMESPACE,
                "cronjob": RESTORE_CHECK_CRONJOB,
                "bucket": self.bucket_name,
            }
        )

    def _bucket(self, name: str, args: RestoreCheckArgs) -> scaleway.object.Bucket:
        """Declare the versioned dump bucket whose lifecycle expires dumps after ``retentionDays``."""
        return scaleway.object.Bucket(
            f"{name}-bucket",
            name=bucket_name(args.environment, args.project_id),
            region=args.region,
            project_id=args.project_id,
            versioning={"enabled": True},
            lifecycle_rules=lifecycle_rules(args.settings.retention_days),
            # Never empty a bucket of backups on delete: destroying it must be a deliberate act.
            force_destroy=False,
            tags=_tag_map(args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

    def _writer_identity(self, name: str, args: RestoreCheckArgs) -> ScopedIdentity:
        """Declare the job's object-storage identity and, with ``bucket_admins``, the bucket policy.

        The policy needs the identity's application id; it is kept in :attr:`bucket_policy`.
        """
        identity = ScopedIdentity(
            f"{name}-identity",
            ScopedIdentityArgs(
                description=f"Restore check ({args.environment}): writes database dumps to its bucket",
                project_id=args.project_id,
                permission_sets=list(PERMISSION_SETS),
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.bucket_admins:
            admins = list(args.bucket_admins)
            self.bucket_policy = scaleway.object.BucketPolicy(
                f"{name}-bucket-policy",
                bucket=self.bucket.name,
                policy=pulumi.Output.all(self.bucket.name, identity.application_id).apply(
                    lambda parts: json.dumps(
                        bucket_policy_document(str(parts[0]), str(parts[1]), admins), sort_keys=True
                    )
                ),
                # Object Storage calls are scoped by project: outside the default one, a bucket's
                # children must name it (the provider's documentation).
                project_id=args.project_id,
                region=args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return identity

    def _spec(self, args: RestoreCheckArgs, databases: Sequence[str]) -> pulumi.Output[str]:
        """The generated spec (JSON text), once the database endpoint and the bucket name are known."""
        users = {db: args.credentials[db].user for db in databases}
        return pulumi.Output.all(args.database_host, args.database_port, self.bucket.name).apply(
            lambda parts: render_spec(
                spec_document(
                    args.settings.databases,
                    users,
                    host=str(parts[0]),
                    port=int(parts[1]),
                    bucket=str(parts[2]),
                    region=args.region,
                )
            )
        )

    def _config(
        self, name: str, args: RestoreCheckArgs, meta: Any, in_namespace: pulumi.ResourceOptions
    ) -> k8s.core.v1.ConfigMap:
        """Declare the ConfigMap holding the script and the spec the job runs with."""
        config_data: dict[str, pulumi.Input[str]] = {
            "restore_check.py": args.script,
            "spec.json": self.spec,
        }
        return k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={**meta, "name": CONFIG_MAP},
            data=config_data,
            opts=in_namespace,
        )

    def _credentials(
        self,
        name: str,
        args: RestoreCheckArgs,
        identity: ScopedIdentity,
        meta: Any,
        in_namespace: pulumi.ResourceOptions,
    ) -> k8s.core.v1.Secret:
        """Declare the Secret with each database user's password (mounted as files) and the storage keys."""
        credentials_data: dict[str, pulumi.Input[str]] = {
            password_key(d.database): pulumi.Output.secret(args.credentials[d.database].password)
            for d in args.settings.databases
        }
        credentials_data[ACCESS_KEY_ENV] = pulumi.Output.secret(identity.access_key)
        credentials_data[SECRET_KEY_ENV] = identity.secret_key
        return k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={**meta, "name": CREDENTIALS_SECRET},
            type="Opaque",
            string_data=credentials_data,
            opts=in_namespace,
        )

    def _pod_identity(
        self, name: str, args: RestoreCheckArgs, meta: Any, in_namespace: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """Declare the job's service account and, with a private registry, its image pull secret.

        Returns both (pull secret first) for the CronJob to wait on.
        """
        needs: list[pulumi.Resource] = []
        if args.registry is not None:
            needs.append(
                kube.image_pull_secret(
                    f"{name}-registry-pull",
                    metadata=meta,
                    host=args.registry.host,
                    password=args.registry.password,
                    opts=in_namespace,
                )
            )
        needs.append(
            k8s.core.v1.ServiceAccount(
                f"{name}-service-account",
                metadata={**meta, "name": SERVICE_ACCOUNT},
                automount_service_account_token=False,
                opts=in_namespace,
            )
        )
        return needs

    def _network_policies(
        self, name: str, args: RestoreCheckArgs, meta: Any, in_namespace: pulumi.ResourceOptions
    ) -> None:
        """Declare the default deny and the one egress policy: DNS, the database on 5432, public HTTPS."""
        kube.default_deny_policy(f"{name}-default-deny", metadata=meta, opts=in_namespace)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata={**meta, "name": "restore-check-egress"},
            spec=egress_spec(
                pulumi.Output.from_input(args.database_host).apply(lambda ip: f"{ip}/32"),
                args.database_port,
            ),
            opts=in_namespace,
        )

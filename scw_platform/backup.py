"""The daily restore check: prove that the app databases' logical backups restore, and how fast.

Besides the managed database's own backups (platform:database.backups), a CronJob in the
production cluster runs ``ops/restore_check/restore_check.py`` every day. For each app database it
dumps the source (``pg_dump -Fc`` over the private network) as that database's READ-ONLY user
(``DatabaseCredentials.reader``, never the app's read-write user: a compromised or buggy job can
read, not change, the data), encrypts the dump with age, stores the ciphertext in a versioned Object
Storage bucket, reads that very version back, decrypts it, restores it into a scratch PostgreSQL
inside the job, and runs the sanity checks declared in ``platform:operations.restoreCheck``
(tables, minimum row counts, freshness). It times the recovery: the restore (read back, decryption,
``pg_restore``) against ``rtoMinutes``, and the age of the newest restored row (over each database's
freshness columns) against ``rpoHours``. The job exits non-zero naming each failed check (a failed
decryption and an over-target restore included); kube-state-metrics reports the Job's outcome and
the CronJob's last success to alerting (``ops/alerts/platform-rules.yaml``, group platform-backups).

Why age (https://age-encryption.org), public-key encryption in the job, rather than SSE-C (the
object store encrypting with a key the client sends on every request): with SSE-C the key travels
to Object Storage on every PUT and GET, and whoever can call the bucket with it can read the dumps;
with age the bucket only ever receives ciphertext, and the encryption key is a *public* key in
stack config (``encryptionRecipient``), useless for reading. The private key (the age identity)
never leaves the cluster and the vault: an operator generates it (``age-keygen``), stores it in
Scaleway Secret Manager at ``/platform/restore-check/age-identity``, and an ExternalSecret syncs it
into this namespace, where only the restore job mounts it. It is in neither Pulumi's state nor its
config. The bucket holds every member's data for ``retentionDays``: hence encryption is required.

What this component declares:

* the namespace ``restore-check`` (Pod Security ``restricted`` enforced, platform namespace label);
* a versioned bucket whose lifecycle expires dumps (current and replaced versions) after
  ``retentionDays``; protected in production;
* a ``ScopedIdentity`` holding the object-level Object Storage sets only (read and write objects:
  no bucket, bucket-policy or delete rights), its key in a Secret;
* a bucket policy, always (``bucket_admins`` is required): the job's key may only write dumps
  under its prefix and read them back (never delete, list or reconfigure), the listed principals
  keep full access (see ``PERMISSION_SETS`` for what that protects);
* a ConfigMap with the script itself (read from the repository at plan time, so what runs is what
  was reviewed) and the generated JSON spec (``restore_check.py --validate`` accepts it: tested);
* a Secret with each database's read-only user's password (mounted as files) and the storage keys;
* an ExternalSecret syncing the age identity from the platform's ClusterSecretStore into the Secret
  ``restore-check-age-identity`` (mounted as a file, only into the job);
* the CronJob (Forbid concurrency, a retry, a deadline, restricted security context, read-only root
  filesystem with an ``emptyDir`` at ``/work``, resources, pinned image: by digest when the
  reference has one, and required so in production (``RestoreCheckArgs.require_digest``), never
  pulled ``Always`` on a tag);
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
from scw_platform.database import DatabaseCredentials, DatabaseUser
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.registry import RegistryPull
from scw_platform.secrets import SCALEWAY_STORE
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
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def has_digest(image: str) -> bool:
    """Whether ``image`` names its content (``...@sha256:<64 hex>``), with or without a tag."""
    return _DIGEST.search(image) is not None


def digest_problem(image: str) -> str | None:
    """Why ``image`` is not pinned by digest (None when it is): the message for a config key whose
    image a job holding the platform's credentials runs (production's restore check and drill)."""
    if has_digest(image):
        return None
    return (
        f"{image} is a tag, which whoever may push to the registry (the CI push key) can move: pin "
        "the digest CI printed for it, e.g. <repository>:<tag>@sha256:<64 hex> (the tag stays for "
        "readability, the digest decides what runs)"
    )


#: The jobs' image pull policy, whatever the reference. By digest (required in production, where
#: the jobs run), the content is fixed, so pulling again proves nothing and only adds a registry
#: outage to the job's failure modes. By tag (accepted outside production) it only narrows the
#: window: a node that has the image keeps running it, one that does not pulls whatever the tag
#: names now; the digest is what keeps a moved tag out.
PULL_POLICY = "IfNotPresent"


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


# age's X25519 recipients are Bech32 (BIP 173) with the human-readable part "age": "age1", 52 data
# characters (the 32-byte key in 5-bit groups, then 4 zero padding bits) and a 6-character checksum
# (https://github.com/C2SP/C2SP/blob/main/age.md, "The X25519 recipient type"). The restore check
# script validates its spec with the same rules (tests/unit/test_backup.py proves they agree).
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE_RECIPIENT = re.compile(rf"^age1[{_BECH32}]{{58}}$")
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
#: "age" expanded for the Bech32 checksum: the high bits of each character, 0, the low bits.
_AGE_HRP = (3, 3, 3, 0, 1, 7, 5)


def _bech32_polymod(values: Sequence[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def _age_recipient(value: str) -> str:
    """An age X25519 public key exactly as ``age-keygen`` prints it: ``age1``, lowercase Bech32,
    a valid checksum and a 32-byte key (no other recipient types: the job's age has no plugins)."""
    if value.upper().startswith("AGE-SECRET-KEY-"):
        # Never echoed: a private key where the public one belongs.
        raise ValueError(
            "this is an age identity (a private key), not a recipient: remove it from the stack "
            "file, treat it as leaked (make a new one), and set the public key (age-keygen -y)"
        )
    if not _AGE_RECIPIENT.fullmatch(value):
        raise ValueError(
            "must be an age X25519 public key, age1 followed by 58 lowercase Bech32 characters as "
            f"age-keygen prints it (got {value!r})"
        )
    data = [_BECH32.index(c) for c in value[4:]]
    if _bech32_polymod([*_AGE_HRP, *data]) != 1:
        raise ValueError(
            f"{value!r} is not a valid age public key: its Bech32 checksum does not match (a typo?)"
        )
    if data[-7] & 0b1111:  # the last data character holds the key's last bit and 4 padding bits
        raise ValueError(f"{value!r} is not a valid age public key: its padding bits are not zero")
    return value


PgTable = Annotated[str, AfterValidator(_pg_table)]
PgColumn = Annotated[str, AfterValidator(_pg_column)]
Duration = Annotated[str, AfterValidator(_duration)]
AgeRecipient = Annotated[str, AfterValidator(_age_recipient)]


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
    freshness: list[FreshnessCheck] = Field(default_factory=list, validate_default=True)
    """Freshness checks: the newest value of a column is recent enough. At least one: the newest
    restored row over these columns is what ``rpoHours`` is measured on."""

    @field_validator("tables")
    @classmethod
    def _tables_once(cls, tables: list[str]) -> list[str]:
        no_duplicates("table", tables)
        return tables

    @field_validator("freshness")
    @classmethod
    def _freshness_once(cls, checks: list[FreshnessCheck]) -> list[FreshnessCheck]:
        if not checks:
            raise ValueError(
                "at least one freshness check is required: the age of the newest restored row, over "
                "these timestamp columns, is what rpoHours is measured on"
            )
        no_duplicates("freshness check", [f"{c.table}.{c.column}" for c in checks])
        return checks


class RestoreCheckSettings(Settings):
    """``platform:operations.restoreCheck``: the daily dump, restore and sanity check."""

    schedule: str = "30 3 * * *"
    """Cron schedule (UTC) of the CronJob."""
    image: str
    """The job's image (ops/restore_check/Dockerfile): a tag or a digest
    (``<repository>:<tag>@sha256:<64 hex>``), never latest; production requires the digest."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days a dump is kept in the bucket (current and replaced versions alike)."""
    scratch_size_gb: int = Field(default=20, ge=1, le=500)
    """Size of the job's scratch volume: the dump plus the restored copy must fit."""
    databases: list[RestoreCheckDatabase] = Field(min_length=1)
    """The app databases to dump, restore and check (each declared under platform:database.databases)."""
    encryption_recipient: AgeRecipient
    """The age public key (``age1...``, from ``age-keygen``) every dump is encrypted to before it
    leaves the job. Required: the bucket holds every member's data for ``retentionDays``, so it only
    ever gets ciphertext. The private key lives in the vault only (Secret Manager,
    ``/platform/restore-check/age-identity``), from which the restore job alone receives it."""
    rto_minutes: int = Field(strict=True, gt=0, le=24 * 60)
    """Recovery time objective: the longest a restore may take (read back, decryption,
    pg_restore), in whole minutes; a slower restore fails the check."""
    rpo_hours: int = Field(strict=True, gt=0, le=24 * 366)
    """Recovery point objective: the oldest the newest restored row (over each database's
    freshness columns) may be when restored, in whole hours; an older one fails the check."""
    bucket_admins: list[BucketAdmin] = Field(default_factory=list, validate_default=True)
    """Who keeps full access to the backup bucket (``user_id:<uuid>`` or ``application_id:<uuid>``).
    Required: the bucket policy, which alone keeps the job's key to writing and reading back its
    own dumps, is always applied, and it denies everyone it does not list, so this must include
    whoever runs ``pulumi up``.
    """

    @field_validator("bucket_admins")
    @classmethod
    def _admins_once_each(cls, admins: list[str]) -> list[str]:
        if not admins:
            raise ValueError(
                "required: at least one principal (user_id:<uuid> or application_id:<uuid>) that keeps "
                "full access to the backup bucket, the identity that runs pulumi up among them; the "
                "bucket policy that confines the job's key to its dumps denies everyone else"
            )
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
#: The image's virtualenv (ops/restore_check/Dockerfile): Debian's python3 plus the pinned boto3.
PYTHON = "/opt/restore-check/venv/bin/python3"
#: The age identity (private key): in the vault only, synced into this Secret by an ExternalSecret
#: and mounted into the job alone. Operators put it there (docs/runbooks/restore-check.md).
AGE_IDENTITY_SECRET = "restore-check-age-identity"
AGE_IDENTITY_KEY = "identity"
AGE_IDENTITY_REMOTE_KEY = "path:/platform/restore-check/age-identity"
AGE_IDENTITY_MOUNT = "/var/run/secrets/restore-check-age"
AGE_IDENTITY_FILE = f"{AGE_IDENTITY_MOUNT}/{AGE_IDENTITY_KEY}"
#: The image's postgres user: initdb refuses root and needs a uid with a passwd entry.
RUN_AS = 999
DUMP_PREFIX = "restore-check/"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
#: Scaleway IAM scopes object storage to a project, not to a bucket (no resource-level conditions for
#: Object Storage: https://www.scaleway.com/en/docs/iam/reference-content/supported-products-resource-level/),
#: so the IAM sets are the narrowest that do the job's calls on any bucket of the project:
#: ``ObjectStorageObjectsRead`` (GetObject, HeadObject) and ``ObjectStorageObjectsWrite``
#: (PutObject and the multipart upload calls) - "Amazon S3 and IAM permissions equivalence",
#: https://www.scaleway.com/en/docs/object-storage/reference-content/s3-iam-permissions-equivalence/
#: (scaleway/docs-content pages/object-storage/reference-content/s3-iam-permissions-equivalence.mdx).
#: Neither grants a deletion (``ObjectStorageObjectsDelete``), a bucket change
#: (``ObjectStorageBucketsWrite``/``Delete``) or the bucket policy calls
#: (``ObjectStorageBucketPolicyFullAccess``), all of which ``ObjectStorageFullAccess`` did.
#: On this bucket the policy narrows further (``bucket_policy_document``, always applied:
#: ``RestoreCheckArgs.bucket_admins`` is required): the key may only ``s3:PutObject`` under
#: ``DUMP_PREFIX`` and read those objects back
#: (``s3:GetObject``, ``s3:GetObjectVersion``: the restore proves the stored version, not a local
#: copy). Under policy version 2023-04-17 "only actions explicitly allowed by the bucket policy are
#: permitted, if the principal is also allowed by an IAM policy" and "Deny statements are therefore
#: useless" (https://www.scaleway.com/en/docs/object-storage/api-cli/bucket-policy/), so the key
#: can neither delete a dump (``s3:DeleteObject``, ``s3:DeleteObjectVersion``: current or older
#: version), nor list the bucket, nor touch its configuration. An overwrite only adds a version,
#: which versioning keeps for ``retentionDays``. Reading back lets a stolen key download old dumps:
#: ciphertext, which only the age identity (the vault, the job's pod) decrypts.
#: A failed multipart upload cannot be aborted by this key (AbortMultipartUpload is in
#: ``ObjectStorageObjectsDelete``, and the bucket policy never allowed it): the lifecycle rule's
#: ``abort_incomplete_multipart_upload_days`` clears the parts after a day.
#: What it does not cover: other buckets of the project that have no bucket policy of their own,
#: whose objects this key may list, read and write (never delete) by IAM alone.
PERMISSION_SETS = ("ObjectStorageObjectsRead", "ObjectStorageObjectsWrite")
#: What the job's key may do on its prefix: write a dump, then read that version back.
JOB_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:GetObjectVersion")
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
class MetricsPush:
    """Where the job pushes its figures (a Pushgateway in the same cluster), and how its network
    policy names that destination: the job may reach those pods on that port and nothing else there."""

    url: str
    namespace: str
    pod_labels: Mapping[str, str]
    port: int


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
    #: and updates the bucket and the policy) and the operators who restore from the dumps.
    #: Required (at least one): the policy is always applied (see ``PERMISSION_SETS``).
    bucket_admins: Sequence[str] = field(default_factory=tuple)
    tags: Sequence[str] = field(default_factory=tuple)
    #: The ClusterSecretStore the age identity is read from (the platform's own entries, Scaleway
    #: Secret Manager: ``SecretsOperator.platform_store``), and the identity's key in it.
    secret_store: str = SCALEWAY_STORE
    identity_remote_key: str = AGE_IDENTITY_REMOTE_KEY
    #: What the ExternalSecret waits for (the operator and its stores).
    secrets_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    #: Where the job pushes its clock on recovery (restore duration, newest row age, targets) so
    #: the alert rules see them; None: the figures stay in the job's log and summary line only.
    metrics_push: MetricsPush | None = None
    #: Refuse an image without a digest (production: the job holds every database's read-only
    #: password, and a tag is whatever the registry's last push made it).
    require_digest: bool = False

    def __post_init__(self) -> None:
        if not self.bucket_admins:
            raise ValueError(
                "bucket_admins is required: the bucket policy confining the job's key to its dumps is "
                "always applied, and it denies every principal it does not list"
            )
        if self.require_digest and (problem := digest_problem(self.settings.image)) is not None:
            raise ValueError(f"restore check image: {problem}")
        checked = [d.database for d in self.settings.databases]
        unknown = sorted(set(checked) - set(self.credentials))
        if unknown:
            raise ValueError(f"restore check for databases without credentials: {', '.join(unknown)}")
        no_reader = sorted(db for db in checked if self.credentials[db].reader is None)
        if no_reader:
            raise ValueError(
                f"restore check for databases without a read-only user: {', '.join(no_reader)} "
                "(DatabaseCredentials.reader): the dump never runs as the app's read-write user"
            )
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


def checks_document(db: RestoreCheckDatabase) -> dict[str, Any]:
    """One database's ``checks`` in the restore check's spec: tables, minRows, freshness (also what
    the backup drill runs on its copy, scw_platform/drill.py)."""
    checks: dict[str, Any] = {}
    if db.tables:
        checks["tables"] = list(db.tables)
    if db.min_rows:
        checks["minRows"] = dict(db.min_rows)
    if db.freshness:
        checks["freshness"] = [
            {"table": f.table, "column": f.column, "maxAge": f.max_age} for f in db.freshness
        ]
    return checks


def spec_document(
    settings: RestoreCheckSettings,
    users: Mapping[str, str],
    *,
    host: str,
    port: int,
    bucket: str,
    region: str,
) -> dict[str, Any]:
    """The restore check's spec (ops/restore_check/restore_check.py ``load_spec``); ``users`` are
    the databases' read-only users."""
    entries = []
    for db in settings.databases:
        checks = checks_document(db)
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
        "encryption": {"recipient": settings.encryption_recipient, "identityFile": AGE_IDENTITY_FILE},
        "targets": {"rtoMinutes": settings.rto_minutes, "rpoHours": settings.rpo_hours},
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


def reader_of(credentials: DatabaseCredentials) -> DatabaseUser:
    """The database's read-only user, what the dump runs as (``RestoreCheckArgs`` refuses none)."""
    if credentials.reader is None:
        raise ValueError(f"database {credentials.database} has no read-only user to dump with")
    return credentials.reader


def age_identity_spec(secret_store: str, remote_key: str) -> Any:
    """The ExternalSecret's spec: the vault's age identity into the Secret the job mounts."""
    return {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": secret_store},
        "target": {"name": AGE_IDENTITY_SECRET, "creationPolicy": "Owner"},
        "data": [{"secretKey": AGE_IDENTITY_KEY, "remoteRef": {"key": remote_key}}],
    }


def render_spec(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def bucket_policy_document(bucket: str, writer_application_id: str, admins: Sequence[str]) -> dict[str, Any]:
    """The bucket's policy: the restore check's application may only write dumps under its prefix
    and read them back (the script PUTs, then HEADs and GETs the version it wrote: it never lists or
    deletes), the admins keep every action. Nothing else is allowed, so nothing else is permitted
    (2023-04-17: no Deny statements, see ``PERMISSION_SETS``)."""
    return {
        "Version": BUCKET_POLICY_VERSION,
        "Id": "restore-check-dumps",
        "Statement": [
            {
                "Sid": "RestoreCheckWritesAndReadsBackDumps",
                "Effect": "Allow",
                "Principal": {"SCW": f"application_id:{writer_application_id}"},
                "Action": list(JOB_ACTIONS),
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


def egress_spec(
    database_cidr: pulumi.Input[str],
    database_port: pulumi.Input[int],
    metrics_push: MetricsPush | None = None,
) -> Any:
    """What the job may reach on top of the default deny (nothing may reach it)."""
    to_pushgateway = (
        [
            {
                "to": [
                    {
                        "namespaceSelector": kube.namespace_selector(metrics_push.namespace),
                        "podSelector": {"matchLabels": dict(metrics_push.pod_labels)},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": metrics_push.port}],
            }
        ]
        if metrics_push is not None
        else []
    )
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
            *to_pushgateway,
        ],
    }


def _restore_container(settings: RestoreCheckSettings, metrics_url: str | None) -> dict[str, Any]:
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
        "imagePullPolicy": PULL_POLICY,
        # The script from the ConfigMap, not the image's copy: what runs is what was planned.
        "command": [PYTHON, f"{CONFIG_MOUNT}/restore_check.py"],
        "args": [
            "--spec",
            f"{CONFIG_MOUNT}/spec.json",
            "--work-dir",
            WORK_DIR,
            # The figures the recovery alerts read; a failed push is a warning, never a failed check.
            *(["--pushgateway", metrics_url] if metrics_url else []),
        ],
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
            {"name": "age-identity", "mountPath": AGE_IDENTITY_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": WORK_DIR},
        ],
    }


def _restore_pod(
    settings: RestoreCheckSettings, *, databases: Sequence[str], pull_secret: bool, metrics_url: str | None
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
        "containers": [_restore_container(settings, metrics_url)],
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
            # The age identity decrypting the dumps: from the vault, for this job only.
            {
                "name": "age-identity",
                "secret": {
                    "secretName": AGE_IDENTITY_SECRET,
                    "defaultMode": 0o400,
                    "items": [{"key": AGE_IDENTITY_KEY, "path": AGE_IDENTITY_KEY}],
                },
            },
            # The dump and the scratch cluster; the root filesystem stays read-only.
            {"name": "work", "emptyDir": {"sizeLimit": f"{settings.scratch_size_gb}Gi"}},
        ],
    }
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": PULL_SECRET}]
    return pod


def cronjob_spec(
    settings: RestoreCheckSettings,
    *,
    databases: Sequence[str],
    pull_secret: bool,
    metrics_url: str | None = None,
) -> Any:
    """The CronJob's spec (typed ``Any``: a plain dict, not the SDK's nested TypedDicts)."""
    pod = _restore_pod(settings, databases=databases, pull_secret=pull_secret, metrics_url=metrics_url)
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
        "passwords and the age identity are mounted as files",
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
    bucket_policy: scaleway.object.BucketPolicy
    #: The job's Object Storage identity (``PERMISSION_SETS`` on the project).
    identity: ScopedIdentity
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
            self._age_identity(name, args, meta, in_namespace),
            *self._pod_identity(name, args, meta, in_namespace),
        ]
        self._network_policies(name, args, meta, in_namespace)
        self.cronjob = k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata={**meta, "name": RESTORE_CHECK_CRONJOB, "annotations": checkov_skips(settings.image)},
            spec=cronjob_spec(
                settings,
                databases=databases,
                pull_secret=args.registry is not None,
                metrics_url=args.metrics_push.url if args.metrics_push is not None else None,
            ),
            # Its first run needs the script, the spec, the passwords, the age identity and the
            # service account.
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
        """Declare the job's object-storage identity and the bucket policy that confines it.

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
        self.identity = identity
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
        users = {db: reader_of(args.credentials[db]).name for db in databases}
        return pulumi.Output.all(args.database_host, args.database_port, self.bucket.name).apply(
            lambda parts: render_spec(
                spec_document(
                    args.settings,
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
        """Declare the Secret with each database's read-only user's password (mounted as files) and
        the storage keys. The app's read-write password never reaches this namespace."""
        credentials_data: dict[str, pulumi.Input[str]] = {
            password_key(d.database): pulumi.Output.secret(reader_of(args.credentials[d.database]).password)
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

    def _age_identity(
        self, name: str, args: RestoreCheckArgs, meta: Any, in_namespace: pulumi.ResourceOptions
    ) -> pulumi.Resource:
        """Declare the ExternalSecret syncing the age identity from the vault (never Pulumi's state)."""
        return k8s.apiextensions.CustomResource(
            f"{name}-age-identity",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={**meta, "name": AGE_IDENTITY_SECRET},
            spec=age_identity_spec(args.secret_store, args.identity_remote_key),
            opts=pulumi.ResourceOptions.merge(
                in_namespace, pulumi.ResourceOptions(depends_on=list(args.secrets_depends_on))
            ),
        )

    def _pod_identity(
        self, name: str, args: RestoreCheckArgs, meta: Any, in_namespace: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """Declare the job's service account and, with a private registry, its image pull secret.

        Returns both (pull secret first) for the CronJob to wait on.
        """
        needs: list[pulumi.Resource] = []
        if args.registry is not None:
            needs.append(args.registry.pull_secret(f"{name}-registry-pull", metadata=meta, opts=in_namespace))
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
                args.metrics_push,
            ),
            opts=in_namespace,
        )

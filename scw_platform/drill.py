"""The managed-backup drill, scheduled: once a month, ``ops/backup_drill.py`` restores Scaleway's
newest managed backup of the production instance into a scratch instance (its snapshot on Block
Storage, the default; each database's backup otherwise), runs the daily restore check's checks on
that copy and always deletes the instance again (see that module for the request sequences).

It runs in the restore check's image (``ops/restore_check/Dockerfile``, which also holds the
drill): the PostgreSQL tools are there. For each database the drill runs ``restore_check.py`` from
the image as its check command, with a spec of its own (a ConfigMap, one file per database): the
same checks as the daily restore check's spec (tables, minimum rows, freshness, rendered by
``scw_platform.backup.spec_document`` from ``platform:operations.restoreCheck``), the connection
taken from the ``PG*`` variables the drill sets (the scratch instance's private endpoint, its own
admin and password: no host, port or user in the spec), nothing stored and no encryption (the dump
never leaves the pod). The dump and the restore check's scratch PostgreSQL live in an ``emptyDir``
at ``/work``, sized like the daily check's (``scratchSizeGb``), under the image's postgres user
(uid 999), as in ``scw_platform/backup.py``.

Its own namespace, fenced like the restore check's: restricted Pod Security, default deny, egress
to DNS, Scaleway's public API (HTTPS) and the environment's private network on 5432 (the scratch
instance has a private endpoint only). Its identity may manage the project's databases
(``RelationalDatabasesFullAccess``: creating and deleting the scratch instance needs it); the key
reaches the pod through a Secret the program writes, never a Helm value or a manifest in Git.
Opt-in: the drill creates a billable instance for the length of a restore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints, field_validator

from scw_platform import backup, kube, labels
from scw_platform.backup import RestoreCheckDatabase, RestoreCheckSettings
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.registry import RegistryPull
from scw_platform.settings import Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:operations.backupDrill).
# --------------------------------------------------------------------------------------------

_IMAGE = r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
#: The ops image's name (.gitlab-ci.yml, job platform-ops): it has no PostgreSQL tools.
_OPS_IMAGE = "platform-ops"


class BackupDrillSettings(Settings):
    """``platform:operations.backupDrill``: the monthly restore of Scaleway's managed backups."""

    schedule: Annotated[str, StringConstraints(pattern=r"^\S+( \S+){4}$")] = "0 4 1 * *"
    """Cron schedule (UTC): by default the first of each month at 04:00."""
    image: Annotated[str, StringConstraints(pattern=_IMAGE)]
    """The restore check's image (ops/restore_check/Dockerfile, built by the platform's pipeline),
    which also holds the drill: a tag or a digest (``...:<tag>@sha256:<64 hex>``), never latest;
    production requires the digest (CI's push key can move a tag)."""
    node_type: Annotated[str, StringConstraints(pattern=r"^DB-[A-Z0-9-]+$")] = "DB-DEV-S"
    """The scratch instance's node type: the smallest that holds the restored databases."""
    timeout_minutes: int = Field(default=60, ge=5, le=720)
    """How long each wait (the instance ready, each restore, each change) and each database's checks
    may take before the drill fails."""

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        name = image.split("@", 1)[0].rsplit("/", 1)[-1]
        repository, _, tag = name.partition(":")
        if "@sha256:" not in image and not tag:
            raise ValueError(f"{image} has no tag or digest: pin the image")
        if tag == "latest":
            raise ValueError(f"{image} uses the tag latest: pin a version or a digest")
        if repository == _OPS_IMAGE:
            raise ValueError(
                f"{image} is the ops image, which has no PostgreSQL tools: use the restore check's "
                "image (ops/restore_check/Dockerfile), which holds the drill and runs its checks"
            )
        return image


DRILL_NAMESPACE = "backup-drill"
DRILL_CRONJOB = "backup-drill"
DRILL_CREDENTIALS = "backup-drill-scaleway"
DRILL_SPECS = "backup-drill-specs"
POSTGRES_PORT = 5432
#: The image's postgres user: the restore check's initdb refuses root and needs a passwd entry.
DRILL_UID = backup.RUN_AS
#: Where the specs are mounted; the drill replaces ``{database}`` in its check command.
SPEC_MOUNT = "/etc/backup-drill"
WORK_DIR = backup.WORK_DIR
#: The image's copies of the tools (ops/restore_check/Dockerfile), run by its virtualenv's python3.
PYTHON = backup.PYTHON
RESTORE_CHECK = "/opt/restore-check/restore_check.py"
#: The scratch instance's waits and checks in the worst case, in units of ``timeoutMinutes``: on
#: the snapshot path the instance ready, then a wait after the ACL, after each endpoint deleted
#: (one expected) and created, and after the admin (4), then per database a wait after its grant
#: and its checks; on the backup path the instance ready, per database a restore and its checks;
#: and the deletion's retries. ops/backup_drill.py bounds each by the timeout.
_WAITS_FIXED = 1 + 4 + 1
_WAITS_PER_DATABASE = 2


@dataclass(frozen=True, kw_only=True)
class BackupDrillArgs:
    provider: k8s.Provider
    environment: str
    region: str
    project_id: str
    settings: BackupDrillSettings
    #: The daily restore check's settings: its checks run on the drill's copy, in a volume as big.
    restore_check: RestoreCheckSettings
    instance_id: pulumi.Input[str]
    private_network_id: pulumi.Input[str]
    #: The environment's private subnet (the scratch instance's endpoint lies in it).
    subnet: str
    databases: Sequence[str]
    #: Hours between two of Scaleway's managed backups (platform:database.backups.frequencyHours):
    #: the newest one may be that old, so each freshness check allows that much more on the copy.
    backup_period_hours: int
    tags: Sequence[str] = field(default_factory=tuple)
    #: The private registry the restore-check image is pulled from (this environment's own
    #: read-only pull key: scw_platform.registry.pull_identity).
    registry: RegistryPull | None = None
    #: Refuse an image without a digest (production: the drill's key may create and delete the
    #: project's databases, and a tag is whatever the registry's last push made it).
    require_digest: bool = False

    def __post_init__(self) -> None:
        if self.require_digest and (problem := backup.digest_problem(self.settings.image)) is not None:
            raise ValueError(f"backup drill image: {problem}")


class BackupDrill(pulumi.ComponentResource):
    namespace: str = DRILL_NAMESPACE

    def __init__(self, name: str, args: BackupDrillArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:backup:BackupDrill", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": DRILL_NAMESPACE, "labels": labels.platform_namespace()},
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        meta: Any = {"namespace": DRILL_NAMESPACE}
        kube.default_deny_policy(f"{name}-default-deny", metadata=meta, opts=in_namespace)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata={**meta, "name": "backup-drill-egress"},
            spec=egress_policy_spec(args.subnet),
            opts=in_namespace,
        )
        credentials = self._credentials(name, args, meta, in_namespace)
        specs = k8s.core.v1.ConfigMap(
            f"{name}-specs",
            metadata={**meta, "name": DRILL_SPECS},
            data=check_specs(args.restore_check, args.databases, allowance_hours=args.backup_period_hours),
            opts=in_namespace,
        )
        needs: list[pulumi.Resource] = [credentials, specs]
        if args.registry is not None:
            needs.append(args.registry.pull_secret(f"{name}-registry-pull", metadata=meta, opts=in_namespace))
        k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata={**meta, "name": DRILL_CRONJOB, "annotations": checkov_skips(args.settings.image)},
            spec=cronjob_spec(args),
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=needs)),
        )
        self.register_outputs({"namespace": DRILL_NAMESPACE})

    def _credentials(
        self, name: str, args: BackupDrillArgs, meta: Any, opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Secret:
        """The drill's own identity (databases of this project only) and its key, as a Secret."""
        identity = ScopedIdentity(
            f"{name}-identity",
            ScopedIdentityArgs(
                description=f"Backup drill in {args.environment}: restores managed backups into a scratch DB",
                project_id=args.project_id,
                permission_sets=["RelationalDatabasesFullAccess"],
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={**meta, "name": DRILL_CREDENTIALS},
            type="Opaque",
            string_data={**identity.key_data(), "SCW_DEFAULT_PROJECT_ID": args.project_id},
            opts=opts,
        )


# --- Pure functions (tested without Pulumi) ----------------------------------------------------------


def egress_policy_spec(subnet: str) -> Any:
    """DNS, Scaleway's API (public HTTPS) and the scratch instance's private endpoint."""
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            kube.dns_egress_rule(),
            kube.public_https_egress_rule(),
            {"to": [{"ipBlock": {"cidr": subnet}}], "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]},
        ],
    }


def spec_name(database: str) -> str:
    """The restore check's name for a database (it starts with a letter or digit: it names the
    dump), as ``backup.spec_document`` makes it."""
    return database if database[0] != "_" else f"db{database}"


def _minutes(duration: str) -> int:
    """A restore check duration (``26h``, ``7d``; ``backup._DURATION``) in whole minutes, rounded up."""
    seconds = int(duration[:-1]) * _UNIT_SECONDS[duration[-1]]
    return -(-seconds // 60)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(minutes: int) -> str:
    """Whole hours where they are (what people read in the check's PASS/FAIL lines), else minutes."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def drill_checks(db: RestoreCheckDatabase, allowance_hours: int) -> dict[str, Any]:
    """The daily checks of ``db`` for the drill's copy, each freshness ``maxAge`` widened by
    ``allowance_hours``: the restored backup may be that old already, and the check measures the
    newest row against the time of its own dump (restore_check.py ``_check_freshness``)."""
    checks = backup.checks_document(db)
    if "freshness" in checks:
        checks["freshness"] = [
            {**entry, "maxAge": _duration(_minutes(entry["maxAge"]) + 60 * allowance_hours)}
            for entry in checks["freshness"]
        ]
    return checks


def check_spec(restore_check: RestoreCheckSettings, database: str, *, allowance_hours: int) -> dict[str, Any]:
    """The restore check's spec (``restore_check.py load_spec``) for one database of the drill's
    copy. The checks are the daily spec's (``drill_checks``; a database the daily check does not
    cover gets none: its copy must still dump and restore). The connection has no host,
    port nor user (``PG*``, set by the drill, apply: ``restore_check.source_env``) and the password
    from ``PGPASSWORD``; no storage (the dump is restored from the pod's disk, then removed: a copy
    of production's data is kept nowhere) and so no encryption; no targets (``rtoMinutes`` would
    time a second, local restore, not Scaleway's, whose duration the drill reports; ``rpoHours``
    is the daily dumps' objective, while a managed backup's age is the backup schedule's).

    The freshness checks measure the newest row against the time of the check's own dump, so the
    managed backup's age counts against each ``maxAge``: the drill allows one backup period more
    (``allowance_hours``), so a drill fails freshness only when the backup itself is older than
    the schedule promises or the data in it was already stale."""
    daily = {entry.database: entry for entry in restore_check.databases}
    return {
        "databases": [
            {
                "name": spec_name(database),
                "connection": {"dbname": database, "passwordEnv": "PGPASSWORD"},
                "checks": drill_checks(daily[database], allowance_hours) if database in daily else {},
            }
        ],
        "storage": {"type": "none"},
    }


def check_specs(
    restore_check: RestoreCheckSettings, databases: Sequence[str], *, allowance_hours: int
) -> Mapping[str, str]:
    """The ConfigMap's data: ``<database>.json`` per drilled database (one spec each, so the check
    command names no database the restore check would have to look up by its own name)."""
    return {
        f"{db}.json": backup.render_spec(check_spec(restore_check, db, allowance_hours=allowance_hours))
        for db in databases
    }


def check_command(
    *,
    python: str = PYTHON,
    script: str = RESTORE_CHECK,
    spec_dir: str = SPEC_MOUNT,
    work_dir: str = WORK_DIR,
    runner: Sequence[str] = (),
) -> str:
    """The drill's ``--check-command``: the restore check on the database's spec, in the work
    volume; ``runner`` prefixes it (the tests run it as an unprivileged user)."""
    return " ".join(
        [*runner, python, script, "--spec", f"{spec_dir}/{{database}}.json", "--work-dir", work_dir]
    )


def drill_command(args: BackupDrillArgs) -> pulumi.Output[list[str]]:
    """``python3 -m ops.backup_drill`` with this environment's instance, network and databases,
    and the restore check as its check command. No ``--source``: the instance's volume type
    chooses (snapshots on Block Storage)."""
    databases = [part for name in args.databases for part in ("--database", name)]
    return pulumi.Output.all(args.instance_id, args.private_network_id).apply(
        lambda ids: [
            PYTHON,
            "-m",
            "ops.backup_drill",
            "--region",
            args.region,
            "--instance-id",
            _bare_id(ids[0]),
            "--private-network-id",
            _bare_id(ids[1]),
            *databases,
            "--node-type",
            args.settings.node_type,
            "--timeout-minutes",
            str(args.settings.timeout_minutes),
            "--check-command",
            check_command(),
        ]
    )


def _bare_id(resource_id: str) -> str:
    """The provider's IDs carry their region or zone (``fr-par/<uuid>``); the API wants the UUID."""
    return resource_id.rsplit("/", 1)[-1]


def checkov_skips(image: str) -> dict[str, str]:
    """Why the CronJob departs from checkov's defaults (offline/validate.py requires a reason)."""
    skips = {
        "checkov.io/skip1": "CKV_K8S_40=uid 999 is the image's postgres user: the restore check's initdb "
        "refuses root and needs a uid with a passwd entry; runAsNonRoot and no privilege escalation hold",
        "checkov.io/skip2": "CKV_K8S_35=the Scaleway SDK reads its key from the environment "
        "(SCW_ACCESS_KEY/SCW_SECRET_KEY, Client.from_env); the drill passes none of it to its checks",
    }
    if "@sha256:" not in image:
        skips["checkov.io/skip3"] = (
            "CKV_K8S_43=pinned by the tag in platform:operations.backupDrill.image (latest refused); "
            "a digest is accepted there too"
        )
    return skips


def cronjob_spec(args: BackupDrillArgs) -> Any:
    """Monthly, never twice at once, one attempt (a failed drill is reported, not retried into a
    second scratch instance); time for the drill to delete its instance after a SIGTERM."""
    timeout = args.settings.timeout_minutes
    waits = _WAITS_FIXED + _WAITS_PER_DATABASE * len(args.databases)
    container = {
        "name": "drill",
        "image": args.settings.image,
        # backup.PULL_POLICY: by digest in production, never Always on a tag.
        "imagePullPolicy": backup.PULL_POLICY,
        "command": drill_command(args),
        "envFrom": [{"secretRef": {"name": DRILL_CREDENTIALS}}],
        "env": [
            {"name": "PYTHONSAFEPATH", "value": "1"},
            # The restore check's scratch server puts its socket under the temporary directory.
            {"name": "TMPDIR", "value": WORK_DIR},
        ],
        "resources": {k: dict(v) for k, v in backup.RESOURCES.items()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": DRILL_UID,
            "runAsGroup": DRILL_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "specs", "mountPath": SPEC_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": WORK_DIR},
        ],
    }
    return {
        "schedule": args.settings.schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 0,
                # Past the drill's own bounds (each wait and check within the timeout), plus slack:
                # the drill fails, and deletes its instance, before Kubernetes stops it.
                "activeDeadlineSeconds": (timeout * waits + 10) * 60,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": DRILL_CRONJOB}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        # After a SIGTERM the drill keeps retrying the deletion for up to its
                        # timeout: Kubernetes must not SIGKILL it before that ends.
                        "terminationGracePeriodSeconds": (timeout + 5) * 60,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": DRILL_UID,
                            "runAsGroup": DRILL_UID,
                            "fsGroup": DRILL_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        **({"imagePullSecrets": [{"name": kube.PULL_SECRET}]} if args.registry else {}),
                        "volumes": [
                            {"name": "specs", "configMap": {"name": DRILL_SPECS}},
                            # The dump and the scratch cluster; the root filesystem stays read-only.
                            {
                                "name": "work",
                                "emptyDir": {"sizeLimit": f"{args.restore_check.scratch_size_gb}Gi"},
                            },
                        ],
                    },
                },
            }
        },
    }

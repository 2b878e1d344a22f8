"""The managed-backup drill, scheduled: once a month, ``ops/backup_drill.py`` restores Scaleway's
newest managed backup of each app database into a scratch instance, checks it and always deletes
the instance again (see that module for the request sequence).

Its own namespace, fenced like the restore check's: restricted Pod Security, default deny, egress
to DNS, Scaleway's public API (HTTPS) and the environment's private network on 5432 (the scratch
instance has a private endpoint only). Its identity may manage the project's databases
(``RelationalDatabasesFullAccess``: creating and deleting the scratch instance needs it); the key
reaches the pod through a Secret the program writes, never a Helm value or a manifest in Git.
Opt-in: the drill creates a billable instance for the length of a restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints, field_validator

from scw_platform import kube, labels
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.settings import Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:operations.backupDrill).
# --------------------------------------------------------------------------------------------

_IMAGE = r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"


class BackupDrillSettings(Settings):
    """``platform:operations.backupDrill``: the monthly restore of Scaleway's managed backups."""

    schedule: Annotated[str, StringConstraints(pattern=r"^\S+( \S+){4}$")] = "0 4 1 * *"
    """Cron schedule (UTC): by default the first of each month at 04:00."""
    image: Annotated[str, StringConstraints(pattern=_IMAGE)]
    """The platform's ops image (ops/Dockerfile, built by the platform's pipeline): a tag or, better,
    a digest; never latest."""
    node_type: Annotated[str, StringConstraints(pattern=r"^DB-[A-Z0-9-]+$")] = "DB-DEV-S"
    """The scratch instance's node type: the smallest that holds the restored databases."""
    timeout_minutes: int = Field(default=60, ge=5, le=720)
    """How long each wait (the instance ready, each restore) may take before the drill fails."""

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        name = image.split("@", 1)[0].rsplit("/", 1)[-1]
        tag = name.partition(":")[2]
        if "@sha256:" not in image and not tag:
            raise ValueError(f"{image} has no tag or digest: pin the image")
        if tag == "latest":
            raise ValueError(f"{image} uses the tag latest: pin a version or a digest")
        return image


DRILL_NAMESPACE = "backup-drill"
DRILL_CRONJOB = "backup-drill"
DRILL_CREDENTIALS = "backup-drill-scaleway"
POSTGRES_PORT = 5432
DRILL_UID = 10001


@dataclass(frozen=True, kw_only=True)
class BackupDrillArgs:
    provider: k8s.Provider
    environment: str
    region: str
    project_id: str
    settings: BackupDrillSettings
    instance_id: pulumi.Input[str]
    private_network_id: pulumi.Input[str]
    #: The environment's private subnet (the scratch instance's endpoint lies in it).
    subnet: str
    databases: Sequence[str]
    tags: Sequence[str] = field(default_factory=tuple)


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
        k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata={**meta, "name": DRILL_CRONJOB},
            spec=cronjob_spec(args),
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[credentials])),
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


def drill_command(args: BackupDrillArgs) -> pulumi.Output[list[str]]:
    """``python -m ops.backup_drill`` with this environment's instance, network and databases."""
    databases = [part for name in args.databases for part in ("--database", name)]
    return pulumi.Output.all(args.instance_id, args.private_network_id).apply(
        lambda ids: [
            "python",
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
        ]
    )


def _bare_id(resource_id: str) -> str:
    """The provider's IDs carry their region or zone (``fr-par/<uuid>``); the API wants the UUID."""
    return resource_id.rsplit("/", 1)[-1]


def cronjob_spec(args: BackupDrillArgs) -> Any:
    """Monthly, never twice at once, one attempt (a failed drill is reported, not retried into a
    second scratch instance); time for the drill to delete its instance after a SIGTERM."""
    timeout = args.settings.timeout_minutes
    container = {
        "name": "drill",
        "image": args.settings.image,
        "command": drill_command(args),
        "envFrom": [{"secretRef": {"name": DRILL_CREDENTIALS}}],
        "env": [{"name": "PYTHONSAFEPATH", "value": "1"}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "100Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
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
                # Create, wait, restore each database, check, delete: each wait bounded by timeout.
                "activeDeadlineSeconds": (timeout * (2 + len(args.databases)) + 10) * 60,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": DRILL_CRONJOB}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 300,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": DRILL_UID,
                            "runAsGroup": DRILL_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                    },
                },
            }
        },
    }

"""Managed PostgreSQL outside the clusters, reachable only over the private network.

No public endpoint is ever declared: the ``load_balancer`` argument (the public endpoint) is never
set, and the instance attaches to the private network with IPAM. Each app database gets its own
user with ``readwrite`` on that database only; the admin password never leaves Pulumi secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
import pulumiverse_scaleway as scaleway

from program.config import Database as DatabaseSettings

ADMIN_USER = "platform_admin"
# Characters that survive unescaped in connection URIs and shell environments.
_PASSWORD_SPECIALS = "-_.~!*"


@dataclass(frozen=True)
class DatabaseCredentials:
    database: str
    user: str
    #: Secret.
    password: pulumi.Output[str]


@dataclass(frozen=True, kw_only=True)
class ManagedPostgresArgs:
    environment: str
    region: str
    zone: str
    private_network_id: pulumi.Input[str]
    settings: DatabaseSettings
    protect: bool
    tags: Sequence[str] = field(default_factory=tuple)


def _password(name: str, parent: pulumi.Resource) -> random.RandomPassword:
    # Scaleway requires upper, lower, digit and special characters in RDB passwords.
    return random.RandomPassword(
        name,
        length=32,
        special=True,
        override_special=_PASSWORD_SPECIALS,
        min_upper=2,
        min_lower=2,
        min_numeric=2,
        min_special=2,
        opts=pulumi.ResourceOptions(parent=parent),
    )


class ManagedPostgres(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    #: Private-network address and port of the primary endpoint.
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    credentials: Mapping[str, DatabaseCredentials]

    def __init__(
        self, name: str, args: ManagedPostgresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:database:ManagedPostgres", name, None, opts)
        s = args.settings
        admin_password = _password(f"{name}-admin-password", self)

        instance = scaleway.databases.Instance(
            f"{name}-instance",
            name=f"{args.environment}-postgres",
            engine=s.engine,
            node_type=s.node_type,
            is_ha_cluster=s.ha_cluster,
            region=args.region,
            user_name=ADMIN_USER,
            password=admin_password.result,
            # The private endpoint lives in the region's default zone (the only one that supports it).
            private_network={"pn_id": args.private_network_id, "enable_ipam": True, "zone": args.zone},
            disable_backup=not s.backups.enabled,
            backup_schedule_frequency=s.backups.frequency_hours,
            backup_schedule_retention=s.backups.retention_days,
            backup_same_region=s.backups.same_region,
            encryption_at_rest=s.encryption_at_rest,
            volume_type=s.volume_type,
            volume_size_in_gb=None if s.volume_type == "lssd" else s.volume_size_gb,
            tags=list(args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

        credentials: dict[str, DatabaseCredentials] = {}
        for db in s.databases:
            database = scaleway.databases.Database(
                f"{name}-db-{db.name}",
                instance_id=instance.id,
                name=db.name,
                region=args.region,
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            password = _password(f"{name}-user-{db.name}-password", self)
            user = scaleway.databases.User(
                f"{name}-user-{db.name}",
                instance_id=instance.id,
                name=db.user,
                password=password.result,
                is_admin=False,
                region=args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
            scaleway.databases.Privilege(
                f"{name}-privilege-{db.name}",
                instance_id=instance.id,
                database_name=database.name,
                user_name=user.name,
                permission="readwrite",
                region=args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
            credentials[db.name] = DatabaseCredentials(
                database=db.name, user=db.user, password=pulumi.Output.secret(password.result)
            )

        private_endpoint = instance.private_network.apply(_require_private_endpoint)
        self.instance_id = instance.id
        self.host = private_endpoint.apply(lambda pn: str(pn.ip))
        self.port = private_endpoint.apply(lambda pn: int(pn.port or 5432))
        self.credentials = credentials
        self.register_outputs({"instanceId": self.instance_id, "host": self.host, "port": self.port})


def _require_private_endpoint(
    endpoint: scaleway.databases.outputs.InstancePrivateNetwork | None,
) -> scaleway.databases.outputs.InstancePrivateNetwork:
    if endpoint is None or not endpoint.ip:
        raise ValueError("the database instance reported no private-network endpoint")
    return endpoint

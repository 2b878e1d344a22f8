"""Managed PostgreSQL outside the clusters, reachable only over the private network.

No public endpoint is ever declared: the ``load_balancer`` argument (the public endpoint) is never
set, and the instance attaches to the private network with IPAM. Each app database gets its own
user with ``readwrite`` on that database only; the admin password never leaves Pulumi secrets.

Each app database has three users, each with its own generated password (a Pulumi secret):

* the runtime user (``readwrite``): what the app's pods get; it reads and writes rows but cannot
  create, alter or drop tables;
* the migrator, ``<user>_migrator`` (``all`` on that database only): what the app's migration
  hook gets, never its pods;
* the reader, ``<user>_reader`` (``readonly``): what the restore check dumps with.

Scaleway's permission levels (``readonly``, ``readwrite``, ``all``) are per user and database and
apply to existing objects only: a table created later gives nobody rights on it
(https://www.scaleway.com/en/docs/managed-databases-for-postgresql-and-mysql/api-cli/advanced-user-permissions/,
https://www.scaleway.com/en/docs/managed-databases-for-postgresql-and-mysql/how-to/manage-permissions/).
The migration hook's grants (scw_platform/db_grants.py) give the runtime user and the reader what
the migrator creates; tests/integration/test_db_privileges.py proves the model on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pulumi
import pulumi_random as random
import pulumiverse_scaleway as scaleway
from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, field_validator

from scw_platform.settings import (
    DEFAULT_ZONE,
    PgIdentifier,
    Settings,
    catalogued,
    no_duplicates,
    validation_context,
)

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:database).
# --------------------------------------------------------------------------------------------


class Backups(Settings):
    enabled: bool = True
    """Take Scaleway's managed backups of the instance."""
    frequency_hours: int = Field(default=24, ge=1, le=24)
    """Hours between two backups."""
    retention_days: int = Field(default=14, ge=1, le=365)
    """Days each backup is kept."""
    same_region: bool = False
    """Keep backups in the instance's region instead of another one."""


#: Role and database names an app may not take: PostgreSQL's own (and every ``pg_`` name), the
#: instance's admin (scw_platform.database.ADMIN_USER) and common administrator names.
RESERVED_DATABASE_NAMES = frozenset(
    {"postgres", "public", "platform_admin", "admin", "root", "rdb", "template0", "template1", "none"}
)


def _not_reserved(name: str) -> str:
    if name.lower() in RESERVED_DATABASE_NAMES or name.lower().startswith("pg_"):
        raise ValueError(
            f"{name!r} is reserved (PostgreSQL's own names, pg_*, "
            f"and {', '.join(sorted(RESERVED_DATABASE_NAMES))})"
        )
    return name


#: Suffixes of an app database's migrator and reader users (``<user>_migrator``, ``<user>_reader``).
MIGRATOR_SUFFIX, READER_SUFFIX = "_migrator", "_reader"


def _room_for_suffixes(user: str) -> str:
    longest = max(len(MIGRATOR_SUFFIX), len(READER_SUFFIX))
    if len(user) + longest > 63:
        raise ValueError(
            f"{user!r} is too long: at most {63 - longest} characters, so that {user}{MIGRATOR_SUFFIX} "
            "stays a PostgreSQL name (63 at most)"
        )
    return user


class DatabaseEntry(Settings):
    name: Annotated[PgIdentifier, AfterValidator(_not_reserved)]
    """Database name (not PostgreSQL's own, pg_*, or an administrator's)."""
    user: Annotated[PgIdentifier, AfterValidator(_not_reserved), AfterValidator(_room_for_suffixes)]
    """The app's runtime user (readwrite); ``<user>_migrator`` and ``<user>_reader`` are made
    beside it. Passwords are generated and kept secret."""


class DatabaseSettings(Settings):
    engine: Annotated[str, StringConstraints(pattern=r"^PostgreSQL-1[4-9]$")] = "PostgreSQL-16"
    """PostgreSQL major version, PostgreSQL-14 to PostgreSQL-19."""
    node_type: str
    """Managed Database commercial type (catalogue: rdbNodeTypes)."""
    ha_cluster: bool = True
    """A standby node, promoted when the primary fails (Scaleway does not document which zone it
    lives in: treat the database as zonal, docs/architecture.md#zones)."""
    zone: str | None = None
    """Leave unset: it can only be the region's default zone, where private endpoints work."""
    volume_type: Literal["sbs_5k", "sbs_15k", "lssd", "bssd"] = "sbs_15k"
    """Storage: sbs_5k or sbs_15k block volumes (IOPS tier, encryptable), or lssd local storage."""
    volume_size_gb: int = Field(default=20, ge=5, le=10000)
    """Storage size in GB (block volumes only)."""
    encryption_at_rest: bool = True
    """Encrypt the storage (not possible with lssd)."""
    max_connections: int = Field(default=100, ge=10, le=10000)
    """The instance's connection limit, set as its max_connections engine setting (PostgreSQL's
    default is 100): the apps' pools and the platform's own connections must fit in it. Scaleway
    bounds the setting by node type (``scw rdb engine list`` shows each setting's range) and refuses
    a value outside it at apply time; the catalogue does not hold those bounds."""
    backups: Backups = Backups()
    """Scaleway's managed backups of the instance."""
    public_endpoint: bool = False
    """Declared so that asking for one gives a clear refusal instead of "unknown key"."""
    databases: list[DatabaseEntry] = Field(default_factory=list)
    """The app databases, each with the user that owns it."""

    @field_validator("node_type")
    @classmethod
    def _rdb_type(cls, name: str) -> str:
        return catalogued("rdbNodeTypes", name)

    @field_validator("zone")
    @classmethod
    def _default_zone(cls, zone: str | None, info: ValidationInfo) -> str | None:
        region = validation_context(info).get("region")
        if zone is not None and region is not None and zone != DEFAULT_ZONE[region]:
            raise ValueError(
                f"must be {DEFAULT_ZONE[region]}, region {region}'s default zone: private endpoints "
                f"work only there (got {zone!r})"
            )
        return zone

    @field_validator("encryption_at_rest")
    @classmethod
    def _encrypted(cls, encrypted: bool, info: ValidationInfo) -> bool:
        if encrypted and info.data.get("volume_type") == "lssd":
            raise ValueError("lssd volumes cannot be encrypted at rest; use volumeType sbs_5k or sbs_15k")
        return encrypted

    @field_validator("public_endpoint")
    @classmethod
    def _never_public(cls, public: bool) -> bool:
        if public:
            raise ValueError(
                "must be false: the database is reachable only over the private network, "
                "never from the internet"
            )
        return public

    @field_validator("databases")
    @classmethod
    def _one_user_per_database(cls, databases: list[DatabaseEntry]) -> list[DatabaseEntry]:
        no_duplicates("database name", [d.name for d in databases])
        no_duplicates("user", [d.user for d in databases])
        return databases


ADMIN_USER = "platform_admin"
# Characters that survive unescaped in connection URIs and shell environments.
_PASSWORD_SPECIALS = "-_.~!*"


@dataclass(frozen=True)
class DatabaseCredentials:
    database: str
    #: The runtime user (readwrite): what the app's pods get.
    user: str
    #: Secret.
    password: pulumi.Output[str]
    #: The migrator (all on this database): what the migration hook gets, never the pods.
    migrator: DatabaseUser | None = None
    #: The reader (readonly): what the restore check dumps with.
    reader: DatabaseUser | None = None


@dataclass(frozen=True)
class DatabaseUser:
    name: str
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
        instance = self._instance(name, args)
        credentials = {
            db.name: self._app_database(name, args, instance, db) for db in args.settings.databases
        }

        private_endpoint = instance.private_network.apply(_require_private_endpoint)
        self.instance_id = instance.id
        self.host = private_endpoint.apply(lambda pn: str(pn.ip))
        self.port = private_endpoint.apply(lambda pn: int(pn.port or 5432))
        self.credentials = credentials
        self.register_outputs({"instanceId": self.instance_id, "host": self.host, "port": self.port})

    def _instance(self, name: str, args: ManagedPostgresArgs) -> scaleway.databases.Instance:
        """Declare the admin password and the instance itself, attached only to the private network."""
        s = args.settings
        admin_password = _password(f"{name}-admin-password", self)
        return scaleway.databases.Instance(
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
            # The limit the connection budget (program.rules.connection_budget) is checked against
            # is the one the instance runs with: an engine setting on the running instance
            # (terraform-provider-scaleway docs/resources/rdb_instance.md, "Example with Settings").
            settings={"max_connections": str(s.max_connections)},
            tags=list(args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

    def _app_database(
        self,
        name: str,
        args: ManagedPostgresArgs,
        instance: scaleway.databases.Instance,
        db: DatabaseEntry,
    ) -> DatabaseCredentials:
        """Declare one app's database and its three users, each with its permission on it alone.

        Returns the credentials the app's secrets are built from (passwords are Pulumi secrets).
        """
        database = scaleway.databases.Database(
            f"{name}-db-{db.name}",
            instance_id=instance.id,
            name=db.name,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        runtime = self._user(
            name, args, instance, database, key=db.name, user_name=db.user, permission="readwrite"
        )
        return DatabaseCredentials(
            database=db.name,
            user=db.user,
            password=runtime.password,
            migrator=self._user(
                name, args, instance, database, permission="all", user_name=db.user + MIGRATOR_SUFFIX
            ),
            reader=self._user(
                name, args, instance, database, permission="readonly", user_name=db.user + READER_SUFFIX
            ),
        )

    def _user(
        self,
        name: str,
        args: ManagedPostgresArgs,
        instance: scaleway.databases.Instance,
        database: scaleway.databases.Database,
        *,
        user_name: str,
        permission: Literal["readwrite", "all", "readonly"],
        key: str | None = None,
    ) -> DatabaseUser:
        """A user of one app database, with its own password and ``permission`` on it alone.
        ``key`` names its resources (default: the user's name; the runtime user's are named after
        the database, as they were before it had siblings)."""
        key = key or user_name
        password = _password(f"{name}-user-{key}-password", self)
        user = scaleway.databases.User(
            f"{name}-user-{key}",
            instance_id=instance.id,
            name=user_name,
            password=password.result,
            is_admin=False,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        scaleway.databases.Privilege(
            f"{name}-privilege-{key}",
            instance_id=instance.id,
            database_name=database.name,
            user_name=user.name,
            permission=permission,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return DatabaseUser(name=user_name, password=pulumi.Output.secret(password.result))


def _require_private_endpoint(
    endpoint: scaleway.databases.outputs.InstancePrivateNetwork | None,
) -> scaleway.databases.outputs.InstancePrivateNetwork:
    if endpoint is None or not endpoint.ip:
        raise ValueError("the database instance reported no private-network endpoint")
    return endpoint

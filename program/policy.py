"""Each role's policy: the keys it needs and may have (:func:`role_rules`), what production may
not run without (:func:`production_rules`), and refinements of the library's settings models.
Every production-only check lives in this module.

The library's models say what a value *is*. This module says what this organisation allows each
role: production never runs public nodes, nodes in one zone only, an unreplicated or unencrypted
database, a week less of backups, one front-door replica or staging certificates; production and
tooling never leave the Kubernetes API open to the world; development certificates default to
Let's Encrypt's staging issuer. The refinements are subclasses, so a stack's whole ``platform:``
block still validates in one pass: a production rule is reported with its key path beside every
other problem of the same key, and the result is the library's own settings type. Their validators
are named ``_policy_*`` so that none overrides (and so silently drops) a check of the library's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from program.environments import Role
from program.model import PLATFORM_KEYS, Operations
from program.rules import Problems
from scw_platform.backup import RestoreCheckSettings
from scw_platform.cluster import AllowedRange, ClusterSettings, Pool
from scw_platform.database import Backups, DatabaseSettings
from scw_platform.ingress import IngressSettings
from scw_platform.observability import ObservabilitySettings
from scw_platform.settings import ZONES, validation_context
from scw_platform.tls import Issuer, TlsSettings

#: Production's floor for days of retained backups and dumps.
MIN_PRODUCTION_RETENTION_DAYS = 7
#: Zones production's pools must span (Scaleway recommends "at least three nodes spread across at
#: least two different AZs": docs-content pages/kubernetes/reference-content/multi-az-clusters.mdx).
MIN_PRODUCTION_ZONES = 2
_PRODUCTION = "for role production"


def _min_retention(days: int) -> int:
    if days < MIN_PRODUCTION_RETENTION_DAYS:
        raise ValueError(f"must be >= {MIN_PRODUCTION_RETENTION_DAYS} {_PRODUCTION} (got {days})")
    return days


# --- API access: production and tooling list who may reach the Kubernetes API -------------------


def _acl_required(role: Role) -> Callable[[list[AllowedRange]], list[AllowedRange]]:
    def check(ranges: list[AllowedRange]) -> list[AllowedRange]:
        if not ranges:
            raise ValueError(
                f"required for role {role}: without an ACL the Kubernetes API is open to the world"
            )
        return ranges

    return check


class ToolingCluster(ClusterSettings):
    """apiAllowedRanges is required: the Kubernetes API is never open to the world."""

    api_allowed_ranges: list[AllowedRange] = Field(default_factory=list, validate_default=True)

    _policy_acl = field_validator("api_allowed_ranges")(_acl_required("tooling"))


# --- Production -------------------------------------------------------------------------------


def _region_zones(info: ValidationInfo) -> str:
    """The stack's region's zones, for messages (settings.ZONES)."""
    zones = ZONES.get(validation_context(info).get("region") or "")
    return ", ".join(zones) if zones else "a zone of the stack's region"


class ProductionPool(Pool):
    """publicIpDisabled must stay true: nodes reach out through the Public Gateway only. zone is
    required: production's pools name their zones, so the spread over zones is what the stack file
    says (the settings see the region, not scaleway:zone), and a change of scaleway:zone cannot move
    a pool (the provider recreates a pool whose zone changes: pulumiverse_scaleway Pool.zone)."""

    zone: str | None = Field(default=None, validate_default=True)

    @field_validator("public_ip_disabled")
    @classmethod
    def _policy_private_nodes(cls, value: bool) -> bool:
        if not value:
            raise ValueError(f"must be true {_PRODUCTION} (nodes reach out through the Public Gateway)")
        return value

    @field_validator("zone")
    @classmethod
    def _policy_named_zone(cls, zone: str | None, info: ValidationInfo) -> str | None:
        if zone is None:
            raise ValueError(
                f"required {_PRODUCTION}: one of {_region_zones(info)}, the pools together in at least "
                f"{MIN_PRODUCTION_ZONES} (without it a pool follows scaleway:zone)"
            )
        return zone


class ProductionCluster(ClusterSettings):
    """apiAllowedRanges is required, every pool is a ProductionPool (private nodes, a named zone),
    and the pools span at least two zones: a zone failure must not take every node."""

    api_allowed_ranges: list[AllowedRange] = Field(default_factory=list, validate_default=True)
    pools: list[ProductionPool] = Field(min_length=1)  # type: ignore[assignment]

    _policy_acl = field_validator("api_allowed_ranges")(_acl_required("production"))

    @field_validator("pools")
    @classmethod
    def _policy_zones(cls, pools: list[ProductionPool], info: ValidationInfo) -> list[ProductionPool]:
        # Only pools that always run a node and take any workload count: a pool that may scale to
        # zero, or is tainted for one purpose (the builders), does not hold the apps in its zone.
        zones = sorted(
            {pool.zone for pool in pools if pool.zone is not None and pool.min_size >= 1 and not pool.taints}
        )
        if len(zones) < MIN_PRODUCTION_ZONES:
            raise ValueError(
                f"must span at least {MIN_PRODUCTION_ZONES} zones {_PRODUCTION} with pools of minSize 1 or "
                f"more and no taints (a zone failure must not take every node), got only "
                f"{', '.join(zones) or 'none'}: give such a pool another zone of {_region_zones(info)}"
            )
        return pools


class ProductionBackups(Backups):
    """Backups stay enabled and are kept at least a week."""

    @field_validator("enabled")
    @classmethod
    def _policy_on(cls, enabled: bool) -> bool:
        if not enabled:
            raise ValueError(f"must be true {_PRODUCTION}")
        return enabled

    _policy_retention = field_validator("retention_days")(_min_retention)


class ProductionDatabase(DatabaseSettings):
    """haCluster and encryptionAtRest stay true; backups are ProductionBackups."""

    backups: ProductionBackups = Field(default_factory=ProductionBackups, validate_default=True)

    @field_validator("ha_cluster")
    @classmethod
    def _policy_ha(cls, ha: bool) -> bool:
        if not ha:
            raise ValueError(f"must be true {_PRODUCTION} (a standby node takes over when the primary fails)")
        return ha

    @field_validator("encryption_at_rest")
    @classmethod
    def _policy_encrypted(cls, encrypted: bool) -> bool:
        if not encrypted:
            raise ValueError(f"must be true {_PRODUCTION}")
        return encrypted


class ProductionIngress(IngressSettings):
    """At least two Traefik replicas: a node drain must not cut traffic."""

    @field_validator("replicas")
    @classmethod
    def _policy_ha(cls, replicas: int) -> int:
        if replicas < 2:
            raise ValueError(
                f"must be >= 2 {_PRODUCTION} (a node drain must not cut traffic), got {replicas}"
            )
        return replicas


class ProductionTls(TlsSettings):
    """Only letsencrypt-production: browsers distrust staging certificates."""

    @field_validator("issuer")
    @classmethod
    def _policy_trusted(cls, issuer: Issuer) -> Issuer:
        if issuer != "letsencrypt-production":
            raise ValueError(
                f"must be letsencrypt-production {_PRODUCTION} (got {issuer}: staging "
                "certificates are not trusted by browsers)"
            )
        return issuer


class ProductionRestoreCheck(RestoreCheckSettings):
    """Dumps are kept at least a week (bucketAdmins is required in every role:
    scw_platform.backup.RestoreCheckSettings)."""

    _policy_retention = field_validator("retention_days")(_min_retention)


class ProductionOperations(Operations):
    """The restore check is a ProductionRestoreCheck."""

    restore_check: ProductionRestoreCheck | None = None


# --- Development --------------------------------------------------------------------------------


class DevelopmentTls(TlsSettings):
    """issuer defaults to letsencrypt-staging."""

    #: Let's Encrypt's staging issuer unless the stack says otherwise: generous rate limits for
    #: environments rebuilt often; browsers distrust it, which development accepts.
    issuer: Issuer = "letsencrypt-staging"


REFINED: dict[Role, dict[str, Any]] = {
    "tooling": {"cluster": ToolingCluster},
    "production": {
        "cluster": ProductionCluster,
        "database": ProductionDatabase,
        "ingress": ProductionIngress,
        "tls": ProductionTls,
        "operations": ProductionOperations,
    },
    "development": {"tls": DevelopmentTls},
}


def models_for(role: Role | None) -> dict[str, Any]:
    """The settings model each ``platform:`` key parses into for ``role`` (None: a plain value).
    Without a known role (the environment itself is invalid) the library's own models apply."""
    return {**PLATFORM_KEYS, **(REFINED[role] if role is not None else {})}


def role_rules(role: str, present: Mapping[str, bool], problems: Problems) -> None:
    required = {
        # The front door and GitOps are the platform's mission, not options, where apps or
        # Argo CD are served; development may run without either.
        "tooling": ("cluster", "registry", "gitops", "ingress"),
        "production": ("cluster", "database", "gitops", "ingress"),
        "development": (),
    }
    owners = {
        "database": ("production", "development"),
        "registry": ("tooling",),
        "ci": ("tooling",),
        "apps": ("production", "development"),
    }
    for key in required[role]:
        if not present[key]:
            problems.add(f"platform:{key}", f"required for role {role}")
    for key, allowed_roles in owners.items():
        if present[key] and role not in allowed_roles:
            problems.add(f"platform:{key}", f"not allowed for role {role} (only: {', '.join(allowed_roles)})")
    if present["apps"] and not present["gitops"]:
        problems.add("platform:gitops", "required with platform:apps: every app is delivered by Argo CD")
    if present["apps"] and not present["cluster"]:
        problems.add("platform:cluster", "required with platform:apps: apps need a cluster to run on")
    if present["apps"] and not present["ingress"] and role == "development":
        problems.add(
            "platform:ingress",
            "required with platform:apps: each app's route attaches to the platform Gateway",
        )


#: Operations only production runs: the restore check and the backup drill guard production's
#: data (a development database is rebuilt, not restored).
PRODUCTION_ONLY_OPERATIONS = ("restoreCheck", "backupDrill")


def production_only_operations(role: str, raw_operations: Any, problems: Problems) -> None:
    """Refuse production's data guards elsewhere, instead of ignoring them."""
    raw = raw_operations if isinstance(raw_operations, dict) else {}
    for key in PRODUCTION_ONLY_OPERATIONS:
        if raw.get(key) is not None:
            problems.add(f"platform:operations.{key}", f"not allowed for role {role} (only: production)")


def production_rules(
    raw_operations: Any, observability: ObservabilitySettings | None, problems: Problems
) -> None:
    """What production may not run without beyond its settings' own refinements (program.policy):
    the restore check and somebody to page."""
    # Production's data and pager are not optional: a backup nobody restores is a hope, and an
    # alert with no contact point reaches nobody.
    path = "platform:operations"
    raw = raw_operations if isinstance(raw_operations, dict) else {}
    if raw.get("restoreCheck") is None:
        problems.add(f"{path}.restoreCheck", "required for role production (the daily restore-tested backup)")
    if raw.get("observability") is None:
        problems.add(f"{path}.observability", "required for role production (metrics, logs and alerts)")
    elif observability is not None and not observability.contact_points:
        problems.add(
            f"{path}.observability.contactPoints",
            "at least one contact point for role production: alerts must reach someone",
        )

"""Stack configuration: the only module that reads ``pulumi.Config``.

Stack YAML -> :func:`load` -> frozen, validated :class:`PlatformConfig` -> ``stacks.build``.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors (a typo must not be
silently ignored). Every problem is collected and reported at once, each with its key path and
what is allowed, before a single resource is registered.

Environments: ``environments.yaml`` (program.environments) lists every environment with its
role, subnet, Scaleway project, stack, DNS zone and hostnames. A stack file names its own with
``platform:environment``; its role, subnet and references to other stacks come from that list,
whose rules between environments every stack's plan checks.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

import pulumi
from pulumi.runtime.config import is_config_secret
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from program import environments as env_list
from program.environments import Environments, Hostname
from scw_platform import catalogue
from scw_platform.contract import IMAGE_PATTERN, PLATFORM_NAMESPACES, ProblemsError, tag_pattern_problem

# --------------------------------------------------------------------------------------------
# Facts about Scaleway used by the rules below.
# --------------------------------------------------------------------------------------------

#: Private endpoints of managed databases only work in the region's default zone.
DEFAULT_ZONE = {"fr-par": "fr-par-1", "nl-ams": "nl-ams-1", "pl-waw": "pl-waw-1"}
Region = Literal["fr-par", "nl-ams", "pl-waw"]
Role = Literal["tooling", "production", "development"]
Weekday = Literal["any", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")]
PgIdentifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

_MINOR_VERSION = re.compile(r"^1\.\d{2}$")
_PATCH_VERSION = re.compile(r"^1\.\d{2}\.\d+$")


class ConfigError(ProblemsError):
    """Invalid stack configuration."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        super().__init__(f"stack '{stack}': {len(problems)} configuration problem(s)", problems)


# --------------------------------------------------------------------------------------------
# Models. Rules live in field validators so that each problem carries its own key path and one
# invalid sibling never hides another object's problems. Rules that depend on the stack's role or
# region read them from the validation context.
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def _context(info: ValidationInfo) -> dict[str, Any]:
    """Validation context: the stack's role and region, for rules that depend on them."""
    return info.context or {}


class AutoUpgrade(_Model):
    enabled: bool = True
    maintenance_window_day: Weekday = "sunday"
    maintenance_window_start_hour: int = Field(default=3, ge=0, le=23)


class Autoscaler(_Model):
    disable_scale_down: bool = False
    scale_down_delay_after_add: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "10m"
    scale_down_unneeded_time: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "10m"
    scale_down_utilization_threshold: float = Field(default=0.5, gt=0, le=1)
    expander: Literal["random", "least_waste", "most_pods", "price", "priority"] = "least_waste"
    ignore_daemonsets_utilization: bool = True
    balance_similar_node_groups: bool = True
    max_graceful_termination_sec: int = Field(default=600, ge=0, le=3600)


def _strict_cidr(value: Any) -> Any:
    # "10.0.0.1/24" has host bits set: almost always a typo for a host or a network. Only text: an
    # integer (or true, which YAML hands over as 1) would silently become 0.0.0.1/32.
    if not isinstance(value, str):
        raise ValueError(f"must be an IPv4 network in CIDR notation like 203.0.113.0/28, got {value!r}")
    return ipaddress.IPv4Network(value, strict=True)


#: The broadest API-server ACL entry accepted: anything wider (0.0.0.0/1 and its like included)
#: is the world in all but name.
MIN_ACL_PREFIX = 16


class AllowedRange(_Model):
    cidr: Annotated[ipaddress.IPv4Network, BeforeValidator(_strict_cidr)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @field_validator("cidr")
    @classmethod
    def _not_the_world(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen == 0:
            raise ValueError(
                "0.0.0.0/0 opens the Kubernetes API to the world; list admin and CI ranges instead"
            )
        if value.prefixlen < MIN_ACL_PREFIX:
            raise ValueError(
                f"{value} admits {value.num_addresses:,} addresses to the Kubernetes API; list admin and "
                f"CI ranges of /{MIN_ACL_PREFIX} or narrower"
            )
        return value


class UpgradePolicy(_Model):
    max_surge: int = Field(default=1, ge=0, le=10)
    max_unavailable: int = Field(default=0, ge=0, le=10)

    @model_validator(mode="after")
    def _some_progress(self) -> UpgradePolicy:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: a node upgrade could never start")
        return self


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problems(key: str, value: str) -> list[str]:
    """Kubernetes label syntax (apimachinery validation: an optional DNS-subdomain prefix of at most
    253 characters, a name and a value of at most 63 from [A-Za-z0-9-_.]), and no node label under
    kubernetes.io or k8s.io, which the kubelet may not set (NodeRestriction)."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if not _LABEL_NAME.fullmatch(name) or (
        prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix))
    ):
        problems.append(f"label key {key[:80]!r} is not a valid Kubernetes label key")
    elif prefix == "kubernetes.io" or prefix.endswith((".kubernetes.io", ".k8s.io")) or prefix == "k8s.io":
        problems.append(f"label key {key[:80]!r} uses a prefix reserved for Kubernetes")
    if value and not _LABEL_NAME.fullmatch(value):
        problems.append(
            f"label {key[:80]!r}: value {value[:80]!r} is not a valid label value "
            "(at most 63 of A-Z a-z 0-9 - _ .)"
        )
    return problems


def _zone_of_region(zone: str | None, info: ValidationInfo) -> str | None:
    region = _context(info).get("region")
    if zone is not None and region is not None and not re.fullmatch(rf"{region}-[1-3]", zone):
        raise ValueError(f"must be a zone of region {region} ({region}-1..3), got {zone!r}")
    return zone


class Pool(_Model):
    # Field order matters: each size check sees the fields declared before it.
    name: DnsLabel
    node_type: str
    max_size: int = Field(ge=1, le=150)
    size: int = Field(ge=0, le=150)
    min_size: int = Field(ge=0, le=150)
    autoscaling: bool = True
    autohealing: bool = True
    public_ip_disabled: bool = True
    root_volume_type: Literal["sbs_5k", "sbs_15k", "l_ssd"] = "sbs_15k"
    root_volume_size_gb: int = Field(default=50, ge=20, le=1000)
    zone: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    upgrade_policy: UpgradePolicy = UpgradePolicy()

    @field_validator("labels")
    @classmethod
    def _kubernetes_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        problems = [p for key, value in labels.items() for p in label_problems(key, value)]
        if problems:
            raise ValueError("; ".join(problems))
        return labels

    @field_validator("node_type")
    @classmethod
    def _kapsule_type(cls, name: str) -> str:
        return _catalogued("kapsuleNodeTypes", name)

    @field_validator("size")
    @classmethod
    def _size_within_max(cls, size: int, info: ValidationInfo) -> int:
        max_size = info.data.get("max_size")
        if max_size is not None and size > max_size:
            raise ValueError(f"must be <= maxSize ({size} > {max_size})")
        return size

    @field_validator("min_size")
    @classmethod
    def _min_within(cls, min_size: int, info: ValidationInfo) -> int:
        max_size, size = info.data.get("max_size"), info.data.get("size")
        if max_size is not None and min_size > max_size:
            raise ValueError(f"must be <= maxSize ({min_size} > {max_size})")
        if size is not None and min_size > size:
            raise ValueError(f"must be <= size ({min_size} > {size})")
        return min_size

    @field_validator("public_ip_disabled")
    @classmethod
    def _private_nodes_in_production(cls, value: bool, info: ValidationInfo) -> bool:
        if not value and _context(info).get("role") == "production":
            raise ValueError("must be true for role production (nodes reach out through the Public Gateway)")
        return value

    _zone = field_validator("zone")(_zone_of_region)


class Cluster(_Model):
    # auto_upgrade precedes version: the version rule depends on it.
    auto_upgrade: AutoUpgrade = AutoUpgrade()
    version: str
    cni: Literal["cilium", "calico", "kilo"] = "cilium"
    type: Annotated[str, StringConstraints(pattern=r"^kapsule(-dedicated-(4|8|16))?$")] = "kapsule"
    autoscaler: Autoscaler = Autoscaler()
    api_allowed_ranges: list[AllowedRange] = Field(default_factory=list, validate_default=True)
    pools: list[Pool] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _version_matches_upgrades(cls, version: str, info: ValidationInfo) -> str:
        auto_upgrade = info.data.get("auto_upgrade")
        if auto_upgrade is None:
            return version
        if auto_upgrade.enabled and not _MINOR_VERSION.fullmatch(version):
            raise ValueError(
                f"must be a minor version like 1.34 when autoUpgrade.enabled is true (got {version!r})"
            )
        if not auto_upgrade.enabled and not _PATCH_VERSION.fullmatch(version):
            raise ValueError(
                f"must be a full version like 1.34.2 when autoUpgrade.enabled is false (got {version!r})"
            )
        return version

    @field_validator("api_allowed_ranges")
    @classmethod
    def _acl_in_production(cls, ranges: list[AllowedRange], info: ValidationInfo) -> list[AllowedRange]:
        role = _context(info).get("role")
        if not ranges and role in ("production", "tooling"):
            raise ValueError(
                f"required for role {role}: without an ACL the Kubernetes API is open to the world"
            )
        return ranges

    @field_validator("api_allowed_ranges")
    @classmethod
    def _acl_once_each(cls, ranges: list[AllowedRange]) -> list[AllowedRange]:
        _no_duplicates("range", [str(r.cidr) for r in ranges])
        return ranges

    @field_validator("pools")
    @classmethod
    def _unique_pool_names(cls, pools: list[Pool]) -> list[Pool]:
        _no_duplicates("pool name", [p.name for p in pools])
        return pools


class Backups(_Model):
    enabled: bool = True
    frequency_hours: int = Field(default=24, ge=1, le=24)
    retention_days: int = Field(default=14, ge=1, le=365)
    same_region: bool = False

    @field_validator("enabled")
    @classmethod
    def _on_in_production(cls, enabled: bool, info: ValidationInfo) -> bool:
        if not enabled and _context(info).get("role") == "production":
            raise ValueError("must be true for role production")
        return enabled

    @field_validator("retention_days")
    @classmethod
    def _week_in_production(cls, days: int, info: ValidationInfo) -> int:
        if days < 7 and _context(info).get("role") == "production":
            raise ValueError(f"must be >= 7 for role production (got {days})")
        return days


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


class AppDatabase(_Model):
    name: Annotated[PgIdentifier, AfterValidator(_not_reserved)]
    user: Annotated[PgIdentifier, AfterValidator(_not_reserved)]


class Database(_Model):
    engine: Annotated[str, StringConstraints(pattern=r"^PostgreSQL-1[4-9]$")] = "PostgreSQL-16"
    node_type: str
    ha_cluster: bool = True
    zone: str | None = None
    volume_type: Literal["sbs_5k", "sbs_15k", "lssd", "bssd"] = "sbs_15k"
    volume_size_gb: int = Field(default=20, ge=5, le=10000)
    encryption_at_rest: bool = True
    backups: Backups = Field(default_factory=Backups, validate_default=True)
    #: Declared so that asking for one gives a clear refusal instead of "unknown key".
    public_endpoint: bool = False
    databases: list[AppDatabase] = Field(default_factory=list)

    @field_validator("node_type")
    @classmethod
    def _rdb_type(cls, name: str) -> str:
        return _catalogued("rdbNodeTypes", name)

    @field_validator("ha_cluster")
    @classmethod
    def _ha_in_production(cls, ha: bool, info: ValidationInfo) -> bool:
        if not ha and _context(info).get("role") == "production":
            raise ValueError("must be true for role production (a standby node survives a zone failure)")
        return ha

    @field_validator("zone")
    @classmethod
    def _default_zone(cls, zone: str | None, info: ValidationInfo) -> str | None:
        region = _context(info).get("region")
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
        if not encrypted and _context(info).get("role") == "production":
            raise ValueError("must be true for role production")
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
    def _one_user_per_database(cls, databases: list[AppDatabase]) -> list[AppDatabase]:
        _no_duplicates("database name", [d.name for d in databases])
        _no_duplicates("user", [d.user for d in databases])
        return databases


def _catalogued(section: catalogue.SectionName, name: str) -> str:
    """A commercial type the catalogue of Scaleway types lists (scw_platform/data/scaleway.yaml)."""
    if catalogue.find(section, name) is None:
        raise ValueError(f"unknown type {name!r} ({catalogue.hint(section)})")
    return name


def _no_duplicates(what: str, values: list[str]) -> None:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, duplicates))}")


class Network(_Model):
    public_gateway_type: str = Field(default="VPC-GW-S", validate_default=True)

    @field_validator("public_gateway_type")
    @classmethod
    def _gateway_type(cls, name: str) -> str:
        return _catalogued("publicGatewayTypes", name)


class Registry(_Model):
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{2,52}[a-z0-9])$")]


# --- GitOps (Argo CD in tooling reconciles every environment) ---------------------------------

_REPO_URL = re.compile(r"^(https://[^\s/]+/\S+|ssh://[^\s@]+@[^\s/]+/\S+|[\w.-]+@[\w.-]+:\S+)$")
EnvKey = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class Oidc(_Model):
    issuer: Annotated[str, StringConstraints(pattern=r"^https://\S+$")]
    client_id: Annotated[str, StringConstraints(min_length=1)]
    #: Identity-provider groups mapped to Argo CD's admin role.
    admin_groups: list[str] = Field(default_factory=list)
    #: Groups that may read (Applications, manifests, logs); anyone else signed in sees nothing.
    readonly_groups: list[str] = Field(default_factory=list)


class ArgoCd(_Model):
    #: Serves the UI and API on the public Gateway (requires ``oidc``). Without it, the UI is
    #: reached with ``kubectl port-forward`` only.
    hostname: Hostname | None = None
    ha: bool = False
    #: Single sign-on. With it, the local admin account is disabled.
    oidc: Oidc | None = None


class CommitAuthor(_Model):
    name: str = "argocd-image-updater"
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")] = (
        "image-updater@localhost"
    )


class ImageUpdater(_Model):
    #: Branch the updater commits to; the Git host opens a merge request from it.
    write_back_branch: Annotated[str, StringConstraints(pattern=r"^[\w./{}-]+$")] = (
        "image-updater-{{.SHA256}}"
    )
    commit_author: CommitAuthor = CommitAuthor()


class ImageUpdate(_Model):
    app: DnsLabel
    strategy: Literal["semver", "digest", "newest-build", "alphabetical"] = "semver"
    #: Regular expression of tags the updater may pick (e.g. only release tags); never empty (an
    #: empty pattern would silently allow every tag).
    allow_tags: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None

    @field_validator("allow_tags")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        problem = tag_pattern_problem(pattern) if pattern is not None else None
        if problem is not None:
            raise ValueError(problem)
        return pattern


class GitOps(_Model):
    #: Tooling only: the GitOps repository Argo CD reads (workload stacks never touch it).
    repo_url: str | None = None
    target_revision: Annotated[str, StringConstraints(pattern=r"^[\w./-]+$")] = "main"
    #: Username sent with the token over https (GitHub accepts any, GitLab wants oauth2).
    repo_username: str = "git"
    #: Namespaces of this environment that Argo CD may deploy to besides the apps' own.
    namespaces: list[DnsLabel] = Field(default_factory=list)
    argocd: ArgoCd | None = None
    image_updater: ImageUpdater = ImageUpdater()
    #: Per-app image-updater settings; apps not listed get the defaults (semver, any tag).
    image_updates: list[ImageUpdate] = Field(default_factory=list)

    @field_validator("image_updates")
    @classmethod
    def _one_entry_per_app(cls, updates: list[ImageUpdate]) -> list[ImageUpdate]:
        _no_duplicates("app", [u.app for u in updates])
        return updates

    @field_validator("namespaces")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        _no_duplicates("entry", names)
        return names

    @field_validator("namespaces")
    @classmethod
    def _not_a_platform_namespace(cls, names: list[str]) -> list[str]:
        taken = sorted(set(names) & PLATFORM_NAMESPACES)
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: platform namespaces are the program's, never Argo CD's to deploy into "
                f"(reserved: {', '.join(sorted(PLATFORM_NAMESPACES))})"
            )
        return names

    @field_validator("repo_url")
    @classmethod
    def _https_or_ssh(cls, url: str | None) -> str | None:
        if url is not None and not _REPO_URL.fullmatch(url):
            raise ValueError(
                f"must be an https:// URL or an ssh URL (ssh://git@host/path or git@host:path), got {url!r}"
            )
        return url

    def image_updates_for(self, apps: Iterable[str]) -> list[ImageUpdate]:
        """Every app gets an image-updater entry: its ``imageUpdates`` settings, else the defaults."""
        configured = {update.app: update for update in self.image_updates}
        return [configured.get(app) or ImageUpdate(app=app) for app in apps]

    @property
    def uses_ssh(self) -> bool:
        return not (self.repo_url or "").startswith("https://")

    def path_for(self, environment: str) -> str:
        return f"environments/{environment}"


# --- Apps (one template for every app) ------------------------------------------------------


class AppResources(_Model):
    cpu_request: Annotated[str, StringConstraints(pattern=r"^\d+m?$")] = "100m"
    memory_request: Annotated[str, StringConstraints(pattern=r"^\d+(Mi|Gi)$")] = "128Mi"
    cpu_limit: Annotated[str, StringConstraints(pattern=r"^\d+m?$")] = "1"
    memory_limit: Annotated[str, StringConstraints(pattern=r"^\d+(Mi|Gi)$")] = "512Mi"


#: The widest app egress entry accepted.
MIN_EGRESS_PREFIX = 16
#: Never an app's egress destination: every private and special-purpose range. Apps reach their
#: database through the platform's own rule and cluster services by selector, never by address;
#: Kapsule's pod range sits in carrier-grade NAT space and its service range in RFC 1918 space.
NOT_EGRESS: Mapping[str, str] = {
    "0.0.0.0/8": "this network",
    "10.0.0.0/8": "private, RFC 1918: the VPCs and the cluster's service range",
    "172.16.0.0/12": "private, RFC 1918",
    "192.168.0.0/16": "private, RFC 1918",
    "100.64.0.0/10": "carrier-grade NAT: the cluster's pod range",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local: the metadata service",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved",
}


class AppEgress(_Model):
    #: Public ranges only (NOT_EGRESS): apps never reach another VPC, the pods or the metadata.
    cidr: Annotated[ipaddress.IPv4Network, BeforeValidator(_strict_cidr)]
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(min_length=1)
    description: Annotated[str, StringConstraints(min_length=1)]

    @field_validator("cidr")
    @classmethod
    def _public_and_narrow(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen < MIN_EGRESS_PREFIX:
            raise ValueError(
                f"{value} is wider than /{MIN_EGRESS_PREFIX}: it would all but undo the app's default-deny "
                "egress; list the ranges it needs"
            )
        for blocked, why in NOT_EGRESS.items():
            if value.overlaps(ipaddress.IPv4Network(blocked)):
                raise ValueError(f"{value} overlaps {blocked} ({why}): app egress lists public ranges only")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[int]) -> list[int]:
        _no_duplicates("port", [str(p) for p in ports])
        return ports


#: Keys the platform writes into every app's secret when the app has a database (from the
#: program's own vault entry, see components/apps.py); apps must not declare them.
DATABASE_KEYS = (
    "DATABASE_URL",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
)
_APP_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
#: A Scaleway Secret Manager folder (``/prod/website``) or a 1Password item title (``prod-website``).
_SCALEWAY_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_ONEPASSWORD_ITEM = re.compile(r"^[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*$")


def _relative_path(path: str) -> str:
    if ".." in path.split("/") or "." in path.split("/"):
        raise ValueError(f"{path!r}: a path inside the GitOps repository, without '.' or '..' segments")
    return path


def _app_name(name: str) -> str:
    if not _APP_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a DNS label: lowercase letters, digits and '-', starting with a letter, "
            "at most 32 characters (it names the app's namespace)"
        )
    return name


def _env_key(key: str) -> str:
    if not _ENV_KEY.fullmatch(key):
        raise ValueError(
            f"{key!r} is not an environment variable name: upper-case letters, digits and '_', "
            "not starting with a digit (e.g. STRIPE_SECRET_KEY)"
        )
    return key


AppName = Annotated[str, AfterValidator(_app_name)]
AppEnvKey = Annotated[str, AfterValidator(_env_key)]


class App(_Model):
    name: AppName
    hostname: Hostname
    port: int = Field(ge=1, le=65535)
    #: Image repository without tag (the tag is Git's business: the image updater writes it).
    image: Annotated[str, StringConstraints(max_length=255, pattern=IMAGE_PATTERN)]
    gitops_path: Annotated[
        str,
        StringConstraints(max_length=255, pattern=r"^[\w.-]+(/[\w.-]+)*$"),
        AfterValidator(_relative_path),
    ]
    #: An app database declared under platform:database.databases.
    database: PgIdentifier | None = None
    #: Environment keys the app needs; a missing one fails the rollout, naming it.
    required_keys: list[AppEnvKey] = Field(default_factory=list)
    replicas: int = Field(default=2, ge=1, le=50)
    resources: AppResources = AppResources()
    #: Egress beyond DNS and the database, denied unless listed.
    egress: list[AppEgress] = Field(default_factory=list)
    #: Where the app's keys live in the vault (default: see PlatformConfig.app_secrets_path): a
    #: Scaleway Secret Manager folder such as /prod/website, or a 1Password item title.
    secrets_path: str | None = None

    @field_validator("required_keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        _no_duplicates("key", keys)
        return keys


# --- Front door: reserved IP, Traefik + Gateway API, cert-manager, DNS ------------------------

#: A Gateway listener hostname: a DNS name, optionally a leading ``*.`` wildcard (DNS-01 only).
_GATEWAY_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ACME_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
#: An IP to adopt: ``<zone>/<uuid>`` (the provider's resource ID, as the console and
#: ``scw lb ip list`` show it) or a bare UUID (then in the front door's zone).
_ADOPT_IP_ID = re.compile(
    r"^((?P<zone>[a-z]{2}-[a-z]{3}-[1-9])/)?"
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
Issuer = Literal["letsencrypt-staging", "letsencrypt-production"]
#: A Gateway has at most 64 listeners; one is the HTTP listener.
MAX_HTTPS_LISTENERS = 63


def within_domain(hostname: str, domain: str) -> bool:
    """``www.example.com`` and ``*.apps.example.com`` lie in ``example.com``; ``example.org`` not."""
    bare = hostname.removeprefix("*.")
    return bare == domain or bare.endswith("." + domain)


def _gateway_hostname(hostname: str, info: ValidationInfo) -> str:
    if not _GATEWAY_HOSTNAME.fullmatch(hostname) or len(hostname) > 253:
        raise ValueError(
            f"must be a lowercase DNS name such as www.example.com (or *.apps.example.com), got {hostname!r}"
        )
    domain = info.data.get("domain")
    if domain is not None and not within_domain(hostname, domain):
        raise ValueError(f"{hostname} is outside the configured domain {domain} (platform:ingress.domain)")
    return hostname


GatewayHostname = Annotated[str, AfterValidator(_gateway_hostname)]


class Ingress(_Model):
    """``platform:ingress``: the one front door (reserved IP, Traefik, the platform Gateway)."""

    #: The public DNS domain; every hostname the Gateway serves lies in it.
    domain: Hostname
    #: Hostnames served by app namespaces (label platform.scw/app-namespace=true). Hostnames of
    #: ``platform:apps`` are added to these.
    hostnames: list[GatewayHostname] = Field(default_factory=list)
    #: Hostnames served by the platform's own namespaces (label platform.scw/platform-namespace=true),
    #: e.g. Argo CD's; ``platform:gitops.argocd.hostname`` is added to these.
    platform_hostnames: list[GatewayHostname] = Field(default_factory=list, validate_default=True)
    #: Hostnames that only redirect (301) to another hostname, e.g. the apex to www.
    redirects: dict[str, str] = Field(default_factory=dict)
    #: Zone of the reserved IP and its load balancer (default: the stack's scaleway:zone).
    zone: str | None = None
    #: Adopt an existing flexible IP instead of reserving a new one (the cutover, see README).
    adopt_ip_id: str | None = None
    replicas: int = Field(default=2, ge=1, le=20)
    load_balancer_type: str = "LB-S"

    _zone = field_validator("zone")(_zone_of_region)

    @field_validator("load_balancer_type")
    @classmethod
    def _lb_type(cls, name: str) -> str:
        return _catalogued("loadBalancerTypes", name)

    @field_validator("hostnames")
    @classmethod
    def _unique_hostnames(cls, hostnames: list[str]) -> list[str]:
        _no_duplicates("hostname", hostnames)
        return hostnames

    @field_validator("platform_hostnames")
    @classmethod
    def _unique_platform_hostnames(cls, platform: list[str], info: ValidationInfo) -> list[str]:
        apps = info.data.get("hostnames") or []
        _no_duplicates("hostname", platform)
        both = sorted(set(apps) & set(platform))
        if both:
            raise ValueError(
                f"{', '.join(both)} also in hostnames: a hostname is served by apps or by the platform"
            )
        if len(apps) + len(platform) > MAX_HTTPS_LISTENERS:
            raise ValueError(f"at most {MAX_HTTPS_LISTENERS} hostnames in all (one Gateway listener each)")
        return platform

    @field_validator("redirects")
    @classmethod
    def _redirects(cls, redirects: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        domain = info.data.get("domain")
        served = {*(info.data.get("hostnames") or []), *(info.data.get("platform_hostnames") or [])}
        for source, target in redirects.items():
            for hostname in (source, target):
                if not _GATEWAY_HOSTNAME.fullmatch(hostname) or hostname.startswith("*."):
                    raise ValueError(f"{hostname!r} must be a lowercase DNS name without wildcard")
                if domain is not None and not within_domain(hostname, domain):
                    raise ValueError(f"{hostname} is outside the configured domain {domain}")
            if source in served:
                raise ValueError(f"{source} is also served as a hostname: it cannot only redirect")
            if target in redirects:
                raise ValueError(
                    f"{source} -> {target} -> {redirects[target]}: redirect to the final hostname"
                )
        if len(served) + len(redirects) > MAX_HTTPS_LISTENERS:
            raise ValueError(f"at most {MAX_HTTPS_LISTENERS} hostnames in all (one Gateway listener each)")
        return redirects

    @field_validator("adopt_ip_id")
    @classmethod
    def _adoptable(cls, ip_id: str | None, info: ValidationInfo) -> str | None:
        if ip_id is None:
            return None
        match = _ADOPT_IP_ID.fullmatch(ip_id)
        if match is None:
            raise ValueError(
                "must be a load-balancer flexible IP ID, <zone>/<uuid> (e.g. fr-par-1/"
                f"11111111-2222-3333-4444-555555555555) or a bare uuid, got {ip_id!r}"
            )
        ip_zone, zone = match["zone"], info.data.get("zone")
        region = _context(info).get("region")
        if ip_zone and region is not None and not ip_zone.startswith(f"{region}-"):
            raise ValueError(f"is in zone {ip_zone}, outside this stack's region {region}")
        if ip_zone and zone is not None and ip_zone != zone:
            raise ValueError(f"is in zone {ip_zone} but platform:ingress.zone is {zone}")
        return ip_id

    @field_validator("replicas")
    @classmethod
    def _ha_in_production(cls, replicas: int, info: ValidationInfo) -> int:
        if replicas < 2 and _context(info).get("role") == "production":
            raise ValueError(
                f"must be >= 2 for role production (a node drain must not cut traffic), got {replicas}"
            )
        return replicas

    def ip_zone(self, default: str) -> str:
        """Zone of the reserved IP: explicit, else the adopted ID's, else the stack's."""
        match = _ADOPT_IP_ID.fullmatch(self.adopt_ip_id or "")
        return self.zone or (match["zone"] if match and match["zone"] else None) or default

    def adopt_import_id(self, default_zone: str) -> str | None:
        """The provider's import ID (``<zone>/<uuid>``) of the IP to adopt, if any."""
        match = _ADOPT_IP_ID.fullmatch(self.adopt_ip_id or "")
        return f"{self.ip_zone(default_zone)}/{match['uuid']}" if match else None


class OnePassword(_Model):
    """``platform:secrets.onepassword``: the vault the service account reads."""

    #: Vault name or UUID (without op://).
    vault: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*$", max_length=100)]


SecretsBackend = Literal["scaleway", "onepassword"]
_SECRETS_BACKENDS: tuple[str, ...] = get_args(SecretsBackend)


class Secrets(_Model):
    """``platform:secrets``: where app secrets live; External Secrets Operator syncs them."""

    #: scaleway (Scaleway Secret Manager, the default) or onepassword (a 1Password service account).
    backend: SecretsBackend = "scaleway"
    onepassword: OnePassword | None = Field(default=None, validate_default=True)
    #: How often External Secrets re-reads the vault.
    refresh_interval: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "15m"

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, backend: Any) -> Any:
        if backend not in _SECRETS_BACKENDS:
            raise ValueError(f"unknown secrets backend {backend!r} (one of: {', '.join(_SECRETS_BACKENDS)})")
        return backend

    @field_validator("onepassword")
    @classmethod
    def _settings_for_backend(cls, settings: OnePassword | None, info: ValidationInfo) -> OnePassword | None:
        backend = info.data.get("backend")
        if backend == "onepassword" and settings is None:
            raise ValueError("required with backend onepassword, e.g. {vault: platform-prod}")
        if backend == "scaleway" and settings is not None:
            raise ValueError("only allowed with backend onepassword")
        return settings


class Tls(_Model):
    """``platform:tls``: cert-manager and the Let's Encrypt issuer this stack's Gateway uses."""

    #: Let's Encrypt's contact for expiry and incident notices (a team address, not a person's).
    acme_email: str
    #: Default: letsencrypt-staging for role development, letsencrypt-production otherwise.
    issuer: Issuer | None = Field(default=None, validate_default=True)
    #: Solve challenges with DNS-01 through Scaleway DNS (needs platform:dns, provider scaleway):
    #: required for wildcard hostnames, and issues certificates before DNS points at the address.
    dns01: bool = False

    @field_validator("acme_email")
    @classmethod
    def _email(cls, email: str) -> str:
        if not _ACME_EMAIL.fullmatch(email) or len(email) > 254:
            raise ValueError(f"must be an email address Let's Encrypt can write to, got {email!r}")
        return email

    @field_validator("issuer")
    @classmethod
    def _issuer_for_role(cls, issuer: Issuer | None, info: ValidationInfo) -> Issuer | None:
        role = _context(info).get("role")
        if issuer is None:
            return "letsencrypt-staging" if role == "development" else "letsencrypt-production"
        if role == "production" and issuer != "letsencrypt-production":
            raise ValueError(
                f"must be letsencrypt-production for role production (got {issuer}: staging "
                "certificates are not trusted by browsers)"
            )
        return issuer

    @property
    def cluster_issuer(self) -> Issuer:
        return self.issuer or "letsencrypt-production"


class Dns(_Model):
    """``platform:dns``: where the domain's zone lives; with Scaleway DNS, A records are managed."""

    provider: Literal["scaleway", "external"] = "scaleway"
    #: The Scaleway DNS zone (default: platform:ingress.domain); every hostname must lie in it.
    zone: Hostname | None = None
    #: With provider scaleway: manage one A record per hostname. Off while hand-made records still
    #: serve the old site (cutover rehearsal with DNS-01, see README).
    records: bool = True
    ttl: int = Field(default=300, ge=60, le=86400)

    @property
    def managed(self) -> bool:
        """The zone is in Scaleway DNS (DNS-01 possible)."""
        return self.provider == "scaleway"

    @property
    def manages_records(self) -> bool:
        return self.managed and self.records


# --- Operations: the restore check and observability (components/backup.py, observability.py) --

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
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ObservabilityBackend = Literal["cockpit", "prometheus"]
_OBSERVABILITY_BACKENDS: tuple[str, ...] = get_args(ObservabilityBackend)


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


class FreshnessCheck(_Model):
    """The newest value of ``table.column`` must be at most ``maxAge`` older than the dump."""

    table: PgTable
    column: PgColumn
    max_age: Duration


class RestoreCheckDatabase(_Model):
    """Sanity checks run against the restored copy of one app database."""

    #: A database declared in platform:database.databases.
    database: PgIdentifier
    #: Tables that must exist.
    tables: list[PgTable] = Field(default_factory=list)
    #: Table -> minimum row count (a whole number, never a boolean).
    min_rows: dict[PgTable, Annotated[int, Field(strict=True, ge=0, le=10**12)]] = Field(default_factory=dict)
    freshness: list[FreshnessCheck] = Field(default_factory=list)

    @field_validator("tables")
    @classmethod
    def _tables_once(cls, tables: list[str]) -> list[str]:
        _no_duplicates("table", tables)
        return tables

    @field_validator("freshness")
    @classmethod
    def _freshness_once(cls, checks: list[FreshnessCheck]) -> list[FreshnessCheck]:
        _no_duplicates("freshness check", [f"{c.table}.{c.column}" for c in checks])
        return checks


class RestoreCheck(_Model):
    """``platform:operations.restoreCheck``: the daily dump, restore and sanity check."""

    #: Cron schedule (UTC) of the CronJob.
    schedule: str = "30 3 * * *"
    #: The job's image (ops/restore_check/Dockerfile): a tag or a digest, never latest.
    image: str
    #: Days a dump is kept in the bucket (current and replaced versions alike).
    retention_days: int = Field(default=30, ge=1, le=3650)
    #: Size of the job's scratch volume: the dump plus the restored copy must fit.
    scratch_size_gb: int = Field(default=20, ge=1, le=500)
    databases: list[RestoreCheckDatabase] = Field(min_length=1)
    #: Who keeps full access to the backup bucket (``user_id:<uuid>`` or ``application_id:<uuid>``).
    #: The bucket policy denies everyone it does not list, so this must include whoever runs
    #: ``pulumi up``; the job's own key may then only write dumps. Required in production.
    bucket_admins: list[
        Annotated[
            str,
            StringConstraints(
                pattern=r"^(user_id|application_id):[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
            ),
        ]
    ] = Field(default_factory=list, validate_default=True)

    @field_validator("bucket_admins")
    @classmethod
    def _admins_in_production(cls, admins: list[str], info: ValidationInfo) -> list[str]:
        _no_duplicates("bucket admin", admins)
        if not admins and _context(info).get("role") == "production":
            raise ValueError(
                "required for role production: the principals that keep full access to the backup bucket "
                "(include the identity that runs pulumi up), e.g. user_id:<uuid>"
            )
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

    @field_validator("retention_days")
    @classmethod
    def _week_in_production(cls, days: int, info: ValidationInfo) -> int:
        if days < 7 and _context(info).get("role") == "production":
            raise ValueError(f"must be >= 7 for role production (got {days})")
        return days

    @field_validator("databases")
    @classmethod
    def _once_each(cls, databases: list[RestoreCheckDatabase]) -> list[RestoreCheckDatabase]:
        _no_duplicates("database", [d.database for d in databases])
        return databases


class ContactPoint(_Model):
    """Where alerts go: an email address, or the webhook whose URL is a deploy-time secret."""

    name: DnsLabel
    kind: Literal["email", "webhook"] = "email"
    #: Required for kind email. A webhook's URL is the secret platform:alertWebhookUrl.
    email: str | None = Field(default=None, validate_default=True)

    @field_validator("email")
    @classmethod
    def _address(cls, email: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "email":
            if email is None:
                raise ValueError("required for kind email: the address alerts are sent to")
            if not _EMAIL.fullmatch(email) or len(email) > 254:
                raise ValueError(f"must be an email address, got {email!r}")
        elif kind == "webhook" and email is not None:
            raise ValueError(
                "not allowed for kind webhook: its URL is the deploy-time secret "
                "platform:alertWebhookUrl (pulumi config set --secret platform:alertWebhookUrl <url>)"
            )
        return email


class Observability(_Model):
    """``platform:operations.observability``: metrics, logs, alert rules, routing and probes."""

    #: cockpit (Scaleway Cockpit, the default) or prometheus (kube-prometheus-stack in the cluster).
    backend: ObservabilityBackend = "cockpit"
    #: Retention of the stack's Cockpit data sources.
    metrics_retention_days: int = Field(default=31, ge=1, le=365)
    logs_retention_days: int = Field(default=7, ge=1, le=31)
    contact_points: list[ContactPoint] = Field(default_factory=list)

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, backend: Any) -> Any:
        if backend not in _OBSERVABILITY_BACKENDS:
            raise ValueError(
                f"unknown observability backend {backend!r} (one of: {', '.join(_OBSERVABILITY_BACKENDS)})"
            )
        return backend

    @field_validator("contact_points")
    @classmethod
    def _unique_names(cls, points: list[ContactPoint]) -> list[ContactPoint]:
        _no_duplicates("contact point name", [p.name for p in points])
        return points

    @property
    def emails(self) -> list[str]:
        return [p.email for p in self.contact_points if p.kind == "email" and p.email is not None]

    @property
    def webhook(self) -> ContactPoint | None:
        return next((p for p in self.contact_points if p.kind == "webhook"), None)


class Operations(_Model):
    """``platform:operations``: what keeps the platform recoverable and observable."""

    observability: Observability | None = None
    restore_check: RestoreCheck | None = None


# --------------------------------------------------------------------------------------------
# The validated result handed to stacks.build().
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PlatformConfig:
    stack: str
    project: str
    role: Role
    environment: str
    region: Region
    zone: str
    project_id: str
    address_plan: Mapping[str, ipaddress.IPv4Network]
    network: Network
    cluster: Cluster | None
    database: Database | None
    registry: Registry | None
    gitops: GitOps | None = None
    apps: tuple[App, ...] = ()
    ingress: Ingress | None = None
    tls: Tls | None = None
    dns: Dns | None = None
    #: platform:secrets (the vault behind External Secrets); defaults to Scaleway Secret Manager.
    vault: Secrets = field(default_factory=Secrets)
    #: platform:operations (restore check, observability).
    operations: Operations = field(default_factory=Operations)
    #: Deploy-time secrets by key (see SECRET_KEYS); values are Pulumi secrets.
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Every environment (environments.yaml), this one included.
    environments: Environments = field(default_factory=env_list.load_file)

    @property
    def tooling_stack(self) -> str | None:
        """A workload environment's tooling stack (the environment that registers it)."""
        return self.environments.tooling_stack_of(self.environment)

    @property
    def registered_stacks(self) -> dict[str, str]:
        """Tooling: the stack of each environment its Argo CD registers, by environment."""
        return self.environments.registered_stacks_of(self.environment)

    def app_secrets_path(self, app: App) -> str:
        """Where ``app``'s keys live in the configured vault (see :func:`app_secrets_path`)."""
        return app_secrets_path(app, self.environment, self.vault.backend)

    def app_platform_path(self, app: App) -> str:
        """The Scaleway Secret Manager folder the program writes the app's platform secrets to."""
        return app_secrets_path(app, self.environment, "scaleway")

    def secret(self, key: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.secrets[key])

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return self.address_plan[self.environment]

    @property
    def is_production(self) -> bool:
        return self.role == "production"

    @property
    def protect_stateful(self) -> bool:
        """Stateful and address-bearing resources are protected everywhere but development."""
        return self.role != "development"

    @property
    def database_zone(self) -> str:
        # platform:database.zone, when set, is validated to be this very zone.
        return DEFAULT_ZONE[self.region]

    @property
    def tags(self) -> list[str]:
        return [f"platform={self.project}", f"environment={self.environment}", f"role={self.role}"]


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------

#: The ``platform:`` keys and the model each must parse into (None: a plain value checked below).
_PLATFORM_KEYS: dict[str, Any] = {
    "environment": None,
    "network": Network,
    "cluster": Cluster,
    "database": Database,
    "registry": Registry,
    "gitops": GitOps,
    "apps": list[App],
    "ingress": Ingress,
    "tls": Tls,
    "dns": Dns,
    "secrets": Secrets,
    "operations": Operations,
}

#: Deploy-time secrets, set with `pulumi config set --secret platform:<key>`. They are read with
#: get_secret and stay Pulumi secrets end to end; only their presence is validated here.
SECRET_KEYS: dict[str, str] = {
    "gitopsRepoCredential": "read-only token or SSH deploy key Argo CD reads the GitOps repository with",
    "gitopsWriteCredential": "token or SSH key the image updater pushes its write-back branches with "
    "(write access; keep the target branch protected)",
    "argocdOidcClientSecret": "client secret of Argo CD's OIDC application",
    "onepasswordServiceAccountToken": "1Password service-account token External Secrets reads the vault with "
    "(platform:secrets.backend onepassword)",
    "alertWebhookUrl": "URL of the webhook contact point (e.g. a chat bot) alerts are posted to "
    "(platform:operations.observability.contactPoints, kind webhook)",
}
_ROLES: tuple[str, ...] = get_args(Role)
_REGIONS: tuple[str, ...] = get_args(Region)


@dataclass
class _Problems:
    items: list[str]

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def load(
    raw_platform: Mapping[str, Any],
    raw_scaleway: Mapping[str, Any],
    *,
    stack: str,
    project: str,
    secrets: Mapping[str, pulumi.Input[str]] | None = None,
    environments: Environments | None = None,
    running_stack: str | None = None,
) -> PlatformConfig:
    """Validate raw config values (strings or parsed structures) into a :class:`PlatformConfig`.
    ``environments`` is the list of environments (the committed environments.yaml by default);
    ``running_stack`` (the program's stack) must be the environment's own.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems = _Problems([])
    environments = environments or env_list.load_file()
    raw_platform = _without_moved_keys(raw_platform, problems)

    secrets = dict(secrets or {})
    allowed = [*_PLATFORM_KEYS, *SECRET_KEYS]
    for key in sorted(set(raw_platform) - set(_PLATFORM_KEYS)):
        if key in SECRET_KEYS:
            problems.add(
                f"platform:{key}", f"must be set as a secret: pulumi config set --secret platform:{key}"
            )
        else:
            problems.add(f"platform:{key}", f"unknown key (allowed: {', '.join(allowed)})")

    environment = _environment(raw_platform.get("environment"), environments, problems)
    if environment is not None and running_stack is not None:
        own = environments.entries[environment].stack
        if not env_list.same_stack(own, running_stack):
            problems.add(
                "platform:environment",
                f"'{environment}' is stack {own} ({environments.key(environment, 'stack')}), not this "
                f"stack '{running_stack}': a copied stack file names its own environment",
            )
            environment = None
    role = environments.entries[environment].role if environment is not None else None
    region = _plain_choice(raw_scaleway.get("region"), "scaleway:region", _REGIONS, problems)
    zone = raw_scaleway.get("zone")
    if region is not None:
        zone = zone or DEFAULT_ZONE[region]
        if not re.fullmatch(rf"{region}-[1-3]", str(zone)):
            problems.add("scaleway:zone", f"must be a zone of region {region} ({region}-1..3), got {zone!r}")
    project_id = _project_id(raw_scaleway.get("projectId"), environment, environments, problems)
    address_plan = environments.subnets()

    context = {"role": role, "region": region}
    parsed: dict[str, Any] = {}
    for key, model in _PLATFORM_KEYS.items():
        if model is None or raw_platform.get(key) is None:
            continue
        parsed[key] = _parse_model(model, raw_platform[key], f"platform:{key}", problems, context)

    network = parsed.get("network") or Network()
    cluster: Cluster | None = parsed.get("cluster")
    database: Database | None = parsed.get("database")
    registry: Registry | None = parsed.get("registry")
    gitops: GitOps | None = parsed.get("gitops")
    apps: list[App] = parsed.get("apps") or []
    ingress: Ingress | None = parsed.get("ingress")
    tls: Tls | None = parsed.get("tls")
    dns: Dns | None = parsed.get("dns")
    vault: Secrets = parsed.get("secrets") or Secrets()

    # Only check presence when the key itself was absent; a present but invalid key already
    # produced its own message above.
    presence = {
        k: raw_platform.get(k) is not None
        for k in ("cluster", "database", "registry", "gitops", "apps", "ingress")
    }
    if role is not None and environment is not None:
        _role_rules(role, presence, problems)
        _served_hostnames(
            environment, environments, apps=apps, ingress=ingress, gitops=gitops, problems=problems
        )
        if environments.entries[environment].managed_by is not None and gitops is None:
            problems.add(
                environments.key(environment, "managedBy"),
                "set, but this stack has no platform:gitops: its tooling environment would wait for a "
                "registration it never exports",
            )
        if gitops is not None:
            _gitops_rules(
                role,
                gitops,
                environment=environment,
                environments=environments,
                apps=apps,
                secrets=secrets,
                problems=problems,
                # An invalid platform:apps has its own messages; do not also blame every image update.
                apps_known=parsed.get("apps") is not None or not presence["apps"],
            )
    # An invalid platform:database has its own messages; do not also blame every app using it.
    _app_rules(
        apps,
        database,
        problems,
        databases_known=database is not None or not presence["database"],
    )
    if raw_platform.get("secrets") is None or parsed.get("secrets") is not None:
        _secrets_rules(
            apps,
            vault,
            environment=environment,
            has_cluster=presence["cluster"],
            present=raw_platform.get("secrets") is not None,
            secrets=secrets,
            problems=problems,
        )
    _front_door_rules(
        raw_platform, ingress=ingress, tls=tls, dns=dns, apps=apps, gitops=gitops, problems=problems
    )
    operations: Operations = parsed.get("operations") or Operations()
    _operations_rules(
        operations,
        raw_platform.get("operations"),
        database=database,
        # A key the role itself requires is already reported missing; do not report it twice.
        present={
            k: raw_platform.get(k) is not None
            or (role == "production" or (role == "tooling" and k == "cluster"))
            for k in ("cluster", "database")
        },
        secrets=secrets,
        problems=problems,
        role=role,
    )

    if problems.items:
        raise ConfigError(stack, problems.items)

    assert role is not None and environment is not None and region is not None
    assert address_plan is not None and isinstance(zone, str) and isinstance(project_id, str)
    return PlatformConfig(
        stack=stack,
        project=project,
        role=role,
        environment=environment,
        region=region,
        zone=zone,
        project_id=project_id,
        address_plan=address_plan,
        network=network,
        cluster=cluster,
        database=database,
        registry=registry,
        gitops=gitops,
        apps=tuple(apps),
        secrets=secrets,
        ingress=ingress,
        tls=tls,
        dns=dns,
        vault=vault,
        operations=operations,
        environments=environments,
    )


def from_pulumi(environments: Environments | None = None) -> PlatformConfig:
    """Read the running stack's configuration. The program's single entry into ``pulumi.Config``."""
    platform = pulumi.Config("platform")
    scaleway = pulumi.Config("scaleway")
    present = _present_keys("platform")
    # A deploy-time secret set without --secret is handed to load() as a plain value, which
    # reports it; only values the engine holds as secrets become secrets here.
    secret_keys = {key for key in present if key in SECRET_KEYS and is_config_secret(f"platform:{key}")}
    raw_platform = {key: _structured(platform.get(key)) for key in present if key not in secret_keys}
    secrets = {key: platform.require_secret(key) for key in sorted(secret_keys)}
    raw_scaleway = {key: scaleway.get(key) for key in ("region", "zone", "projectId")}
    return load(
        raw_platform,
        {k: v for k, v in raw_scaleway.items() if v is not None},
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        secrets=secrets,
        environments=environments,
        running_stack=pulumi.get_stack(),
    )


def referenced_stacks(raw_platform: Mapping[str, Any], environments: Environments) -> list[str]:
    """Stacks this stack reads through a StackReference (the offline plan resolves them first):
    a workload stack its tooling stack; tooling each registered environment's stack."""
    name = str(raw_platform.get("environment"))
    if name not in environments.entries:
        return []
    tooling = environments.tooling_stack_of(name)
    return [tooling] if tooling is not None else registered_stacks(raw_platform, environments)


def registered_stacks(raw_platform: Mapping[str, Any], environments: Environments) -> list[str]:
    """The workload stacks a tooling stack registers; each may not exist yet, which the hub
    tolerates (program.references)."""
    name = str(raw_platform.get("environment"))
    if name not in environments.entries or environments.entries[name].role != "tooling":
        return []
    return list(environments.registered_stacks_of(name).values())


def _present_keys(namespace: str) -> list[str]:
    """Every key set under ``namespace``, so unknown top-level keys are reported too."""
    # The engine hands config to the program either in-process or as PULUMI_CONFIG; take both.
    from pulumi.runtime.config import CONFIG, get_config_env

    prefix = f"{namespace}:"
    keys = set(CONFIG.get()) | set(get_config_env())
    return sorted(k[len(prefix) :] for k in keys if k.startswith(prefix))


def _structured(value: str | None) -> Any:
    """Structured values (maps, lists) reach the program as JSON strings."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# --------------------------------------------------------------------------------------------
# Parsing helpers that turn pydantic errors into "key path: what is allowed" lines.
# --------------------------------------------------------------------------------------------


def _plain_choice(value: Any, path: str, allowed: Iterable[str], problems: _Problems) -> Any:
    allowed = tuple(allowed)
    if value is None:
        problems.add(path, f"required (one of: {', '.join(allowed)})")
        return None
    if value not in allowed:
        problems.add(path, f"must be one of: {', '.join(allowed)} (got {value!r})")
        return None
    return value


def _environment(raw: Any, environments: Environments, problems: _Problems) -> str | None:
    """``platform:environment``: one of the environments of environments.yaml."""
    declared = ", ".join(sorted(environments.entries))
    if raw is None:
        problems.add(
            "platform:environment",
            f"required: this stack's environment in {environments.source} ({declared})",
        )
        return None
    if not isinstance(raw, str) or raw not in environments.entries:
        problems.add(
            "platform:environment",
            f"must be an environment of {environments.source} ({declared}), got {str(raw)[:80]!r}",
        )
        return None
    return raw


def _project_id(
    raw: Any, environment: str | None, environments: Environments, problems: _Problems
) -> str | None:
    """``scaleway:projectId`` (the provider's default project) is the environment's own project."""
    if raw is None:
        problems.add("scaleway:projectId", "required (the Scaleway project UUID every identity is scoped to)")
        return None
    if not _UUID.fullmatch(str(raw)):
        problems.add("scaleway:projectId", f"must be a project UUID (got {str(raw)[:80]!r})")
        return None
    if environment is not None and raw != environments.entries[environment].project_id:
        problems.add(
            "scaleway:projectId",
            f"must be {environments.key(environment, 'projectId')} "
            f"({environments.entries[environment].project_id}): one project per environment",
        )
    return str(raw)


def _served_hostnames(
    environment: str,
    environments: Environments,
    *,
    apps: list[App],
    ingress: Ingress | None,
    gitops: GitOps | None,
    problems: _Problems,
) -> None:
    """Every hostname the stack serves is one environments.yaml gives its environment, so no two
    environments can claim the same name (the list checks that across environments)."""
    entry = environments.entries[environment]
    listed = set(entry.dns.hostnames) if entry.dns is not None else set()
    served: list[tuple[str, str]] = [
        (f"platform:apps[{i}].hostname", app.hostname) for i, app in enumerate(apps)
    ]
    if ingress is not None:
        served += [(f"platform:ingress.hostnames[{i}]", h) for i, h in enumerate(ingress.hostnames)]
        served += [
            (f"platform:ingress.platformHostnames[{i}]", h) for i, h in enumerate(ingress.platform_hostnames)
        ]
        served += [(f"platform:ingress.redirects.{h}", h) for h in ingress.redirects]
    if gitops is not None and gitops.argocd is not None and gitops.argocd.hostname is not None:
        served.append(("platform:gitops.argocd.hostname", gitops.argocd.hostname))
    for path, hostname in served:
        if not any(env_list.matches(pattern, hostname) for pattern in listed):
            problems.add(
                path,
                f"{hostname} is not one of {environments.key(environment, 'dns.hostnames')} "
                f"({', '.join(sorted(listed)) or 'none'}): list it there first",
            )


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _parse_model(model: Any, raw: Any, path: str, problems: _Problems, context: dict[str, Any]) -> Any:
    adapter = _ADAPTERS.get(model) or _ADAPTERS.setdefault(model, TypeAdapter(model))
    try:
        return adapter.validate_python(raw, context=context)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if err["type"] != "extra_forbidden":
                # A rule on an absent key (validate_default) reports the snake_case field name.
                loc = tuple(to_camel(p) if isinstance(p, str) and _SNAKE.fullmatch(p) else p for p in loc)
            problems.add(_join(path, loc), _describe(model, err))
        return None


_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")


def _join(path: str, loc: tuple[Any, ...]) -> str:
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(model: Any, err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        return f"unknown key (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    message = err["msg"]
    if kind == "string_pattern_mismatch":
        message = f"must match {err['ctx']['pattern']}"
    if "input" in err and not isinstance(err["input"], dict | list):
        message += f" (got {err['input']!r})"
    return message


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` through the model's fields to list the camelCase keys allowed there."""
    current: Any = _model_of(model)
    if current is None:
        return []
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(_snake(part))
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    return [to_camel(name) for name in current.model_fields]


def _model_of(annotation: Any) -> type[_Model] | None:
    if isinstance(annotation, type) and issubclass(annotation, _Model):
        return annotation
    if get_origin(annotation) is not None or hasattr(annotation, "__args__"):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


# --------------------------------------------------------------------------------------------
# Rules that relate several keys or depend on the role.
# --------------------------------------------------------------------------------------------


def _role_rules(role: str, present: Mapping[str, bool], problems: _Problems) -> None:
    required = {
        # The front door and GitOps are the platform's mission, not options, where apps or
        # Argo CD are served; development may run without either.
        "tooling": ("cluster", "registry", "gitops", "ingress"),
        "production": ("cluster", "database", "gitops", "ingress"),
        "development": (),
    }
    owners = {"database": ("production",), "registry": ("tooling",), "apps": ("production", "development")}
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


def _gitops_rules(
    role: str,
    gitops: GitOps,
    *,
    environment: str,
    environments: Environments,
    apps: list[App],
    secrets: Mapping[str, Any],
    problems: _Problems,
    apps_known: bool = True,
) -> None:
    if role == "tooling":
        _tooling_gitops_rules(gitops, secrets=secrets, problems=problems)
    else:
        if environments.entries[environment].managed_by is None:
            problems.add(
                environments.key(environment, "managedBy"),
                "required with platform:gitops: the tooling environment whose Argo CD registers this one",
            )
        _workload_gitops_rules(role, gitops, problems=problems)
        if apps_known and not apps and not gitops.namespaces:
            # An empty namespace list would register the cluster for every namespace.
            problems.add(
                "platform:gitops",
                "a registered environment needs platform:apps or platform:gitops.namespaces: "
                "Argo CD manages those namespaces only",
            )
    path = "platform:gitops"
    declared = {app.name for app in apps}
    for i, update in enumerate(gitops.image_updates if apps_known else ()):
        if update.app not in declared:
            problems.add(
                f"{path}.imageUpdates[{i}].app",
                f"app '{update.app}' is not declared in platform:apps "
                f"(declared: {', '.join(sorted(declared)) or 'none'})",
            )


def _tooling_gitops_rules(gitops: GitOps, *, secrets: Mapping[str, Any], problems: _Problems) -> None:
    path = "platform:gitops"
    # Only tooling holds Git credentials: Argo CD's read-only one and the image updater's write one.
    for key, what in (
        ("gitopsRepoCredential", "<read-only token|deploy key>"),
        ("gitopsWriteCredential", "<token|key>"),
    ):
        if key not in secrets:
            problems.add(
                f"platform:{key}", f"required with {path}: pulumi config set --secret platform:{key} {what}"
            )
    if gitops.repo_url is None:
        problems.add(f"{path}.repoUrl", "required for role tooling (the repository Argo CD reads)")
    if gitops.argocd is None:
        problems.add(f"{path}.argocd", "required for role tooling (Argo CD runs in the tooling cluster)")
    elif gitops.argocd.oidc is not None and "argocdOidcClientSecret" not in secrets:
        problems.add(
            "platform:argocdOidcClientSecret",
            f"required with {path}.argocd.oidc: "
            "pulumi config set --secret platform:argocdOidcClientSecret <secret>",
        )
    elif gitops.argocd.hostname is not None and gitops.argocd.oidc is None:
        problems.add(
            f"{path}.argocd.oidc",
            "required with argocd.hostname: a public Argo CD UI with the local admin account is refused; "
            "configure single sign-on, or remove hostname and reach the UI with kubectl port-forward",
        )
    branch = gitops.image_updater.write_back_branch
    if branch == gitops.target_revision or not branch.startswith(WRITE_BACK_PREFIX):
        problems.add(
            f"{path}.imageUpdater.writeBackBranch",
            f"must start with {WRITE_BACK_PREFIX} (the prefix the GitOps repository's pipeline checks, "
            f"README) and differ from targetRevision '{gitops.target_revision}': the image updater "
            "writes to its own branches and a merge request brings them in",
        )
    if gitops.target_revision == "HEAD" or gitops.target_revision.startswith("refs/"):
        problems.add(
            f"{path}.targetRevision",
            "must name the protected branch itself (e.g. main), not HEAD or a refs/ path",
        )
    if "image_updates" in gitops.model_fields_set:
        problems.add(
            f"{path}.imageUpdates", "not allowed for role tooling (list it in the environment's stack)"
        )


def _workload_gitops_rules(role: str, gitops: GitOps, *, problems: _Problems) -> None:
    path = "platform:gitops"
    # The hub owns Argo CD, the repository and the image updater; a workload stack only says which
    # namespaces and apps it offers, and how their images update.
    for key in ("argocd", "repo_url", "repo_username", "target_revision", "image_updater"):
        if key in gitops.model_fields_set:
            problems.add(f"{path}.{_camel(key)}", f"not allowed for role {role} (the tooling stack sets it)")


#: Every write-back branch starts with this (README, "The image updater's branches").
WRITE_BACK_PREFIX = "image-updater-"

#: Keys that moved to environments.yaml, with where they live now.
_MOVED: Mapping[str, str] = {
    "platform:role": "<environment>.role",
    "platform:addressPlan": "<environment>.subnet",
    "platform:gitops.toolingStack": "<environment>.managedBy (the tooling environment's stack is read)",
    "platform:gitops.environments": "<environment>.managedBy of each environment tooling registers",
    "platform:gitops.stacks": "<environment>.stack",
}


def _without_moved_keys(raw_platform: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    """``raw_platform`` without the keys that moved to environments.yaml, each reported."""
    raw = {k: v for k, v in raw_platform.items() if f"platform:{k}" not in _MOVED}
    gitops = raw_platform.get("gitops")
    if isinstance(gitops, dict):
        raw["gitops"] = {k: v for k, v in gitops.items() if f"platform:gitops.{k}" not in _MOVED}
    for key, now in _MOVED.items():
        head, _, sub = key.removeprefix("platform:").partition(".")
        if (sub and isinstance(gitops, dict) and sub in gitops) or (not sub and head in raw_platform):
            problems.add(key, f"moved to {env_list.FILE_NAME}: {now}")
    return raw


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _app_rules(
    apps: list[App],
    database: Database | None,
    problems: _Problems,
    *,
    databases_known: bool = True,
) -> None:
    databases = {d.name for d in database.databases} if database else set()
    names = [a.name for a in apps]
    hostnames = [a.hostname for a in apps]
    for i, app in enumerate(apps):
        path = f"platform:apps[{i}]"
        if names.index(app.name) != i:
            problems.add(f"{path}.name", f"duplicate app name '{app.name}'")
        if hostnames.index(app.hostname) != i:
            problems.add(
                f"{path}.hostname",
                f"duplicate hostname '{app.hostname}' (also used by {names[hostnames.index(app.hostname)]})",
            )
        if databases_known and app.database is not None and app.database not in databases:
            problems.add(
                f"{path}.database",
                f"database '{app.database}' is not declared in platform:database.databases "
                f"(declared: {', '.join(sorted(databases)) or 'none'})",
            )


def _operations_rules(
    operations: Operations,
    raw: Any,
    *,
    database: Database | None,
    present: Mapping[str, bool],
    secrets: Mapping[str, Any],
    problems: _Problems,
    role: str | None = None,
) -> None:
    """platform:operations: what the restore check and observability need from other keys."""
    path = "platform:operations"
    observability = operations.observability
    raw_check = raw.get("restoreCheck") if isinstance(raw, dict) else None
    if raw_check is not None:
        if not present["cluster"]:
            problems.add(f"{path}.restoreCheck", "requires platform:cluster (the CronJob runs in it)")
        if not present["database"]:
            problems.add(f"{path}.restoreCheck", "requires platform:database (the databases it dumps)")
        elif database is not None:
            # From the raw entries, so an invalid sibling (a bad maxAge) does not hide this problem.
            declared = {d.name for d in database.databases}
            entries = raw_check.get("databases") if isinstance(raw_check, dict) else None
            for i, entry in enumerate(entries if isinstance(entries, list) else []):
                name = entry.get("database") if isinstance(entry, dict) else None
                if isinstance(name, str) and name not in declared:
                    problems.add(
                        f"{path}.restoreCheck.databases[{i}].database",
                        f"database '{name}' is not declared in platform:database.databases "
                        f"(declared: {', '.join(sorted(declared)) or 'none'})",
                    )
    if role == "production":
        # Production's data and pager are not optional: a backup nobody restores is a hope, and an
        # alert with no contact point reaches nobody.
        if raw_check is None:
            problems.add(
                f"{path}.restoreCheck", "required for role production (the daily restore-tested backup)"
            )
        if observability is None:
            problems.add(f"{path}.observability", "required for role production (metrics, logs and alerts)")
        elif not observability.contact_points:
            problems.add(
                f"{path}.observability.contactPoints",
                "at least one contact point for role production: alerts must reach someone",
            )
    if observability is None:
        return
    opath = f"{path}.observability"
    if not present["cluster"]:
        problems.add(opath, "requires platform:cluster (the agent runs in it)")
    webhooks = [i for i, p in enumerate(observability.contact_points) if p.kind == "webhook"]
    for i in webhooks[1:]:
        problems.add(
            f"{opath}.contactPoints[{i}]",
            "only one webhook contact point (its URL is the one secret platform:alertWebhookUrl)",
        )
    if webhooks and observability.backend == "cockpit":
        problems.add(
            f"{opath}.contactPoints[{webhooks[0]}].kind",
            "webhook needs backend prometheus: Cockpit's alert manager takes only email contact points "
            "from the provider (observability.AlertManager contact_points[].email). Use backend "
            "prometheus (its Alertmanager posts to the webhook), or add the webhook by hand in "
            "Cockpit's Grafana and list only email contact points here",
        )
    elif webhooks and "alertWebhookUrl" not in secrets:
        problems.add(
            "platform:alertWebhookUrl",
            f"required with the webhook contact point {opath}.contactPoints[{webhooks[0]}]: "
            "pulumi config set --secret platform:alertWebhookUrl <url>",
        )
    if observability.backend == "prometheus" and not webhooks:
        problems.add(
            f"{opath}.contactPoints",
            "backend prometheus needs a webhook contact point: the in-cluster Alertmanager delivers "
            "through it (email contact points receive only what Cockpit evaluates, the database alerts)",
        )


def app_secrets_path(app: App, environment: str, backend: str) -> str:
    """An app's place in the vault: its ``secretsPath``, else ``/<environment>/<app>`` in Scaleway
    Secret Manager or the item ``<environment>-<app>`` in 1Password.

    The program's own entries for the app (database credentials) always go to Scaleway Secret
    Manager: with backend scaleway into the same folder, with onepassword into the default folder.
    """
    if backend == "scaleway":
        if app.secrets_path is not None and _SCALEWAY_PATH.fullmatch(app.secrets_path):
            return app.secrets_path
        return f"/{environment}/{app.name}"
    return app.secrets_path or f"{environment}-{app.name}"


def _secrets_rules(
    apps: list[App],
    vault: Secrets,
    *,
    environment: str | None,
    has_cluster: bool,
    present: bool,
    secrets: Mapping[str, Any],
    problems: _Problems,
) -> None:
    """platform:secrets and each app's secrets contract (paths, keys the platform reserves)."""
    if present and not has_cluster:
        problems.add("platform:secrets", "requires platform:cluster (External Secrets runs in it)")
    if vault.backend == "onepassword" and "onepasswordServiceAccountToken" not in secrets:
        problems.add(
            "platform:onepasswordServiceAccountToken",
            "required with platform:secrets.backend onepassword: "
            "pulumi config set --secret platform:onepasswordServiceAccountToken <token>",
        )
    locations: list[tuple[int, App, str]] = []
    for i, app in enumerate(apps):
        path = f"platform:apps[{i}]"
        if app.database is not None:
            reserved = [key for key in app.required_keys if key in DATABASE_KEYS]
            if reserved:
                problems.add(
                    f"{path}.requiredKeys",
                    f"{', '.join(reserved)} provided by the platform for the app's database "
                    "(remove them from requiredKeys)",
                )
        if app.secrets_path is not None:
            if vault.backend == "scaleway" and not _SCALEWAY_PATH.fullmatch(app.secrets_path):
                problems.add(
                    f"{path}.secretsPath",
                    f"must be a Scaleway Secret Manager folder such as /{environment or 'prod'}/{app.name} "
                    f"(got {app.secrets_path!r})",
                )
                continue
            if vault.backend == "onepassword" and not _ONEPASSWORD_ITEM.fullmatch(app.secrets_path):
                problems.add(
                    f"{path}.secretsPath",
                    "must be a 1Password item title (letters, digits, '_', '.', '-' and single spaces; "
                    f"no '/') (got {app.secrets_path!r})",
                )
                continue
        if environment is not None:
            locations.append((i, app, app_secrets_path(app, environment, vault.backend)))
    for i, app, where in locations:
        # A default location follows the name (a duplicate name is reported on its own): blame the
        # app whose explicit secretsPath collides with another app's location.
        others = [other.name for j, other, elsewhere in locations if elsewhere == where and j != i]
        if others and app.secrets_path is not None:
            problems.add(
                f"platform:apps[{i}].secretsPath",
                f"{where} is also app '{others[0]}''s location: each app reads only its own keys",
            )


def _front_door_rules(
    raw: Mapping[str, Any],
    *,
    ingress: Ingress | None,
    tls: Tls | None,
    dns: Dns | None,
    apps: list[App],
    gitops: GitOps | None,
    problems: _Problems,
) -> None:
    """platform:ingress / tls / dns: what they need from each other and from apps and gitops."""
    present = {k: raw.get(k) is not None for k in ("ingress", "tls", "dns", "cluster")}
    if present["ingress"] and not present["cluster"]:
        problems.add("platform:ingress", "requires platform:cluster (Traefik and the Gateway run in it)")
    if present["ingress"] and not present["tls"]:
        problems.add(
            "platform:tls",
            "required with platform:ingress (the Gateway's HTTPS listeners need certificates), "
            "e.g. {acmeEmail: platform@example.com}",
        )
    for key in ("tls", "dns"):
        if present[key] and not present["ingress"]:
            problems.add(
                f"platform:{key}", "only allowed with platform:ingress (the front door it configures)"
            )
    if ingress is None:
        return
    domain = ingress.domain
    path = "platform:ingress"
    for i, app in enumerate(apps):
        if not within_domain(app.hostname, domain):
            problems.add(f"platform:apps[{i}].hostname", f"{app.hostname} is outside {path}.domain {domain}")
        elif app.hostname in ingress.platform_hostnames:
            problems.add(
                f"platform:apps[{i}].hostname",
                f"{app.hostname} is listed in {path}.platformHostnames: app namespaces cannot serve it",
            )
    argocd = gitops.argocd.hostname if gitops is not None and gitops.argocd is not None else None
    if argocd is not None:
        if not within_domain(argocd, domain):
            problems.add("platform:gitops.argocd.hostname", f"{argocd} is outside {path}.domain {domain}")
        elif argocd in ingress.hostnames or argocd in {a.hostname for a in apps}:
            problems.add(
                "platform:gitops.argocd.hostname",
                f"{argocd} is also an app hostname: only the platform's namespaces may serve Argo CD",
            )
    every = [*ingress.hostnames, *ingress.platform_hostnames, *ingress.redirects]
    for i, app in enumerate(apps):
        if app.hostname in ingress.redirects:
            problems.add(
                f"platform:apps[{i}].hostname", f"{app.hostname} is in {path}.redirects: it only redirects"
            )
    if argocd is not None and argocd in ingress.redirects:
        problems.add("platform:gitops.argocd.hostname", f"{argocd} is in {path}.redirects: it only redirects")
    wildcards = [h for h in every if h.startswith("*.")]
    if wildcards and (tls is None or not tls.dns01):
        problems.add(
            f"{path}.hostnames",
            f"wildcard hostnames ({', '.join(wildcards)}) can only be certified through DNS-01: "
            "set platform:tls.dns01: true (with platform:dns provider scaleway)",
        )
    if tls is not None and tls.dns01 and (dns is None or not dns.managed):
        problems.add(
            "platform:tls.dns01",
            "needs the zone in Scaleway DNS: set platform:dns: {provider: scaleway} (the webhook writes "
            "the challenge TXT records there)",
        )
    if dns is not None and dns.managed:
        zone = dns.zone or domain
        extra = sorted(a.hostname for a in apps) + ([argocd] if argocd else [])
        outside = [h for h in dict.fromkeys([*every, *extra]) if not within_domain(h, zone)]
        if outside:
            problems.add("platform:dns.zone", f"{', '.join(outside)} lie outside the DNS zone {zone}")

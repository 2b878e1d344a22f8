"""Stack configuration: the only module that reads ``pulumi.Config``.

Stack YAML -> :func:`load` -> frozen, validated :class:`PlatformConfig` -> ``stacks.build``.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors (a typo must not be
silently ignored). Every problem is collected and reported at once, each with its key path and
what is allowed, before a single resource is registered.

Address plan: every stack file declares the same ``platform:addressPlan`` (environment name ->
private subnet). A stack's own subnet is the entry for its ``platform:environment``; declaring the
whole plan in each file is what lets a single stack prove its subnet overlaps no other
environment's. ``tests/test_stack_files.py`` checks that the committed files agree on the plan.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

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

_MINOR_VERSION = re.compile(r"^1\.\d{2}$")
_PATCH_VERSION = re.compile(r"^1\.\d{2}\.\d+$")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. ``pulumi.RunError`` makes the engine print only the message."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"stack '{stack}': {len(problems)} configuration problem(s), nothing was created:\n{lines}"
        )


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


class AllowedRange(_Model):
    cidr: ipaddress.IPv4Network
    description: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, value: Any) -> Any:
        # "10.0.0.1/24" has host bits set: almost always a typo for a host or a network.
        return ipaddress.IPv4Network(value, strict=True) if isinstance(value, str) else value

    @field_validator("cidr")
    @classmethod
    def _not_the_world(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen == 0:
            raise ValueError(
                "0.0.0.0/0 opens the Kubernetes API to the world; list admin and CI ranges instead"
            )
        return value


class UpgradePolicy(_Model):
    max_surge: int = Field(default=1, ge=0, le=10)
    max_unavailable: int = Field(default=0, ge=0, le=10)


def _zone_of_region(zone: str | None, info: ValidationInfo) -> str | None:
    region = _context(info).get("region")
    if zone is not None and region is not None and not re.fullmatch(rf"{region}-[1-3]", zone):
        raise ValueError(f"must be a zone of region {region} ({region}-1..3), got {zone!r}")
    return zone


class Pool(_Model):
    # Field order matters: each size check sees the fields declared before it.
    name: DnsLabel
    node_type: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]+$")]
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
        if not ranges and _context(info).get("role") == "production":
            raise ValueError(
                "required for role production: without an ACL the Kubernetes API is open to the world"
            )
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


class AppDatabase(_Model):
    name: PgIdentifier
    user: PgIdentifier


class Database(_Model):
    engine: Annotated[str, StringConstraints(pattern=r"^PostgreSQL-1[4-9]$")] = "PostgreSQL-16"
    node_type: Annotated[str, StringConstraints(pattern=r"^(?i:db)-[A-Z0-9-]+$")]
    ha_cluster: bool = True
    zone: str | None = None
    volume_type: Literal["sbs_5k", "sbs_15k", "lssd", "bssd"] = "sbs_15k"
    volume_size_gb: int = Field(default=20, ge=5, le=10000)
    encryption_at_rest: bool = True
    backups: Backups = Field(default_factory=Backups, validate_default=True)
    #: Declared so that asking for one gives a clear refusal instead of "unknown key".
    public_endpoint: bool = False
    databases: list[AppDatabase] = Field(default_factory=list)

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


def _no_duplicates(what: str, values: list[str]) -> None:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, duplicates))}")


class Network(_Model):
    public_gateway_type: Literal["VPC-GW-S", "VPC-GW-M", "VPC-GW-L", "VPC-GW-XL"] = "VPC-GW-S"


class Registry(_Model):
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{2,52}[a-z0-9])$")]


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
        return DEFAULT_ZONE[self.region]

    @property
    def tags(self) -> list[str]:
        return [f"platform={self.project}", f"environment={self.environment}", f"role={self.role}"]


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------

#: The ``platform:`` keys and the model each must parse into (None: a plain value checked below).
_PLATFORM_KEYS: dict[str, type[_Model] | None] = {
    "role": None,
    "environment": None,
    "addressPlan": None,
    "network": Network,
    "cluster": Cluster,
    "database": Database,
    "registry": Registry,
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
) -> PlatformConfig:
    """Validate raw config values (strings or parsed structures) into a :class:`PlatformConfig`.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems = _Problems([])

    for key in sorted(set(raw_platform) - set(_PLATFORM_KEYS)):
        problems.add(f"platform:{key}", f"unknown key (allowed: {', '.join(_PLATFORM_KEYS)})")

    role = _plain_choice(raw_platform.get("role"), "platform:role", _ROLES, problems)
    environment = raw_platform.get("environment")
    if environment is None:
        problems.add("platform:environment", "required (a DNS label naming this environment, e.g. prod)")
    elif not isinstance(environment, str) or not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", environment):
        problems.add(
            "platform:environment",
            f"must be a lowercase DNS label of at most 20 characters (got {environment!r})",
        )
        environment = None

    region = _plain_choice(raw_scaleway.get("region"), "scaleway:region", _REGIONS, problems)
    zone = raw_scaleway.get("zone")
    if region is not None:
        zone = zone or DEFAULT_ZONE[region]
        if not re.fullmatch(rf"{region}-[1-3]", str(zone)):
            problems.add("scaleway:zone", f"must be a zone of region {region} ({region}-1..3), got {zone!r}")
    project_id = raw_scaleway.get("projectId")
    if project_id is None:
        problems.add("scaleway:projectId", "required (the Scaleway project UUID every identity is scoped to)")
    elif not _UUID.fullmatch(str(project_id)):
        problems.add("scaleway:projectId", f"must be a project UUID (got {project_id!r})")

    address_plan = _address_plan(raw_platform.get("addressPlan"), problems)

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

    if environment is not None and address_plan is not None and environment not in address_plan:
        problems.add(
            "platform:addressPlan",
            f"has no subnet for this stack's environment '{environment}' "
            f"(declared: {', '.join(sorted(address_plan)) or 'none'})",
        )

    # Only check presence when the key itself was absent; a present but invalid key already
    # produced its own message above.
    presence = {k: raw_platform.get(k) is not None for k in ("cluster", "database", "registry")}
    if role is not None:
        _role_rules(role, presence, problems)

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
    )


def from_pulumi() -> PlatformConfig:
    """Read the running stack's configuration. The program's single entry into ``pulumi.Config``."""
    platform = pulumi.Config("platform")
    scaleway = pulumi.Config("scaleway")
    raw_platform = {key: _structured(platform.get(key)) for key in _present_keys("platform")}
    raw_scaleway = {key: scaleway.get(key) for key in ("region", "zone", "projectId")}
    return load(
        raw_platform,
        {k: v for k, v in raw_scaleway.items() if v is not None},
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
    )


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


def _address_plan(raw: Any, problems: _Problems) -> dict[str, ipaddress.IPv4Network] | None:
    path = "platform:addressPlan"
    if raw is None:
        problems.add(path, "required (environment name -> private IPv4 subnet, the same in every stack)")
        return None
    if not isinstance(raw, dict) or not raw:
        problems.add(path, f"must be a non-empty map of environment name -> subnet (got {raw!r})")
        return None
    plan: dict[str, ipaddress.IPv4Network] = {}
    for env, cidr in raw.items():
        try:
            net = ipaddress.IPv4Network(str(cidr), strict=True)
        except ValueError as exc:
            problems.add(f"{path}.{env}", f"must be an IPv4 network in CIDR notation ({exc})")
            continue
        if not net.is_private:
            problems.add(f"{path}.{env}", f"must be a private (RFC 1918) range, got {net}")
        elif not 16 <= net.prefixlen <= 28:
            problems.add(f"{path}.{env}", f"prefix length must be between /16 and /28, got /{net.prefixlen}")
        plan[str(env)] = net
    names = sorted(plan)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if plan[a].overlaps(plan[b]):
                problems.add(
                    f"{path}.{b}",
                    f"{plan[b]} overlaps {a}'s {plan[a]}; environments must not share addresses",
                )
    return plan


def _parse_model(
    model: type[_Model], raw: Any, path: str, problems: _Problems, context: dict[str, Any]
) -> Any:
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            problems.add(_join(path, loc), _describe(model, err))
        return None


def _join(path: str, loc: tuple[Any, ...]) -> str:
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(model: type[_Model], err: Any) -> str:
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


def _allowed_keys(model: type[_Model], loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` through the model's fields to list the camelCase keys allowed there."""
    current: Any = model
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
    required = {"tooling": ("cluster", "registry"), "production": ("cluster", "database"), "development": ()}
    forbidden = {
        "tooling": ("database",),
        "production": ("registry",),
        "development": ("database", "registry"),
    }
    for key in required[role]:
        if not present[key]:
            problems.add(f"platform:{key}", f"required for role {role}")
    for key in forbidden[role]:
        if present[key]:
            problems.add(f"platform:{key}", f"not allowed for role {role} (only: {_owner_roles(key)})")


def _owner_roles(key: str) -> str:
    return {"database": "production", "registry": "tooling"}[key]

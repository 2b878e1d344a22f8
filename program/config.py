"""Stack configuration: the only module that reads ``pulumi.Config``.

Stack YAML -> :func:`load` -> a frozen, role-typed :data:`~program.model.PlatformConfig` ->
``program.stacks.build``.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors (a typo must not be
silently ignored). Each ``platform:`` key parses into its component's settings model (in
``scw_platform``); then the program's rules (:mod:`program.rules`) relate the keys and apply each
role's policy. Every problem is collected and reported at once, each with its key path and what is
allowed, before a single resource is registered.

Environments: ``environments.yaml`` (program.environments) lists every environment with its
role, subnet, Scaleway project, stack, DNS zone and hostnames. A stack file names its own with
``platform:environment``; its role, subnet and references to other stacks come from that list,
whose rules between environments every stack's plan checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

import pulumi
from pulumi.runtime.config import is_config_secret
from pydantic import TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from program import environments as env_list
from program import policy, rules
from program.environments import Environments, Role
from program.model import (
    PLATFORM_KEYS,
    SECRET_KEYS,
    Delivery,
    DevelopmentConfig,
    FrontDoorConfig,
    Operations,
    PlatformConfig,
    ProductionConfig,
    ToolingConfig,
)
from program.rules import Problems
from scw_platform.backup import digest_problem
from scw_platform.contract import ProblemsError
from scw_platform.gitops import OIDC_VAULT_KEY, GitOpsSettings
from scw_platform.network import NetworkSettings
from scw_platform.secrets import VaultSettings
from scw_platform.settings import DEFAULT_ZONE, ZONES, Region, Settings

_REGIONS: tuple[str, ...] = get_args(Region)
_T = TypeVar("_T")

#: Keys the program no longer reads, and what to do instead. Refused rather than ignored: a value
#: left in the stack would look like it still mattered.
RETIRED_KEYS: Mapping[str, str] = {
    # Issue 18: as a deploy-time secret it had to enter Argo CD's Helm values, which made all of
    # them one secret output that no offline check could read.
    "argocdOidcClientSecret": (
        "no longer read: Argo CD's OIDC client secret now comes from the vault. Write it to the "
        f"tooling project's Scaleway Secret Manager as {OIDC_VAULT_KEY} (docs/gitops.md, "
        "'Single sign-on'), then remove this key: pulumi config rm platform:argocdOidcClientSecret"
    ),
}


class ConfigError(ProblemsError):
    """Invalid stack configuration."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        super().__init__(f"stack '{stack}': {len(problems)} configuration problem(s)", problems)


@dataclass(frozen=True)
class _Where:
    """The stack's place: its environment (and so its role), region, zone and project."""

    environment: str | None
    role: Role | None
    region: Region | None
    zone: str | None
    project_id: str | None


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
    """Validate raw config values (strings or parsed structures) into a role-typed config.
    ``environments`` is the list of environments (the committed environments.yaml by default);
    ``running_stack`` (the program's stack) must be the environment's own.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems = Problems([])
    environments = environments or env_list.load_file()
    raw = rules.without_moved_keys(raw_platform, problems)
    secrets = dict(secrets or {})
    _unknown_keys(raw, problems)
    where = _where(raw, raw_scaleway, environments, running_stack, problems)
    parsed: dict[str, Any] = {
        key: _parse_model(model, raw[key], f"platform:{key}", problems, {"region": where.region})
        for key, model in policy.models_for(where.role).items()
        if model is not None and raw.get(key) is not None
    }
    _check(raw, parsed, where, environments=environments, secrets=secrets, problems=problems)
    if problems.items:
        raise ConfigError(stack, problems.items)
    return _typed(parsed, where, stack=stack, project=project, secrets=secrets, environments=environments)


def _unknown_keys(raw: Mapping[str, Any], problems: Problems) -> None:
    allowed = [*PLATFORM_KEYS, *SECRET_KEYS]
    for key in sorted(set(raw) - set(PLATFORM_KEYS)):
        if key in RETIRED_KEYS:
            problems.add(f"platform:{key}", RETIRED_KEYS[key])
        elif key in SECRET_KEYS:
            problems.add(
                f"platform:{key}", f"must be set as a secret: pulumi config set --secret platform:{key}"
            )
        else:
            problems.add(f"platform:{key}", f"unknown key (allowed: {', '.join(allowed)})")


def _where(
    raw: Mapping[str, Any],
    raw_scaleway: Mapping[str, Any],
    environments: Environments,
    running_stack: str | None,
    problems: Problems,
) -> _Where:
    environment = rules.environment(raw.get("environment"), environments, problems)
    if environment is not None and running_stack is not None:
        own = environments.entries[environment].stack
        if not env_list.same_stack(own, running_stack):
            problems.add(
                "platform:environment",
                f"'{environment}' is stack {own} ({environments.key(environment, 'stack')}), not this "
                f"stack '{running_stack}': a copied stack file names its own environment",
            )
            environment = None
    region = rules.plain_choice(raw_scaleway.get("region"), "scaleway:region", _REGIONS, problems)
    zone = raw_scaleway.get("zone")
    if region is not None:
        zone = zone or DEFAULT_ZONE[region]
        if zone not in ZONES[region]:
            allowed = ", ".join(ZONES[region])
            problems.add("scaleway:zone", f"must be a zone of region {region} ({allowed}), got {zone!r}")
    return _Where(
        environment=environment,
        role=environments.entries[environment].role if environment is not None else None,
        region=region,
        zone=str(zone) if zone is not None else None,
        project_id=rules.project_id(raw_scaleway.get("projectId"), environment, environments, problems),
    )


def _check(
    raw: Mapping[str, Any],
    parsed: Mapping[str, Any],
    where: _Where,
    *,
    environments: Environments,
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    """Every rule of :mod:`program.rules` over the parsed keys. A key that is present but invalid
    has its own messages already: rules that need it skip it rather than blame its users too."""
    if where.role is not None and where.environment is not None:
        _role_checks(
            raw,
            parsed,
            role=where.role,
            environment=where.environment,
            environments=environments,
            secrets=secrets,
            problems=problems,
        )
    _key_checks(raw, parsed, where, secrets=secrets, problems=problems)


def _role_checks(
    raw: Mapping[str, Any],
    parsed: Mapping[str, Any],
    *,
    role: Role,
    environment: str,
    environments: Environments,
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    """The rules that need the stack's environment and role."""
    present = {key: raw.get(key) is not None for key in PLATFORM_KEYS}
    apps = parsed.get("apps") or []
    policy.role_rules(role, present, problems)
    rules.environment_rules(environment, environments, parsed, problems)
    if parsed.get("gitops") is not None:
        rules.gitops_rules(
            role,
            parsed["gitops"],
            environment=environment,
            environments=environments,
            apps=apps,
            secrets=secrets,
            problems=problems,
            apps_known=parsed.get("apps") is not None or not present["apps"],
        )


def _key_checks(
    raw: Mapping[str, Any],
    parsed: Mapping[str, Any],
    where: _Where,
    *,
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    """The rules between keys, which apply whatever the role."""
    present = {key: raw.get(key) is not None for key in PLATFORM_KEYS}
    apps = parsed.get("apps") or []
    role, environment = where.role, where.environment
    rules.app_rules(
        apps,
        parsed.get("database"),
        problems,
        databases_known=parsed.get("database") is not None or not present["database"],
    )
    if not present["secrets"] or parsed.get("secrets") is not None:
        rules.secrets_rules(
            apps,
            parsed.get("secrets") or VaultSettings(),
            environment=environment,
            has_cluster=present["cluster"],
            present=present["secrets"],
            secrets=secrets,
            problems=problems,
        )
    rules.front_door_rules(
        raw,
        ingress=parsed.get("ingress"),
        tls=parsed.get("tls"),
        dns=parsed.get("dns"),
        apps=apps,
        gitops=parsed.get("gitops"),
        problems=problems,
    )
    # An invalid platform:operations is reported as such, not also as a missing observability.
    if parsed.get("operations") is not None or not present["operations"]:
        rules.delivery_rules(apps, (parsed.get("operations") or Operations()).observability, problems)
    rules.operations_rules(
        parsed.get("operations") or Operations(),
        raw.get("operations"),
        database=parsed.get("database"),
        # A key the role itself requires is already reported missing; do not report it twice.
        present={
            k: present[k] or (role == "production" or (role == "tooling" and k == "cluster"))
            for k in ("cluster", "database")
        },
        secrets=secrets,
        problems=problems,
    )
    if role == "production":
        operations = parsed.get("operations") or Operations()
        policy.production_rules(raw.get("operations"), operations.observability, problems)
        _production_job_images(operations, problems)
    elif role is not None:
        policy.production_only_operations(role, raw.get("operations"), problems)
    if parsed.get("ci") is not None:
        rules.ci_rules(parsed["ci"], parsed.get("cluster"), secrets=secrets, problems=problems)


def _production_job_images(operations: Operations, problems: Problems) -> None:
    """Production's restore check and backup drill run their image by digest: they hold every
    database's read-only password and a key that manages the project's databases, and a tag is
    whatever the last push to the registry (the CI push key can write every tag) made it.
    (A production refinement; it belongs with program.policy's once that module takes it.)"""
    jobs = (("restoreCheck", operations.restore_check), ("backupDrill", operations.backup_drill))
    for key, settings in jobs:
        if settings is not None and (problem := digest_problem(settings.image)) is not None:
            problems.add(
                f"platform:operations.{key}.image", f"must be pinned by digest for role production: {problem}"
            )


def _proven(value: _T | None, key: str) -> _T:
    """A value the rules have proved present (a ``None`` here is a bug in the rules, not input)."""
    if value is None:
        raise RuntimeError(f"{key} passed the rules unset: program.rules misses a rule")
    return value


def _typed(
    parsed: Mapping[str, Any],
    where: _Where,
    *,
    stack: str,
    project: str,
    secrets: Mapping[str, pulumi.Input[str]],
    environments: Environments,
) -> PlatformConfig:
    """The role's config class, from keys the rules have proved consistent."""
    environment = _proven(where.environment, "platform:environment")
    operations: Operations = parsed.get("operations") or Operations()
    common: dict[str, Any] = {
        "stack": stack,
        "project": project,
        "environment": environment,
        "region": _proven(where.region, "scaleway:region"),
        "zone": _proven(where.zone, "scaleway:zone"),
        "project_id": _proven(where.project_id, "scaleway:projectId"),
        "address_plan": environments.subnets(),
        "network": parsed.get("network") or NetworkSettings(),
        "vault": parsed.get("secrets") or VaultSettings(),
        "secrets": secrets,
        "environments": environments,
        "budget": parsed.get("budget"),
    }
    front_door = (
        FrontDoorConfig(ingress=parsed["ingress"], tls=parsed["tls"], dns=parsed.get("dns"))
        if parsed.get("ingress") is not None
        else None
    )
    role = _proven(where.role, "platform:environment")
    if role == "tooling":
        return _tooling_config(parsed, common, front_door=front_door, operations=operations)
    gitops: GitOpsSettings | None = parsed.get("gitops")
    delivery = (
        Delivery(
            gitops=gitops,
            tooling_stack=_proven(environments.tooling_stack_of(environment), "managedBy"),
            apps=tuple(parsed.get("apps") or ()),
        )
        if gitops is not None
        else None
    )
    if role == "production":
        return _production_config(
            parsed, common, delivery=delivery, front_door=front_door, operations=operations
        )
    return DevelopmentConfig(
        **common,
        cluster=parsed.get("cluster"),
        database=parsed.get("database"),
        delivery=delivery,
        front_door=front_door,
        observability=operations.observability,
    )


def _production_config(
    parsed: Mapping[str, Any],
    common: Mapping[str, Any],
    *,
    delivery: Delivery | None,
    front_door: FrontDoorConfig | None,
    operations: Operations,
) -> ProductionConfig:
    return ProductionConfig(
        **common,
        cluster=parsed["cluster"],
        database=parsed["database"],
        delivery=_proven(delivery, "platform:gitops"),
        front_door=_proven(front_door, "platform:ingress"),
        restore_check=_proven(operations.restore_check, "platform:operations.restoreCheck"),
        observability=_proven(operations.observability, "platform:operations.observability"),
        backup_drill=operations.backup_drill,
    )


def _tooling_config(
    parsed: Mapping[str, Any],
    common: Mapping[str, Any],
    *,
    front_door: FrontDoorConfig | None,
    operations: Operations,
) -> ToolingConfig:
    hub = _proven(parsed.get("gitops"), "platform:gitops")
    return ToolingConfig(
        **common,
        cluster=parsed["cluster"],
        registry=parsed["registry"],
        gitops=hub,
        argocd=_proven(hub.argocd, "platform:gitops.argocd"),
        repo_url=_proven(hub.repo_url, "platform:gitops.repoUrl"),
        front_door=_proven(front_door, "platform:ingress"),
        observability=operations.observability,
        ci=parsed.get("ci"),
    )


def from_pulumi(environments: Environments | None = None) -> PlatformConfig:
    """Read the running stack's configuration. The program's single entry into ``pulumi.Config``."""
    platform = pulumi.Config("platform")
    scaleway = pulumi.Config("scaleway")
    present = _present_keys("platform")
    # A deploy-time secret set without --secret is handed to load() as a plain value, which
    # reports it; only values the engine holds as secrets become secrets here.
    secret_keys = {key for key in present if key in SECRET_KEYS and is_config_secret(f"platform:{key}")}
    # A retired key is reported by load(); its value (maybe a secret) is never read.
    raw_platform = {
        key: True if key in RETIRED_KEYS else _structured(platform.get(key))
        for key in present
        if key not in secret_keys
    }
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


# --- Parsing: pydantic errors become "key path: what is allowed" lines ------------------------


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _parse_model(model: Any, raw: Any, path: str, problems: Problems, context: dict[str, Any]) -> Any:
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
    if kind in ("model_type", "dict_type"):
        # pydantic names the model class here ("... or instance of ProductionDatabase"): the
        # program's class names are no business of a stack file.
        message = "must be a map of keys"
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


def _model_of(annotation: Any) -> type[Settings] | None:
    if isinstance(annotation, type) and issubclass(annotation, Settings):
        return annotation
    if get_origin(annotation) is not None or hasattr(annotation, "__args__"):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()

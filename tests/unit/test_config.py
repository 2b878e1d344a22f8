"""Stack configuration: every invalid stack file is refused with one readable error that names
each offending key path and what is allowed there, and nothing is created.

Most cases call ``program.config.load`` directly on a mutated committed stack file (fast); the
rules between environments (subnets, roles, names) are cases of ``program.environments.parse``
on a changed copy of the committed environments.yaml; the last group runs the whole program through
``offline.runner`` to prove an invalid stack, or an invalid environments.yaml, registers no resource
at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pydantic
import pytest
import yaml

from offline import runner
from program import environments as env_list
from program import model
from program.config import ConfigError
from program.environments import EnvironmentsError
from tests.harness import EnvironmentChanges, Mutation, StackConfig, environments_document, new_problems
from tests.harness import load_config as load_raw


def problems_of(stack: str, raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_raw(stack, raw)
    return caught.value.problems


# -- small mutation builders, so each case reads as one line ------------------------------------


def _walk(raw: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = raw
    for part in path:
        node = node[part]
    return node


def put(*path: Any, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        _walk(raw, path[:-1])[path[-1]] = value

    return mutate


def drop(*path: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        _walk(raw, path[:-1]).pop(path[-1], None)

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        for m in mutations:
            m(raw)

    return mutate


def apps_without_databases(raw: dict[str, Any]) -> None:
    for app in raw.get("platform:apps") or []:
        app.pop("database", None)
        # Migrations run as the database's migrator: no database, nothing to migrate.
        app.pop("migrate", None)


def only_first_pool(raw: dict[str, Any]) -> None:
    del raw["platform:cluster"]["pools"][1:]


CLUSTER, DATABASE, PLAN = "platform:cluster", "platform:database", "platform:addressPlan"
POOL0 = (CLUSTER, "pools", 0)

#: The committed environments.yaml: the values a stack file held before they moved there.
COMMITTED = env_list.load_file()
#: How a message lists the environments of environments.yaml.
DECLARED = ", ".join(sorted(COMMITTED.entries))
MOVED = "moved to environments.yaml: "


# (id, stack file, mutation, offending key path, what the message must say is allowed)
INVALID: list[tuple[str, str, Mutation, str, str]] = [
    # typos: the unknown key is named and the allowed keys are listed
    (
        "typo-top-level",
        "prod",
        put("platform:databse", value={"nodeType": "DB-DEV-S"}),
        "platform:databse",
        "unknown key (allowed: environment, network, cluster, database, registry",
    ),
    (
        "typo-in-pool",
        "prod",
        put(*POOL0, "minSise", value=1),
        "platform:cluster.pools[0].minSise",
        "unknown key (allowed: name, nodeType, maxSize, size, minSize,",
    ),
    (
        "typo-in-auto-upgrade",
        "tooling",
        put(CLUSTER, "autoUpgrade", "maintenanceWindowHour", value=3),
        "platform:cluster.autoUpgrade.maintenanceWindowHour",
        "allowed: enabled, maintenanceWindowDay, maintenanceWindowStartHour",
    ),
    (
        "typo-in-backups",
        "prod",
        put(DATABASE, "backups", "retention", value=14),
        "platform:database.backups.retention",
        "allowed: enabled, frequencyHours, retentionDays, sameRegion",
    ),
    # wrong types
    (
        "size-not-a-number",
        "prod",
        put(*POOL0, "size", value="three"),
        "platform:cluster.pools[0].size",
        "valid integer",
    ),
    (
        "version-unquoted-yaml-float",
        "prod",
        put(CLUSTER, "version", value=1.34),
        "platform:cluster.version",
        "valid string",
    ),
    (
        "ha-not-a-boolean",
        "prod",
        put(DATABASE, "haCluster", value="maybe"),
        "platform:database.haCluster",
        "valid boolean",
    ),
    (
        "pools-not-a-list",
        "tooling",
        put(CLUSTER, "pools", value={"name": "system"}),
        "platform:cluster.pools",
        "valid list",
    ),
    # keys that moved to environments.yaml: an old stack file is refused, naming the new home
    (
        "address-plan-in-the-stack-file",
        "prod",
        put(PLAN, value={name: str(net) for name, net in COMMITTED.subnets().items()}),
        "platform:addressPlan",
        f"{MOVED}<environment>.subnet",
    ),
    (
        "role-in-the-stack-file",
        "prod",
        put("platform:role", value=COMMITTED.entries["prod"].role),
        "platform:role",
        f"{MOVED}<environment>.role",
    ),
    (
        "tooling-stack-in-the-stack-file",
        "prod",
        put("platform:gitops", "toolingStack", value=COMMITTED.entries["tooling"].stack),
        "platform:gitops.toolingStack",
        f"{MOVED}<environment>.managedBy (the tooling environment's stack is read)",
    ),
    (
        "registered-environments-in-the-stack-file",
        "tooling",
        put("platform:gitops", "environments", value=["tooling", *COMMITTED.registered_by("tooling")]),
        "platform:gitops.environments",
        f"{MOVED}<environment>.managedBy of each environment tooling registers",
    ),
    (
        "registered-stacks-in-the-stack-file",
        "tooling",
        put(
            "platform:gitops",
            "stacks",
            value={env: COMMITTED.entries[env].stack for env in COMMITTED.registered_by("tooling")},
        ),
        "platform:gitops.stacks",
        f"{MOVED}<environment>.stack",
    ),
    # the stack's environment is one of environments.yaml, with its own Scaleway project
    (
        "environment-not-in-environments-yaml",
        "prod",
        put("platform:environment", value="no-such-env"),
        "platform:environment",
        f"must be an environment of environments.yaml ({DECLARED}), got 'no-such-env'",
    ),
    (
        "environment-missing",
        "prod",
        drop("platform:environment"),
        "platform:environment",
        f"required: this stack's environment in environments.yaml ({DECLARED})",
    ),
    (
        "project-of-another-environment",
        "prod",
        put("scaleway:projectId", value=COMMITTED.entries["tooling"].project_id),
        "scaleway:projectId",
        f"must be environments.yaml: prod.projectId ({COMMITTED.entries['prod'].project_id}): "
        "one project per environment",
    ),
    # pool sizes
    (
        "min-above-max",
        "prod",
        put(*POOL0, "minSize", value=10),
        "platform:cluster.pools[0].minSize",
        "must be <= maxSize (10 > 5)",
    ),
    (
        "size-above-max",
        "prod",
        put(*POOL0, "size", value=12),
        "platform:cluster.pools[0].size",
        "must be <= maxSize (12 > 5)",
    ),
    (
        "size-below-min",
        "prod",
        put(*POOL0, "size", value=1),
        "platform:cluster.pools[0].minSize",
        "must be <= size (2 > 1)",
    ),
    (
        "max-size-out-of-bounds",
        "prod",
        put(*POOL0, "maxSize", value=151),
        "platform:cluster.pools[0].maxSize",
        "less than or equal to 150",
    ),
    (
        "duplicate-pool-names",
        "tooling",
        put(CLUSTER, "pools", 1, "name", value="system"),
        "platform:cluster.pools",
        "duplicate pool name 'system'",
    ),
    # Kubernetes version and maintenance window
    (
        "patch-version-with-auto-upgrade",
        "prod",
        put(CLUSTER, "version", value="1.34.1"),
        "platform:cluster.version",
        "must be a minor version like 1.34 when autoUpgrade.enabled is true",
    ),
    (
        "minor-version-without-auto-upgrade",
        "prod",
        put(CLUSTER, "autoUpgrade", "enabled", value=False),
        "platform:cluster.version",
        "must be a full version like 1.34.2 when autoUpgrade.enabled is false",
    ),
    (
        "maintenance-hour-24",
        "prod",
        put(CLUSTER, "autoUpgrade", "maintenanceWindowStartHour", value=24),
        "platform:cluster.autoUpgrade.maintenanceWindowStartHour",
        "less than or equal to 23",
    ),
    (
        "bad-weekday",
        "prod",
        put(CLUSTER, "autoUpgrade", "maintenanceWindowDay", value="funday"),
        "platform:cluster.autoUpgrade.maintenanceWindowDay",
        "'any', 'monday', 'tuesday'",
    ),
    # the database
    (
        "database-zone-not-default",
        "prod",
        put(DATABASE, "zone", value="fr-par-2"),
        "platform:database.zone",
        "must be fr-par-1, region fr-par's default zone",
    ),
    (
        "database-public-endpoint",
        "prod",
        put(DATABASE, "publicEndpoint", value=True),
        "platform:database.publicEndpoint",
        "must be false: the database is reachable only over the private network",
    ),
    (
        "lssd-with-encryption",
        "prod",
        put(DATABASE, "volumeType", value="lssd"),
        "platform:database.encryptionAtRest",
        "lssd volumes cannot be encrypted at rest; use volumeType sbs_5k or sbs_15k",
    ),
    # production rules
    (
        "production-without-ha",
        "prod",
        put(DATABASE, "haCluster", value=False),
        "platform:database.haCluster",
        "must be true for role production",
    ),
    (
        "production-retention-below-7",
        "prod",
        put(DATABASE, "backups", "retentionDays", value=6),
        "platform:database.backups.retentionDays",
        "must be >= 7 for role production (got 6)",
    ),
    (
        "production-backups-disabled",
        "prod",
        put(DATABASE, "backups", "enabled", value=False),
        "platform:database.backups.enabled",
        "must be true for role production",
    ),
    (
        "production-unencrypted",
        "prod",
        put(DATABASE, "encryptionAtRest", value=False),
        "platform:database.encryptionAtRest",
        "must be true for role production",
    ),
    (
        "production-pool-with-public-ips",
        "prod",
        put(*POOL0, "publicIpDisabled", value=False),
        "platform:cluster.pools[0].publicIpDisabled",
        "must be true for role production",
    ),
    (
        "production-without-api-acl",
        "prod",
        drop(CLUSTER, "apiAllowedRanges"),
        "platform:cluster.apiAllowedRanges",
        "required for role production",
    ),
    (
        "acl-open-to-the-world",
        "dev",
        put(CLUSTER, "apiAllowedRanges", 0, "cidr", value="0.0.0.0/0"),
        "platform:cluster.apiAllowedRanges[0].cidr",
        "opens the Kubernetes API to the world; list admin and CI ranges instead",
    ),
    (
        "acl-host-bits-set",
        "tooling",
        put(CLUSTER, "apiAllowedRanges", 0, "cidr", value="203.0.113.1/28"),
        "platform:cluster.apiAllowedRanges[0].cidr",
        "has host bits set",
    ),
    # roles (from environments.yaml) and what each requires or forbids
    (
        "tooling-without-registry",
        "tooling",
        drop("platform:registry"),
        "platform:registry",
        "required for role tooling",
    ),
    (
        "database-on-tooling",
        "tooling",
        put(DATABASE, value={"nodeType": "DB-DEV-S"}),
        "platform:database",
        "not allowed for role tooling (only: production, development)",
    ),
    (
        "registry-on-production",
        "prod",
        put("platform:registry", value={"namespace": "acme-platform"}),
        "platform:registry",
        "not allowed for role production (only: tooling)",
    ),
    (
        "production-without-database",
        "prod",
        # Apps that use a database would (rightly) be reported too: they stop using one.
        both(drop(DATABASE), apps_without_databases),
        "platform:database",
        "required for role production",
    ),
    # provider settings and names
    (
        "bad-project-id",
        "prod",
        put("scaleway:projectId", value="my-project"),
        "scaleway:projectId",
        "must be a project UUID (got 'my-project')",
    ),
    (
        "zone-outside-region",
        "prod",
        put("scaleway:zone", value="nl-ams-1"),
        "scaleway:zone",
        "must be a zone of region fr-par (fr-par-1, fr-par-2, fr-par-3)",
    ),
    (
        "pool-zone-outside-region",
        "tooling",
        put(CLUSTER, "pools", 1, "zone", value="pl-waw-1"),
        "platform:cluster.pools[1].zone",
        "must be a zone of region fr-par",
    ),
    (
        "pool-zone-pl-waw-3",
        "tooling",
        both(
            put("scaleway:region", value="pl-waw"),
            put("scaleway:zone", value="pl-waw-1"),
            put(CLUSTER, "pools", 1, "zone", value="pl-waw-3"),
        ),
        "platform:cluster.pools[1].zone",
        "must be a zone of region pl-waw (pl-waw-1, pl-waw-2), got 'pl-waw-3'",
    ),
    (
        "production-pool-zone-outside-region",
        "prod",
        put(*POOL0, "zone", value="nl-ams-1"),
        "platform:cluster.pools[0].zone",
        "must be a zone of region fr-par (fr-par-1, fr-par-2, fr-par-3), got 'nl-ams-1'",
    ),
    (
        "production-pools-in-one-zone",
        "prod",
        put(CLUSTER, "pools", 1, "zone", value="fr-par-1"),
        "platform:cluster.pools",
        "must span at least 2 zones for role production with pools of minSize 1 or more and no taints (a "
        "zone failure must not take every node), got only fr-par-1: give such a pool another zone of "
        "fr-par-1, fr-par-2, fr-par-3",
    ),
    (
        # A second zone whose only pool may scale to zero holds nothing when the first one fails.
        "production-second-zone-may-scale-to-zero",
        "prod",
        put(CLUSTER, "pools", 1, "minSize", value=0),
        "platform:cluster.pools",
        "must span at least 2 zones for role production with pools of minSize 1 or more",
    ),
    (
        "production-one-pool",
        "prod",
        only_first_pool,
        "platform:cluster.pools",
        "must span at least 2 zones for role production",
    ),
    (
        "production-pool-without-zone",
        "prod",
        drop(*POOL0, "zone"),
        "platform:cluster.pools[0].zone",
        "required for role production: one of fr-par-1, fr-par-2, fr-par-3",
    ),
    (
        "registry-namespace-uppercase",
        "tooling",
        put("platform:registry", "namespace", value="Acme_Platform"),
        "platform:registry.namespace",
        "must match",
    ),
    (
        "pool-without-node-type",
        "prod",
        drop(*POOL0, "nodeType"),
        "platform:cluster.pools[0].nodeType",
        "required",
    ),
    (
        "duplicate-app-database",
        "prod",
        put(DATABASE, "databases", 1, "name", value="website"),
        "platform:database.databases",
        "duplicate database name 'website'",
    ),
    (
        "environment-not-a-dns-label",
        "prod",
        put("platform:environment", value="Prod_1"),
        "platform:environment",
        f"must be an environment of environments.yaml ({DECLARED}), got 'Prod_1'",
    ),
    # "not open to the world" means more than refusing /0
    (
        "acl-half-the-internet",
        "prod",
        put(CLUSTER, "apiAllowedRanges", 0, "cidr", value="0.0.0.0/1"),
        "platform:cluster.apiAllowedRanges[0].cidr",
        "admits 2,147,483,648 addresses to the Kubernetes API; list admin and CI ranges of /16 or narrower",
    ),
    # app egress never undoes default-deny nor reaches another VPC
    (
        "app-egress-everything",
        "prod",
        put(
            "platform:apps", 0, "egress", value=[{"cidr": "0.0.0.0/0", "ports": [443], "description": "all"}]
        ),
        "platform:apps[0].egress[0].cidr",
        "would all but undo the app's default-deny egress",
    ),
    (
        "app-egress-into-tooling",
        "prod",
        put(
            "platform:apps", 0, "egress", value=[{"cidr": "10.10.0.0/24", "ports": [22], "description": "x"}]
        ),
        "platform:apps[0].egress[0].cidr",
        "10.10.0.0/24 overlaps 10.0.0.0/8 (private, RFC 1918: the VPCs and the cluster's service range)",
    ),
    (
        "app-egress-port-out-of-range",
        "prod",
        put(
            "platform:apps",
            0,
            "egress",
            value=[{"cidr": "198.51.100.0/24", "ports": [70000], "description": "x"}],
        ),
        "platform:apps[0].egress[0].ports[0]",
        "less than or equal to 65535",
    ),
]


@pytest.mark.parametrize(
    ("stack", "mutate", "path", "allowed"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_config_names_key_and_what_is_allowed(
    stack_config: StackConfig, stack: str, mutate: Mutation, path: str, allowed: str
) -> None:
    problems = new_problems(stack_config, stack, mutate)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.startswith(f"{path}: "), problem
    assert allowed in problem, problem


def test_there_are_at_least_25_invalid_cases() -> None:
    assert len(INVALID) >= 25
    assert len({c[0] for c in INVALID}) == len(INVALID), "case ids must be unique"


# -- environments.yaml: the rules of one environment and between environments ---------------------

# (id, changes to the committed environments.yaml, the one problem reported, exactly)
INVALID_ENVIRONMENTS: list[tuple[str, EnvironmentChanges, str]] = [
    (
        "invalid-cidr",
        {"dev": {"subnet": "10.30.0.0/33"}},
        "dev.subnet: must be an IPv4 network in CIDR notation ('33' is not a valid netmask)",
    ),
    (
        "host-bits-set",
        {"prod": {"subnet": "10.20.0.1/20"}},
        "prod.subnet: must be an IPv4 network in CIDR notation (10.20.0.1/20 has host bits set)",
    ),
    (
        "public-subnet",
        {"dev": {"subnet": "51.15.0.0/20"}},
        "dev.subnet: must be a private (RFC 1918) range, got 51.15.0.0/20",
    ),
    (
        # ``is_private`` alone admits link-local; it is not RFC 1918 and not routable in a VPC.
        "link-local-subnet",
        {"dev": {"subnet": "169.254.0.0/20"}},
        "dev.subnet: must be a private (RFC 1918) range, got 169.254.0.0/20",
    ),
    (
        "prefix-shorter-than-16",
        {"dev": {"subnet": "10.64.0.0/15"}},
        "dev.subnet: prefix length must be between /16 and /28, got /15",
    ),
    (
        "prefix-longer-than-28",
        {"dev": {"subnet": "10.30.0.0/29"}},
        "dev.subnet: prefix length must be between /16 and /28, got /29",
    ),
    (
        # The entry below the one it clashes with is named (prod is above dev in the file).
        "overlapping-subnets",
        {"dev": {"subnet": "10.20.8.0/24"}},
        "dev.subnet: 10.20.8.0/24 overlaps prod's 10.20.0.0/20; environments share no address",
    ),
    ("missing-role", {"prod": {"role": None}}, "prod.role: Field required"),
    (
        "unknown-role",
        {"prod": {"role": "staging"}},
        "prod.role: Input should be 'tooling', 'production' or 'development'",
    ),
    (
        "environment-not-a-dns-label",
        {"Prod_1": {"role": "development"}},
        "Prod_1: environment names are lowercase DNS labels of at most 20 characters",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [c[1:] for c in INVALID_ENVIRONMENTS],
    ids=[c[0] for c in INVALID_ENVIRONMENTS],
)
def test_invalid_environments_yaml_names_key_and_what_is_allowed(
    changes: EnvironmentChanges, expected: str
) -> None:
    env_list.parse(environments_document())  # the committed list is valid: the change is the problem
    with pytest.raises(EnvironmentsError) as caught:
        env_list.parse(environments_document(changes))
    assert caught.value.problems == [expected]
    assert str(caught.value).startswith("environments.yaml: 1 problem(s), nothing was created:\n")


def test_all_problems_are_reported_together(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    both(
        put("platform:clustr", value={}),
        put(PLAN, value={name: str(net) for name, net in COMMITTED.subnets().items()}),
        put("scaleway:projectId", value=COMMITTED.entries["dev"].project_id),
        put(*POOL0, "minSize", value=12),
        put(CLUSTER, "apiAllowedRanges", 0, "cidr", value="0.0.0.0/0"),
        put(DATABASE, "publicEndpoint", value=True),
        put(DATABASE, "backups", "retentionDays", value=3),
    )(raw)
    with pytest.raises(ConfigError) as caught:
        load_raw("prod", raw)
    error = caught.value
    assert len(error.problems) == 7, error.problems
    message = str(error)
    assert message.startswith("stack 'prod': 7 configuration problem(s), nothing was created:")
    for path in (
        "platform:clustr",
        "platform:addressPlan",
        "scaleway:projectId",
        "platform:cluster.pools[0].minSize",
        "platform:cluster.apiAllowedRanges[0].cidr",
        "platform:database.publicEndpoint",
        "platform:database.backups.retentionDays",
    ):
        assert f"\n  - {path}: " in message, path


def test_an_invalid_sibling_does_not_hide_another(stack_config: StackConfig) -> None:
    problems = new_problems(
        stack_config,
        "tooling",
        both(put(CLUSTER, "pools", 0, "size", value=9), put(CLUSTER, "pools", 1, "maxSize", value=0)),
    )
    assert [p.split(":")[1] for p in problems] == ["cluster.pools[0].size", "cluster.pools[1].maxSize"]


def test_config_error_is_a_run_error_without_traceback() -> None:
    # The engine prints a RunError's message alone, without a Python stack trace.
    assert issubclass(ConfigError, pulumi.RunError)
    error = ConfigError("prod", ["platform:role: required"])
    assert error.problems == ["platform:role: required"]
    assert str(error) == (
        "stack 'prod': 1 configuration problem(s), nothing was created:\n  - platform:role: required"
    )


# -- valid configuration -------------------------------------------------------------------------


def test_tooling_loads_into_frozen_model(stack_config: StackConfig) -> None:
    cfg = load_raw("tooling", stack_config("tooling"))
    assert cfg.role == "tooling"
    assert cfg.stack == "tooling"
    assert (cfg.region, cfg.zone) == ("fr-par", "fr-par-1")
    assert cfg.subnet == ipaddress.IPv4Network("10.10.0.0/20")
    assert cfg.network.public_gateway_type == "VPC-GW-S"
    assert isinstance(cfg, model.ToolingConfig)
    assert cfg.registry.namespace == "acme-platform"
    # The role's type holds only what the role may have: tooling runs no database.
    assert not hasattr(cfg, "database")
    assert cfg.cluster.auto_upgrade.maintenance_window_day == "tuesday"
    assert [p.name for p in cfg.cluster.pools] == ["system", "builders"]
    builders = cfg.cluster.pools[1]
    assert (builders.min_size, builders.size, builders.max_size) == (0, 1, 6)
    assert builders.root_volume_size_gb == 200
    assert builders.labels == {"workload": "builds"}
    assert cfg.protect_stateful
    assert "role=tooling" in cfg.tags

    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.role = "production"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        cfg.cluster.version = "1.35"


def test_prod_loads_database_and_defaults(stack_config: StackConfig) -> None:
    cfg = load_raw("prod", stack_config("prod"))
    assert isinstance(cfg, model.ProductionConfig)
    assert cfg.database.ha_cluster
    assert cfg.database.backups.retention_days == 14
    assert [(d.name, d.user) for d in cfg.database.databases] == [
        ("website", "website"),
        ("newsletter", "newsletter"),
    ]
    assert cfg.database_zone == "fr-par-1"
    assert cfg.database.public_endpoint is False
    # Defaults fill what the file leaves out.
    assert cfg.cluster.type == "kapsule"
    assert cfg.cluster.autoscaler.scale_down_unneeded_time == "15m"
    assert cfg.cluster.autoscaler.scale_down_delay_after_add == "10m"
    assert [str(r.cidr) for r in cfg.cluster.api_allowed_ranges] == ["203.0.113.0/28"]


def test_dev_is_unprotected_and_zone_defaults_to_region(stack_config: StackConfig) -> None:
    raw = stack_config("dev")
    del raw["scaleway:zone"]
    cfg = load_raw("dev", raw)
    assert cfg.zone == "fr-par-1"
    assert not cfg.protect_stateful
    assert isinstance(cfg, model.DevelopmentConfig)
    # dev's own small database, never protected; no registry (tooling's only).
    assert cfg.database is not None and cfg.database.node_type == "DB-DEV-S"
    assert not hasattr(cfg, "registry")


def test_development_may_have_public_pool_and_no_acl(stack_config: StackConfig) -> None:
    """The production rules really are role rules: the same settings pass in development."""
    raw = stack_config("dev")
    put(CLUSTER, "pools", 0, "publicIpDisabled", value=False)(raw)
    drop(CLUSTER, "apiAllowedRanges")(raw)
    cfg = load_raw("dev", raw)
    assert cfg.cluster is not None
    assert cfg.cluster.pools[0].public_ip_disabled is False
    assert cfg.cluster.api_allowed_ranges == []


def test_committed_stack_files_and_environments_yaml_agree(stack_config: StackConfig) -> None:
    """One stack file per environment of environments.yaml, each naming its own: the stack its entry
    gives (what other stacks reference it by) is that file's, with the entry's Scaleway project."""
    listed = env_list.load_file()
    environments = {stack: stack_config(stack)["platform:environment"] for stack in runner.stack_names()}
    assert len(environments) >= 3
    assert len(set(environments.values())) == len(environments), "two stacks claim the same environment"
    assert set(environments.values()) == set(listed.entries), environments
    for stack, name in environments.items():
        entry = listed.entries[name]
        assert entry.stack.rsplit("/", 1)[-1] == stack, (stack, entry.stack)
        assert stack_config(stack)["scaleway:projectId"] == entry.project_id, stack
        assert PLAN not in stack_config(stack) and "platform:role" not in stack_config(stack), stack


# -- through the whole program: an invalid stack registers nothing ------------------------------

BAD_STACKS: list[tuple[str, str, Mutation, str]] = [
    ("typo", "prod", put("platform:clustr", value={"version": "1.34"}), "platform:clustr: unknown key"),
    (
        "moved-address-plan",
        "tooling",
        put(PLAN, value={"tooling": "10.10.0.0/20", "prod": "10.10.0.0/16"}),
        "platform:addressPlan: moved to environments.yaml",
    ),
    ("impossible-pool", "tooling", put(CLUSTER, "pools", 0, "minSize", value=5), "pools[0].minSize"),
    ("public-database", "prod", put(DATABASE, "publicEndpoint", value=True), "database.publicEndpoint"),
    (
        "open-acl-in-production",
        "prod",
        put(CLUSTER, "apiAllowedRanges", value=[{"cidr": "0.0.0.0/0", "description": "anyone"}]),
        "apiAllowedRanges[0].cidr: 0.0.0.0/0 opens",
    ),
]


@pytest.mark.parametrize(
    ("stack", "mutate", "expected"), [c[1:] for c in BAD_STACKS], ids=[c[0] for c in BAD_STACKS]
)
def test_invalid_stack_registers_no_resource(
    stack_config: StackConfig, stack: str, mutate: Mutation, expected: str
) -> None:
    raw = stack_config(stack)
    mutate(raw)
    with pytest.raises(ConfigError) as caught:
        runner.run(stack, config=raw)
    assert expected in str(caught.value)
    monitor = runner.last_monitor
    assert monitor is not None
    assert monitor.registrations == {}


BAD_ENVIRONMENTS: list[tuple[str, str, EnvironmentChanges, str]] = [
    (
        "overlapping-subnets",
        "tooling",
        {"prod": {"subnet": "10.10.0.0/16"}},
        "prod.subnet: 10.10.0.0/16 overlaps tooling's 10.10.0.0/20",
    ),
    (
        "managed-by-a-workload-environment",
        "prod",
        {"prod": {"managedBy": "dev"}},
        "prod.managedBy: must name an environment of role tooling",
    ),
]


@pytest.mark.parametrize(
    ("stack", "changes", "expected"), [c[1:] for c in BAD_ENVIRONMENTS], ids=[c[0] for c in BAD_ENVIRONMENTS]
)
def test_invalid_environments_yaml_registers_no_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: str, changes: EnvironmentChanges, expected: str
) -> None:
    """Every stack reads the whole list: a rule between environments broken in environments.yaml
    stops any stack's plan before the program starts."""
    for stack_file in runner.ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, tmp_path / stack_file.name)
    (tmp_path / env_list.FILE_NAME).write_text(
        yaml.safe_dump(environments_document(changes), sort_keys=False)
    )
    monkeypatch.setattr(runner, "last_monitor", None)
    with pytest.raises(EnvironmentsError) as caught:
        runner.run(stack, root=tmp_path)
    assert expected in str(caught.value)
    # No program ran (the hook is set when one starts, see the test below): nothing registered.
    assert runner.last_monitor is None


def test_last_monitor_records_a_valid_run(stack_config: StackConfig) -> None:
    """Guards the test above: the hook really points at the latest run's recorder."""
    plan = runner.run("dev", config=stack_config("dev"))
    assert runner.last_monitor is not None
    assert len(runner.last_monitor.registrations) == len(plan.registrations) > 0


def test_structured_config_survives_the_engine_encoding(stack_config: StackConfig) -> None:
    """The engine hands maps as JSON strings: ``from_pulumi`` must decode them into the same model."""
    plan = runner.run("prod", config=stack_config("prod"))
    pools = {pool.inputs["name"]: pool.inputs for pool in plan.by_type("scaleway:kubernetes/pool:Pool")}
    assert {name: (p["zone"], p["minSize"], p["size"], p["maxSize"]) for name, p in pools.items()} == {
        "apps": ("fr-par-1", 2, 2, 5),
        "apps-b": ("fr-par-2", 2, 2, 4),
    }


def test_each_environment_has_its_own_scaleway_project(stack_config: StackConfig) -> None:
    """Identities are scoped to a project: one project per environment keeps prod's secrets, buckets
    and registry out of reach of the other environments' keys."""
    projects = {stack: stack_config(stack)["scaleway:projectId"] for stack in runner.stack_names()}
    assert len(set(projects.values())) == len(projects), projects

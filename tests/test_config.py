"""Stack configuration: every invalid stack file is refused with one readable error that names
each offending key path and what is allowed there, and nothing is created.

Most cases call ``components.config.load`` directly on a mutated committed stack file (fast); the
last group runs the whole program through ``offline.runner`` to prove an invalid stack registers
no resource at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pulumi
import pydantic
import pytest

from components.config import ConfigError
from offline import runner
from tests.harness import Mutation, StackConfig, new_problems
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


CLUSTER, DATABASE, PLAN = "platform:cluster", "platform:database", "platform:addressPlan"
POOL0 = (CLUSTER, "pools", 0)


# (id, stack file, mutation, offending key path, what the message must say is allowed)
INVALID: list[tuple[str, str, Mutation, str, str]] = [
    # typos: the unknown key is named and the allowed keys are listed
    (
        "typo-top-level",
        "prod",
        put("platform:databse", value={"nodeType": "DB-DEV-S"}),
        "platform:databse",
        "unknown key (allowed: role, environment, addressPlan, network, cluster, database, registry",
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
    # the address plan
    (
        "invalid-cidr",
        "dev",
        put(PLAN, "dev", value="10.30.0.0/33"),
        "platform:addressPlan.dev",
        "must be an IPv4 network in CIDR notation",
    ),
    (
        "host-bits-set",
        "prod",
        put(PLAN, "prod", value="10.20.0.1/20"),
        "platform:addressPlan.prod",
        "has host bits set",
    ),
    (
        "public-subnet",
        "dev",
        put(PLAN, "dev", value="51.15.0.0/20"),
        "platform:addressPlan.dev",
        "must be a private (RFC 1918) range",
    ),
    (
        # ``is_private`` alone admits link-local; it is not RFC 1918 and not routable in a VPC.
        "link-local-subnet",
        "dev",
        put(PLAN, "dev", value="169.254.0.0/20"),
        "platform:addressPlan.dev",
        "must be a private (RFC 1918) range",
    ),
    (
        "overlapping-subnets",
        "prod",
        put(PLAN, "dev", value="10.20.8.0/24"),
        "platform:addressPlan.prod",
        "10.20.0.0/20 overlaps dev's 10.20.8.0/24; environments must not share addresses",
    ),
    (
        "environment-missing-from-plan",
        "prod",
        put("platform:environment", value="staging"),
        "platform:addressPlan",
        "no subnet for this stack's environment 'staging' (declared: dev, prod, tooling)",
    ),
    # pool sizes
    (
        "min-above-max",
        "prod",
        put(*POOL0, "minSize", value=10),
        "platform:cluster.pools[0].minSize",
        "must be <= maxSize (10 > 9)",
    ),
    (
        "size-above-max",
        "prod",
        put(*POOL0, "size", value=12),
        "platform:cluster.pools[0].size",
        "must be <= maxSize (12 > 9)",
    ),
    (
        "size-below-min",
        "prod",
        put(*POOL0, "size", value=2),
        "platform:cluster.pools[0].minSize",
        "must be <= size (3 > 2)",
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
    # roles and what each requires or forbids
    (
        "missing-role",
        "prod",
        drop("platform:role"),
        "platform:role",
        "required (one of: tooling, production, development)",
    ),
    (
        "unknown-role",
        "prod",
        put("platform:role", value="staging"),
        "platform:role",
        "must be one of: tooling, production, development (got 'staging')",
    ),
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
        "not allowed for role tooling (only: production)",
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
        "must be a zone of region fr-par (fr-par-1..3)",
    ),
    (
        "pool-zone-outside-region",
        "tooling",
        put(CLUSTER, "pools", 1, "zone", value="pl-waw-1"),
        "platform:cluster.pools[1].zone",
        "must be a zone of region fr-par",
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
        "must be a lowercase DNS label",
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
        "would undo the app's default-deny egress",
    ),
    (
        "app-egress-into-tooling",
        "prod",
        put(
            "platform:apps", 0, "egress", value=[{"cidr": "10.10.0.0/24", "ports": [22], "description": "x"}]
        ),
        "platform:apps[0].egress[0].cidr",
        "overlaps environment tooling's private subnet 10.10.0.0/20",
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


def test_all_problems_are_reported_together(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    both(
        put("platform:clustr", value={}),
        put(PLAN, "dev", value="10.20.0.0/16"),
        put(*POOL0, "minSize", value=12),
        put(CLUSTER, "apiAllowedRanges", 0, "cidr", value="0.0.0.0/0"),
        put(DATABASE, "publicEndpoint", value=True),
        put(DATABASE, "backups", "retentionDays", value=3),
    )(raw)
    with pytest.raises(ConfigError) as caught:
        load_raw("prod", raw)
    error = caught.value
    assert len(error.problems) == 6, error.problems
    message = str(error)
    assert message.startswith("stack 'prod': 6 configuration problem(s), nothing was created:")
    for path in (
        "platform:clustr",
        "platform:addressPlan.prod",
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
    assert cfg.registry is not None and cfg.registry.namespace == "acme-platform"
    assert cfg.database is None
    assert cfg.cluster is not None
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
    assert cfg.is_production
    assert cfg.database is not None
    assert cfg.database.ha_cluster
    assert cfg.database.backups.retention_days == 14
    assert [(d.name, d.user) for d in cfg.database.databases] == [
        ("website", "website"),
        ("newsletter", "newsletter"),
    ]
    assert cfg.database_zone == "fr-par-1"
    assert cfg.database.public_endpoint is False
    assert cfg.cluster is not None
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
    assert not cfg.is_production
    assert cfg.database is None and cfg.registry is None


def test_development_may_have_public_pool_and_no_acl(stack_config: StackConfig) -> None:
    """The production rules really are role rules: the same settings pass in development."""
    raw = stack_config("dev")
    put(CLUSTER, "pools", 0, "publicIpDisabled", value=False)(raw)
    drop(CLUSTER, "apiAllowedRanges")(raw)
    cfg = load_raw("dev", raw)
    assert cfg.cluster is not None
    assert cfg.cluster.pools[0].public_ip_disabled is False
    assert cfg.cluster.api_allowed_ranges == []


def test_committed_stack_files_share_one_address_plan(stack_config: StackConfig) -> None:
    plans = {stack: stack_config(stack)[PLAN] for stack in runner.stack_names()}
    assert len(plans) >= 3
    first = next(iter(plans.values()))
    assert all(plan == first for plan in plans.values()), plans
    environments = [stack_config(stack)["platform:environment"] for stack in plans]
    assert len(set(environments)) == len(environments), "two stacks claim the same environment"
    assert set(environments) <= set(first)


# -- through the whole program: an invalid stack registers nothing ------------------------------

BAD_STACKS: list[tuple[str, str, Mutation, str]] = [
    ("typo", "prod", put("platform:clustr", value={"version": "1.34"}), "platform:clustr: unknown key"),
    (
        "overlapping-subnets",
        "tooling",
        put(PLAN, "prod", value="10.10.0.0/16"),
        "platform:addressPlan.tooling: 10.10.0.0/20 overlaps prod's",
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


def test_last_monitor_records_a_valid_run(stack_config: StackConfig) -> None:
    """Guards the test above: the hook really points at the latest run's recorder."""
    plan = runner.run("dev", config=stack_config("dev"))
    assert runner.last_monitor is not None
    assert len(runner.last_monitor.registrations) == len(plan.registrations) > 0


def test_structured_config_survives_the_engine_encoding(stack_config: StackConfig) -> None:
    """The engine hands maps as JSON strings: ``from_pulumi`` must decode them into the same model."""
    plan = runner.run("prod", config=stack_config("prod"))
    pool = plan.one("scaleway:kubernetes/pool:Pool")
    assert (pool.inputs["minSize"], pool.inputs["size"], pool.inputs["maxSize"]) == (3, 3, 9)


def test_each_environment_has_its_own_scaleway_project(stack_config: StackConfig) -> None:
    """Identities are scoped to a project: one project per environment keeps prod's secrets, buckets
    and registry out of reach of the other environments' keys."""
    projects = {stack: stack_config(stack)["scaleway:projectId"] for stack in runner.stack_names()}
    assert len(set(projects.values())) == len(projects), projects

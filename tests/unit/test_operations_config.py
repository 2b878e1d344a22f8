"""platform:operations (restore check, observability): bad input is a config error naming the key.

Each case mutates a committed stack file and checks the problems the mutation adds, so a problem
in another part of a half-edited stack file does not decide these tests.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline import runner
from program.config import ConfigError
from program.model import SECRET_KEYS
from tests.harness import Mutation, StackConfig, new_problems
from tests.harness import config_problems as _problems
from tests.harness import load_config as _load

OPS = "platform:operations"


def check(**changes: Any) -> Mutation:
    """Change keys of platform:operations.restoreCheck."""

    def mutate(raw: dict[str, Any]) -> None:
        ops = raw.setdefault(OPS, {})
        ops["restoreCheck"] = {**copy.deepcopy(ops.get("restoreCheck") or {}), **changes}

    return mutate


def database_check(index: int, **changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        entry = raw[OPS]["restoreCheck"]["databases"][index]
        entry.update(changes)

    return mutate


def observability(**changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        ops = raw.setdefault(OPS, {})
        ops["observability"] = {**copy.deepcopy(ops.get("observability") or {}), **changes}

    return mutate


def remove(key: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw.pop(key, None)

    return mutate


WEBHOOK = {"name": "chat", "kind": "webhook"}
#: An age public key (age-keygen; its private key was thrown away).
AGE_RECIPIENT = "age1frlcqq6au2k8gzujh6n74z2gsgtkgezug97pu2dj7z36mqe0h30sexx3w7"
EMAIL = {"name": "oncall", "email": "oncall@example.com"}

CASES: list[tuple[str, str, Mutation, str]] = [
    # -- the restore check -------------------------------------------------------------------------
    (
        "check-of-undeclared-database",
        "prod",
        database_check(1, database="billing"),
        f"{OPS}.restoreCheck.databases[1].database: database 'billing' is not declared in "
        "platform:database.databases (declared: newsletter, website)",
    ),
    (
        "max-age-not-a-duration",
        "prod",
        database_check(0, freshness=[{"table": "orders", "column": "created_at", "maxAge": "one day"}]),
        f"{OPS}.restoreCheck.databases[0].freshness[0].maxAge: 'one day' is not a duration",
    ),
    (
        "max-age-without-unit",
        "prod",
        database_check(0, freshness=[{"table": "orders", "column": "created_at", "maxAge": "26"}]),
        f"{OPS}.restoreCheck.databases[0].freshness[0].maxAge: '26' is not a duration",
    ),
    (
        "max-age-two-units",
        "prod",
        database_check(0, freshness=[{"table": "orders", "column": "created_at", "maxAge": "1d2h"}]),
        f"{OPS}.restoreCheck.databases[0].freshness[0].maxAge: '1d2h' is not a duration",
    ),
    (
        "freshness-without-column",
        "prod",
        database_check(0, freshness=[{"table": "orders", "maxAge": "26h"}]),
        f"{OPS}.restoreCheck.databases[0].freshness[0].column: required",
    ),
    (
        "bad-table-name",
        "prod",
        database_check(0, tables=["orders; drop table x"]),
        f"{OPS}.restoreCheck.databases[0].tables[0]: 'orders; drop table x' is not a table name",
    ),
    (
        "negative-min-rows",
        "prod",
        database_check(0, minRows={"orders": -1}),
        f"{OPS}.restoreCheck.databases[0].minRows.orders: Input should be greater than or equal to 0",
    ),
    (
        "typo-in-check",
        "prod",
        database_check(0, minRow={"orders": 1}),
        f"{OPS}.restoreCheck.databases[0].minRow: unknown key "
        "(allowed: database, tables, minRows, freshness)",
    ),
    (
        "database-checked-twice",
        "prod",
        database_check(1, database="website"),
        f"{OPS}.restoreCheck.databases: duplicate database 'website'",
    ),
    (
        "no-databases",
        "prod",
        check(databases=[]),
        f"{OPS}.restoreCheck.databases: List should have at least 1 item",
    ),
    (
        "image-without-tag",
        "prod",
        check(image="rg.fr-par.scw.cloud/acme-platform/restore-check"),
        f"{OPS}.restoreCheck.image: rg.fr-par.scw.cloud/acme-platform/restore-check has no tag or digest",
    ),
    (
        "image-latest",
        "prod",
        check(image="rg.fr-par.scw.cloud/acme-platform/restore-check:latest"),
        f"{OPS}.restoreCheck.image: rg.fr-par.scw.cloud/acme-platform/restore-check:latest "
        "uses the tag latest",
    ),
    (
        "image-garbage",
        "prod",
        check(image="not an image"),
        f"{OPS}.restoreCheck.image: must be an image reference",
    ),
    (
        "schedule-not-cron",
        "prod",
        check(schedule="daily"),
        f"{OPS}.restoreCheck.schedule: must be a cron schedule of five fields",
    ),
    (
        "no-bucket-admins-in-production",
        "prod",
        check(bucketAdmins=[]),
        f"{OPS}.restoreCheck.bucketAdmins: required: at least one principal",
    ),
    (
        "no-bucket-admins-key",
        "prod",
        lambda raw: raw[OPS]["restoreCheck"].pop("bucketAdmins"),
        f"{OPS}.restoreCheck.bucketAdmins: required: at least one principal",
    ),
    (
        "restore-check-image-by-tag-in-production",
        "prod",
        check(image="rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-2"),
        f"{OPS}.restoreCheck.image: must be pinned by digest for role production: "
        "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-2 is a tag",
    ),
    (
        "restore-check-image-short-digest-in-production",
        "prod",
        check(image="rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-2@sha256:abc"),
        f"{OPS}.restoreCheck.image: must be an image reference",
    ),
    (
        "backup-drill-image-by-tag-in-production",
        "prod",
        lambda raw: raw[OPS].update(
            backupDrill={"image": "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-2"}
        ),
        f"{OPS}.backupDrill.image: must be pinned by digest for role production: "
        "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-2 is a tag",
    ),
    (
        "malformed-bucket-admin",
        "prod",
        check(bucketAdmins=["root"]),
        f"{OPS}.restoreCheck.bucketAdmins[0]: must match",
    ),
    (
        "schedule-hour-out-of-range",
        "prod",
        check(schedule="0 24 * * *"),
        f"{OPS}.restoreCheck.schedule: hour must be within 0-23 in a cron schedule",
    ),
    (
        "schedule-minute-out-of-range",
        "prod",
        check(schedule="99 3 * * 1-5"),
        f"{OPS}.restoreCheck.schedule: minute must be within 0-59 in a cron schedule",
    ),
    (
        "short-retention-in-production",
        "prod",
        check(retentionDays=3),
        f"{OPS}.restoreCheck.retentionDays: must be >= 7 for role production",
    ),
    (
        "restore-check-without-database",
        "tooling",
        check(
            image="rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-1",
            databases=[{"database": "website"}],
        ),
        f"{OPS}.restoreCheck: requires platform:database",
    ),
    # -- observability -----------------------------------------------------------------------------
    (
        "unknown-backend",
        "prod",
        observability(backend="datadog"),
        f"{OPS}.observability.backend: unknown observability backend 'datadog' (one of: cockpit, prometheus)",
    ),
    (
        "email-contact-point-without-address",
        "prod",
        observability(contactPoints=[{"name": "oncall"}]),
        f"{OPS}.observability.contactPoints[0].email: required for kind email",
    ),
    (
        "email-contact-point-bad-address",
        "prod",
        observability(contactPoints=[{"name": "oncall", "email": "oncall"}]),
        f"{OPS}.observability.contactPoints[0].email: must be an email address",
    ),
    (
        "webhook-with-an-inline-address",
        "prod",
        observability(backend="prometheus", contactPoints=[{**WEBHOOK, "email": "x@example.com"}]),
        f"{OPS}.observability.contactPoints[0].email: not allowed for kind webhook",
    ),
    (
        "unknown-contact-point-kind",
        "prod",
        observability(contactPoints=[{"name": "pager", "kind": "sms"}]),
        f"{OPS}.observability.contactPoints[0].kind: Input should be 'email', 'webhook' or 'telegram'",
    ),
    (
        # Cockpit's routing is then the platform's, loaded whole: Scaleway's email points cannot stay.
        "webhook-beside-email-with-cockpit",
        "prod",
        observability(backend="cockpit", contactPoints=[EMAIL, WEBHOOK]),
        f"{OPS}.observability.contactPoints[0].kind: email cannot be combined with telegram, webhook",
    ),
    (
        "two-webhooks",
        "prod",
        observability(backend="prometheus", contactPoints=[WEBHOOK, {"name": "chat2", "kind": "webhook"}]),
        f"{OPS}.observability.contactPoints[1]: only one webhook contact point",
    ),
    (
        "prometheus-without-webhook",
        "prod",
        observability(backend="prometheus", contactPoints=[EMAIL]),
        f"{OPS}.observability.contactPoints: needs a webhook or telegram contact point",
    ),
    (
        "duplicate-contact-point",
        "prod",
        observability(contactPoints=[EMAIL, EMAIL]),
        f"{OPS}.observability.contactPoints: duplicate contact point name 'oncall'",
    ),
    (
        "logs-retention-too-long",
        "prod",
        observability(logsRetentionDays=90),
        f"{OPS}.observability.logsRetentionDays: Input should be less than or equal to 31",
    ),
    (
        "typo-in-operations",
        "prod",
        lambda raw: raw[OPS].update(restorecheck={}),
        f"{OPS}.restorecheck: unknown key (allowed: observability, restoreCheck, backupDrill)",
    ),
    (
        "observability-without-cluster",
        "dev",
        lambda raw: (remove("platform:cluster")(raw), observability(backend="cockpit")(raw)),
        f"{OPS}.observability: requires platform:cluster",
    ),
]


@pytest.mark.parametrize(("stack", "mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_operations_config_names_the_key(
    stack_config: StackConfig, stack: str, mutate: Mutation, expected: str
) -> None:
    found = new_problems(stack_config, stack, mutate)
    assert any(p.startswith(expected) for p in found), "\n".join(found) or "no new problem"


def test_webhook_url_is_a_deploy_time_secret(stack_config: StackConfig) -> None:
    assert "alertWebhookUrl" in SECRET_KEYS
    without = {key: "x" for key in SECRET_KEYS if key != "alertWebhookUrl"}
    found = new_problems(
        stack_config, "prod", observability(backend="prometheus", contactPoints=[EMAIL, WEBHOOK]), without
    )
    assert any(
        p.startswith("platform:alertWebhookUrl: required with the webhook contact point") for p in found
    ), found
    # In the stack file it must be a secret, never a plain value.
    raw = stack_config("prod")
    raw["platform:alertWebhookUrl"] = "https://chat.example.com/hooks/abc"
    assert any(
        p.startswith("platform:alertWebhookUrl: must be set as a secret") for p in _problems("prod", raw)
    )


def test_all_operations_problems_are_reported_together(stack_config: StackConfig) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        database_check(0, database="billing")(raw)
        database_check(1, freshness=[{"table": "t", "column": "c", "maxAge": "soon"}])(raw)
        observability(backend="graphite", contactPoints=[{"name": "oncall"}])(raw)

    keys = {p.split(": ", 1)[0] for p in new_problems(stack_config, "prod", mutate)}
    assert {
        f"{OPS}.restoreCheck.databases[0].database",
        f"{OPS}.restoreCheck.databases[1].freshness[0].maxAge",
        f"{OPS}.observability.backend",
        f"{OPS}.observability.contactPoints[0].email",
    } <= keys, keys


def test_invalid_operations_config_creates_nothing(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    database_check(0, database="billing")(raw)
    with pytest.raises(ConfigError, match=r"restoreCheck\.databases\[0\]\.database"):
        runner.run("prod", config=raw)
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


# --- what valid config means ----------------------------------------------------------------------


def test_committed_operations_config(stack_config: StackConfig) -> None:
    prod = _load("prod", stack_config("prod"))
    check_settings = prod.restore_check
    assert check_settings is not None
    declared = {d.name for d in prod.database.databases} if prod.database else set()
    assert {d.database for d in check_settings.databases} == declared, "every app database is checked"
    assert all(d.tables and d.min_rows and d.freshness for d in check_settings.databases)
    assert ":" in check_settings.image.rsplit("/", 1)[-1] and not check_settings.image.endswith(":latest")
    settings = prod.observability
    assert settings is not None and settings.backend == "cockpit"
    # Paged on Telegram, with the dead man's switch: Cockpit's alert manager gets the platform's
    # routing (scw_platform/cockpit_routing.py), which leaves no room for Scaleway's email points.
    assert {p.receives for p in settings.telegram} == {"page", "channel"}
    assert settings.heartbeat and not settings.emails

    tooling = _load("tooling", stack_config("tooling"))
    assert tooling.observability is not None, "the tooling cluster ships metrics and logs too"
    assert not hasattr(tooling, "restore_check")
    assert not tooling.observability.contact_points, "contact points: one stack per project"


def test_defaults(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw[OPS] = {
        # A contact point is the one thing production may not leave to a default.
        "observability": {"contactPoints": [{"name": "oncall", "email": "oncall@example.com"}]},
        "restoreCheck": {
            "image": "rg.fr-par.scw.cloud/acme/restore-check@sha256:" + "a" * 64,
            # A freshness column: what the newest restored row's age (rpoHours) is measured on.
            "databases": [
                {
                    "database": "website",
                    "freshness": [{"table": "orders", "column": "created_at", "maxAge": "26h"}],
                }
            ],
            # Not a default: production must say who keeps access to its backups.
            "bucketAdmins": ["user_id:5e2f8a1c-3b7d-4c9e-8f6a-2d1b0c9e7f34"],
            # Not defaults either: the key dumps are encrypted to, and the recovery objectives.
            "encryptionRecipient": AGE_RECIPIENT,
            "rtoMinutes": 60,
            "rpoHours": 26,
        },
    }
    cfg = _load("prod", raw)
    assert cfg.observability is not None
    assert cfg.observability.backend == "cockpit", "Cockpit is the default backend"
    assert cfg.restore_check is not None
    assert cfg.restore_check.schedule == "30 3 * * *"
    assert cfg.restore_check.retention_days >= 7

    # Optional elsewhere, not in production: a backup nobody restores and alerts nobody receives
    # are the holes the fresh-clone issue listed.
    raw.pop(OPS)
    with pytest.raises(ConfigError) as caught:
        _load("prod", raw)
    assert "platform:operations.restoreCheck: required for role production" in str(caught.value)
    assert "platform:operations.observability: required for role production" in str(caught.value)
    dev = stack_config("dev")
    dev.pop(OPS, None)
    assert _load("dev", dev).restore_check is None, "operations are optional in development"


# --- the restore check's encryption and clock (issue 14) ------------------------------------------


def without_check_key(key: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw[OPS]["restoreCheck"].pop(key)

    return mutate


RECOVERY_CASES: list[tuple[str, Mutation, str]] = [
    (
        "recipient-missing",
        without_check_key("encryptionRecipient"),
        f"{OPS}.restoreCheck.encryptionRecipient: required",
    ),
    (
        "recipient-not-a-key",
        check(encryptionRecipient="age1notakey"),
        f"{OPS}.restoreCheck.encryptionRecipient: must be an age X25519 public key",
    ),
    (
        "recipient-typo",
        check(encryptionRecipient=AGE_RECIPIENT[:-1] + "q"),
        f"{OPS}.restoreCheck.encryptionRecipient: '{AGE_RECIPIENT[:-1]}q' is not a valid age public key: "
        "its Bech32 checksum does not match",
    ),
    (
        "recipient-is-a-private-key",
        check(encryptionRecipient="AGE-SECRET-KEY-1" + "Q" * 58),
        f"{OPS}.restoreCheck.encryptionRecipient: this is an age identity (a private key), not a recipient",
    ),
    (
        "recipient-not-text",
        check(encryptionRecipient=42),
        f"{OPS}.restoreCheck.encryptionRecipient: Input should be a valid string",
    ),
    ("rto-missing", without_check_key("rtoMinutes"), f"{OPS}.restoreCheck.rtoMinutes: required"),
    ("rto-zero", check(rtoMinutes=0), f"{OPS}.restoreCheck.rtoMinutes: Input should be greater than 0"),
    ("rto-negative", check(rtoMinutes=-30), f"{OPS}.restoreCheck.rtoMinutes: Input should be greater than 0"),
    (
        "rto-text",
        check(rtoMinutes="an hour"),
        f"{OPS}.restoreCheck.rtoMinutes: Input should be a valid integer",
    ),
    ("rpo-missing", without_check_key("rpoHours"), f"{OPS}.restoreCheck.rpoHours: required"),
    ("rpo-zero", check(rpoHours=0), f"{OPS}.restoreCheck.rpoHours: Input should be greater than 0"),
    ("rpo-negative", check(rpoHours=-1), f"{OPS}.restoreCheck.rpoHours: Input should be greater than 0"),
    ("rpo-boolean", check(rpoHours=True), f"{OPS}.restoreCheck.rpoHours: Input should be a valid integer"),
    (
        "no-timestamp-column-for-the-rpo",
        database_check(1, freshness=[]),
        f"{OPS}.restoreCheck.databases[1].freshness: at least one freshness check is required",
    ),
    (
        "timestamp-column-not-an-identifier",
        database_check(0, freshness=[{"table": "orders", "column": "created at", "maxAge": "26h"}]),
        f"{OPS}.restoreCheck.databases[0].freshness[0].column: 'created at' is not a column name",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in RECOVERY_CASES], ids=[c[0] for c in RECOVERY_CASES]
)
def test_bad_encryption_or_recovery_targets_name_the_key(
    stack_config: StackConfig, mutate: Mutation, expected: str
) -> None:
    found = new_problems(stack_config, "prod", mutate)
    assert any(p.startswith(expected) for p in found), "\n".join(found) or "no new problem"


def test_a_private_key_in_the_stack_file_is_never_echoed(stack_config: StackConfig) -> None:
    identity = "AGE-SECRET-KEY-1" + "Q" * 58
    found = new_problems(stack_config, "prod", check(encryptionRecipient=identity))
    assert found and not any(identity in p for p in found)


def test_committed_encryption_and_targets(stack_config: StackConfig) -> None:
    prod = _load("prod", stack_config("prod"))
    assert prod.restore_check is not None
    assert prod.restore_check.encryption_recipient.startswith("age1")
    assert prod.restore_check.rto_minutes > 0 and prod.restore_check.rpo_hours > 0
    # Every database has a timestamp column for the newest restored row's age (the RPO figure).
    for database in prod.restore_check.databases:
        assert database.freshness, database.database


@pytest.mark.parametrize("stack", ["dev", "tooling"])
@pytest.mark.parametrize("key", ["restoreCheck", "backupDrill"])
def test_production_data_guards_are_refused_elsewhere(
    stack_config: StackConfig, stack: str, key: str
) -> None:
    """Development and tooling models have nowhere to put them: refused, never silently ignored."""
    prod_ops = runner.read_stack_config("prod")[OPS]
    guard = prod_ops.get(key, {"image": "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-3"})

    def mutate(raw: dict[str, Any]) -> None:
        raw.setdefault(OPS, {})[key] = copy.deepcopy(guard)

    role = "development" if stack == "dev" else "tooling"
    assert f"{OPS}.{key}: not allowed for role {role} (only: production)" in new_problems(
        stack_config, stack, mutate
    )

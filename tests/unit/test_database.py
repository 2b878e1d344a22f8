"""ManagedPostgres: private network only (never a public endpoint), HA, backups and encryption as
configured, protected when asked, and one least-privileged user per app database."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from offline.mocks import SECRET_MARKER
from scw_platform.database import ADMIN_USER, DatabaseSettings, ManagedPostgres, ManagedPostgresArgs
from scw_platform.network import Network, NetworkArgs
from tests.harness import Recording, is_secret, record, unwrap

INSTANCE = "scaleway:databases/instance:Instance"
DATABASE = "scaleway:databases/database:Database"
USER = "scaleway:databases/user:User"
PRIVILEGE = "scaleway:databases/privilege:Privilege"
PASSWORD = "random:index/randomPassword:RandomPassword"
SUBNET = "10.20.0.0/20"

PRODUCTION: dict[str, Any] = {
    "engine": "PostgreSQL-16",
    "nodeType": "DB-PRO2-XXS",
    "haCluster": True,
    "volumeType": "sbs_15k",
    "volumeSizeGb": 50,
    "encryptionAtRest": True,
    "backups": {"enabled": True, "frequencyHours": 12, "retentionDays": 14},
    "maxConnections": 180,
    # A user name that differs from its database name, so a mix-up cannot pass unnoticed.
    "databases": [{"name": "website", "user": "web"}, {"name": "newsletter", "user": "mailer"}],
}

DEVELOPMENT: dict[str, Any] = {
    "nodeType": "DB-DEV-S",
    "haCluster": False,
    "volumeType": "sbs_5k",
    "encryptionAtRest": False,
    "backups": {"enabled": False, "retentionDays": 3},
    "databases": [{"name": "scratch", "user": "scratch"}],
}


def build(raw: dict[str, Any], *, role: str, protect: bool) -> Recording:
    db_settings = DatabaseSettings.model_validate(raw, context={"role": role, "region": "fr-par"})

    def program() -> dict[str, Any]:
        network = Network(
            "net",
            NetworkArgs(
                environment="prod",
                region="fr-par",
                zone="fr-par-2",
                subnet=SUBNET,
                gateway_type="VPC-GW-S",
                tags=(),
            ),
        )
        db = ManagedPostgres(
            "pg",
            ManagedPostgresArgs(
                environment="prod",
                region="fr-par",
                zone="fr-par-1",
                private_network_id=network.private_network_id,
                settings=db_settings,
                protect=protect,
                tags=("environment=prod",),
            ),
        )
        outputs: dict[str, Any] = {"host": db.host, "port": db.port, "instanceId": db.instance_id}
        for name, creds in db.credentials.items():
            outputs[f"password:{name}"] = creds.password
        return outputs

    return record(program)


@pytest.fixture(scope="module")
def prod() -> Recording:
    return build(PRODUCTION, role="production", protect=True)


@pytest.fixture(scope="module")
def dev() -> Recording:
    return build(DEVELOPMENT, role="development", protect=False)


def test_children_are_parented_and_named_after_the_component(prod: Recording) -> None:
    component = prod.named("pg")
    assert component.type == "platform:database:ManagedPostgres"
    children = prod.children(component)
    assert children, "the component registered no children"
    for child in children:
        assert child.name.startswith("pg-"), child.name
    assert {c.name for c in children} >= {
        "pg-admin-password",
        "pg-instance",
        "pg-db-website",
        "pg-user-website",
        "pg-user-website-password",
        "pg-privilege-website",
    }


@pytest.mark.parametrize("fixture", ["prod", "dev"])
def test_never_a_public_endpoint(fixture: str, request: pytest.FixtureRequest) -> None:
    rec: Recording = request.getfixturevalue(fixture)
    for instance in rec.by_type(INSTANCE):
        assert "loadBalancer" not in instance.inputs, instance.inputs.get("loadBalancer")


def test_instance_on_private_network_with_ipam(prod: Recording) -> None:
    instance = prod.named("pg-instance")
    assert instance.inputs["privateNetwork"] == {
        "pnId": prod.named("net-pn").id,
        "enableIpam": True,
        # The database zone, not the network's gateway zone: private endpoints work only there.
        "zone": "fr-par-1",
    }
    host = prod.outputs["host"].value
    assert ipaddress.ip_address(host) in ipaddress.ip_network(SUBNET)
    assert prod.outputs["port"].value == 5432


def test_production_settings_reach_the_instance(prod: Recording) -> None:
    inputs = prod.named("pg-instance").inputs
    assert inputs["engine"] == "PostgreSQL-16"
    assert inputs["nodeType"] == "DB-PRO2-XXS"
    assert inputs["isHaCluster"] is True
    assert inputs["disableBackup"] is False
    assert inputs["backupScheduleFrequency"] == 12
    assert inputs["backupScheduleRetention"] == 14
    assert inputs["encryptionAtRest"] is True
    assert inputs["volumeType"] == "sbs_15k"
    assert inputs["volumeSizeInGb"] == 50
    assert inputs["userName"] == ADMIN_USER
    # The connection budget's limit is the instance's own engine setting.
    assert inputs["settings"] == {"max_connections": "180"}


def test_development_settings_reach_the_instance(dev: Recording) -> None:
    inputs = dev.named("pg-instance").inputs
    assert inputs["isHaCluster"] is False
    assert inputs["disableBackup"] is True
    assert inputs["encryptionAtRest"] is False
    assert inputs["volumeType"] == "sbs_5k"
    assert inputs["settings"] == {"max_connections": "100"}  # PostgreSQL's default, stated


def test_protect_when_asked(prod: Recording) -> None:
    assert prod.named("pg-instance").protect is True
    for db in prod.by_type(DATABASE):
        assert db.protect is True, db.name


def test_nothing_protected_otherwise(dev: Recording) -> None:
    assert [r.name for r in dev.registrations if r.protect] == []


def test_admin_password_is_secret(prod: Recording) -> None:
    instance = prod.named("pg-instance")
    password = instance.inputs["password"]
    assert is_secret(password)
    assert unwrap(password) == unwrap(prod.named("pg-admin-password").state["result"])
    assert SECRET_MARKER in unwrap(password)


@pytest.mark.parametrize(("fixture", "raw"), [("prod", PRODUCTION), ("dev", DEVELOPMENT)])
def test_three_least_privileged_users_per_app_database(
    fixture: str, raw: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """The runtime user (readwrite, the pods'), the migrator (all, the migration hook's) and the
    reader (readonly, the restore check's), each on its own database only."""
    rec: Recording = request.getfixturevalue(fixture)
    instance_id = rec.named("pg-instance").id
    declared = {(d["name"], d["user"]) for d in raw["databases"]}

    databases = rec.by_type(DATABASE)
    users = rec.by_type(USER)
    privileges = rec.by_type(PRIVILEGE)
    assert len(databases) == len(declared)
    assert len(users) == len(privileges) == 3 * len(declared)
    assert {d.inputs["name"] for d in databases} == {name for name, _ in declared}
    expected = {
        (name, f"{user}{suffix}", permission)
        for name, user in declared
        for suffix, permission in (("", "readwrite"), ("_migrator", "all"), ("_reader", "readonly"))
    }
    assert {u.inputs["name"] for u in users} == {user for _, user, _ in expected}
    # Each user gets its one permission on its own database and nothing else.
    granted = {(p.inputs["databaseName"], p.inputs["userName"], p.inputs["permission"]) for p in privileges}
    assert granted == expected
    for resource in (*databases, *users, *privileges):
        assert resource.inputs["instanceId"] == instance_id, resource.name
    for user in users:
        assert user.inputs["isAdmin"] is False


def test_user_passwords_are_secret_and_distinct(prod: Recording) -> None:
    users = prod.by_type(USER)
    passwords = [u.inputs["password"] for u in users]
    assert all(is_secret(p) for p in passwords)
    admin = unwrap(prod.named("pg-instance").inputs["password"])
    values = {unwrap(p) for p in passwords}
    assert len(values) == len(users)
    assert admin not in values
    for name in ("website", "newsletter"):
        exported = prod.outputs[f"password:{name}"]
        assert exported.secret
        assert exported.value == unwrap(prod.named(f"pg-user-{name}").inputs["password"])


def test_passwords_are_strong(prod: Recording) -> None:
    for password in prod.by_type(PASSWORD):
        assert password.inputs["length"] >= 32
        assert password.inputs["minUpper"] >= 1
        assert password.inputs["minNumeric"] >= 1
        assert password.inputs["minSpecial"] >= 1

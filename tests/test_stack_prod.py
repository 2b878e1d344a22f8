"""The committed prod stack: network, production cluster and a protected managed PostgreSQL on the
private network. No registry (that is tooling's)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from offline import runner


@pytest.fixture(scope="module")
def plan(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return runner.read_stack_config("prod")


def test_role_components(plan: runner.Plan) -> None:
    assert [r.name for r in plan.by_type("platform:network:Network")] == ["prod"]
    assert [r.name for r in plan.by_type("platform:cluster:KapsuleCluster")] == ["prod"]
    assert len(plan.by_type("platform:database:ManagedPostgres")) == 1
    assert plan.by_type("platform:registry:Registry") == []
    assert plan.by_type("scaleway:registry/namespace:Namespace") == []


def test_network_uses_the_prod_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    pn = plan.one("scaleway:network/privateNetwork:PrivateNetwork")
    assert pn.inputs["ipv4Subnet"] == {"subnet": raw["platform:addressPlan"]["prod"]}
    assert plan.one("scaleway:kubernetes/cluster:Cluster").inputs["privateNetworkId"] == pn.id


def test_nodes_have_no_public_ip(plan: runner.Plan) -> None:
    pools = plan.by_type("scaleway:kubernetes/pool:Pool")
    assert pools
    for pool in pools:
        assert pool.inputs["publicIpDisabled"] is True, pool.name


def test_api_acl_admits_the_configured_ranges_and_not_the_world(
    plan: runner.Plan, raw: dict[str, Any]
) -> None:
    rules = plan.one("scaleway:kubernetes/acl:Acl").inputs["aclRules"]
    ips = [rule["ip"] for rule in rules]
    for allowed in raw["platform:cluster"]["apiAllowedRanges"]:
        assert allowed["cidr"] in ips
    assert "0.0.0.0/0" not in ips
    assert all(rule["description"] for rule in rules)


def test_database_is_protected_private_and_ha(plan: runner.Plan, raw: dict[str, Any]) -> None:
    instance = plan.one("scaleway:databases/instance:Instance")
    assert instance.protect is True
    assert "loadBalancer" not in instance.inputs
    assert (
        instance.inputs["privateNetwork"]["pnId"]
        == plan.one("scaleway:network/privateNetwork:PrivateNetwork").id
    )
    assert instance.inputs["privateNetwork"]["enableIpam"] is True
    assert instance.inputs["isHaCluster"] is True
    assert instance.inputs["backupScheduleRetention"] == raw["platform:database"]["backups"]["retentionDays"]
    assert instance.inputs["backupScheduleRetention"] >= 7
    assert instance.inputs["encryptionAtRest"] is True
    for database in plan.by_type("scaleway:databases/database:Database"):
        assert database.protect is True, database.name


def test_app_databases_from_the_stack_file(plan: runner.Plan, raw: dict[str, Any]) -> None:
    declared = {(d["name"], d["user"]) for d in raw["platform:database"]["databases"]}
    privileges = plan.by_type("scaleway:databases/privilege:Privilege")
    assert {(p.inputs["databaseName"], p.inputs["userName"]) for p in privileges} == declared
    assert {p.inputs["permission"] for p in privileges} == {"readwrite"}
    assert sorted(plan.exports["databaseNames"].value) == sorted(name for name, _ in declared)


def test_database_host_is_inside_the_prod_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    host = plan.exports["databaseHost"].value
    assert ipaddress.ip_address(host) in ipaddress.ip_network(raw["platform:addressPlan"]["prod"])
    assert plan.exports["databasePort"].value == 5432


def test_exports(plan: runner.Plan) -> None:
    assert plan.exports["role"].value == "production"
    assert plan.exports["kubeconfig"].secret
    assert not plan.exports["egressIp"].secret


def test_api_acl_admits_the_clusters_own_nodes(plan: runner.Plan) -> None:
    """Nodes without public IPs reach the API server from the Public Gateway's address."""
    rules = plan.one("scaleway:kubernetes/acl:Acl").inputs["aclRules"]
    assert {
        "ip": f"{plan.exports['egressIp'].value}/32",
        "description": "own nodes (Public Gateway egress)",
    } in rules


def test_egress_ip_and_private_network_are_kept(plan: runner.Plan) -> None:
    ip = plan.one("scaleway:network/publicGatewayIp:PublicGatewayIp")
    assert ip.protect and ip.retain_on_delete
    assert plan.one("scaleway:network/privateNetwork:PrivateNetwork").protect

"""The committed prod stack: network, production cluster and a protected managed PostgreSQL on the
private network. No registry (that is tooling's)."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from offline import runner
from program import environments
from scw_platform.contract import REGISTRATION_FIELDS, REGISTRATION_KEY
from tests.harness import exported_kubeconfigs, kubeconfigs_in


@pytest.fixture(scope="module")
def plan(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return runner.read_stack_config("prod")


def test_the_kubeconfig_detector_finds_kubeconfigs() -> None:
    """The check below is only as good as this detector: it must see a kubeconfig in any guise."""
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x:6443\n"
        "users:\n- name: u\n  user:\n    token: t\ncurrent-context: c\n"
    )
    encoded = base64.b64encode(kubeconfig.encode()).decode()
    assert kubeconfigs_in(kubeconfig, "a") == ["a"]
    assert kubeconfigs_in(encoded, "a") == ["a"]
    assert kubeconfigs_in({"prod": kubeconfig}, "a") == ["a.prod"]
    assert kubeconfigs_in({"registrarKubeconfigs": {}}, "a") == ["a.registrarKubeconfigs"]
    assert kubeconfigs_in(["x", {"kind": "Config"}], "a") == ["a[1]"]
    plan = runner.Plan("s", "p", [], {"kubeconfig": runner.Export("", True)})
    assert exported_kubeconfigs({"s": plan}) == ["s:kubeconfig"]
    for harmless in ("https://x:6443", "10.20.0.5", "", "a: b", ["newsletter"], {"server": "x"}):
        assert kubeconfigs_in(harmless, "a") == [], harmless


def test_no_stack_exports_a_kubeconfig(committed_plans: dict[str, runner.Plan]) -> None:
    assert exported_kubeconfigs(committed_plans) == []


def test_role_components(plan: runner.Plan) -> None:
    assert [r.name for r in plan.by_type("platform:network:Network")] == ["prod"]
    assert [r.name for r in plan.by_type("platform:cluster:KapsuleCluster")] == ["prod"]
    assert len(plan.by_type("platform:database:ManagedPostgres")) == 1
    assert plan.by_type("platform:registry:Registry") == []
    assert plan.by_type("scaleway:registry/namespace:Namespace") == []


def _subnet(raw: dict[str, Any]) -> str:
    """The subnet environments.yaml gives the stack file's environment."""
    return environments.load_file().entries[raw["platform:environment"]].subnet


def test_network_uses_the_prod_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    pn = plan.one("scaleway:network/privateNetwork:PrivateNetwork")
    assert pn.inputs["ipv4Subnet"] == {"subnet": _subnet(raw)}
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
    # The runtime user (readwrite), the migrator (all) and the reader (readonly) of each database.
    expected = {
        (name, f"{user}{suffix}", permission)
        for name, user in declared
        for suffix, permission in (("", "readwrite"), ("_migrator", "all"), ("_reader", "readonly"))
    }
    assert {
        (p.inputs["databaseName"], p.inputs["userName"], p.inputs["permission"]) for p in privileges
    } == expected
    assert sorted(plan.exports["databaseNames"].value) == sorted(name for name, _ in declared)


def test_database_host_is_inside_the_prod_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    host = plan.exports["databaseHost"].value
    assert ipaddress.ip_address(host) in ipaddress.ip_network(_subnet(raw))
    assert plan.exports["databasePort"].value == 5432


def test_exports(plan: runner.Plan, committed_plans: dict[str, runner.Plan]) -> None:
    assert plan.exports["role"].value == "production"
    assert not plan.exports["egressIp"].secret
    # What tooling reads to register prod: one secret export (it carries argocd-manager's token).
    registration = plan.exports[REGISTRATION_KEY]
    assert registration.secret
    assert set(registration.value) == set(REGISTRATION_FIELDS)
    assert registration.value["environment"] == "prod"
    assert registration.value["server"] == plan.exports["apiServerUrl"].value
    # No kubeconfig, from this stack or any other.
    assert exported_kubeconfigs(committed_plans) == []


def test_prod_declares_nothing_outside_its_own_cluster(
    plan: runner.Plan, committed_plans: dict[str, runner.Plan]
) -> None:
    """Prod writes nothing into tooling: every resource is on prod's own cluster provider or a
    default Scaleway/random provider, and there is no provider for tooling's cluster at all."""
    providers = [r for r in plan.registrations if r.type.startswith("pulumi:providers:")]
    assert [(r.name, r.type) for r in providers] == [("prod-k8s", "pulumi:providers:kubernetes")]
    assert "tooling-k8s" not in {r.name for r in plan.registrations}
    own = providers[0].urn
    elsewhere = [
        r.name
        for r in plan.registrations
        if r.custom
        and not r.read
        and not r.type.startswith("pulumi:providers:")
        and r.provider_urn != own
        and not (r.provider_urn == "" and r.type.split(":", 1)[0] in {"scaleway", "random"})
    ]
    assert elsewhere == []
    assert plan.by_type("kubernetes:core/v1:Namespace")  # the check above saw prod's cluster objects
    # The only read is tooling's facts (a StackReference: reading, not writing).
    reads = [(r.type, r.name) for r in plan.registrations if r.read]
    assert reads == [("pulumi:pulumi:StackReference", "organization/platform/tooling")]
    # And nothing prod declares points at tooling's cluster.
    tooling = committed_plans["tooling"].exports
    for key in ("apiServerUrl", "clusterId"):
        assert tooling[key].value not in repr([r.inputs for r in plan.registrations]), key


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

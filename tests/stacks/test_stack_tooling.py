"""The committed tooling stack: network, tooling cluster, private registry, and the CI-push and
registry-pull identities, exporting what the other stacks need."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from offline.mocks import SECRET_MARKER
from program import environments
from scw_platform.contract import REGISTRATION_KEY
from tests.harness import exported_kubeconfigs, is_secret, unwrap

StackConfig = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="module")
def plan(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["tooling"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return runner.read_stack_config("tooling")


def named(plan: runner.Plan, name: str) -> Any:
    found = [r for r in plan.registrations if r.name == name]
    assert len(found) == 1, f"{name}: {len(found)} found"
    return found[0]


def test_role_components(plan: runner.Plan) -> None:
    assert [r.name for r in plan.by_type("platform:network:Network")] == ["tooling"]
    assert [r.name for r in plan.by_type("platform:cluster:KapsuleCluster")] == ["tooling"]
    assert len(plan.by_type("platform:registry:Registry")) == 1
    identities = {r.name for r in plan.by_type("platform:identity:ScopedIdentity")}
    assert "tooling-ci-push" in identities
    # No shared pull identity: each workload environment declares its own.
    assert "tooling-registry-pull" not in identities
    # The database belongs to production only.
    assert plan.by_type("platform:database:ManagedPostgres") == []
    assert plan.by_type("scaleway:databases/instance:Instance") == []


def test_network_uses_the_tooling_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    pn = plan.one("scaleway:network/privateNetwork:PrivateNetwork")
    subnet = environments.load_file().entries[raw["platform:environment"]].subnet
    assert pn.inputs["ipv4Subnet"] == {"subnet": subnet}
    assert plan.one("scaleway:network/publicGateway:PublicGateway").inputs["type"] == "VPC-GW-S"
    cluster = plan.one("scaleway:kubernetes/cluster:Cluster")
    assert cluster.inputs["privateNetworkId"] == pn.id


def test_pools_from_the_stack_file(plan: runner.Plan, raw: dict[str, Any]) -> None:
    pools = {p.inputs["name"]: p for p in plan.by_type("scaleway:kubernetes/pool:Pool")}
    declared = raw["platform:cluster"]["pools"]
    assert set(pools) == {p["name"] for p in declared}
    for spec in declared:
        pool = pools[spec["name"]]
        assert pool.inputs["publicIpDisabled"] is spec.get("publicIpDisabled", True)
        assert pool.inputs["maxSize"] == spec["maxSize"]
        assert pool.inputs["rootVolumeSizeInGb"] == spec["rootVolumeSizeGb"]


def test_registry_is_private_and_protected(plan: runner.Plan, raw: dict[str, Any]) -> None:
    namespace = plan.one("scaleway:registry/namespace:Namespace")
    assert namespace.inputs["name"] == raw["platform:registry"]["namespace"]
    assert namespace.inputs["isPublic"] is False
    assert namespace.protect is True


@pytest.mark.parametrize(
    ("identity", "permission_set"),
    [
        ("tooling-ci-push", "ContainerRegistryFullAccess"),
        ("tooling-image-updater", "ContainerRegistryReadOnly"),
    ],
)
def test_identities_have_one_permission_set_in_the_project(
    plan: runner.Plan, raw: dict[str, Any], identity: str, permission_set: str
) -> None:
    policy = named(plan, f"{identity}-policy")
    assert policy.inputs["rules"] == [
        {"permissionSetNames": [permission_set], "projectIds": [raw["scaleway:projectId"]]}
    ]
    assert policy.parent == named(plan, identity).urn


#: Everything tooling exports. Nothing here acts in tooling: no kubeconfig, no registrar identity.
TOOLING_EXPORTS = {
    "role",
    "environment",
    "vpcId",
    "privateNetworkId",
    "egressIp",
    "clusterId",
    "apiServerUrl",
    "argocdNamespace",
    "registeredEnvironments",
    "pendingEnvironments",
    "ingressIp",
    "ingressIpId",
    "gatewayName",
    "gatewayNamespace",
    "ingressHostnames",
    "registryEndpoint",
    "observabilityBackend",
    "cockpitLogsSource",
    "cockpitMetricsSource",
    "ciNamespace",
    "ciProvider",
    "ciPushAccessKey",
    "ciPushSecretId",
}


def test_exports_for_the_other_stacks(
    plan: runner.Plan, raw: dict[str, Any], committed_plans: dict[str, runner.Plan]
) -> None:
    exports = plan.exports
    assert exports["role"].value == "tooling"

    # No stack exports a kubeconfig (DESIGN.md §5): this one's would be the hub's admin.
    assert set(exports) == TOOLING_EXPORTS
    assert exported_kubeconfigs(committed_plans) == []
    # Every environment tooling manages is deployed in the committed plans: registered, none pending.
    assert exports["registeredEnvironments"].value == environments.load_file().registered_by("tooling")
    assert "prod" in exports["registeredEnvironments"].value
    assert exports["pendingEnvironments"].value == {}

    endpoint = exports["registryEndpoint"]
    assert endpoint.value == f"rg.fr-par.scw.cloud/{raw['platform:registry']['namespace']}"
    assert not endpoint.secret

    egress = exports["egressIp"]
    assert egress.value == plan.one("scaleway:network/publicGatewayIp:PublicGatewayIp").state["address"]
    assert ipaddress.ip_address(egress.value).is_global


def test_tooling_holds_no_shared_registry_pull_key(plan: runner.Plan) -> None:
    """Each workload environment declares its own pull identity (scw_platform.registry): tooling
    neither declares one for them nor exports any registry key; its only registry readers are its
    own (the image updater's)."""
    assert not [r for r in plan.registrations if r.name.startswith("tooling-registry-pull")]
    assert not [key for key in plan.exports if key.startswith("registryPull")]
    readers = [
        r
        for r in plan.by_type("scaleway:iam/policy:Policy")
        if any("ContainerRegistryReadOnly" in rule["permissionSetNames"] for rule in r.inputs["rules"])
    ]
    assert [r.name for r in readers] == ["tooling-image-updater-policy"]
    assert not [
        value for value in plan.exports.values() if value.secret and SECRET_MARKER in str(value.value)
    ]


def test_prod_cluster_secret_comes_from_prods_registration(
    plan: runner.Plan, committed_plans: dict[str, runner.Plan]
) -> None:
    """Tooling builds prod's Argo CD cluster Secret itself, from what prod exported, and from
    nothing else: server, CA and token only (no exec provider), namespaces as registered."""
    registration = committed_plans["prod"].exports[REGISTRATION_KEY].value
    secret = named(plan, "prod-cluster-secret")
    assert secret.parent == named(plan, "prod-cluster").urn
    assert secret.provider_urn == named(plan, "tooling-k8s").urn
    metadata = secret.inputs["metadata"]
    assert metadata["namespace"] == plan.exports["argocdNamespace"].value
    assert metadata["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    assert metadata["annotations"]["platform.scw/source-stack"] == "organization/platform/prod"
    for fact, value in registration["facts"].items():
        assert metadata["annotations"][f"platform.scw/{fact}"] == value, fact

    assert is_secret(secret.inputs["stringData"])  # it carries the token
    data = unwrap(secret.inputs["stringData"])
    assert set(data) == {"name", "server", "namespaces", "clusterResources", "config"}
    assert data["name"] == "prod"
    assert data["server"] == registration["server"]
    assert data["server"] == committed_plans["prod"].exports["apiServerUrl"].value
    assert data["server"] != plan.exports["apiServerUrl"].value  # never tooling's own API
    assert data["namespaces"].split(",") == registration["namespaces"]
    assert data["clusterResources"] == "false"
    config = json.loads(data["config"])
    assert config == {
        "bearerToken": registration["token"],
        "tlsClientConfig": {"insecure": False, "caData": registration["caData"]},
    }

"""The committed dev stack: its network, a small cluster and database, and the same apps as prod
under GitOps (new images land here first). Nothing in it is protected: it may be deleted and
rebuilt at will."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from program import environments
from tests.harness import environments_with, exported_kubeconfigs

NETWORK_TYPES = {
    "platform:network:Network",
    "scaleway:network/vpc:Vpc",
    "scaleway:network/privateNetwork:PrivateNetwork",
    "scaleway:network/publicGatewayIp:PublicGatewayIp",
    "scaleway:network/publicGateway:PublicGateway",
    "scaleway:network/gatewayNetwork:GatewayNetwork",
}


@pytest.fixture(scope="module")
def plan(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["dev"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return runner.read_stack_config("dev")


def test_network_uses_the_dev_subnet(plan: runner.Plan, raw: dict[str, Any]) -> None:
    assert [r.name for r in plan.by_type("platform:network:Network")] == ["dev"]
    pn = plan.one("scaleway:network/privateNetwork:PrivateNetwork")
    subnet = environments.load_file().entries[raw["platform:environment"]].subnet
    assert pn.inputs["ipv4Subnet"] == {"subnet": subnet}


def test_the_subnet_is_the_one_environments_yaml_gives(plan_with: Callable[..., runner.Plan]) -> None:
    """Not a copy in the stack file: change the entry and the network follows."""
    moved = plan_with("dev", environments=environments_with({"dev": {"subnet": "10.31.0.0/20"}}))
    pn = moved.one("scaleway:network/privateNetwork:PrivateNetwork")
    assert pn.inputs["ipv4Subnet"] == {"subnet": "10.31.0.0/20"}


def test_optional_cluster_as_configured(
    plan: runner.Plan, raw: dict[str, Any], committed_plans: dict[str, runner.Plan]
) -> None:
    assert "platform:cluster" in raw, "the committed dev file asks for a cluster"
    cluster = plan.one("scaleway:kubernetes/cluster:Cluster")
    assert cluster.inputs["privateNetworkId"] == plan.one("scaleway:network/privateNetwork:PrivateNetwork").id
    (spec,) = raw["platform:cluster"]["pools"]
    pool = plan.one("scaleway:kubernetes/pool:Pool")
    assert (pool.inputs["nodeType"], pool.inputs["size"]) == (spec["nodeType"], spec["size"])
    # The cluster is reachable by operators through their own IAM identity, never through an
    # export: no stack exports a kubeconfig (DESIGN.md §5).
    assert plan.exports["clusterId"].value == cluster.id
    assert exported_kubeconfigs(committed_plans) == []


def test_a_small_unprotected_database_no_restore_check_and_no_registry(
    plan: runner.Plan, raw: dict[str, Any]
) -> None:
    (instance,) = plan.by_type("scaleway:databases/instance:Instance")
    assert instance.inputs["nodeType"] == raw["platform:database"]["nodeType"] == "DB-DEV-S"
    assert instance.inputs["isHaCluster"] is False
    assert not instance.protect
    assert plan.by_type("platform:backup:RestoreCheck") == []
    assert plan.by_type("platform:registry:Registry") == []


def test_registered_like_prod_with_the_same_apps(
    plan: runner.Plan, committed_plans: dict[str, runner.Plan]
) -> None:
    assert environments.load_file().entries["dev"].managed_by == "tooling"
    assert plan.exports["apps"].value == committed_plans["prod"].exports["apps"].value
    assert "argocdRegistration" in plan.exports


def test_nothing_is_protected(plan: runner.Plan) -> None:
    assert [r.name for r in plan.registrations if r.protect] == []
    assert [r.name for r in plan.registrations if r.retain_on_delete] == []


def test_without_a_cluster_dev_is_a_network_only(plan_with: Callable[..., runner.Plan]) -> None:
    """A development environment may reserve its address space only (and then is not registered)."""
    plan = plan_with(
        "dev",
        remove=(
            "platform:cluster",
            "platform:database",
            "platform:gitops",
            "platform:apps",
            "platform:secrets",
            "platform:ingress",
            "platform:tls",
            "platform:dns",
        ),
        environments=environments_with({"dev": {"managedBy": None}}),
    )
    types = [r.type for r in plan.registrations]
    assert set(types) == NETWORK_TYPES
    assert len(types) == len(NETWORK_TYPES)
    assert "kubeconfig" not in plan.exports
    assert plan.exports["role"].value == "development"
    assert set(plan.exports) >= {"vpcId", "privateNetworkId", "egressIp"}


def test_dev_keeps_nothing(committed_plans: dict[str, runner.Plan]) -> None:
    """Development is rebuilt at will: its network and addresses are not protected."""
    plan = committed_plans["dev"]
    assert not [r.name for r in plan.registrations if r.protect or r.retain_on_delete]

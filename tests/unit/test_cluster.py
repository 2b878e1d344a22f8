"""KapsuleCluster: on the private network, pools as configured, API ACL from config (plus deploy-time
entries), and an explicit Kubernetes provider whose kubeconfig is a secret and which waits for the
pools."""

from __future__ import annotations

from typing import Any, get_args

import pulumi
import pydantic
import pytest

from offline.mocks import SECRET_MARKER
from program import policy
from program.environments import Role
from scw_platform.cluster import ApiAccess, ClusterSettings, KapsuleCluster, KapsuleClusterArgs
from scw_platform.network import Network, NetworkArgs
from scw_platform.settings import ZONES, Region
from tests.harness import Recording, is_secret, record, unwrap

CLUSTER = "scaleway:kubernetes/cluster:Cluster"
POOL = "scaleway:kubernetes/pool:Pool"
ACL = "scaleway:kubernetes/acl:Acl"
K8S_PROVIDER = "pulumi:providers:kubernetes"

SETTINGS: dict[str, Any] = {
    "version": "1.34",
    "cni": "cilium",
    "autoUpgrade": {"enabled": True, "maintenanceWindowDay": "wednesday", "maintenanceWindowStartHour": 4},
    "autoscaler": {"scaleDownUnneededTime": "15m", "expander": "least_waste"},
    "apiAllowedRanges": [
        {"cidr": "203.0.113.0/28", "description": "platform team VPN egress"},
        {"cidr": "198.51.100.7/32", "description": "on-call bastion"},
    ],
    "pools": [
        {
            "name": "apps",
            "nodeType": "PRO2-M",
            "size": 3,
            "minSize": 2,
            "maxSize": 9,
            "rootVolumeType": "sbs_15k",
            "rootVolumeSizeGb": 50,
            "upgradePolicy": {"maxSurge": 2, "maxUnavailable": 0},
        },
        {
            "name": "edge",
            "nodeType": "DEV1-M",
            "size": 1,
            "minSize": 1,
            "maxSize": 2,
            "autoscaling": False,
            "publicIpDisabled": False,
            "rootVolumeType": "sbs_5k",
            "zone": "fr-par-2",
            "labels": {"workload": "edge", "tier": "b"},
        },
    ],
}


def settings(raw: dict[str, Any], role: Role = "development") -> ClusterSettings:
    """The cluster settings as ``role``'s stack parses them (program.policy's refinement)."""
    model: type[ClusterSettings] = policy.models_for(role)["cluster"]
    return model.model_validate(raw, context={"region": "fr-par"})


def build(cluster_settings: ClusterSettings, extra: tuple[str, ...] = ()) -> Recording:
    def program() -> dict[str, Any]:
        network = Network(
            "net",
            NetworkArgs(
                environment="test",
                region="fr-par",
                zone="fr-par-1",
                subnet="10.40.0.0/20",
                gateway_type="VPC-GW-S",
                tags=(),
            ),
        )
        cluster = KapsuleCluster(
            "test",
            KapsuleClusterArgs(
                environment="test",
                region="fr-par",
                zone="fr-par-1",
                private_network_id=network.private_network_id,
                egress=network.egress,
                settings=cluster_settings,
                extra_api_access=[
                    # A deploy-time address (another network's egress) next to a literal one.
                    ApiAccess(cidr=network.egress_ip.apply(lambda ip: f"{ip}/32"), description=name)
                    for name in extra
                ],
                tags=("environment=test",),
            ),
        )
        return {
            "kubeconfig": cluster.kubeconfig,
            "clusterId": cluster.cluster_id,
            "apiserverUrl": cluster.apiserver_url,
            "providerUrn": cluster.provider.urn,
            "egressIp": network.egress_ip,
        }

    return record(program)


@pytest.fixture(scope="module")
def rec() -> Recording:
    return build(settings(SETTINGS), extra=("tooling egress",))


def test_children_are_parented_and_named_after_the_component(rec: Recording) -> None:
    component = rec.named("test")
    assert component.type == "platform:cluster:KapsuleCluster"
    children = rec.children(component)
    assert {c.name for c in children} == {
        "test-cluster",
        "test-pool-apps",
        "test-pool-edge",
        "test-acl",
        "test-k8s",
    }
    # Every resource is either the network's or the cluster component's.
    network = rec.named("net")
    assert {r.parent for r in rec.registrations if r.custom} == {network.urn, component.urn}


def test_cluster_joins_the_private_network_after_egress(rec: Recording) -> None:
    assert [c.name for c in rec.by_type(CLUSTER)] == ["test-cluster"]
    cluster = rec.named("test-cluster")
    assert cluster.inputs["privateNetworkId"] == rec.named("net-pn").id
    assert rec.named("net-gw-net").urn in cluster.dependencies
    assert cluster.inputs["version"] == "1.34"
    assert cluster.inputs["cni"] == "cilium"
    assert cluster.inputs["type"] == "kapsule"
    assert cluster.inputs["deleteAdditionalResources"] is True
    assert cluster.inputs["autoUpgrade"] == {
        "enable": True,
        "maintenanceWindowDay": "wednesday",
        "maintenanceWindowStartHour": 4,
    }
    autoscaler = cluster.inputs["autoscalerConfig"]
    assert autoscaler["scaleDownUnneededTime"] == "15m"
    assert autoscaler["expander"] == "least_waste"
    assert autoscaler["scaleDownDelayAfterAdd"] == "10m"  # a default from the config model


def test_pools_as_configured(rec: Recording) -> None:
    cluster = rec.named("test-cluster")
    apps, edge = rec.named("test-pool-apps"), rec.named("test-pool-edge")
    for pool in (apps, edge):
        assert pool.inputs["clusterId"] == cluster.id
        assert pool.inputs["autohealing"] is True
        # Nodes without public IPs need the gateway's default route before they boot.
        assert rec.named("net-gw-net").urn in pool.dependencies

    assert apps.inputs["publicIpDisabled"] is True  # the config default
    assert edge.inputs["publicIpDisabled"] is False  # as configured (development only)
    assert (apps.inputs["minSize"], apps.inputs["size"], apps.inputs["maxSize"]) == (2, 3, 9)
    assert (edge.inputs["minSize"], edge.inputs["size"], edge.inputs["maxSize"]) == (1, 1, 2)
    assert apps.inputs["autoscaling"] is True
    assert edge.inputs["autoscaling"] is False
    assert apps.inputs["nodeType"] == "PRO2-M"
    assert apps.inputs["rootVolumeType"] == "sbs_15k"
    assert edge.inputs["rootVolumeType"] == "sbs_5k"
    assert apps.inputs["rootVolumeSizeInGb"] == 50
    assert apps.inputs["upgradePolicy"] == {"maxSurge": 2, "maxUnavailable": 0}
    assert apps.inputs["zone"] == "fr-par-1"  # the stack's zone unless the pool names one
    assert edge.inputs["zone"] == "fr-par-2"
    assert edge.inputs["tags"] == ["environment=test", "tier=b", "workload=edge"]


def test_acl_rules_from_config_and_deploy_time_entries(rec: Recording) -> None:
    acl = rec.named("test-acl")
    assert acl.inputs["clusterId"] == rec.named("test-cluster").id
    assert acl.inputs["aclRules"] == [
        {"ip": "203.0.113.0/28", "description": "platform team VPN egress"},
        {"ip": "198.51.100.7/32", "description": "on-call bastion"},
        {"ip": f"{rec.outputs['egressIp'].value}/32", "description": "tooling egress"},
    ]


def test_no_acl_resource_when_nothing_is_listed() -> None:
    raw = {**SETTINGS, "apiAllowedRanges": []}
    rec = build(settings(raw))
    assert rec.by_type(ACL) == []


def test_provider_kubeconfig_is_secret_and_waits_for_pools(rec: Recording) -> None:
    provider = rec.named("test-k8s")
    assert provider.type == K8S_PROVIDER
    assert provider.parent == rec.named("test").urn
    kubeconfig = provider.inputs["kubeconfig"]
    assert is_secret(kubeconfig)
    # It is the cluster's own kubeconfig, not something else that happens to be secret.
    cluster_kubeconfig = unwrap(rec.named("test-cluster").state["kubeconfigs"])[0]["configFile"]
    assert unwrap(kubeconfig) == cluster_kubeconfig
    assert SECRET_MARKER in cluster_kubeconfig
    pools = {rec.named("test-pool-apps").urn, rec.named("test-pool-edge").urn}
    assert pools <= set(provider.dependencies)
    assert rec.outputs["providerUrn"].value == provider.urn


def test_kubeconfig_output_is_secret(rec: Recording) -> None:
    kubeconfig = rec.outputs["kubeconfig"]
    assert kubeconfig.secret
    assert "apiVersion: v1" in kubeconfig.value
    assert rec.outputs["apiserverUrl"].value.startswith("https://")
    assert not rec.outputs["apiserverUrl"].secret


def test_production_settings_refuse_public_pools() -> None:
    """The component trusts validated settings; the validation is what keeps production private."""
    raw = {**SETTINGS, "pools": [SETTINGS["pools"][1]]}
    with pytest.raises(Exception, match="must be true for role production"):
        settings(raw, role="production")


# --- zones ------------------------------------------------------------------------------------


def _pool(name: str, zone: str | None = None) -> dict[str, Any]:
    pool = {"name": name, "nodeType": "PRO2-M", "size": 2, "minSize": 2, "maxSize": 4}
    return {**pool, "zone": zone} if zone is not None else pool


def _problems(raw: dict[str, Any], role: Role = "production", region: str = "fr-par") -> str:
    model: type[ClusterSettings] = policy.models_for(role)["cluster"]
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(raw, context={"region": region})
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors())


def test_the_zone_table_is_the_sdks() -> None:
    """settings.ZONES is copied from Scaleway's SDK (scaleway-core's ALL_ZONES): the two must agree."""
    sdk = pytest.importorskip("scaleway_core.bridge.zone")
    assert sorted(zone for zones in ZONES.values() for zone in zones) == sorted(sdk.ALL_ZONES)
    assert all(zone.startswith(f"{region}-") for region, zones in ZONES.items() for zone in zones)
    assert set(ZONES) == set(get_args(Region))


def test_a_zone_outside_the_region_is_refused_with_the_regions_zones() -> None:
    raw = {**SETTINGS, "pools": [_pool("apps", "nl-ams-1")]}
    assert _problems(raw, role="development") == (
        "pools.0.zone: Value error, must be a zone of region fr-par (fr-par-1, fr-par-2, fr-par-3), "
        "got 'nl-ams-1'"
    )


def test_pl_waw_has_two_zones_only() -> None:
    """The SDK lists pl-waw-1 and pl-waw-2; the old ``<region>-[1-3]`` pattern let pl-waw-3 through."""
    raw = {**SETTINGS, "pools": [_pool("apps", "pl-waw-3")]}
    problems = _problems(raw, role="development", region="pl-waw")
    assert "must be a zone of region pl-waw (pl-waw-1, pl-waw-2), got 'pl-waw-3'" in problems
    ok = ClusterSettings.model_validate(
        {**SETTINGS, "pools": [_pool("apps", "pl-waw-2")]}, context={"region": "pl-waw"}
    )
    assert ok.pools[0].zone == "pl-waw-2"


def test_production_pools_in_one_zone_are_refused() -> None:
    raw = {**SETTINGS, "pools": [_pool("apps", "fr-par-1"), _pool("apps-b", "fr-par-1")]}
    problems = _problems(raw)
    assert problems.startswith("pools: Value error, must span at least 2 zones for role production")
    assert "got only fr-par-1: give such a pool another zone of fr-par-1, fr-par-2, fr-par-3" in problems


def test_a_tainted_pool_does_not_count_as_a_zone_for_the_apps() -> None:
    builders = {
        **_pool("builders", "fr-par-2"),
        "taints": [{"key": "platform.scw/pool", "value": "builders", "effect": "NoSchedule"}],
    }
    problems = _problems({**SETTINGS, "pools": [_pool("apps", "fr-par-1"), builders]})
    assert "got only fr-par-1" in problems


def test_production_pools_name_their_zone() -> None:
    """A pool without a zone follows scaleway:zone, which the settings cannot see: production names it."""
    raw = {**SETTINGS, "pools": [_pool("apps"), _pool("apps-b", "fr-par-2")]}
    assert _problems(raw) == (
        "pools.0.zone: Value error, required for role production: one of fr-par-1, fr-par-2, fr-par-3, "
        "the pools together in at least 2 (without it a pool follows scaleway:zone)"
    )


def test_production_pools_in_two_zones_pass_and_other_roles_may_use_one() -> None:
    two = settings(
        {**SETTINGS, "pools": [_pool("apps", "fr-par-1"), _pool("apps-b", "fr-par-3")]}, "production"
    )
    assert {pool.zone for pool in two.pools} == {"fr-par-1", "fr-par-3"}
    for role in ("tooling", "development"):
        one = settings({**SETTINGS, "pools": [_pool("apps")]}, role)
        assert one.pools[0].zone is None  # the stack's scaleway:zone


def test_component_accepts_an_output_as_private_network() -> None:
    """``private_network_id`` may be any Input (e.g. from a StackReference), not only an Output."""

    def program() -> dict[str, Any]:
        network = Network(
            "n",
            NetworkArgs(
                environment="x",
                region="fr-par",
                zone="fr-par-1",
                subnet="10.50.0.0/20",
                gateway_type="VPC-GW-S",
                tags=(),
            ),
        )
        cluster = KapsuleCluster(
            "x",
            KapsuleClusterArgs(
                environment="x",
                region="fr-par",
                zone="fr-par-1",
                private_network_id=pulumi.Output.from_input("fr-par/00000000-0000-0000-0000-000000000001"),
                egress=network.egress,
                settings=settings({**SETTINGS, "apiAllowedRanges": []}),
            ),
        )
        return {"id": cluster.cluster_id}

    rec = record(program)
    assert rec.named("x-cluster").inputs["privateNetworkId"] == "fr-par/00000000-0000-0000-0000-000000000001"

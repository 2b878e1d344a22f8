"""Network: VPC, private network on the configured subnet, and a Public Gateway that is the
environment's only way out (masquerade + default route pushed over IPAM, no SSH bastion)."""

from __future__ import annotations

import ipaddress

import pytest

from scw_platform.network import Network, NetworkArgs
from tests.harness import Recording, record

ARGS = NetworkArgs(
    environment="prod",
    region="fr-par",
    zone="fr-par-1",
    subnet="10.20.0.0/20",
    gateway_type="VPC-GW-M",
    tags=("platform=platform", "environment=prod", "role=production"),
)

VPC = "scaleway:network/vpc:Vpc"
PN = "scaleway:network/privateNetwork:PrivateNetwork"
GW_IP = "scaleway:network/publicGatewayIp:PublicGatewayIp"
GW = "scaleway:network/publicGateway:PublicGateway"
GW_NET = "scaleway:network/gatewayNetwork:GatewayNetwork"


def build(name: str, args: NetworkArgs) -> Recording:
    def program() -> dict[str, object]:
        network = Network(name, args)
        return {
            "vpcId": network.vpc_id,
            "privateNetworkId": network.private_network_id,
            "egressIp": network.egress_ip,
            "egressUrn": network.egress.urn,
        }

    return record(program)


@pytest.fixture(scope="module")
def rec() -> Recording:
    return build("prod", ARGS)


def test_component_and_children_names(rec: Recording) -> None:
    component = rec.named("prod")
    assert component.type == "platform:network:Network"
    assert not component.custom
    children = rec.children(component)
    assert {(c.name, c.type) for c in children} == {
        ("prod-vpc", VPC),
        ("prod-pn", PN),
        ("prod-gw-ip", GW_IP),
        ("prod-gw", GW),
        ("prod-gw-net", GW_NET),
    }
    # Nothing escapes the component.
    assert len(rec.registrations) == len(children) + 1


def test_private_network_uses_the_subnet_inside_the_vpc(rec: Recording) -> None:
    vpc, pn = rec.named("prod-vpc"), rec.named("prod-pn")
    assert pn.inputs["ipv4Subnet"] == {"subnet": "10.20.0.0/20"}
    assert pn.inputs["vpcId"] == vpc.id
    assert pn.inputs["region"] == vpc.inputs["region"] == "fr-par"
    assert rec.outputs["vpcId"].value == vpc.id
    assert rec.outputs["privateNetworkId"].value == pn.id


def test_gateway_network_masquerades_and_pushes_default_route(rec: Recording) -> None:
    gw_net = rec.named("prod-gw-net")
    assert gw_net.inputs["enableMasquerade"] is True
    assert gw_net.inputs["ipamConfigs"] == [{"pushDefaultRoute": True}]
    assert gw_net.inputs["gatewayId"] == rec.named("prod-gw").id
    assert gw_net.inputs["privateNetworkId"] == rec.named("prod-pn").id
    # The network's egress handle is the gateway network: nodes wait for their default route.
    assert rec.outputs["egressUrn"].value == gw_net.urn


def test_public_gateway_has_own_ip_and_no_bastion(rec: Recording) -> None:
    gw, gw_ip = rec.named("prod-gw"), rec.named("prod-gw-ip")
    assert gw.inputs["bastionEnabled"] is False
    assert gw.inputs["type"] == "VPC-GW-M"
    assert gw.inputs["ipId"] == gw_ip.id
    assert gw.inputs["zone"] == gw_ip.inputs["zone"] == "fr-par-1"
    egress = rec.outputs["egressIp"]
    assert egress.value == gw_ip.state["address"]
    assert ipaddress.ip_address(egress.value).is_global
    assert not egress.secret


def test_tags_on_every_taggable_child(rec: Recording) -> None:
    for name in ("prod-vpc", "prod-pn", "prod-gw-ip", "prod-gw"):
        assert rec.named(name).inputs["tags"] == list(ARGS.tags), name


def test_settings_follow_the_args() -> None:
    """A second environment gets its own names, subnet and gateway size (nothing is hard-coded)."""
    rec = build(
        "dev",
        NetworkArgs(
            environment="dev",
            region="nl-ams",
            zone="nl-ams-2",
            subnet="10.30.0.0/20",
            gateway_type="VPC-GW-S",
            tags=(),
        ),
    )
    assert rec.named("dev-pn").inputs["ipv4Subnet"] == {"subnet": "10.30.0.0/20"}
    assert rec.named("dev-pn").inputs["name"] == "dev-pn"
    assert rec.named("dev-gw").inputs["type"] == "VPC-GW-S"
    assert rec.named("dev-gw").inputs["zone"] == "nl-ams-2"
    assert rec.named("dev-vpc").inputs["region"] == "nl-ams"

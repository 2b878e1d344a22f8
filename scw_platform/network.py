"""One environment's network: VPC, private network, and a Public Gateway for egress.

Nodes run without public IPs; the gateway network masquerades their traffic and pushes the
default route over IPAM, so the gateway's IP is the environment's single egress address (the one
other clusters' API ACLs admit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumiverse_scaleway as scaleway
from pydantic import Field, field_validator

from scw_platform.settings import Settings, catalogued

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:network).
# --------------------------------------------------------------------------------------------


class NetworkSettings(Settings):
    public_gateway_type: str = Field(default="VPC-GW-S", validate_default=True)
    """Public Gateway commercial type (catalogue: publicGatewayTypes). The gateway's IP is the
    environment's single egress address.
    """

    @field_validator("public_gateway_type")
    @classmethod
    def _gateway_type(cls, name: str) -> str:
        return catalogued("publicGatewayTypes", name)


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    environment: str
    region: str
    zone: str
    subnet: str
    gateway_type: str
    tags: Sequence[str]
    #: Protect the private network and the egress IP (every role but development).
    protect: bool = False


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_network_id: pulumi.Output[str]
    egress_ip: pulumi.Output[str]
    #: The resource that gives the private network its route out; depend on it before booting
    #: nodes that have no public IP.
    egress: pulumi.Resource

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:network:Network", name, None, opts)
        tags = list(args.tags)
        vpc, private_network = self._private_network(name, args, tags)
        gateway_ip, gateway_network = self._egress(name, args, tags, private_network)

        self.vpc_id = vpc.id
        self.private_network_id = private_network.id
        self.egress_ip = gateway_ip.address
        self.egress = gateway_network
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateNetworkId": self.private_network_id,
                "egressIp": self.egress_ip,
            }
        )

    def _private_network(
        self, name: str, args: NetworkArgs, tags: list[str]
    ) -> tuple[scaleway.network.Vpc, scaleway.network.PrivateNetwork]:
        """Declare the VPC and its private network: the address space nodes and the database share."""
        vpc = scaleway.network.Vpc(
            f"{name}-vpc",
            name=f"{args.environment}-vpc",
            region=args.region,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        private_network = scaleway.network.PrivateNetwork(
            f"{name}-pn",
            name=f"{args.environment}-pn",
            vpc_id=vpc.id,
            region=args.region,
            ipv4_subnet={"subnet": args.subnet},
            tags=tags,
            # Replacing it replaces the cluster and detaches the database.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        return vpc, private_network

    def _egress(
        self,
        name: str,
        args: NetworkArgs,
        tags: list[str],
        private_network: scaleway.network.PrivateNetwork,
    ) -> tuple[scaleway.network.PublicGatewayIp, scaleway.network.GatewayNetwork]:
        """Declare the Public Gateway, its IP and its attachment: the private network's only way out.

        Returns the egress IP and the gateway network (the resource that pushes the default route).
        """
        child = pulumi.ResourceOptions(parent=self)
        gateway_ip = scaleway.network.PublicGatewayIp(
            f"{name}-gw-ip",
            zone=args.zone,
            tags=tags,
            # Other clusters' API ACLs and third parties allow-list this address: it must outlive a
            # mistaken replacement or a destroyed stack, like the ingress IP.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
        )
        gateway = scaleway.network.PublicGateway(
            f"{name}-gw",
            name=f"{args.environment}-gw",
            type=args.gateway_type,
            ip_id=gateway_ip.id,
            zone=args.zone,
            # No SSH bastion: nodes are managed by Kapsule, nobody logs into them.
            bastion_enabled=False,
            tags=tags,
            opts=child,
        )
        gateway_network = scaleway.network.GatewayNetwork(
            f"{name}-gw-net",
            gateway_id=gateway.id,
            private_network_id=private_network.id,
            enable_masquerade=True,
            ipam_configs=[{"push_default_route": True}],
            zone=args.zone,
            opts=child,
        )
        return gateway_ip, gateway_network

"""A minimal program of another organisation on the scw_platform library.

No environments.yaml, no roles, no policy of the platform program's: this organisation reads its
own keys (``shop:*``), validates them with the library's settings models and composes three
components. ``build`` is separate from the config read so that tests plan it under mocks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pulumi

from scw_platform.cluster import ClusterSettings, KapsuleCluster, KapsuleClusterArgs
from scw_platform.database import DatabaseSettings, ManagedPostgres, ManagedPostgresArgs
from scw_platform.network import Network, NetworkArgs, NetworkSettings
from scw_platform.settings import DEFAULT_ZONE, Settings


class ShopConfig(Settings):
    """This organisation's stack settings: the library's models, composed its own way."""

    environment: str
    """Names every resource and tag."""
    region: str
    zone: str
    subnet: ipaddress.IPv4Network
    """The environment's private network."""
    network: NetworkSettings = NetworkSettings()
    cluster: ClusterSettings
    database: DatabaseSettings


def read_config() -> ShopConfig:
    """The stack's ``shop:*`` and ``scaleway:*`` keys, validated (a bad key fails with its path)."""
    shop, scw = pulumi.Config("shop"), pulumi.Config("scaleway")
    region = scw.require("region")
    return ShopConfig.model_validate(
        {
            "environment": shop.require("environment"),
            "region": region,
            "zone": scw.get("zone") or DEFAULT_ZONE[region],
            "subnet": shop.require("subnet"),
            "cluster": shop.require_object("cluster"),
            "database": shop.require_object("database"),
        },
        context={"region": region},
    )


def build(cfg: ShopConfig) -> dict[str, Any]:
    """The environment: its network, a Kapsule cluster on it and a private PostgreSQL."""
    tags = [f"environment={cfg.environment}", "owner=shop"]
    network = Network(
        cfg.environment,
        NetworkArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.zone,
            subnet=str(cfg.subnet),
            gateway_type=cfg.network.public_gateway_type,
            protect=True,
            tags=tags,
        ),
    )
    cluster = KapsuleCluster(
        cfg.environment,
        KapsuleClusterArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.zone,
            private_network_id=network.private_network_id,
            egress=network.egress,
            own_egress_ip=network.egress_ip,
            settings=cfg.cluster,
            tags=tags,
        ),
    )
    database = ManagedPostgres(
        f"{cfg.environment}-postgres",
        ManagedPostgresArgs(
            environment=cfg.environment,
            region=cfg.region,
            # Private endpoints work only in the region's default zone.
            zone=DEFAULT_ZONE[cfg.region],
            private_network_id=network.private_network_id,
            settings=cfg.database,
            protect=True,
            tags=tags,
        ),
    )
    return {"clusterId": cluster.cluster_id, "egressIp": network.egress_ip, "databaseHost": database.host}


if __name__ == "__main__":
    for key, value in build(read_config()).items():
        pulumi.export(key, value)

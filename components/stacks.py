"""Composition: which components each role gets, wired together. Returns the stack's exports.

tooling     network + tooling cluster + registry + CI-push and cluster-pull identities
production  network + production cluster + managed PostgreSQL
development network (a reserved address space) + an optional small cluster
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from components.cluster import KapsuleCluster, KapsuleClusterArgs
from components.config import PlatformConfig
from components.database import ManagedPostgres, ManagedPostgresArgs
from components.identity import ScopedIdentity, ScopedIdentityArgs
from components.network import Network, NetworkArgs
from components.registry import Registry, RegistryArgs

Exports = dict[str, Any]


def build(cfg: PlatformConfig) -> Exports:
    builders: dict[str, Callable[[PlatformConfig], Exports]] = {
        "tooling": _tooling,
        "production": _production,
        "development": _development,
    }
    return builders[cfg.role](cfg)


def _network(cfg: PlatformConfig) -> Network:
    return Network(
        cfg.environment,
        NetworkArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.zone,
            subnet=str(cfg.subnet),
            gateway_type=cfg.network.public_gateway_type,
            tags=cfg.tags,
        ),
    )


def _cluster(cfg: PlatformConfig, network: Network) -> KapsuleCluster:
    assert cfg.cluster is not None
    return KapsuleCluster(
        cfg.environment,
        KapsuleClusterArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.zone,
            private_network_id=network.private_network_id,
            egress=network.egress,
            settings=cfg.cluster,
            tags=cfg.tags,
        ),
    )


def _network_exports(network: Network) -> Exports:
    return {
        "vpcId": network.vpc_id,
        "privateNetworkId": network.private_network_id,
        "egressIp": network.egress_ip,
    }


def _cluster_exports(cluster: KapsuleCluster) -> Exports:
    return {
        "clusterId": cluster.cluster_id,
        "apiServerUrl": cluster.apiserver_url,
        "kubeconfig": cluster.kubeconfig,
    }


def _tooling(cfg: PlatformConfig) -> Exports:
    assert cfg.registry is not None
    network = _network(cfg)
    cluster = _cluster(cfg, network)
    registry = Registry(
        "registry",
        RegistryArgs(namespace=cfg.registry.namespace, region=cfg.region, protect=cfg.protect_stateful),
    )
    ci_push = ScopedIdentity(
        f"{cfg.environment}-ci-push",
        ScopedIdentityArgs(
            description="CI pipeline: pushes images to the platform registry",
            project_id=cfg.project_id,
            permission_sets=["ContainerRegistryFullAccess"],
            tags=cfg.tags,
        ),
    )
    pull = ScopedIdentity(
        f"{cfg.environment}-registry-pull",
        ScopedIdentityArgs(
            description="Clusters: pull images from the platform registry",
            project_id=cfg.project_id,
            permission_sets=["ContainerRegistryReadOnly"],
            tags=cfg.tags,
        ),
    )
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "registryEndpoint": registry.endpoint,
        "ciPushAccessKey": ci_push.access_key,
        "ciPushSecretKey": ci_push.secret_key,
        "registryPullAccessKey": pull.access_key,
        "registryPullSecretKey": pull.secret_key,
    }


def _production(cfg: PlatformConfig) -> Exports:
    assert cfg.database is not None
    network = _network(cfg)
    cluster = _cluster(cfg, network)
    database = ManagedPostgres(
        f"{cfg.environment}-postgres",
        ManagedPostgresArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.database_zone,
            private_network_id=network.private_network_id,
            settings=cfg.database,
            protect=cfg.protect_stateful,
            tags=cfg.tags,
        ),
    )
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "databaseHost": database.host,
        "databasePort": database.port,
        "databaseNames": sorted(database.credentials),
    }


def _development(cfg: PlatformConfig) -> Exports:
    network = _network(cfg)
    exports: Exports = {"role": cfg.role, "environment": cfg.environment, **_network_exports(network)}
    if cfg.cluster is not None:
        exports.update(_cluster_exports(_cluster(cfg, network)))
    return exports


def export_all(exports: Exports) -> None:
    for key, value in exports.items():
        pulumi.export(key, value)

"""Composition: which components each role gets, wired together. Returns the stack's exports.

tooling     network + tooling cluster + registry + CI-push and cluster-pull identities
production  network + production cluster + managed PostgreSQL
development network (a reserved address space) + an optional small cluster
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ApiAccess, KapsuleCluster, KapsuleClusterArgs
from components.config import PlatformConfig
from components.database import ManagedPostgres, ManagedPostgresArgs
from components.gitops import (
    ArgoCd,
    ArgoCdArgs,
    ClusterRegistration,
    ClusterRegistrationArgs,
    EnvironmentProject,
    EnvironmentProjectArgs,
    ImageUpdateTarget,
    OidcSettings,
    RegistryAccess,
)
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


def _cluster(
    cfg: PlatformConfig, network: Network, extra_api_access: tuple[ApiAccess, ...] = ()
) -> KapsuleCluster:
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
            extra_api_access=extra_api_access,
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
    argocd = _argocd(cfg, cluster)
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "argocdNamespace": argocd.namespace,
        "registryEndpoint": registry.endpoint,
        "ciPushAccessKey": ci_push.access_key,
        "ciPushSecretKey": ci_push.secret_key,
        "registryPullAccessKey": pull.access_key,
        "registryPullSecretKey": pull.secret_key,
    }


def _production(cfg: PlatformConfig) -> Exports:
    assert cfg.database is not None
    network = _network(cfg)
    tooling = _ToolingReference(cfg) if cfg.gitops is not None else None
    cluster = _cluster(cfg, network, tooling.api_access if tooling else ())
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
    if tooling is not None:
        _register_with_tooling(
            cfg,
            cluster,
            tooling,
            facts={"database-host": database.host, "registry-endpoint": tooling.registry_endpoint},
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
        tooling = _ToolingReference(cfg) if cfg.gitops is not None else None
        cluster = _cluster(cfg, network, tooling.api_access if tooling else ())
        if tooling is not None:
            _register_with_tooling(
                cfg, cluster, tooling, facts={"registry-endpoint": tooling.registry_endpoint}
            )
        exports.update(_cluster_exports(cluster))
    return exports


# --- GitOps wiring --------------------------------------------------------------------------------


def _argocd(cfg: PlatformConfig, cluster: KapsuleCluster) -> ArgoCd:
    """Argo CD and the image updater in tooling, plus tooling's own project."""
    gitops = cfg.gitops
    assert gitops is not None and gitops.argocd is not None
    updater_identity = ScopedIdentity(
        f"{cfg.environment}-image-updater",
        ScopedIdentityArgs(
            description="Argo CD image updater: reads tags from the platform registry",
            project_id=cfg.project_id,
            permission_sets=["ContainerRegistryReadOnly"],
            tags=cfg.tags,
        ),
    )
    oidc = gitops.argocd.oidc
    argocd = ArgoCd(
        "argocd",
        ArgoCdArgs(
            provider=cluster.provider,
            hostname=gitops.argocd.hostname,
            ha=gitops.argocd.ha,
            repo_url=gitops.repo_url,
            repo_username=gitops.repo_username,
            repo_uses_ssh=gitops.uses_ssh,
            repo_credential=cfg.secret("gitopsRepoCredential"),
            target_revision=gitops.target_revision,
            environments={env: gitops.path_for(env) for env in gitops.environments},
            registry=RegistryAccess(
                endpoint=f"rg.{cfg.region}.scw.cloud",
                region=cfg.region,
                secret_key=updater_identity.secret_key,
            ),
            commit_author_name=gitops.image_updater.commit_author.name,
            commit_author_email=gitops.image_updater.commit_author.email,
            oidc=OidcSettings(
                issuer=oidc.issuer,
                client_id=oidc.client_id,
                client_secret=cfg.secret("argocdOidcClientSecret"),
                admin_groups=tuple(oidc.admin_groups),
            )
            if oidc is not None
            else None,
        ),
    )
    EnvironmentProject(
        f"{cfg.environment}-gitops",
        EnvironmentProjectArgs(
            environment=cfg.environment,
            tooling_provider=cluster.provider,
            repo_url=gitops.repo_url,
            target_revision=gitops.target_revision,
            cluster_name="in-cluster",
            namespaces=tuple(gitops.namespaces),
            write_back_branch=gitops.image_updater.write_back_branch,
            depends_on=(argocd.release,),
        ),
    )
    return argocd


class _ToolingReference:
    """What a workload stack reads from the tooling stack, and the provider to reach its cluster."""

    def __init__(self, cfg: PlatformConfig) -> None:
        assert cfg.gitops is not None and cfg.gitops.tooling_stack is not None
        reference = pulumi.StackReference(cfg.gitops.tooling_stack)
        self.registry_endpoint = pulumi.Output.from_input(reference.require_output("registryEndpoint")).apply(
            str
        )
        egress_ip = pulumi.Output.from_input(reference.require_output("egressIp")).apply(str)
        # Tooling's Argo CD reaches this cluster's API from tooling's single egress address.
        self.api_access = (
            ApiAccess(cidr=egress_ip.apply(lambda ip: f"{ip}/32"), description="tooling Argo CD egress"),
        )
        self.provider = k8s.Provider(
            "tooling-k8s",
            kubeconfig=pulumi.Output.secret(reference.require_output("kubeconfig")).apply(str),
        )


def _register_with_tooling(
    cfg: PlatformConfig,
    cluster: KapsuleCluster,
    tooling: _ToolingReference,
    facts: dict[str, pulumi.Input[str]],
) -> None:
    gitops = cfg.gitops
    assert gitops is not None
    namespaces = tuple(sorted({*gitops.namespaces, *(app.name for app in cfg.apps)}))
    registration = ClusterRegistration(
        f"{cfg.environment}-registration",
        ClusterRegistrationArgs(
            environment=cfg.environment,
            provider=cluster.provider,
            tooling_provider=tooling.provider,
            server_url=cluster.apiserver_url,
            ca_data=cluster.ca_certificate,
            namespaces=namespaces,
            facts={"environment": cfg.environment, **facts},
        ),
    )
    images = {app.name: app.image for app in cfg.apps}
    EnvironmentProject(
        f"{cfg.environment}-gitops",
        EnvironmentProjectArgs(
            environment=cfg.environment,
            tooling_provider=tooling.provider,
            repo_url=gitops.repo_url,
            target_revision=gitops.target_revision,
            cluster_name=registration.cluster_name,
            namespaces=namespaces,
            image_updates=tuple(
                ImageUpdateTarget(
                    app=u.app, image=images[u.app], strategy=u.strategy, allow_tags=u.allow_tags
                )
                for u in gitops.image_updates
            ),
            write_back_branch=gitops.image_updater.write_back_branch,
            depends_on=(registration,),
        ),
    )


def export_all(exports: Exports) -> None:
    for key, value in exports.items():
        pulumi.export(key, value)

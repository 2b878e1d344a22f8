"""Composition: which components each role gets, wired together. Returns the stack's exports.

tooling     network + tooling cluster + registry + CI-push and cluster-pull identities
production  network + production cluster + managed PostgreSQL
development network (a reserved address space) + an optional small cluster

Every role with a cluster and ``platform:ingress`` also gets the front door (reserved IP, Traefik,
the platform Gateway, cert-manager, DNS): see ``components.ingress``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway

from components import labels
from components.apps import App, AppArgs, AppDatabase, AppDelivery, AppGateway, AppVault
from components.backup import RegistryPull, RestoreCheck, RestoreCheckArgs
from components.cluster import ApiAccess, KapsuleCluster, KapsuleClusterArgs
from components.config import PlatformConfig
from components.database import ManagedPostgres, ManagedPostgresArgs
from components.gitops import (
    ARGOCD_NAMESPACE,
    ArgoCd,
    ArgoCdArgs,
    ClusterRegistration,
    ClusterRegistrationArgs,
    EnvironmentProject,
    EnvironmentProjectArgs,
    GatewayParent,
    ImageUpdateTarget,
    OidcSettings,
    Registrar,
    RegistrarArgs,
    RegistryAccess,
)
from components.identity import ScopedIdentity, ScopedIdentityArgs
from components.ingress import (
    TRAEFIK_NAMESPACE,
    DnsZone,
    FrontDoor,
    FrontDoorArgs,
    hostnames_by_kind,
)
from components.network import Network, NetworkArgs
from components.observability import Observability, ObservabilityArgs
from components.registry import Registry, RegistryArgs
from components.secrets import OnePasswordStore, SecretsOperator, SecretsOperatorArgs

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
            protect=cfg.protect_stateful,
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
            own_egress_ip=network.egress_ip,
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
    front_door = _front_door(cfg, cluster)
    _secrets_operator(cfg, cluster)
    argocd = _argocd(cfg, cluster, front_door)
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "argocdNamespace": argocd.namespace,
        "registrarKubeconfigs": _registrars(cfg, cluster, argocd),
        **_front_door_exports(front_door),
        "registryEndpoint": registry.endpoint,
        **_operations(cfg, cluster),
        "ciPushAccessKey": ci_push.access_key,
        # Not the key itself: every StackReference to tooling could read an export.
        "ciPushSecretId": _ci_push_secret(cfg, ci_push).id,
        "registryPullAccessKey": pull.access_key,
        "registryPullSecretKey": pull.secret_key,
    }


#: Where CI reads the registry push key: Scaleway Secret Manager, folder and secret name.
CI_PUSH_SECRET_PATH = "/platform/ci"
CI_PUSH_SECRET_NAME = "registry-push"


def _ci_push_secret(cfg: PlatformConfig, ci_push: ScopedIdentity) -> scaleway.secrets.Secret:
    """The CI push identity's secret key in Scaleway Secret Manager (registry write access)."""
    secret = scaleway.secrets.Secret(
        f"{cfg.environment}-ci-push-secret",
        name=CI_PUSH_SECRET_NAME,
        path=CI_PUSH_SECRET_PATH,
        description="CI pipeline's registry push key (secret key of the ci-push IAM application)",
        project_id=cfg.project_id,
        region=cfg.region,
        tags=[*cfg.tags, "ci"],
    )
    key: pulumi.Output[str] = pulumi.Output.secret(ci_push.secret_key)
    scaleway.secrets.Version(
        f"{cfg.environment}-ci-push-secret-version",
        secret_id=secret.id,
        data=key,
        description="written by the platform program",
        region=cfg.region,
    )
    return secret


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
    front_door = _front_door(cfg, cluster)
    secrets = _secrets_operator(cfg, cluster)
    apps = _apps(cfg, cluster, secrets, front_door, tooling, database)
    if tooling is not None:
        facts: dict[str, pulumi.Input[str]] = {
            "database-host": database.host,
            "registry-endpoint": tooling.registry_endpoint,
        }
        if front_door is not None:
            facts["ingress-ip"] = front_door.ip_address
        delivery = _register_with_tooling(cfg, cluster, tooling, facts=facts, apps=apps)
        for app in apps:
            app.deliver(delivery)
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "databaseHost": database.host,
        "databasePort": database.port,
        "databaseNames": sorted(database.credentials),
        **_front_door_exports(front_door),
        "apps": [app.name for app in apps],
        "secretsBackend": secrets.backend,
        **_operations(cfg, cluster, database, tooling),
    }


def _development(cfg: PlatformConfig) -> Exports:
    network = _network(cfg)
    exports: Exports = {"role": cfg.role, "environment": cfg.environment, **_network_exports(network)}
    if cfg.cluster is not None:
        tooling = _ToolingReference(cfg) if cfg.gitops is not None else None
        cluster = _cluster(cfg, network, tooling.api_access if tooling else ())
        front_door = _front_door(cfg, cluster)
        secrets = _secrets_operator(cfg, cluster)
        apps = _apps(cfg, cluster, secrets, front_door, tooling, None)
        if tooling is not None:
            delivery = _register_with_tooling(
                cfg, cluster, tooling, facts={"registry-endpoint": tooling.registry_endpoint}, apps=apps
            )
            for app in apps:
                app.deliver(delivery)
        exports.update(_cluster_exports(cluster))
        exports.update(_front_door_exports(front_door))
        exports["secretsBackend"] = secrets.backend
        exports.update(_operations(cfg, cluster, None, tooling))
    return exports


# --- Front door ----------------------------------------------------------------------------------


def _front_door(cfg: PlatformConfig, cluster: KapsuleCluster) -> FrontDoor | None:
    """Reserved IP, Traefik, the platform Gateway, cert-manager and DNS, when configured."""
    ingress, tls, dns = cfg.ingress, cfg.tls, cfg.dns
    if ingress is None:
        return None
    assert tls is not None
    argocd = cfg.gitops.argocd if cfg.gitops is not None else None
    app_hostnames, platform_hostnames = hostnames_by_kind(
        app_hostnames=ingress.hostnames,
        platform_hostnames=ingress.platform_hostnames,
        extra_app=[app.hostname for app in cfg.apps],
        extra_platform=[argocd.hostname] if argocd is not None else [],
    )
    zone = ingress.ip_zone(cfg.zone)
    return FrontDoor(
        f"{cfg.environment}-front-door",
        FrontDoorArgs(
            provider=cluster.provider,
            project_id=cfg.project_id,
            zone=zone,
            app_hostnames=app_hostnames,
            platform_hostnames=platform_hostnames,
            app_owners={app.hostname: app.name for app in cfg.apps},
            redirects=ingress.redirects,
            acme_email=tls.acme_email,
            issuer=tls.cluster_issuer,
            replicas=ingress.replicas,
            load_balancer_type=ingress.load_balancer_type,
            adopt_ip_id=ingress.adopt_import_id(cfg.zone),
            protect=cfg.protect_stateful,
            dns=DnsZone(zone=dns.zone or ingress.domain, ttl=dns.ttl, records=dns.records)
            if dns is not None and dns.managed
            else None,
            dns01=tls.dns01,
            tags=cfg.tags,
        ),
    )


def _front_door_exports(front_door: FrontDoor | None) -> Exports:
    if front_door is None:
        return {}
    return {
        "ingressIp": front_door.ip_address,
        "ingressIpId": front_door.ip_id,
        "gatewayName": front_door.gateway_name,
        "gatewayNamespace": front_door.gateway_namespace,
        "ingressHostnames": [listener.hostname for listener in front_door.listeners],
    }


# --- GitOps wiring --------------------------------------------------------------------------------


def _argocd(cfg: PlatformConfig, cluster: KapsuleCluster, front_door: FrontDoor | None = None) -> ArgoCd:
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
            gateway=GatewayParent(name=front_door.gateway_name, namespace=front_door.gateway_namespace)
            if front_door is not None
            else None,
            # Its HTTPRoute needs the Gateway API CRDs and attaches to the platform Gateway.
            depends_on=(front_door.gateway_api_crds, front_door.gateway) if front_door is not None else (),
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


def _registrars(
    cfg: PlatformConfig, cluster: KapsuleCluster, argocd: ArgoCd
) -> pulumi.Output[dict[str, str]]:
    """One ``registrar-<env>`` identity per environment tooling's Argo CD serves (tooling itself
    excepted), exported as a secret kubeconfig per environment for that environment's stack."""
    gitops = cfg.gitops
    assert gitops is not None
    kubeconfigs = {
        env: Registrar(
            f"{cfg.environment}-registrar-{env}",
            RegistrarArgs(
                environment=env,
                provider=cluster.provider,
                server_url=cluster.apiserver_url,
                ca_data=cluster.ca_certificate,
                depends_on=(argocd.release,),
            ),
        ).kubeconfig
        for env in sorted(gitops.environments)
        if env != cfg.environment
    }
    if not kubeconfigs:
        return pulumi.Output.secret({})
    return pulumi.Output.secret(pulumi.Output.all(**kubeconfigs))


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
        # The registry's read-only key, for the image pull secret of every app namespace.
        self.registry_host = self.registry_endpoint.apply(lambda endpoint: endpoint.split("/", 1)[0])
        self.registry_pull_secret_key = pulumi.Output.secret(
            reference.require_output("registryPullSecretKey")
        ).apply(str)
        # The environment's registrar identity (argocd namespace, its own objects only), never
        # tooling's admin `kubeconfig` export, which this stack does not read.
        environment = cfg.environment
        self.provider = k8s.Provider(
            "tooling-k8s",
            kubeconfig=pulumi.Output.secret(reference.require_output("registrarKubeconfigs")).apply(
                lambda kubeconfigs: _registrar_kubeconfig(kubeconfigs, environment)
            ),
        )


def _registrar_kubeconfig(kubeconfigs: Any, environment: str) -> str:
    if not isinstance(kubeconfigs, dict) or environment not in kubeconfigs:
        raise ValueError(
            f"the tooling stack exports no registrar kubeconfig for environment {environment!r}: "
            "list it in the tooling stack's platform:gitops.environments and deploy tooling first"
        )
    return str(kubeconfigs[environment])


def _register_with_tooling(
    cfg: PlatformConfig,
    cluster: KapsuleCluster,
    tooling: _ToolingReference,
    facts: dict[str, pulumi.Input[str]],
    apps: list[App] | None = None,
) -> AppDelivery:
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
            # Its RoleBindings live in the app namespaces.
            depends_on=tuple(app.namespace for app in apps or ()),
        ),
    )
    images = {app.name: app.image for app in cfg.apps}
    project = EnvironmentProject(
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
                for u in gitops.image_updates_for(images)
            ),
            write_back_branch=gitops.image_updater.write_back_branch,
            depends_on=(registration,),
        ),
    )
    return AppDelivery(
        tooling_provider=tooling.provider,
        argocd_namespace=ARGOCD_NAMESPACE,
        project=project.project_name,
        cluster_name=registration.cluster_name,
        repo_url=gitops.repo_url,
        target_revision=gitops.target_revision,
        # The project (and, through it, the registration): not the registration component
        # itself, whose children (one RoleBinding per namespace) every Application would then
        # depend on, N x N.
        depends_on=(project,),
    )


# --- Secrets and apps --------------------------------------------------------------------------


def _secrets_operator(cfg: PlatformConfig, cluster: KapsuleCluster) -> SecretsOperator:
    """External Secrets and the cluster's stores (Scaleway Secret Manager, or also 1Password)."""
    vault = cfg.vault
    return SecretsOperator(
        f"{cfg.environment}-secrets",
        SecretsOperatorArgs(
            provider=cluster.provider,
            environment=cfg.environment,
            region=cfg.region,
            project_id=cfg.project_id,
            backend=vault.backend,
            onepassword=OnePasswordStore(
                vault=vault.onepassword.vault, token=cfg.secret("onepasswordServiceAccountToken")
            )
            if vault.onepassword is not None
            else None,
            ha=cfg.role != "development",
            namespace_labels=labels.platform_namespace(),
            allowed_namespace_labels=(labels.APP_NAMESPACE, labels.PLATFORM_NAMESPACE),
            tags=cfg.tags,
        ),
    )


def _apps(  # noqa: PLR0917 - private composition helper, called twice
    cfg: PlatformConfig,
    cluster: KapsuleCluster,
    secrets: SecretsOperator,
    front_door: FrontDoor | None,
    tooling: _ToolingReference | None,
    database: ManagedPostgres | None,
) -> list[App]:
    """Every app's envelope from platform:apps (delivery by Argo CD follows the registration)."""
    if not cfg.apps:
        return []
    assert tooling is not None, "config rules require platform:gitops with platform:apps"
    listeners = {listener.hostname: listener for listener in front_door.listeners} if front_door else {}
    apps: list[App] = []
    for settings in cfg.apps:
        app_database = None
        if settings.database is not None:
            assert database is not None
            credentials = database.credentials[settings.database]
            app_database = AppDatabase(
                host=database.host,
                port=database.port,
                name=credentials.database,
                user=credentials.user,
                password=credentials.password,
            )
        gateway = (
            AppGateway(
                name=listeners[settings.hostname].gateway,
                namespace=front_door.gateway_namespace,
                section_name=listeners[settings.hostname].name,
                depends_on=(
                    front_door.gateway_api_crds,
                    front_door.gateways[listeners[settings.hostname].gateway],
                ),
            )
            if front_door is not None
            else None
        )
        apps.append(
            App(
                f"app-{settings.name}",
                AppArgs(
                    settings=settings,
                    environment=cfg.environment,
                    provider=cluster.provider,
                    vault=AppVault(
                        backend=secrets.backend,
                        app_store=secrets.app_store,
                        platform_store=secrets.platform_store,
                        location=cfg.app_secrets_path(settings),
                        platform_path=cfg.app_platform_path(settings),
                        region=cfg.region,
                        project_id=cfg.project_id,
                        refresh_interval=cfg.vault.refresh_interval,
                    ),
                    database=app_database,
                    gateway=gateway,
                    ingress_namespace=TRAEFIK_NAMESPACE,
                    registry_host=tooling.registry_host,
                    registry_password=tooling.registry_pull_secret_key,
                    secrets_depends_on=(secrets.release, *secrets.stores.values()),
                    tags=cfg.tags,
                ),
            )
        )
    return apps


# --- Operations: restore check and observability ---------------------------------------------


def _operations(
    cfg: PlatformConfig,
    cluster: KapsuleCluster,
    database: ManagedPostgres | None = None,
    tooling: _ToolingReference | None = None,
) -> Exports:
    """platform:operations: the daily restore check (with the database) and observability."""
    exports: Exports = {}
    check = cfg.operations.restore_check
    if check is not None:
        assert database is not None, "config rules require platform:database with the restore check"
        restore = RestoreCheck(
            f"{cfg.environment}-restore-check",
            RestoreCheckArgs(
                provider=cluster.provider,
                environment=cfg.environment,
                region=cfg.region,
                project_id=cfg.project_id,
                settings=check,
                database_host=database.host,
                database_port=database.port,
                credentials=database.credentials,
                protect=cfg.protect_stateful,
                namespace_labels=labels.platform_namespace(),
                bucket_admins=tuple(check.bucket_admins),
                # The image lives in the platform registry, read with tooling's pull key.
                registry=RegistryPull(host=tooling.registry_host, password=tooling.registry_pull_secret_key)
                if tooling is not None
                else None,
                tags=cfg.tags,
            ),
        )
        exports["restoreCheckBucket"] = restore.bucket_name
    settings = cfg.operations.observability
    if settings is not None:
        observability = Observability(
            f"{cfg.environment}-observability",
            ObservabilityArgs(
                provider=cluster.provider,
                environment=cfg.environment,
                region=cfg.region,
                project_id=cfg.project_id,
                settings=settings,
                probe_hostnames=[app.hostname for app in cfg.apps] if cfg.is_production else (),
                restore_check=check is not None,
                database=database is not None,
                webhook_url=cfg.secret("alertWebhookUrl") if settings.webhook is not None else None,
                tags=cfg.tags,
            ),
        )
        exports["observabilityBackend"] = settings.backend
        exports["cockpitLogsSource"] = observability.logs_source_url
        if observability.metrics_source_url is not None:
            exports["cockpitMetricsSource"] = observability.metrics_source_url
    return exports


def export_all(exports: Exports) -> None:
    for key, value in exports.items():
        pulumi.export(key, value)

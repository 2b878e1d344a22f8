"""Composition: which components each role gets, wired together. Returns the stack's exports.

tooling     network + tooling cluster + registry + the CI-push identity
production  network + production cluster + managed PostgreSQL
development network (a reserved address space) + an optional small cluster

Every workload environment delivered from tooling declares its own registry pull identity
(``scw_platform.registry.pull_identity``): no two environments' clusters hold the same key.

Every role with a cluster and ``platform:ingress`` also gets the front door (reserved IP, Traefik,
the platform Gateway, cert-manager, DNS): see ``scw_platform.ingress``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumiverse_scaleway as scaleway

from program import alerts
from program import environments as env_list
from program.model import (
    Delivery,
    DevelopmentConfig,
    PlatformConfig,
    ProductionConfig,
    StackConfig,
    ToolingConfig,
    WorkloadConfig,
)
from program.paths import RESTORE_CHECK_SCRIPT
from program.references import CliStackDirectory, Pending, StackDirectory, read_registration, read_tooling
from scw_platform import cockpit_routing, labels
from scw_platform.apps import HOOK_IMAGES, App, AppArgs, AppDatabase, AppGateway, AppVault
from scw_platform.backup import (
    RESTORE_CHECK_NAMESPACE,
    MetricsPush,
    RestoreCheck,
    RestoreCheckArgs,
)
from scw_platform.ci import CiRunners, CiRunnersArgs
from scw_platform.cluster import ApiAccess, ClusterSettings, KapsuleCluster, KapsuleClusterArgs
from scw_platform.contract import (
    FACT_REGISTRY_ENDPOINT,
    PROMOTION,
    REGISTRATION_KEY,
    PlatformFacts,
    ProblemsError,
    Registration,
    ToolingFacts,
    registration_export,
)
from scw_platform.database import DatabaseSettings, ManagedPostgres, ManagedPostgresArgs
from scw_platform.delivery import ROLLOUTS_NAMESPACE, RolloutsController, RolloutsControllerArgs
from scw_platform.drill import BackupDrill, BackupDrillArgs
from scw_platform.gitops import (
    TOOLING_ALLOWED_KINDS,
    WEBHOOK_VAULT_FOLDER,
    WEBHOOK_VAULT_NAME,
    ArgoCd,
    ArgoCdArgs,
    ArgoCdSettings,
    ArgoCdWebhook,
    ClusterRegistration,
    ClusterRegistrationArgs,
    EnvironmentProject,
    EnvironmentProjectArgs,
    GatewayParent,
    GitOpsNamespace,
    GitOpsNamespaceArgs,
    GitOpsSettings,
    OidcClient,
    RegisteredCluster,
    RegisteredClusterArgs,
    RegistryAccess,
    application_name,
    root_app_name,
)
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.ingress import (
    TRAEFIK_NAMESPACE,
    WEBSECURE_PORT,
    DnsZone,
    FrontDoor,
    FrontDoorArgs,
    Listener,
    hostnames_by_kind,
)
from scw_platform.network import Network, NetworkArgs
from scw_platform.observability import (
    MONITORING_NAMESPACE,
    PUSHGATEWAY_POD_LABELS,
    PUSHGATEWAY_PORT,
    PUSHGATEWAY_URL,
    FrontDoorPods,
    Observability,
    ObservabilityArgs,
)
from scw_platform.registry import Registry, RegistryArgs, RegistryPull, pull_identity
from scw_platform.secrets import OnePasswordStore, SecretsOperator, SecretsOperatorArgs
from scw_platform.slo import SloTarget, slo_rule_groups
from scw_platform.workload_admission import WorkloadAdmission, WorkloadAdmissionArgs

Exports = dict[str, Any]


def build(cfg: PlatformConfig, directory: StackDirectory | None = None) -> Exports:
    """The stack's resources and exports. ``directory`` says which registered environments' stacks
    exist (tooling only; the Pulumi CLI's stack list by default)."""
    if isinstance(cfg, ToolingConfig):
        return _tooling(cfg, directory or CliStackDirectory())
    return _workload(cfg)


def _network(cfg: StackConfig) -> Network:
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
    cfg: StackConfig,
    settings: ClusterSettings,
    network: Network,
    extra_api_access: tuple[ApiAccess, ...] = (),
) -> KapsuleCluster:
    return KapsuleCluster(
        cfg.environment,
        KapsuleClusterArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.zone,
            private_network_id=network.private_network_id,
            egress=network.egress,
            own_egress_ip=network.egress_ip,
            settings=settings,
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
    # No kubeconfig: any stack allowed to read this one would get cluster-admin with it. Operators
    # fetch theirs with `scw k8s kubeconfig install <clusterId>` under their own IAM identity.
    return {"clusterId": cluster.cluster_id, "apiServerUrl": cluster.apiserver_url}


def _tooling(cfg: ToolingConfig, directory: StackDirectory) -> Exports:
    # Every registration is read and validated before the first resource is declared: a malformed
    # one stops the update with nothing created.
    registrations, pending = _registrations(cfg, directory)
    network = _network(cfg)
    cluster = _cluster(cfg, cfg.cluster, network)
    registry = Registry(
        "registry",
        RegistryArgs(namespace=cfg.registry.namespace, region=cfg.region, protect=cfg.protect_stateful),
    )
    # The only registry set that writes, on the whole project: Scaleway's IAM cannot scope it to a
    # namespace and its registry has no immutable tags (scw_platform/registry.py). So this key can
    # move any tag the platform runs; production runs the platform's own images by digest instead
    # (platform:operations.*.image, the workload admission policies).
    ci_push = ScopedIdentity(
        f"{cfg.environment}-ci-push",
        ScopedIdentityArgs(
            description="CI pipeline: pushes images to the platform registry",
            project_id=cfg.project_id,
            permission_sets=["ContainerRegistryFullAccess"],
            tags=cfg.tags,
        ),
    )
    # No shared pull identity any more (it was tooling-registry-pull, whose key every workload
    # cluster held): each workload stack declares its own (_registry_pull_identity). Removed from
    # here, `pulumi up` of tooling deletes its API key, policy and application, so the old key stops
    # working; run it after prod and dev have switched their pull Secrets (docs/operations.md).
    front_door = _front_door(cfg, cluster)
    secrets = _secrets_operator(cfg, cluster)
    ci = _ci_runners(cfg, cluster, secrets)
    _gitops_namespaces(cfg, cfg.gitops, cluster)
    argocd = _argocd(cfg, cluster, registrations, secrets, front_door)
    for registration in registrations:
        _register(cfg, cluster, argocd, registration)
    facts = ToolingFacts(registry_endpoint=registry.endpoint, egress_ip=network.egress_ip)
    return {
        "role": cfg.role,
        "environment": cfg.environment,
        **_network_exports(network),
        **_cluster_exports(cluster),
        "argocdNamespace": argocd.namespace,
        "registeredEnvironments": sorted(r.environment for r in registrations),
        "pendingEnvironments": {p.environment: p.reason for p in pending},
        **_front_door_exports(front_door),
        **facts.exports(),
        # Tooling probes production's apps (from their registrations): production's own probes die
        # with its cluster.
        **_observability(
            cfg,
            cluster,
            cross_probes=[
                app.hostname
                for r in registrations
                if cfg.environments.entries[r.environment].role == "production"
                for app in r.apps
                if app.hostname is not None
            ],
        ),
        **({"ciNamespace": ci.namespace, "ciProvider": cfg.ci.provider} if ci and cfg.ci else {}),
        "ciPushAccessKey": ci_push.access_key,
        # Not the key itself: every StackReference to tooling could read an export.
        "ciPushSecretId": _ci_push_secret(cfg, ci_push).id,
    }


def _registry_endpoint(cfg: ToolingConfig) -> str:
    """``rg.<region>.scw.cloud/<namespace>``, known from config (the Registry component's output
    is the same address once created)."""
    return f"rg.{cfg.region}.scw.cloud/{cfg.registry.namespace}"


def _registrations(cfg: ToolingConfig, directory: StackDirectory) -> tuple[list[Registration], list[Pending]]:
    """Each registered environment's validated registration, or why it is pending this time."""
    registered: list[Registration] = []
    pending: list[Pending] = []
    for environment, stack in sorted(cfg.registered_stacks.items()):
        found = read_registration(
            environment,
            stack,
            directory=directory,
            registry_endpoint=_registry_endpoint(cfg),
            # An app's hostname must be one its environment may serve: tooling probes it.
            hostname_allowed=_serves(cfg, environment),
        )
        if isinstance(found, Pending):
            pending.append(found)
        else:
            registered.append(found)
    _distinct(registered, cfg)
    return registered, pending


def _serves(cfg: ToolingConfig, environment: str) -> Callable[[str], bool]:
    """Whether a hostname is one ``environment`` may serve (environments.yaml, dns.hostnames)."""
    dns = cfg.environments.entries[environment].dns
    patterns = list(dns.hostnames) if dns is not None else []

    def serves(hostname: str) -> bool:
        return any(env_list.matches(pattern, hostname) for pattern in patterns)

    return serves


def _distinct(registered: list[Registration], cfg: ToolingConfig) -> None:
    """Two environments may not register one API server (Argo CD picks a cluster's credentials by
    URL: one could deploy with the other's token), and no two Applications may share a name
    (``<env>-<app>`` of one against ``<env>-root`` or another's app)."""
    problems: list[str] = []
    servers: dict[str, str] = {}
    names: dict[str, str] = {
        root_app_name(env): f"{env}'s root app" for env in (cfg.environment, *cfg.registered_stacks)
    }
    for registration in registered:
        stack = cfg.registered_stacks[registration.environment]
        other = servers.setdefault(registration.server, registration.environment)
        if other != registration.environment:
            problems.append(
                f"{stack}:{REGISTRATION_KEY}.server: {registration.server} is {other}'s API server too"
            )
        for app in registration.apps:
            name = application_name(registration.environment, app.name)
            if name in names:
                problems.append(
                    f"{stack}:{REGISTRATION_KEY}.apps: {app.name}'s Application {name} is {names[name]}"
                )
            names.setdefault(name, f"{registration.environment}'s app {app.name}")
    if problems:
        raise ProblemsError(f"the environments registered with {cfg.environment} conflict", problems)


#: Where CI reads the registry push key: Scaleway Secret Manager, folder and secret name.
CI_PUSH_SECRET_PATH = "/platform/ci"
CI_PUSH_SECRET_NAME = "registry-push"


def _ci_push_secret(cfg: ToolingConfig, ci_push: ScopedIdentity) -> scaleway.secrets.Secret:
    """The CI push identity's secret key in Scaleway Secret Manager (registry write access)."""
    return _vault_secret(
        cfg,
        f"{cfg.environment}-ci-push-secret",
        name=CI_PUSH_SECRET_NAME,
        description="CI pipeline's registry push key (secret key of the ci-push IAM application)",
        data=ci_push.secret_key,
    )


#: Where the CI runners' credential lives in Scaleway Secret Manager (External Secrets reads it).
CI_RUNNER_TOKEN_NAME = "runner-token"


def _vault_secret(
    cfg: ToolingConfig,
    resource_name: str,
    *,
    name: str,
    description: str,
    data: pulumi.Input[str],
    path: str = CI_PUSH_SECRET_PATH,
) -> scaleway.secrets.Secret:
    """One secret of the program's under ``path`` (CI_PUSH_SECRET_PATH by default) in Scaleway
    Secret Manager, its value a Pulumi secret end to end."""
    secret = scaleway.secrets.Secret(
        resource_name,
        name=name,
        path=path,
        description=description,
        project_id=cfg.project_id,
        region=cfg.region,
        # Tagged by its folder's last part ("ci", "argocd").
        tags=[*cfg.tags, path.rstrip("/").rsplit("/", 1)[-1]],
    )
    value: pulumi.Output[str] = pulumi.Output.secret(data)
    scaleway.secrets.Version(
        f"{resource_name}-version",
        secret_id=secret.id,
        data=value,
        description="written by the platform program",
        region=cfg.region,
    )
    return secret


def _ci_runners(cfg: ToolingConfig, cluster: KapsuleCluster, secrets: SecretsOperator) -> CiRunners | None:
    """platform:ci: the runners on the builders pool, their credential through the vault."""
    if cfg.ci is None:
        return None
    token = _vault_secret(
        cfg,
        f"{cfg.environment}-ci-runner-token-secret",
        name=CI_RUNNER_TOKEN_NAME,
        description=f"CI runners' credential ({cfg.ci.provider}), synced into the ci namespace",
        data=cfg.secret("ciRunnerToken"),
    )
    pool = next(p for p in cfg.cluster.pools if p.name == cfg.ci.pool)
    return CiRunners(
        f"{cfg.environment}-ci",
        CiRunnersArgs(
            provider=cluster.provider,
            settings=cfg.ci,
            pool_taints=tuple(pool.taints),
            secret_store=secrets.platform_store,
            token_remote_key=f"path:{CI_PUSH_SECRET_PATH}/{CI_RUNNER_TOKEN_NAME}",
            secrets_depends_on=(secrets.release, *secrets.stores.values(), token),
        ),
    )


def _workload(cfg: WorkloadConfig) -> Exports:
    """One pipeline for every workload role: network, cluster, database (production), front door,
    secrets, apps, and the registration the tooling stack reads (DESIGN.md §5)."""
    network = _network(cfg)
    exports: Exports = {"role": cfg.role, "environment": cfg.environment, **_network_exports(network)}
    if cfg.cluster is None:
        return exports  # development may reserve its address space only
    delivery = cfg.delivery
    tooling = read_tooling(delivery.tooling_stack) if delivery is not None else None
    cluster = _cluster(cfg, cfg.cluster, network, _tooling_api_access(tooling) if tooling else ())
    registry = _registry_pull(tooling, _registry_pull_identity(cfg) if tooling is not None else None)
    front_door = _front_door(cfg, cluster)
    # Before the restore check: its ExternalSecret (the age identity) needs the operator's stores.
    secrets = _secrets_operator(cfg, cluster)
    database: ManagedPostgres | None = None
    exports_restore: Exports = {}
    if cfg.database is not None:
        # Development may run a small database of its own (unprotected, no restore check) so that
        # a release, its migration included, is proven there before prod receives it.
        database = _database(cfg, cfg.database, network)
    if isinstance(cfg, ProductionConfig):
        assert database is not None  # production requires platform:database (program.policy)
        check = _restore_check(cfg, cluster, database, registry, secrets)
        exports_restore["restoreCheckBucket"] = check.bucket_name
        _backup_drill(cfg, cluster, network, database, registry)
    # Before the apps: a canary app's analysis queries the stack's metrics backend.
    observability = _observability(cfg, cluster, database, cross_probes=_hub_hostnames(cfg))
    rollouts = _rollouts(
        cfg,
        cluster,
        observability.get("cockpitMetricsSource"),
        in_cluster_prometheus=cfg.observability is not None and cfg.observability.backend == "prometheus",
    )
    apps = (
        _apps(
            cfg,
            delivery,
            registry,
            cluster=cluster,
            secrets=secrets,
            front_door=front_door,
            database=database,
            rollouts=rollouts,
        )
        if delivery is not None and registry is not None
        else []
    )
    # What Git may deliver into the app namespaces (images, resources, probes, host access,
    # Services, tokens), in place before Argo CD can reach the cluster (_registration waits).
    admission = (
        WorkloadAdmission(
            f"{cfg.environment}-workload-admission",
            WorkloadAdmissionArgs(
                provider=cluster.provider,
                settings={settings.name: settings.admission for settings in delivery.apps},
                registry_endpoint=tooling.registry_endpoint,
                require_digest=isinstance(cfg, ProductionConfig),
                platform_images=HOOK_IMAGES,
            ),
        ).resources
        if delivery is not None and tooling is not None and delivery.apps
        else []
    )
    exports.update(_cluster_exports(cluster))
    if database is not None:
        exports.update(
            databaseHost=database.host, databasePort=database.port, databaseNames=sorted(database.credentials)
        )
    exports.update(_front_door_exports(front_door))
    exports["apps"] = [app.name for app in apps]
    exports["secretsBackend"] = secrets.backend
    exports.update(exports_restore)
    exports.update(observability)
    if delivery is not None and tooling is not None:
        exports[REGISTRATION_KEY] = _registration(
            cfg, delivery, cluster, tooling, database, front_door, apps, admission
        )
    return exports


def _database(cfg: WorkloadConfig, settings: DatabaseSettings, network: Network) -> ManagedPostgres:
    return ManagedPostgres(
        f"{cfg.environment}-postgres",
        ManagedPostgresArgs(
            environment=cfg.environment,
            region=cfg.region,
            zone=cfg.database_zone,
            private_network_id=network.private_network_id,
            settings=settings,
            protect=cfg.protect_stateful,
            tags=cfg.tags,
        ),
    )


# --- Front door ----------------------------------------------------------------------------------


def _argocd_hostnames(argocd: ArgoCdSettings) -> list[str]:
    """Argo CD's public hostnames: the UI's, or the one its Git webhook alone is served on."""
    webhook = argocd.webhook.hostname if argocd.webhook is not None else None
    return [h for h in (argocd.hostname, webhook) if h is not None]


def _front_door(cfg: PlatformConfig, cluster: KapsuleCluster) -> FrontDoor | None:
    """Reserved IP, Traefik, the platform Gateway, cert-manager and DNS, when configured."""
    if cfg.front_door is None:
        return None
    ingress, tls, dns = cfg.front_door.ingress, cfg.front_door.tls, cfg.front_door.dns
    argocd = cfg.argocd if isinstance(cfg, ToolingConfig) else None
    app_hostnames, platform_hostnames = hostnames_by_kind(
        app_hostnames=ingress.hostnames,
        platform_hostnames=ingress.platform_hostnames,
        extra_app=[app.hostname for app in cfg.apps],
        extra_platform=_argocd_hostnames(argocd) if argocd is not None else [],
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
            issuer=tls.issuer,
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


def _argocd(
    cfg: ToolingConfig,
    cluster: KapsuleCluster,
    registrations: list[Registration],
    secrets: SecretsOperator,
    front_door: FrontDoor | None = None,
) -> ArgoCd:
    """Argo CD and the image updater in tooling, plus tooling's own project."""
    gitops, argocd_settings = cfg.gitops, cfg.argocd
    updater_identity = ScopedIdentity(
        f"{cfg.environment}-image-updater",
        ScopedIdentityArgs(
            description="Argo CD image updater: reads tags from the platform registry",
            project_id=cfg.project_id,
            permission_sets=["ContainerRegistryReadOnly"],
            tags=cfg.tags,
        ),
    )
    # Root apps only for environments that are registered now: a root app for an environment
    # without its cluster Secret would sync child Applications into a cluster Argo CD cannot reach.
    served = [cfg.environment, *(r.environment for r in registrations)]
    webhook, webhook_secret = _argocd_webhook(cfg)
    routed = argocd_settings.hostname is not None or webhook is not None
    gateway = front_door if front_door is not None and routed else None
    argocd = ArgoCd(
        "argocd",
        ArgoCdArgs(
            provider=cluster.provider,
            hostname=argocd_settings.hostname,
            ha=argocd_settings.ha,
            repo_url=cfg.repo_url,
            repo_username=gitops.repo_username,
            repo_uses_ssh=gitops.uses_ssh,
            repo_credential=cfg.secret("gitopsRepoCredential"),
            repo_write_credential=cfg.secret("gitopsWriteCredential"),
            target_revision=gitops.target_revision,
            environments={env: gitops.path_for(env) for env in served},
            retained_environments=tuple(r.environment for r in registrations if _kept(cfg, r.environment)),
            known_environments=(cfg.environment, *cfg.registered_stacks),
            program_owned_applications=tuple(
                application_name(r.environment, app.name) for r in registrations for app in r.apps
            ),
            registry=RegistryAccess(
                endpoint=f"rg.{cfg.region}.scw.cloud",
                region=cfg.region,
                secret_key=updater_identity.secret_key,
            ),
            commit_author_name=gitops.image_updater.commit_author.name,
            commit_author_email=gitops.image_updater.commit_author.email,
            oidc=_oidc_client(cfg),
            webhook=webhook,
            reconciliation_timeout_seconds=argocd_settings.reconciliation_timeout_seconds,
            image_updater_interval_seconds=gitops.image_updater.interval_seconds,
            gateway=GatewayParent(name=gateway.gateway_name, namespace=gateway.gateway_namespace)
            if gateway is not None
            else None,
            # Its HTTPRoute needs the Gateway API CRDs and attaches to the platform Gateway.
            route_depends_on=(gateway.gateway_api_crds, gateway.gateway) if gateway is not None else (),
            notifications=gitops.notifications,
            secret_store=secrets.platform_store,
            secrets_depends_on=(secrets.release, *secrets.stores.values(), *webhook_secret),
        ),
    )
    _tooling_project(cfg, cluster, argocd)
    return argocd


def _argocd_webhook(cfg: ToolingConfig) -> tuple[ArgoCdWebhook | None, tuple[pulumi.Resource, ...]]:
    """The Git host's push webhook into Argo CD, and the vault entry its shared secret is written to
    (the deploy-time secret platform:argocdWebhookSecret; External Secrets syncs it into argocd)."""
    settings = cfg.argocd.webhook
    if settings is None:
        return None, ()
    secret = _vault_secret(
        cfg,
        f"{cfg.environment}-argocd-webhook-secret",
        name=WEBHOOK_VAULT_NAME,
        path=WEBHOOK_VAULT_FOLDER,
        description=f"shared secret of the {settings.git_host} push webhook into Argo CD",
        data=cfg.secret("argocdWebhookSecret"),
    )
    hostname = cfg.argocd.hostname or settings.hostname
    # The rules require one of the two (program.rules._webhook_rules).
    assert hostname is not None
    return ArgoCdWebhook(git_host=settings.git_host, hostname=hostname), (secret,)


def _oidc_client(cfg: ToolingConfig) -> OidcClient | None:
    """Argo CD's single sign-on. Its client secret is the vault's (gitops.OIDC_VAULT_KEY, synced by
    External Secrets), never a deploy-time secret: Helm values holding it would turn all of Argo
    CD's values into one secret output."""
    oidc = cfg.argocd.oidc
    if oidc is None:
        return None
    return OidcClient(
        issuer=oidc.issuer,
        client_id=oidc.client_id,
        admin_groups=tuple(oidc.admin_groups),
        readonly_groups=tuple(oidc.readonly_groups),
    )


def _tooling_project(cfg: ToolingConfig, cluster: KapsuleCluster, argocd: ArgoCd) -> EnvironmentProject:
    """Tooling's own AppProject: its namespaces in its own cluster, tooling's kinds only."""
    gitops = cfg.gitops
    return EnvironmentProject(
        f"{cfg.environment}-gitops",
        EnvironmentProjectArgs(
            environment=cfg.environment,
            tooling_provider=cluster.provider,
            repo_url=cfg.repo_url,
            target_revision=gitops.target_revision,
            cluster_name="in-cluster",
            namespaces=tuple(gitops.namespaces),
            write_back_branch=gitops.image_updater.write_back_branch,
            allowed_kinds=TOOLING_ALLOWED_KINDS,
            depends_on=(argocd.release,),
        ),
    )


def _register(
    cfg: ToolingConfig, cluster: KapsuleCluster, argocd: ArgoCd, registration: Registration
) -> None:
    """Tooling declares a registered environment in its own Argo CD: the cluster Secret (from the
    validated registration only), the AppProject, the apps' Applications and the ImageUpdater."""
    gitops = cfg.gitops
    environment = registration.environment
    registered = RegisteredCluster(
        f"{environment}-cluster",
        RegisteredClusterArgs(
            registration=registration,
            provider=cluster.provider,
            source_stack=cfg.registered_stacks[environment],
            hub_facts={FACT_REGISTRY_ENDPOINT: _registry_endpoint(cfg)},
            retain_on_delete=_kept(cfg, environment),
            depends_on=(argocd.release,),
        ),
    )
    EnvironmentProject(
        f"{environment}-gitops",
        EnvironmentProjectArgs(
            environment=environment,
            tooling_provider=cluster.provider,
            repo_url=cfg.repo_url,
            target_revision=gitops.target_revision,
            cluster_name=registered.cluster_name,
            namespaces=registration.namespaces,
            apps=registration.apps,
            write_back_branch=gitops.image_updater.write_back_branch,
            retain_on_delete=_kept(cfg, environment),
            depends_on=(argocd.release, registered),
        ),
    )


def _kept(cfg: ToolingConfig, environment: str) -> bool:
    """A production environment's registration stays in the cluster if the program ever drops it
    (scw_platform.gitops.RegisteredClusterArgs.retain_on_delete)."""
    return cfg.environments.entries[environment].role == "production"


def _gitops_namespaces(
    cfg: PlatformConfig, gitops: GitOpsSettings, cluster: KapsuleCluster
) -> list[pulumi.Resource]:
    """platform:gitops.namespaces (other than apps'), declared with the platform envelope before
    Argo CD may deploy into them."""
    app_names = {app.name for app in cfg.apps}
    return [
        GitOpsNamespace(
            f"{cfg.environment}-namespace-{name}",
            GitOpsNamespaceArgs(name=name, environment=cfg.environment, provider=cluster.provider),
        ).namespace
        for name in sorted(set(gitops.namespaces) - app_names)
    ]


def _tooling_api_access(tooling: ToolingFacts) -> tuple[ApiAccess, ...]:
    # Tooling's Argo CD reaches this cluster's API from tooling's single egress address.
    egress_ip = pulumi.Output.from_input(tooling.egress_ip)
    return (ApiAccess(cidr=egress_ip.apply(lambda ip: f"{ip}/32"), description="tooling Argo CD egress"),)


def _registry_host(tooling: ToolingFacts) -> pulumi.Output[str]:
    return pulumi.Output.from_input(tooling.registry_endpoint).apply(
        lambda endpoint: endpoint.split("/", 1)[0]
    )


def _registry_pull_identity(cfg: WorkloadConfig) -> ScopedIdentity:
    """This environment's own read-only identity on the registry, which lives in its tooling
    environment's project (environments.yaml: managedBy, then that entry's projectId). Only this
    stack's state and this environment's pull Secrets hold its key."""
    hub = cfg.environments.entries[cfg.environment].managed_by
    assert hub is not None  # a stack that reads a tooling stack is managed by it (program.config)
    return pull_identity(
        cfg.environment, registry_project_id=cfg.environments.entries[hub].project_id, tags=cfg.tags
    )


def _registry_pull(tooling: ToolingFacts | None, identity: ScopedIdentity | None) -> RegistryPull | None:
    """The platform registry with this environment's pull key, for everything whose image lives
    there (apps, the restore check, the backup drill); None when no tooling stack is read."""
    if tooling is None or identity is None:
        return None
    return RegistryPull.of(_registry_host(tooling), identity)


def _registration(  # noqa: PLR0917 - private composition helper
    cfg: WorkloadConfig,
    delivery: Delivery,
    cluster: KapsuleCluster,
    tooling: ToolingFacts,
    database: ManagedPostgres | None,
    front_door: FrontDoor | None,
    apps: list[App],
    admission: Sequence[pulumi.Resource] = (),
) -> pulumi.Output[dict[str, Any]]:
    """argocd-manager in this cluster, and the registration export tooling builds its cluster
    Secret, project and Applications from. Nothing here acts in tooling."""
    namespaces = tuple(sorted({*delivery.gitops.namespaces, *(app.name for app in delivery.apps)}))
    extra = _gitops_namespaces(cfg, delivery.gitops, cluster)
    registration = ClusterRegistration(
        f"{cfg.environment}-registration",
        ClusterRegistrationArgs(
            environment=cfg.environment,
            provider=cluster.provider,
            namespaces=namespaces,
            # Its RoleBindings live in the app namespaces.
            depends_on=(*(app.namespace for app in apps), *extra, *admission),
        ),
    )
    facts = PlatformFacts(
        environment=cfg.environment,
        registry_endpoint=tooling.registry_endpoint,
        database_host=database.host if database is not None else None,
        ingress_ip=front_door.ip_address if front_door is not None else None,
    )
    return registration_export(
        environment=cfg.environment,
        server=cluster.apiserver_url,
        ca_data=cluster.ca_certificate,
        token=registration.token,
        namespaces=namespaces,
        facts=facts.items(),
        apps=[app.delivery for app in apps],
        ready=[app.external_secret.id for app in apps],
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
            ha=not isinstance(cfg, DevelopmentConfig),
            namespace_labels=labels.platform_namespace(),
            allowed_namespace_labels=(labels.APP_NAMESPACE, labels.PLATFORM_NAMESPACE),
            tags=cfg.tags,
        ),
    )


def _apps(
    cfg: WorkloadConfig,
    delivery: Delivery,
    registry: RegistryPull,
    *,
    cluster: KapsuleCluster,
    secrets: SecretsOperator,
    front_door: FrontDoor | None,
    database: ManagedPostgres | None,
    rollouts: RolloutsController | None = None,
) -> list[App]:
    """Every app's envelope from platform:apps (delivery by Argo CD follows the registration)."""
    updates = {u.app: u for u in delivery.gitops.image_updates_for(app.name for app in delivery.apps)}
    promoted = delivery.gitops.promoted_from is not None
    listeners = {listener.hostname: listener for listener in front_door.listeners} if front_door else {}
    # Every app database is declared under platform:database (the rules check it).
    databases = _app_databases(database)
    apps: list[App] = []
    for settings in delivery.apps:
        app_database = databases[settings.database] if settings.database is not None else None
        gateway = _app_gateway(front_door, listeners[settings.hostname]) if front_door is not None else None
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
                    # This environment's own pull key (_registry_pull_identity), never another's.
                    registry_host=registry.host,
                    registry_password=registry.password,
                    # An environment fed by promotion has no image updater entry (ops/promote.py).
                    update_strategy=PROMOTION if promoted else updates[settings.name].strategy,
                    update_allow_tags=None if promoted else updates[settings.name].allow_tags,
                    secrets_depends_on=(secrets.release, *secrets.stores.values()),
                    tags=cfg.tags,
                    # program.rules.delivery_rules proved a backend exists for every canary app.
                    metrics_backend=rollouts.backend
                    if rollouts is not None and settings.delivery is not None
                    else None,
                    rollouts_depends_on=(rollouts.release,) if rollouts is not None else (),
                ),
            )
        )
    return apps


def _rollouts(
    cfg: WorkloadConfig, cluster: KapsuleCluster, metrics_source_url: Any, *, in_cluster_prometheus: bool
) -> RolloutsController:
    """Argo Rollouts and its Gateway API plugin, in every workload cluster (scw_platform.delivery);
    HA where the cluster's other controllers are. Canaries are analysed against the stack's Cockpit
    metrics source or its in-cluster Prometheus (program.rules.delivery_rules refuses a canary
    without either)."""
    return RolloutsController(
        f"{cfg.environment}-rollouts",
        RolloutsControllerArgs(
            provider=cluster.provider,
            environment=cfg.environment,
            ha=not isinstance(cfg, DevelopmentConfig),
            project_id=cfg.project_id,
            region=cfg.region,
            metrics_source_url=metrics_source_url,
            in_cluster_prometheus=in_cluster_prometheus,
            namespace_labels=labels.platform_namespace(),
        ),
    )


def _app_gateway(front_door: FrontDoor, listener: Listener) -> AppGateway:
    """The listener of the platform Gateway an app's route attaches to (its hostname's)."""
    return AppGateway(
        name=listener.gateway,
        namespace=front_door.gateway_namespace,
        section_name=listener.name,
        depends_on=(front_door.gateway_api_crds, front_door.gateways[listener.gateway]),
    )


def _app_databases(database: ManagedPostgres | None) -> dict[str, AppDatabase]:
    """What each app database's app is given: the private endpoint and its own credentials."""
    if database is None:
        return {}
    return {
        name: AppDatabase(
            host=database.host,
            port=database.port,
            name=credentials.database,
            user=credentials.user,
            password=credentials.password,
            migrator_user=credentials.migrator.name if credentials.migrator else None,
            migrator_password=credentials.migrator.password if credentials.migrator else None,
        )
        for name, credentials in database.credentials.items()
    }


# --- Operations: restore check and observability ---------------------------------------------


def _restore_check(
    cfg: ProductionConfig,
    cluster: KapsuleCluster,
    database: ManagedPostgres,
    registry: RegistryPull | None,
    secrets: SecretsOperator,
) -> RestoreCheck:
    """platform:operations.restoreCheck: the daily dump, restore and sanity check of production."""
    check = cfg.restore_check
    return RestoreCheck(
        f"{cfg.environment}-restore-check",
        RestoreCheckArgs(
            provider=cluster.provider,
            environment=cfg.environment,
            region=cfg.region,
            project_id=cfg.project_id,
            settings=check,
            script=RESTORE_CHECK_SCRIPT.read_text(encoding="utf-8"),
            database_host=database.host,
            database_port=database.port,
            credentials=database.credentials,
            protect=cfg.protect_stateful,
            namespace_labels=labels.platform_namespace(),
            bucket_admins=tuple(check.bucket_admins),
            registry=registry,
            # The job holds every database's read-only password: what it runs must not be whatever
            # a push (CI's key can move any tag of the registry) last made the tag.
            require_digest=True,
            tags=cfg.tags,
            secret_store=secrets.platform_store,
            secrets_depends_on=(secrets.release, *secrets.stores.values()),
            # The stack's observability runs a Pushgateway for exactly this job (_observability).
            metrics_push=MetricsPush(
                url=PUSHGATEWAY_URL,
                namespace=MONITORING_NAMESPACE,
                pod_labels=PUSHGATEWAY_POD_LABELS,
                port=PUSHGATEWAY_PORT,
            )
            if cfg.observability is not None
            else None,
        ),
    )


def _backup_drill(
    cfg: ProductionConfig,
    cluster: KapsuleCluster,
    network: Network,
    database: ManagedPostgres,
    registry: RegistryPull | None,
) -> BackupDrill | None:
    """platform:operations.backupDrill: the monthly restore of Scaleway's managed backups."""
    if cfg.backup_drill is None:
        return None
    return BackupDrill(
        f"{cfg.environment}-backup-drill",
        BackupDrillArgs(
            provider=cluster.provider,
            environment=cfg.environment,
            region=cfg.region,
            project_id=cfg.project_id,
            settings=cfg.backup_drill,
            restore_check=cfg.restore_check,
            instance_id=database.instance_id,
            private_network_id=network.private_network_id,
            subnet=str(cfg.subnet),
            databases=[entry.name for entry in cfg.database.databases],
            backup_period_hours=cfg.database.backups.frequency_hours,
            tags=cfg.tags,
            registry=registry,
            # Its key may create and delete the project's databases (see _restore_check).
            require_digest=True,
        ),
    )


def _observability(
    cfg: PlatformConfig,
    cluster: KapsuleCluster,
    database: ManagedPostgres | None = None,
    cross_probes: Sequence[str] = (),
) -> Exports:
    """platform:operations.observability: metrics, logs, the alert rules and where alerts go.

    ``cross_probes``: another cluster's public hostnames this one probes too, so that losing that
    cluster (its own probes with it) is seen from here."""
    settings = cfg.observability
    if settings is None:
        return {}
    production = isinstance(cfg, ProductionConfig)
    cluster_groups, scaleway_groups = alerts.stack_rule_groups(
        restore_check=production, database=database is not None, heartbeat=settings.heartbeat
    )
    probed = [*([app.hostname for app in cfg.apps] if production else []), *cross_probes]
    if probed:
        cluster_groups.append(alerts.probe_absence_group(probed))
    # Each app's SLO over the series this cluster collects: Traefik's requests and its probes.
    cluster_groups += slo_rule_groups(
        [
            SloTarget(
                app=app.name,
                namespace=app.name,
                hostname=app.hostname,
                port=app.port,
                slo=app.slo,
                canary=app.delivery is not None,
            )
            for app in cfg.apps
            if app.slo is not None and production
        ]
    )
    observability = Observability(
        f"{cfg.environment}-observability",
        ObservabilityArgs(
            provider=cluster.provider,
            environment=cfg.environment,
            region=cfg.region,
            project_id=cfg.project_id,
            settings=settings,
            front_door=FrontDoorPods(namespace=TRAEFIK_NAMESPACE, port=WEBSECURE_PORT)
            if cfg.front_door is not None
            else None,
            rule_groups=cluster_groups,
            scaleway_rule_groups=scaleway_groups,
            probe_hostnames=probed,
            # Production runs the restore check (_restore_check), which pushes its clock on recovery.
            push_clients=(RESTORE_CHECK_NAMESPACE,) if production else (),
            # Canaries are analysed against the in-cluster Prometheus with backend prometheus.
            query_clients=(ROLLOUTS_NAMESPACE,) if any(app.delivery for app in cfg.apps) else (),
            webhook_url=cfg.secret("alertWebhookUrl") if settings.webhook is not None else None,
            telegram_bot_token=cfg.secret("alertTelegramBotToken") if settings.telegram else None,
            heartbeat_url=cfg.secret("alertHeartbeatUrl") if settings.heartbeat else None,
            tags=cfg.tags,
        ),
    )
    if cockpit_routing.routed(settings):
        # Telegram, webhook or the heartbeat on backend cockpit: the routing is loaded into
        # Cockpit's alert manager, next to (not inside) the component that ships the telemetry.
        cockpit_routing.CockpitRouting(
            f"{cfg.environment}-alert-routing",
            cockpit_routing.CockpitRoutingArgs(
                environment=cfg.environment,
                region=cfg.region,
                project_id=cfg.project_id,
                settings=settings,
                webhook_url=cfg.secret("alertWebhookUrl") if settings.webhook is not None else None,
                telegram_bot_token=cfg.secret("alertTelegramBotToken") if settings.telegram else None,
                heartbeat_url=cfg.secret("alertHeartbeatUrl") if settings.heartbeat else None,
            ),
            in_namespace=observability.in_namespace,
            # Declared by the Observability component while the stack had email contact points.
            alert_manager_aliases=[
                pulumi.Alias(name=f"{cfg.environment}-observability-alert-manager", parent=observability)
            ],
        )
    exports: Exports = {
        "observabilityBackend": settings.backend,
        "cockpitLogsSource": observability.logs_source_url,
    }
    if observability.metrics_source_url is not None:
        exports["cockpitMetricsSource"] = observability.metrics_source_url
    return exports


def _hub_hostnames(cfg: WorkloadConfig) -> list[str]:
    """Production probes its tooling environment's public names (the exact ones environments.yaml
    lists, e.g. Argo CD's), so losing the tooling cluster is seen from here."""
    hub = cfg.environments.entries[cfg.environment].managed_by
    if not isinstance(cfg, ProductionConfig) or hub is None:
        return []
    dns = cfg.environments.entries[hub].dns
    return [name for name in (dns.hostnames if dns is not None else []) if not name.startswith("*.")]


def export_all(exports: Exports) -> None:
    for key, value in exports.items():
        pulumi.export(key, value)

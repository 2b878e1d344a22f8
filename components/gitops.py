"""GitOps: Argo CD in the tooling cluster reconciles every environment from Git.

The chain this supports: a merge -> CI pushes an image -> the image updater sees the new tag and
commits it to a write-back branch -> the Git host opens a merge request that merges when green
-> Argo CD rolls it out. Nobody mutates a cluster by hand.

* ``ArgoCd`` (tooling stack): Argo CD, its Git repository credential, the image updater with
  registry read access, the ``platform`` AppProject and one root "app of apps" per environment.
* ``ClusterRegistration`` (each workload stack): an ``argocd-manager`` identity in the workload
  cluster limited to that environment's namespaces, registered as a cluster Secret in tooling's
  Argo CD. Platform facts travel as annotations on that Secret for ApplicationSets.
* ``EnvironmentProject`` (each stack): the environment's AppProject (its cluster, its namespaces,
  nothing cluster-scoped) and its ``ImageUpdater``.

Helm: ``helm.v3.Release`` for both charts. Argo CD's chart and the image updater's chart run
Helm hooks (the image updater's CRD upgrade job, Argo CD's redis-ha secret init); ``helm.v4.Chart``
would silently drop them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import labels

ARGO_HELM_REPO = "https://argoproj.github.io/argo-helm"
ARGOCD_CHART_VERSION = "10.1.1"
ARGOCD_IMAGE_TAG = "v3.4.4"  # the chart's appVersion, pinned explicitly
IMAGE_UPDATER_CHART_VERSION = "1.2.4"
IMAGE_UPDATER_IMAGE_TAG = "v1.2.2"  # the chart's appVersion, pinned explicitly

ARGOCD_NAMESPACE = "argocd"
ARGOCD_SERVER_SERVICE = "argocd-server"
ROOT_PROJECT = "platform"
MANAGER_NAMESPACE = "argocd-manager"
#: Kinds Argo CD must never manage in an app namespace: the platform owns each app's envelope.
#: ExternalSecret too: the cluster stores can read every app's folder, so only the platform may
#: say which keys an app gets (components/apps.py).
ENVELOPE_KINDS = (
    {"group": "", "kind": "ResourceQuota"},
    {"group": "", "kind": "LimitRange"},
    {"group": "networking.k8s.io", "kind": "NetworkPolicy"},
    {"group": "external-secrets.io", "kind": "ExternalSecret"},
)


@dataclass(frozen=True, kw_only=True)
class GatewayParent:
    """The platform Gateway an HTTPRoute attaches to."""

    name: str
    namespace: str


@dataclass(frozen=True, kw_only=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: pulumi.Input[str]
    admin_groups: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class RegistryAccess:
    """Read-only registry credentials for the image updater (a ScopedIdentity's key)."""

    endpoint: pulumi.Input[str]  # rg.<region>.scw.cloud/<namespace>
    region: str
    secret_key: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class ArgoCdArgs:
    provider: k8s.Provider
    hostname: str
    ha: bool
    repo_url: str
    repo_username: str
    repo_uses_ssh: bool
    #: Secret: token (https) or private key (ssh).
    repo_credential: pulumi.Input[str]
    target_revision: str
    #: Environments whose root app this Argo CD runs, with the repository path of each.
    environments: Mapping[str, str]
    registry: RegistryAccess
    commit_author_name: str
    commit_author_email: str
    oidc: OidcSettings | None = None
    gateway: GatewayParent | None = None
    #: Resources the charts need first (e.g. Gateway API CRDs for the HTTPRoute).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def _namespace(
    name: str, resource_name: str, opts: pulumi.ResourceOptions, *, enforce: str = "restricted"
) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        resource_name,
        metadata={
            "name": name,
            "labels": labels.platform_namespace(enforce=enforce),
        },
        opts=opts,
    )


def argocd_values(args: ArgoCdArgs) -> dict[str, object]:
    """Helm values for the argo-cd chart (a pure function, so tests can inspect it)."""
    replicas = 2 if args.ha else 1
    sso = args.oidc is not None
    cm: dict[str, object] = {
        "url": f"https://{args.hostname}",
        # With SSO the local admin goes away; without it the generated initial password lives
        # only in the cluster (argocd-initial-admin-secret), never in Pulumi state.
        "admin.enabled": not sso,
        "exec.enabled": False,
        "statusbadge.enabled": False,
    }
    rbac: dict[str, object] = {"policy.default": "role:readonly"}
    if args.oidc is not None:
        # Argo CD talks OIDC directly; Dex would be one more component with nothing to do.
        cm["oidc.config"] = json.dumps(
            {
                "name": "SSO",
                "issuer": args.oidc.issuer,
                "clientID": args.oidc.client_id,
                "clientSecret": "$oidc.clientSecret",
                "requestedScopes": ["openid", "profile", "email", "groups"],
            }
        )
        rbac["policy.csv"] = "".join(f"g, {group}, role:admin\n" for group in args.oidc.admin_groups)
        rbac["scopes"] = "[groups]"
    return {
        "global": {"domain": args.hostname, "image": {"tag": ARGOCD_IMAGE_TAG}},
        "configs": {
            # TLS terminates at the platform Gateway; the server speaks plain HTTP behind it.
            "params": {"server.insecure": True},
            "cm": cm,
            "rbac": rbac,
        },
        "dex": {"enabled": False},
        "redis-ha": {"enabled": args.ha},
        # argocd_app_info (health and sync of every Application) feeds the GitOps alerts.
        "controller": {
            "replicas": 1,
            "metrics": {
                "enabled": True,
                "service": {"annotations": labels.scrape(labels.ARGOCD_CONTROLLER_METRICS_PORT)},
            },
        },
        "server": {"replicas": replicas},
        "repoServer": {"replicas": replicas},
        "applicationSet": {"replicas": replicas},
        "notifications": {"enabled": False},
    }


def image_updater_values(args: ArgoCdArgs, pull_secret: str) -> dict[str, object]:
    registry_host = f"rg.{args.registry.region}.scw.cloud"
    return {
        "image": {"tag": IMAGE_UPDATER_IMAGE_TAG},
        "config": {
            "git.user": args.commit_author_name,
            "git.email": args.commit_author_email,
            "registries": [
                {
                    "name": "scaleway",
                    "api_url": f"https://{registry_host}",
                    "prefix": registry_host,
                    "credentials": f"pullsecret:{ARGOCD_NAMESPACE}/{pull_secret}",
                    "default": True,
                }
            ],
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


def repository_secret_data(args: ArgoCdArgs) -> dict[str, pulumi.Input[str]]:
    data: dict[str, pulumi.Input[str]] = {"type": "git", "url": args.repo_url}
    if args.repo_uses_ssh:
        data["sshPrivateKey"] = args.repo_credential
    else:
        data["username"] = args.repo_username
        data["password"] = args.repo_credential
    return data


class ArgoCd(pulumi.ComponentResource):
    namespace: str
    #: The Argo CD Helm release, for dependents that need its CRDs.
    release: k8s.helm.v3.Release
    image_updater: k8s.helm.v3.Release

    def __init__(self, name: str, args: ArgoCdArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:gitops:ArgoCd", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # redis-ha runs a privileged-free but capability-adding haproxy; baseline is the strictest
        # level the Argo CD chart passes today. Restricted is still warned and audited.
        namespace = _namespace(ARGOCD_NAMESPACE, f"{name}-namespace", k8s_opts, enforce="baseline")
        after_namespace = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=[namespace, *args.depends_on]
        )

        secret_values: dict[str, object] = {}
        if args.oidc is not None:
            secret_values = {"configs": {"secret": {"extra": {"oidc.clientSecret": args.oidc.client_secret}}}}
        values = _merge(argocd_values(args), secret_values)
        self.release = k8s.helm.v3.Release(
            f"{name}-argocd",
            name="argocd",
            chart="argo-cd",
            version=ARGOCD_CHART_VERSION,
            repository_opts={"repo": ARGO_HELM_REPO},
            namespace=ARGOCD_NAMESPACE,
            values=values,
            atomic=True,
            cleanup_on_fail=True,
            timeout=900,
            opts=after_namespace,
        )
        after_argocd = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[self.release])

        k8s.core.v1.Secret(
            f"{name}-repository",
            metadata={
                "name": "gitops-repository",
                "namespace": ARGOCD_NAMESPACE,
                "labels": {"argocd.argoproj.io/secret-type": "repository"},
            },
            string_data=pulumi.Output.secret(repository_secret_data(args)),
            opts=after_namespace,
        )

        pull_secret = "registry-pull"
        docker_config: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.from_input(args.registry.secret_key).apply(
                lambda key: _docker_config(f"rg.{args.registry.region}.scw.cloud", key)
            )
        )
        k8s.core.v1.Secret(
            f"{name}-registry-pull",
            metadata={"name": pull_secret, "namespace": ARGOCD_NAMESPACE},
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": docker_config},
            opts=after_namespace,
        )
        self.image_updater = k8s.helm.v3.Release(
            f"{name}-image-updater",
            name="argocd-image-updater",
            chart="argocd-image-updater",
            version=IMAGE_UPDATER_CHART_VERSION,
            repository_opts={"repo": ARGO_HELM_REPO},
            namespace=ARGOCD_NAMESPACE,
            values=image_updater_values(args, pull_secret),
            atomic=True,
            cleanup_on_fail=True,
            opts=after_argocd,
        )

        if args.gateway is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-route",
                api_version="gateway.networking.k8s.io/v1",
                kind="HTTPRoute",
                metadata={"name": "argocd-server", "namespace": ARGOCD_NAMESPACE},
                spec={
                    "parentRefs": [{"name": args.gateway.name, "namespace": args.gateway.namespace}],
                    "hostnames": [args.hostname],
                    "rules": [{"backendRefs": [{"name": ARGOCD_SERVER_SERVICE, "port": 80}]}],
                },
                opts=after_argocd,
            )

        # Root apps live in tooling's own argocd namespace: they create the environment's child
        # Applications, whose destinations are the environment's cluster (see EnvironmentProject).
        project = k8s.apiextensions.CustomResource(
            f"{name}-root-project",
            api_version="argoproj.io/v1alpha1",
            kind="AppProject",
            metadata={"name": ROOT_PROJECT, "namespace": ARGOCD_NAMESPACE},
            spec={
                "description": "Root apps: each environment's app of apps, and nothing else",
                "sourceRepos": [args.repo_url],
                "destinations": [{"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NAMESPACE}],
                "clusterResourceWhitelist": [],
                "namespaceResourceWhitelist": [
                    {"group": "argoproj.io", "kind": "Application"},
                    {"group": "argoproj.io", "kind": "ApplicationSet"},
                ],
            },
            opts=after_argocd,
        )
        for environment, path in sorted(args.environments.items()):
            k8s.apiextensions.CustomResource(
                f"{name}-root-{environment}",
                api_version="argoproj.io/v1alpha1",
                kind="Application",
                metadata={
                    "name": f"{environment}-root",
                    "namespace": ARGOCD_NAMESPACE,
                    "labels": {labels.ENVIRONMENT: environment},
                    # Deleting a root app deletes the child Applications it created, not just itself.
                    "finalizers": ["resources-finalizer.argocd.argoproj.io"],
                },
                spec={
                    "project": ROOT_PROJECT,
                    "source": {
                        "repoURL": args.repo_url,
                        "targetRevision": args.target_revision,
                        "path": path,
                    },
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": ARGOCD_NAMESPACE,
                    },
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["ServerSideApply=true"],
                        "retry": {
                            "limit": 5,
                            "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"},
                        },
                    },
                },
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[project]),
            )

        self.namespace = ARGOCD_NAMESPACE
        self.register_outputs({"namespace": self.namespace})


def _docker_config(host: str, secret_key: str) -> str:
    # Scaleway's registry takes any username with an IAM secret key as the password.
    return json.dumps({"auths": {host: {"username": "nologin", "password": secret_key}}})


def _merge(base: dict[str, object], extra: Mapping[str, object]) -> dict[str, object]:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


# --- Registering a workload cluster with tooling's Argo CD ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClusterRegistrationArgs:
    environment: str
    #: Provider of the cluster being registered.
    provider: k8s.Provider
    #: Provider of the tooling cluster (built from tooling's kubeconfig, a secret).
    tooling_provider: k8s.Provider
    server_url: pulumi.Input[str]
    #: Base64 PEM of the registered cluster's CA.
    ca_data: pulumi.Input[str]
    #: The only namespaces Argo CD may manage in this cluster (the apps' own).
    namespaces: Sequence[str]
    #: Platform facts for ApplicationSets (database host, ingress IP, registry endpoint, ...).
    facts: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Resources that must exist first (the app namespaces the RoleBindings live in).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class ClusterRegistration(pulumi.ComponentResource):
    cluster_name: str

    def __init__(
        self, name: str, args: ClusterRegistrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:ClusterRegistration", name, None, opts)
        target = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = _namespace(MANAGER_NAMESPACE, f"{name}-namespace", target)
        in_namespace = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace])
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": "argocd-manager", "namespace": MANAGER_NAMESPACE},
            automount_service_account_token=False,
            opts=in_namespace,
        )
        # What Argo CD may do, granted only inside the listed namespaces (RoleBindings below):
        # no cluster-scoped writes, and not the platform-owned envelope of each app.
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role",
            metadata={"name": "argocd-manager-namespaced"},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[
                        "",
                        "apps",
                        "batch",
                        "autoscaling",
                        "policy",
                        "networking.k8s.io",
                        "gateway.networking.k8s.io",
                        "monitoring.coreos.com",
                    ],
                    resources=[
                        "configmaps",
                        "services",
                        "serviceaccounts",
                        "pods",
                        "pods/log",
                        "events",
                        "persistentvolumeclaims",
                        "deployments",
                        "statefulsets",
                        "replicasets",
                        "daemonsets",
                        "jobs",
                        "cronjobs",
                        "horizontalpodautoscalers",
                        "poddisruptionbudgets",
                        "ingresses",
                        "httproutes",
                        "servicemonitors",
                        "prometheusrules",
                    ],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                ),
                # Synced Secrets are read for health and diffing; they are written by External
                # Secrets, never by Argo CD.
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["secrets"], verbs=["get", "list", "watch"]
                ),
                # ExternalSecrets are the platform's (ENVELOPE_KINDS): shown, never written.
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["external-secrets.io"],
                    resources=["externalsecrets"],
                    verbs=["get", "list", "watch"],
                ),
            ],
            opts=target,
        )
        bindings = [
            k8s.rbac.v1.RoleBinding(
                f"{name}-binding-{ns}",
                metadata={"name": "argocd-manager", "namespace": ns},
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io",
                    kind="ClusterRole",
                    name="argocd-manager-namespaced",
                ),
                subjects=[
                    k8s.rbac.v1.SubjectArgs(
                        kind="ServiceAccount", name="argocd-manager", namespace=MANAGER_NAMESPACE
                    )
                ],
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.provider, depends_on=[role, account, *args.depends_on]
                ),
            )
            for ns in sorted(args.namespaces)
        ]
        # A long-lived token for the account. pulumi-kubernetes waits until the token controller
        # has filled data.token (pulumi/pulumi-kubernetes#2048), so the value below is real.
        token_secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={
                "name": "argocd-manager-token",
                "namespace": MANAGER_NAMESPACE,
                "annotations": {"kubernetes.io/service-account.name": "argocd-manager"},
            },
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[account],
                additional_secret_outputs=["data"],
            ),
        )
        token: pulumi.Output[str] = pulumi.Output.secret(token_secret.data.apply(_decode_token))
        cluster_config: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(token, args.ca_data).apply(
                lambda parts: json.dumps(
                    {"bearerToken": parts[0], "tlsClientConfig": {"insecure": False, "caData": parts[1]}}
                )
            )
        )
        self.cluster_name = args.environment
        k8s.core.v1.Secret(
            f"{name}-cluster-secret",
            metadata={
                "name": f"cluster-{args.environment}",
                "namespace": ARGOCD_NAMESPACE,
                "labels": {
                    "argocd.argoproj.io/secret-type": "cluster",
                    labels.ENVIRONMENT: args.environment,
                },
                "annotations": {f"platform.scw/{key}": value for key, value in sorted(args.facts.items())},
            },
            string_data={
                "name": args.environment,
                "server": args.server_url,
                # Namespace-scoped registration: Argo CD watches only these namespaces and never
                # touches cluster-scoped resources, matching the RBAC granted above.
                "namespaces": ",".join(sorted(args.namespaces)),
                "clusterResources": "false",
                "config": cluster_config,
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.tooling_provider, depends_on=bindings),
        )
        self.register_outputs({"clusterName": self.cluster_name})


def _decode_token(data: Mapping[str, str] | None) -> str:
    if not data or "token" not in data:
        raise ValueError("the argocd-manager token Secret has no data.token yet")
    return base64.b64decode(data["token"]).decode()


# --- Per-environment project and image updates ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ImageUpdateTarget:
    app: str
    image: str
    strategy: str
    allow_tags: str | None = None


@dataclass(frozen=True, kw_only=True)
class EnvironmentProjectArgs:
    environment: str
    #: Provider of the tooling cluster, where Argo CD's objects live.
    tooling_provider: k8s.Provider
    repo_url: str
    target_revision: str
    #: Destination: the cluster name registered with Argo CD ("in-cluster" for tooling itself).
    cluster_name: str
    namespaces: Sequence[str]
    image_updates: Sequence[ImageUpdateTarget] = ()
    write_back_branch: str = "image-updater-{{.SHA256}}"
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class EnvironmentProject(pulumi.ComponentResource):
    project_name: str

    def __init__(
        self, name: str, args: EnvironmentProjectArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:EnvironmentProject", name, None, opts)
        in_tooling = pulumi.ResourceOptions(
            parent=self, provider=args.tooling_provider, depends_on=list(args.depends_on)
        )
        self.project_name = args.environment
        k8s.apiextensions.CustomResource(
            f"{name}-project",
            api_version="argoproj.io/v1alpha1",
            kind="AppProject",
            metadata={"name": self.project_name, "namespace": ARGOCD_NAMESPACE},
            spec={
                "description": f"Apps of the {args.environment} environment",
                "sourceRepos": [args.repo_url],
                "destinations": [
                    {"name": args.cluster_name, "namespace": ns} for ns in sorted(args.namespaces)
                ],
                # Namespaces, CRDs, RBAC and every other cluster-scoped object belong to the
                # platform (Pulumi), not to apps.
                "clusterResourceWhitelist": [],
                "namespaceResourceBlacklist": list(ENVELOPE_KINDS),
                "orphanedResources": {"warn": True},
            },
            opts=in_tooling,
        )
        if args.image_updates:
            k8s.apiextensions.CustomResource(
                f"{name}-image-updater",
                api_version="argocd-image-updater.argoproj.io/v1alpha1",
                kind="ImageUpdater",
                metadata={"name": args.environment, "namespace": ARGOCD_NAMESPACE},
                spec={
                    "writeBackConfig": {
                        "method": "git",
                        "gitConfig": {
                            "repository": args.repo_url,
                            # base:target — commits go to a separate branch; the Git host's merge
                            # request (merge when green) is what reaches target_revision.
                            "branch": f"{args.target_revision}:{args.write_back_branch}",
                        },
                    },
                    "applicationRefs": [
                        {
                            "namePattern": f"{args.environment}-{update.app}",
                            "images": [
                                {
                                    "alias": update.app,
                                    "imageName": update.image,
                                    "commonUpdateSettings": {
                                        "updateStrategy": update.strategy,
                                        **(
                                            {"allowTags": f"regexp:{update.allow_tags}"}
                                            if update.allow_tags
                                            else {}
                                        ),
                                    },
                                }
                            ],
                        }
                        for update in args.image_updates
                    ],
                },
                opts=in_tooling,
            )
        self.register_outputs({"projectName": self.project_name})

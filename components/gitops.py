"""GitOps: Argo CD in the tooling cluster reconciles every environment from Git.

The chain this supports: a merge -> CI pushes an image -> the image updater sees the new tag and
commits it to a write-back branch -> the Git host opens a merge request that merges when green
-> Argo CD rolls it out. Nobody mutates a cluster by hand.

* ``ArgoCd`` (tooling stack): Argo CD, its Git repository credential, the image updater with
  registry read access, the ``platform`` AppProject, the built-in ``default`` AppProject locked
  down, one root "app of apps" per environment, and the admission policies that keep what a root
  app creates inside its environment's project.
* ``Registrar`` (tooling stack, one per workload environment): the ``registrar-<env>`` identity the
  environment's stack uses in tooling's ``argocd`` namespace instead of tooling's admin kubeconfig.
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
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import kube, labels

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

#: Argo CD (resource tracking "annotation", the default since v3.0) marks every object a sync
#: applies with ``<app>:<group>/<kind>:<namespace>/<name>`` under this key; the admission policies
#: below read the creating app from it.
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
#: Kapsule API servers (``https://<cluster-id>.api.k8s.<region>.scw.cloud:6443``): every registered
#: workload cluster, never tooling itself (``https://kubernetes.default.svc``). Argo CD matches the
#: ``clusters`` globs of ``resource.exclusions`` against the cluster's server URL
#: (docs/operator-manual/declarative-setup.md "Resource Exclusion/Inclusion": "clusters: a list of
#: globs to match the cluster"; util/settings/filtered_resource.go ``MatchCluster`` uses
#: ``glob.Match``, where ``*`` also matches dots).
WORKLOAD_CLUSTER_SERVERS = "https://*.api.k8s.*.scw.cloud:6443"
#: Argo CD's own default ``resource.exclusions`` (manifests/base/config/argocd-cm.yaml, which the
#: chart's values repeat): setting the key replaces the whole list, so it is carried here.
UPSTREAM_RESOURCE_EXCLUSIONS: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": ["", "discovery.k8s.io"], "kinds": ["Endpoints", "EndpointSlice"]},
    {"apiGroups": ["apiregistration.k8s.io"], "kinds": ["APIService"]},
    {"apiGroups": ["coordination.k8s.io"], "kinds": ["Lease"]},
    {
        "apiGroups": ["authentication.k8s.io", "authorization.k8s.io"],
        "kinds": [
            "SelfSubjectReview",
            "TokenReview",
            "LocalSubjectAccessReview",
            "SelfSubjectAccessReview",
            "SelfSubjectRulesReview",
            "SubjectAccessReview",
        ],
    },
    {"apiGroups": ["certificates.k8s.io"], "kinds": ["CertificateSigningRequest"]},
    {"apiGroups": ["cert-manager.io"], "kinds": ["CertificateRequest"]},
    {"apiGroups": ["cilium.io"], "kinds": ["CiliumIdentity", "CiliumEndpoint", "CiliumEndpointSlice"]},
    {
        "apiGroups": ["kyverno.io", "reports.kyverno.io", "wgpolicyk8s.io"],
        "kinds": [
            "PolicyReport",
            "ClusterPolicyReport",
            "EphemeralReport",
            "ClusterEphemeralReport",
            "AdmissionReport",
            "ClusterAdmissionReport",
            "BackgroundScanReport",
            "ClusterBackgroundScanReport",
            "UpdateRequest",
        ],
    },
)
#: Kinds Argo CD neither watches nor applies in the workload clusters. argocd-manager may not read
#: them there (ClusterRegistration): Secrets hold the apps' keys and come from ExternalSecrets only;
#: a PodDisruptionBudget from Git could block node drains and auto-upgrades; the Gateway is the only
#: front door, so no Ingress. Excluded, Argo CD reports such a manifest as an excluded resource
#: instead of failing to list the kind.
WORKLOAD_EXCLUDED_KINDS: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [""], "kinds": ["Secret"]},
    {"apiGroups": ["policy"], "kinds": ["PodDisruptionBudget"]},
    {"apiGroups": ["networking.k8s.io"], "kinds": ["Ingress"]},
)


#: RBAC verbs, read and write.
_READ = ("get", "list", "watch")
_WRITE = ("create", "update", "patch", "delete")


def root_app_name(environment: str) -> str:
    """The root "app of apps" of an environment (the admission policies rely on the suffix)."""
    return f"{environment}-root"


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
        "resource.exclusions": resource_exclusions(),
        # argocd-manager may list only what it manages; without this Argo CD fails the whole
        # cluster cache on the first kind it may not list (a NetworkPolicy, a ResourceQuota, ...)
        # instead of skipping it (gitops-engine pkg/cache/cluster.go, isRestrictedResource).
        "resource.respectRBAC": "normal",
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


def resource_exclusions() -> str:
    """``resource.exclusions`` for argocd-cm: upstream's list plus the kinds Argo CD must leave
    alone in the registered workload clusters (scoped by their server URL; tooling keeps them)."""
    scoped = [{**entry, "clusters": [WORKLOAD_CLUSTER_SERVERS]} for entry in WORKLOAD_EXCLUDED_KINDS]
    return yaml.safe_dump([*UPSTREAM_RESOURCE_EXCLUSIONS, *scoped], sort_keys=False)


#: Argo CD's built-in ``default`` project with every permission removed: the lock-down manifest of
#: docs/user-guide/projects.md ("The Default Project"). An Application that names it is refused.
DEFAULT_PROJECT_SPEC: Mapping[str, object] = {
    "description": "Locked down: every Application names its environment's project",
    "sourceRepos": [],
    "sourceNamespaces": [],
    "destinations": [],
    "clusterResourceWhitelist": [],
    # An empty namespaced whitelist means "everything"; only the blacklist can deny it all.
    "namespaceResourceBlacklist": [{"group": "*", "kind": "*"}],
}

#: Generator kinds that carry their own ``template`` (overriding ``spec.template`` per generator).
_LEAF_GENERATORS = (
    "clusterDecisionResource",
    "clusters",
    "git",
    "list",
    "plugin",
    "pullRequest",
    "scmProvider",
)
#: Matrix and merge generators nest: top level (typed), their children (typed), and one more level
#: of children inside a child matrix or merge (free-form JSON, leaf generators only in Argo CD).
_GENERATOR_NESTING = ("g", "c", "n")


def _same_environment(project: str) -> str:
    """CEL: ``project`` names the environment of the root app in the tracking id. The ``:`` ends the
    app name, so ``prod-root:...`` matches project ``prod`` and nothing else."""
    return f"variables.trackingId.startsWith({project} + '-root:')"


def _template_keeps_project(template: str) -> str:
    return (
        f"(!has({template}.spec) || !has({template}.spec.project) || "
        f"{_same_environment(f'{template}.spec.project')})"
    )


def _generator_keeps_project(generator: str, depth: int = 0) -> str:
    """CEL: no template inside ``generator`` (at any nesting Argo CD allows) changes the project."""
    checks = [
        f"(!has({generator}.{kind}) || !has({generator}.{kind}.template) || "
        f"{_template_keeps_project(f'{generator}.{kind}.template')})"
        for kind in _LEAF_GENERATORS
    ]
    if depth + 1 < len(_GENERATOR_NESTING):
        child = _GENERATOR_NESTING[depth + 1]
        for combined in ("matrix", "merge"):
            node = f"{generator}.{combined}"
            checks.append(
                f"(!has({node}) || ((!has({node}.template) || {_template_keeps_project(f'{node}.template')})"
                f" && (!has({node}.generators) || {node}.generators.all({child}, "
                f"{_generator_keeps_project(child, depth + 1)}))))"
            )
    else:
        # Argo CD nests matrix and merge one level only; anything deeper is refused unread.
        checks.append(f"!has({generator}.matrix) && !has({generator}.merge)")
    return " && ".join(checks)


def child_project_policies(environments: Sequence[str]) -> dict[str, Any]:
    """ValidatingAdmissionPolicy specs (by resource) that keep what a root app creates in its
    environment's project.

    A root app (``<env>-root``, project ``platform``) may create Applications and ApplicationSets
    in ``argocd``. Without this, one created from ``environments/prod`` could name project
    ``default``, ``platform`` or ``tooling`` and deploy into tooling, where the controller is
    cluster-admin. Objects Argo CD applied carry the tracking annotation
    ``<app>:<group>/<kind>:<namespace>/<name>``; when it is present the creating app must be a
    known root app and the project its environment. Objects without it (the root apps and the
    per-app Applications Pulumi creates) are not matched.
    """
    known = "[" + ", ".join(f"'{env}'" for env in sorted(environments)) + "]"
    match_conditions = [
        {
            "name": "applied-by-an-argo-cd-app",
            "expression": (
                f"has(object.metadata.annotations) && '{TRACKING_ANNOTATION}' in object.metadata.annotations"
            ),
        }
    ]
    variables = [
        {"name": "trackingId", "expression": f"object.metadata.annotations['{TRACKING_ANNOTATION}']"},
        {"name": "environments", "expression": known},
    ]

    def constraints(resource: str) -> dict[str, Any]:
        return {
            "resourceRules": [
                {
                    "apiGroups": ["argoproj.io"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [resource],
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ARGOCD_NAMESPACE}},
        }

    applications: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": constraints("applications"),
        "matchConditions": match_conditions,
        "variables": variables,
        "validations": [
            {
                "expression": (
                    "has(object.spec) && has(object.spec.project) && "
                    "object.spec.project in variables.environments && "
                    + _same_environment("object.spec.project")
                ),
                "message": "an Application created by a root app (<env>-root) must use project <env>",
                "messageExpression": (
                    "'Application ' + object.metadata.name + ' (tracking id ' + variables.trackingId + "
                    "') must use the project of the environment whose root app created it: "
                    "<env>-root creates Applications in project <env> only'"
                ),
                "reason": "Forbidden",
            }
        ],
    }
    application_sets: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": constraints("applicationsets"),
        "matchConditions": match_conditions,
        "variables": variables,
        "validations": [
            {
                "expression": (
                    "has(object.spec) && has(object.spec.template) && has(object.spec.template.spec) && "
                    "has(object.spec.template.spec.project) && "
                    "object.spec.template.spec.project in variables.environments && "
                    + _same_environment("object.spec.template.spec.project")
                ),
                "message": (
                    "an ApplicationSet created by a root app (<env>-root) must generate Applications in "
                    "project <env>, named literally (no template)"
                ),
                "reason": "Forbidden",
            },
            {
                "expression": "!has(object.spec.templatePatch)",
                "message": (
                    "an ApplicationSet created by a root app may not use templatePatch (it can rewrite "
                    "the project)"
                ),
                "reason": "Forbidden",
            },
            {
                "expression": (
                    "!has(object.spec.generators) || object.spec.generators.all(g, "
                    + _generator_keeps_project("g")
                    + ")"
                ),
                "message": (
                    "an ApplicationSet created by a root app may not set another project in a generator's "
                    "template (nor nest matrix or merge generators deeper than Argo CD supports)"
                ),
                "reason": "Forbidden",
            },
        ],
    }
    return {"applications": applications, "applicationsets": application_sets}


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
                lambda key: kube.docker_config_json(f"rg.{args.registry.region}.scw.cloud", key)
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
        # Argo CD creates the built-in `default` project at start-up, allowing any source, any
        # destination and every kind; it "can be modified, but not deleted" (projects.md). A
        # server-side-apply patch because the object already exists when Pulumi gets to it (a
        # create would fail with AlreadyExists); forced because argocd-server owns these fields.
        default_project = k8s.apiextensions.CustomResourcePatch(
            f"{name}-default-project",
            api_version="argoproj.io/v1alpha1",
            kind="AppProject",
            metadata={
                "name": "default",
                "namespace": ARGOCD_NAMESPACE,
                "annotations": {"pulumi.com/patchForce": "true"},
            },
            spec=dict(DEFAULT_PROJECT_SPEC),
            opts=after_argocd,
        )
        guards: list[pulumi.Resource] = [default_project]
        for resource, spec in child_project_policies(list(args.environments)).items():
            policy_name = f"platform-root-{resource}"
            policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                f"{name}-{resource}-policy",
                metadata={"name": policy_name},
                spec=spec,
                opts=k8s_opts,
            )
            guards.append(
                k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                    f"{name}-{resource}-binding",
                    metadata={"name": policy_name},
                    spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpecArgs(
                        policy_name=policy_name, validation_actions=["Deny"]
                    ),
                    opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[policy]),
                )
            )
        for environment, path in sorted(args.environments.items()):
            k8s.apiextensions.CustomResource(
                f"{name}-root-{environment}",
                api_version="argoproj.io/v1alpha1",
                kind="Application",
                metadata={
                    "name": root_app_name(environment),
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
                # The guards first: a root app starts creating Applications as soon as it exists.
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.provider, depends_on=[project, *guards]
                ),
            )

        self.namespace = ARGOCD_NAMESPACE
        self.register_outputs({"namespace": self.namespace})


def _merge(base: dict[str, object], extra: Mapping[str, object]) -> dict[str, object]:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


# --- Registrars: what a workload stack may do in tooling -----------------------------------------


def registrar_name(environment: str) -> str:
    return f"registrar-{environment}"


def registrar_rules(environment: str) -> list[dict[str, list[str]]]:
    """The Role of ``registrar-<env>`` in ``argocd``: exactly what the environment's stack declares
    there (ClusterRegistration's cluster Secret, EnvironmentProject's AppProject and ImageUpdater,
    App.deliver's Applications), and nothing else of Argo CD's."""
    # RBAC cannot restrict `create` by resourceNames (the name is not known when the request is
    # authorized), so create is granted on the kind; every other verb is pinned to the names the
    # stack uses. Accepted: see the README (GitOps, "Registrar identities") for what that leaves.
    named = [*_READ, "update", "patch", "delete"]
    return [
        {
            "api_groups": [""],
            "resources": ["secrets"],
            "resource_names": [f"cluster-{environment}"],
            "verbs": named,
        },
        {"api_groups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "api_groups": ["argoproj.io"],
            "resources": ["appprojects"],
            "resource_names": [environment],
            "verbs": named,
        },
        {"api_groups": ["argoproj.io"], "resources": ["appprojects"], "verbs": ["create"]},
        # Application names (<env>-<app>) come from the environment's own stack file, unknown here.
        {"api_groups": ["argoproj.io"], "resources": ["applications"], "verbs": [*_READ, *_WRITE]},
        {
            "api_groups": ["argocd-image-updater.argoproj.io"],
            "resources": ["imageupdaters"],
            "resource_names": [environment],
            "verbs": named,
        },
        {
            "api_groups": ["argocd-image-updater.argoproj.io"],
            "resources": ["imageupdaters"],
            "verbs": ["create"],
        },
    ]


def registrar_kubeconfig(*, server: str, ca_data: str, token: str, user: str) -> str:
    """A kubeconfig for one service account of tooling, defaulting to the ``argocd`` namespace."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "tooling", "cluster": {"server": server, "certificate-authority-data": ca_data}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": f"{user}@tooling",
                    "context": {"cluster": "tooling", "user": user, "namespace": ARGOCD_NAMESPACE},
                }
            ],
            "current-context": f"{user}@tooling",
        },
        indent=2,
    )


@dataclass(frozen=True, kw_only=True)
class RegistrarArgs:
    environment: str
    #: Provider of the tooling cluster (this stack's own cluster).
    provider: k8s.Provider
    #: Tooling's API server URL and base64 PEM CA, for the kubeconfig.
    server_url: pulumi.Input[str]
    ca_data: pulumi.Input[str]
    #: What creates the argocd namespace first (Argo CD's release).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Registrar(pulumi.ComponentResource):
    """``registrar-<env>``: the identity a workload environment's stack uses in tooling's ``argocd``
    namespace, instead of tooling's admin kubeconfig (whoever can deploy prod would otherwise be
    cluster-admin of the management plane)."""

    #: Secret: a kubeconfig for tooling with this identity's token.
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: RegistrarArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:gitops:Registrar", name, None, opts)
        identity = registrar_name(args.environment)
        in_argocd = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=list(args.depends_on)
        )
        meta: Any = {
            "name": identity,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {labels.ENVIRONMENT: args.environment},
        }
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account", metadata=meta, automount_service_account_token=False, opts=in_argocd
        )
        role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=meta,
            rules=[k8s.rbac.v1.PolicyRuleArgs(**rule) for rule in registrar_rules(args.environment)],
            opts=in_argocd,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-binding",
            metadata=meta,
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=identity
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=identity, namespace=ARGOCD_NAMESPACE)
            ],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[role, account]),
        )
        # A long-lived token, filled in by the token controller (pulumi-kubernetes waits for it).
        token_secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={
                "name": f"{identity}-token",
                "namespace": ARGOCD_NAMESPACE,
                "annotations": {"kubernetes.io/service-account.name": identity},
            },
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[account], additional_secret_outputs=["data"]
            ),
        )
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(args.server_url, args.ca_data, token_secret.data.apply(_decode_token)).apply(
                lambda parts: registrar_kubeconfig(
                    server=parts[0], ca_data=parts[1], token=parts[2], user=identity
                )
            )
        )
        self.register_outputs({"kubeconfig": self.kubeconfig})


# --- Registering a workload cluster with tooling's Argo CD ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClusterRegistrationArgs:
    environment: str
    #: Provider of the cluster being registered.
    provider: k8s.Provider
    #: Provider of the tooling cluster, as this environment's registrar (kubeconfig a secret).
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
        # What Argo CD may do, granted only inside the listed namespaces (RoleBindings below): no
        # cluster-scoped writes, one API group per rule, listed resources only (no wildcard).
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role",
            metadata={"name": "argocd-manager-namespaced"},
            rules=[k8s.rbac.v1.PolicyRuleArgs(**rule) for rule in manager_rules()],
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


#: What argocd-manager manages in an app namespace, by API group. Left out on purpose: Secrets (the
#: apps' ``<app>-env`` holds payment keys and database passwords; they come from ExternalSecrets and
#: Argo CD excludes the kind, see ``resource_exclusions``), the platform's envelope (ENVELOPE_KINDS),
#: PodDisruptionBudgets (one from Git could block node drains and auto-upgrades) and Ingresses (the
#: platform Gateway is the only front door).
MANAGED_RESOURCES: Mapping[str, tuple[str, ...]] = {
    "": (
        "configmaps",
        "services",
        "serviceaccounts",
        "pods",
        "pods/log",
        "events",
        "persistentvolumeclaims",
    ),
    "apps": ("deployments", "statefulsets", "replicasets", "daemonsets"),
    "batch": ("jobs", "cronjobs"),
    "autoscaling": ("horizontalpodautoscalers",),
    "gateway.networking.k8s.io": ("httproutes",),
    "monitoring.coreos.com": ("servicemonitors", "prometheusrules"),
}


def manager_rules() -> list[dict[str, list[str]]]:
    """argocd-manager's namespaced rules (a pure function, so tests can inspect it)."""
    rules = [
        {"api_groups": [group], "resources": list(resources), "verbs": [*_READ, *_WRITE]}
        for group, resources in MANAGED_RESOURCES.items()
    ]
    # ExternalSecrets are the platform's (ENVELOPE_KINDS): shown, never written.
    rules.append({"api_groups": ["external-secrets.io"], "resources": ["externalsecrets"], "verbs": [*_READ]})
    return rules


def _decode_token(data: Mapping[str, str] | None) -> str:
    if not data or "token" not in data:
        raise ValueError("the service account token Secret has no data.token yet")
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

"""GitOps: Argo CD in the tooling cluster reconciles every environment from Git.

The chain this supports: a merge -> CI pushes an image -> the image updater sees the new tag and
commits it to a write-back branch -> the Git host opens a merge request that merges when green
-> Argo CD rolls it out. Nobody mutates a cluster by hand.

* ``ArgoCd`` (tooling stack): Argo CD, its Git repository credential, the image updater with
  registry read access, the ``platform`` AppProject, the built-in ``default`` AppProject locked
  down, one root "app of apps" per environment, and the admission policies that keep what a root
  app creates inside its environment's project.
* ``ClusterRegistration`` (each workload stack, in its own cluster only): an ``argocd-manager``
  identity limited to that environment's namespaces, and its token. The stack exports URL, CA,
  token and platform facts (scw_platform.contract); it has no provider or resource in tooling.
* ``RegisteredCluster`` (tooling stack, per registered environment): the Argo CD cluster Secret,
  built by the hub from the spoke's validated exports. Platform facts travel as annotations on it
  for ApplicationSets (the GitOps-bridge metadata).
* ``EnvironmentProject`` (tooling stack, per environment): the AppProject (its cluster, its
  namespaces, nothing cluster-scoped, no Secrets or RBAC), the apps' Applications and the
  ``ImageUpdater``.

Helm: ``helm.v3.Release`` for both charts. Argo CD's chart and the image updater's chart run
Helm hooks (the image updater's CRD upgrade job, Argo CD's redis-ha secret init); ``helm.v4.Chart``
would silently drop them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import AfterValidator, Field, StringConstraints, field_validator

from scw_platform import helm, kube, labels
from scw_platform.contract import (
    PLATFORM_NAMESPACES,
    PROMOTION,
    RegisteredApp,
    Registration,
    tag_pattern_problem,
)
from scw_platform.notifications import (
    NotificationSettings,
    declare_notifications_secret,
    notifications_values,
    vault_references,
)
from scw_platform.settings import DnsLabel, Hostname, Settings, no_duplicates

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's components (platform:gitops).
# --------------------------------------------------------------------------------------------

_REPO_URL = re.compile(r"^(https://[^\s/]+/\S+|ssh://[^\s@]+@[^\s/]+/\S+|[\w.-]+@[\w.-]+:\S+)$")


class OidcSettings(Settings):
    issuer: Annotated[str, StringConstraints(pattern=r"^https://\S+$")]
    """The identity provider's issuer URL (https)."""
    client_id: Annotated[str, StringConstraints(min_length=1)]
    """Client ID of Argo CD's application at the identity provider; its secret is the vault entry
    /platform/argocd/oidc-client-secret of the tooling project (docs/gitops.md).
    """
    admin_groups: list[str] = Field(default_factory=list)
    """Identity-provider groups mapped to Argo CD's admin role."""
    readonly_groups: list[str] = Field(default_factory=list)
    """Groups that may read (Applications, manifests, logs); anyone else signed in sees nothing."""


#: The Git hosts whose push webhooks Argo CD and the GitOps repository's pipelines know.
GitHost = Literal["gitlab", "github"]
#: Argo CD's poll of the GitOps repository, the fallback behind its webhook (argocd-cm
#: ``timeout.reconciliation``, default 120 s, 0 disables it; ``timeout.reconciliation.jitter``,
#: default 60 s, the most added to each app's timeout: argo-cd docs/operator-manual/argocd-cm.yaml).
RECONCILIATION_DEFAULT_SECONDS = 180
RECONCILIATION_MIN_SECONDS = 60
RECONCILIATION_JITTER_SECONDS = 60
#: The image updater's registry poll (``run --interval``, default 2m, 0 runs once and stops:
#: argocd-image-updater docs/install/cmd/run.md).
IMAGE_UPDATER_INTERVAL_DEFAULT_SECONDS = 120
IMAGE_UPDATER_INTERVAL_MIN_SECONDS = 60


def poll_interval(*, minimum: int, what: str) -> AfterValidator:
    """A poll interval's validator. 0 (or less) is refused: it switches the poll off, which would
    leave no fallback when an event is lost; below ``minimum`` every cycle costs the Git host or the
    registry one request per app for little gain, events being the fast path."""

    def check(seconds: int) -> int:
        if seconds <= 0:
            raise ValueError(
                f"must be at least {minimum} (seconds); 0 would switch {what} off, leaving no fallback"
            )
        if seconds < minimum:
            raise ValueError(
                f"must be at least {minimum} (seconds), got {seconds}: each cycle of {what} asks the "
                "remote once per app; events (webhooks) are the fast path, the poll only their fallback"
            )
        return seconds

    return AfterValidator(check)


class ArgoCdWebhookSettings(Settings):
    git_host: GitHost
    """gitlab or github: the Git host that calls Argo CD's /api/webhook on every push to the GitOps
    repository, with the shared secret platform:argocdWebhookSecret (a deploy-time secret the program
    writes to the vault; docs/gitops.md).
    """
    hostname: Hostname | None = None
    """Where the Git host reaches Argo CD when argocd.hostname is unset: only /api/webhook is routed
    there. Required without argocd.hostname, refused with it (the UI's hostname serves the webhook).
    """


class ArgoCdSettings(Settings):
    hostname: Hostname | None = None
    """Serves the UI and API on the public Gateway (requires ``oidc``). Without it, the UI is reached with
    ``kubectl port-forward`` only.
    """
    ha: bool = False
    """Run Argo CD's components with several replicas (the chart's HA mode)."""
    oidc: OidcSettings | None = None
    """Single sign-on. With it, the local admin account is disabled."""
    webhook: ArgoCdWebhookSettings | None = None
    """The Git host's push webhook: Argo CD refreshes on each push instead of waiting for its poll."""
    reconciliation_timeout_seconds: Annotated[
        int, poll_interval(minimum=RECONCILIATION_MIN_SECONDS, what="Argo CD's repository poll")
    ] = RECONCILIATION_DEFAULT_SECONDS
    """Argo CD's poll of the repository (seconds, at least 60; Argo CD adds up to 60 s of jitter): the
    fallback behind the webhook.
    """


class CommitAuthor(Settings):
    name: str = "argocd-image-updater"
    """Author name of the image updater's commits."""
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")] = (
        "image-updater@localhost"
    )
    """Author email of the image updater's commits."""


class ImageUpdaterSettings(Settings):
    write_back_branch: Annotated[str, StringConstraints(pattern=r"^[\w./{}-]+$")] = (
        "image-updater-{{.SHA256}}"
    )
    """Branch the updater commits to; the Git host opens a merge request from it."""
    commit_author: CommitAuthor = CommitAuthor()
    """Who the image updater's commits are by."""
    interval_seconds: Annotated[
        int,
        poll_interval(minimum=IMAGE_UPDATER_INTERVAL_MIN_SECONDS, what="the image updater's registry poll"),
    ] = IMAGE_UPDATER_INTERVAL_DEFAULT_SECONDS
    """How often the updater checks the registry for new tags (seconds, at least 60). A poll: Scaleway's
    registry sends no webhook the updater understands (docs/gitops.md).
    """


class ImageUpdate(Settings):
    app: DnsLabel
    """An app of platform:apps."""
    strategy: Literal["semver", "digest", "newest-build", "alphabetical"] = "semver"
    """How the updater picks the next image: highest semver tag, newest digest of one tag, newest build, or
    last tag alphabetically.
    """
    allow_tags: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    """Regular expression of tags the updater may pick (e.g. only release tags); never empty (an empty
    pattern would silently allow every tag).
    """

    @field_validator("allow_tags")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        problem = tag_pattern_problem(pattern) if pattern is not None else None
        if problem is not None:
            raise ValueError(problem)
        return pattern


class GitOpsSettings(Settings):
    repo_url: str | None = None
    """Tooling only: the GitOps repository Argo CD reads (workload stacks never touch it)."""
    target_revision: Annotated[str, StringConstraints(pattern=r"^[\w./-]+$")] = "main"
    """The branch Argo CD follows: the protected branch itself (not HEAD or refs/)."""
    repo_username: str = "git"
    """Username sent with the token over https (GitHub accepts any, GitLab wants oauth2)."""
    namespaces: list[DnsLabel] = Field(default_factory=list)
    """Namespaces of this environment that Argo CD may deploy to besides the apps' own."""
    argocd: ArgoCdSettings | None = None
    """Argo CD in the tooling cluster (tooling only)."""
    image_updater: ImageUpdaterSettings = ImageUpdaterSettings()
    """The image updater's write-back (tooling only)."""
    notifications: NotificationSettings | None = None
    """Tooling only: where Argo CD announces deployments, failed syncs and degraded apps (Telegram
    or webhook contact points; their credentials in the vault, see docs/releases.md)."""
    image_updates: list[ImageUpdate] = Field(default_factory=list)
    """Per-app image-updater settings; apps not listed get the defaults (semver, any tag)."""
    promoted_from: DnsLabel | None = None
    """The environment this one receives images from by promotion only (``make promote FROM=dev
    TO=prod``): no image updater writes this environment's paths. Required for role production."""

    @field_validator("image_updates")
    @classmethod
    def _one_entry_per_app(cls, updates: list[ImageUpdate]) -> list[ImageUpdate]:
        no_duplicates("app", [u.app for u in updates])
        return updates

    @field_validator("namespaces")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        no_duplicates("entry", names)
        return names

    @field_validator("namespaces")
    @classmethod
    def _not_a_platform_namespace(cls, names: list[str]) -> list[str]:
        taken = sorted(set(names) & PLATFORM_NAMESPACES)
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: platform namespaces are the program's, never Argo CD's to deploy into "
                f"(reserved: {', '.join(sorted(PLATFORM_NAMESPACES))})"
            )
        return names

    @field_validator("repo_url")
    @classmethod
    def _https_or_ssh(cls, url: str | None) -> str | None:
        if url is not None and not _REPO_URL.fullmatch(url):
            raise ValueError(
                f"must be an https:// URL or an ssh URL (ssh://git@host/path or git@host:path), got {url!r}"
            )
        return url

    def image_updates_for(self, apps: Iterable[str]) -> list[ImageUpdate]:
        """Every app gets an image-updater entry: its ``imageUpdates`` settings, else the defaults."""
        configured = {update.app: update for update in self.image_updates}
        return [configured.get(app) or ImageUpdate(app=app) for app in apps]

    @property
    def uses_ssh(self) -> bool:
        return not (self.repo_url or "").startswith("https://")

    def path_for(self, environment: str) -> str:
        return f"environments/{environment}"


ARGO_HELM_REPO = "https://argoproj.github.io/argo-helm"
ARGOCD_CHART_VERSION = "10.1.1"
IMAGE_UPDATER_CHART_VERSION = "1.2.4"
# Every image the two releases run, one constant each (a digest table will key on them). Tags are
# explicit rather than the charts' defaults, so a chart bump never changes an image unseen.
ARGOCD_IMAGE = "quay.io/argoproj/argocd"
ARGOCD_IMAGE_TAG = "v3.4.4"  # argo-cd 10.1.1's appVersion (../shared/schemas chart-version.yaml)
IMAGE_UPDATER_IMAGE = "quay.io/argoprojlabs/argocd-image-updater"
IMAGE_UPDATER_IMAGE_TAG = "v1.2.2"  # argocd-image-updater 1.2.4's appVersion (same place)
#: Redis (the plain deployment without HA; redis-ha's server, sentinel and init containers with it):
#: the repository argo-helm's values use, and the tag of the 9.4.x-10.2.x charts and of Argo CD
#: v3.3-v3.5's own manifests (manifests/install.yaml: redis 8.2.3-alpine).
REDIS_IMAGE = "ecr-public.aws.com/docker/library/redis"
REDIS_IMAGE_TAG = "8.2.3-alpine"
#: redis-ha's HAProxy (HA only): the tag of Argo CD v3.4's manifests/ha/install.yaml.
HAPROXY_IMAGE = "ecr-public.aws.com/docker/library/haproxy"
HAPROXY_IMAGE_TAG = "3.0.8-alpine"

ARGOCD_NAMESPACE = "argocd"
#: Container ports, the chart's defaults (argo-helm charts/argo-cd/values.yaml and its README's
#: values table): ``server.containerPorts.server`` (plain HTTP behind the Gateway, server.insecure)
#: and the application controller's ``controller.containerPorts.metrics``
#: (labels.ARGOCD_CONTROLLER_METRICS_PORT, 8082).
ARGOCD_SERVER_PORT = 8080
#: Git's default ports by transport, for a repository URL that names none.
GIT_HTTPS_PORT = 443
GIT_SSH_PORT = 22
ARGOCD_RELEASE = "argocd"
ARGOCD_SERVER_SERVICE = "argocd-server"
#: The OIDC client secret's own Secret, synced from the vault by an ExternalSecret (oidc_secret_spec);
#: argocd-cm's ``oidc.config`` names it as ``$<secret>:<key>``. Argo CD resolves such a reference
#: only in a Secret labelled ``app.kubernetes.io/part-of: argocd`` (argo-cd
#: docs/operator-manual/user-management/index.md, "Alternative"), so the value never enters the
#: chart's values and they stay plain (and checked offline).
OIDC_SECRET = "argocd-oidc"
OIDC_SECRET_KEY = "clientSecret"
#: Its Scaleway Secret Manager entry in the tooling project, written by the platform team (the
#: vault, not Pulumi config: docs/gitops.md, "Single sign-on").
OIDC_VAULT_KEY = "/platform/argocd/oidc-client-secret"
#: The label Argo CD looks for on a Secret that a ``$<secret>:<key>`` reference may read.
ARGOCD_PART_OF = {"app.kubernetes.io/part-of": "argocd"}
#: The Git webhook's shared secret: its own Secret, synced from the vault like OIDC_SECRET, named
#: from argocd-secret's ``webhook.<host>.secret`` as ``$<secret>:<key>`` (argo-cd
#: docs/operator-manual/webhook.md, "Alternative": the same reference form in argocd-secret).
WEBHOOK_SECRET = "argocd-webhook"
WEBHOOK_SECRET_KEY = "secret"
#: Where the program writes platform:argocdWebhookSecret (tooling's Scaleway Secret Manager).
WEBHOOK_VAULT_FOLDER = "/platform/argocd"
WEBHOOK_VAULT_NAME = "webhook-secret"
#: Argo CD's webhook endpoint (argo-cd docs/operator-manual/webhook.md): the only path routed when
#: the UI has no public hostname.
WEBHOOK_PATH = "/api/webhook"
#: The argo-cd chart's values key (under ``configs.secret``) per Git host: the chart writes it to
#: argocd-secret as ``webhook.<host>.secret`` (argo-helm charts/argo-cd README: gitlabSecret,
#: githubSecret).
WEBHOOK_SECRET_VALUES_KEY: Mapping[str, str] = {"gitlab": "gitlabSecret", "github": "githubSecret"}
ROOT_PROJECT = "platform"
MANAGER_NAMESPACE = "argocd-manager"
#: Kinds Argo CD must never manage in an app namespace: the platform owns each app's envelope.
#: ExternalSecret too: the cluster stores can read every app's folder, so only the platform may
#: say which keys an app gets (scw_platform/apps.py).
ENVELOPE_KINDS = (
    {"group": "", "kind": "ResourceQuota"},
    {"group": "", "kind": "LimitRange"},
    {"group": "networking.k8s.io", "kind": "NetworkPolicy"},
    {"group": "external-secrets.io", "kind": "ExternalSecret"},
    # A canary app's analysis is the platform's (scw_platform/delivery.py): a commit may not
    # replace the measurement that decides whether its own release rolls back.
    {"group": "argoproj.io", "kind": "AnalysisTemplate"},
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
class OidcClient:
    issuer: str
    client_id: str
    #: Where External Secrets reads the client secret (a reference of ArgoCdArgs.secret_store); the
    #: value never passes through the program (oidc_secret_spec).
    client_secret_remote_key: str = f"path:{OIDC_VAULT_KEY}"
    admin_groups: Sequence[str] = ()
    readonly_groups: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class ArgoCdWebhook:
    """The Git host's push webhook into Argo CD."""

    git_host: GitHost
    #: Where the Git host sends it: the UI's hostname, or a hostname routed for /api/webhook only.
    hostname: str
    #: The shared secret's vault reference (External Secrets reads it through the secret store).
    secret_remote_key: str = f"path:{WEBHOOK_VAULT_FOLDER}/{WEBHOOK_VAULT_NAME}"


@dataclass(frozen=True, kw_only=True)
class RegistryAccess:
    """Read-only registry credentials for the image updater (a ScopedIdentity's key)."""

    endpoint: pulumi.Input[str]  # rg.<region>.scw.cloud/<namespace>
    region: str
    secret_key: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class ArgoCdArgs:
    provider: k8s.Provider
    #: The UI's public hostname (on the platform Gateway), or None for port-forward only.
    hostname: str | None
    ha: bool
    repo_url: str
    repo_username: str
    repo_uses_ssh: bool
    #: Secret: Argo CD's read-only token (https) or deploy key (ssh).
    repo_credential: pulumi.Input[str]
    #: Secret: the image updater's write token or key, for its write-back branches only.
    repo_write_credential: pulumi.Input[str]
    target_revision: str
    #: Environments whose root app this Argo CD runs now, with the repository path of each.
    environments: Mapping[str, str]
    #: Environments whose root app is kept in the cluster if the program drops it (production: see
    #: RegisteredClusterArgs.retain_on_delete).
    retained_environments: Sequence[str] = ()
    #: Every environment this Argo CD may ever serve (the admission policies know them all).
    known_environments: Sequence[str] = ()
    #: Applications the program declares (per-app ones); Git may not create, adopt or delete them.
    program_owned_applications: Sequence[str] = ()
    registry: RegistryAccess
    commit_author_name: str
    commit_author_email: str
    oidc: OidcClient | None = None
    webhook: ArgoCdWebhook | None = None
    #: Argo CD's repository poll and the image updater's registry poll (seconds).
    reconciliation_timeout_seconds: int = RECONCILIATION_DEFAULT_SECONDS
    image_updater_interval_seconds: int = IMAGE_UPDATER_INTERVAL_DEFAULT_SECONDS
    gateway: GatewayParent | None = None
    #: Deployment notifications (platform:gitops.notifications): their credentials come from the
    #: vault through ``secret_store`` (External Secrets), never from Helm values.
    notifications: NotificationSettings | None = None
    #: The ClusterSecretStore the vault's entries come through (notifications, the OIDC client
    #: secret, the Git webhook's shared secret): needed with any of them.
    secret_store: str | None = None
    #: What those ExternalSecrets wait for (the operator and its stores).
    secrets_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    #: What the UI's HTTPRoute needs first (the Gateway API CRDs and the platform Gateway). Only
    #: the route waits for them: Argo CD's release needs neither (issue 19: a needless wait of
    #: the front door's whole chain).
    route_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


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


#: The argo-cd chart's names of the components that run two replicas in HA (the chart's
#: ``server.name``, ``repoServer.name`` and ``applicationSet.name`` defaults).
ARGOCD_HA_COMPONENTS = {
    "server": "server",
    "repoServer": "repo-server",
    "applicationSet": "applicationset-controller",
}


def argocd_pods(component: str) -> dict[str, str]:
    """The selector labels of one Argo CD component's pods: ``argocd-<component>`` and the release
    (argo-helm charts/argo-cd/templates/_helpers.tpl, ``argo-cd.selectorLabels``; the chart's name is
    ``argocd``, its ``nameOverride`` default). The chart fills a missing labelSelector with the same
    labels; naming them keeps the selector visible and checked here."""
    return {"app.kubernetes.io/name": f"argocd-{component}", "app.kubernetes.io/instance": ARGOCD_RELEASE}


def _argocd_ha(ha: bool) -> dict[str, dict[str, object]]:
    """Per HA component: replicas, and with ``ha`` a PodDisruptionBudget of minAvailable 1 (``pdb``)
    and the spread over zones and nodes (kube.spread_constraints; the chart's per-component
    ``topologySpreadConstraints`` override ``global.topologySpreadConstraints``, argocd-server/
    deployment.yaml). Without ``ha`` one replica, neither."""
    if not ha:
        return {key: {"replicas": 1} for key in ARGOCD_HA_COMPONENTS}
    return {
        key: {
            "replicas": 2,
            "pdb": {"enabled": True, "minAvailable": 1},
            "topologySpreadConstraints": kube.spread_constraints(argocd_pods(component)),
        }
        for key, component in ARGOCD_HA_COMPONENTS.items()
    }


def _redis_ha(ha: bool) -> dict[str, object]:
    """redis-ha (the subchart, HA only): its three Redis and three HAProxy pods already sit on
    separate nodes (the subchart's ``hardAntiAffinity`` and ``haproxy.hardAntiAffinity``, on by
    default); this adds its own zone spread (``topologySpreadConstraints`` is an object there:
    one constraint whose selector the subchart sets, soft like kube.spread_constraints' zone rule),
    budgets that let a drain take one pod at a time, pinned images and every container's size
    (REDIS_HA_RESOURCES). The Redis and sentinel containers and HAProxy carry the subchart's own
    probes (templates/redis-ha-statefulset.yaml, redis-haproxy-deployment.yaml)."""
    if not ha:
        return {"enabled": False}
    sizes = REDIS_HA_RESOURCES
    return {
        "enabled": True,
        "image": {"repository": REDIS_IMAGE, "tag": REDIS_IMAGE_TAG},
        "topologySpreadConstraints": {
            "enabled": True,
            "maxSkew": 1,
            "topologyKey": kube.ZONE_TOPOLOGY_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
        },
        "podDisruptionBudget": {"maxUnavailable": 1},
        "redis": {"resources": sizes["redis"]},
        "sentinel": {"resources": sizes["sentinel"]},
        # config-init (the server pod's init container) and split-brain-fix (a sidecar).
        "init": {"resources": sizes["init"]},
        "splitBrainDetection": {"resources": sizes["splitBrainDetection"]},
        # Nothing scrapes Redis: no exporter sidecar (HAProxy's own metrics need no container).
        "exporter": {"enabled": False},
        "haproxy": {
            "image": {"repository": HAPROXY_IMAGE, "tag": HAPROXY_IMAGE_TAG},
            "podDisruptionBudget": {"maxUnavailable": 1},
            "resources": sizes["haproxy"],
            "init": {"resources": sizes["haproxyInit"]},
        },
    }


def resources(cpu: str, memory: str, memory_limit: str) -> dict[str, dict[str, str]]:
    """A container's requests (CPU and memory) and its memory limit. No CPU limit, as none of the
    platform's controllers sets one (scw_platform.controller_values, workload_admission): CPU is
    compressible, and a limit would throttle a reconcile burst on a node with CPU to spare; memory
    is not, so its limit is where the kernel stops a leak."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


#: Every container of the argo-cd release, by the chart's values key (argo-helm charts/argo-cd
#: README's values table: ``<component>.resources``, ``repoServer.copyutil.resources``,
#: ``redisSecretInit.resources``). The chart sets none (``{}``), so without these the pods are
#: BestEffort, the first evicted under memory pressure. Sized for a platform team's Argo CD (a
#: handful of clusters, tens of Applications): the application controller holds every managed
#: cluster's cache and the repo server renders manifests, so they get the most memory headroom.
ARGOCD_RESOURCES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "controller": resources("250m", "512Mi", "2Gi"),
    "repoServer": resources("100m", "256Mi", "1Gi"),
    # The init container that copies the argocd binary for config management plugins.
    "copyutil": resources("10m", "64Mi", "256Mi"),
    "server": resources("50m", "128Mi", "512Mi"),
    "applicationSet": resources("20m", "64Mi", "256Mi"),
    "notifications": resources("20m", "64Mi", "256Mi"),
    # Argo CD's cache only (manifests, app state): nothing to lose on a restart.
    "redis": resources("50m", "64Mi", "256Mi"),
    # The pre-install hook Job that writes the argocd-redis password Secret.
    "redisSecretInit": resources("10m", "32Mi", "128Mi"),
}
#: redis-ha's containers (HA only), by the subchart's values key (DandyDeveloper/charts
#: charts/redis-ha templates: ``redis.resources``, ``sentinel.resources``, ``init.resources`` for
#: config-init, ``splitBrainDetection.resources``, ``haproxy.resources``, ``haproxy.init.resources``).
REDIS_HA_RESOURCES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "redis": resources("50m", "64Mi", "256Mi"),
    "sentinel": resources("10m", "16Mi", "64Mi"),
    "init": resources("10m", "16Mi", "64Mi"),
    "splitBrainDetection": resources("10m", "16Mi", "64Mi"),
    "haproxy": resources("20m", "32Mi", "128Mi"),
    "haproxyInit": resources("10m", "16Mi", "64Mi"),
}
#: The chart's switch for a liveness and a readiness probe where its template has them but leaves
#: them off by default (applicationSet, notifications, redis: ``<component>.livenessProbe.enabled``,
#: ``readinessProbe.enabled``). The server, repo server and application controller have theirs on.
PROBES_ON: Mapping[str, Mapping[str, bool]] = {
    "livenessProbe": {"enabled": True},
    "readinessProbe": {"enabled": True},
}


def git_port(repo_url: str) -> int:
    """The TCP port Argo CD and the image updater reach the repository on: the URL's own, else
    the transport's default (HTTPS 443; SSH 22, also for the scp-like ``git@host:path``)."""
    match = re.match(r"^(?P<scheme>https|ssh)://(?:[^@/\s]+@)?[^:/\s]+(?::(?P<port>\d+))?/", repo_url)
    if match is None:
        return GIT_SSH_PORT
    if match["port"]:
        return int(match["port"])
    return GIT_HTTPS_PORT if match["scheme"] == "https" else GIT_SSH_PORT


def argocd_policies(args: ArgoCdArgs) -> dict[str, Any]:
    """The allows of Argo CD's namespace on top of its default deny (policy name -> spec).

    * Inside the namespace, both ways: the server, the application and ApplicationSet controllers
      and the notifications controller call the repo-server and Redis (or redis-ha's HAProxy and
      sentinels); nothing outside may reach those.
    * The server: from the Gateway's namespace on its HTTP port (the UI's HTTPRoute, or the
      webhook's), with a public hostname only.
    * The application controller: scraped on its metrics port from the monitoring namespace.
    * Out, every pod: DNS; the API servers on 6443 (this cluster's, and the registered workload
      clusters' public ones, by port: see kube.api_server_egress_rule); public HTTPS (the Git host
      over https, the registry rg.<region>.scw.cloud for the image updater, the OIDC issuer, the
      notification services); the Git host's port when the repository is not on 443 (SSH).
      Egress is namespace-wide: the chart's hooks and every component share the API and DNS paths,
      and the public rule is the same address range whatever the component.

    The chart's own NetworkPolicies stay off (``global.networkPolicy.create``, default false):
    they open ingress only, per component, and do not know the Gateway's namespace.
    """
    port = git_port(args.repo_url)
    public = [kube.public_https_egress_rule()]
    if port != GIT_HTTPS_PORT:
        public.append(kube.public_egress_rule(kube.tcp(port)))
    policies: dict[str, Any] = {
        "argocd-internal": kube.policy_spec(
            ingress=[{"from": [{"podSelector": {}}]}], egress=[{"to": [{"podSelector": {}}]}]
        ),
        "argocd-controller-metrics": kube.policy_spec(
            argocd_pods("application-controller"),
            ingress=[
                kube.from_namespace_rule(
                    kube.MONITORING_NAMESPACE, kube.tcp(labels.ARGOCD_CONTROLLER_METRICS_PORT)
                )
            ],
        ),
        "argocd-egress": kube.policy_spec(
            egress=[kube.dns_egress_rule(), kube.api_server_egress_rule(), *public]
        ),
    }
    if args.gateway is not None and routed_hostname(args) is not None:
        policies["argocd-server-gateway"] = kube.policy_spec(
            argocd_pods("server"),
            ingress=[kube.from_namespace_rule(args.gateway.namespace, kube.tcp(ARGOCD_SERVER_PORT))],
        )
    return policies


def routed_hostname(args: ArgoCdArgs) -> str | None:
    """The hostname the platform Gateway routes to Argo CD's server: the UI's, else the webhook's
    (that one for /api/webhook only); None without a Gateway route."""
    if args.gateway is None:
        return None
    if args.hostname is not None:
        return args.hostname
    return args.webhook.hostname if args.webhook is not None else None


def webhook_secret_spec(*, store: str, remote_key: str) -> dict[str, Any]:
    """The ExternalSecret's spec that writes WEBHOOK_SECRET from the vault, labelled for Argo CD
    (as oidc_secret_spec)."""
    return {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
        "target": {
            "name": WEBHOOK_SECRET,
            "creationPolicy": "Owner",
            "template": {"metadata": {"labels": dict(ARGOCD_PART_OF)}},
        },
        "data": [{"secretKey": WEBHOOK_SECRET_KEY, "remoteRef": {"key": remote_key}}],
    }


def _argocd_secret(args: ArgoCdArgs) -> dict[str, object]:
    """``configs.secret``: with a webhook, argocd-secret's ``webhook.<host>.secret`` is a reference
    to WEBHOOK_SECRET, never the value, so the values stay plain."""
    if args.webhook is None:
        return {}
    key = WEBHOOK_SECRET_VALUES_KEY[args.webhook.git_host]
    return {"secret": {key: f"${WEBHOOK_SECRET}:{WEBHOOK_SECRET_KEY}"}}


def argocd_values(args: ArgoCdArgs) -> dict[str, object]:
    """Helm values for the argo-cd chart (a pure function, so tests can inspect it). They hold no
    secret: the OIDC client secret is a reference (OIDC_SECRET), so the whole block stays visible
    to the offline validators."""
    sizes = ARGOCD_RESOURCES
    ha = _argocd_ha(args.ha)
    values: dict[str, object] = {
        "global": {
            **({"domain": args.hostname} if args.hostname else {}),
            # One image for every Argo CD component, the copyutil init container and the
            # redis-secret-init hook included.
            "image": {"repository": ARGOCD_IMAGE, "tag": ARGOCD_IMAGE_TAG},
            # The program writes the namespace's policies (argocd_policies).
            "networkPolicy": {"create": False},
        },
        "configs": {
            # TLS terminates at the platform Gateway; the server speaks plain HTTP behind it. No SCM
            # provider or pull-request generator: they send tokens from argocd's Secrets to the
            # API an ApplicationSet names (the admission policy refuses them from Git as well).
            "params": {"server.insecure": True, "applicationsetcontroller.enable.scm.providers": False},
            "cm": _argocd_cm(args),
            "rbac": _argocd_rbac(args.oidc),
            **_argocd_secret(args),
        },
        # Argo CD talks OIDC to the identity provider itself (_argocd_cm): Dex would be one more
        # component with nothing to do.
        "dex": {"enabled": False},
        # The commit server is the manifest hydrator's (hydrator.enabled, off): nothing uses it.
        "commitServer": {"enabled": False},
        "redis-ha": _redis_ha(args.ha),
        # With HA the chart drops its single Redis for redis-ha (redis-ha.enabled).
        **({} if args.ha else {"redis": _single_redis()}),
        "redisSecretInit": {"resources": sizes["redisSecretInit"]},
        # argocd_app_info (health and sync of every Application) feeds the GitOps alerts.
        "controller": {
            "replicas": 1,
            "resources": sizes["controller"],
            "metrics": {
                "enabled": True,
                "service": {"annotations": labels.scrape(labels.ARGOCD_CONTROLLER_METRICS_PORT)},
            },
        },
        "server": {**ha["server"], "resources": sizes["server"]},
        "repoServer": {
            **ha["repoServer"],
            "resources": sizes["repoServer"],
            "copyutil": {"resources": sizes["copyutil"]},
        },
        # Used: the platform's GitOps-bridge metadata is for ApplicationSets (RegisteredCluster), and
        # the chart creates the controller whatever the values say (argo-helm README, 6.9.0).
        "applicationSet": {**ha["applicationSet"], "resources": sizes["applicationSet"], **PROBES_ON},
        # Deployments announce themselves (scw_platform.notifications): off without contact points.
        "notifications": {
            **notifications_values(args.notifications),
            "resources": sizes["notifications"],
            **PROBES_ON,
        }
        if args.notifications is not None
        else {"enabled": False},
    }
    return values


def _single_redis() -> dict[str, object]:
    """The chart's own Redis deployment (without HA): pinned, sized, probed, no exporter sidecar."""
    return {
        "image": {"repository": REDIS_IMAGE, "tag": REDIS_IMAGE_TAG},
        "resources": ARGOCD_RESOURCES["redis"],
        "exporter": {"enabled": False},
        **PROBES_ON,
    }


def _argocd_cm(args: ArgoCdArgs) -> dict[str, object]:
    """argocd-cm: the server's URL, what is switched off, the resource exclusions and, with SSO,
    the OIDC client (its secret a reference to OIDC_SECRET, never the value)."""
    cm: dict[str, object] = {
        **({"url": f"https://{args.hostname}"} if args.hostname else {}),
        # With SSO the local admin goes away; without it the generated initial password lives
        # only in the cluster (argocd-initial-admin-secret), never in Pulumi state.
        "admin.enabled": args.oidc is None,
        "exec.enabled": False,
        "statusbadge.enabled": False,
        # The release status CLI's account (ops/status.py, ops/promote.py): API tokens only, no
        # login; argocd-rbac-cm gives it nothing but ``applications, get``.
        f"accounts.{STATUS_ACCOUNT}": "apiKey",
        "resource.exclusions": resource_exclusions(),
        # argocd-manager may list only what it manages; without this Argo CD fails the whole
        # cluster cache on the first kind it may not list (a NetworkPolicy, a ResourceQuota, ...)
        # instead of skipping it (gitops-engine pkg/cache/cluster.go, isRestrictedResource).
        "resource.respectRBAC": "normal",
        # The poll behind the Git webhook (a lost delivery is caught at the next cycle): the
        # lead-time report (scripts/critical_path.py) reads both keys from the plan.
        "timeout.reconciliation": f"{args.reconciliation_timeout_seconds}s",
        "timeout.reconciliation.jitter": f"{RECONCILIATION_JITTER_SECONDS}s",
    }
    if args.oidc is not None:
        # Argo CD talks OIDC directly; Dex would be one more component with nothing to do.
        cm["oidc.config"] = json.dumps(
            {
                "name": "SSO",
                "issuer": args.oidc.issuer,
                "clientID": args.oidc.client_id,
                "clientSecret": oidc_secret_reference(),
                "requestedScopes": ["openid", "profile", "email", "groups"],
            }
        )
    return cm


def oidc_secret_reference() -> str:
    """argocd-cm's ``$<secret>:<key>`` reference to the OIDC client secret (OIDC_SECRET)."""
    return f"${OIDC_SECRET}:{OIDC_SECRET_KEY}"


def oidc_secret_spec(*, store: str, remote_key: str) -> dict[str, Any]:
    """The ExternalSecret's spec that writes OIDC_SECRET from the vault. The template only adds the
    label Argo CD requires (ARGOCD_PART_OF); with no template ``data`` External Secrets keeps the
    provider's data as it is (its template code: no template data falls back to the fetched
    values; external-secrets.io guides/templating)."""
    return {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
        "target": {
            "name": OIDC_SECRET,
            "creationPolicy": "Owner",
            "template": {"metadata": {"labels": dict(ARGOCD_PART_OF)}},
        },
        "data": [{"secretKey": OIDC_SECRET_KEY, "remoteRef": {"key": remote_key}}],
    }


def _argocd_rbac(oidc: OidcClient | None) -> dict[str, object]:
    """argocd-rbac-cm: no default role, and with SSO the identity provider's groups mapped to the
    admin and read-only roles."""
    # No default role: a signed-in user the identity provider knows sees nothing unless a group
    # grants it (admin_groups, readonly_groups).
    rbac: dict[str, object] = {"policy.default": ""}
    policy = status_account_policy()
    if oidc is not None:
        policy += "".join(f"g, {group}, role:admin\n" for group in oidc.admin_groups) + "".join(
            f"g, {group}, role:readonly\n" for group in oidc.readonly_groups
        )
        rbac["scopes"] = "[groups]"
    rbac["policy.csv"] = policy
    return rbac


#: The read-only account the release CLIs use: ``argocd account generate-token --account
#: platform-status`` gives its token (docs/releases.md).
STATUS_ACCOUNT = "platform-status"


def status_account_policy() -> str:
    """``applications, get`` on every project's Applications, nothing else: no sync, no logs, no
    exec, no clusters or repositories (argo-cd docs/operator-manual/rbac.md: ``p, <role>,
    <resource>, <action>, <project>/<object>, allow``)."""
    role = f"role:{STATUS_ACCOUNT}"
    return f"p, {role}, applications, get, */*, allow\ng, {STATUS_ACCOUNT}, {role}\n"


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


def image_updater_values(args: ArgoCdArgs, pull_secret: str) -> dict[str, object]:
    registry_host = f"rg.{args.registry.region}.scw.cloud"
    return {
        "image": {"repository": IMAGE_UPDATER_IMAGE, "tag": IMAGE_UPDATER_IMAGE_TAG},
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
        # The registry poll (``run --interval``): Scaleway's registry sends no event the updater
        # understands, so this interval is the hop's worst case (scripts/critical_path.py).
        "extraArgs": ["--interval", f"{args.image_updater_interval_seconds}s"],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        # The chart's Role reads every Secret in argocd; the program declares a narrower one
        # (ArgoCd._image_updater_rbac) for this account. argo-helm charts/argocd-image-updater
        # templates/rbac.yaml gates both its Role and ClusterRole on rbac.enabled.
        "rbac": {"enabled": False},
        "createClusterRoles": False,
        "serviceAccount": {"create": True, "name": IMAGE_UPDATER_ACCOUNT},
    }


def repository_secret_data(args: ArgoCdArgs) -> dict[str, pulumi.Input[str]]:
    """Argo CD's repository Secret: the read-only credential."""
    return {"type": "git", "url": args.repo_url, **_credential(args, args.repo_credential)}


def write_credential_data(args: ArgoCdArgs) -> dict[str, pulumi.Input[str]]:
    """The image updater's ``git:secret:`` Secret: the write credential, in the keys the updater
    reads (``username``/``password`` over https, ``sshPrivateKey`` over ssh)."""
    return _credential(args, args.repo_write_credential)


def _credential(args: ArgoCdArgs, credential: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    if args.repo_uses_ssh:
        return {"sshPrivateKey": credential}
    return {"username": args.repo_username, "password": credential}


def root_app_spec(args: ArgoCdArgs, path: str) -> dict[str, Any]:
    """A root app's spec: the environment's folder of the repository, applied into tooling's own
    ``argocd`` namespace under the ``platform`` project."""
    return {
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
            "syncOptions": ["ServerSideApply=true", "FailOnSharedResource=true"],
            "retry": {
                "limit": 5,
                "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"},
            },
        },
    }


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
        policies = kube.namespace_policies(
            name,
            namespace=ARGOCD_NAMESPACE,
            allows=argocd_policies(args),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        # Everything in the namespace, both releases included, starts with its paths open.
        after_namespace = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=[namespace, *policies]
        )
        if args.notifications is not None:
            self._notifications_secret(name, args, namespace)
        if args.oidc is not None:
            self._oidc_secret(name, args, namespace)
        if args.webhook is not None:
            self._webhook_secret(name, args, namespace)
        self.release = self._argocd_release(name, args, after_namespace)
        after_argocd = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[self.release])
        self._repository_credentials(name, args, after_namespace)
        # Beside Argo CD's release, not after it: the updater watches Applications, whose CRD that
        # release applies in its first seconds (Helm applies the manifests, then waits for the
        # pods); an updater pod that starts earlier exits and is restarted by the kubelet until the
        # CRD is there, within its own release's wait. Its ImageUpdater resources wait for its
        # release (their CRD is the updater chart's). Serial, the two releases were tooling's
        # longest chain (scripts/critical_path.py).
        self.image_updater = self._image_updater(name, args, after_namespace)
        route_opts = pulumi.ResourceOptions.merge(
            after_argocd, pulumi.ResourceOptions(depends_on=list(args.route_depends_on))
        )
        if args.gateway is not None and args.hostname is not None:
            self._route(name, args.gateway, args.hostname, route_opts)
        elif args.gateway is not None and args.webhook is not None:
            self._webhook_route(name, args.gateway, args.webhook.hostname, route_opts)

        project, default_project = self._projects(name, args, after_argocd)
        guards: list[pulumi.Resource] = [default_project, *self._admission(name, args, k8s_opts)]
        self._root_apps(name, args, [project, *guards])

        self.namespace = ARGOCD_NAMESPACE
        self.register_outputs({"namespace": self.namespace})

    def _notifications_secret(self, name: str, args: ArgoCdArgs, namespace: pulumi.Resource) -> None:
        """The notification services' credentials (bot tokens, webhook URLs), from the vault."""
        assert args.notifications is not None
        if args.secret_store is None:
            raise ValueError("notifications need the secret store their credentials are read from")
        declare_notifications_secret(
            f"{name}-notifications-secret",
            provider=args.provider,
            store=args.secret_store,
            settings=args.notifications,
            remote_keys=vault_references(args.notifications),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.secrets_depends_on]),
        )

    def _oidc_secret(self, name: str, args: ArgoCdArgs, namespace: pulumi.Resource) -> None:
        """The OIDC client secret, from the vault into OIDC_SECRET (argocd-cm refers to it). Argo CD
        watches its Secrets, so neither waits for the other: until the ExternalSecret has synced,
        sign-in fails and nothing else does."""
        assert args.oidc is not None
        store = self._store(args, "single sign-on needs the secret store its client secret is read from")
        self._vault_secret(
            f"{name}-oidc-secret",
            OIDC_SECRET,
            oidc_secret_spec(store=store, remote_key=args.oidc.client_secret_remote_key),
            args,
            namespace,
        )

    def _webhook_secret(self, name: str, args: ArgoCdArgs, namespace: pulumi.Resource) -> None:
        """The Git webhook's shared secret, from the vault into WEBHOOK_SECRET (argocd-secret refers
        to it). Until it syncs, Argo CD refuses the deliveries and the poll carries on."""
        assert args.webhook is not None
        store = self._store(args, "the Git webhook needs the secret store its shared secret is read from")
        self._vault_secret(
            f"{name}-webhook-secret",
            WEBHOOK_SECRET,
            webhook_secret_spec(store=store, remote_key=args.webhook.secret_remote_key),
            args,
            namespace,
        )

    @staticmethod
    def _store(args: ArgoCdArgs, why: str) -> str:
        if args.secret_store is None:
            raise ValueError(why)
        return args.secret_store

    def _vault_secret(
        self, resource_name: str, secret: str, spec: Any, args: ArgoCdArgs, namespace: pulumi.Resource
    ) -> None:
        """One of Argo CD's Secrets synced from the vault by an ExternalSecret in its namespace."""
        k8s.apiextensions.CustomResource(
            resource_name,
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={"name": secret, "namespace": ARGOCD_NAMESPACE},
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[namespace, *args.secrets_depends_on]
            ),
        )

    def _webhook_route(
        self, name: str, gateway: GatewayParent, hostname: str, opts: pulumi.ResourceOptions
    ) -> None:
        """Without a public UI: only Argo CD's webhook path on the platform Gateway, so the Git host
        reaches /api/webhook and nothing else of the server (login, API, UI)."""
        k8s.apiextensions.CustomResource(
            f"{name}-webhook-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": "argocd-webhook", "namespace": ARGOCD_NAMESPACE},
            spec={
                "parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}],
                "hostnames": [hostname],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": WEBHOOK_PATH}}],
                        "backendRefs": [{"name": ARGOCD_SERVER_SERVICE, "port": 80}],
                    }
                ],
            },
            opts=opts,
        )

    def _argocd_release(
        self, name: str, args: ArgoCdArgs, after_namespace: pulumi.ResourceOptions
    ) -> k8s.helm.v3.Release:
        """The Argo CD release, with the plain values of ``argocd_values`` (no secret in them)."""
        return helm.release(
            f"{name}-argocd",
            release_name=ARGOCD_RELEASE,
            chart=helm.Chart("argo-cd", ARGOCD_CHART_VERSION, ARGO_HELM_REPO),
            namespace=ARGOCD_NAMESPACE,
            values=argocd_values(args),
            timeout=900,
            opts=after_namespace,
        )

    def _repository_credentials(
        self, name: str, args: ArgoCdArgs, after_namespace: pulumi.ResourceOptions
    ) -> None:
        """The Git credentials, one Secret per purpose: Argo CD's read-only repository Secret and
        the image updater's write credential."""
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
        # No secret-type label: Argo CD must not pick the write credential up as a repository
        # credential (its Applications would then sync with write access).
        k8s.core.v1.Secret(
            f"{name}-write-credential",
            metadata={"name": WRITE_CREDENTIAL_SECRET, "namespace": ARGOCD_NAMESPACE},
            string_data=pulumi.Output.secret(write_credential_data(args)),
            opts=after_namespace,
        )

    def _image_updater(
        self,
        name: str,
        args: ArgoCdArgs,
        after_namespace: pulumi.ResourceOptions,
    ) -> k8s.helm.v3.Release:
        """The image updater: its registry pull Secret, its own RBAC and its release (after Argo
        CD's, whose CRDs and Applications it works on)."""
        pull_secret = IMAGE_UPDATER_PULL_SECRET
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
        updater_rbac = self._image_updater_rbac(name, args, after_namespace)
        return helm.release(
            f"{name}-image-updater",
            release_name="argocd-image-updater",
            chart=helm.Chart("argocd-image-updater", IMAGE_UPDATER_CHART_VERSION, ARGO_HELM_REPO),
            namespace=ARGOCD_NAMESPACE,
            values=image_updater_values(args, pull_secret),
            # Its own RBAC first: the chart's is switched off (image_updater_values).
            opts=pulumi.ResourceOptions.merge(
                after_namespace, pulumi.ResourceOptions(depends_on=updater_rbac)
            ),
        )

    def _route(
        self, name: str, gateway: GatewayParent, hostname: str, after_argocd: pulumi.ResourceOptions
    ) -> None:
        """The UI's HTTPRoute on the platform Gateway (only with a public hostname)."""
        k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": "argocd-server", "namespace": ARGOCD_NAMESPACE},
            spec={
                "parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}],
                "hostnames": [hostname],
                "rules": [{"backendRefs": [{"name": ARGOCD_SERVER_SERVICE, "port": 80}]}],
            },
            opts=after_argocd,
        )

    def _projects(
        self, name: str, args: ArgoCdArgs, after_argocd: pulumi.ResourceOptions
    ) -> tuple[k8s.apiextensions.CustomResource, k8s.apiextensions.CustomResourcePatch]:
        """The root apps' ``platform`` AppProject and the built-in ``default`` one locked down;
        returns both (the root apps wait for them)."""
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
        return project, default_project

    def _root_apps(self, name: str, args: ArgoCdArgs, guards: Sequence[pulumi.Resource]) -> None:
        """One root "app of apps" per environment this Argo CD runs, after ``guards`` (its project,
        the locked-down default project and the admission bindings)."""
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
                spec=root_app_spec(args, path),
                # The guards first: a root app starts creating Applications as soon as it exists.
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.provider,
                    depends_on=list(guards),
                    retain_on_delete=environment in args.retained_environments,
                ),
            )

    def _admission(
        self, name: str, args: ArgoCdArgs, k8s_opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """The admission policies on Argo CD's objects (scw_platform.argocd_admission) and on the
        image updater's ConfigMap writes, each bound to deny; returns the bindings."""
        # Imported here: scw_platform.argocd_admission builds on this module's constants.
        from scw_platform import argocd_admission

        specs = argocd_admission.application_policies(
            list(args.known_environments or args.environments), list(args.program_owned_applications)
        )
        specs[UPDATER_CONFIGMAPS_POLICY] = image_updater_configmap_policy()
        binding_specs = argocd_admission.binding_specs(specs)
        bindings: list[pulumi.Resource] = []
        spec: Any
        for policy_id, spec in specs.items():
            _, binding = kube.admission_policy(
                f"{name}-{policy_id}-policy",
                f"{name}-{policy_id}-binding",
                name=argocd_admission.policy_name(policy_id),
                spec=spec,
                binding=binding_specs[policy_id],
                opts=k8s_opts,
            )
            bindings.append(binding)
        return bindings

    def _image_updater_rbac(
        self, name: str, args: ArgoCdArgs, after: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """The image updater's own RBAC instead of the chart's, which lets it get, list and watch
        every Secret in ``argocd`` (cluster Secrets and Argo CD's read credential included)."""
        subject = [
            k8s.rbac.v1.SubjectArgs(
                kind="ServiceAccount", name=IMAGE_UPDATER_ACCOUNT, namespace=ARGOCD_NAMESPACE
            )
        ]
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-image-updater-clusterrole",
            metadata={"name": IMAGE_UPDATER_ACCOUNT},
            rules=[k8s.rbac.v1.PolicyRuleArgs(**rule) for rule in image_updater_cluster_rules()],
            opts=after,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-image-updater-role",
            metadata={"name": IMAGE_UPDATER_ACCOUNT, "namespace": ARGOCD_NAMESPACE},
            rules=[k8s.rbac.v1.PolicyRuleArgs(**rule) for rule in image_updater_namespaced_rules()],
            opts=after,
        )
        ref = "rbac.authorization.k8s.io"
        return [
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-image-updater-clusterrolebinding",
                metadata={"name": IMAGE_UPDATER_ACCOUNT},
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group=ref, kind="ClusterRole", name=IMAGE_UPDATER_ACCOUNT
                ),
                subjects=subject,
                opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[cluster_role])),
            ),
            k8s.rbac.v1.RoleBinding(
                f"{name}-image-updater-rolebinding",
                metadata={"name": IMAGE_UPDATER_ACCOUNT, "namespace": ARGOCD_NAMESPACE},
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group=ref, kind="Role", name=IMAGE_UPDATER_ACCOUNT),
                subjects=subject,
                opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[role])),
            ),
        ]


#: The image updater's service account (the chart's default name for release argocd-image-updater,
#: pinned in its values so the program's RBAC binds to it).
IMAGE_UPDATER_ACCOUNT = "argocd-image-updater"
UPDATER_CONFIGMAPS_POLICY = "image-updater-configmaps"


def image_updater_cluster_rules() -> list[dict[str, list[str]]]:
    """What the controller reads and writes of its own API and reads of Argo CD's (kubebuilder RBAC
    markers in argocd-image-updater internal/controller/imageupdater_controller.go): ImageUpdaters
    and their status, and Applications read-only (git write-back never writes an Application).
    Cluster-wide because releases before the namespace-scoped cache watch every namespace; neither
    kind exists outside ``argocd`` and neither holds a secret."""
    return [
        {
            "api_groups": ["argocd-image-updater.argoproj.io"],
            "resources": ["imageupdaters"],
            "verbs": [*_READ, "update", "patch"],
        },
        {
            "api_groups": ["argocd-image-updater.argoproj.io"],
            "resources": ["imageupdaters/status"],
            "verbs": ["get", "update", "patch"],
        },
        {
            "api_groups": ["argocd-image-updater.argoproj.io"],
            "resources": ["imageupdaters/finalizers"],
            "verbs": ["update"],
        },
        {"api_groups": ["argoproj.io"], "resources": ["applications"], "verbs": [*_READ]},
    ]


def image_updater_namespaced_rules() -> list[dict[str, list[str]]]:
    """In ``argocd``: only its two Secrets, by name (registry-scanner pkg/kube GetSecretData is a
    GET by name, no informer), events, and its leader-election lease."""
    return [
        {
            "api_groups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resource_names": [WRITE_CREDENTIAL_SECRET, IMAGE_UPDATER_PULL_SECRET],
        },
        {"api_groups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"api_groups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "api_groups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resource_names": [IMAGE_UPDATER_LEASE],
        },
    ]


#: Leader-election lease id of the controller (argocd-image-updater cmd/run.go).
IMAGE_UPDATER_LEASE = "c21b75f2.argoproj.io"
IMAGE_UPDATER_PULL_SECRET = "registry-pull"


def image_updater_configmap_policy() -> dict[str, Any]:
    """The chart's leader-election Role is rendered whatever ``rbac.enabled`` says and grants full
    write on ConfigMaps and Leases in ``argocd`` (argocd-cm, argocd-rbac-cm, the other controllers'
    leases). Values cannot remove it, so admission refuses the updater's service account every
    ConfigMap write and every Lease write but to its own lease."""
    user = f"system:serviceaccount:{ARGOCD_NAMESPACE}:{IMAGE_UPDATER_ACCOUNT}"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                    "resources": ["configmaps"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                    "resources": ["leases"],
                },
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ARGOCD_NAMESPACE}},
        },
        "validations": [
            {
                "expression": (
                    f"request.userInfo.username != '{user}' || "
                    f"(request.resource.resource == 'leases' && request.name == '{IMAGE_UPDATER_LEASE}')"
                ),
                "message": f"{user} may not write ConfigMaps in {ARGOCD_NAMESPACE} (Argo CD's settings live "
                f"there), nor Leases but its own {IMAGE_UPDATER_LEASE}",
                "reason": "Forbidden",
            }
        ],
    }


# --- Registering a workload cluster with tooling's Argo CD ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClusterRegistrationArgs:
    environment: str
    #: Provider of the cluster being registered (this stack's own; never tooling's).
    provider: k8s.Provider
    #: The only namespaces Argo CD may manage in this cluster (the apps' own).
    namespaces: Sequence[str]
    #: Resources that must exist first (the app namespaces the RoleBindings live in).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class ClusterRegistration(pulumi.ComponentResource):
    """The workload side of the registration, entirely in the workload cluster: ``argocd-manager``
    bound only in the app namespaces, and its token. The stack exports the token with the API
    server URL and CA (scw_platform.contract); the tooling stack reads them and declares the Argo CD
    cluster Secret itself, so this stack holds nothing in the hub."""

    #: Secret: the ``argocd-manager`` service account token.
    token: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterRegistrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:ClusterRegistration", name, None, opts)
        target = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = _namespace(MANAGER_NAMESPACE, f"{name}-namespace", target)
        in_namespace = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace])
        # No pod ever runs here (a service account and its token): the default deny alone.
        kube.default_deny_policy(
            f"{name}-default-deny", metadata={"namespace": MANAGER_NAMESPACE}, opts=in_namespace
        )
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
        for ns in sorted(args.namespaces):
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
        self.token = pulumi.Output.secret(token_secret.data.apply(_decode_token))
        self.register_outputs({"token": self.token})


def cluster_secret_config(registration: Registration) -> str:
    """The cluster Secret's ``config``: a bearer token and the CA, and nothing else. Built here from
    validated fields, never taken whole from a spoke: Argo CD would honour ``execProviderConfig``
    (a command run in its own pods) or ``awsAuthConfig`` in it (argo-cd
    pkg/apis/application/v1alpha1/types.go, ``ClusterConfig``)."""
    return json.dumps(
        {
            "bearerToken": registration.token,
            "tlsClientConfig": {"insecure": False, "caData": registration.ca_data},
        }
    )


@dataclass(frozen=True, kw_only=True)
class RegisteredClusterArgs:
    #: The workload environment, validated (scw_platform.contract.parse_registration).
    registration: Registration
    #: Provider of the tooling cluster (this stack's own).
    provider: k8s.Provider
    #: The stack it was read from, recorded on the Secret.
    source_stack: str
    #: Facts the hub knows itself (registry endpoint, ...): they override what the spoke says.
    hub_facts: Mapping[str, str] = field(default_factory=dict)
    #: Production environments: if a plan ever drops the registration (its stack unlisted, its export
    #: missing), Pulumi forgets the objects instead of deleting them, so Argo CD never removes the
    #: running apps (their Applications carry the resources finalizer). Registering again then needs
    #: PULUMI_K8S_UPSERT_EXISTING_OBJECTS=true once (docs/gitops.md).
    retain_on_delete: bool = False
    #: What creates the argocd namespace first (Argo CD's release).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class RegisteredCluster(pulumi.ComponentResource):
    """Tooling's side: the Argo CD cluster Secret of one workload environment, declared by the hub
    from the spoke's validated exports. Platform facts travel as annotations (the GitOps-bridge
    metadata ApplicationSets read)."""

    cluster_name: str
    secret: k8s.core.v1.Secret

    def __init__(
        self, name: str, args: RegisteredClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:RegisteredCluster", name, None, opts)
        registration = args.registration
        self.cluster_name = registration.environment
        facts = {**registration.facts, **args.hub_facts, "environment": registration.environment}
        annotations = {f"platform.scw/{key}": value for key, value in sorted(facts.items())}
        annotations["platform.scw/source-stack"] = args.source_stack
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={
                "name": f"cluster-{registration.environment}",
                "namespace": ARGOCD_NAMESPACE,
                "labels": {
                    "argocd.argoproj.io/secret-type": "cluster",
                    labels.ENVIRONMENT: registration.environment,
                },
                "annotations": annotations,
            },
            string_data={
                "name": registration.environment,
                "server": registration.server,
                # Namespace-scoped registration: Argo CD watches only these namespaces and never
                # touches cluster-scoped resources, matching argocd-manager's RBAC in that cluster.
                "namespaces": ",".join(registration.namespaces),
                "clusterResources": "false",
                "config": pulumi.Output.secret(cluster_secret_config(registration)),
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=list(args.depends_on),
                retain_on_delete=args.retain_on_delete,
            ),
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
    # A canary app's Rollout comes from Git in place of its Deployment (docs/delivery.md).
    "argoproj.io": ("rollouts",),
}


def manager_rules() -> list[dict[str, list[str]]]:
    """argocd-manager's namespaced rules (a pure function, so tests can inspect it)."""
    rules = [
        {"api_groups": [group], "resources": list(resources), "verbs": [*_READ, *_WRITE]}
        for group, resources in MANAGED_RESOURCES.items()
    ]
    # ExternalSecrets and AnalysisTemplates are the platform's (ENVELOPE_KINDS), AnalysisRuns the
    # Rollouts controller's: shown, never written.
    rules.append({"api_groups": ["external-secrets.io"], "resources": ["externalsecrets"], "verbs": [*_READ]})
    rules.append(
        {"api_groups": ["argoproj.io"], "resources": ["analysistemplates", "analysisruns"], "verbs": [*_READ]}
    )
    return rules


def _decode_token(data: Mapping[str, str] | None) -> str:
    if not data or "token" not in data:
        raise ValueError("the service account token Secret has no data.token yet")
    return base64.b64decode(data["token"]).decode()


# --- Per-environment project and image updates ---------------------------------------------------


#: Kinds no environment's project may deploy from Git, on top of the envelope: Secrets come from
#: ExternalSecrets only, and namespaced RBAC would let a commit grant itself more than argocd-manager
#: (cluster-scoped kinds are refused by the empty clusterResourceWhitelist).
PROJECT_BLACKLIST = (
    *ENVELOPE_KINDS,
    {"group": "", "kind": "Secret"},
    {"group": "rbac.authorization.k8s.io", "kind": "*"},
)
#: What Git may deploy into tooling's own namespaces (``platform:gitops.namespaces``, e.g. ci): the
#: workload kinds argocd-manager manages elsewhere (MANAGED_RESOURCES), by kind. No NetworkPolicy of
#: any CNI (a CiliumNetworkPolicy would add allows on top of the default deny), no
#: PodDisruptionBudget, no Secret, no RBAC.
TOOLING_ALLOWED_KINDS: tuple[Mapping[str, str], ...] = (
    {"group": "", "kind": "ConfigMap"},
    {"group": "", "kind": "Service"},
    {"group": "", "kind": "ServiceAccount"},
    {"group": "", "kind": "PersistentVolumeClaim"},
    {"group": "apps", "kind": "Deployment"},
    {"group": "apps", "kind": "StatefulSet"},
    {"group": "batch", "kind": "Job"},
    {"group": "batch", "kind": "CronJob"},
    {"group": "autoscaling", "kind": "HorizontalPodAutoscaler"},
)
#: Sync options of every Application the program declares. FailOnSharedResource: a sync fails
#: instead of taking over an object another Application already tracks (argo-cd
#: docs/user-guide/sync-options.md, "Fail the sync if a shared resource is found").
SYNC_OPTIONS = ("CreateNamespace=false", "ServerSideApply=true", "FailOnSharedResource=true")
#: Where the image updater's write credential lives (its own Secret; Argo CD's is read-only).
WRITE_CREDENTIAL_SECRET = "gitops-write-credential"


def application_name(environment: str, app: str) -> str:
    """An app's Application in tooling's ``argocd`` namespace (program-owned)."""
    return f"{environment}-{app}"


def application_spec(
    app: RegisteredApp, *, project: str, cluster_name: str, repo_url: str, target_revision: str
) -> dict[str, Any]:
    return {
        "project": project,
        "source": {"repoURL": repo_url, "targetRevision": target_revision, "path": app.path},
        "destination": {"name": cluster_name, "namespace": app.name},
        "syncPolicy": {
            "automated": {"prune": True, "selfHeal": True},
            # The namespace is the platform's (with its labels and policies), never Argo CD's.
            "syncOptions": list(SYNC_OPTIONS),
            "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
        },
    }


def image_updater_spec(
    environment: str, apps: Sequence[RegisteredApp], *, repo_url: str, target_revision: str, branch: str
) -> dict[str, Any]:
    """The environment's ImageUpdater: one entry per app, commits to write-back branches only."""
    return {
        "writeBackConfig": {
            # The updater's own write credential, never Argo CD's read-only repository Secret.
            "method": f"git:secret:{ARGOCD_NAMESPACE}/{WRITE_CREDENTIAL_SECRET}",
            "gitConfig": {
                "repository": repo_url,
                # base:target — commits go to a separate branch; the Git host's merge request
                # (merge when green) is what reaches target_revision.
                "branch": f"{target_revision}:{branch}",
            },
        },
        "applicationRefs": [
            {
                "namePattern": application_name(environment, app.name),
                "images": [
                    {
                        "alias": app.name,
                        "imageName": app.image,
                        "commonUpdateSettings": {
                            "updateStrategy": app.strategy,
                            **({"allowTags": f"regexp:{app.allow_tags}"} if app.allow_tags else {}),
                        },
                    }
                ],
            }
            for app in apps
        ],
    }


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
    #: The apps delivered to this environment: one Application and one image-updater entry each.
    apps: Sequence[RegisteredApp] = ()
    write_back_branch: str = "image-updater-{{.SHA256}}"
    #: Keep the project, the apps' Applications and the ImageUpdater in the cluster if the program
    #: drops them (production: see RegisteredClusterArgs.retain_on_delete).
    retain_on_delete: bool = False
    #: Kinds Argo CD may deploy (tooling's own project: Argo CD applies there with its own
    #: cluster-wide rights, so only an allow-list holds). Empty: everything but the blacklist.
    allowed_kinds: Sequence[Mapping[str, str]] = ()
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class EnvironmentProject(pulumi.ComponentResource):
    """An environment's AppProject (its cluster, its namespaces, nothing cluster-scoped, no Secrets
    or RBAC), its apps' Applications and its ImageUpdater, all in tooling's ``argocd``."""

    project_name: str

    def __init__(
        self, name: str, args: EnvironmentProjectArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:EnvironmentProject", name, None, opts)
        in_tooling = pulumi.ResourceOptions(
            parent=self,
            provider=args.tooling_provider,
            depends_on=list(args.depends_on),
            retain_on_delete=args.retain_on_delete,
        )
        self.project_name = args.environment
        project = self._project(name, args, in_tooling)
        for app in args.apps:
            self._application(name, args, app, project)
        # Apps fed by promotion get no image updater entry: nothing but a reviewed promotion
        # merge request writes their paths.
        updated = [app for app in args.apps if app.strategy != PROMOTION]
        if updated:
            self._image_updater(name, args, updated, in_tooling)
        self.register_outputs({"projectName": self.project_name})

    def _project(
        self, name: str, args: EnvironmentProjectArgs, in_tooling: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        """The environment's AppProject; its Applications wait for it."""
        return k8s.apiextensions.CustomResource(
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
                "namespaceResourceBlacklist": list(PROJECT_BLACKLIST),
                **(
                    {"namespaceResourceWhitelist": [dict(k) for k in args.allowed_kinds]}
                    if args.allowed_kinds
                    else {}
                ),
                "orphanedResources": {"warn": True},
            },
            opts=in_tooling,
        )

    def _application(
        self,
        name: str,
        args: EnvironmentProjectArgs,
        app: RegisteredApp,
        project: k8s.apiextensions.CustomResource,
    ) -> None:
        """One app's Application (program-owned), in the project."""
        k8s.apiextensions.CustomResource(
            f"{name}-app-{app.name}",
            api_version="argoproj.io/v1alpha1",
            kind="Application",
            metadata={
                "name": application_name(args.environment, app.name),
                "namespace": ARGOCD_NAMESPACE,
                "labels": {labels.ENVIRONMENT: args.environment, labels.APP: app.name},
                # Deleting the Application deletes what it deployed, not just itself.
                "finalizers": [kube.ARGOCD_FINALIZER],
            },
            spec=application_spec(
                app,
                project=self.project_name,
                cluster_name=args.cluster_name,
                repo_url=args.repo_url,
                target_revision=args.target_revision,
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.tooling_provider,
                depends_on=[project],
                retain_on_delete=args.retain_on_delete,
            ),
        )

    def _image_updater(
        self,
        name: str,
        args: EnvironmentProjectArgs,
        apps: Sequence[RegisteredApp],
        in_tooling: pulumi.ResourceOptions,
    ) -> None:
        """The environment's ImageUpdater: one entry per app it updates (only when there is one)."""
        k8s.apiextensions.CustomResource(
            f"{name}-image-updater",
            api_version="argocd-image-updater.argoproj.io/v1alpha1",
            kind="ImageUpdater",
            metadata={"name": args.environment, "namespace": ARGOCD_NAMESPACE},
            spec=image_updater_spec(
                args.environment,
                apps,
                repo_url=args.repo_url,
                target_revision=args.target_revision,
                branch=args.write_back_branch,
            ),
            opts=in_tooling,
        )


@dataclass(frozen=True, kw_only=True)
class GitOpsNamespaceArgs:
    name: str
    environment: str
    provider: k8s.Provider


#: What one namespace listed in ``platform:gitops.namespaces`` may hold at most: no LoadBalancer or
#: NodePort Service (the Gateway is the only way in), and a ceiling a runaway deployment hits
#: before the node pool does.
GITOPS_NAMESPACE_QUOTA: Mapping[str, str] = {
    "pods": "50",
    "requests.cpu": "8",
    "requests.memory": "16Gi",
    "limits.memory": "32Gi",
    "services.loadbalancers": "0",
    "services.nodeports": "0",
}
GITOPS_NAMESPACE_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
    "default": {"memory": "512Mi"},
}


class GitOpsNamespace(pulumi.ComponentResource):
    """A namespace Argo CD deploys into that is not an app's (``platform:gitops.namespaces``, e.g.
    tooling's ``ci``), with the platform envelope: restricted Pod Security, a quota and defaults,
    and a default deny both ways. Argo CD may not change any of it (ENVELOPE_KINDS)."""

    namespace: k8s.core.v1.Namespace

    def __init__(
        self, name: str, args: GitOpsNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:gitops:GitOpsNamespace", name, None, opts)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.name,
                "labels": {
                    **labels.pod_security(),
                    labels.GITOPS_NAMESPACE: "true",
                    labels.ENVIRONMENT: args.environment,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        meta: Any = {"namespace": args.name, "name": "platform"}
        inside = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[self.namespace])
        k8s.core.v1.ResourceQuota(
            f"{name}-quota", metadata=meta, spec={"hard": dict(GITOPS_NAMESPACE_QUOTA)}, opts=inside
        )
        limits: Any = {
            "limits": [{"type": "Container", **{k: dict(v) for k, v in GITOPS_NAMESPACE_DEFAULTS.items()}}]
        }
        k8s.core.v1.LimitRange(f"{name}-limits", metadata=meta, spec=limits, opts=inside)
        kube.default_deny_policy(f"{name}-default-deny", metadata={"namespace": args.name}, opts=inside)
        self.register_outputs({"namespace": args.name})

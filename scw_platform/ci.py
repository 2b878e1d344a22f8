"""CI runners in the tooling cluster: GitLab Runner (Kubernetes executor) or GitHub's Actions
Runner Controller, and the envelope every build runs in.

The old CI lived on the production server and filled its disk with every build. Here builds run
in their own namespace (``ci``), on their own tainted node pool, each pod with CPU, memory and
**ephemeral-storage** requests and limits, under a namespace quota on ephemeral storage, so one
build cannot fill a node's disk; the build cache lives in the registry (the pipeline templates in
``ops/ci`` export it there), never on node disks.

Builds use BuildKit rootless (no Docker daemon, never ``privileged``). Rootless BuildKit creates
user and mount namespaces (rootlesskit), which the container runtime's default seccomp and
AppArmor profiles forbid: its build pods need ``seccompProfile: Unconfined`` and
``appArmorProfile: Unconfined`` (https://github.com/moby/buildkit/blob/master/docs/rootless.md;
GitLab found no rootless builder that needs less, bar the unmaintained Kaniko:
https://gitlab.com/gitlab-org/gitlab-runner/-/issues/38957). Both are Pod Security *baseline*
controls ("Seccomp", "AppArmor"), so the namespace cannot enforce baseline; it enforces the
``privileged`` level with baseline and restricted warned and audited, and the admission policy
:func:`build_pod_policy` puts back every other baseline control for every pod of the namespace:
no privileged containers, no host namespaces, ports or paths, no added capabilities outside
baseline's list, default ``/proc``, safe sysctls, no SELinux overrides, and in addition every
container with an ephemeral-storage limit and every pod on the builders pool.

Network: default deny both ways; egress to DNS and public HTTPS (the Git host, the registry,
the vulnerability database), and the runner manager (not the jobs) to the Kubernetes API on
6443. Nothing into other namespaces, the VPCs or the metadata service.

The runner's credential never appears in Helm values or state as plaintext: the program writes
the deploy-time secret into Scaleway Secret Manager and an ``ExternalSecret`` syncs it into the
namespace, where the chart reads it by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from scw_platform import helm, images, kube, labels
from scw_platform.cluster import PoolTaint
from scw_platform.settings import DnsLabel, Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:ci).
# --------------------------------------------------------------------------------------------

CiProvider = Literal["gitlab", "github"]
Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
_PROVIDERS: tuple[str, ...] = get_args(CiProvider)
_CPU = r"^\d+m?$"
_MEMORY = r"^\d+(Mi|Gi)$"


class BuildResources(Settings):
    """What every build pod requests and may use at most."""

    cpu_request: Annotated[str, StringConstraints(pattern=_CPU)] = "1"
    """CPU each build container requests (e.g. 500m, 2)."""
    cpu_limit: Annotated[str, StringConstraints(pattern=_CPU)] = "4"
    """CPU limit of each build container."""
    memory_request: Annotated[str, StringConstraints(pattern=_MEMORY)] = "2Gi"
    """Memory each build container requests (Mi or Gi)."""
    memory_limit: Annotated[str, StringConstraints(pattern=_MEMORY)] = "8Gi"
    """Memory limit of each build container (Mi or Gi)."""
    ephemeral_storage_request_gb: int = Field(default=10, ge=1, le=1000)
    """Ephemeral storage (GiB) each build container requests: the scheduler places it on a node
    with that much free disk."""
    ephemeral_storage_limit_gb: int = Field(default=40, ge=1, le=1000)
    """Ephemeral storage (GiB) a build container may fill before the kubelet evicts it: a build
    can never fill the node's disk."""

    @field_validator("ephemeral_storage_limit_gb")
    @classmethod
    def _limit_covers_request(cls, limit: int, info: ValidationInfo) -> int:
        request = info.data.get("ephemeral_storage_request_gb")
        if request is not None and limit < request:
            raise ValueError(f"must be >= ephemeralStorageRequestGb ({limit} < {request})")
        return limit


class GitLabRunnerSettings(Settings):
    """GitLab Runner with the Kubernetes executor."""

    url: Annotated[str, StringConstraints(pattern=r"^https://[^\s/]+(/\S*)?$")] = "https://gitlab.com"
    """The GitLab instance the runner takes jobs from."""
    concurrent: int = Field(default=4, ge=1, le=50)
    """Jobs the runner runs at once (each a pod on the builders pool)."""


class GitHubRunnerSettings(Settings):
    """GitHub Actions Runner Controller with one runner scale set."""

    config_url: Annotated[str, StringConstraints(pattern=r"^https://github\.com/[\w.-]+(/[\w.-]+)?$")]
    """The organisation (https://github.com/acme) or repository whose jobs the runners take."""
    scale_set_name: DnsLabel = "platform-builders"
    """The scale set's name: workflows select it with ``runs-on``."""
    min_runners: int = Field(default=0, ge=0, le=50)
    """Idle runners kept ready (0: start one per job)."""
    max_runners: int = Field(default=4, ge=1, le=50)
    """Most runners (and so build pods) at once."""

    @field_validator("max_runners")
    @classmethod
    def _max_covers_min(cls, most: int, info: ValidationInfo) -> int:
        least = info.data.get("min_runners")
        if least is not None and most < least:
            raise ValueError(f"must be >= minRunners ({most} < {least})")
        return most


class CiSettings(Settings):
    """``platform:ci``: the CI runners of the tooling cluster and the envelope of their builds."""

    provider: CiProvider
    """gitlab (GitLab Runner) or github (Actions Runner Controller)."""
    gitlab: GitLabRunnerSettings | None = Field(default=None, validate_default=True)
    """Required with provider gitlab, refused otherwise."""
    github: GitHubRunnerSettings | None = Field(default=None, validate_default=True)
    """Required with provider github, refused otherwise."""
    pool: DnsLabel = "builders"
    """The node pool runner and build pods run on; it must carry a NoSchedule taint."""
    build: BuildResources = BuildResources()
    """Requests and limits of every build container."""
    ephemeral_storage_quota_gb: int = Field(default=200, ge=1, le=100000)
    """The ci namespace's quota on ephemeral storage (requests and limits, GiB)."""
    scan_severities: list[Severity] = Field(default=["CRITICAL"], min_length=1)
    """Vulnerability severities that fail the build before its push (fixable ones only): every job
    on these runners gets them as PLATFORM_SCAN_SEVERITY, which the pipeline templates read."""

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, provider: Any) -> Any:
        if provider not in _PROVIDERS:
            raise ValueError(f"unknown CI provider {provider!r} (one of: {', '.join(_PROVIDERS)})")
        return provider

    @field_validator("gitlab", "github")
    @classmethod
    def _settings_for_provider(cls, settings: Settings | None, info: ValidationInfo) -> Settings | None:
        provider, own = info.data.get("provider"), info.field_name
        if provider == own and settings is None:
            example = (
                "{url: https://gitlab.com}" if own == "gitlab" else "{configUrl: https://github.com/acme}"
            )
            raise ValueError(f"required with provider {own}, e.g. {example}")
        if provider is not None and provider != own and settings is not None:
            raise ValueError(f"only allowed with provider {own}")
        return settings


# --------------------------------------------------------------------------------------------
# The component.
# --------------------------------------------------------------------------------------------

CI_NAMESPACE = "ci"
#: Kapsule labels every node with its pool's name.
POOL_LABEL = "k8s.scaleway.com/pool-name"
KUBERNETES_API_PORT = 6443
RUNNER_TOKEN_SECRET = "ci-runner-token"

#: Ephemeral storage (GiB) of GitLab's helper container beside each build: it clones and uploads
#: artifacts through the build's shared volume (which counts against the pod, not the helper).
GITLAB_HELPER_EPHEMERAL_GB = 4
GITLAB_RUNNER_CHART = helm.Chart("gitlab-runner", "0.84.1", "https://charts.gitlab.io")
ARC_REPO = "oci://ghcr.io/actions/actions-runner-controller-charts"
ARC_CONTROLLER_CHART = helm.Chart("gha-runner-scale-set-controller", "0.14.2", ARC_REPO)
ARC_SCALE_SET_CHART = helm.Chart("gha-runner-scale-set", "0.14.2", ARC_REPO)
ARC_NAMESPACE = "arc-system"
#: The runner image of the scale set, at the controller's version (the images below by digest
#: where scw_platform/data/images.yaml records one, tag kept).
ARC_RUNNER_IMAGE = images.ref("actions-runner")
#: Rootless BuildKit, the runner pod's second container: the build workflow's buildctl (the same
#: release, ops/ci/github/build-image.yml) reaches it over a Unix socket in a volume both mount.
ARC_BUILDKIT_IMAGE = images.ref("buildkit-rootless")
ARC_BUILDKIT_SOCKET_DIR = "/run/buildkit"
ARC_BUILDKIT_HOST = f"unix://{ARC_BUILDKIT_SOCKET_DIR}/buildkitd.sock"
#: ``--oci-worker-no-process-sandbox``: no privileges, only the two profile overrides (module
#: docstring); it spares the unmasked /proc. The image's entrypoint is ``rootlesskit buildkitd``.
ARC_BUILDKIT_ARGS = ("--addr", ARC_BUILDKIT_HOST, "--oci-worker-no-process-sandbox")
#: BuildKit's state (snapshots, local cache): the image's VOLUME, in its user's home.
ARC_BUILDKIT_STATE_DIR = "/home/user/.local/share/buildkit"
#: The BuildKit image's user and group (rootlesskit maps them to root in its user namespace). Its
#: socket is theirs, mode 0660: the runner (UID 1001) reaches it through this supplementary group.
ARC_BUILDKIT_UID = 1000
#: The runner container's own share (the build itself runs in BuildKit): the runner, then Trivy and
#: crane. Its disk holds the clients (~0.3 GB), Trivy's databases (~1 GB, ~2 GB with Java's) and the
#: image (the OCI tarball, then the layout unpacked from it: twice the compressed image for a
#: moment), so more than 2Gi; Trivy needs more than 512Mi of memory on large images. Never above
#: the build's own limits, the LimitRange's max for every container.
ARC_RUNNER_REQUESTS = {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "2Gi"}
ARC_RUNNER_LIMITS = {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "10Gi"}
ARC_BUILDKIT_SOCKET_MOUNT = {"name": "buildkit-socket", "mountPath": ARC_BUILDKIT_SOCKET_DIR}
#: The runner pod's security context: rootless BuildKit's two profile overrides (module
#: docstring), which its runner container resets to the runtime's defaults.
ARC_POD_SECURITY_CONTEXT = {
    "seccompProfile": {"type": "Unconfined"},
    "appArmorProfile": {"type": "Unconfined"},
    "supplementalGroups": [ARC_BUILDKIT_UID],
}
#: The runner container without its resources and env: its jobs need neither the unconfined
#: profiles nor root (no escalation: the image's sudo does not work).
ARC_RUNNER_CONTAINER = {
    "name": "runner",
    "image": ARC_RUNNER_IMAGE,
    "command": ["/home/runner/run.sh"],
    "volumeMounts": [ARC_BUILDKIT_SOCKET_MOUNT],
    "securityContext": {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "RuntimeDefault"},
    },
}
#: The BuildKit container without its resources. rootlesskit's user namespace comes from the
#: image's setuid newuidmap and newgidmap, hence privilege escalation (never privileged).
ARC_BUILDKIT_CONTAINER = {
    "name": "buildkitd",
    "image": ARC_BUILDKIT_IMAGE,
    "args": list(ARC_BUILDKIT_ARGS),
    "volumeMounts": [
        ARC_BUILDKIT_SOCKET_MOUNT,
        {"name": "buildkit-state", "mountPath": ARC_BUILDKIT_STATE_DIR},
    ],
    "securityContext": {
        "privileged": False,
        "allowPrivilegeEscalation": True,
        "runAsUser": ARC_BUILDKIT_UID,
        "runAsGroup": ARC_BUILDKIT_UID,
    },
}
#: The job image GitLab runs when a job names none; the build template always names its own.
DEFAULT_JOB_IMAGE = images.ref("alpine")
RUNNER_MANAGER_LABELS = {"app.kubernetes.io/name": "ci-runner-manager"}

#: Pod Security baseline's list of capabilities a container may add
#: (https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline).
BASELINE_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)
#: Baseline's safe sysctls.
SAFE_SYSCTLS = (
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)


@dataclass(frozen=True, kw_only=True)
class CiRunnersArgs:
    provider: k8s.Provider
    settings: CiSettings
    #: The builders pool's taints: runner and build pods tolerate exactly these.
    pool_taints: Sequence[PoolTaint]
    #: The ClusterSecretStore holding the program's own entries, and the runner credential's key
    #: in it (``path:/platform/ci/runner-token``).
    secret_store: str
    token_remote_key: str
    #: What the ExternalSecret waits for (the operator and its stores).
    secrets_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class CiRunners(pulumi.ComponentResource):
    namespace: str = CI_NAMESPACE
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: CiRunnersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:ci:CiRunners", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            # Baseline cannot be enforced (see the module docstring); build_pod_policy enforces
            # the rest of it.
            metadata={"name": CI_NAMESPACE, "labels": labels.platform_namespace(enforce="privileged")},
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        envelope = self._envelope(name, args, in_namespace)
        self._runner_token(name, args, in_namespace)
        # Not after the token's ExternalSecret: that waits for the secrets operator's release, and
        # its Secret appears asynchronously anyway (Pulumi does not wait for a custom resource's
        # status). The runner pods wait for the Secret themselves, within the release's atomic
        # timeout (600 s, which covers the operator's install), so the two releases run side by
        # side instead of one after the other (scripts/critical_path.py: tooling's longest chain).
        after = pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=envelope))
        if args.settings.provider == "gitlab":
            self.release = self._gitlab(name, args, after)
        else:
            self.release = self._github(name, args, k8s_opts, after)
        self.register_outputs({"namespace": CI_NAMESPACE})

    def _envelope(
        self, name: str, args: CiRunnersArgs, opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """Quota, default limits, network policies and the admission policy: all in place before
        the first runner or build pod."""
        meta: Any = {"namespace": CI_NAMESPACE}
        settings = args.settings
        return [
            k8s.core.v1.ResourceQuota(
                f"{name}-quota", metadata={**meta, "name": "ci"}, spec=quota_spec(settings), opts=opts
            ),
            k8s.core.v1.LimitRange(
                f"{name}-limits",
                metadata={**meta, "name": "ci"},
                spec=limit_range_spec(settings.build),
                opts=opts,
            ),
            kube.default_deny_policy(f"{name}-default-deny", metadata=meta, opts=opts),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-egress", metadata={**meta, "name": "ci-egress"}, spec=egress_policy_spec(), opts=opts
            ),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-runner-api",
                metadata={**meta, "name": "ci-runner-api"},
                spec=runner_api_policy_spec(),
                opts=opts,
            ),
            *self._admission(name, args),
        ]

    def _admission(self, name: str, args: CiRunnersArgs) -> list[pulumi.Resource]:
        policy, binding = kube.admission_policy(
            f"{name}-build-pods",
            f"{name}-build-pods-binding",
            name=BUILD_POD_POLICY,
            spec=build_pod_policy(args.settings.pool),
            binding=build_pod_binding_spec(),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        return [policy, binding]

    def _runner_token(self, name: str, args: CiRunnersArgs, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """The runner credential, from the vault into the namespace (never a Helm value)."""
        data = runner_token_data(args.settings.provider)
        return k8s.apiextensions.CustomResource(
            f"{name}-runner-token",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={"name": RUNNER_TOKEN_SECRET, "namespace": CI_NAMESPACE},
            spec={
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": args.secret_store},
                "target": {
                    "name": RUNNER_TOKEN_SECRET,
                    "creationPolicy": "Owner",
                    "template": {"data": data},
                },
                "data": [{"secretKey": "token", "remoteRef": {"key": args.token_remote_key}}],
            },
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=list(args.secrets_depends_on))
            ),
        )

    def _gitlab(self, name: str, args: CiRunnersArgs, opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
        return helm.release(
            f"{name}-gitlab-runner",
            chart=GITLAB_RUNNER_CHART,
            release_name="gitlab-runner",
            namespace=CI_NAMESPACE,
            values=gitlab_runner_values(args.settings, args.pool_taints),
            timeout=600,
            opts=opts,
        )

    def _github(
        self,
        name: str,
        args: CiRunnersArgs,
        cluster_opts: pulumi.ResourceOptions,
        opts: pulumi.ResourceOptions,
    ) -> k8s.helm.v3.Release:
        """The controller in its own namespace (it watches the scale set's CRDs), then the scale
        set in ``ci``: the listener and the runners are the controller's pods there."""
        controller_namespace = k8s.core.v1.Namespace(
            f"{name}-arc-namespace",
            metadata={"name": ARC_NAMESPACE, "labels": labels.platform_namespace()},
            opts=cluster_opts,
        )
        controller = helm.release(
            f"{name}-arc-controller",
            chart=ARC_CONTROLLER_CHART,
            release_name="arc",
            namespace=ARC_NAMESPACE,
            values=arc_controller_values(args.pool_taints, args.settings.pool),
            timeout=600,
            opts=pulumi.ResourceOptions.merge(
                cluster_opts, pulumi.ResourceOptions(depends_on=[controller_namespace])
            ),
        )
        return helm.release(
            f"{name}-arc-scale-set",
            chart=ARC_SCALE_SET_CHART,
            release_name=_github(args.settings).scale_set_name,
            namespace=CI_NAMESPACE,
            values=arc_scale_set_values(args.settings, args.pool_taints),
            timeout=600,
            # The scale set's CRDs come with the controller.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[controller])),
        )


# --- Specs (pure, tested directly) ---------------------------------------------------------------

BUILD_POD_POLICY = "platform-ci-build-pods"


def _gib(value: int) -> str:
    return f"{value}Gi"


def quota_spec(settings: CiSettings) -> Any:
    """Ephemeral storage is the scarce thing (the old CI box died of a full disk)."""
    quota = _gib(settings.ephemeral_storage_quota_gb)
    return {"hard": {"requests.ephemeral-storage": quota, "limits.ephemeral-storage": quota}}


def limit_range_spec(build: BuildResources) -> Any:
    """Every container of the namespace gets the build resources as its default requests and
    limits (the runner's helper and sidecar containers included), and none may exceed them."""
    requests = {
        "cpu": build.cpu_request,
        "memory": build.memory_request,
        "ephemeral-storage": _gib(build.ephemeral_storage_request_gb),
    }
    limits = {
        "cpu": build.cpu_limit,
        "memory": build.memory_limit,
        "ephemeral-storage": _gib(build.ephemeral_storage_limit_gb),
    }
    return {"limits": [{"type": "Container", "default": limits, "defaultRequest": requests, "max": limits}]}


def egress_policy_spec() -> Any:
    """Every pod of the namespace: DNS and public HTTPS (Git host, registry, Trivy's database)."""
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [kube.dns_egress_rule(), kube.public_https_egress_rule()],
    }


def runner_api_policy_spec() -> Any:
    """The runner manager (GitLab Runner, or ARC's listener) creates job pods through the
    Kubernetes API. Kapsule's API server is outside the cluster with no pod labels to select and
    an address Cilium may not match by ipBlock (see observability's monitoring policy): named by
    port only, for the manager's pods only."""
    return {
        "podSelector": {"matchLabels": dict(RUNNER_MANAGER_LABELS)},
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"protocol": "TCP", "port": KUBERNETES_API_PORT}]}],
    }


def runner_token_data(provider: str) -> dict[str, str]:
    """The Secret the chart reads: GitLab Runner wants ``runner-token`` (and an empty
    ``runner-registration-token``, the deprecated flow); ARC wants ``github_token``."""
    if provider == "gitlab":
        return {"runner-token": "{{ .token }}", "runner-registration-token": ""}
    return {"github_token": "{{ .token }}"}


def _github(settings: CiSettings) -> GitHubRunnerSettings:
    if settings.github is None:
        raise ValueError("provider github needs platform:ci.github")
    return settings.github


def _tolerations(taints: Sequence[PoolTaint]) -> list[dict[str, str]]:
    return [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in taints]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gitlab_runner_config(settings: CiSettings, taints: Sequence[PoolTaint]) -> str:
    """The runner's ``config.toml`` template: job pods in ``ci``, on the builders pool, with the
    build resources (the *_overwrite_max_allowed keys let a job ask for less, never more), and
    BuildKit rootless's two profile overrides (module docstring) through the runner's pod-spec
    patch (https://docs.gitlab.com/runner/executors/kubernetes/#overwrite-generated-pod-specifications)."""
    build = settings.build
    storage_request, storage_limit = (
        _gib(build.ephemeral_storage_request_gb),
        _gib(build.ephemeral_storage_limit_gb),
    )
    tolerations = "\n".join(
        f"  {_toml_string(f'{t.key}={t.value}')} = {_toml_string(t.effect)}" for t in taints
    )
    environment = [
        "FF_USE_ADVANCED_POD_SPEC_CONFIGURATION=true",
        f"PLATFORM_SCAN_SEVERITY={scan_severity(settings)}",
    ]
    return f"""[[runners]]
  environment = [{", ".join(_toml_string(e) for e in environment)}]
  [runners.kubernetes]
    namespace = "{CI_NAMESPACE}"
    image = "{DEFAULT_JOB_IMAGE}"
    privileged = false
    allow_privilege_escalation = true
    cpu_request = "{build.cpu_request}"
    cpu_request_overwrite_max_allowed = "{build.cpu_limit}"
    cpu_limit = "{build.cpu_limit}"
    cpu_limit_overwrite_max_allowed = "{build.cpu_limit}"
    memory_request = "{build.memory_request}"
    memory_request_overwrite_max_allowed = "{build.memory_limit}"
    memory_limit = "{build.memory_limit}"
    memory_limit_overwrite_max_allowed = "{build.memory_limit}"
    ephemeral_storage_request = "{storage_request}"
    ephemeral_storage_request_overwrite_max_allowed = "{storage_limit}"
    ephemeral_storage_limit = "{storage_limit}"
    ephemeral_storage_limit_overwrite_max_allowed = "{storage_limit}"
    helper_cpu_request = "100m"
    helper_memory_request = "128Mi"
    helper_memory_limit = "512Mi"
    helper_ephemeral_storage_request = "1Gi"
    helper_ephemeral_storage_limit = "{_gib(GITLAB_HELPER_EPHEMERAL_GB)}"
  [runners.kubernetes.node_selector]
    {_toml_string(POOL_LABEL)} = {_toml_string(settings.pool)}
  [runners.kubernetes.node_tolerations]
{tolerations}
  [[runners.kubernetes.pod_spec]]
    name = "buildkit-rootless"
    patch_type = "strategic"
    patch = '''
      securityContext:
        seccompProfile: {{type: Unconfined}}
        appArmorProfile: {{type: Unconfined}}
    '''
"""


def pod_ephemeral_gb(settings: CiSettings) -> int:
    """Ephemeral storage (GiB) one job pod's limits add up to, as the namespace quota counts them:
    the build container and GitLab's helper, or BuildKit's sidecar and ARC's runner container."""
    build = settings.build.ephemeral_storage_limit_gb
    if settings.provider == "gitlab":
        return build + GITLAB_HELPER_EPHEMERAL_GB
    runner = int(ARC_RUNNER_LIMITS["ephemeral-storage"].removesuffix("Gi"))
    return build + min(runner, build)


def concurrent_pods(settings: CiSettings) -> int:
    """Job pods at most at once: GitLab's concurrent, or the scale set's maxRunners."""
    if settings.gitlab is not None:
        return settings.gitlab.concurrent
    return _github(settings).max_runners


def scan_severity(settings: CiSettings) -> str:
    """Trivy's --severity list, most severe last, as the templates pass it."""
    order = get_args(Severity)
    return ",".join(sorted(set(settings.scan_severities), key=order.index))


def gitlab_runner_values(settings: CiSettings, taints: Sequence[PoolTaint]) -> dict[str, Any]:
    """The runner manager itself is a restricted-level pod on the builders pool; it may create
    pods, read their logs and exec into them in ``ci`` only (rbac.rules narrows the chart's
    default of every verb on the core group)."""
    if settings.gitlab is None:
        raise ValueError("provider gitlab needs platform:ci.gitlab")
    return {
        "gitlabUrl": settings.gitlab.url,
        "concurrent": settings.gitlab.concurrent,
        "checkInterval": 10,
        "rbac": {
            "create": True,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "secrets", "configmaps"],
                    "verbs": ["create", "delete", "get", "list", "watch", "update", "patch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["pods/exec", "pods/attach"],
                    "verbs": ["create", "patch", "delete"],
                },
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
            ],
        },
        "runners": {"secret": RUNNER_TOKEN_SECRET, "config": gitlab_runner_config(settings, taints)},
        "podLabels": dict(RUNNER_MANAGER_LABELS),
        "nodeSelector": {POOL_LABEL: settings.pool},
        "tolerations": _tolerations(taints),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "podSecurityContext": {
            "runAsUser": 100,
            "fsGroup": 65533,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"},
            "limits": {"memory": "512Mi", "ephemeral-storage": "1Gi"},
        },
        "metrics": {"enabled": True},
    }


def arc_controller_values(taints: Sequence[PoolTaint], pool: str) -> dict[str, Any]:
    return {
        "replicaCount": 1,
        "nodeSelector": {POOL_LABEL: pool},
        "tolerations": _tolerations(taints),
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "100Mi"},
            "limits": {"memory": "512Mi", "ephemeral-storage": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def arc_scale_set_values(settings: CiSettings, taints: Sequence[PoolTaint]) -> dict[str, Any]:
    """One scale set, its runner pods on the builders pool. Jobs run in the runner container itself
    (no ``containerMode``: no Docker daemon, no job pods); the pod's second container, rootless
    BuildKit with the build resources, runs their builds (``buildctl`` over BUILDKIT_HOST, a socket
    in a shared volume), and needs the same two profile overrides as GitLab's build pods."""
    import copy

    from scw_platform.apps import cpu, mebibytes, memory, millicores

    github, build = _github(settings), settings.build
    storage_limit = _gib(build.ephemeral_storage_limit_gb)
    requests = {
        "cpu": build.cpu_request,
        "memory": build.memory_request,
        "ephemeral-storage": _gib(build.ephemeral_storage_request_gb),
    }
    limits = {"cpu": build.cpu_limit, "memory": build.memory_limit, "ephemeral-storage": storage_limit}
    resources = {"requests": requests, "limits": limits}
    mib = (mebibytes, memory)
    units = {"cpu": (millicores, cpu), "memory": mib, "ephemeral-storage": mib}

    def at_most(share: dict[str, str], most: dict[str, str]) -> dict[str, str]:
        return {k: units[k][1](min(units[k][0](v), units[k][0](most[k]))) for k, v in share.items()}

    runner, runner_limits = copy.deepcopy(ARC_RUNNER_CONTAINER), at_most(ARC_RUNNER_LIMITS, limits)
    runner["resources"] = {"requests": at_most(ARC_RUNNER_REQUESTS, runner_limits), "limits": runner_limits}
    runner["env"] = [
        {"name": "PLATFORM_SCAN_SEVERITY", "value": scan_severity(settings)},
        {"name": "BUILDKIT_HOST", "value": ARC_BUILDKIT_HOST},
    ]
    pod = {
        "nodeSelector": {POOL_LABEL: settings.pool},
        "tolerations": _tolerations(taints),
        "securityContext": copy.deepcopy(ARC_POD_SECURITY_CONTEXT),
        "containers": [runner, {**copy.deepcopy(ARC_BUILDKIT_CONTAINER), "resources": resources}],
        "volumes": [
            {"name": "buildkit-socket", "emptyDir": {}},
            # BuildKit's state counts against the pod's disk: bounded like a build.
            {"name": "buildkit-state", "emptyDir": {"sizeLimit": storage_limit}},
        ],
    }
    return {
        "githubConfigUrl": github.config_url,
        "githubConfigSecret": RUNNER_TOKEN_SECRET,
        "runnerScaleSetName": github.scale_set_name,
        "minRunners": github.min_runners,
        "maxRunners": github.max_runners,
        "listenerTemplate": {
            "metadata": {"labels": dict(RUNNER_MANAGER_LABELS)},
            "spec": {
                "containers": [{"name": "listener", "resources": resources}],
                "nodeSelector": {POOL_LABEL: settings.pool},
                "tolerations": _tolerations(taints),
            },
        },
        "template": {"spec": pod},
    }


def _cel_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


def _each_container(condition: str) -> str:
    return f"variables.containers.all(c, {condition})"


def _unset_or(path: str, condition: str) -> str:
    """``path`` (dotted, from ``c`` or ``object.spec``) absent, or ``condition`` true of it."""
    head, *rest = path.split(".")
    checks, current = [], head
    for part in rest:
        current = f"{current}.{part}"
        checks.append(f"!has({current})")
    return "(" + " || ".join([*checks, condition]) + ")"


def _baseline_rules(pool: str) -> list[tuple[str, str]]:
    """(CEL expression, message) per control, over ``object.spec`` and ``variables.containers``."""
    spec, caps, sysctls = "object.spec", _cel_list(BASELINE_CAPABILITIES), _cel_list(SAFE_SYSCTLS)
    host_namespaces = " && ".join(
        _unset_or(f"{spec}.{n}", f"!{spec}.{n}") for n in ("hostNetwork", "hostPID", "hostIPC")
    )
    return [
        (
            _each_container(_unset_or("c.securityContext.privileged", "!c.securityContext.privileged")),
            "privileged containers are refused in ci: builds run rootless (BuildKit), never privileged",
        ),
        (host_namespaces, "host namespaces (hostNetwork, hostPID, hostIPC) are refused in ci"),
        (
            _unset_or(f"{spec}.volumes", f"{spec}.volumes.all(v, !has(v.hostPath))"),
            "hostPath volumes are refused in ci: a build never touches the node's disk",
        ),
        (
            _each_container(_unset_or("c.ports", "c.ports.all(p, !has(p.hostPort) || p.hostPort == 0)")),
            "host ports are refused in ci",
        ),
        (
            _each_container(
                _unset_or(
                    "c.securityContext.capabilities.add",
                    f"c.securityContext.capabilities.add.all(a, a in {caps})",
                )
            ),
            "capabilities beyond Pod Security baseline's list are refused in ci",
        ),
        (
            _each_container(
                _unset_or("c.securityContext.procMount", "c.securityContext.procMount == 'Default'")
            ),
            "a non-default /proc mount is refused in ci",
        ),
        (
            _unset_or(
                f"{spec}.securityContext.sysctls",
                f"{spec}.securityContext.sysctls.all(s, s.name in {sysctls})",
            ),
            "only Pod Security baseline's safe sysctls are allowed in ci",
        ),
        (
            _each_container(_unset_or("c.securityContext.seLinuxOptions", "false"))
            + " && "
            + _unset_or(f"{spec}.securityContext.seLinuxOptions", "false"),
            "SELinux options are refused in ci",
        ),
        (
            _each_container(
                "has(c.resources) && has(c.resources.limits) && 'ephemeral-storage' in c.resources.limits"
            ),
            "every container in ci needs an ephemeral-storage limit: one build must not fill a node's disk",
        ),
        (
            f"has({spec}.nodeSelector) && '{POOL_LABEL}' in {spec}.nodeSelector"
            f" && {spec}.nodeSelector['{POOL_LABEL}'] == '{pool}'",
            f"pods in ci run on the {pool} pool only (nodeSelector {POOL_LABEL}: {pool})",
        ),
    ]


def build_pod_policy(pool: str) -> Any:
    """Pod Security baseline for the ci namespace minus its seccomp and AppArmor controls (which
    rootless BuildKit needs), plus ephemeral-storage limits on every container and the builders
    pool for every pod. CEL over ``object.spec``; tested with cel-python."""
    spec = "object.spec"
    rules = _baseline_rules(pool)
    containers = f"{spec}.containers + (has({spec}.initContainers) ? {spec}.initContainers : [])"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["pods"],
                }
            ]
        },
        "variables": [{"name": "containers", "expression": containers}],
        "validations": [_rule(expression, message) for expression, message in rules],
    }


def build_pod_binding_spec() -> Any:
    return {
        "policyName": BUILD_POD_POLICY,
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": kube.namespace_selector(CI_NAMESPACE)},
    }


def _rule(expression: str, message: str) -> dict[str, str]:
    return {"expression": expression, "message": message}

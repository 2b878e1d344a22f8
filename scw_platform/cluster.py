"""A Kapsule cluster on a private network, its node pools, its API-server ACL, and the explicit
Kubernetes provider every in-cluster resource must use."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scw_platform.settings import DnsLabel, Settings, catalogued, no_duplicates, strict_cidr, zone_of_region

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:cluster).
# --------------------------------------------------------------------------------------------

Weekday = Literal["any", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MINOR_VERSION = re.compile(r"^1\.\d{2}$")
_PATCH_VERSION = re.compile(r"^1\.\d{2}\.\d+$")


class AutoUpgrade(Settings):
    enabled: bool = True
    """Let Kapsule apply patch releases in the maintenance window (version is then a minor version such as
    1.34).
    """
    maintenance_window_day: Weekday = "sunday"
    """Day of the weekly maintenance window, or any."""
    maintenance_window_start_hour: int = Field(default=3, ge=0, le=23)
    """Hour (UTC) the maintenance window starts."""


class Autoscaler(Settings):
    disable_scale_down: bool = False
    """Never remove nodes: scale up only."""
    scale_down_delay_after_add: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "10m"
    """How long after a scale-up before a scale-down is considered."""
    scale_down_unneeded_time: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "10m"
    """How long a node must stay unneeded before it is removed."""
    scale_down_utilization_threshold: float = Field(default=0.5, gt=0, le=1)
    """Share of a node's allocatable resources requested by pods under which the node counts as unneeded.
    """
    expander: Literal["random", "least_waste", "most_pods", "price", "priority"] = "least_waste"
    """How the autoscaler picks the pool to grow."""
    ignore_daemonsets_utilization: bool = True
    """Leave DaemonSet pods out of the utilisation that keeps a node."""
    balance_similar_node_groups: bool = True
    """Keep pools of the same type and labels at similar sizes."""
    max_graceful_termination_sec: int = Field(default=600, ge=0, le=3600)
    """Longest a pod may take to stop when its node is scaled down."""


#: The broadest API-server ACL entry accepted: anything wider (0.0.0.0/1 and its like included)
#: is the world in all but name.
MIN_ACL_PREFIX = 16


class AllowedRange(Settings):
    cidr: Annotated[ipaddress.IPv4Network, BeforeValidator(strict_cidr)]
    """An IPv4 network without host bits, /16 or narrower."""
    description: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """Whose range this is (admin office, CI runners)."""

    @field_validator("cidr")
    @classmethod
    def _not_the_world(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen == 0:
            raise ValueError(
                "0.0.0.0/0 opens the Kubernetes API to the world; list admin and CI ranges instead"
            )
        if value.prefixlen < MIN_ACL_PREFIX:
            raise ValueError(
                f"{value} admits {value.num_addresses:,} addresses to the Kubernetes API; list admin and "
                f"CI ranges of /{MIN_ACL_PREFIX} or narrower"
            )
        return value


class UpgradePolicy(Settings):
    max_surge: int = Field(default=1, ge=0, le=10)
    """Extra nodes created while a node upgrade runs."""
    max_unavailable: int = Field(default=0, ge=0, le=10)
    """Nodes that may be unavailable at once during an upgrade."""

    @model_validator(mode="after")
    def _some_progress(self) -> UpgradePolicy:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: a node upgrade could never start")
        return self


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problems(key: str, value: str) -> list[str]:
    """Kubernetes label syntax (apimachinery validation: an optional DNS-subdomain prefix of at most
    253 characters, a name and a value of at most 63 from [A-Za-z0-9-_.]), and no node label under
    kubernetes.io or k8s.io, which the kubelet may not set (NodeRestriction)."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if not _LABEL_NAME.fullmatch(name) or (
        prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix))
    ):
        problems.append(f"label key {key[:80]!r} is not a valid Kubernetes label key")
    elif prefix == "kubernetes.io" or prefix.endswith((".kubernetes.io", ".k8s.io")) or prefix == "k8s.io":
        problems.append(f"label key {key[:80]!r} uses a prefix reserved for Kubernetes")
    if value and not _LABEL_NAME.fullmatch(value):
        problems.append(
            f"label {key[:80]!r}: value {value[:80]!r} is not a valid label value "
            "(at most 63 of A-Z a-z 0-9 - _ .)"
        )
    return problems


class PoolTaint(Settings):
    """A Kubernetes taint on every node of a pool (Kapsule reconciles it)."""

    key: Annotated[
        str,
        StringConstraints(
            pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
        ),
    ]
    """Taint key, e.g. platform.scw/dedicated."""
    value: Annotated[
        str, StringConstraints(pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
    ] = ""
    """Taint value, e.g. builders."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"
    """What the taint does to pods that do not tolerate it."""


class Pool(Settings):
    # Field order matters: each size check sees the fields declared before it.
    name: DnsLabel
    """Pool name, unique in the cluster (a DNS label)."""
    node_type: str
    """Instance commercial type (catalogue: kapsuleNodeTypes)."""
    max_size: int = Field(ge=1, le=150)
    """Most nodes the autoscaler may run."""
    size: int = Field(ge=0, le=150)
    """Nodes at creation; the autoscaler moves it afterwards."""
    min_size: int = Field(ge=0, le=150)
    """Fewest nodes the autoscaler keeps (0 for a pool that may sleep, e.g. builders)."""
    autoscaling: bool = True
    """Let the cluster autoscaler resize the pool within minSize..maxSize."""
    autohealing: bool = True
    """Replace nodes that stop reporting healthy."""
    public_ip_disabled: bool = True
    """Nodes without public IPs: they reach out through the Public Gateway."""
    root_volume_type: Literal["sbs_5k", "sbs_15k", "l_ssd"] = "sbs_15k"
    """Root volume: sbs_5k or sbs_15k block storage (IOPS tier) or local l_ssd."""
    root_volume_size_gb: int = Field(default=50, ge=20, le=1000)
    """Root volume size in GB (container images and emptyDir volumes live there)."""
    zone: str | None = None
    """The pool's zone (default: the stack's scaleway:zone), one of the region's."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Kubernetes labels of the pool's nodes (no kubernetes.io or k8s.io prefix: the kubelet may not set
    those).
    """
    upgrade_policy: UpgradePolicy = UpgradePolicy()
    """How many nodes a node upgrade adds or takes away at a time."""
    taints: list[PoolTaint] = Field(default_factory=list)
    """Taints of the pool's nodes: only pods that tolerate them run there (the builders pool)."""

    @field_validator("labels")
    @classmethod
    def _kubernetes_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        problems = [p for key, value in labels.items() for p in label_problems(key, value)]
        if problems:
            raise ValueError("; ".join(problems))
        return labels

    @field_validator("node_type")
    @classmethod
    def _kapsule_type(cls, name: str) -> str:
        return catalogued("kapsuleNodeTypes", name)

    @field_validator("size")
    @classmethod
    def _size_within_max(cls, size: int, info: ValidationInfo) -> int:
        max_size = info.data.get("max_size")
        if max_size is not None and size > max_size:
            raise ValueError(f"must be <= maxSize ({size} > {max_size})")
        return size

    @field_validator("min_size")
    @classmethod
    def _min_within(cls, min_size: int, info: ValidationInfo) -> int:
        max_size, size = info.data.get("max_size"), info.data.get("size")
        if max_size is not None and min_size > max_size:
            raise ValueError(f"must be <= maxSize ({min_size} > {max_size})")
        if size is not None and min_size > size:
            raise ValueError(f"must be <= size ({min_size} > {size})")
        return min_size

    _zone = field_validator("zone")(zone_of_region)


class ClusterSettings(Settings):
    # auto_upgrade precedes version: the version rule depends on it.
    auto_upgrade: AutoUpgrade = AutoUpgrade()
    """Automatic patch upgrades and their maintenance window."""
    version: str
    """Kubernetes version: a minor version (1.34) with autoUpgrade.enabled, a full version (1.34.2)
    without.
    """
    cni: Literal["cilium", "calico", "kilo"] = "cilium"
    """Container network interface; chosen at creation."""
    type: Annotated[str, StringConstraints(pattern=r"^kapsule(-dedicated-(4|8|16))?$")] = "kapsule"
    """Control plane offer: kapsule (shared) or kapsule-dedicated-4, -8, -16."""
    autoscaler: Autoscaler = Autoscaler()
    """Cluster autoscaler settings, shared by every autoscaling pool."""
    api_allowed_ranges: list[AllowedRange] = Field(default_factory=list)
    """Ranges allowed to reach the Kubernetes API (the ACL); the environment's own egress address is added
    to them.
    """
    pools: list[Pool] = Field(min_length=1)
    """The node pools (at least one)."""

    @field_validator("version")
    @classmethod
    def _version_matches_upgrades(cls, version: str, info: ValidationInfo) -> str:
        auto_upgrade = info.data.get("auto_upgrade")
        if auto_upgrade is None:
            return version
        if auto_upgrade.enabled and not _MINOR_VERSION.fullmatch(version):
            raise ValueError(
                f"must be a minor version like 1.34 when autoUpgrade.enabled is true (got {version!r})"
            )
        if not auto_upgrade.enabled and not _PATCH_VERSION.fullmatch(version):
            raise ValueError(
                f"must be a full version like 1.34.2 when autoUpgrade.enabled is false (got {version!r})"
            )
        return version

    @field_validator("api_allowed_ranges")
    @classmethod
    def _acl_once_each(cls, ranges: list[AllowedRange]) -> list[AllowedRange]:
        no_duplicates("range", [str(r.cidr) for r in ranges])
        return ranges

    @field_validator("pools")
    @classmethod
    def _unique_pool_names(cls, pools: list[Pool]) -> list[Pool]:
        no_duplicates("pool name", [p.name for p in pools])
        return pools


@dataclass(frozen=True, kw_only=True)
class ApiAccess:
    """One API-server ACL entry whose address may only be known at deploy time."""

    cidr: pulumi.Input[str]
    description: str


@dataclass(frozen=True, kw_only=True)
class KapsuleClusterArgs:
    environment: str
    region: str
    zone: str
    private_network_id: pulumi.Input[str]
    #: The network's egress (gateway network); nodes without public IPs need it before booting.
    egress: pulumi.Resource
    settings: ClusterSettings
    #: ACL entries known only at deploy time (another stack's egress IP), added to the configured ones.
    extra_api_access: Sequence[ApiAccess] = field(default_factory=tuple)
    #: This environment's egress address (its Public Gateway IP): nodes without public IPs reach the
    #: API server from it, so a cluster with an ACL must admit it.
    own_egress_ip: pulumi.Input[str] | None = None
    tags: Sequence[str] = field(default_factory=tuple)


class KapsuleCluster(pulumi.ComponentResource):
    cluster_id: pulumi.Output[str]
    apiserver_url: pulumi.Output[str]
    #: Secret: the admin kubeconfig.
    kubeconfig: pulumi.Output[str]
    #: Base64 PEM of the API server's CA (for clients such as Argo CD that trust it explicitly).
    ca_certificate: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(
        self, name: str, args: KapsuleClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:cluster:KapsuleCluster", name, None, opts)
        cluster = self._control_plane(name, args)
        pools = self._pools(name, args, cluster)
        self._api_acl(name, args, cluster)

        # The SDK marks kubeconfigs secret; wrap again so the value stays secret even where the
        # engine's additional_secret_outputs does not reach (mocked runs, derived outputs).
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfigs[0].config_file)
        self.ca_certificate = cluster.kubeconfigs[0].cluster_ca_certificate
        self.cluster_id = cluster.id
        self.apiserver_url = cluster.apiserver_url
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Objects are applied only once the nodes that will run them are ready.
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools),
        )
        self.register_outputs(
            {
                "clusterId": self.cluster_id,
                "apiserverUrl": self.apiserver_url,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _control_plane(self, name: str, args: KapsuleClusterArgs) -> scaleway.kubernetes.Cluster:
        """Declare the Kapsule cluster (control plane, upgrade window, autoscaler) on the private network."""
        settings = args.settings
        autoscaler = settings.autoscaler
        return scaleway.kubernetes.Cluster(
            f"{name}-cluster",
            name=f"{args.environment}",
            version=settings.version,
            cni=settings.cni,
            type=settings.type,
            region=args.region,
            private_network_id=args.private_network_id,
            # Load balancers and volumes the cloud controller created for this cluster go with it,
            # so a destroyed stack leaves nothing billing. Nothing stateful lives in cluster volumes
            # (the database is managed) and the public address is a separately retained IP.
            delete_additional_resources=True,
            auto_upgrade={
                "enable": settings.auto_upgrade.enabled,
                "maintenance_window_day": settings.auto_upgrade.maintenance_window_day,
                "maintenance_window_start_hour": settings.auto_upgrade.maintenance_window_start_hour,
            },
            autoscaler_config={
                "disable_scale_down": autoscaler.disable_scale_down,
                "scale_down_delay_after_add": autoscaler.scale_down_delay_after_add,
                "scale_down_unneeded_time": autoscaler.scale_down_unneeded_time,
                "scale_down_utilization_threshold": autoscaler.scale_down_utilization_threshold,
                "expander": autoscaler.expander,
                "ignore_daemonsets_utilization": autoscaler.ignore_daemonsets_utilization,
                "balance_similar_node_groups": autoscaler.balance_similar_node_groups,
                "max_graceful_termination_sec": autoscaler.max_graceful_termination_sec,
            },
            tags=list(args.tags),
            # The cluster's control plane joins the private network; the nodes boot only once the
            # gateway pushes their default route.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.egress]),
        )

    def _pools(
        self, name: str, args: KapsuleClusterArgs, cluster: scaleway.kubernetes.Cluster
    ) -> list[scaleway.kubernetes.Pool]:
        """Declare the node pools; the Kubernetes provider waits on them so pods find ready nodes."""
        tags = list(args.tags)
        return [
            scaleway.kubernetes.Pool(
                f"{name}-pool-{pool.name}",
                cluster_id=cluster.id,
                name=pool.name,
                node_type=pool.node_type,
                size=pool.size,
                min_size=pool.min_size,
                max_size=pool.max_size,
                autoscaling=pool.autoscaling,
                autohealing=pool.autohealing,
                public_ip_disabled=pool.public_ip_disabled,
                root_volume_type=pool.root_volume_type,
                root_volume_size_in_gb=pool.root_volume_size_gb,
                zone=pool.zone or args.zone,
                region=args.region,
                container_runtime="containerd",
                upgrade_policy={
                    "max_surge": pool.upgrade_policy.max_surge,
                    "max_unavailable": pool.upgrade_policy.max_unavailable,
                },
                tags=[*tags, *(f"{k}={v}" for k, v in sorted(pool.labels.items()))],
                taints=[{"key": x.key, "value": x.value, "effect": x.effect} for x in pool.taints] or None,
                # Helm releases that follow wait for pods; pods wait for ready nodes.
                wait_for_pool_ready=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.egress]),
            )
            for pool in args.settings.pools
        ]

    def _api_acl(self, name: str, args: KapsuleClusterArgs, cluster: scaleway.kubernetes.Cluster) -> None:
        """Declare the API-server ACL, only when some range is configured.

        Once there is an ACL, the environment's own egress IP joins it: the nodes reach the API from it.
        """
        rules: list[scaleway.kubernetes.AclAclRuleArgsDict] = [
            {"ip": str(r.cidr), "description": r.description} for r in args.settings.api_allowed_ranges
        ]
        rules += [{"ip": a.cidr, "description": a.description} for a in args.extra_api_access]
        if rules and args.own_egress_ip is not None:
            own = pulumi.Output.from_input(args.own_egress_ip).apply(lambda ip: f"{ip}/32")
            rules.append({"ip": own, "description": "own nodes (Public Gateway egress)"})
        if rules:
            scaleway.kubernetes.Acl(
                f"{name}-acl",
                cluster_id=cluster.id,
                region=args.region,
                acl_rules=rules,
                opts=pulumi.ResourceOptions(parent=self),
            )

"""A Kapsule cluster on a private network, its node pools, its API-server ACL, and the explicit
Kubernetes provider every in-cluster resource must use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway

from program.config import Cluster as ClusterSettings


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
        settings = args.settings
        tags = list(args.tags)
        autoscaler = settings.autoscaler

        cluster = scaleway.kubernetes.Cluster(
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
            tags=tags,
            # The cluster's control plane joins the private network; the nodes boot only once the
            # gateway pushes their default route.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.egress]),
        )

        pools = [
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
                # Helm releases that follow wait for pods; pods wait for ready nodes.
                wait_for_pool_ready=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.egress]),
            )
            for pool in settings.pools
        ]

        rules: list[scaleway.kubernetes.AclAclRuleArgsDict] = [
            {"ip": str(r.cidr), "description": r.description} for r in settings.api_allowed_ranges
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

"""Teardown, proven on the plan's inventory: destroying a stack removes what the cloud controller
created before the cluster goes, keeps the reserved IP and the database, and never waits on a
finalizer whose controller is already gone.

Pulumi deletes a resource only after everything that depends on it (its ``dependencies`` and the
resources whose provider it is). So the order is in the graph these tests walk:

* every Kubernetes object and Helm release depends on its cluster's provider, which depends on the
  cluster and every node pool: ``helm uninstall`` removes Traefik's LoadBalancer Service (the cloud
  controller then deletes the load balancer) while nodes and controllers still run, and the
  cluster goes last (``delete_additional_resources`` sweeps any volume or load balancer left);
* protected resources (reserved IP, database instance and databases, registry namespace, backup
  bucket) depend on no cluster resource, so ``pulumi destroy --exclude-protected`` can remove the
  cluster while they stay; the reserved IP is also ``retain_on_delete``;
* custom resources depend on the release that serves their kind, so their controller handles its
  finalizers before it is uninstalled; Argo CD's resources-finalizer is set only on Applications
  whose controller outlives them (tooling's Argo CD).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from offline import runner
from offline.mocks import Registration

CLUSTER = "scaleway:kubernetes/cluster:Cluster"
POOL = "scaleway:kubernetes/pool:Pool"
K8S_PROVIDER = "pulumi:providers:kubernetes"
HELM = "kubernetes:helm.sh/v3:Release"
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
ARGOCD_FINALIZER = "resources-finalizer.argocd.argoproj.io"
#: Scaleway's cloud controller reads these Service annotations to place a load balancer.
LB_ANNOTATION_PREFIX = "service.beta.kubernetes.io/scw-loadbalancer-"
#: API groups served by Kubernetes itself (everything else is a custom resource).
BUILT_IN_GROUPS = {
    "core",
    "apps",
    "batch",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "policy",
    "autoscaling",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
}

#: What `pulumi destroy --exclude-protected` keeps, by stack.
#: Addresses and the network the cluster and database hang on, in every role but development.
NETWORK_KEPT = {
    "scaleway:network/privateNetwork:PrivateNetwork",
    "scaleway:network/publicGatewayIp:PublicGatewayIp",
}
PROTECTED = {
    "prod": {
        "scaleway:loadbalancers/ip:Ip",
        "scaleway:databases/instance:Instance",
        "scaleway:databases/database:Database",
        "scaleway:object/bucket:Bucket",
        *NETWORK_KEPT,
    },
    "tooling": {"scaleway:loadbalancers/ip:Ip", "scaleway:registry/namespace:Namespace", *NETWORK_KEPT},
}


class Graph:
    """Deletion dependencies of a plan: a resource goes only after everything that needs it."""

    def __init__(self, plan: runner.Plan) -> None:
        self.plan = plan
        self.by_urn = {r.urn: r for r in plan.registrations}
        self._closure: dict[str, set[str]] = {}

    def direct(self, reg: Registration) -> set[str]:
        found = set(reg.dependencies)
        if reg.provider_urn:
            found.add(reg.provider_urn)
        return found

    def needs(self, urn: str) -> set[str]:
        """Every resource ``urn`` depends on, transitively (through dependencies and providers)."""
        if urn not in self._closure:
            self._closure[urn] = set()
            seen: set[str] = set()
            todo = list(self.direct(self.by_urn[urn])) if urn in self.by_urn else []
            while todo:
                current = todo.pop()
                if current in seen:
                    continue
                seen.add(current)
                if current in self.by_urn:
                    todo.extend(self.direct(self.by_urn[current]) - seen)
            self._closure[urn] = seen
        return self._closure[urn]

    def of_type(self, *types: str) -> list[Registration]:
        return [r for r in self.plan.registrations if r.type in types]

    def cluster_providers(self) -> dict[str, tuple[Registration, list[Registration]]]:
        """Each stack-owned Kubernetes provider -> (its cluster, the cluster's pools)."""
        clusters = self.of_type(CLUSTER)
        pools = self.of_type(POOL)
        found: dict[str, tuple[Registration, list[Registration]]] = {}
        for provider in self.of_type(K8S_PROVIDER):
            needs = self.needs(provider.urn)
            owned = [c for c in clusters if c.urn in needs]
            if owned:
                cluster = owned[0]
                found[provider.urn] = (cluster, [p for p in pools if cluster.urn in self.needs(p.urn)])
        return found


def _kubernetes(regs: Iterable[Registration]) -> list[Registration]:
    """Kubernetes objects and Helm releases (not providers, not component resources)."""
    return [r for r in regs if r.custom and r.type.startswith("kubernetes:")]


def _group(reg: Registration) -> str:
    return reg.type.split(":", 2)[1].split("/", 1)[0]


@pytest.fixture(scope="module", params=["prod", "tooling"])
def graph(request: pytest.FixtureRequest, committed_plans: dict[str, runner.Plan]) -> Graph:
    return Graph(committed_plans[request.param])


def test_every_kubernetes_resource_goes_before_its_cluster_and_pools(graph: Graph) -> None:
    providers = graph.cluster_providers()
    assert providers, "no Kubernetes provider built from a cluster"
    for provider_urn, (cluster, pools) in providers.items():
        assert pools, f"{cluster.name}: no node pools"
        provider_needs = graph.needs(provider_urn)
        # The provider itself waits for the pools: objects are applied on ready nodes and deleted
        # while the nodes (and the controllers running there) still exist.
        assert {cluster.urn, *(p.urn for p in pools)} <= provider_needs, cluster.name
        on_cluster = [r for r in _kubernetes(graph.plan.registrations) if r.provider_urn == provider_urn]
        assert any(r.type == HELM for r in on_cluster)
        for reg in on_cluster:
            needs = graph.needs(reg.urn)
            missing = [p.name for p in pools if p.urn not in needs]
            assert cluster.urn in needs and not missing, f"{reg.name} ({reg.type}) outlives {missing}"


def test_no_kubernetes_resource_uses_an_implicit_provider(graph: Graph) -> None:
    for reg in _kubernetes(graph.plan.registrations):
        assert reg.provider_urn and not reg.provider.rsplit("::", 1)[-1].startswith("default"), reg.name


def _makes_load_balancer(release: Registration) -> bool:
    """The release's Service carries Scaleway's load-balancer annotations (the reserved IP, zone,
    type): the cloud controller creates a load balancer for it."""
    service = (release.inputs.get("values") or {}).get("service") or {}
    return any(key.startswith(LB_ANNOTATION_PREFIX) for key in service.get("annotations") or {})


def test_load_balancers_come_only_from_releases_on_the_cluster_provider(graph: Graph) -> None:
    """The cloud controller creates a load balancer for a Service of type LoadBalancer; the only
    one the platform makes is Traefik's (the chart's default Service type, on the reserved IP). Its
    release is uninstalled, and the load balancer deleted, while the cluster and its pools exist."""
    providers = graph.cluster_providers()
    makers = [r for r in graph.of_type(HELM) if _makes_load_balancer(r)]
    assert [r.inputs["chart"] for r in makers] == ["traefik"]
    for release in makers:
        assert release.provider_urn in providers, release.name
        cluster, pools = providers[release.provider_urn]
        needs = graph.needs(release.urn)
        missing = [p.name for p in pools if p.urn not in needs]
        assert pools and cluster.urn in needs and not missing, f"{release.name} outlives {missing}"


def test_the_cluster_sweeps_what_its_controllers_leave(graph: Graph) -> None:
    for cluster in graph.of_type(CLUSTER):
        assert cluster.inputs.get("deleteAdditionalResources") is True, cluster.name
        assert not cluster.protect, "a protected cluster would block the teardown"


def test_protected_resources_are_exactly_the_stateful_ones(graph: Graph) -> None:
    protected = {r.type for r in graph.plan.registrations if r.protect}
    assert protected == PROTECTED[graph.plan.stack]
    for ip in graph.of_type(
        "scaleway:loadbalancers/ip:Ip", "scaleway:network/publicGatewayIp:PublicGatewayIp"
    ):
        assert ip.protect and ip.retain_on_delete, f"{ip.name}: allow-listed addresses outlive the stack"


def test_destroy_excluding_protected_removes_every_cluster_resource(graph: Graph) -> None:
    """`pulumi destroy --exclude-protected` keeps the protected resources and what they depend on:
    none of that may be a cluster, a pool or a Kubernetes object, or the cluster could not go."""
    kept: set[str] = set()
    for reg in graph.plan.registrations:
        if reg.protect:
            kept |= {reg.urn, *graph.needs(reg.urn)}
    kept_types = {graph.by_urn[u].type for u in kept if u in graph.by_urn}
    assert not kept_types & {CLUSTER, POOL, K8S_PROVIDER}, kept_types
    assert not [t for t in kept_types if t.startswith("kubernetes:")], kept_types


def test_custom_resources_go_before_the_controller_that_serves_them(graph: Graph) -> None:
    """A custom resource on a cluster depends on a Helm release or CRD bundle on that cluster, so its
    controller is still there to process finalizers when it is deleted."""
    providers = graph.cluster_providers()
    servers = {r.urn: r for r in graph.of_type(HELM, CONFIG_FILE)}
    for reg in _kubernetes(graph.plan.registrations):
        if reg.type in (HELM, CONFIG_FILE) or _group(reg) in BUILT_IN_GROUPS:
            continue
        if reg.provider_urn not in providers:
            continue  # another stack's cluster (tooling's Argo CD), whose controllers outlive this stack
        served_by = [
            u for u in graph.needs(reg.urn) if u in servers and servers[u].provider_urn == reg.provider_urn
        ]
        assert served_by, f"{reg.name} ({reg.type}) does not wait for a controller on its cluster"


def test_argocd_finalizers_only_where_the_controller_outlives_them(graph: Graph) -> None:
    providers = graph.cluster_providers()
    argocd = [r for r in graph.of_type(HELM) if r.inputs.get("chart") == "argo-cd"]
    for reg in _kubernetes(graph.plan.registrations):
        finalizers = ((reg.inputs.get("metadata") or {}).get("finalizers")) or []
        if not finalizers:
            continue
        assert finalizers == [ARGOCD_FINALIZER], f"{reg.name}: unexpected finalizers {finalizers}"
        assert reg.type == "kubernetes:argoproj.io/v1alpha1:Application", reg.name
        if reg.provider_urn in providers:
            # Tooling: Argo CD runs on this cluster and must be uninstalled after its Applications.
            releases = [a for a in argocd if a.provider_urn == reg.provider_urn]
            assert releases and all(a.urn in graph.needs(reg.urn) for a in releases), reg.name
        else:
            # A workload stack registers Applications in tooling's Argo CD, which outlives the stack;
            # they go before this cluster's namespaces, so Argo CD can still prune them.
            on_this_cluster = [
                u
                for u in graph.needs(reg.urn)
                if u in graph.by_urn and graph.by_urn[u].provider_urn in providers
            ]
            assert on_this_cluster, f"{reg.name} does not go before this cluster's resources"


def test_restore_check_and_observability_are_torn_down_with_the_cluster(
    committed_plans: dict[str, runner.Plan],
) -> None:
    graph = Graph(committed_plans["prod"])
    providers = graph.cluster_providers()
    parents = {
        r.urn
        for r in graph.plan.registrations
        if r.type in ("platform:backup:RestoreCheck", "platform:observability:Observability")
    }
    assert len(parents) == 2
    members = [r for r in _kubernetes(graph.plan.registrations) if r.parent in parents]
    assert members
    for reg in members:
        assert reg.provider_urn in providers, reg.name
    # The backup bucket stays (protected), its identity and key do not.
    bucket = graph.of_type("scaleway:object/bucket:Bucket")
    assert len(bucket) == 1 and bucket[0].protect and bucket[0].inputs.get("forceDestroy") is False

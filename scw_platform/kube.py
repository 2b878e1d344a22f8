"""Kubernetes building blocks the components share, defined once.

Every namespace the platform runs workloads in (apps, the controllers' namespaces, the restore
check, monitoring) starts from the same default deny and opens the same few paths (cluster DNS, the
API server, public HTTPS, a webhook's port, scrapes from monitoring); every private image is pulled
with the same kind of Secret. One definition keeps a fix to any of them from reaching only
some namespaces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

#: CoreDNS runs in kube-system with this label on Kapsule (and upstream): the DNS egress rule names
#: both, so a pod may query the cluster's resolver and nothing else in kube-system.
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS: Mapping[str, str] = {"k8s-app": "kube-dns"}

#: Never reachable through the "public HTTPS" rule: private (RFC 1918), carrier-grade NAT (Kapsule's
#: pod range lives there), link-local (the metadata service) and loopback.
NOT_PUBLIC = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
)

#: Argo CD deletes what an Application deployed before the Application itself only when this
#: finalizer is set (without it, deleting the Application orphans the app's objects).
ARGOCD_FINALIZER = "resources-finalizer.argocd.argoproj.io"

#: The name of the image pull Secret in every namespace that runs a platform-registry image.
PULL_SECRET = "registry-pull"
#: Scaleway's registry ignores the user name of a token login; it reads the secret key as password.
REGISTRY_USERNAME = "nologin"


#: Well-known node labels the spread is over: the node's zone (set from the cloud provider) and
#: its name (set by the kubelet). kubernetes.io/docs/reference/labels-annotations-taints/
ZONE_TOPOLOGY_KEY = "topology.kubernetes.io/zone"
HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname"


def spread_constraints(match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """``topologySpreadConstraints`` spreading the pods ``match_labels`` selects over zones, then
    over nodes, at most one pod apart (maxSkew 1) in each (Pod Topology Spread Constraints,
    kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/).

    * Zones: ``ScheduleAnyway``, a preference the scheduler scores. A hard zone rule leaves a pod
      Pending whenever one zone cannot take it (its pool at maxSize, its node type out of stock,
      the zone down) and on any node without the zone label; the soft one still places the pod
      in the emptier zone when it can. In a one-zone cluster (tooling, dev) there is one domain
      and nothing to prefer.
    * Nodes: ``DoNotSchedule``: two replicas never share a node while the cluster has another
      schedulable one (when that one is full the pod waits for the autoscaler's next node rather
      than doubling up), so one node's loss or drain never takes both.
    * ``nodeTaintsPolicy: Honor`` on both: a node whose taints the pod does not tolerate is not a
      domain, so cordoned nodes (a drain, ``node.kubernetes.io/unschedulable``), unreachable or
      not-ready ones (``node.kubernetes.io/unreachable``, ``not-ready``: NoSchedule taints the
      pods' default NoExecute tolerations do not cover) and the builders' dedicated pool do not
      count as empty domains that would hold the evicted pod back. The default, ``Ignore``, counts
      them (beta and on by default since Kubernetes 1.26).

    ``match_labels`` must select exactly the workload's own pods: the charts render the list
    verbatim (or default the selector only when it is missing), so each caller names the labels
    its chart's templates put on the pods.
    """
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "nodeTaintsPolicy": "Honor",
            "labelSelector": {"matchLabels": dict(match_labels)},
        }
        for key, when in ((ZONE_TOPOLOGY_KEY, "ScheduleAnyway"), (HOSTNAME_TOPOLOGY_KEY, "DoNotSchedule"))
    ]


def namespace_selector(namespace: str) -> dict[str, Any]:
    """Selects one namespace by the label the API server sets on every namespace (immutable, so a
    namespace cannot pose as another by relabelling itself)."""
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


def default_deny_spec() -> Any:
    """Every pod of the namespace, both directions, no rule: nothing in, nothing out. Policies are
    additive, so each allowed path is a separate policy that states why it exists. (Specs are typed
    ``Any``: plain dicts, not the SDK's nested TypedDicts.)"""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def default_deny_policy(
    resource_name: str, *, metadata: Mapping[str, Any], opts: pulumi.ResourceOptions
) -> k8s.networking.v1.NetworkPolicy:
    """The namespace's ``default-deny`` NetworkPolicy (``metadata`` names the namespace). The policy
    pack's app-namespace rule looks for exactly this spec."""
    named: Any = {**metadata, "name": "default-deny"}
    return k8s.networking.v1.NetworkPolicy(resource_name, metadata=named, spec=default_deny_spec(), opts=opts)


def dns_egress_rule() -> dict[str, Any]:
    """Egress to the cluster's DNS pods on port 53 (UDP and TCP: large answers fall back to TCP).
    Under a default deny, a pod without it cannot resolve any name, its own Services included."""
    return {
        "to": [
            {
                "namespaceSelector": namespace_selector(DNS_NAMESPACE),
                "podSelector": {"matchLabels": dict(DNS_POD_LABELS)},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def public_https_egress_rule() -> dict[str, Any]:
    """Egress to public addresses on 443. A NetworkPolicy matches addresses, not names, and the
    Scaleway endpoints the platform calls (Object Storage, Cockpit) resolve to public addresses that
    are neither published as a stable range nor fixed, so "public addresses, HTTPS only" is the
    tightest rule this API can state. Private, CGNAT (pods), link-local (metadata) and loopback
    ranges stay denied. A CNI-specific FQDN policy (Cilium's toFQDNs) could name the endpoints; the
    platform keeps to the portable API."""
    return {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC)}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }


#: Where the metrics agent runs (observability.MONITORING_NAMESPACE; a test keeps the two equal,
#: the components cannot import observability without a cycle): every platform namespace admits
#: its scrapes from there, on its metrics port only.
MONITORING_NAMESPACE = "monitoring"

#: Kapsule's API server port (``https://<cluster-id>.api.k8s.<region>.scw.cloud:6443``), also the
#: endpoint behind ``kubernetes.default.svc`` (observability's and CI's policies use the same).
KUBERNETES_API_PORT = 6443


def tcp(*ports: int) -> list[dict[str, Any]]:
    """NetworkPolicy ``ports`` entries for TCP ``ports``."""
    return [{"protocol": "TCP", "port": port} for port in ports]


def api_server_egress_rule() -> dict[str, Any]:
    """Egress to the Kubernetes API by port only. Kapsule's API server lives outside the cluster,
    carries no pod labels, and Cilium gives it an identity ``ipBlock`` rules have been reported not
    to match (observability.monitoring_policy_spec explains and cites it): a rule naming its address
    could silently cut a controller off the API, a rule without peers cannot. The same rule covers
    another cluster's public API server on 6443 (Argo CD's registered clusters)."""
    return {"ports": tcp(KUBERNETES_API_PORT)}


def webhook_ingress_rule(port: int) -> dict[str, Any]:
    """Ingress on an admission or API webhook's container port from any source. The caller is the
    API server, outside the cluster and selectable by neither pod nor namespace selector (and not
    reliably by ipBlock, see :func:`api_server_egress_rule`); the webhook's TLS client and the API
    server's own authentication are what stand behind the open port."""
    return {"ports": tcp(port)}


def from_namespace_rule(
    namespace: str, ports: list[dict[str, Any]], pods: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Ingress from the pods of one namespace (all of them, or those matching ``pods``) on ``ports``."""
    peer: dict[str, Any] = {"namespaceSelector": namespace_selector(namespace)}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return {"from": [peer], "ports": ports}


def public_egress_rule(ports: list[dict[str, Any]]) -> dict[str, Any]:
    """Egress to public addresses (every range :data:`NOT_PUBLIC` names stays denied) on ``ports``:
    :func:`public_https_egress_rule` for ports other than 443 (SSH to a Git host, a DNS-01 check)."""
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC)}}], "ports": ports}


def policy_spec(
    pods: Mapping[str, str] | None = None,
    *,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> Any:
    """An allow policy for the pods matching ``pods`` (every pod of the namespace when None): the
    policy types are those it has rules for, so an allow never adds a deny the default deny does
    not already hold."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pods)} if pods else {}}
    spec["policyTypes"] = [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules]
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return spec


def namespace_policies(
    resource_prefix: str,
    *,
    namespace: str,
    allows: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> list[k8s.networking.v1.NetworkPolicy]:
    """A namespace's fence: its ``default-deny`` and one NetworkPolicy per entry of ``allows``
    (policy name -> spec, resource ``<prefix>-netpol-<name>``). Returns all of them, for the
    namespace's releases to depend on: they start with their paths open, and on destroy they go
    while those paths still exist."""
    metadata: Any = {"namespace": namespace}
    return [
        default_deny_policy(f"{resource_prefix}-default-deny", metadata=metadata, opts=opts),
        *(
            k8s.networking.v1.NetworkPolicy(
                f"{resource_prefix}-netpol-{policy}",
                metadata={"name": policy, "namespace": namespace},
                spec=spec,
                opts=opts,
            )
            for policy, spec in allows.items()
        ),
    ]


def docker_config_json(host: str, password: str) -> str:
    """A ``.dockerconfigjson`` document logging in to one registry with a token."""
    return json.dumps({"auths": {host: {"username": REGISTRY_USERNAME, "password": password}}})


def image_pull_secret(
    resource_name: str,
    *,
    metadata: Mapping[str, Any],
    host: pulumi.Input[str],
    password: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """The pull Secret (named :data:`PULL_SECRET`) for one registry. The document carries the
    registry key, so it is a Pulumi secret whatever the caller passed."""
    document: pulumi.Output[str] = pulumi.Output.secret(
        pulumi.Output.all(host, password).apply(lambda parts: docker_config_json(parts[0], parts[1]))
    )
    named: Any = {**metadata, "name": PULL_SECRET}
    return k8s.core.v1.Secret(
        resource_name,
        metadata=named,
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": document},
        opts=opts,
    )


def admission_policy(
    resource_name: str,
    binding_resource_name: str,
    *,
    name: str,
    spec: Any,
    binding: Any,
    opts: pulumi.ResourceOptions,
) -> tuple[
    k8s.admissionregistration.v1.ValidatingAdmissionPolicy,
    k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding,
]:
    """A ValidatingAdmissionPolicy named ``name`` and its binding (same name), the binding after
    the policy: a binding to a policy that does not exist yet is refused by the API server."""
    policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
        resource_name, metadata={"name": name}, spec=spec, opts=opts
    )
    bound = k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
        binding_resource_name,
        metadata={"name": name},
        spec=binding,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[policy])),
    )
    return policy, bound

"""Helm values shared by the charts the platform installs: how a controller is replicated, sized
and locked down.

external-secrets (controller, webhook, cert controller) and cert-manager (controller, webhook,
cainjector) lay their values out the same way: one image tag pinned on every deployment, one or
two replicas each with a PodDisruptionBudget and a spread over zones and nodes in HA, and the
same resource sizes (:func:`replicated_controllers`). The sizes and the restricted security
contexts are also what the other charts' pods get (the DNS-01 webhook, the metrics agent, the
exporters, the CI runners' controller), declared once here so no chart-rendered pod is left
without a memory limit or with a weaker context than the program's own pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from scw_platform import kube

Size = Literal["controller", "helper", "small", "exporter"]

#: Requests (what the scheduler reserves) and a memory limit per kind of pod; no CPU limit, so a
#: busy controller is throttled by its neighbours' requests, never by a ceiling of its own. The
#: memory limit is what makes a leak an OOM-kill of one pod instead of node pressure for all.
#: controller: a reconciler with informer caches (cert-manager, external-secrets, Alloy's
#: operator); helper: webhooks and CA injectors; small: a run-to-completion hook
#: (startupapicheck) or a webhook serving a few calls an hour (the DNS-01 solver); exporter: an
#: HTTP exporter (the blackbox exporter, the Pushgateway).
SIZES: Mapping[Size, Mapping[str, Mapping[str, str]]] = {
    "controller": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "helper": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    "small": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    "exporter": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
}


def resources(size: Size) -> dict[str, dict[str, str]]:
    """A fresh copy of one of :data:`SIZES` (values dicts are merged and mutated by callers)."""
    return {section: dict(amounts) for section, amounts in SIZES[size].items()}


def restricted_container(*, user: int | None = None) -> dict[str, Any]:
    """A container security context that meets Pod Security ``restricted`` on its own (no pod
    context needed): no privilege escalation, every capability dropped, a read-only root
    filesystem, non-root, the runtime's default seccomp profile
    (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
    ``user``: the numeric user, for images whose own USER is root or a name (runAsNonRoot then
    refuses to start them)."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if user is not None:
        context.update(runAsUser=user, runAsGroup=user)
    return context


def restricted_pod(*, user: int | None = None) -> dict[str, Any]:
    """The pod-level half of ``restricted``: non-root and the default seccomp profile."""
    context: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if user is not None:
        context.update(runAsUser=user, runAsGroup=user)
    return context


def replicated_controllers(
    image_tag: str, *, ha: bool, pods: Mapping[str, str], helpers: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """The main controller's image, replicas, PodDisruptionBudget, spread and resources at the top
    level, and one entry per helper deployment (``helpers``: the chart's key for it -> the labels
    its pods carry) with the same image, replicas, PodDisruptionBudget and spread, sized smaller.
    ``pods``: the labels the main controller's pods carry. Both charts render
    ``topologySpreadConstraints`` verbatim, so the selectors are the callers' (from each chart's
    templates).

    With ``ha``: two replicas of each, a PodDisruptionBudget of minAvailable 1 (a drain evicts one
    replica and waits for it to be back before the other) and :func:`kube.spread_constraints`.
    Without: one replica, no budget (it would block every drain) and no spread (nothing to spread).
    """
    replicas = 2 if ha else 1
    pdb = {"enabled": ha, "minAvailable": 1}
    image = {"tag": image_tag}

    def spread(labels: Mapping[str, str]) -> dict[str, Any]:
        return {"topologySpreadConstraints": kube.spread_constraints(labels)} if ha else {}

    values: dict[str, Any] = {
        "image": image,
        "replicaCount": replicas,
        "podDisruptionBudget": pdb,
        **spread(pods),
        "resources": resources("controller"),
    }
    for helper, labels in helpers.items():
        values[helper] = {
            "replicaCount": replicas,
            "podDisruptionBudget": pdb,
            **spread(labels),
            "image": image,
            "resources": resources("helper"),
        }
    return values

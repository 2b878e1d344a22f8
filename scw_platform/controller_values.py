"""Helm values shared by the operator charts that run a controller beside helper deployments.

external-secrets (controller, webhook, cert controller) and cert-manager (controller, webhook,
cainjector) lay their values out the same way: one image tag pinned on every deployment, one or
two replicas each with a PodDisruptionBudget and a spread over zones and nodes in HA, and the
same resource sizes. Declared once here so the two charts cannot drift apart in how HA or pinning
is spelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scw_platform import kube


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
    small = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

    def spread(labels: Mapping[str, str]) -> dict[str, Any]:
        return {"topologySpreadConstraints": kube.spread_constraints(labels)} if ha else {}

    values: dict[str, Any] = {
        "image": image,
        "replicaCount": replicas,
        "podDisruptionBudget": pdb,
        **spread(pods),
        "resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    for helper, labels in helpers.items():
        values[helper] = {
            "replicaCount": replicas,
            "podDisruptionBudget": pdb,
            **spread(labels),
            "image": image,
            "resources": small,
        }
    return values

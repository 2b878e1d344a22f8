"""Helm values shared by the operator charts that run a controller beside helper deployments.

external-secrets (controller, webhook, cert controller) and cert-manager (controller, webhook,
cainjector) lay their values out the same way: one image tag pinned on every deployment, one or
two replicas each with a PodDisruptionBudget in HA, and the same resource sizes. Declared once here
so the two charts cannot drift apart in how HA or pinning is spelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def replicated_controllers(image_tag: str, *, ha: bool, helpers: Sequence[str]) -> dict[str, Any]:
    """The main controller's image, replicas, PodDisruptionBudget and resources at the top level, and
    one entry per helper deployment (``helpers``: the chart's keys for them) with the same image,
    replicas and PodDisruptionBudget, sized smaller. Two replicas of each with ``ha``."""
    replicas = 2 if ha else 1
    pdb = {"enabled": ha, "minAvailable": 1}
    image = {"tag": image_tag}
    small = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    values: dict[str, Any] = {
        "image": image,
        "replicaCount": replicas,
        "podDisruptionBudget": pdb,
        "resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    for helper in helpers:
        values[helper] = {
            "replicaCount": replicas,
            "podDisruptionBudget": pdb,
            "image": image,
            "resources": small,
        }
    return values

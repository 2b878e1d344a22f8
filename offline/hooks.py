"""What the rendered Argo CD hooks (the parity gate, the migration) share: the Job around a pod
that never talks to the API server, runs as an unprivileged UID under RuntimeDefault seccomp, and
whose containers hold no privilege at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def restricted_container() -> dict[str, Any]:
    """A container's securityContext at Pod Security restricted, with a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def hook_job(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    deadline_seconds: int,
    ttl_seconds: int,
    uid: int,
    pod: Mapping[str, Any],
) -> dict[str, Any]:
    """A hook Job that fails at its first failure (``backoffLimit: 0``: the sync fails with it);
    ``pod`` adds the containers (and volumes) to the shared pod spec."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(annotations),
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": ttl_seconds,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": uid,
                        "runAsGroup": uid,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    **pod,
                },
            },
        },
    }

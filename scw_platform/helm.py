"""The one way the library installs a Helm chart: pinned, atomic, cleaned up on failure.

Every add-on (Traefik, cert-manager and its DNS-01 webhook, External Secrets, Argo CD and its image
updater, the metrics agent, the blackbox exporter, kube-prometheus-stack) is a :class:`Chart` pinned
to one version in one repository, installed by :func:`release`. ``atomic`` makes a failed install
or upgrade roll back instead of leaving a half-applied release that the next ``pulumi up`` would
have to untangle; ``cleanup_on_fail`` removes the resources a failed upgrade created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

#: An exact chart version (an optional v, three numbers, an optional pre-release): never a range.
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Chart:
    """A chart at one version, from one repository (never a floating version)."""

    name: str
    version: str
    repo: str

    def __post_init__(self) -> None:
        if not _EXACT_VERSION.fullmatch(self.version):
            raise ValueError(f"chart {self.name}: {self.version!r} is not an exact version such as 1.2.3")


def release(
    resource_name: str,
    *,
    chart: Chart,
    release_name: str,
    namespace: pulumi.Input[str],
    values: pulumi.Input[Mapping[str, Any]],
    opts: pulumi.ResourceOptions,
    timeout: int | None = None,
    skip_crds: bool = False,
) -> k8s.helm.v3.Release:
    """Install ``chart`` as ``release_name`` in ``namespace``. ``timeout`` (seconds; Helm's own
    default when None) must cover the chart's slowest rollout: the wait is part of ``atomic``.

    ``skip_crds``: leave out what the chart ships in its ``crds/`` directory (Helm's
    ``--skip-crds``), for a chart whose CRDs serve a feature the values turn off. It does not
    touch CRDs a chart renders from templates, and Helm never deletes ``crds/`` content, so a
    cluster that had them keeps them. Left unset (not False) otherwise, so the releases that do
    not use it show no new input."""
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=chart.name,
        version=chart.version,
        repository_opts={"repo": chart.repo},
        namespace=namespace,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        timeout=timeout,
        skip_crds=True if skip_crds else None,
        opts=opts,
    )

"""Which of the platform's alert rule groups (ops/alerts/platform-rules.yaml) a stack loads, and
where each is evaluated. The groups are this repository's; the library takes them already split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from program.paths import ALERT_RULES
from scw_platform.observability import load_rule_groups, probe_targets

#: Evaluated on Cockpit's Scaleway Metrics source (the managed database's own metrics), only where
#: the stack has the database.
DATABASE_GROUP = "platform-database"
#: The restore check's alerts, only where the stack runs it.
BACKUPS_GROUP = "platform-backups"
#: The always-firing Watchdog, only where the alert manager routes it to the heartbeat receiver
#: alone (anywhere else it would reach every contact point).
WATCHDOG_GROUP = "platform-watchdog"


def split_rule_groups(
    groups: Sequence[Mapping[str, Any]], *, restore_check: bool, database: bool, heartbeat: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(groups evaluated on the cluster's own metrics, groups for Cockpit's Scaleway metrics)."""
    cluster: list[dict[str, Any]] = []
    scaleway_metrics: list[dict[str, Any]] = []
    only_with = {BACKUPS_GROUP: restore_check, WATCHDOG_GROUP: heartbeat}
    for group in groups:
        if group["name"] == DATABASE_GROUP:
            if database:
                scaleway_metrics.append(dict(group))
        elif only_with.get(group["name"], True):
            cluster.append(dict(group))
    return cluster, scaleway_metrics


def stack_rule_groups(
    *, restore_check: bool, database: bool, heartbeat: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The platform's rule file, split for a stack with or without the restore check, database
    and heartbeat."""
    return split_rule_groups(
        load_rule_groups(ALERT_RULES), restore_check=restore_check, database=database, heartbeat=heartbeat
    )


#: The generated group: one absence rule per URL the stack's blackbox exporter probes.
PROBE_TARGETS_GROUP = "platform-probe-targets"


def probe_absence_group(hostnames: Sequence[str]) -> dict[str, Any]:
    """``absent()`` per probed URL: a probe that stops reporting (the exporter gone, a target
    dropped from its config) would otherwise leave AppEndpointDown silent for that hostname. The
    equality matcher becomes the alert's ``instance`` label, so each names its URL."""
    return {
        "name": PROBE_TARGETS_GROUP,
        "interval": "1m",
        "rules": [
            {
                "alert": "ProbeTargetAbsent",
                "expr": f'absent(probe_success{{instance="{url}"}})',
                "for": "10m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": f"No probe results for {url} for 10 minutes",
                    "description": (
                        f"The blackbox exporter has reported nothing for {url} for 10 minutes: "
                        "its AppEndpointDown alert cannot fire."
                    ),
                    "runbook": "docs/runbooks/alerts.md#probetargetabsent",
                },
            }
            for url in probe_targets(hostnames)
        ],
    }

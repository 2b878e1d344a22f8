"""Which of the platform's alert rule groups (ops/alerts/platform-rules.yaml) a stack loads, and
where each is evaluated. The groups are this repository's; the library takes them already split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from program.paths import ALERT_RULES
from scw_platform.observability import load_rule_groups

#: Evaluated on Cockpit's Scaleway Metrics source (the managed database's own metrics), only where
#: the stack has the database.
DATABASE_GROUP = "platform-database"
#: The restore check's alerts, only where the stack runs it.
BACKUPS_GROUP = "platform-backups"


def split_rule_groups(
    groups: Sequence[Mapping[str, Any]], *, restore_check: bool, database: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(groups evaluated on the cluster's own metrics, groups for Cockpit's Scaleway metrics)."""
    cluster: list[dict[str, Any]] = []
    scaleway_metrics: list[dict[str, Any]] = []
    for group in groups:
        if group["name"] == DATABASE_GROUP:
            if database:
                scaleway_metrics.append(dict(group))
        elif group["name"] == BACKUPS_GROUP:
            if restore_check:
                cluster.append(dict(group))
        else:
            cluster.append(dict(group))
    return cluster, scaleway_metrics


def stack_rule_groups(
    *, restore_check: bool, database: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The platform's rule file, split for a stack with or without the restore check and database."""
    return split_rule_groups(load_rule_groups(ALERT_RULES), restore_check=restore_check, database=database)

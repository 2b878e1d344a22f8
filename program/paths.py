"""Where this repository keeps the data the program hands to the library (the library reads no
repository path itself), and where the offline tools find the program's files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The platform's alert rules (Prometheus rule groups), evaluated in Cockpit or Prometheus.
ALERT_RULES = ROOT / "ops" / "alerts" / "platform-rules.yaml"
#: The restore check the CronJob runs (mounted from a ConfigMap into a pinned image).
RESTORE_CHECK_SCRIPT = ROOT / "ops" / "restore_check" / "restore_check.py"
#: The list of environments every stack reads.
ENVIRONMENTS = ROOT / "environments.yaml"  # program.environments.FILE_NAME

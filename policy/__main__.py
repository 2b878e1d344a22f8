"""Pulumi CrossGuard entry point: ``pulumi preview --policy-pack policy``.

Pulumi runs this file with the pack's folder first on ``sys.path``; the repository root is added
so the rules import as ``policy.rules``, exactly as the offline validation imports them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy import crossguard

PolicyPack(
    name="platform",
    policies=crossguard.policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
)

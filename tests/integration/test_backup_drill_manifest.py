"""The drill's rendered CronJob passes kubernetes-validate --strict (the committed stacks do not
enable it, so validate-all never sees it)."""

from __future__ import annotations

import kubernetes_validate

from offline import artifacts, runner

OPS_IMAGE = "rg.fr-par.scw.cloud/acme-platform/platform-ops@sha256:" + "a" * 64


def test_the_drill_manifests_pass_kubernetes_validate_strict() -> None:
    config = runner.read_stack_config("prod")
    config["platform:operations"] = {**config["platform:operations"], "backupDrill": {"image": OPS_IMAGE}}
    plan = runner.run("prod", config=config)
    objects = [obj for _, (reg, obj) in artifacts.manifest_files(plan).items() if "backup-drill" in reg.name]
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["CronJob", "Namespace", "NetworkPolicy", "NetworkPolicy", "Secret"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.34", strict=True)

"""The drill's rendered manifests pass kubernetes-validate --strict and checkov (the committed stacks
do not enable it, so validate-all never sees them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from offline import artifacts, runner, validate

#: Tag and digest, as production requires (a tag alone is a config error there): checkov's digest
#: rule (CKV_K8S_43) then holds without a skip.
IMAGE = "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-3@sha256:" + "c" * 64


@pytest.fixture(scope="module")
def drill_manifests() -> dict[str, dict[str, Any]]:
    config = runner.read_stack_config("prod")
    config["platform:operations"] = {**config["platform:operations"], "backupDrill": {"image": IMAGE}}
    plan = runner.run("prod", config=config)
    return {
        path: obj for path, (reg, obj) in artifacts.manifest_files(plan).items() if "backup-drill" in reg.name
    }


def test_the_drill_manifests_pass_kubernetes_validate_strict(
    drill_manifests: dict[str, dict[str, Any]],
) -> None:
    kinds = sorted(obj["kind"] for obj in drill_manifests.values())
    # The Secrets: the drill's Scaleway key and its image pull key.
    assert kinds == [
        "ConfigMap",
        "CronJob",
        "Namespace",
        "NetworkPolicy",
        "NetworkPolicy",
        "Secret",
        "Secret",
    ]
    for obj in drill_manifests.values():
        kubernetes_validate.validate(obj, "1.34", strict=True)


def test_the_drill_manifests_pass_checkov_with_reasons(
    drill_manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    if not validate.checkov_available():
        if os.environ.get("CI"):
            pytest.fail(f"checkov not installed at {validate.CHECKOV}")
        pytest.skip(f"checkov not installed at {validate.CHECKOV} (`make checkov-setup`)")
    for path, obj in drill_manifests.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(obj))
    result = validate.check_checkov(tmp_path, len(drill_manifests), validate.CHECKOV)
    assert result.failures == [] and result.objects == len(drill_manifests)
    skipped = sorted(note.split(" skipped inline")[0].rsplit(" ", 1)[-1] for note in result.notes)
    assert skipped == ["CKV_K8S_35", "CKV_K8S_40"]

"""The README's recipe for a new environment, performed exactly as written, in a copy of the
repository: one entry in environments.yaml, one stack file. Then plan it, plan tooling (which now
registers it), validate the plan and check the invariants every committed stack holds."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import environments
from offline import artifacts, runner, validate
from tests import test_invariants as invariants

STAGING_PROJECT = "0b7e4c2a-5d1f-4e8a-9c3b-7a6d2e1f0c94"


def _copy_repository(root: Path) -> None:
    for path in [runner.ROOT / "Pulumi.yaml", runner.ROOT / environments.FILE_NAME]:
        shutil.copy(path, root / path.name)
    for path in runner.ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(path, root / path.name)


def _add_staging(root: Path) -> None:
    """The recipe (README, "Adding an environment"), step by step."""
    # 1. One entry in environments.yaml: its own subnet, project, stack and hostnames.
    listing = yaml.safe_load((root / environments.FILE_NAME).read_text())
    listing["environments"]["staging"] = {
        "role": "production",
        "subnet": "10.40.0.0/20",
        "projectId": STAGING_PROJECT,
        "stack": "organization/platform/staging",
        "managedBy": "tooling",
        "dns": {"zone": "example.com", "hostnames": ["*.staging.example.com"]},
    }
    (root / environments.FILE_NAME).write_text(yaml.safe_dump(listing, sort_keys=False))
    # 2. One stack file, here started from prod's: its environment, project and hostnames.
    document = yaml.safe_load((root / "Pulumi.prod.yaml").read_text())
    config: dict[str, Any] = copy.deepcopy(document["config"])
    config["platform:environment"] = "staging"
    config["scaleway:projectId"] = STAGING_PROJECT
    for app in config["platform:apps"]:
        app["hostname"] = app["hostname"].replace(".example.com", ".staging.example.com")
    config["platform:ingress"]["redirects"] = {}
    (root / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    _copy_repository(root)
    _add_staging(root)
    return root


@pytest.fixture(scope="module")
def staging(repository: Path) -> runner.Plan:
    return runner.run("staging", root=repository)


def test_the_recipe_touches_one_entry_and_one_file(repository: Path) -> None:
    changed = sorted(
        p.name
        for p in repository.iterdir()
        if not (runner.ROOT / p.name).exists() or (runner.ROOT / p.name).read_bytes() != p.read_bytes()
    )
    assert changed == sorted([environments.FILE_NAME, "Pulumi.staging.yaml"])


def test_staging_plans_in_its_own_network_and_project(staging: runner.Plan) -> None:
    [network] = staging.by_type("scaleway:network/privateNetwork:PrivateNetwork")
    assert network.inputs["ipv4Subnet"] == {"subnet": "10.40.0.0/20"}
    policies = staging.by_type("scaleway:iam/policy:Policy")
    assert policies and all(
        rule["projectIds"] == [STAGING_PROJECT] for p in policies for rule in p.inputs["rules"]
    )
    assert staging.exports["argocdRegistration"].secret
    assert staging.exports["apps"].value == ["website", "newsletter"]


def test_tooling_registers_staging_next_to_prod(repository: Path) -> None:
    tooling = runner.run("tooling", root=repository)
    assert tooling.exports["registeredEnvironments"].value == ["prod", "staging"]
    names = {r.name for r in tooling.registrations}
    assert {"staging-cluster-secret", "staging-gitops-project", "argocd-root-staging"} <= names
    assert {"staging-gitops-app-website", "staging-gitops-app-newsletter"} <= names


def test_staging_passes_the_offline_validation(staging: runner.Plan, tmp_path: Path) -> None:
    written = artifacts.write(staging, tmp_path)
    results, _ = validate.validate_artifacts(written.root, role="production", kubernetes="1.34")
    assert [(r.name, f.file, f.message) for r in results for f in r.failures] == []


def test_staging_holds_the_stack_invariants(staging: runner.Plan) -> None:
    regs = staging.registrations
    assert invariants.public_databases(regs) == []
    assert invariants.clusters_off_the_private_network(regs) == []
    assert invariants.kubernetes_without_explicit_provider(regs) == []
    assert invariants.plaintext_secret_inputs(regs) == []
    assert invariants.plaintext_secret_exports(staging.exports) == []


def test_reusing_prods_project_or_hostnames_is_refused(repository: Path) -> None:
    listing = yaml.safe_load((repository / environments.FILE_NAME).read_text())
    entry = listing["environments"]["staging"]
    entry["projectId"] = listing["environments"]["prod"]["projectId"]
    entry["dns"]["hostnames"] = ["www.example.com"]
    with pytest.raises(environments.EnvironmentsError) as caught:
        environments.parse(listing)
    message = str(caught.value)
    assert "staging.projectId:" in message and "one Scaleway project per environment" in message
    assert "staging.dns.hostnames[0]: www.example.com overlaps prod's *.example.com" in message

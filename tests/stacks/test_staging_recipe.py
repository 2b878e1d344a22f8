"""The recipe for a new environment (docs/environments.md), performed as written, in a copy of the
repository: one entry in environments.yaml, one stack file. Then plan it, plan tooling (which now
registers it), validate the plan and check the invariants every committed stack holds."""

from __future__ import annotations

import copy
import ipaddress
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import artifacts, runner, validate
from program import environments
from tests.stacks import test_invariants as invariants

#: The environment the recipe adds: "staging", unless the repository already has one.
_COMMITTED = environments.load_file().entries
NAME = next(n for n in ("staging", "staging2", "staging3") if n not in _COMMITTED)
#: Its own Scaleway project (a UUID no committed environment uses).
STAGING_PROJECT = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{NAME}.recipe.platform.invalid"))
_TAKEN = [ipaddress.IPv4Network(e.subnet) for e in _COMMITTED.values()]
SUBNET = str(
    next(
        net
        for net in ipaddress.IPv4Network("10.0.0.0/8").subnets(new_prefix=20)
        if not any(net.overlaps(t) for t in _TAKEN)
    )
)


def _copy_repository(root: Path) -> None:
    for path in [runner.ROOT / "Pulumi.yaml", runner.ROOT / environments.FILE_NAME]:
        shutil.copy(path, root / path.name)
    for path in runner.ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(path, root / path.name)


def _add_staging(root: Path) -> None:
    """The recipe (docs/environments.md, "Adding an environment"), step by step."""
    # 1. One entry in environments.yaml: its own subnet, project, stack and hostnames.
    listing = yaml.safe_load((root / environments.FILE_NAME).read_text())
    listing["environments"][NAME] = {
        "role": "production",
        "subnet": SUBNET,
        "projectId": STAGING_PROJECT,
        "stack": f"organization/platform/{NAME}",
        "managedBy": "tooling",
        "dns": {"zone": "example.com", "hostnames": [f"*.{NAME}.example.com"]},
    }
    (root / environments.FILE_NAME).write_text(yaml.safe_dump(listing, sort_keys=False))
    # 2. One stack file, here started from prod's: its environment, project and hostnames.
    document = yaml.safe_load((root / "Pulumi.prod.yaml").read_text())
    config: dict[str, Any] = copy.deepcopy(document["config"])
    config["platform:environment"] = NAME
    config["scaleway:projectId"] = STAGING_PROJECT
    for app in config["platform:apps"]:
        app["hostname"] = app["hostname"].replace(".example.com", f".{NAME}.example.com")
    config["platform:ingress"]["redirects"] = {}
    (root / f"Pulumi.{NAME}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    _copy_repository(root)
    _add_staging(root)
    return root


@pytest.fixture(scope="module")
def staging(repository: Path) -> runner.Plan:
    return runner.run(NAME, root=repository)


def test_the_recipe_touches_one_entry_and_one_file(repository: Path) -> None:
    changed = sorted(
        p.name
        for p in repository.iterdir()
        if not (runner.ROOT / p.name).exists() or (runner.ROOT / p.name).read_bytes() != p.read_bytes()
    )
    assert changed == sorted([environments.FILE_NAME, f"Pulumi.{NAME}.yaml"])


def test_staging_plans_in_its_own_network_and_project(staging: runner.Plan) -> None:
    [network] = staging.by_type("scaleway:network/privateNetwork:PrivateNetwork")
    assert network.inputs["ipv4Subnet"] == {"subnet": SUBNET}
    policies = {p.name: p for p in staging.by_type("scaleway:iam/policy:Policy")}
    # Its own registry pull identity reads the registry where it lives, tooling's project, and
    # nothing else there: the one grant outside staging's project (scw_platform/registry.py).
    pull = policies.pop("staging-registry-pull-policy")
    tooling_project = runner.read_stack_config("tooling")["scaleway:projectId"]
    assert pull.inputs["rules"] == [
        {"permissionSetNames": ["ContainerRegistryReadOnly"], "projectIds": [tooling_project]}
    ]
    assert policies and all(
        rule["projectIds"] == [STAGING_PROJECT] for p in policies.values() for rule in p.inputs["rules"]
    )
    assert staging.exports["argocdRegistration"].secret
    assert staging.exports["apps"].value == ["website", "newsletter"]


def test_tooling_registers_staging_next_to_prod(repository: Path) -> None:
    tooling = runner.run("tooling", root=repository)
    assert tooling.exports["registeredEnvironments"].value == sorted(
        [*environments.load_file().registered_by("tooling"), NAME]
    )
    names = {r.name for r in tooling.registrations}
    assert {f"{NAME}-cluster-secret", f"{NAME}-gitops-project", f"argocd-root-{NAME}"} <= names
    assert {f"{NAME}-gitops-app-website", f"{NAME}-gitops-app-newsletter"} <= names


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
    entry = listing["environments"][NAME]
    entry["projectId"] = listing["environments"]["prod"]["projectId"]
    entry["dns"]["hostnames"] = ["www.example.com"]
    with pytest.raises(environments.EnvironmentsError) as caught:
        environments.parse(listing)
    message = str(caught.value)
    assert f"{NAME}.projectId:" in message and "one Scaleway project per environment" in message
    assert f"{NAME}.dns.hostnames[0]: www.example.com overlaps prod's *.example.com" in message

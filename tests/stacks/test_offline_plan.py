"""The offline plan as a user runs it: ``python -m offline.plan <stack>`` in a fresh process."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from offline import runner
from offline.mocks import SECRET_MARKER
from program import environments

ROOT = runner.ROOT
#: The first line of every plan: what it is, so nobody takes it for a preview of the real account.
HEADER = re.compile(
    r"Offline plan of stack (?P<stack>[a-z0-9-]+)(?P<bootstrap> \(bootstrap: [^)]*\))?: "
    r"the real program under mocked providers\. No cloud, no cluster, no Pulumi CLI; "
    r"values marked \(mocked\) are made up by the mocks\."
)


def plan(stack: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offline.plan", stack],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def prod() -> subprocess.CompletedProcess[str]:
    return plan("prod")


def test_prod_plan_succeeds(prod: subprocess.CompletedProcess[str]) -> None:
    assert prod.returncode == 0, prod.stderr
    assert "Traceback" not in prod.stderr


def _tree(stdout: str, stack: str) -> list[str]:
    """The tree's lines: from the ``stack`` root line to the blank line before the counts."""
    lines = stdout.split("\nResources by type:\n", 1)[0].splitlines()
    return lines[lines.index(f"stack platform/{stack}") :]


def test_prod_plan_says_it_is_offline_and_mocked(prod: subprocess.CompletedProcess[str]) -> None:
    first = prod.stdout.splitlines()[0]
    header = HEADER.fullmatch(first)
    assert header, first
    assert header["stack"] == "prod"
    assert header["bootstrap"] is None


def test_prod_plan_prints_the_tree(prod: subprocess.CompletedProcess[str]) -> None:
    lines = prod.stdout.splitlines()
    assert HEADER.fullmatch(lines[0]), lines[0]
    # Prod has nothing to skip: no warning line between the header and the tree.
    assert lines[1] == "stack platform/prod"
    assert "├─ prod (platform:network:Network)" in prod.stdout
    assert re.search(r"│  [├└]─ prod-pn \(scaleway:network/privateNetwork:PrivateNetwork\)", prod.stdout)
    assert re.search(
        r"prod-postgres-instance \(scaleway:databases/instance:Instance\) \[protect\]", prod.stdout
    )


def test_prod_plan_counts_match_the_tree(prod: subprocess.CompletedProcess[str]) -> None:
    head, rest = prod.stdout.split("\nResources by type:\n", 1)
    counts = rest.split("\nExports:\n", 1)[0].splitlines()
    total = re.fullmatch(r"\s*(\d+)  resources in total", counts[-1])
    assert total, counts[-1]
    per_type = [int(line.split()[0]) for line in counts[:-1]]
    assert sum(per_type) == int(total.group(1))
    tree = _tree(prod.stdout, "prod")
    # Above the tree only the header line (no warning for prod); one tree line per resource.
    assert len(head.splitlines()) == len(tree) + 1
    assert len(tree) - 1 == int(total.group(1))
    assert any(line.split()[1] == "scaleway:databases/instance:Instance" for line in counts[:-1])


def test_prod_plan_masks_secrets(prod: subprocess.CompletedProcess[str]) -> None:
    exports = prod.stdout.split("\nExports:\n", 1)[1]
    # The registration carries argocd-manager's token: shown as secret, never its value.
    assert re.search(r"^argocdRegistration = \[secret\]$", exports, re.MULTILINE)
    # No stack exports a kubeconfig any more (DESIGN.md §5).
    assert "kubeconfig" not in exports.lower()
    # A made-up address, and marked as one.
    assert re.search(r"^databaseHost = 10\.20\.\d+\.\d+  \(mocked\)$", exports, re.MULTILINE)
    assert SECRET_MARKER not in prod.stdout
    assert SECRET_MARKER not in prod.stderr


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program, the files it reads (stack files, environments.yaml, its data) in a scratch
    directory, so a broken stack file never lands in the repository (where every other test would
    pick it up)."""
    root = tmp_path_factory.mktemp("repo")
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in ("tests", "build", "__pycache__"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, root / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(entry, root / entry.name)
    broken = runner.read_stack_config("dev")
    broken["platform:clustr"] = broken.pop("platform:cluster")
    # An address plan as stack files held it before environments.yaml, with dev overlapping prod.
    subnets = {name: str(net) for name, net in environments.load_file().subnets().items()}
    broken["platform:addressPlan"] = {**subnets, "dev": "10.20.4.0/24"}
    broken["scaleway:projectId"] = "my-project"
    (root / "Pulumi.broken.yaml").write_text(yaml.safe_dump({"config": broken}))
    return root


def test_bad_stack_file_exits_2_with_every_problem_and_no_traceback(repo_copy: Path) -> None:
    result = plan("broken", cwd=repo_copy)
    # Exit 2 with the config error's own text also proves the scratch copy imports and runs.
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # not a single resource line
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stack 'broken': 6 configuration problem(s), nothing was created:\n")
    for path in (
        "platform:clustr: unknown key",
        # dev's front door and secrets operator run in the cluster the typo removed.
        "platform:secrets: requires platform:cluster",
        "platform:ingress: requires platform:cluster",
        # A copied stack file that still names dev's environment: dev is another stack.
        "platform:environment: 'dev' is stack organization/platform/dev",
        "platform:addressPlan: moved to environments.yaml: <environment>.subnet",
        "scaleway:projectId: must be a project UUID",
    ):
        assert f"  - {path}" in result.stderr, path


def test_unknown_stack_exits_2_naming_the_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    from offline import plan as offline_plan

    assert offline_plan.main(["no-such-stack"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no stack file Pulumi.no-such-stack.yaml (stacks here: " in captured.err
    assert "prod" in captured.err


def test_tooling_plan_warns_about_nothing_when_prod_is_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    from offline import plan as offline_plan

    assert offline_plan.main(["tooling"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = HEADER.fullmatch(lines[0])
    assert header and header["stack"] == "tooling" and header["bootstrap"] is None, lines[0]
    assert lines[1] == "stack platform/tooling"
    assert not any(line.startswith("warning:") for line in lines)
    tree = _tree(out, "tooling")
    assert any(re.search(r"[├└]─ prod-cluster \(platform:gitops:RegisteredCluster\)$", line) for line in tree)


def test_tooling_bootstrap_plan_says_prod_is_pending_and_what_to_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On an empty account tooling runs before prod: prod is skipped with a warning that names
    prod's stack and the next commands, and nothing of prod's is declared."""
    from offline import plan as offline_plan

    assert offline_plan.main(["tooling", "--bootstrap"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = HEADER.fullmatch(lines[0])
    assert header and header["stack"] == "tooling" and header["bootstrap"], lines[0]
    assert "empty account" in header["bootstrap"]
    warnings = [line for line in lines if line.startswith("warning: ")]
    managed = environments.load_file().registered_by("tooling")
    assert len(warnings) == len(managed)  # one per environment tooling manages
    assert (
        "warning: environment 'prod' is not registered with Argo CD: stack 'organization/platform/prod' "
        "does not exist yet. Run `pulumi up --stack organization/platform/prod`, then `pulumi up` on "
        "this stack again."
    ) in warnings
    # The warnings come before the tree, right under the header.
    assert lines[1 : 1 + len(warnings)] == warnings
    assert lines[1 + len(warnings)] == "stack platform/tooling"
    tree = "\n".join(_tree(captured.out, "tooling"))
    for env in ("dev", "prod"):
        for name in (f"{env}-cluster", f"{env}-gitops", f"argocd-root-{env}", f"organization/platform/{env}"):
            assert f"─ {name} (" not in tree, name
    exports = captured.out.split("\nExports:\n", 1)[1].splitlines()
    assert "registeredEnvironments = []" in exports
    (pending,) = [line for line in exports if line.startswith("pendingEnvironments = ")]
    assert pending.startswith("pendingEnvironments = {'dev': ") and "'prod': " in pending, pending
    assert "Traceback" not in captured.err

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

ROOT = runner.ROOT


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


def test_prod_plan_prints_the_tree(prod: subprocess.CompletedProcess[str]) -> None:
    lines = prod.stdout.splitlines()
    assert lines[0] == "stack platform/prod"
    assert "├─ prod (platform:network:Network)" in prod.stdout
    assert re.search(r"│  [├└]─ prod-pn \(scaleway:network/privateNetwork:PrivateNetwork\)", prod.stdout)
    assert re.search(
        r"prod-postgres-instance \(scaleway:databases/instance:Instance\) \[protect\]", prod.stdout
    )


def test_prod_plan_counts_match_the_tree(prod: subprocess.CompletedProcess[str]) -> None:
    tree, rest = prod.stdout.split("\nResources by type:\n", 1)
    counts = rest.split("\nExports:\n", 1)[0].splitlines()
    total = re.fullmatch(r"\s*(\d+)  resources in total", counts[-1])
    assert total, counts[-1]
    per_type = [int(line.split()[0]) for line in counts[:-1]]
    assert sum(per_type) == int(total.group(1))
    assert len(tree.splitlines()) - 1 == int(total.group(1))  # one tree line per resource
    assert any(line.split()[1] == "scaleway:databases/instance:Instance" for line in counts[:-1])


def test_prod_plan_masks_secrets(prod: subprocess.CompletedProcess[str]) -> None:
    exports = prod.stdout.split("\nExports:\n", 1)[1]
    assert "kubeconfig = [secret]" in exports
    assert re.search(r"^databaseHost = 10\.20\.\d+\.\d+$", exports, re.MULTILINE)
    assert SECRET_MARKER not in prod.stdout
    assert SECRET_MARKER not in prod.stderr


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program and stack files in a scratch directory, so a broken stack file never lands in the
    repository (where every other test would pick it up)."""
    root = tmp_path_factory.mktemp("repo")
    for package in ROOT.iterdir():
        if package.is_dir() and (package / "__init__.py").exists() and package.name != "tests":
            shutil.copytree(package, root / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    for stack_file in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, root / stack_file.name)
    broken = runner.read_stack_config("dev")
    broken["platform:clustr"] = broken.pop("platform:cluster")
    broken["platform:addressPlan"]["dev"] = "10.20.4.0/24"
    broken["scaleway:projectId"] = "my-project"
    (root / "Pulumi.broken.yaml").write_text(yaml.safe_dump({"config": broken}))
    return root


def test_bad_stack_file_exits_2_with_every_problem_and_no_traceback(repo_copy: Path) -> None:
    result = plan("broken", cwd=repo_copy)
    # Exit 2 with the config error's own text also proves the scratch copy imports and runs.
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # not a single resource line
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stack 'broken': 3 configuration problem(s), nothing was created:\n")
    for path in ("platform:clustr: unknown key", "platform:addressPlan.prod:", "scaleway:projectId:"):
        assert f"  - {path}" in result.stderr, path


def test_unknown_stack_exits_2_naming_the_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    from offline import plan as offline_plan

    assert offline_plan.main(["staging"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no stack file Pulumi.staging.yaml (stacks here: " in captured.err
    assert "prod" in captured.err

"""environments.yaml: the rules between environments, checked by every stack's plan, and files
that are not even YAML (named with line and column, exit 2, no traceback)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from offline import plan as plan_cli
from offline import runner
from program import environments
from program.environments import EnvironmentsError

COMMITTED = yaml.safe_load(environments.DEFAULT_PATH.read_text())


def _problems(change: Callable[[dict[str, Any]], None]) -> str:
    document = copy.deepcopy(COMMITTED)
    change(document["environments"])
    with pytest.raises(EnvironmentsError) as caught:
        environments.parse(document)
    return str(caught.value)


def test_the_committed_list_parses_and_names_every_stack_file() -> None:
    listing = environments.load_file()
    assert sorted(listing.entries) == runner.stack_names()
    for name, entry in listing.entries.items():
        assert entry.stack.rsplit("/", 1)[-1] == name
        assert runner.read_stack_config(name)["scaleway:projectId"] == entry.project_id


def _set(env: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda entries: entries[env].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _set("prod", "role", "staging"),
            "prod.role: Input should be 'tooling', 'production' or 'development'",
        ),
        (_set("prod", "subnet", "10.10.4.0/24"), "prod.subnet: 10.10.4.0/24 overlaps"),
        (_set("dev", "subnet", "8.8.8.0/24"), "dev.subnet: must be a private (RFC 1918) range"),
        (_set("dev", "subnet", "10.30.0.1/20"), "dev.subnet: must be an IPv4 network in CIDR notation"),
        (_set("dev", "subnet", "10.0.0.0/8"), "dev.subnet: prefix length must be between /16 and /28"),
        (_set("dev", "projectId", COMMITTED["environments"]["prod"]["projectId"]), "one Scaleway project"),
        (_set("dev", "projectId", "my-project"), "dev.projectId: String should match pattern"),
        (
            _set("dev", "stack", "organization/platform/prod"),
            "dev.stack: organization/platform/prod is prod's",
        ),
        (_set("dev", "managedBy", "prod"), "dev.managedBy: must name an environment of role tooling"),
        (_set("dev", "managedBy", "nowhere"), "dev.managedBy: must name an environment of role tooling"),
        (_set("tooling", "managedBy", "tooling"), "tooling.managedBy: an environment of role tooling"),
        (_set("dev", "colour", "blue"), "dev.colour: unknown key (allowed: role, subnet, projectId"),
        (
            _set("dev", "dns", {"zone": "example.com", "hostnames": ["www.example.com"]}),
            "dev.dns.hostnames[0]: www.example.com overlaps prod's *.example.com",
        ),
        (
            _set("dev", "dns", {"zone": "example.org", "hostnames": ["www.example.com"]}),
            "dev.dns.hostnames[0]: www.example.com is not in the zone example.org",
        ),
        (lambda entries: entries.__setitem__("Staging", {}), "Staging: environment names are lowercase"),
    ],
)
def test_rules_between_environments(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    assert expected in _problems(change)


def test_every_problem_is_reported_together() -> None:
    def break_two(entries: dict[str, Any]) -> None:
        entries["dev"]["subnet"] = "10.20.0.0/20"
        entries["dev"]["managedBy"] = "prod"

    message = _problems(break_two)
    assert "dev.subnet:" in message and "dev.managedBy:" in message
    assert "nothing was created" in message


@pytest.mark.parametrize(
    ("pattern", "hostname", "matched"),
    [
        ("www.example.com", "www.example.com", True),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "www.example.org", False),
    ],
)
def test_hostname_patterns_match_one_label(pattern: str, hostname: str, matched: bool) -> None:
    assert environments.matches(pattern, hostname) is matched


def test_overlapping_patterns() -> None:
    assert environments.overlap("*.example.com", "www.example.com")
    assert environments.overlap("*.example.com", "*.example.com")
    assert not environments.overlap("*.example.com", "*.staging.example.com")
    assert not environments.overlap("*.example.com", "argocd.tooling.example.com")


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / environments.FILE_NAME).write_text(
        "environments:\n  prod:\n    role: production\n   subnet: x\n"
    )
    with pytest.raises(
        EnvironmentsError, match=r"(?s)environments\.yaml: 1 problem.*line 4, column 4: invalid YAML"
    ):
        environments.load_file(tmp_path / environments.FILE_NAME)


def test_a_missing_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentsError, match=r"missing: the list of environments is"):
        environments.load_file(tmp_path / environments.FILE_NAME)


@pytest.mark.parametrize("document", [None, [], {"environments": []}, {"environments": {}}, {"envs": {}}])
def test_a_list_of_the_wrong_shape_is_a_clear_error(document: Any) -> None:
    with pytest.raises(EnvironmentsError, match="must be a map with one key, environments"):
        environments.parse(document)


def _repository(tmp_path: Path) -> Path:
    for path in [runner.ROOT / "Pulumi.yaml", environments.DEFAULT_PATH, *runner.ROOT.glob("Pulumi.*.yaml")]:
        (tmp_path / path.name).write_text(path.read_text())
    return tmp_path


def test_a_broken_stack_file_is_named_with_its_line(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    text = (root / "Pulumi.prod.yaml").read_text().replace("  platform:network:", " platform:network:", 1)
    (root / "Pulumi.prod.yaml").write_text(text)
    with pytest.raises(runner.StackFileError) as caught:
        runner.run("prod", root=root)
    message = str(caught.value)
    assert "Pulumi.prod.yaml: 1 problem(s)" in message and "invalid YAML" in message and "line " in message
    assert "<unicode string>" not in message
    # A pulumi.RunError: the plan prints it and exits 2 (offline/plan.py), the engine prints it alone.
    assert isinstance(caught.value, pulumi.RunError)


def test_a_broken_environments_file_stops_every_plan(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    (root / environments.FILE_NAME).write_text("environments: [\n")
    for stack in runner.stack_names(root):
        with pytest.raises(EnvironmentsError, match=r"(?s)environments\.yaml: 1 problem.*invalid YAML"):
            runner.run(stack, root=root)


def test_the_plan_exits_2_on_a_broken_stack_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(stack: str, root: Path = runner.ROOT) -> dict[str, Any]:
        raise runner.StackFileError(f"Pulumi.{stack}.yaml", ["line 3, column 2: invalid YAML (x)"])

    monkeypatch.setattr(runner, "read_stack_config", broken)
    assert plan_cli.main(["prod"]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.prod.yaml: 1 problem(s)" in err and "line 3, column 2" in err and "Traceback" not in err


def test_a_duplicated_environment_is_refused_not_merged(tmp_path: Path) -> None:
    (tmp_path / environments.FILE_NAME).write_text(
        "environments:\n  prod: {role: production}\n  prod: {role: tooling}\n"
    )
    with pytest.raises(EnvironmentsError, match=r"line 3, column 3: invalid YAML \(duplicate key 'prod'\)"):
        environments.load_file(tmp_path / environments.FILE_NAME)


def test_a_duplicated_setting_in_a_stack_file_is_refused(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    text = (
        (root / "Pulumi.dev.yaml")
        .read_text()
        .replace(
            "  platform:environment: dev\n", "  platform:environment: dev\n  platform:environment: prod\n"
        )
    )
    (root / "Pulumi.dev.yaml").write_text(text)
    with pytest.raises(runner.StackFileError, match=r"duplicate key 'platform:environment'"):
        runner.read_stack_config("dev", root)

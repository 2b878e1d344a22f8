"""The library without the program: examples/minimal, another organisation's program, planned
under the recording mocks, and the seam itself (the library reads no config, roles or paths)."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pydantic
import pytest
import yaml

from tests.harness import record

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "minimal"
LIBRARY = ROOT / "scw_platform"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_example", EXAMPLE / "__main__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: pydantic resolves the module's (postponed) annotations through it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _stack_config() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE / "Pulumi.demo.yaml").read_text())["config"]


def _plan(config: dict[str, Any]) -> Any:
    example = _example()

    def program() -> dict[str, Any]:
        # The engine hands structured values over as JSON text, as it would to the real program.
        pulumi.runtime.set_all_config(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, []
        )
        return example.build(example.read_config())

    return record(program, stack="demo", project="shop")


def test_the_example_plans_a_network_a_cluster_and_a_private_database() -> None:
    plan = _plan(_stack_config())
    types = {r.type for r in plan.registrations}
    for expected in (
        "scaleway:network/vpc:Vpc",
        "scaleway:network/privateNetwork:PrivateNetwork",
        "scaleway:kubernetes/cluster:Cluster",
        "scaleway:kubernetes/pool:Pool",
        "scaleway:databases/instance:Instance",
    ):
        assert expected in types, expected
    (instance,) = plan.by_type("scaleway:databases/instance:Instance")
    # The organisation's own choice, which the platform program's production policy would refuse.
    assert instance.inputs["isHaCluster"] is False
    assert instance.inputs["region"] == "nl-ams"
    (pool,) = plan.by_type("scaleway:kubernetes/pool:Pool")
    assert (pool.inputs["minSize"], pool.inputs["size"], pool.inputs["maxSize"]) == (1, 2, 4)
    assert set(plan.outputs) == {"clusterId", "egressIp", "databaseHost"}


def test_the_example_refuses_what_the_library_knows_is_wrong() -> None:
    config = _stack_config()
    config["shop:cluster"]["pools"][0]["nodeType"] = "PRO2-XXXL"
    config["shop:database"]["zone"] = "nl-ams-2"
    with pytest.raises(pydantic.ValidationError) as caught:
        _plan(config)
    errors = {".".join(map(str, e["loc"])): str(e["msg"]) for e in caught.value.errors()}
    assert "unknown type 'PRO2-XXXL'" in errors["cluster.pools.0.nodeType"]
    assert "nl-ams-1, region nl-ams's default zone" in errors["database.zone"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: p.name)
def test_the_library_reads_no_config_knows_no_program_and_no_repository(path: Path) -> None:
    text = path.read_text()
    assert not _imports(path) & {"program", "offline", "policy", "ops", "tests"}, path
    assert "pulumi.Config(" not in text and "get_stack()" not in text, f"{path.name} reads stack config"
    assert ".parent.parent" not in text and "parents[1]" not in text, f"{path.name} reads a repository path"
    assert not any(word in text for word in ('== "production"', "role ==", "is_production")), (
        f"{path.name} applies a role's policy: that is program/policy.py's"
    )


def test_the_example_uses_the_library_only() -> None:
    assert "program" not in _imports(EXAMPLE / "__main__.py")
    assert "scw_platform" in _imports(EXAMPLE / "__main__.py")

"""The plan cache (offline.runner): referenced stacks' plans kept in build/plan-cache/, keyed on
their inputs. A cached plan must be the plan; any input change must plan again."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from offline import artifacts, plan, runner
from offline.runner import Export

ROOT = runner.ROOT
#: What a plan reads from its repository beside the program (a fresh clone has these and no build/).
STACK_INPUTS = ("Pulumi.yaml", "environments.yaml")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty plan cache of this test's own, and no referenced plan remembered in memory."""
    folder = tmp_path / "plan-cache"
    monkeypatch.setenv(runner.CACHE_ENV, str(folder))
    monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
    return folder


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every stack ``runner.run`` plans, in order, with its bootstrap flag."""
    calls: list[tuple[str, bool]] = []
    real = runner.run

    def spy(stack: str, *args: Any, **kwargs: Any) -> runner.Plan:
        calls.append((stack, bool(kwargs.get("bootstrap", False))))
        return real(stack, *args, **kwargs)

    monkeypatch.setattr(runner, "run", spy)
    return calls


def fingerprint(result: runner.Plan) -> str:
    """Everything a plan holds, secret values included (unmasked), as one text."""
    document = {
        "registrations": [dataclasses.asdict(r) for r in sorted(result.registrations, key=lambda r: r.urn)],
        "exports": {k: dataclasses.asdict(e) for k, e in result.exports.items()},
        "warnings": result.warnings,
        "mocked": sorted(result.mocked),
        "printed": plan.render_tree(result) + plan.render_counts(result) + plan.render_exports(result),
    }
    return json.dumps(document, sort_keys=True, default=repr)


def written(result: runner.Plan, out: Path) -> dict[str, bytes]:
    root = artifacts.write(result, out).root
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_committed_stack_plans_byte_identical_with_and_without_the_cache(
    fresh: Path, planned: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for stack in runner.stack_names():
        before = sorted(fresh.glob("*")) if fresh.exists() else []
        monkeypatch.setenv(runner.CACHE_ENV, "off")
        monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
        uncached = runner.run(stack)
        assert (sorted(fresh.glob("*")) if fresh.exists() else []) == before, "the cache is off, yet written"
        served = dict(runner._REFERENCE_CACHE)  # what the StackReferences were served, planned

        monkeypatch.setenv(runner.CACHE_ENV, str(fresh))
        monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
        runner.run(stack)  # fills the cache
        monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
        planned.clear()
        cached = runner.run(stack)
        # Only the stack itself was planned: every stack it references came from the disk.
        assert planned == [(stack, False)], f"{stack}: planned again {planned[1:]}"
        # What they were served from the disk: the same values, secret the same way. (Planned, a
        # registered environment plans tooling in turn: those plans are not needed from the disk.)
        from_disk = runner._REFERENCE_CACHE
        assert from_disk, stack
        assert set(from_disk) <= set(served), stack
        assert from_disk == {k: served[k] for k in from_disk}, stack

        assert fingerprint(cached) == fingerprint(uncached), stack
        assert written(cached, tmp_path / "cached") == written(uncached, tmp_path / "uncached"), stack
    # Each committed stack reads another: tooling reads dev and prod, they read tooling.
    assert {p.name.split(".", 1)[0] for p in fresh.glob("*.json")} == {"dev", "prod", "tooling"}


def copy_inputs(root: Path) -> Path:
    root.mkdir()
    for path in [*ROOT.glob("Pulumi.*.yaml"), *(ROOT / name for name in STACK_INPUTS)]:
        shutil.copy(path, root / path.name)
    return root


def test_an_unchanged_input_reuses_the_cache_and_a_changed_one_plans_again(
    fresh: Path, planned: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = copy_inputs(tmp_path / "repo")
    first = runner.run("prod", root=root)
    assert planned == [("prod", False), ("tooling", True)]
    assert len(list(fresh.glob("tooling.*.json"))) == 1

    # A new process (nothing in memory), same files: tooling comes from the cache.
    monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
    planned.clear()
    again = runner.run("prod", root=root)
    assert planned == [("prod", False)]
    assert fingerprint(again) == fingerprint(first)

    # Tooling's registry namespace changes what prod reads from it: tooling is planned again, and
    # prod's plan shows the new endpoint, not the cached one.
    tooling = root / "Pulumi.tooling.yaml"
    text = tooling.read_text()
    namespace = runner.read_stack_config("tooling", root)["platform:registry"]["namespace"]
    tooling.write_text(text.replace(f"namespace: {namespace}", "namespace: renamed-registry", 1))
    assert tooling.read_text() != text
    monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
    planned.clear()
    changed = runner.run("prod", root=root)
    assert planned == [("prod", False), ("tooling", True)]
    assert "renamed-registry" in fingerprint(changed)
    assert "renamed-registry" not in fingerprint(first)

    # So does a change to the list of environments, or to a stack file tooling does not read.
    for name in ("environments.yaml", "Pulumi.dev.yaml"):
        path = root / name
        path.write_text(path.read_text() + "\n# edited\n")
        monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
        planned.clear()
        runner.run("prod", root=root)
        assert planned == [("prod", False), ("tooling", True)], name


def key(root: Path = ROOT) -> str:
    return runner._cache_key("tooling", root, bootstrap=True, visiting=frozenset({"prod"}))


def test_the_key_covers_the_program_sources_and_the_installed_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
    before = key()
    assert key() == before  # deterministic

    # A copy of the program's trees, edited: its digest differs.
    for tree in runner._SOURCE_TREES:
        shutil.copytree(ROOT / tree, tmp_path / tree, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
    assert key() == before  # the same bytes elsewhere: the same key
    source = tmp_path / "scw_platform" / "helm.py"
    source.write_text(source.read_text() + "\n# edited\n")
    monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
    assert key() != before
    source.write_text(source.read_text().removesuffix("\n# edited\n"))
    monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
    assert key() == before

    # Another SDK version, or an SDK missing, is another key.
    real = runner._installed_version
    for version in ("4.99.0", "absent"):
        monkeypatch.setattr(
            runner,
            "_installed_version",
            lambda name, v=version: v if name == "pulumi-kubernetes" else real(name),
        )
        monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
        assert key() != before, version
    assert "pulumi-kubernetes" in runner._distributions()
    assert "pulumiverse-scaleway" in runner._distributions()

    # Which plan it is: bootstrap or not, and the stacks on the way to it.
    monkeypatch.setattr(runner, "_installed_version", real)
    monkeypatch.setattr(runner, "_PROGRAM_DIGEST", [])
    assert runner._cache_key("tooling", ROOT, bootstrap=False, visiting=frozenset({"prod"})) != before
    assert runner._cache_key("tooling", ROOT, bootstrap=True, visiting=frozenset({"dev"})) != before


ENTRY = ({"role": Export("tooling", False), "key": Export("MOCKSECRET-x", True)}, frozenset({"10.0.0.1"}))


def test_an_entry_round_trips_and_a_damaged_or_foreign_one_is_not_used(tmp_path: Path) -> None:
    runner._write_entry(tmp_path, "tooling", "a" * 64, ENTRY)
    assert runner._read_entry(tmp_path, "tooling", "a" * 64) == ENTRY
    path = runner._entry_path(tmp_path, "tooling", "a" * 64)

    # Same file name, another full key (only a prefix names the file): not this key's entry.
    assert runner._read_entry(tmp_path, "tooling", "a" * 32 + "b" * 32) is None
    document = json.loads(path.read_text())
    for damage in (
        "{ not json",
        "[]",
        json.dumps({**document, "format": runner.CACHE_FORMAT + 1}),
        json.dumps({k: v for k, v in document.items() if k != "mocked"}),
        json.dumps({**document, "exports": {"role": {"value": "tooling"}}}),
        json.dumps({**document, "exports": ["role"]}),
    ):
        path.write_text(damage)
        assert runner._read_entry(tmp_path, "tooling", "a" * 64) is None, damage
    path.unlink()
    assert runner._read_entry(tmp_path, "tooling", "a" * 64) is None


def test_exports_json_would_change_are_not_stored(tmp_path: Path) -> None:
    # A tuple comes back a list: serving it from the cache would not be the plan.
    runner._write_entry(tmp_path, "tooling", "c" * 64, ({"pair": Export(("a", "b"), False)}, frozenset()))
    runner._write_entry(tmp_path, "tooling", "d" * 64, ({"odd": Export(object(), False)}, frozenset()))
    assert list(tmp_path.iterdir()) == []


def test_older_entries_beyond_the_limit_are_dropped(tmp_path: Path) -> None:
    keys = [f"{i:x}" * 64 for i in range(runner.CACHE_KEEP + 2)]
    for n, k in enumerate(keys):
        runner._write_entry(tmp_path, "tooling", k, ENTRY)
        os.utime(runner._entry_path(tmp_path, "tooling", k), (1_000_000 + n, 1_000_000 + n))
    runner._write_entry(tmp_path, "prod", "e" * 64, ENTRY)
    kept = {p.name for p in tmp_path.glob("tooling.*.json")}
    assert kept == {runner._entry_path(tmp_path, "tooling", k).name for k in keys[-runner.CACHE_KEEP :]}
    assert runner._read_entry(tmp_path, "prod", "e" * 64) == ENTRY  # another stack's are not counted
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_cache_folder_that_cannot_be_written_only_costs_time(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(runner.CACHE_ENV, str(blocker / "plan-cache"))
    result = runner.run("prod")
    assert result.exports["environment"].value == "prod"


@pytest.mark.parametrize("setting", ["off", "OFF", "0", "no", "false"])
def test_the_cache_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setenv(runner.CACHE_ENV, setting)
    assert runner.reference_cache_dir(ROOT) is None


def test_the_cache_lives_under_build_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(runner.CACHE_ENV, raising=False)
    assert runner.reference_cache_dir(tmp_path) == tmp_path / "build" / "plan-cache"
    monkeypatch.setenv(runner.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert runner.reference_cache_dir(ROOT) == tmp_path / "elsewhere"


def test_the_runtime_shortcuts_change_nothing_in_a_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The collector paused and the SDK's stack traces skipped (runner._offline_runtime): every
    committed stack plans the same as with neither."""
    import contextlib

    monkeypatch.setenv(runner.CACHE_ENV, "off")
    for stack in runner.stack_names():
        monkeypatch.setattr(runner, "_REFERENCE_CACHE", {})
        fast = runner.run(stack)
        with monkeypatch.context() as plain_sdk:
            plain_sdk.setattr(runner, "_offline_runtime", contextlib.nullcontext)
            plain_sdk.setattr(runner, "_REFERENCE_CACHE", {})
            slow = runner.run(stack)
        assert fingerprint(fast) == fingerprint(slow), stack
        assert written(fast, tmp_path / "fast") == written(slow, tmp_path / "slow"), stack


def test_the_runtime_settings_are_restored_after_a_run_even_a_failed_one() -> None:
    import gc

    from pulumi.runtime import resource as sdk_resource

    original = sdk_resource._get_stack_trace
    assert gc.isenabled()
    with runner._offline_runtime():
        assert not gc.isenabled()
        assert sdk_resource._get_stack_trace() == sdk_resource._get_stack_trace().__class__()
    assert gc.isenabled()
    assert sdk_resource._get_stack_trace is original
    with pytest.raises(RuntimeError), runner._offline_runtime():
        raise RuntimeError("the program failed")
    assert gc.isenabled()
    assert sdk_resource._get_stack_trace is original


def test_garbage_a_run_leaves_is_collected_once_the_heap_has_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import weakref

    class Node:
        pass

    def garbage_cycle() -> weakref.ref[Node]:
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        return weakref.ref(node)

    # Far from doubled: the cycle is left to a later collection (the run paid for none).
    monkeypatch.setattr(runner, "_HEAP_BASELINE", [10**9])
    with runner._offline_runtime():
        kept = garbage_cycle()
    assert kept() is not None
    assert runner._HEAP_BASELINE == [10**9]
    # Doubled since the last full collection: one is made, and the baseline is what it left.
    monkeypatch.setattr(runner, "_HEAP_BASELINE", [1])
    with runner._offline_runtime():
        freed = garbage_cycle()
    assert freed() is None and kept() is None
    assert 1 < runner._HEAP_BASELINE[0] <= len(gc.get_objects()) + 1000
    # The first run of a process only notes the baseline: `make plan` never pays for a collection.
    monkeypatch.setattr(runner, "_HEAP_BASELINE", [])
    with runner._offline_runtime():
        first = garbage_cycle()
    assert first() is not None
    assert len(runner._HEAP_BASELINE) == 1
    gc.collect()


def test_a_fresh_clone_plans_prod_twice_the_same_with_only_its_own_build_folder(tmp_path: Path) -> None:
    """``make plan STACK=prod`` in a clone with nothing beside it: no ../shared, no build/."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in ("tests", "build", "__pycache__", "docs", "examples"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, clone / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(entry, clone / entry.name)
    env = {k: v for k, v in os.environ.items() if k not in (runner.CACHE_ENV, "PLATFORM_SCHEMAS_DIR")}

    def plan_prod() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "offline.plan", "prod"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    first = plan_prod()
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in (clone / "build" / "plan-cache").glob("*.json"))
    assert [name.split(".", 1)[0] for name in entries] == ["tooling"]
    second = plan_prod()
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert sorted(p.name for p in (clone / "build" / "plan-cache").glob("*.json")) == entries

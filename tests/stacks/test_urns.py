"""The safety net for restructuring: no resource URN of a committed stack may disappear (a renamed
or re-parented resource is replaced in a live stack unless it gets an alias). New URNs are fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline import runner, urns


@pytest.mark.parametrize("stack", runner.stack_names())
def test_no_urn_of_the_snapshot_is_gone(stack: str, committed_plans: dict[str, runner.Plan]) -> None:
    recorded = urns.read_snapshot(stack)
    assert recorded is not None, f"no URN snapshot for {stack}: python -m offline.urns --update"
    current = set(urns.urns(committed_plans[stack]))
    gone = sorted(set(recorded) - current)
    assert gone == [], (
        f"{len(gone)} URN(s) of {stack} would be replaced in a live stack; keep the names, add "
        "aliases, or (deliberately) refresh tests/urns with python -m offline.urns --update:\n"
        + "\n".join(gone)
    )


def test_every_committed_stack_has_a_snapshot() -> None:
    # Exactly the committed stacks' snapshots (a new environment adds its own with --update, a
    # removed one takes its snapshot with it).
    assert {p.stem for p in urns.SNAPSHOTS.glob("*.txt")} == set(runner.stack_names())


def test_a_renamed_resource_is_caught(tmp_path: Path, committed_plans: dict[str, runner.Plan]) -> None:
    found = urns.urns(committed_plans["dev"])
    renamed = [urn.replace("::dev-vpc", "::dev-network-vpc") for urn in found]
    (tmp_path / "dev.txt").write_text("\n".join(renamed) + "\n")
    gone, new = urns.compare("dev", tmp_path)
    assert gone == [u for u in renamed if u.endswith("::dev-network-vpc")] and len(gone) == 1
    assert new == [u for u in found if u.endswith("::dev-vpc")]


def test_the_cli_fails_on_a_gone_urn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(urns, "SNAPSHOTS", tmp_path)
    assert urns.main([]) == 0  # no snapshots: nothing to compare, said per stack
    assert "no snapshot yet" in capsys.readouterr().out
    (tmp_path / "dev.txt").write_text("urn:pulumi:dev::platform::x$y::gone\n")
    assert urns.main([]) == 1
    assert "gone: urn:pulumi:dev::platform::x$y::gone" in capsys.readouterr().out

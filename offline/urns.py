"""The URN of every resource of each committed stack, as a committed snapshot (tests/urns/).

A renamed or re-parented resource has a new URN, and Pulumi replaces it in a live stack: a
restructuring of the program must keep every URN (or add an alias and say so). The test
``tests/stacks/test_urns.py`` fails when a URN of the snapshot is gone; new URNs are listed, not refused.

    python -m offline.urns            # compare every committed stack with its snapshot
    python -m offline.urns --update   # write the snapshots (a deliberate change: say why in the commit)

The URNs are the offline plan's: under mocks the stack's root resource is part of a top-level
resource's parent chain (``pulumi:pulumi:Stack$...``), consistently, so comparisons hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from offline import runner

SNAPSHOTS = runner.ROOT / "tests" / "urns"


def urns(plan: runner.Plan) -> list[str]:
    """The URNs the stack manages (reads such as StackReferences excluded), sorted."""
    return sorted(r.urn for r in plan.registrations if not r.read)


def snapshot_path(stack: str, folder: Path | None = None) -> Path:
    return (folder or SNAPSHOTS) / f"{stack}.txt"


def read_snapshot(stack: str, folder: Path | None = None) -> list[str] | None:
    path = snapshot_path(stack, folder)
    return path.read_text().split() if path.exists() else None


def compare(stack: str, folder: Path | None = None) -> tuple[list[str], list[str]]:
    """(gone, new): snapshot URNs the plan no longer has, and plan URNs the snapshot lacks."""
    current = set(urns(runner.run(stack)))
    recorded = set(read_snapshot(stack, folder) or [])
    return sorted(recorded - current), sorted(current - recorded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--update", action="store_true", help="write the snapshots from the current plans")
    args = parser.parse_args(argv)
    failed = False
    for stack in runner.stack_names():
        if args.update:
            snapshot_path(stack).parent.mkdir(parents=True, exist_ok=True)
            found = urns(runner.run(stack))
            snapshot_path(stack).write_text("\n".join(found) + "\n")
            print(f"{stack}: {len(found)} URNs written to {snapshot_path(stack)}")
            continue
        if read_snapshot(stack) is None:
            print(f"{stack}: no snapshot yet (python -m offline.urns --update)")
            continue
        gone, new = compare(stack)
        failed = failed or bool(gone)
        print(f"{stack}: {len(gone)} URN(s) gone, {len(new)} new")
        for urn in gone:
            print(f"  gone: {urn}")
        for urn in new:
            print(f"  new:  {urn}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

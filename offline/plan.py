"""The offline plan: run the real program for a stack under mocks and show what it would create.

    python -m offline.plan prod          # tree of components and resources, counts per type
    python -m offline.plan prod --out build   # also write build/prod/ (see offline.artifacts)

The stacks this one reads through a StackReference are planned first, in the same process, and
kept in ``build/plan-cache/`` keyed on everything they depend on (``offline.runner``); set
``PLATFORM_PLAN_CACHE=off`` to plan them again every time.

No credentials, no Pulumi CLI, no network. A bad stack file prints the readable config error and
exits 2; nothing is registered. A plan whose estimated maximum monthly cost exceeds
``platform:budget`` exits 2 too, naming the budget and the top line items (``offline.cost``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pulumi

from offline import runner
from offline.mocks import Registration, mask_secrets

# Inputs worth seeing in the tree, per resource type (everything is in the inventory anyway).
_KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "scaleway:network/privateNetwork:PrivateNetwork": ("ipv4Subnet",),
    "scaleway:network/publicGateway:PublicGateway": ("type", "zone"),
    "scaleway:network/gatewayNetwork:GatewayNetwork": ("enableMasquerade", "ipamConfigs"),
    "scaleway:kubernetes/cluster:Cluster": ("version", "cni", "type"),
    "scaleway:kubernetes/pool:Pool": ("nodeType", "size", "minSize", "maxSize", "publicIpDisabled"),
    "scaleway:kubernetes/acl:Acl": ("aclRules",),
    "scaleway:databases/instance:Instance": ("engine", "nodeType", "isHaCluster", "backupScheduleRetention"),
    "scaleway:databases/privilege:Privilege": ("databaseName", "userName", "permission"),
    "scaleway:iam/policy:Policy": ("rules",),
    "scaleway:registry/namespace:Namespace": ("name", "isPublic"),
}


def render_tree(plan: runner.Plan) -> list[str]:
    children: dict[str, list[Registration]] = {}
    for reg in plan.registrations:
        children.setdefault(reg.parent, []).append(reg)
    roots = [r for r in plan.registrations if r.parent not in {x.urn for x in plan.registrations}]
    lines: list[str] = [f"stack {plan.project}/{plan.stack}"]

    def walk(regs: Iterable[Registration], indent: str) -> None:
        # The URN breaks ties (a component and a resource may share a name, e.g. the tooling
        # network and cluster): registrations arrive from the SDK's worker threads in any order.
        regs = sorted(regs, key=lambda r: (r.custom, r.name, r.urn))
        for i, reg in enumerate(regs):
            last = i == len(regs) - 1
            branch, below = ("└─ ", "   ") if last else ("├─ ", "│  ")
            lines.append(f"{indent}{branch}{_describe(reg)}")
            walk(children.get(reg.urn, []), indent + below)

    walk(roots, "")
    return [line + MOCKED if is_mocked(line, plan.mocked) else line for line in lines]


def _describe(reg: Registration) -> str:
    flags = [
        flag for flag, on in (("protect", reg.protect), ("retain-on-delete", reg.retain_on_delete)) if on
    ]
    inputs = {k: mask_secrets(reg.inputs[k]) for k in _KEY_INPUTS.get(reg.type, ()) if k in reg.inputs}
    settings = " ".join(f"{k}={v}" for k, v in inputs.items())
    extra = f" [{', '.join(flags)}]" if flags else ""
    return f"{reg.name} ({reg.type}){extra}{'  ' + settings if settings else ''}"


def render_counts(plan: runner.Plan) -> list[str]:
    counts = Counter(r.type for r in plan.registrations)
    lines = [f"{count:4d}  {typ}" for typ, count in sorted(counts.items())]
    lines.append(f"{sum(counts.values()):4d}  resources in total")
    return lines


MOCKED = "  (mocked)"


def is_mocked(value: Any, mocked: frozenset[str]) -> bool:
    """``value`` shows an ID, address or URL the mocks made up."""
    text = str(value)
    return any(made_up in text for made_up in mocked)


def render_exports(plan: runner.Plan) -> list[str]:
    lines = []
    for key, export in plan.exports.items():
        shown = "[secret]" if export.secret else mask_secrets(export.value)
        lines.append(
            f"{key} = {shown}{MOCKED if not export.secret and is_mocked(shown, plan.mocked) else ''}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stack", help=f"stack name (files here: {', '.join(runner.stack_names())})")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="also write the plan's artifacts (inventory, manifests, Helm values) into DIR/<stack>/",
    )
    parser.add_argument(
        "--bootstrap",
        action="store_true",
        help="plan as on an empty account: the stacks this one registers (tooling's environments) "
        "do not exist yet",
    )
    args = parser.parse_args(argv)
    try:
        plan = runner.run(args.stack, bootstrap=args.bootstrap)
    except pulumi.RunError as exc:  # config errors and malformed stack references: no traceback
        print(exc, file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    mode = " (bootstrap: first run on an empty account)" if plan.bootstrap else ""
    print(
        f"Offline plan of stack {plan.stack}{mode}: the real program under mocked providers. "
        "No cloud, no cluster, no Pulumi CLI; values marked (mocked) are made up by the mocks."
    )
    for warning in plan.warnings:
        print(f"warning: {warning}")
    print("\n".join(render_tree(plan)))
    print("\nResources by type:")
    print("\n".join(render_counts(plan)))
    print("\nExports:")
    print("\n".join(render_exports(plan)))
    # --- The budget gate (docs/cost.md): the plan's cost estimate against platform:budget.
    from offline import cost

    try:
        verdict = cost.gate(plan, runner.read_stack_config(args.stack))
    except pulumi.RunError as exc:  # an invalid catalogue or budget: every problem, no traceback
        print(exc, file=sys.stderr)
        return 2
    print("\nBudget:")
    print("\n".join(verdict.lines))
    if verdict.failure is not None:
        print(verdict.failure, file=sys.stderr)
        return 2
    # --- end of the budget gate.
    if args.out:
        from pathlib import Path

        from offline import artifacts

        written = artifacts.write(plan, Path(args.out))
        print(
            f"\nArtifacts: {written.root}/ (inventory.json, {len(written.manifests)} manifest(s), "
            f"{len(written.helm)} Helm values file(s))"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

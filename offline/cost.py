"""What a stack costs each month, before anyone runs ``pulumi up``: ``make cost STACK=prod``.

    python -m offline.cost prod            # every billable line, totals at min and max, showback
    python -m offline.cost prod --json     # the same as JSON
    python -m offline.cost --all           # every committed stack, and the grand total

The stack is planned offline (``offline.runner``, as ``make plan`` does) and every resource the plan
records is priced from the catalogue (``scw_platform.budget``): quantities at the minimum and the
maximum of autoscaling, list prices in EUR excluding VAT, hourly prices x 730 h (docs/cost.md).

Exit 0 when every billable resource has a price and the maximum fits ``platform:budget``; exit 2,
naming each problem, when a line has no catalogued price, a resource type has no cost rule, the
maximum exceeds the budget, or the input is bad (stack file, configuration, catalogue).

``make plan`` calls :func:`gate`: it fails (exit 2) when the priced maximum exceeds the budget or a
resource type has no cost rule, and lists the lines without a price.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from scw_platform import budget as pricing
from scw_platform.budget import BudgetSettings, Estimate, Line
from scw_platform.catalogue import HOURS_PER_MONTH
from scw_platform.contract import ProblemsError

BUDGET_KEY = "platform:budget"
HEADLINE = (
    f"list prices in EUR excluding VAT, hourly prices x {HOURS_PER_MONTH} h; traffic, support plans "
    "and discounts excluded (docs/cost.md)"
)
CENT = Decimal("0.01")


class BudgetError(ProblemsError):
    """``platform:budget`` is invalid (the program's own config check reports it the same way)."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        super().__init__(f"stack '{stack}': {len(problems)} configuration problem(s)", problems)


def budget_of(stack: str, raw: Mapping[str, Any]) -> BudgetSettings | None:
    """The stack file's ``platform:budget``, validated; None when the stack sets none."""
    value = raw.get(BUDGET_KEY)
    if value is None:
        return None
    try:
        return BudgetSettings.model_validate(value)
    except ValidationError as exc:
        raise BudgetError(stack, [_problem(error) for error in exc.errors()]) from None


def _problem(error: Mapping[str, Any]) -> str:
    from pydantic.alias_generators import to_camel

    path = ".".join([BUDGET_KEY, *(to_camel(str(p)) for p in error["loc"])])
    got = f" (got {error['input']!r})" if not isinstance(error.get("input"), dict) else ""
    return f"{path}: {error['msg']}{got}"


@dataclass(frozen=True)
class StackCost:
    stack: str
    estimate: Estimate
    budget: BudgetSettings | None

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.estimate.maximum > _decimal(self.budget.monthly_eur)

    @property
    def ok(self) -> bool:
        return self.estimate.complete and not self.over_budget


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def cost_of(plan: Any, raw_config: Mapping[str, Any]) -> StackCost:
    """Price an offline plan (``offline.runner.Plan``) with the budget of ``raw_config`` (the
    stack's ``config:`` map)."""
    settings = budget_of(plan.stack, raw_config)
    managed = [r for r in plan.registrations if not r.read]
    usage = settings.usage if settings is not None else None
    return StackCost(stack=plan.stack, estimate=pricing.estimate(managed, usage), budget=settings)


def plan_cost(stack: str) -> StackCost:
    """Plan ``stack`` from its stack file (as ``make plan`` does) and price it."""
    from offline import runner

    return cost_of(runner.run(stack), runner.read_stack_config(stack))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value.quantize(CENT, ROUND_HALF_UP):.2f}"


def quantity(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):.2f}"


def unit_price(value: Decimal | None) -> str:
    return "no price" if value is None else f"{value.quantize(Decimal('0.000001'), ROUND_HALF_UP):.6f}"


def _row(line: Line) -> tuple[str, ...]:
    price = line.price
    return (
        line.resource,
        line.item,
        quantity(line.low),
        quantity(line.high),
        line.unit,
        unit_price(line.unit_price),
        money(line.monthly_low),
        money(line.monthly_high),
        f"{price.checked} {price.publisher}" if price is not None else "-",
    )


_HEADER = (
    "resource",
    "item",
    "qty min",
    "qty max",
    "unit",
    "EUR/unit",
    "min/month",
    "max/month",
    "price as of",
)
_RIGHT = {2, 3, 5, 6, 7}


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in _RIGHT else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def render(cost: StackCost) -> list[str]:
    """The stack's cost table, its totals, its budget, what is missing and the showback."""
    estimate = cost.estimate
    lines = [f"Monthly cost of stack {cost.stack}: {HEADLINE}"]
    lines += _table([_HEADER, *(_row(line) for line in estimate.lines)])
    lines.append(
        f"total ({len(estimate.priced)} priced line(s)): min {money(estimate.minimum)} EUR/month, "
        f"max {money(estimate.maximum)} EUR/month"
    )
    lines.append(budget_line(cost))
    notes = sorted({line.note for line in estimate.lines if line.note})
    if notes:
        lines.append("assumptions:")
        lines += [f"  - {note}" for note in notes]
    problems = estimate.problems()
    if problems:
        lines.append(f"INCOMPLETE: {len(problems)} problem(s); the totals cover the priced lines only:")
        lines += [f"  - {p}" for p in problems]
    lines += render_showback(estimate)
    return lines


def budget_line(cost: StackCost) -> str:
    if cost.budget is None:
        return f"budget: none ({BUDGET_KEY} is not set)"
    limit = _decimal(cost.budget.monthly_eur)
    verdict = "EXCEEDED by the maximum" if cost.over_budget else "the maximum fits"
    used = (cost.estimate.maximum / limit * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"budget: {BUDGET_KEY}.monthlyEur {money(limit)} EUR: {verdict} ({used}% of it)"


def render_showback(estimate: Estimate) -> list[str]:
    showback = estimate.showback
    if not showback.apps and showback.problem is None:
        return []
    lines = [
        "showback: each app's share of the node cost (pools without taints), the larger of its "
        "CPU and memory share by its namespace quota's requests:"
    ]
    if showback.problem is not None:
        lines.append(f"  n/a: {showback.problem}")
    if showback.apps:
        rows = [("app", "cpu", "memory GiB", "share min", "share max", "min/month", "max/month")]
        for app in showback.apps:
            rows.append(
                (
                    app.app,
                    quantity(app.cpu),
                    quantity(app.memory_gib),
                    _percent(app.share_low),
                    _percent(app.share_high),
                    money(app.monthly_low),
                    money(app.monthly_high),
                )
            )
        rows.append(
            (
                "unallocated (platform, headroom)",
                "",
                "",
                "",
                "",
                money(showback.unallocated_low),
                money(showback.unallocated_high),
            )
        )
        rows.append(("nodes", "", "", "", "", money(showback.node_low), money(showback.node_high)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
    return lines


def _percent(share: Decimal) -> str:
    return f"{(share * 100).quantize(CENT, ROUND_HALF_UP):.2f}%"


def render_all(costs: Sequence[StackCost]) -> list[str]:
    lines: list[str] = []
    for cost in costs:
        lines += [*render(cost), ""]
    low = sum((c.estimate.minimum for c in costs), Decimal(0))
    high = sum((c.estimate.maximum for c in costs), Decimal(0))
    incomplete = [c.stack for c in costs if not c.estimate.complete]
    lines.append(
        f"grand total ({len(costs)} stack(s), priced lines): min {money(low)} EUR/month, "
        f"max {money(high)} EUR/month" + (f"; incomplete: {', '.join(incomplete)}" if incomplete else "")
    )
    return lines


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _number(value: Decimal | None, places: str = "0.01") -> float | None:
    return None if value is None else float(value.quantize(Decimal(places), ROUND_HALF_UP))


def as_json(cost: StackCost) -> dict[str, Any]:
    estimate = cost.estimate
    showback = estimate.showback
    return {
        "stack": cost.stack,
        "currency": "EUR",
        "hoursPerMonth": int(HOURS_PER_MONTH),
        "lines": [
            {
                "resource": line.resource,
                "type": line.type,
                "item": line.item,
                "unit": line.unit,
                "quantity": {"min": _number(line.low), "max": _number(line.high)},
                "unitPrice": _number(line.unit_price, "0.000001"),
                "monthly": {"min": _number(line.monthly_low), "max": _number(line.monthly_high)},
                "catalogue": line.ref,
                "priceChecked": str(line.price.checked) if line.price else None,
                "publisher": line.price.publisher if line.price else None,
                "source": line.price.source if line.price else None,
                "assumption": line.note or None,
                "problem": line.problem,
            }
            for line in estimate.lines
        ],
        "total": {"min": _number(estimate.minimum), "max": _number(estimate.maximum)},
        "complete": estimate.complete,
        "problems": estimate.problems(),
        "budget": None
        if cost.budget is None
        else {"monthlyEur": cost.budget.monthly_eur, "exceeded": cost.over_budget},
        "showback": {
            "apps": [
                {
                    "app": a.app,
                    "cpu": _number(a.cpu),
                    "memoryGiB": _number(a.memory_gib),
                    "share": {"min": _number(a.share_low, "0.0001"), "max": _number(a.share_high, "0.0001")},
                    "monthly": {"min": _number(a.monthly_low), "max": _number(a.monthly_high)},
                }
                for a in showback.apps
            ],
            "nodes": {"min": _number(showback.node_low), "max": _number(showback.node_high)},
            "unallocated": {
                "min": _number(showback.unallocated_low),
                "max": _number(showback.unallocated_high),
            },
            "problem": showback.problem,
        },
    }


# --------------------------------------------------------------------------------------------
# The budget gate of `make plan`
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    #: What the plan prints under "Budget:".
    lines: list[str]
    #: Why the plan fails (stderr), or None.
    failure: str | None


def gate(plan: Any, raw_config: Mapping[str, Any]) -> Verdict:
    """The plan's budget check: fails when the priced maximum exceeds ``platform:budget`` or a
    resource type has no cost rule; lines without a price are listed (``make cost`` fails on
    them), since no budget can vouch for what the catalogue cannot price."""
    cost = cost_of(plan, raw_config)
    estimate = cost.estimate
    lines = [
        f"estimate: min {money(estimate.minimum)} EUR/month, max {money(estimate.maximum)} EUR/month "
        f"({len(estimate.priced)} priced line(s); make cost STACK={cost.stack} for the table)",
        budget_line(cost),
    ]
    if estimate.unpriced:
        lines.append(f"not priced ({len(estimate.unpriced)} line(s), no public figure in the catalogue):")
        lines += [f"  - {line.resource}: {line.item} ({line.ref})" for line in estimate.unpriced]
    failures = []
    if cost.over_budget:
        assert cost.budget is not None
        top = "; ".join(f"{line.resource} {line.item} {money(line.monthly_high)}" for line in estimate.top())
        failures.append(
            f"stack '{cost.stack}': the estimated maximum {money(estimate.maximum)} EUR/month exceeds "
            f"{BUDGET_KEY}.monthlyEur {money(_decimal(cost.budget.monthly_eur))} EUR; top line items "
            f"at the maximum: {top}"
        )
    if estimate.unclassified:
        failures.append(
            f"stack '{cost.stack}': {len(estimate.unclassified)} resource(s) have no cost rule "
            f"(scw_platform/budget.py): {', '.join(estimate.unclassified)}"
        )
    return Verdict(lines=lines, failure="\n".join(failures) or None)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from offline import runner

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "stack", nargs="?", help=f"stack name (files here: {', '.join(runner.stack_names())})"
    )
    parser.add_argument("--all", action="store_true", help="every committed stack, and the grand total")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if bool(args.stack) == args.all:
        parser.error("name one stack, or --all")
    stacks = runner.stack_names() if args.all else [args.stack]
    try:
        costs = [plan_cost(stack) for stack in stacks]
    except (ProblemsError, FileNotFoundError) as exc:  # config, catalogue, stack file: no traceback
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        document: Any = [as_json(c) for c in costs] if args.all else as_json(costs[0])
        if args.all:
            document = {
                "stacks": document,
                "grandTotal": {
                    "min": _number(sum((c.estimate.minimum for c in costs), Decimal(0))),
                    "max": _number(sum((c.estimate.maximum for c in costs), Decimal(0))),
                },
            }
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n".join(render_all(costs) if args.all else render(costs[0])))
    failed = [c for c in costs if not c.ok]
    for cost in failed:
        reasons = [f"{len(cost.estimate.problems())} problem(s)"] if not cost.estimate.complete else []
        reasons += ["over budget"] if cost.over_budget else []
        print(f"stack '{cost.stack}': {', '.join(reasons)} (see above)", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The stack-budget rule: the stack's estimated monthly cost fits its budget.

The same estimate as ``make plan``'s budget gate and ``make cost`` (``scw_platform.budget``: the
catalogue's list prices, autoscaling at its maximum), over the rule's view of the resources. The
budget is the stack's ``platform:budget`` map (``monthlyEur``, optionally ``usage``): the offline
callers put it on the :class:`~policy.rules.StackView`; in CrossGuard it is the policy config's
``budget`` (``pulumi preview --policy-pack policy --policy-pack-config <file>``), since a policy
pack sees resources, not the stack's configuration. Without a budget the rule has nothing to
check.

Violations: the maximum exceeds the budget (named, with the lines that weigh most), a resource
type no cost rule knows (it could cost anything), an invalid budget. Lines the catalogue cannot
price are not violations here, as in ``make plan``: ``make cost`` fails on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from policy.rules import Finding, ResourceView, Rule, StackView
from scw_platform import budget as pricing
from scw_platform.budget import BudgetSettings

#: The CrossGuard policy config the rule reads (JSON schema properties).
CONFIG: dict[str, Any] = {
    "budget": {
        "type": "object",
        "description": "The stack's platform:budget: monthlyEur (and usage), as in its stack file.",
        "properties": {"monthlyEur": {"type": "number", "exclusiveMinimum": 0}, "usage": {"type": "object"}},
        "required": ["monthlyEur"],
    }
}


def _eur(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}"


def _within_budget(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    if stack.budget is None or not stack.resources:
        return
    anchor = stack.resources[0]
    try:
        settings = BudgetSettings.model_validate(stack.budget)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(p) for p in error["loc"])
            yield anchor, ("", f"budget.{path}: {error['msg']}")
        return
    estimate = pricing.estimate(stack.resources, settings.usage)
    by_name = {r.name: r for r in stack.resources}
    for what in estimate.unclassified:
        name = what.split(" (", 1)[0]
        yield by_name.get(name, anchor), ("", f"{what}: no cost rule knows this resource type")
    limit = Decimal(repr(settings.monthly_eur))
    if estimate.maximum > limit:
        top = estimate.top()
        items = "; ".join(
            f"{line.resource} {line.item} {_eur(line.monthly_high or Decimal(0))}" for line in top
        )
        yield (
            by_name.get(top[0].resource, anchor),
            (
                "",
                f"the estimated maximum {_eur(estimate.maximum)} EUR/month exceeds the budget "
                f"(monthlyEur {_eur(limit)} EUR); top line items at the maximum: {items}",
            ),
        )


STACK_BUDGET: Rule = Rule(
    "stack-budget",
    "The stack's estimated maximum monthly cost (catalogue list prices, autoscaling at maxSize) "
    "fits its budget (platform:budget; in CrossGuard the policy config's budget), and every "
    "resource type has a cost rule.",
    lambda r: False,
    stack_check=_within_budget,
    config=CONFIG,
)

"""Adapters: the rules of ``policy.rules`` as Pulumi CrossGuard policies.

* A rule about one resource that needs nothing else becomes a ``ResourceValidationPolicy``
  (it sees the resource's inputs).
* A rule that needs the stack's role or other resources becomes a ``StackValidationPolicy``
  (it sees every resource's outputs, which for these providers include the inputs).

The stack's role comes from the policy's config (``role``), else from the ``role=<role>`` tag the
program puts on every Scaleway resource; unknown, it is treated as production (fail safe).

What a Python policy pack cannot see (pulumi-policy 1.21): secret values reach it unwrapped, with
no mark that they were secret, and the analyzer protocol carries no ``retainOnDelete``. Rules that
need either report "not applicable" here, with the reason; ``make validate`` enforces them offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
    proxy,
)

from policy import rules

#: What CrossGuard shows a Python policy (see module docstring).
CROSSGUARD_CAPABILITIES: frozenset[str] = frozenset()

#: The values the engine sends for what is unknown during a preview.
_UNKNOWN_SENTINELS = frozenset(
    {
        proxy.UNKNOWN_BOOLEAN_VALUE,
        proxy.UNKNOWN_NUMBER_VALUE,
        proxy.UNKNOWN_STRING_VALUE,
        proxy.UNKNOWN_ARRAY_VALUE,
        proxy.UNKNOWN_ASSET_VALUE,
        proxy.UNKNOWN_ARCHIVE_VALUE,
        proxy.UNKNOWN_OBJECT_VALUE,
    }
)

_ROLE_CONFIG = PolicyConfigSchema(
    properties={
        "role": {
            "type": "string",
            "enum": list(rules.ROLES),
            "description": "The stack's role; by default read from the role=<role> tags.",
        }
    }
)

_CAPABILITY_REASONS = {
    rules.SECRETS: "Python policy packs receive secret values unwrapped, so secretness cannot be "
    "checked here; `make validate` checks it on the offline plan",
    rules.RETAIN_ON_DELETE: "the analyzer protocol does not carry retainOnDelete; `make validate` "
    "checks it on the offline plan",
}


def plain(value: Any) -> Any:
    """Plain dicts and lists from the SDK's unknown-checking proxies; unknowns become UNKNOWN.

    The proxies raise on reading an unknown value (preview); rules treat UNKNOWN as undecidable.
    """
    if isinstance(value, Mapping):
        target = value if isinstance(value, dict) else value["__target"]
        return {str(k): plain(v) for k, v in target.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        target = value if isinstance(value, list | tuple) else value["__target"]  # type: ignore[call-overload]
        return [plain(v) for v in target]
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return rules.UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _reason(rule: rules.Rule) -> str | None:
    missing = rule.needs - CROSSGUARD_CAPABILITIES
    return "; ".join(_CAPABILITY_REASONS[m] for m in sorted(missing)) if missing else None


def resource_view(args: ResourceValidationArgs) -> rules.ResourceView:
    return rules.ResourceView(
        urn=args.urn,
        type=args.resource_type,
        name=args.name,
        inputs=plain(args.props),
        protect=bool(args.opts.protect),
        retain_on_delete=None,
        provider=args.provider.urn if args.provider is not None else "",
    )


def stack_view(args: StackValidationArgs) -> rules.StackView:
    resources = tuple(
        rules.ResourceView(
            urn=r.urn,
            type=r.resource_type,
            name=r.name,
            inputs=plain(r.props),
            protect=bool(r.opts.protect),
            retain_on_delete=None,
            provider=r.provider.urn if r.provider is not None else "",
            dependencies=tuple(sorted(d.urn for d in r.dependencies)),
        )
        for r in args.resources
    )
    config = args.get_config() or {}
    configured = config.get("role")
    role = configured if configured in rules.ROLES else rules.role_from_tags(resources)
    # A policy pack sees no stack configuration: the budget comes from the policy config.
    budget = plain(config["budget"]) if isinstance(config.get("budget"), Mapping) else None
    return rules.StackView(
        resources=resources, role=role, capabilities=CROSSGUARD_CAPABILITIES, budget=budget
    )


def resource_policy(rule: rules.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        reason = _reason(rule)
        view = resource_view(args)
        if not rule.applies(view):
            return
        if reason:
            args.not_applicable(reason)
        stack = rules.StackView(resources=(view,), capabilities=CROSSGUARD_CAPABILITIES)
        for violation in rule.check_resource(view, stack):
            report_violation(violation.text(), args.urn)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def stack_policy(rule: rules.Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        reason = _reason(rule)
        if reason:
            args.not_applicable(reason)
        stack = stack_view(args)
        if not rule.enforced_for(stack):
            args.not_applicable(f"enforced only for role(s) {', '.join(sorted(rule.roles or ()))}")
        if "budget" in rule.config and stack.budget is None:
            args.not_applicable(
                "no budget in the policy config (budget.monthlyEur); `make plan` checks the stack "
                "file's platform:budget offline"
            )
        for violation in rule.evaluate(stack):
            report_violation(violation.text(), violation.urn)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=_config_schema(rule),
    )


def _config_schema(rule: rules.Rule) -> PolicyConfigSchema | None:
    """The role (for rules enforced per role) and whatever else the rule reads from the config."""
    properties = {**(_ROLE_CONFIG.properties if rule.roles is not None else {}), **rule.config}
    return PolicyConfigSchema(properties=properties) if properties else None


def policies() -> list[Policy]:
    return [stack_policy(r) if r.is_stack_rule else resource_policy(r) for r in rules.RULES]

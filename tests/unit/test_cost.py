"""What each stack costs, and the budget the plan enforces: golden figures for the committed
stacks, nothing billable left without a rule, the gate in `make plan` and the policy pack, bad
input refused with every problem named, and deterministic output."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import cost, runner
from offline import plan as offline_plan
from policy import crossguard, rules
from policy.rules import ResourceView, StackView
from scw_platform import budget, catalogue, ingress, labels
from scw_platform.budget import BudgetSettings, UsageAssumptions

POOL = "scaleway:kubernetes/pool:Pool"


@dataclass(frozen=True)
class Resource:
    """What the estimate reads of a planned resource."""

    type: str
    name: str
    inputs: dict[str, Any] = field(default_factory=dict)


def pool(min_size: int = 3, max_size: int = 9, **inputs: Any) -> Resource:
    return Resource(
        POOL,
        "apps",
        {
            "nodeType": "PRO2-M",
            "autoscaling": True,
            "minSize": min_size,
            "maxSize": max_size,
            "rootVolumeType": "sbs_15k",
            "rootVolumeSizeInGb": 50,
            "publicIpDisabled": True,
            **inputs,
        },
    )


@pytest.fixture(scope="module")
def costs(committed_plans: dict[str, runner.Plan]) -> dict[str, cost.StackCost]:
    return {
        stack: cost.cost_of(plan, runner.read_stack_config(stack)) for stack, plan in committed_plans.items()
    }


# --------------------------------------------------------------------------------------------
# Golden figures for the committed stacks
# --------------------------------------------------------------------------------------------

#: (min, max) EUR/month of the priced lines, and the catalogue entries each stack needs a price
#: for but has none (a ratchet: pricing an entry, or a stack needing a new one, changes this).
GOLDEN: dict[str, tuple[str, str, list[str]]] = {
    "dev": (
        "35.18",
        "64.67",
        [
            "blockVolumeTypes/sbs_5k",
            "publicGatewayTypes/VPC-GW-S",
            "rdbNodeTypes/DB-DEV-S",
            "services/public-gateway-flexible-ipv4",
            "services/rdb-volume-sbs_5k",
            "services/secret-manager-version",
        ],
    ),
    "prod": (
        "1559.72",
        "3222.70",
        [
            "publicGatewayTypes/VPC-GW-M",
            "rdbNodeTypes/DB-PRO2-XXS",
            "services/public-gateway-flexible-ipv4",
            "services/rdb-backup-storage",
            "services/rdb-volume-sbs_15k",
            "services/secret-manager-version",
        ],
    ),
    "tooling": (
        "567.78",
        "3018.70",
        [
            "publicGatewayTypes/VPC-GW-S",
            "services/public-gateway-flexible-ipv4",
            "services/secret-manager-version",
        ],
    ),
}


def test_golden_covers_every_committed_stack() -> None:
    assert sorted(GOLDEN) == runner.stack_names()


@pytest.mark.parametrize("stack", sorted(GOLDEN))
def test_committed_stack_totals_are_the_golden_figures(stack: str, costs: dict[str, cost.StackCost]) -> None:
    low, high, unpriced = GOLDEN[stack]
    estimate = costs[stack].estimate
    assert (cost.money(estimate.minimum), cost.money(estimate.maximum)) == (low, high)
    assert sorted({line.ref for line in estimate.unpriced}) == unpriced
    assert estimate.unclassified == ()


def test_pools_are_priced_from_minsize_to_maxsize(costs: dict[str, cost.StackCost]) -> None:
    """Every committed pool: its nodes and root volumes at minSize and maxSize, per its stack file."""
    seen = 0
    for stack, stack_cost in costs.items():
        lines = {(line.resource, line.item): line for line in stack_cost.estimate.lines}
        for spec in (runner.read_stack_config(stack).get("platform:cluster") or {}).get("pools", []):
            nodes = lines[(f"{stack}-pool-{spec['name']}", f"{spec['nodeType']} nodes")]
            assert (nodes.low, nodes.high) == (spec["minSize"], spec["maxSize"]), (stack, spec["name"])
            node = catalogue.kapsule_node_type(spec["nodeType"])
            assert node is not None and node.prices is not None
            assert nodes.monthly_high == spec["maxSize"] * node.prices.monthly
            size = spec.get("rootVolumeSizeGb", 50)
            volume = lines[
                (
                    f"{stack}-pool-{spec['name']}",
                    f"root volumes {spec.get('rootVolumeType', 'sbs_15k')}, {size} GB each",
                )
            ]
            assert (volume.low, volume.high) == (spec["minSize"] * size, spec["maxSize"] * size)
            seen += 1
    assert seen >= 3


def test_committed_front_doors_and_control_planes(costs: dict[str, cost.StackCost]) -> None:
    for stack, stack_cost in costs.items():
        lines = {(line.resource, line.item): line for line in stack_cost.estimate.lines}
        # LB-S at 0.023 EUR/h x 730 h, its flexible IP at 0.005 EUR/h; the shared control plane free.
        assert (
            cost.money(
                lines[(f"{stack}-front-door-traefik", "LB-S load balancer (chart Service)")].monthly_high
            )
            == "16.79"
        )
        assert cost.money(lines[(f"{stack}-front-door-ip", "flexible IPv4")].monthly_high) == "3.65"
        assert lines[(f"{stack}-cluster", "control plane kapsule")].monthly_high == 0


def test_showback_shares_the_node_cost_by_quota_requests() -> None:
    quota = Resource(
        "kubernetes:core/v1:ResourceQuota",
        "app-website-quota",
        {
            "metadata": {"labels": {labels.APP: "website"}},
            "spec": {"hard": {"requests.cpu": "800m", "requests.memory": "1Gi"}},
        },
    )
    builders = replace(pool(0, 6, taints=[{"key": "platform.scw/dedicated"}]), name="builders")
    showback = budget.estimate([pool(), builders, quota]).showback
    (website,) = showback.apps
    # 800m of 3 x 16 vCPUs (1.67%) dominates 1 GiB of 3 x 64 GiB; the same share of 9 nodes costs
    # the same. The tainted builders pool is not the apps'.
    assert (website.cpu, website.memory_gib) == (Decimal("0.8"), Decimal(1))
    assert website.share_low == Decimal("0.8") / 48 and website.share_high == Decimal("0.8") / 144
    assert cost.money(website.monthly_low) == cost.money(website.monthly_high) == "16.31"
    assert cost.money(showback.node_low) == "978.40" and cost.money(showback.node_high) == "2935.21"
    assert cost.money(showback.unallocated_low) == "962.10"


def test_committed_showback_covers_each_app(costs: dict[str, cost.StackCost]) -> None:
    for stack in ("prod", "dev"):
        apps = [a["name"] for a in runner.read_stack_config(stack)["platform:apps"]]
        showback = costs[stack].estimate.showback
        assert sorted(a.app for a in showback.apps) == sorted(apps), stack
        assert all(a.monthly_low is not None and a.monthly_low > 0 for a in showback.apps), stack


def test_tooling_has_no_apps_to_show_back(costs: dict[str, cost.StackCost]) -> None:
    assert costs["tooling"].estimate.showback.apps == ()


# --------------------------------------------------------------------------------------------
# Nothing billable becomes free by omission
# --------------------------------------------------------------------------------------------


def _types(plan: runner.Plan) -> set[str]:
    return {r.type for r in plan.registrations if not r.read}


def test_every_type_of_the_committed_plans_is_billable_or_known_free(
    committed_plans: dict[str, runner.Plan],
) -> None:
    types = set().union(*(_types(plan) for plan in committed_plans.values()))
    unknown = sorted(t for t in types if budget.classify(t) == "unknown")
    assert not unknown, f"no cost rule for {unknown}: add one to scw_platform/budget.py"
    # Guards against a vacuous pass: the plans do hold billable types.
    assert {POOL, "scaleway:databases/instance:Instance", "kubernetes:helm.sh/v3:Release"} <= {
        t for t in types if budget.classify(t) == "billable"
    }


def test_the_100_app_plan_is_classified_too() -> None:
    from scripts import bench_cost

    plan = runner.run("prod", config=bench_cost.apps_config(100))
    unknown = sorted(t for t in _types(plan) if budget.classify(t) == "unknown")
    assert not unknown
    estimate = budget.estimate(r for r in plan.registrations if not r.read)
    assert len(estimate.showback.apps) == 100  # the generated apps replace the committed ones
    assert estimate.unclassified == ()
    assert len([line for line in estimate.lines if line.item == "secret version"]) >= 100


def test_every_scaleway_type_is_listed_explicitly() -> None:
    """Scaleway resources are never free by a prefix rule: each is in BILLABLE or NON_BILLABLE."""
    assert budget.classify("scaleway:instance/server:Server") == "unknown"
    assert budget.classify("scaleway:network/vpc:Vpc") == "free"
    assert budget.classify("kubernetes:core/v1:ConfigMap") == "free"
    assert budget.classify("kubernetes:core/v1:Service") == "billable"
    assert not (budget.BILLABLE & set(budget.NON_BILLABLE))


def test_an_unknown_type_is_reported_not_taken_as_free() -> None:
    estimate = budget.estimate([pool(), Resource("scaleway:instance/server:Server", "stray")])
    assert estimate.unclassified == ("stray (scaleway:instance/server:Server)",)
    assert not estimate.complete
    assert any("stray" in p and "no cost rule" in p for p in estimate.problems())


def test_a_type_missing_from_the_catalogue_names_the_entry() -> None:
    lb = Resource("scaleway:loadbalancers/loadBalancer:LoadBalancer", "lb", {"type": "LB-XXL"})
    (line,) = budget.estimate([lb]).lines
    assert line.price is None
    assert (
        line.problem
        == "the catalogue has no loadBalancerTypes entry 'LB-XXL' (scw_platform/data/scaleway.yaml)"
    )


def test_an_unpriced_entry_keeps_its_quantity_and_says_why() -> None:
    cluster = Resource("scaleway:kubernetes/cluster:Cluster", "c", {"type": "kapsule-dedicated-8"})
    (line,) = budget.estimate([cluster]).lines
    assert (line.ref, line.low, line.price) == ("kapsuleControlPlanes/kapsule-dedicated-8", 1, None)
    assert line.problem and line.problem.startswith("No stored public page")


def test_a_service_price_per_another_unit_is_refused(tmp_path: Path) -> None:
    document = yaml.safe_load(catalogue.DEFAULT_PATH.read_text())
    ip = next(e for e in document["services"]["entries"] if e["name"] == "lb-flexible-ipv4")
    ip["prices"]["unit"] = "IP-day"
    path = tmp_path / "scaleway.yaml"
    path.write_text(yaml.safe_dump(document))
    (line,) = budget.estimate(
        [Resource("scaleway:loadbalancers/ip:Ip", "ip")], cat=catalogue.load(path)
    ).lines
    assert (
        line.price is None
        and line.problem == "the catalogue prices it per 'IP-day', the estimate counts 'IP'"
    )


def test_pools_count_root_volumes_and_public_ips_per_node() -> None:
    lines = budget.estimate([pool(1, 4, publicIpDisabled=False)]).lines
    by_item = {line.item: line for line in lines}
    assert (
        by_item["root volumes sbs_15k, 50 GB each"].low,
        by_item["root volumes sbs_15k, 50 GB each"].high,
    ) == (
        50,
        200,
    )
    ips = by_item["node public IPv4s"]
    assert (ips.low, ips.high, ips.ref, ips.price) == (1, 4, "services/instance-flexible-ipv4", None)
    fixed = budget.estimate([pool(1, 4, autoscaling=False, size=2)]).lines
    assert {(line.low, line.high) for line in fixed if line.item == "PRO2-M nodes"} == {(2, 2)}


def test_an_ha_database_is_two_nodes_and_backups_are_bounded() -> None:
    db = Resource(
        "scaleway:databases/instance:Instance",
        "db",
        {
            "nodeType": "DB-PRO2-XXS",
            "isHaCluster": True,
            "volumeType": "sbs_15k",
            "volumeSizeInGb": 50,
            "disableBackup": False,
            "backupScheduleFrequency": 12,
            "backupScheduleRetention": 7,
        },
    )
    by_ref = {line.ref: line for line in budget.estimate([db]).lines}
    assert by_ref["rdbNodeTypes/DB-PRO2-XXS"].low == 2
    assert by_ref["services/rdb-volume-sbs_15k"].low == 50
    assert by_ref["services/rdb-backup-storage"].low == 50 * 14  # 7 days of two backups a day


def test_a_load_balancer_service_without_its_type_is_not_free() -> None:
    service = Resource(
        "kubernetes:core/v1:Service", "svc", {"spec": {"type": "LoadBalancer"}, "metadata": {}}
    )
    (line,) = budget.estimate([service]).lines
    assert line.price is None and "annotation" in (line.problem or "")
    typed = replace(
        service, inputs={**service.inputs, "metadata": {"annotations": {budget.LB_TYPE_ANNOTATION: "LB-S"}}}
    )
    (priced,) = budget.estimate([typed]).lines
    assert priced.price is not None
    assert budget.estimate([replace(service, inputs={"spec": {"type": "ClusterIP"}})]).lines == ()


def test_the_copied_names_match_the_components() -> None:
    assert budget.LB_TYPE_ANNOTATION == ingress.LB_TYPE_ANNOTATION
    assert budget.APP_LABEL == labels.APP


def test_usage_assumptions_drive_their_lines() -> None:
    metrics = Resource("scaleway:observability/source:Source", "m", {"type": "metrics", "retentionDays": 31})
    (line,) = budget.estimate([metrics], UsageAssumptions(metrics_samples_per_second=100)).lines
    # 100 samples/s x 3600 s x 730 h = 262.8 million samples, at 0.15 EUR per million.
    assert line.low == Decimal("262.8") and cost.money(line.monthly_low) == "39.42"
    assert "100 samples/s" in line.note
    longer = replace(metrics, inputs={"type": "metrics", "retentionDays": 41})
    kept = budget.estimate([longer], UsageAssumptions(metrics_samples_per_second=100)).lines[1]
    # 100 samples/s x 86400 s = 0.864 x 10 million samples a day, kept 10 days beyond the free 31.
    assert kept.ref == "services/cockpit-metrics-retention" and kept.low == Decimal("8.64")


@pytest.mark.parametrize(
    ("quantity", "cores"), [("800m", Decimal("0.8")), ("2", Decimal(2)), (1.5, Decimal("1.5")), ("0", 0)]
)
def test_cpu_quantities(quantity: Any, cores: Decimal) -> None:
    assert budget.cpu_quantity(quantity) == cores


@pytest.mark.parametrize(
    ("quantity", "gib"), [("768Mi", Decimal("0.75")), ("1Gi", Decimal(1)), ("2048Mi", Decimal(2)), ("0", 0)]
)
def test_memory_quantities(quantity: str, gib: Decimal) -> None:
    assert budget.memory_gib(quantity) == gib


def test_bad_quantities_are_refused() -> None:
    with pytest.raises(ValueError, match="not a CPU quantity"):
        budget.cpu_quantity("1Gi")
    with pytest.raises(ValueError, match="not a memory quantity"):
        budget.memory_gib("lots")


# --------------------------------------------------------------------------------------------
# The table, JSON and the command
# --------------------------------------------------------------------------------------------


def _synthetic() -> cost.StackCost:
    database = Resource(
        "scaleway:databases/instance:Instance", "db", {"nodeType": "DB-DEV-S", "volumeType": "lssd"}
    )
    estimate = budget.estimate([pool(), database, Resource("scaleway:loadbalancers/ip:Ip", "ip")])
    return cost.StackCost(stack="demo", estimate=estimate, budget=BudgetSettings(monthly_eur=3000))


def test_the_table_is_deterministic_and_fixed_decimal() -> None:
    first = cost.render(_synthetic())
    assert first == cost.render(_synthetic())
    assert first[0] == (
        "Monthly cost of stack demo: list prices in EUR excluding VAT, hourly prices x 730 h; traffic, "
        "support plans and discounts excluded (docs/cost.md)"
    )
    assert first[1].split() == [
        *("resource", "item", "qty", "min", "qty", "max", "unit", "EUR/unit"),
        *("min/month", "max/month", "price", "as", "of"),
    ]
    rows = [line.split("  ") for line in first[2:6]]
    assert [next(cell.strip() for cell in row if cell.strip()) for row in rows] == [
        "apps",
        "apps",
        "db",
        "db",
    ]
    assert first[2].split()[-8:] == [
        "3.00",
        "9.00",
        "node",
        "326.134800",
        "978.40",
        "2935.21",
        "2026-06-23",
        "scaleway",
    ]
    assert "total (3 priced line(s)): min 1001.44 EUR/month, max 2997.01 EUR/month" in first
    assert "budget: platform:budget.monthlyEur 3000.00 EUR: the maximum fits (99.9% of it)" in first
    assert first[
        first.index("INCOMPLETE: 3 problem(s); the totals cover the priced lines only:") + 1
    ].startswith("  - rdbNodeTypes/DB-DEV-S: db (DB-DEV-S nodes): No stored public page")


def test_the_json_is_stable_and_carries_the_sources() -> None:
    document = cost.as_json(_synthetic())
    assert json.dumps(document, sort_keys=True) == json.dumps(cost.as_json(_synthetic()), sort_keys=True)
    node = document["lines"][0]
    assert node["quantity"] == {"min": 3, "max": 9} and node["monthly"] == {"min": 978.4, "max": 2935.21}
    assert (node["publisher"], node["priceChecked"], node["unitPrice"]) == (
        "scaleway",
        "2026-06-23",
        326.1348,
    )
    assert node["source"].startswith("https://github.com/scaleway/terraform-provider-scaleway/")
    assert document["total"] == {"min": 1001.44, "max": 2997.01} and document["complete"] is False
    assert document["budget"] == {"monthlyEur": 3000, "exceeded": False}


def test_cost_command_fails_loudly_on_unpriced_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["dev"]) == 2
    out, err = capsys.readouterr()
    assert "services/secret-manager-version" in out and "rdbNodeTypes/DB-DEV-S" in out
    assert err == "stack 'dev': 6 problem(s) (see above)\n"


def test_cost_json_and_all(capsys: pytest.CaptureFixture[str], costs: dict[str, cost.StackCost]) -> None:
    assert cost.main(["--all", "--json"]) == 2
    document = json.loads(capsys.readouterr().out)
    stacks = {s["stack"]: s for s in document["stacks"]}
    assert sorted(stacks) == runner.stack_names()
    assert document["grandTotal"] == {
        "min": float(cost.money(sum((c.estimate.minimum for c in costs.values()), Decimal(0)))),
        "max": float(cost.money(sum((c.estimate.maximum for c in costs.values()), Decimal(0)))),
    }
    for stack, stack_cost in costs.items():
        assert stacks[stack]["total"] == {
            "min": float(cost.money(stack_cost.estimate.minimum)),
            "max": float(cost.money(stack_cost.estimate.maximum)),
        }
        assert stacks[stack]["budget"] == {
            "monthlyEur": runner.read_stack_config(stack)["platform:budget"]["monthlyEur"],
            "exceeded": False,
        }


def test_cost_all_prints_the_grand_total(
    capsys: pytest.CaptureFixture[str], costs: dict[str, cost.StackCost]
) -> None:
    assert cost.main(["--all"]) == 2
    out = capsys.readouterr().out
    low = sum((c.estimate.minimum for c in costs.values()), Decimal(0))
    high = sum((c.estimate.maximum for c in costs.values()), Decimal(0))
    assert out.splitlines()[-1] == (
        f"grand total (3 stack(s), priced lines): min {cost.money(low)} EUR/month, max {cost.money(high)} "
        "EUR/month; incomplete: dev, prod, tooling"
    )


def test_cost_command_needs_one_stack_or_all() -> None:
    with pytest.raises(SystemExit) as exit_:
        cost.main([])
    assert exit_.value.code == 2


def test_cost_command_on_a_missing_stack_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["no-such-stack"]) == 2
    assert "no stack file Pulumi.no-such-stack.yaml" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The budget gate of `make plan`
# --------------------------------------------------------------------------------------------


@pytest.fixture
def stack_file(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[str, Any]], None]:
    """Make ``runner.read_stack_config`` hand over an altered copy of one stack's file."""
    real = runner.read_stack_config

    def alter(stack: str, changes: dict[str, Any]) -> None:
        def read(name: str, root: Path = runner.ROOT) -> dict[str, Any]:
            config = real(name, root)
            return {**config, **copy.deepcopy(changes)} if name == stack else config

        monkeypatch.setattr(runner, "read_stack_config", read)

    return alter


def test_plan_fails_when_the_maximum_exceeds_the_budget(
    stack_file: Callable[[str, dict[str, Any]], None],
    capsys: pytest.CaptureFixture[str],
    costs: dict[str, cost.StackCost],
) -> None:
    estimate = costs["dev"].estimate
    limit = (estimate.maximum - 1).quantize(Decimal(1))
    stack_file("dev", {"platform:budget": {"monthlyEur": float(limit)}})
    assert offline_plan.main(["dev"]) == 2
    out, err = capsys.readouterr()
    assert f"budget: platform:budget.monthlyEur {cost.money(limit)} EUR: EXCEEDED by the maximum" in out
    top = estimate.top()[0]
    assert err.startswith(
        f"stack 'dev': the estimated maximum {cost.money(estimate.maximum)} EUR/month exceeds "
        f"platform:budget.monthlyEur {cost.money(limit)} EUR; top line items at the maximum: "
        f"{top.resource} {top.item} {cost.money(top.monthly_high)}"
    )
    assert "Traceback" not in err


def test_plan_passes_and_lists_what_it_cannot_price(capsys: pytest.CaptureFixture[str]) -> None:
    assert offline_plan.main(["dev"]) == 0
    budget_section = capsys.readouterr().out.split("\nBudget:\n", 1)[1]
    assert "the maximum fits" in budget_section
    assert "  - dev-postgres-instance: DB-DEV-S nodes (rdbNodeTypes/DB-DEV-S)" in budget_section


def test_plan_without_a_budget_says_so(
    stack_file: Callable[[str, dict[str, Any]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file("dev", {"platform:budget": None})
    assert offline_plan.main(["dev"]) == 0
    assert "budget: none (platform:budget is not set)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"monthlyEur": -5}, "platform:budget.monthlyEur: Input should be greater than 0 (got -5)"),
        ({"monthlyEur": "lots"}, "platform:budget.monthlyEur: Input should be a valid number (got 'lots')"),
        ({"monthlyEur": True}, "platform:budget.monthlyEur: Input should be a valid number (got True)"),
        ({}, "platform:budget.monthlyEur: required"),
        (
            {"monthlyEur": 10, "monthly": 5},
            "platform:budget.monthly: unknown key (allowed: monthlyEur, usage)",
        ),
        (
            {"monthlyEur": 10, "usage": {"logsGbPerDay": -1}},
            "platform:budget.usage.logsGbPerDay: Input should be greater than or equal to 0 (got -1)",
        ),
    ],
)
def test_a_bad_budget_is_a_config_error(
    value: Any,
    problem: str,
    stack_file: Callable[[str, dict[str, Any]], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack_file("dev", {"platform:budget": value})
    assert offline_plan.main(["dev"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was planned, as for every configuration error
    assert f"  - {problem}" in captured.err, captured.err
    assert "Traceback" not in captured.err


def test_budget_of_names_the_key() -> None:
    with pytest.raises(cost.BudgetError) as caught:
        cost.budget_of("dev", {"platform:budget": {"monthlyEur": 0}})
    assert caught.value.problems == ["platform:budget.monthlyEur: Input should be greater than 0 (got 0)"]
    assert cost.budget_of("dev", {}) is None


def test_a_commercial_type_missing_from_the_catalogue_is_a_config_error(
    stack_file: Callable[[str, dict[str, Any]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    config = runner.read_stack_config("dev")
    stack_file("dev", {"platform:ingress": {**config["platform:ingress"], "loadBalancerType": "LB-XXL"}})
    assert offline_plan.main(["dev"]) == 2
    err = capsys.readouterr().err
    assert "  - platform:ingress.loadBalancerType: unknown type 'LB-XXL'" in err


@pytest.fixture
def broken_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The committed catalogue, with one price that lost its source and date."""
    document = yaml.safe_load(catalogue.DEFAULT_PATH.read_text())
    lb = next(e for e in document["loadBalancerTypes"]["entries"] if e["name"] == "LB-S")
    del lb["prices"]["source"], lb["prices"]["checked"]
    path = tmp_path / "scaleway.yaml"
    path.write_text(yaml.safe_dump(document))
    monkeypatch.setattr(catalogue, "DEFAULT_PATH", path)
    catalogue._load_default.cache_clear()
    yield
    catalogue._load_default.cache_clear()


@pytest.mark.usefixtures("broken_catalogue")
def test_a_price_without_source_or_date_fails_the_plan_and_the_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert offline_plan.main(["dev"]) == 2
    assert cost.main(["dev"]) == 2
    err = capsys.readouterr().err
    for field_ in ("source", "checked"):
        assert f"  - loadBalancerTypes: entry 'LB-S': no prices.{field_}" in err
    assert "Traceback" not in err


def test_gate_fails_on_an_unclassified_type(committed_plans: dict[str, runner.Plan]) -> None:
    plan = committed_plans["dev"]
    stray = replace(plan.registrations[0], type="scaleway:instance/server:Server", name="stray", read=False)
    verdict = cost.gate(
        replace(plan, registrations=[*plan.registrations, stray]), runner.read_stack_config("dev")
    )
    assert verdict.failure == (
        "stack 'dev': 1 resource(s) have no cost rule (scw_platform/budget.py): "
        "stray (scaleway:instance/server:Server)"
    )


# --------------------------------------------------------------------------------------------
# The policy pack's stack-budget rule, offline and through CrossGuard
# --------------------------------------------------------------------------------------------


def _view(plan: runner.Plan, budget_: dict[str, Any] | None) -> StackView:
    from offline import artifacts

    inventory = json.loads(json.dumps(artifacts.inventory(plan)))
    return rules.inventory_view(inventory, "production", budget=budget_)


def test_the_rule_fails_the_committed_prod_plan_over_a_small_budget(
    committed_plans: dict[str, runner.Plan], costs: dict[str, cost.StackCost]
) -> None:
    rule = rules.RULES_BY_NAME["stack-budget"]
    estimate = costs["prod"].estimate
    (violation,) = rule.evaluate(_view(committed_plans["prod"], {"monthlyEur": 1000}))
    top = estimate.top()
    assert violation.urn.endswith(f"::{top[0].resource}")
    assert violation.message == (
        f"the estimated maximum {cost.money(estimate.maximum)} EUR/month exceeds the budget (monthlyEur "
        "1000.00 EUR); top line items at the maximum: "
        + "; ".join(f"{line.resource} {line.item} {cost.money(line.monthly_high)}" for line in top)
    )
    committed = runner.read_stack_config("prod")["platform:budget"]
    assert rule.evaluate(_view(committed_plans["prod"], committed)) == []
    assert rule.evaluate(_view(committed_plans["prod"], None)) == []


def test_the_rule_agrees_with_the_gate_on_every_committed_stack(
    committed_plans: dict[str, runner.Plan], costs: dict[str, cost.StackCost]
) -> None:
    rule = rules.RULES_BY_NAME["stack-budget"]
    for stack, plan in committed_plans.items():
        tight = {"monthlyEur": float(costs[stack].estimate.maximum) - 1}
        assert rule.evaluate(_view(plan, tight)), stack
        assert rule.evaluate(_view(plan, runner.read_stack_config(stack)["platform:budget"])) == [], stack


def test_the_rule_reports_an_invalid_budget_and_unknown_types() -> None:
    rule = rules.RULES_BY_NAME["stack-budget"]
    apps = ResourceView(urn="urn:apps", type=POOL, name="apps", inputs=pool().inputs)
    stray = ResourceView(urn="urn:stray", type="scaleway:instance/server:Server", name="stray")
    found = rule.evaluate(StackView(resources=(apps, stray), budget={"monthlyEur": "lots"}))
    assert [v.message for v in found] == ["budget.monthlyEur: Input should be a valid number"]
    found = rule.evaluate(StackView(resources=(apps, stray), budget={"monthlyEur": 5000}))
    assert [(v.urn, v.message) for v in found] == [
        ("urn:stray", "stray (scaleway:instance/server:Server): no cost rule knows this resource type")
    ]


def test_crossguard_reads_the_budget_from_the_policy_config() -> None:
    from pulumi_policy import StackValidationPolicy

    policy = {p.name: p for p in crossguard.policies()}["stack-budget"]
    assert isinstance(policy, StackValidationPolicy)
    assert policy.config_schema is not None and "budget" in policy.config_schema.properties

    class Args:
        def __init__(self, config: dict[str, Any]) -> None:
            self.resources: list[Any] = []
            self._config = config

        def get_config(self) -> dict[str, Any]:
            return self._config

    view = crossguard.stack_view(Args({"budget": {"monthlyEur": 1000}}))  # type: ignore[arg-type]
    assert view.budget == {"monthlyEur": 1000}
    assert crossguard.stack_view(Args({})).budget is None  # type: ignore[arg-type]


def test_budget_settings_defaults_are_documented_assumptions() -> None:
    settings = BudgetSettings.model_validate({"monthlyEur": 100})
    assert settings.usage == UsageAssumptions()
    for name, info in UsageAssumptions.model_fields.items():
        assert "assumed" in (info.description or ""), name

"""SLO settings and the rules generated from them (scw_platform/slo.py).

What the rules do over time is promtool's to prove (tests/integration/test_slo_rules.py); here:
the settings refuse what they should with a message under the right key, and the generated group
has the names, labels, thresholds and annotations the alerts page with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from scw_platform import ingress
from scw_platform.slo import (
    FAST_BURN,
    RECORDED_WINDOWS,
    RULE_GROUP,
    RUNBOOK,
    SLOW_BURN,
    SloSettings,
    SloTarget,
    recorded,
    slo_rule_groups,
    traefik_service,
)

PROMTOOL = shutil.which("promtool")


def _problems(raw: dict[str, Any]) -> list[str]:
    """The settings' errors as the program prints them: ``key: message``."""
    with pytest.raises(ValidationError) as caught:
        SloSettings.model_validate(raw)
    errors = caught.value.errors()
    return [
        ".".join(to_camel(p) if isinstance(p, str) else str(p) for p in e["loc"])
        + ": "
        + (str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"])
        for e in errors
    ]


def _target(app: str = "web", availability: float = 99.9, window_days: int = 30, **kw: Any) -> SloTarget:
    fields: dict[str, Any] = {"namespace": app, "hostname": f"{app}.example.org", "port": 8080, **kw}
    return SloTarget(app=app, slo=SloSettings(availability=availability, window_days=window_days), **fields)


def _rules(*targets: SloTarget) -> list[dict[str, Any]]:
    (group,) = slo_rule_groups(targets)
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def _alert(rules: list[dict[str, Any]], name: str, app: str = "web") -> dict[str, Any]:
    (alert,) = [r for r in rules if r.get("alert") == name and r["labels"]["app"] == app]
    return alert


# --- Settings ---------------------------------------------------------------------------------------


def test_an_objective_reads_from_camel_case_and_defaults_to_30_days() -> None:
    slo = SloSettings.model_validate({"availability": 99.9, "windowDays": 7})
    assert (slo.availability, slo.window_days) == (99.9, 7)
    assert SloSettings.model_validate({"availability": 99}).window_days == 30


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "strictly between 0 and 100 percent, e.g. 99.9 lets 0.1% fail (got 0)"),
        (100, "strictly between 0 and 100 percent, e.g. 99.9 lets 0.1% fail (got 100)"),
        (-1, "(got -1)"),
        (100.5, "(got 100.5)"),
        ("99.9%", "without quotes or a % sign (got '99.9%')"),
        ("99.9", "without quotes"),
        (True, "a number of percent"),
        (float("nan"), "strictly between 0 and 100"),
    ],
)
def test_an_availability_outside_0_to_100_percent_is_refused_naming_the_key(value: Any, says: str) -> None:
    (problem,) = _problems({"availability": value})
    assert problem.startswith("availability: must be ") and says in problem, problem


SHORT_WINDOW = "over a shorter window the burn-rate alerts page while the objective is still met"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (
            0,
            f"must be at least 7 days (got 0): {SHORT_WINDOW}",
        ),
        (
            6,
            f"must be at least 7 days (got 6): {SHORT_WINDOW}",
        ),
        (91, "must be at most 90 days (got 91)"),
        ("30d", "must be a whole number of days like 30, not a duration (got '30d')"),
        ("30", "must be a whole number of days like 30, not a duration (got '30')"),
        (7.5, "must be a whole number of days like 30 (got 7.5)"),
        (30.0, "must be a whole number of days like 30 (got 30.0)"),
        (True, "must be a whole number of days like 30 (got True)"),
    ],
)
def test_a_window_not_in_whole_days_is_refused_naming_the_key(value: Any, says: str) -> None:
    assert _problems({"availability": 99.9, "windowDays": value}) == [f"windowDays: {says}"]


def test_an_unknown_or_missing_key_is_named() -> None:
    assert _problems({"availability": 99.9, "window": 30}) == ["window: Extra inputs are not permitted"]
    assert _problems({"windowDays": 30}) == ["availability: Field required"]


def test_every_field_is_documented_for_the_configuration_reference() -> None:
    for name, field in SloSettings.model_fields.items():
        assert field.description and len(field.description) > 40, name


# --- Generated rules ---------------------------------------------------------------------------------


def test_one_group_per_evaluation_minute_and_none_without_objectives() -> None:
    (group,) = slo_rule_groups([_target("web"), _target("shop")])
    assert (group["name"], group["interval"]) == (RULE_GROUP, "1m") == ("platform-slo", "1m")
    assert slo_rule_groups([]) == []


def test_each_app_records_both_sources_over_four_windows_and_has_two_alerts() -> None:
    rules = _rules(_target("web"), _target("shop"))
    for app in ("web", "shop"):
        mine = [r for r in rules if r["labels"]["app"] == app]
        records = {(r["record"], r["labels"]["source"]) for r in mine if "record" in r}
        assert records == {(recorded(w), s) for w in RECORDED_WINDOWS for s in ("traefik", "probe")}
        assert RECORDED_WINDOWS == ("5m", "30m", "1h", "6h")
        assert recorded("5m") == "app:slo_errors_per_request:ratio_rate5m"
        assert [r["alert"] for r in mine if "alert" in r] == [
            "SLOErrorBudgetFastBurn",
            "SLOErrorBudgetSlowBurn",
        ]
        for rule in mine:
            assert rule["labels"]["namespace"] == app, rule


def test_the_traefik_ratio_selects_the_routes_backend_and_never_divides_by_zero() -> None:
    rules = _rules(_target("web", port=8080))
    (ratio,) = [r for r in rules if r.get("record") == recorded("1h") and r["labels"]["source"] == "traefik"]
    service = 'service="web-web-http-8080@kubernetesgateway"'
    assert ratio["expr"] == (
        f'(sum(rate(traefik_service_requests_total{{{service}, code=~"5.."}}[1h])) or vector(0))\n'
        "/\n"
        f"(sum(rate(traefik_service_requests_total{{{service}}}[1h])) > 0)\n"
    )


def test_the_probe_ratio_selects_the_apps_url_from_the_blackbox_job() -> None:
    rules = _rules(_target("web", hostname="www.example.org"))
    (ratio,) = [r for r in rules if r.get("record") == recorded("5m") and r["labels"]["source"] == "probe"]
    assert ratio["expr"] == (
        '1 - avg(avg_over_time(probe_success{job="blackbox", instance="https://www.example.org/"}[5m]))\n'
    )


@pytest.mark.parametrize(
    ("namespace", "app", "port", "service"),
    [
        ("web", "web", 8080, "web-web-http-8080@kubernetesgateway"),
        # Traefik's Normalize joins runs of letters and digits: a double dash collapses.
        ("a--b", "a--b", 80, "a-b-a-b-http-80@kubernetesgateway"),
    ],
)
def test_the_traefik_service_label_is_the_kubernetesgateway_providers_name(
    namespace: str, app: str, port: int, service: str
) -> None:
    assert traefik_service(_target(app, namespace=namespace, port=port)) == service


def test_the_service_form_is_the_one_of_the_pinned_traefik_line() -> None:
    # The "-http" infix is Traefik v3.7's (scw_platform/slo.py): another line must re-check it.
    assert re.fullmatch(r"v3\.7\.\d+", ingress.TRAEFIK_IMAGE_TAG), ingress.TRAEFIK_IMAGE_TAG


def test_thresholds_for_99_9_over_30_days_are_the_workbooks() -> None:
    rules = _rules(_target(availability=99.9, window_days=30))
    fast, slow = _alert(rules, "SLOErrorBudgetFastBurn"), _alert(rules, "SLOErrorBudgetSlowBurn")
    assert fast["expr"] == (
        'app:slo_errors_per_request:ratio_rate1h{app="web", namespace="web"} > (14.4 * 0.001)\n'
        "and\n"
        'app:slo_errors_per_request:ratio_rate5m{app="web", namespace="web"} > (14.4 * 0.001)\n'
    )
    assert slow["expr"] == (
        'app:slo_errors_per_request:ratio_rate6h{app="web", namespace="web"} > (6 * 0.001)\n'
        "and\n"
        'app:slo_errors_per_request:ratio_rate30m{app="web", namespace="web"} > (6 * 0.001)\n'
    )
    assert (fast["for"], slow["for"]) == ("2m", "15m")


@pytest.mark.parametrize(
    ("availability", "window_days", "fast", "slow"),
    [
        # 2% of a 168-hour budget within 1 hour, 5% within 6 hours.
        (99.5, 7, "(3.36 * 0.005)", "(1.4 * 0.005)"),
        (99.95, 28, "(13.44 * 0.0005)", "(5.6 * 0.0005)"),
        (99, 90, "(43.2 * 0.01)", "(18 * 0.01)"),
    ],
)
def test_thresholds_scale_with_the_window_to_keep_their_share_of_the_budget(
    availability: float, window_days: int, fast: str, slow: str
) -> None:
    rules = _rules(_target(availability=availability, window_days=window_days))
    assert _alert(rules, "SLOErrorBudgetFastBurn")["expr"].count(f"> {fast}\n") == 2
    assert _alert(rules, "SLOErrorBudgetSlowBurn")["expr"].count(f"> {slow}\n") == 2
    for alert, share in ((FAST_BURN, Decimal("0.02")), (SLOW_BURN, Decimal("0.05"))):
        assert alert.factor(window_days) * alert.long_hours / (window_days * 24) == share


def test_both_alerts_page_and_name_app_objective_window_and_burn_rate() -> None:
    rules = _rules(_target("shop", availability=99.5, window_days=7))
    for name, factor, share, within in (
        ("SLOErrorBudgetFastBurn", "3.36", "2%", "within an hour"),
        ("SLOErrorBudgetSlowBurn", "1.4", "5%", "within 6 hours"),
    ):
        alert = _alert(rules, name, "shop")
        assert alert["labels"] == {"severity": "critical", "app": "shop", "namespace": "shop"}
        summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
        assert summary.startswith("App shop spends its error budget") and f"over {factor} times" in summary
        assert "{{ $labels.source }}" in summary
        for needle in (
            "App shop (namespace shop)",
            "{{ $value | humanizePercentage }}",
            f"a burn rate over {factor}",
            f"{share} of the error budget of its 99.5% SLO over 7 days spent {within}",
        ):
            assert needle in description, (needle, description)


def test_the_runbook_is_a_section_of_the_alerts_page() -> None:
    assert RUNBOOK == "docs/runbooks/alerts.md#sloerrorbudgetburn"
    for rule in _rules(_target()):
        if "alert" in rule:
            assert re.fullmatch(r"docs/runbooks/alerts\.md#[a-z0-9-]+", rule["annotations"]["runbook"])
            assert rule["annotations"]["runbook"] == RUNBOOK


def test_two_objectives_for_one_app_are_refused() -> None:
    with pytest.raises(ValueError, match="more than one objective for app web"):
        slo_rule_groups([_target("web"), _target("web")])


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("app", 'web"}', "app 'web\"}' is not a DNS label"),
        ("namespace", "Web", "namespace 'Web' is not a DNS label"),
        ("hostname", 'www.example.org"', "is not a hostname"),
        ("port", 0, "port 0 is not a TCP port"),
    ],
)
def test_a_target_that_would_break_a_promql_string_is_refused(field: str, value: Any, says: str) -> None:
    fields: dict[str, Any] = {"app": "web", "namespace": "web", "hostname": "www.example.org", "port": 80}
    with pytest.raises(ValueError, match=re.escape(says)):
        SloTarget(**{**fields, field: value}, slo=SloSettings(availability=99.9))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's prometheus package")
def test_every_generated_expression_parses(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    targets = [_target("web"), _target("shop", availability=99.5, window_days=7, hostname="shop.example.org")]
    path = tmp_path / "slo-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": slo_rule_groups(targets)}))
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {2 * (2 * len(RECORDED_WINDOWS) + 2)} rules found" in proc.stdout, proc.stdout

"""The generated SLO rules, proven by promtool for two objectives: 99.9% over 30 days, 99% over 7.

Each test writes the rule group :func:`scw_platform.slo.slo_rule_groups` generates for two apps
(``web``, whose series the test feeds, and ``shop``, which has none and must never alert) and one
promtool unit test, then runs ``promtool test rules``. Series are sampled every 30 s, the blackbox
probe interval; Traefik's counters serve 10,000 requests per 30 s and count from 0 at t = 0.

Where an alert must fire, the test states its annotations exactly, with ``$value`` (the long
window's error ratio) worked out by hand: it asserts at a time when the long window still reaches
back to t = 0, so the ratio is the cumulative errors over the cumulative requests (or failed
probes over probes), whatever the Prometheus version's range boundaries.

The "short blip" is 30 seconds of total failure (one probe interval). Two minutes of total failure
is not a blip for a 99.9% monthly objective: it spends 4.6% of the budget within the hour, above the
2% the fast burn pages on (SRE workbook, "Alerting on SLOs"), and the last test shows it pages.

promtool ships in Debian's ``prometheus`` package (.ci/run installs it); without it, these skip.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest
import yaml

from scw_platform.slo import (
    FAST_BURN,
    SLOW_BURN,
    BurnRateAlert,
    SloSettings,
    SloTarget,
    recorded,
    slo_rule_groups,
)

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian's prometheus package (.ci/run does)"
)

#: Samples per minute (every 30 s).
PER_MINUTE = 2
#: Requests Traefik serves the app per 30 s, and 5xx among them while healthy (0.01%).
REQUESTS = 10_000
HEALTHY_ERRORS = 1
#: Minutes of healthy traffic before a fast burn (the 1 h window still reaches t = 0 when it pages)
#: and before a slow burn or a blip (a 30 s blip is then 0.4% of the data so far, under 0.6%).
FAST_HISTORY = 20
HISTORY = 120


@dataclass(frozen=True, kw_only=True)
class RuleSet:
    """An objective, and burns worked out against its thresholds."""

    availability: float
    window_days: int
    #: 5xx per 30 s (of REQUESTS): above the fast threshold, and between the slow and fast ones.
    fast_errors: int
    slow_errors: int
    #: Every n-th probe fails: above the fast threshold; one probe in n fails: between.
    probe_fast_every: int
    probe_slow_every: int
    #: Minutes at which the slow burn of each source is still silent, and firing.
    slow_silent: int
    slow_firing: int
    probe_slow_silent: int
    probe_slow_firing: int

    @property
    def id(self) -> str:
        return f"{self.availability:g}-{self.window_days}d"


RULE_SETS = [
    # Fast 14.4 * 0.001 = 1.44%, slow 6 * 0.001 = 0.6%. Traefik: 20% burns; 1.2% crosses 0.6% over
    # the data so far at 3h58m and pages 15 minutes later. Probes: one in five fails; one an hour
    # (0.83%) pages only after four, at 5h16m (the three first dilute below 0.6% within 9 minutes).
    RuleSet(
        availability=99.9,
        window_days=30,
        fast_errors=2_000,
        slow_errors=120,
        probe_fast_every=5,
        probe_slow_every=120,
        slow_silent=210,
        slow_firing=270,
        probe_slow_silent=250,
        probe_slow_firing=320,
    ),
    # Fast 3.36 * 0.01 = 3.36%, slow 1.4 * 0.01 = 1.4%. Traefik: 50% burns; 2.5% crosses 1.4% at
    # 4h32m and pages at 4h47m. Probes: every other one fails; one in 40 (2.5%) keeps the 6 h ratio
    # above 1.4% from the eighth failure, at 4h21m, and pages at 4h36m.
    RuleSet(
        availability=99,
        window_days=7,
        fast_errors=5_000,
        slow_errors=250,
        probe_fast_every=2,
        probe_slow_every=40,
        slow_silent=255,
        slow_firing=315,
        probe_slow_silent=250,
        probe_slow_firing=285,
    ),
]

#: web's route backend as Traefik v3.7 names it (scw_platform.slo, module docstring).
WEB_SERVICE = "web-web-http-8080@kubernetesgateway"


def _targets(rules: RuleSet) -> list[SloTarget]:
    slo = SloSettings(availability=rules.availability, window_days=rules.window_days)
    return [
        SloTarget(app="web", namespace="web", hostname="www.example.org", port=8080, slo=slo),
        SloTarget(app="shop", namespace="shop", hostname="shop.example.org", port=3000, slo=slo),
    ]


def _requests(code: str, service: str = WEB_SERVICE) -> str:
    return (
        f'traefik_service_requests_total{{service="{service}", code="{code}", method="GET", protocol="http"}}'
    )


def _probe(instance: str = "https://www.example.org/", job: str = "blackbox") -> str:
    return f'probe_success{{job="{job}", instance="{instance}"}}'


def _values(samples: Sequence[int]) -> str:
    """promtool's expanding notation: each run of equal steps as ``a+bxn`` (n + 1 samples)."""
    parts: list[str] = []
    i = 0
    while i < len(samples):
        step = samples[i + 1] - samples[i] if i + 1 < len(samples) else 0
        j = i
        while j + 1 < len(samples) and samples[j + 1] - samples[j] == step:
            j += 1
        parts.append(f"{samples[i]}{'+' if step >= 0 else '-'}{abs(step)}x{j - i}")
        i = j + 1
    return " ".join(parts)


def _counter(increments: Sequence[int]) -> str:
    return _values([0, *accumulate(increments)])


def _traefik(errors: Sequence[int], *, not_found: int = 0) -> list[dict[str, str]]:
    """The app's 503, 404 and 200 counters, ``errors[i]`` 5xx in the i-th 30 s."""
    series = [
        {"series": _requests("503"), "values": _counter(errors)},
        {"series": _requests("200"), "values": _counter([REQUESTS - e - not_found for e in errors])},
    ]
    if not_found:
        series.append({"series": _requests("404"), "values": _counter([not_found] * len(errors))})
    return series


def _minutes(minutes: int, errors: int = HEALTHY_ERRORS) -> list[int]:
    return [errors] * (minutes * PER_MINUTE)


def _error_ratio(errors: Sequence[int], minute: int) -> float:
    """The 5xx share since t = 0: what a window reaching back before t = 0 records at ``minute``."""
    return sum(errors[: minute * PER_MINUTE]) / (minute * PER_MINUTE * REQUESTS)


def _failed_ratio(probes: Sequence[int], minute: int) -> float:
    """The failed share of the probes since t = 0 (both ends included) at ``minute``."""
    seen = probes[: minute * PER_MINUTE + 1]
    return seen.count(0) / len(seen)


def _alert_labels(source: str) -> dict[str, str]:
    return {"severity": "critical", "app": "web", "namespace": "web", "source": source}


def _firing(rules: RuleSet, alert: BurnRateAlert, minute: int, source: str, ratio: float) -> dict[str, Any]:
    """An alert test: ``alert`` fires for web at ``minute``, its long-window ratio ``ratio``."""
    (rule,) = [
        r
        for r in slo_rule_groups(_targets(rules))[0]["rules"]
        if r.get("alert") == alert.name and r["labels"]["app"] == "web"
    ]
    rendered = {
        key: text.replace("{{ $labels.source }}", source).replace(
            "{{ $value | humanizePercentage }}", f"{ratio * 100:.4g}%"
        )
        for key, text in rule["annotations"].items()
    }
    return {
        "eval_time": f"{minute}m",
        "alertname": alert.name,
        "exp_alerts": [{"exp_labels": _alert_labels(source), "exp_annotations": rendered}],
    }


def _silent(minute: int, *alerts: BurnRateAlert) -> list[dict[str, Any]]:
    return [{"eval_time": f"{minute}m", "alertname": a.name, "exp_alerts": []} for a in alerts]


def _count(expr: str, minute: int, count: int = 1) -> dict[str, Any]:
    return {"expr": f"count({expr})", "eval_time": f"{minute}m", "exp_samples": [{"value": count}]}


def _ratio(window: str, source: str, app: str = "web") -> str:
    return f'{recorded(window)}{{app="{app}", source="{source}"}}'


def _threshold(rules: RuleSet, alert: BurnRateAlert) -> float:
    return float(alert.factor(rules.window_days)) * (100 - rules.availability) / 100


def _run(tmp_path: Path, rules: RuleSet, test: dict[str, Any]) -> None:
    assert PROMTOOL is not None
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": slo_rule_groups(_targets(rules))}))
    unit = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{"interval": "30s", **test}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


parametrize = pytest.mark.parametrize("rules", RULE_SETS, ids=[r.id for r in RULE_SETS])


# --- Traefik's 5xx share ---------------------------------------------------------------------------


@parametrize
def test_a_fast_burn_of_5xx_pages_within_minutes(tmp_path: Path, rules: RuleSet) -> None:
    # The hour's ratio crosses the fast threshold 2 minutes in: pending, then firing 2 minutes later.
    # The slow pair, past its threshold from the first minute, holds 15 minutes before it pages.
    errors = _minutes(FAST_HISTORY) + _minutes(40, rules.fast_errors)
    _run(
        tmp_path,
        rules,
        {
            "input_series": _traefik(errors),
            "alert_rule_test": [
                *_silent(FAST_HISTORY + 1, FAST_BURN),
                _firing(
                    rules, FAST_BURN, FAST_HISTORY + 5, "traefik", _error_ratio(errors, FAST_HISTORY + 5)
                ),
                *_silent(FAST_HISTORY + 10, SLOW_BURN),
                _firing(
                    rules, SLOW_BURN, FAST_HISTORY + 25, "traefik", _error_ratio(errors, FAST_HISTORY + 25)
                ),
            ],
        },
    )


@parametrize
def test_a_slow_burn_of_5xx_pages_within_hours_and_never_as_fast(tmp_path: Path, rules: RuleSet) -> None:
    errors = _minutes(HISTORY) + _minutes(rules.slow_firing - HISTORY + 30, rules.slow_errors)
    at = rules.slow_firing
    _run(
        tmp_path,
        rules,
        {
            "input_series": _traefik(errors),
            "alert_rule_test": [
                *_silent(HISTORY + 5, FAST_BURN, SLOW_BURN),
                *_silent(rules.slow_silent, FAST_BURN, SLOW_BURN),
                _firing(rules, SLOW_BURN, at, "traefik", _error_ratio(errors, at)),
                *_silent(at, FAST_BURN),
            ],
        },
    )


@parametrize
def test_a_healthy_app_is_silent_and_other_backends_do_not_count(tmp_path: Path, rules: RuleSet) -> None:
    errors = _minutes(HISTORY)
    # 100% 5xx on what is not web's route backend: the Service "web" of another namespace, another
    # port of web's Service, and web's Service through another Traefik provider.
    decoys = [
        "other-web-http-8080@kubernetesgateway",
        "web-web-http-9090@kubernetesgateway",
        "web-web-http-8080@kubernetescrd",
    ]
    _run(
        tmp_path,
        rules,
        {
            "input_series": [
                # 0.01% 5xx, and 5% 404s that are the clients', not the app's.
                *_traefik(errors, not_found=REQUESTS // 20),
                *(
                    {"series": _requests("503", d), "values": _counter([REQUESTS] * len(errors))}
                    for d in decoys
                ),
            ],
            "alert_rule_test": [*_silent(60, FAST_BURN, SLOW_BURN), *_silent(HISTORY, FAST_BURN, SLOW_BURN)],
            "promql_expr_test": [
                _count(f"{_ratio(w, 'traefik')} > 0.00009 < 0.00011", 60) for w in ("5m", "30m", "1h", "6h")
            ],
        },
    )


@parametrize
def test_a_30_second_blip_of_5xx_is_silent(tmp_path: Path, rules: RuleSet) -> None:
    errors = [*_minutes(HISTORY), REQUESTS, *_minutes(60)[1:]]
    _run(
        tmp_path,
        rules,
        {
            "input_series": _traefik(errors),
            # The short window sees it; the long windows keep it from paging.
            "promql_expr_test": [
                _count(f"{_ratio('5m', 'traefik')} > {_threshold(rules, FAST_BURN)}", HISTORY + 1),
                _count(f"{_ratio('30m', 'traefik')} > {_threshold(rules, SLOW_BURN)}", HISTORY + 20),
            ],
            "alert_rule_test": [
                test
                for minute in (1, 2, 5, 20, 40)
                for test in _silent(HISTORY + minute, FAST_BURN, SLOW_BURN)
            ],
        },
    )


@parametrize
def test_no_traffic_records_no_ratio_and_is_silent(tmp_path: Path, rules: RuleSet) -> None:
    flat = _values([5_000] * (60 * PER_MINUTE + 1))
    _run(
        tmp_path,
        rules,
        {
            "input_series": [
                {"series": _requests("503"), "values": flat},
                {"series": _requests("200"), "values": flat},
            ],
            # No ratio at all, rather than 0 / 0 = NaN; shop, without any series, neither.
            "promql_expr_test": [
                {"expr": _ratio(w, "traefik", app), "eval_time": "30m", "exp_samples": []}
                for w in ("5m", "1h")
                for app in ("web", "shop")
            ],
            "alert_rule_test": [*_silent(30, FAST_BURN, SLOW_BURN), *_silent(60, FAST_BURN, SLOW_BURN)],
        },
    )


@parametrize
def test_an_app_without_any_5xx_series_records_zero(tmp_path: Path, rules: RuleSet) -> None:
    # Traefik creates a code's series on its first response: an app that never failed has none.
    _run(
        tmp_path,
        rules,
        {
            "input_series": [{"series": _requests("200"), "values": _counter([REQUESTS] * 60 * PER_MINUTE)}],
            "promql_expr_test": [
                {
                    "expr": _ratio(w, "traefik"),
                    "eval_time": "30m",
                    "exp_samples": [
                        {
                            "labels": f'{recorded(w)}{{app="web", namespace="web", source="traefik"}}',
                            "value": 0,
                        }
                    ],
                }
                for w in ("5m", "1h")
            ],
        },
    )


# --- Failed probes ----------------------------------------------------------------------------------


def _probes(samples: int, fails: Any) -> list[int]:
    """``probe_success`` over ``samples`` probes, 0 where ``fails(i)``."""
    return [0 if fails(i) else 1 for i in range(samples)]


@parametrize
def test_a_fast_burn_of_failed_probes_pages_within_minutes(tmp_path: Path, rules: RuleSet) -> None:
    start, every = FAST_HISTORY * PER_MINUTE, rules.probe_fast_every
    probes = _probes(60 * PER_MINUTE + 1, lambda i: i >= start and (i - start) % every == every - 1)
    _run(
        tmp_path,
        rules,
        {
            "input_series": [{"series": _probe(), "values": _values(probes)}],
            "alert_rule_test": [
                *_silent(FAST_HISTORY + 1, FAST_BURN),
                _firing(rules, FAST_BURN, FAST_HISTORY + 5, "probe", _failed_ratio(probes, FAST_HISTORY + 5)),
                *_silent(FAST_HISTORY + 10, SLOW_BURN),
                _firing(
                    rules, SLOW_BURN, FAST_HISTORY + 25, "probe", _failed_ratio(probes, FAST_HISTORY + 25)
                ),
            ],
        },
    )


@parametrize
def test_a_slow_burn_of_failed_probes_pages_within_hours_and_never_as_fast(
    tmp_path: Path, rules: RuleSet
) -> None:
    # One failed probe every n, at half minutes (never on a window's edge), from 2h00m30s.
    first, every = HISTORY * PER_MINUTE + 1, rules.probe_slow_every
    at = rules.probe_slow_firing
    probes = _probes((at + 30) * PER_MINUTE, lambda i: i >= first and (i - first) % every == 0)
    _run(
        tmp_path,
        rules,
        {
            "input_series": [{"series": _probe(), "values": _values(probes)}],
            "alert_rule_test": [
                *_silent(HISTORY + 1, FAST_BURN, SLOW_BURN),
                *_silent(rules.probe_slow_silent, FAST_BURN, SLOW_BURN),
                _firing(rules, SLOW_BURN, at, "probe", _failed_ratio(probes, at)),
                *_silent(at, FAST_BURN),
            ],
        },
    )


@parametrize
def test_healthy_probes_are_silent_and_other_probes_do_not_count(tmp_path: Path, rules: RuleSet) -> None:
    samples = HISTORY * PER_MINUTE + 1
    failing = _values([0] * samples)
    _run(
        tmp_path,
        rules,
        {
            "input_series": [
                {"series": _probe(), "values": _values([1] * samples)},
                # Another URL of the same host, and the same URL probed by another job.
                {"series": _probe("https://www.example.org"), "values": failing},
                {"series": _probe(job="other"), "values": failing},
            ],
            "alert_rule_test": [*_silent(60, FAST_BURN, SLOW_BURN), *_silent(HISTORY, FAST_BURN, SLOW_BURN)],
            "promql_expr_test": [
                {
                    "expr": _ratio(w, "probe"),
                    "eval_time": "60m",
                    "exp_samples": [
                        {
                            "labels": f'{recorded(w)}{{app="web", namespace="web", source="probe"}}',
                            "value": 0,
                        }
                    ],
                }
                for w in ("5m", "30m", "1h", "6h")
            ],
        },
    )


@parametrize
def test_one_failed_probe_is_silent(tmp_path: Path, rules: RuleSet) -> None:
    blip = HISTORY * PER_MINUTE + 1
    probes = _probes((HISTORY + 60) * PER_MINUTE, lambda i: i == blip)
    _run(
        tmp_path,
        rules,
        {
            "input_series": [{"series": _probe(), "values": _values(probes)}],
            "promql_expr_test": [
                _count(f"{_ratio('5m', 'probe')} > {_threshold(rules, FAST_BURN)}", HISTORY + 1),
                _count(f"{_ratio('30m', 'probe')} > {_threshold(rules, SLOW_BURN)}", HISTORY + 20),
            ],
            "alert_rule_test": [
                test
                for minute in (1, 2, 5, 20, 40)
                for test in _silent(HISTORY + minute, FAST_BURN, SLOW_BURN)
            ],
        },
    )


@parametrize
def test_without_probes_the_probe_source_records_nothing(tmp_path: Path, rules: RuleSet) -> None:
    flat = _values([5_000] * (60 * PER_MINUTE + 1))
    _run(
        tmp_path,
        rules,
        {
            # Traffic, but the blackbox exporter is not probing.
            "input_series": [{"series": _requests("200"), "values": flat}],
            "promql_expr_test": [
                {"expr": _ratio(w, "probe"), "eval_time": "30m", "exp_samples": []} for w in ("5m", "1h")
            ],
            "alert_rule_test": [*_silent(30, FAST_BURN, SLOW_BURN), *_silent(60, FAST_BURN, SLOW_BURN)],
        },
    )


def test_two_minutes_of_total_failure_pages_a_monthly_99_9(tmp_path: Path) -> None:
    """4.6% of a 30-day 99.9% budget in one go: more than the 2% within an hour that pages."""
    errors = [*_minutes(HISTORY), *[REQUESTS] * 4, *_minutes(30)]
    firing = 'alertstate="firing", app="web", source="traefik"'
    _run(
        tmp_path,
        RULE_SETS[0],
        {
            "input_series": _traefik(errors),
            "promql_expr_test": [_count(f'ALERTS{{alertname="{FAST_BURN.name}", {firing}}}', HISTORY + 5)],
        },
    )

"""The canary analysis, proven offline: its PromQL against synthetic series with promtool (pass and
fail), and the rendered AnalysisTemplate and Rollout against the Argo Rollouts v1.9.1 CRDs.

Series are sampled every 30 s and the analysis window is the step's pause (10 minutes here); each
test evaluates at minute 20, when the window holds only the steady traffic the test describes.
Traefik's counters count from 0 at t = 0, so a rate over the window is exact for these linear
counters, and so is a ratio of two of them.

Where the analysis passes or fails is decided by the same limit the AnalysisTemplate's
``successCondition`` compares with (``scw_platform.delivery.analysis_limit``): the test asks
promtool for ``(<query>) <= bool <limit>``, 1 when the canary passes, 0 when it fails, and no
sample at all when the canary got no request (which the condition lets pass, ``len(result) == 0``).

promtool ships in Debian's ``prometheus`` package (.ci/run installs it); without it, those skip.
The CRD checks need ../shared/schemas; without it, they skip.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import schemas
from scw_platform import delivery as d
from scw_platform import slo

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian's prometheus package (.ci/run does)"
)
needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(), reason=f"upstream schemas not found at {schemas.schemas_dir()}"
)

SETTINGS = d.DeliverySettings.model_validate(
    {
        "strategy": "canary",
        "steps": [5, 25, 50, 100],
        "pauseMinutes": 10,
        "analysis": [
            {"metric": "successRate", "threshold": 99.5},
            {"metric": "latencyP95", "threshold": 800},
        ],
    }
)
SUCCESS, LATENCY = SETTINGS.analysis
WINDOW = f"{SETTINGS.pause_minutes}m"
CANARY = slo.traefik_backend("website", "website-canary", 8080)
STABLE = slo.traefik_backend("website", "website-stable", 8080)
#: Traefik's default histogram buckets (seconds), as its per-service latency metric has them.
BUCKETS = ("0.1", "0.3", "1.2", "5", "+Inf")
#: 20 minutes of samples every 30 s.
SAMPLES = 40
EVAL = "20m"


def _counter(per_sample: int) -> str:
    return f"0+{per_sample}x{SAMPLES}"


def _labels(service: str, code: str, **extra: str) -> str:
    pairs = {"service": service, "code": code, "method": "GET", "protocol": "http", **extra}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def _requests(service: str, *, ok: int, errors: int) -> list[dict[str, str]]:
    series = [
        {
            "series": slo.TRAEFIK_REQUESTS + _labels(service, "200"),
            "values": _counter(ok),
        }
    ]
    if errors:
        series.append(
            {
                "series": slo.TRAEFIK_REQUESTS + _labels(service, "502"),
                "values": _counter(errors),
            }
        )
    return series


def _histogram(service: str, cumulative: tuple[int, ...]) -> list[dict[str, str]]:
    """Per-30 s increments of each cumulative bucket (``le`` upper bounds, as Prometheus stores them)."""
    return [
        {
            "series": slo.TRAEFIK_DURATION_BUCKETS + _labels(service, "200", le=le),
            "values": _counter(count),
        }
        for le, count in zip(BUCKETS, cumulative, strict=True)
    ]


def _verdict(metric: d.AnalysisMetric) -> str:
    query = d.analysis_query(metric, namespace="website", app="website", port=8080, window=WINDOW)
    return f"({query.strip()}) <= bool {d.analysis_limit(metric):g}"


def _promtool(
    tmp_path: Path, series: list[dict[str, str]], cases: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    assert PROMTOOL is not None
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    unit = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "30s",
                "input_series": series,
                "promql_expr_test": [
                    {"expr": expr, "eval_time": EVAL, "exp_samples": samples} for expr, samples in cases
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


PASS = [{"labels": "{}", "value": 1}]
FAIL = [{"labels": "{}", "value": 0}]


def test_the_limits_are_the_success_conditions() -> None:
    assert d.success_condition(SUCCESS).endswith("result[0] <= 0.005")
    assert d.success_condition(LATENCY).endswith("result[0] <= 0.8")


@needs_promtool
def test_a_healthy_canary_passes_even_beside_a_failing_stable(tmp_path: Path) -> None:
    # 0.2% of the canary's requests fail (limit 0.5%); the stable track fails 10%, which is not
    # the canary's business: the analysis reads the canary's series alone.
    series = _requests(CANARY, ok=998, errors=2) + _requests(STABLE, ok=900, errors=100)
    _promtool(tmp_path, series, [(_verdict(SUCCESS), PASS)])


@needs_promtool
def test_a_canary_with_too_many_5xx_fails(tmp_path: Path) -> None:
    # 1% of the canary's requests fail: twice the limit.
    _promtool(tmp_path, _requests(CANARY, ok=990, errors=10), [(_verdict(SUCCESS), FAIL)])


@needs_promtool
def test_the_error_ratio_itself(tmp_path: Path) -> None:
    query = d.analysis_query(SUCCESS, namespace="website", app="website", port=8080, window=WINDOW)
    # 25 of 1000 per sample: exactly 0.025 (both rates see the same extrapolation).
    _promtool(
        tmp_path,
        _requests(CANARY, ok=975, errors=25),
        [(f"round({query.strip()}, 0.0001)", [{"labels": "{}", "value": 0.025}])],
    )


@needs_promtool
def test_a_canary_without_5xx_series_passes_with_a_zero_ratio(tmp_path: Path) -> None:
    query = d.analysis_query(SUCCESS, namespace="website", app="website", port=8080, window=WINDOW)
    _promtool(
        tmp_path,
        _requests(CANARY, ok=1000, errors=0),
        [(query, [{"labels": "{}", "value": 0}]), (_verdict(SUCCESS), PASS)],
    )


@needs_promtool
def test_a_canary_without_requests_has_no_sample(tmp_path: Path) -> None:
    # Only the stable track has traffic: nothing to judge, no sample (the condition's len == 0).
    series = _requests(STABLE, ok=1000, errors=0) + _histogram(STABLE, (900, 990, 1000, 1000, 1000))
    _promtool(tmp_path, series, [(_verdict(SUCCESS), []), (_verdict(LATENCY), [])])


@needs_promtool
def test_a_fast_canary_passes_the_latency_gate(tmp_path: Path) -> None:
    # 95% of 1000 requests answered within 0.3 s: p95 is in (0.1, 0.3], under 0.8 s.
    _promtool(tmp_path, _histogram(CANARY, (800, 1000, 1000, 1000, 1000)), [(_verdict(LATENCY), PASS)])


@needs_promtool
def test_a_slow_canary_fails_the_latency_gate(tmp_path: Path) -> None:
    # A tenth of the requests take 1.2 to 5 s: p95 is 1.2 + 3.8 * 50 / 100 = 3.1 s.
    series = _histogram(CANARY, (500, 700, 900, 1000, 1000))
    query = d.analysis_query(LATENCY, namespace="website", app="website", port=8080, window=WINDOW)
    _promtool(
        tmp_path,
        series,
        [(_verdict(LATENCY), FAIL), (f"round({query.strip()}, 0.001)", [{"labels": "{}", "value": 3.1}])],
    )


@needs_promtool
def test_the_slo_recording_rule_and_the_analysis_count_the_same_canary_errors(tmp_path: Path) -> None:
    """One source of truth: the SLO's 5 m ratio over both tracks equals the analysis's expression
    over both tracks; over the canary's traffic alone it is the analysis's ratio."""
    target = slo.SloTarget(
        app="website",
        namespace="website",
        hostname="www.example.com",
        port=8080,
        slo=slo.SloSettings(availability=99.9),
        canary=True,
    )
    (group,) = slo.slo_rule_groups([target])
    five = next(
        r for r in group["rules"] if r["record"].endswith("5m") and r["labels"]["source"] == "traefik"
    )
    assert five["expr"] == slo.traefik_error_ratio([STABLE, CANARY], "5m")
    # Stable 0.5% of 1000, canary 4% of 500: (5 + 20) / 1500.
    series = _requests(STABLE, ok=995, errors=5) + _requests(CANARY, ok=480, errors=20)
    canary_only = d.analysis_query(SUCCESS, namespace="website", app="website", port=8080, window="5m")
    _promtool(
        tmp_path,
        series,
        [
            (f"round({five['expr'].strip()}, 0.0001)", [{"labels": "{}", "value": 0.0167}]),
            (canary_only, [{"labels": "{}", "value": 0.04}]),
        ],
    )


# --- CRD validation of the rendered objects ---------------------------------------------------------


def _template() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "website-canary", "namespace": "website"},
        "spec": d.analysis_template_spec(
            app="website",
            namespace="website",
            port=8080,
            settings=SETTINGS,
            address="https://m.example/prometheus",
        ),
    }


def _rollout() -> dict[str, Any]:
    return d.rollout_manifest(
        app="website",
        namespace="website",
        replicas=3,
        port=8080,
        settings=SETTINGS,
        image="rg.fr-par.scw.cloud/acme-platform/website:1.0.0",
    )


@needs_schemas
def test_the_rendered_analysis_template_and_rollout_validate_against_the_crds() -> None:
    assert schemas.validate_custom_resource(_template()) == []
    assert schemas.validate_custom_resource(_rollout()) == []


@needs_schemas
def test_the_crd_check_refuses_broken_objects() -> None:
    template = _template()
    template["spec"]["metrics"][0]["provider"]["prometheus"]["timeout"] = "20s"
    template["spec"]["metrics"][0]["provider"]["prometheus"]["headers"] = [{"name": "Authorization"}]
    problems = schemas.validate_custom_resource(template)
    assert any("prometheus.timeout" in p for p in problems), problems
    assert any("headers" in p for p in problems), problems
    rollout = _rollout()
    broken = copy.deepcopy(rollout)
    broken["spec"]["strategy"]["canary"]["steps"][0] = {"setWeight": "five"}
    broken["spec"]["strategy"]["canary"]["stableservice"] = "typo"
    problems = schemas.validate_custom_resource(broken)
    assert any("setWeight" in p for p in problems), problems
    assert any("stableservice" in p for p in problems), problems

"""Progressive delivery in the committed stacks' plans: prod's website is a canary (controller,
Services, route, analysis), its newsletter is not, dev runs the controller without canaries, and
the offline checks (policy rule, Rollout against the CRD and the plan) pass and can fail."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner, validate
from offline.mocks import unwrap_secrets
from policy import rules as policy_rules
from scw_platform import delivery as d
from scw_platform.contract import ProblemsError

ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
TEMPLATE = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def prod(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


def _named(plan: runner.Plan, type_token: str, namespace: str, name: str) -> Any:
    found = [
        r
        for r in plan.by_type(type_token)
        if r.inputs["metadata"].get("namespace") == namespace and r.inputs["metadata"].get("name") == name
    ]
    assert len(found) == 1, [r.urn for r in plan.by_type(type_token)]
    return found[0]


def _rollouts_release(plan: runner.Plan) -> Any:
    (release,) = [r for r in plan.by_type(RELEASE) if r.inputs.get("chart") == "argo-rollouts"]
    return release


def test_prod_runs_the_controller_in_ha_with_the_plugin(prod: runner.Plan) -> None:
    release = _rollouts_release(prod)
    assert (
        release.inputs["version"] == d.ROLLOUTS_CHART_VERSION
        and release.inputs["namespace"] == "argo-rollouts"
    )
    values = unwrap_secrets(release.inputs["values"])
    assert values["controller"]["replicas"] == 2 and values["controller"]["pdb"]["enabled"] is True
    assert values["controller"]["trafficRouterPlugins"] == d.traffic_router_plugins()
    assert release.provider_urn.endswith("prod-k8s")


def test_prods_website_is_a_canary_and_the_newsletter_is_not(prod: runner.Plan) -> None:
    route = _named(prod, ROUTE, "website", "website-rollout")
    # The plain route is gone: one route serves the hostname.
    assert not [r for r in prod.by_type(ROUTE) if r.inputs["metadata"]["name"] == "website"]
    (rule,) = route.inputs["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("website-stable", 100),
        ("website-canary", 0),
    ]
    assert route.ignore_changes == ["spec.rules"]
    template = _named(prod, TEMPLATE, "website", "website-canary")
    metrics = template.inputs["spec"]["metrics"]
    assert [m["name"] for m in metrics] == ["successRate", "latencyP95"]
    assert [m["successCondition"].rsplit(" ", 1)[-1] for m in metrics] == ["0.005", "0.8"]
    address = metrics[0]["provider"]["prometheus"]["address"]
    assert address.startswith("https://") and address.endswith(".metrics.cockpit.fr-par.scw.cloud/prometheus")
    # The AnalysisTemplate waits for the controller's release (its CRDs).
    assert _rollouts_release(prod).urn in template.dependencies
    newsletter = _named(prod, ROUTE, "newsletter", "newsletter")
    assert newsletter.inputs["spec"]["rules"][0]["backendRefs"] == [{"name": "newsletter", "port": 8080}]
    assert not [t for t in prod.by_type(TEMPLATE) if t.inputs["metadata"]["namespace"] == "newsletter"]


def test_prods_slo_counts_both_tracks_of_the_canary(prod: runner.Plan) -> None:
    text = repr([r.inputs for r in prod.registrations if r.type == "kubernetes:core/v1:ConfigMap"])
    assert (
        "website-website-stable-http-8080@kubernetesgateway|website-website-canary-http-8080@kubernetesgateway"
        in text
    )
    assert 'service=\\\\"newsletter-newsletter-http-8080@kubernetesgateway\\\\"' in text or (
        'service="newsletter-newsletter-http-8080@kubernetesgateway"' in text
    )


def test_dev_runs_the_controller_alone(committed_plans: dict[str, runner.Plan]) -> None:
    dev = committed_plans["dev"]
    values = unwrap_secrets(_rollouts_release(dev).inputs["values"])
    assert values["controller"]["replicas"] == 1 and values["controller"]["pdb"] == {"enabled": False}
    assert dev.by_type(TEMPLATE) == []
    assert not committed_plans["tooling"].by_type(TEMPLATE)
    assert not [
        r for r in committed_plans["tooling"].by_type(RELEASE) if r.inputs.get("chart") == "argo-rollouts"
    ]


def test_the_rollout_check_passes_on_prod_and_says_why_on_dev(
    committed_plans: dict[str, runner.Plan],
) -> None:
    result = validate.check_stack_rollouts(committed_plans["prod"])
    assert result.objects == 1 and result.failures == [], result
    dev = validate.check_stack_rollouts(committed_plans["dev"])
    assert dev.objects == 0 and dev.notes


def test_the_rollout_check_fails_when_the_plan_lacks_what_the_rollout_names(prod: runner.Plan) -> None:
    plan = copy.copy(prod)
    plan.registrations = [
        r
        for r in prod.registrations
        if not (r.type == "kubernetes:core/v1:Service" and r.name == "app-website-canary")
    ]
    result = validate.check_stack_rollouts(plan)
    assert [f.message for f in result.failures] == [
        "names Service website/website-canary, which the plan does not declare"
    ]


def _views(
    plan: runner.Plan, change: Callable[[dict[str, Any]], None] | None = None
) -> policy_rules.StackView:
    resources = []
    for r in plan.registrations:
        inputs = unwrap_secrets(copy.deepcopy(r.inputs))
        if change is not None and r.type == ROUTE and r.name == "app-website-rollout-route":
            change(inputs)
        resources.append(
            policy_rules.ResourceView(
                urn=r.urn,
                type=r.type,
                name=r.name,
                inputs=inputs,
                provider=r.provider_urn,
                dependencies=tuple(r.dependencies),
            )
        )
    return policy_rules.StackView(resources=tuple(resources), role="production")


def _rule(stack: policy_rules.StackView) -> list[str]:
    return [v.text() for v in policy_rules.RULES_BY_NAME["canary-route-single-writer"].evaluate(stack)]


def test_the_single_writer_rule_allows_prods_plan_and_denies_a_split(prod: runner.Plan) -> None:
    assert _rule(_views(prod)) == []

    def split(inputs: dict[str, Any]) -> None:
        refs = inputs["spec"]["rules"][0]["backendRefs"]
        refs[0]["weight"], refs[1]["weight"] = 50, 50

    assert any("weights 100 and 0, got [50, 50]" in m for m in _rule(_views(prod, split)))


def test_with_the_in_cluster_prometheus_the_analysis_asks_it_without_a_token(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    operations = stack_config("prod")["platform:operations"]
    operations["observability"]["backend"] = "prometheus"
    plan = plan_with("prod", {"platform:operations": operations})
    template = _named(plan, TEMPLATE, "website", "website-canary")
    spec = template.inputs["spec"]
    assert "args" not in spec
    for metric in spec["metrics"]:
        prometheus = metric["provider"]["prometheus"]
        assert prometheus["address"] == "http://kps-prometheus.monitoring.svc:9090"
        assert "headers" not in prometheus
    assert not [r for r in plan.registrations if r.name == "app-website-analysis-token"]
    assert not plan.by_type("scaleway:observability/token:Token") or all(
        "canary" not in str(r.inputs.get("name")) for r in plan.by_type("scaleway:observability/token:Token")
    )
    (policy,) = [r for r in plan.registrations if r.name == "prod-rollouts-netpol-argo-rollouts-controller"]
    assert {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9090}],
    } in policy.inputs["spec"]["egress"]


def test_a_canary_without_observability_is_refused_before_anything_is_declared(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    apps = stack_config("dev")["platform:apps"]
    assert "platform:operations" not in stack_config("dev")
    apps[0].update(replicas=2, delivery={"strategy": "canary", "steps": [50, 100], "pauseMinutes": 5})
    with pytest.raises(ProblemsError) as info:
        plan_with("dev", {"platform:apps": apps})
    assert info.value.problems == [
        "platform:apps[0].delivery: needs platform:operations.observability (the analysis queries "
        "Traefik's metrics in the stack's metrics backend: Cockpit, or the in-cluster Prometheus)"
    ]


def test_without_schemas_the_rollout_check_is_skipped_visibly(prod: runner.Plan, tmp_path: Any) -> None:
    result = validate.check_stack_rollouts(prod, tmp_path / "no-schemas-here")
    assert result.status == "SKIPPED" and "NOT checked" in str(result.skipped)
    assert "1 Rollout(s)" in str(result.skipped)
    # The references to the plan do not need the schemas: still checked.
    assert result.failures == [] and result.objects == 1

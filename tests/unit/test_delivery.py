"""Progressive delivery (scw_platform.delivery): settings good and bad, the Rollout's steps and
weights, the analysis over the SLO's own Traefik series, the controller and a canary app's envelope
under mocks, the single-writer policy rule and the admission of Rollouts."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pydantic import ValidationError

from offline import notifications_check
from policy import rules as policy_rules
from scw_platform import delivery as d
from scw_platform import images, labels, notifications, slo
from scw_platform import workload_admission as admission
from scw_platform.apps import AppSettings
from scw_platform.contract import PLATFORM_NAMESPACES
from tests.harness import config_problems as _problems
from tests.harness import is_secret, plaintext_secrets, record, unwrap
from tests.unit import test_workload_admission as wa

CANARY = {"strategy": "canary", "steps": [5, 25, 50, 100], "pauseMinutes": 10}
APP = {
    "name": "website",
    "hostname": "www.example.com",
    "port": 8080,
    "image": "rg.fr-par.scw.cloud/acme-platform/website",
    "gitopsPath": "apps/website/envs/prod",
    "replicas": 3,
}


def _settings(**changes: Any) -> d.DeliverySettings:
    return d.DeliverySettings.model_validate({**CANARY, **changes})


def _errors(**changes: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        _settings(**changes)
    return [(e["loc"], str(e["msg"])) for e in info.value.errors()]


# --- Settings ------------------------------------------------------------------------------------


def test_good_settings_and_defaults() -> None:
    settings = _settings()
    assert settings.strategy == "canary"
    assert settings.steps == [5, 25, 50, 100]
    assert settings.pause_minutes == 10
    assert [(m.metric, m.threshold) for m in settings.analysis] == [
        ("successRate", 99.0),
        ("latencyP95", 1000.0),
    ]
    one_step = _settings(steps=[100], pauseMinutes=1, analysis=[{"metric": "latencyP99", "threshold": 1200}])
    assert one_step.steps == [100] and one_step.analysis[0].threshold == 1200.0


@pytest.mark.parametrize(
    ("changes", "where", "words"),
    [
        ({"steps": [5, 25, 25, 100]}, ("steps",), "strictly increasing (got [5, 25, 25, 100])"),
        ({"steps": [50, 25, 100]}, ("steps",), "strictly increasing"),
        ({"steps": [5, 25, 50]}, ("steps",), "the last step must be 100 (got 50)"),
        ({"steps": [0, 50, 100]}, ("steps",), "every step is a percentage from 1 to 100 (got [0])"),
        ({"steps": [5, 150]}, ("steps",), "from 1 to 100 (got [150])"),
        ({"steps": []}, ("steps",), "at least 1 item"),
        ({"steps": [*range(1, 12), 100]}, ("steps",), "at most 10 items"),
        ({"pauseMinutes": 0}, ("pauseMinutes",), "must be at least 1 minute (got 0)"),
        ({"pauseMinutes": -5}, ("pauseMinutes",), "at least 1 minute"),
        ({"pauseMinutes": "10m"}, ("pauseMinutes",), "whole number of minutes like 10, not a duration"),
        ({"pauseMinutes": 0.5}, ("pauseMinutes",), "whole number of minutes"),
        ({"pauseMinutes": True}, ("pauseMinutes",), "whole number of minutes"),
        ({"pauseMinutes": 1441}, ("pauseMinutes",), "at most 1440 minutes"),
        ({"strategy": "blueGreen"}, ("strategy",), "must be one of: canary (got 'blueGreen')"),
        (
            {"analysis": [{"metric": "cpuUsage", "threshold": 80}]},
            ("analysis", 0, "metric"),
            "'cpuUsage' is not a metric the platform collects (one of successRate:",
        ),
        (
            {"analysis": [{"metric": "successRate", "threshold": 100}]},
            ("analysis", 0, "threshold"),
            "strictly between 0 and 100 (got 100)",
        ),
        (
            {"analysis": [{"metric": "latencyP95", "threshold": 0}]},
            ("analysis", 0, "threshold"),
            "above 0 and at most 60000 (got 0)",
        ),
        (
            {"analysis": [{"metric": "latencyP95", "threshold": "500ms"}]},
            ("analysis", 0, "threshold"),
            "must be a number, without quotes or unit",
        ),
        (
            {
                "analysis": [
                    {"metric": "successRate", "threshold": 99},
                    {"metric": "successRate", "threshold": 98},
                ]
            },
            ("analysis",),
            "metric successRate is listed twice",
        ),
        ({"analysis": []}, ("analysis",), "at least 1 item"),
        ({"pause": 10}, ("pause",), "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    changes: dict[str, Any], where: tuple[Any, ...], words: str
) -> None:
    found = _errors(**changes)
    assert any(loc == where and words in message for loc, message in found), found


def test_several_step_problems_are_reported_together() -> None:
    ((loc, message),) = _errors(steps=[60, 40, 0])
    assert loc == ("steps",)
    assert "from 1 to 100 (got [0])" in message and "strictly increasing" in message and "(got 0)" in message


def test_canary_needs_two_replicas() -> None:
    with pytest.raises(ValidationError) as info:
        AppSettings.model_validate({**APP, "replicas": 1, "delivery": CANARY})
    ((error,),) = [info.value.errors()]
    assert error["loc"] == ("delivery",)
    assert "canary needs at least 2 replicas (got 1)" in error["msg"]
    # Two replicas are enough; a bad replicas value reports itself, not the canary too.
    assert AppSettings.model_validate({**APP, "replicas": 2, "delivery": CANARY}).delivery is not None
    with pytest.raises(ValidationError) as bad:
        AppSettings.model_validate({**APP, "replicas": 0, "delivery": CANARY})
    assert [e["loc"] for e in bad.value.errors()] == [("replicas",)]


def _with_delivery(raw: dict[str, Any], index: int, delivery: Any) -> dict[str, Any]:
    changed = copy.deepcopy(raw)
    changed["platform:apps"][index]["delivery"] = delivery
    return changed


def test_stack_config_errors_name_the_key_and_create_nothing(stack_config: Any) -> None:
    """Through the real loader: every bad input of the issue, each with its key path, at once."""
    raw = stack_config("prod")
    raw["platform:apps"][0]["delivery"] = {**CANARY, "steps": [5, 50, 25]}
    raw["platform:apps"][1]["delivery"] = {
        **CANARY,
        "pauseMinutes": 0,
        "analysis": [{"metric": "errorBudget", "threshold": 1}],
    }
    problems = _problems("prod", raw)
    assert any(
        p.startswith("platform:apps[0].delivery.steps: ") and "strictly increasing" in p for p in problems
    )
    assert any(
        p.startswith("platform:apps[0].delivery.steps: ") and "last step must be 100" in p for p in problems
    )
    assert any(p.startswith("platform:apps[1].delivery.pauseMinutes: ") for p in problems), problems
    assert any(
        p.startswith("platform:apps[1].delivery.analysis[0].metric: ")
        and "'errorBudget' is not a metric the platform collects" in p
        for p in problems
    ), problems


def test_dev_refuses_a_canary_on_its_single_replica(stack_config: Any) -> None:
    raw = stack_config("dev")
    assert raw["platform:apps"][0]["replicas"] == 1
    problems = _problems("dev", _with_delivery(raw, 0, CANARY))
    assert problems == [
        "platform:apps[0].delivery: canary needs at least 2 replicas (got 1): with one, the canary's first "
        "pod takes a whole replica's share and nothing is left to compare"
    ]


def test_the_committed_prod_canary_is_valid(stack_config: Any) -> None:
    raw = stack_config("prod")
    assert raw["platform:apps"][0]["delivery"]["strategy"] == "canary"
    assert _problems("prod", raw) == []


# --- Steps and weights ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps", [[5, 25, 50, 100], [100], [1, 2, 3, 99, 100], [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]]
)
def test_weights_add_up_to_100_at_each_step(steps: list[int]) -> None:
    """The Rollout's setWeight is the canary's share; the plugin gives stable the rest, so each
    step's pair adds up to 100 only if every share is within 0..100, and the last one moves all."""
    weights = [s["setWeight"] for s in d.rollout_steps("website", _settings(steps=steps)) if "setWeight" in s]
    assert weights == steps
    assert all(0 < canary <= 100 for canary in weights)
    assert weights[-1] == 100 and weights == sorted(set(weights))
    # The route the program declares is the state between rollouts: everything on stable.
    refs = d.initial_backend_refs("website", 8080)
    assert sum(r["weight"] for r in refs) == 100 and refs[0]["weight"] == 100


def test_rollout_steps_hold_then_analyse_each_weight() -> None:
    steps = d.rollout_steps("website", _settings())
    assert steps[0::3] == [{"setWeight": w} for w in (5, 25, 50, 100)]
    assert steps[1::3] == [{"pause": {"duration": "10m"}}] * 4
    assert steps[2::3] == [{"analysis": {"templates": [{"templateName": "website-canary"}]}}] * 4


def test_rollout_strategy_names_the_platform_route_services_and_plugin() -> None:
    canary = d.rollout_strategy("website", "website", _settings())["canary"]
    assert canary["stableService"] == "website-stable" and canary["canaryService"] == "website-canary"
    assert canary["trafficRouting"] == {
        "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "website-rollout", "namespace": "website"}}
    }


# --- Analysis: the SLO's series, one source of truth ----------------------------------------------


def _target(canary: bool) -> slo.SloTarget:
    return slo.SloTarget(
        app="website",
        namespace="website",
        hostname="www.example.com",
        port=8080,
        slo=slo.SloSettings(availability=99.9),
        canary=canary,
    )


def test_the_success_query_is_the_slo_recording_rules_expression() -> None:
    (group,) = slo.slo_rule_groups([_target(canary=True)])
    traefik_rules = [r for r in group["rules"] if r.get("labels", {}).get("source") == "traefik"]
    canary_series = slo.traefik_backend("website", "website-canary", 8080)
    stable_series = slo.traefik_backend("website", "website-stable", 8080)
    # The SLO counts both tracks (users get errors from either), the analysis the canary alone,
    # through the same expression builder.
    for rule in traefik_rules:
        window = rule["record"].removeprefix("app:slo_errors_per_request:ratio_rate")
        assert rule["expr"] == slo.traefik_error_ratio([stable_series, canary_series], window)
        assert f'service=~"{stable_series}|{canary_series}"' in rule["expr"]
    metric = d.AnalysisMetric(metric="successRate", threshold=99.5)
    query = d.analysis_query(metric, namespace="website", app="website", port=8080, window="10m")
    assert query == slo.traefik_error_ratio([canary_series], "10m")
    assert f'{slo.TRAEFIK_REQUESTS}{{service="{canary_series}"' in query
    assert canary_series == "website-website-canary-http-8080@kubernetesgateway"


def test_an_app_without_delivery_keeps_its_slo_series_unchanged() -> None:
    (group,) = slo.slo_rule_groups([_target(canary=False)])
    rule = next(r for r in group["rules"] if r.get("labels", {}).get("source") == "traefik")
    assert 'service="website-website-http-8080@kubernetesgateway"' in rule["expr"]


def test_the_latency_query_reads_traefiks_histogram_of_the_canary() -> None:
    metric = d.AnalysisMetric(metric="latencyP95", threshold=800)
    query = d.analysis_query(metric, namespace="website", app="website", port=8080, window="10m")
    assert query.startswith(
        "histogram_quantile(0.95, sum by (le) (rate(traefik_service_request_duration_seconds_bucket{"
    )
    assert 'service="website-website-canary-http-8080@kubernetesgateway"' in query
    assert d.analysis_limit(metric) == 0.8
    assert d.success_condition(metric) == "len(result) == 0 || isNaN(result[0]) || result[0] <= 0.8"
    assert d.analysis_limit(d.AnalysisMetric(metric="successRate", threshold=99.5)) == 0.005


def test_the_analysis_template_reads_its_token_from_a_secret() -> None:
    spec = d.analysis_template_spec(
        app="website",
        namespace="website",
        port=8080,
        settings=_settings(),
        address="https://metrics/prometheus",
    )
    assert spec["args"] == [
        {
            "name": "metrics-token",
            "valueFrom": {"secretKeyRef": {"name": "website-canary-analysis", "key": "token"}},
        }
    ]
    for metric in spec["metrics"]:
        prometheus = metric["provider"]["prometheus"]
        assert prometheus["address"] == "https://metrics/prometheus"
        assert prometheus["headers"] == [{"key": "Authorization", "value": "Bearer {{args.metrics-token}}"}]
        assert metric["failureLimit"] == 0 and "[10m]" in prometheus["query"]
    assert [m["name"] for m in spec["metrics"]] == ["successRate", "latencyP95"]


# --- The controller ------------------------------------------------------------------------------


def test_controller_values_pin_and_fence() -> None:
    values = d.controller_values(ha=True)
    controller = values["controller"]
    # By tag and digest (scw_platform/data/images.yaml).
    assert controller["image"] == {"tag": f"v1.9.1@{images.digest('argo-rollouts')}"}
    assert d.ROLLOUTS_CHART_VERSION == "2.41.1"
    assert controller["replicas"] == 2 and controller["pdb"] == {"enabled": True, "minAvailable": 1}
    assert [c["topologyKey"] for c in controller["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    (plugin,) = controller["trafficRouterPlugins"]
    assert plugin["name"] == "argoproj-labs/gatewayAPI"
    assert plugin["location"].endswith(
        f"/releases/download/{d.GATEWAY_PLUGIN_VERSION}/gatewayapi-plugin-linux-amd64"
    )
    assert values["dashboard"] == {"enabled": False}
    providers = values["providerRBAC"]["providers"]
    assert {p for p, on in providers.items() if on} == {"gatewayAPI"}
    # A read-only root with the two paths the controller writes on volumes of their own: the
    # plugin binary it downloads at start, and /tmp.
    assert values["containerSecurityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in controller["volumeMounts"]}
    assert mounts == {"/home/argo-rollouts/plugin-bin": "plugin-bin", "/tmp": "tmp"}
    assert {v["name"] for v in controller["volumes"] if "emptyDir" in v} == set(mounts.values())
    single = d.controller_values(ha=False)["controller"]
    assert single["replicas"] == 1 and single["pdb"] == {"enabled": False}
    assert "topologySpreadConstraints" not in single


def test_controller_policies_open_only_dns_api_https_and_metrics() -> None:
    (spec,) = d.controller_policies().values()
    assert spec["podSelector"] == {"matchLabels": dict(d.CONTROLLER_PODS)}
    assert spec["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 8090}],
        }
    ]
    ports = sorted(p["port"] for rule in spec["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 6443]
    https = next(rule for rule in spec["egress"] if rule["ports"] == [{"protocol": "TCP", "port": 443}])
    assert "169.254.0.0/16" in https["to"][0]["ipBlock"]["except"]
    assert d.ROLLOUTS_NAMESPACE in PLATFORM_NAMESPACES


def test_the_controller_component_under_mocks() -> None:
    def program() -> dict[str, Any]:
        provider = k8s.Provider("prod-k8s", kubeconfig="{}")
        controller = d.RolloutsController(
            "prod-rollouts",
            d.RolloutsControllerArgs(
                provider=provider,
                environment="prod",
                ha=True,
                project_id="6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41",
                region="fr-par",
                metrics_source_url="https://metrics.example/",
            ),
        )
        assert controller.backend is not None
        return {"address": controller.backend.address, "token": controller.backend.token}

    recording = record(program)
    component = recording.named("prod-rollouts")
    children = {r.name: r for r in recording.children(component)}
    assert set(children) == {
        "prod-rollouts-namespace",
        "prod-rollouts-default-deny",
        "prod-rollouts-netpol-argo-rollouts-controller",
        "prod-rollouts-controller",
        "prod-rollouts-analysis-token",
    }
    release = children["prod-rollouts-controller"]
    assert release.inputs["chart"] == "argo-rollouts" and release.inputs["version"] == "2.41.1"
    assert release.inputs["namespace"] == "argo-rollouts" and release.inputs["atomic"] is True
    assert "prod-k8s" in release.provider_urn
    # The release waits for the fence: the plugin download needs its egress open.
    assert {
        children["prod-rollouts-default-deny"].urn,
        children["prod-rollouts-netpol-argo-rollouts-controller"].urn,
    } <= set(release.dependencies)
    token = children["prod-rollouts-analysis-token"]
    assert token.inputs["scopes"] == {"queryMetrics": True} or token.inputs["scopes"] == {
        "query_metrics": True
    }
    namespace = children["prod-rollouts-namespace"]
    assert namespace.inputs["metadata"]["labels"][labels.PLATFORM_NAMESPACE] == "true"
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert recording.outputs["address"].value == "https://metrics.example/prometheus"
    assert recording.outputs["token"].secret and not recording.outputs["address"].secret


# --- A canary app's envelope ---------------------------------------------------------------------


def _canary_recording() -> Any:
    def program() -> None:
        provider = k8s.Provider("prod-k8s", kubeconfig="{}")
        parent = pulumi.ComponentResource("platform:apps:App", "app-website")
        d.declare_canary(
            "app-website",
            d.CanaryArgs(
                app="website",
                hostname="www.example.com",
                port=8080,
                settings=_settings(),
                parent_ref={
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "platform",
                    "namespace": "traefik",
                    "sectionName": "https-www.example.com",
                },
                backend=d.MetricsBackend(
                    address="https://metrics.example/prometheus", token=pulumi.Output.secret("tok")
                ),
            ),
            meta={"namespace": "website", "labels": {labels.APP: "website"}},
            opts=pulumi.ResourceOptions(parent=parent, provider=provider),
        )

    return record(program)


def test_a_canary_app_gets_two_services_the_route_the_secret_and_the_template() -> None:
    recording = _canary_recording()
    stable, canary = recording.named("app-website-stable"), recording.named("app-website-canary")
    for service, name in ((stable, "website-stable"), (canary, "website-canary")):
        assert service.inputs["metadata"]["name"] == name
        assert service.inputs["spec"]["type"] == "ClusterIP"
        assert service.inputs["spec"]["selector"] == {"app.kubernetes.io/name": "website"}
        assert service.inputs["spec"]["ports"][0]["port"] == 8080
        # The controller adds the pod-template hash to the selector: it alone writes it after.
        assert service.ignore_changes == ["spec.selector"]
    route = recording.named("app-website-rollout-route")
    assert route.inputs["metadata"]["name"] == "website-rollout"
    assert route.inputs["metadata"]["annotations"] == {
        d.TRAFFIC_WRITER_ANNOTATION: "argoproj.io/Rollout/website"
    }
    assert route.ignore_changes == ["spec.rules"]
    (rule,) = route.inputs["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("website-stable", 100),
        ("website-canary", 0),
    ]
    assert {stable.urn, canary.urn} <= set(route.dependencies)
    secret = recording.named("app-website-analysis-token")
    assert secret.inputs["metadata"]["name"] == "website-canary-analysis"
    # The query token stays a Pulumi secret on its way into the Secret.
    assert plaintext_secrets(secret.inputs) == []
    assert is_secret(secret.inputs["stringData"]) or is_secret(secret.inputs["stringData"].get("token"))
    assert unwrap(secret.inputs["stringData"]) == {"token": "tok"}
    template = recording.named("app-website-analysis")
    assert template.inputs["kind"] == "AnalysisTemplate"
    assert secret.urn in template.dependencies
    assert (
        template.inputs["spec"]["metrics"][0]["provider"]["prometheus"]["address"]
        == "https://metrics.example/prometheus"
    )
    for r in (stable, canary, route, secret, template):
        assert "prod-k8s" in r.provider_urn


# --- The policy rule: one writer of a canary route ------------------------------------------------


def _view(**inputs: Any) -> policy_rules.ResourceView:
    kind = inputs.pop("kind")
    types = {
        "HTTPRoute": policy_rules.HTTP_ROUTE,
        "Service": policy_rules.K8S_SERVICE,
        "AnalysisTemplate": policy_rules.ANALYSIS_TEMPLATE,
    }
    name = inputs["metadata"]["name"]
    return policy_rules.ResourceView(
        urn=f"urn:pulumi:prod::platform::{types[kind]}::{kind}-{name}",
        type=types[kind],
        name=name,
        inputs=inputs,
        provider="k8s",
    )


def _canary_stack(
    route_changes: Any = None, *, services: bool = True, template: bool = True, extra: tuple[Any, ...] = ()
) -> policy_rules.StackView:
    meta = {
        "namespace": "website",
        "name": "website",
        "annotations": {d.TRAFFIC_WRITER_ANNOTATION: "argoproj.io/Rollout/website"},
    }
    spec = d.canary_route_spec(
        app="website", hostname="www.example.com", port=8080, parent_ref={"name": "platform"}
    )
    route = {"kind": "HTTPRoute", "metadata": meta, "spec": spec}
    if route_changes is not None:
        route_changes(route)
    resources = [_view(**route)]
    if services:
        resources += [
            _view(kind="Service", metadata={"namespace": "website", "name": n}, spec={})
            for n in ("website-stable", "website-canary")
        ]
    if template:
        resources.append(
            _view(
                kind="AnalysisTemplate", metadata={"namespace": "website", "name": "website-canary"}, spec={}
            )
        )
    return policy_rules.StackView(resources=(*resources, *extra), role="production")


def _rule_messages(stack: policy_rules.StackView) -> list[str]:
    return [v.text() for v in policy_rules.RULES_BY_NAME["canary-route-single-writer"].evaluate(stack)]


def test_the_rule_allows_the_platforms_canary_route() -> None:
    assert _rule_messages(_canary_stack()) == []
    assert policy_rules.TRAFFIC_WRITER_ANNOTATION == d.TRAFFIC_WRITER_ANNOTATION


def _set_weights(stable: int, canary: int) -> Any:
    def change(route: dict[str, Any]) -> None:
        refs = route["spec"]["rules"][0]["backendRefs"]
        refs[0]["weight"], refs[1]["weight"] = stable, canary

    return change


def _drop_annotation(route: dict[str, Any]) -> None:
    route["metadata"].pop("annotations")


def _other_writer(route: dict[str, Any]) -> None:
    route["metadata"]["annotations"][d.TRAFFIC_WRITER_ANNOTATION] = "pulumi"


def _three_backends(route: dict[str, Any]) -> None:
    route["spec"]["rules"][0]["backendRefs"].append({"name": "website-stable", "port": 8080, "weight": 0})


@pytest.mark.parametrize(
    ("change", "kwargs", "words"),
    [
        (_set_weights(75, 25), {}, "weights 100 and 0, got [75, 25]"),
        (_set_weights(100, 100), {}, "weights 100 and 0, got [100, 100]"),
        (_drop_annotation, {}, "names the one writer of its weights, argoproj.io/Rollout/<name> (got None)"),
        (_other_writer, {}, "(got 'pulumi')"),
        (_three_backends, {}, "one rule with two backends"),
        (None, {"services": False}, "Service website/website-stable is not declared by the program"),
        (None, {"template": False}, "no AnalysisTemplate in website gates the canary's steps"),
    ],
)
def test_the_rule_denies_a_second_writer(change: Any, kwargs: dict[str, Any], words: str) -> None:
    messages = _rule_messages(_canary_stack(change, **kwargs))
    assert any(words in m for m in messages), messages


def test_the_rule_denies_another_route_on_the_canary_hostname() -> None:
    other = _view(
        kind="HTTPRoute",
        metadata={"namespace": "shop", "name": "shop"},
        spec={"hostnames": ["www.example.com"], "rules": [{"backendRefs": [{"name": "shop", "port": 80}]}]},
    )
    messages = _rule_messages(_canary_stack(extra=(other,)))
    assert any("also routes ['www.example.com']: a second writer" in m for m in messages), messages


def test_a_plain_route_is_not_the_rules_business() -> None:
    plain = _view(
        kind="HTTPRoute",
        metadata={"namespace": "newsletter", "name": "newsletter"},
        spec={
            "hostnames": ["newsletter.example.com"],
            "rules": [{"backendRefs": [{"name": "newsletter", "port": 8080}]}],
        },
    )
    assert _rule_messages(policy_rules.StackView(resources=(plain,), role="production")) == []


def test_a_workload_stack_may_declare_analysis_templates_but_no_argo_cd_kind() -> None:
    rule = policy_rules.RULES_BY_NAME["workload-stack-declares-nothing-in-argocd"]
    template = _view(
        kind="AnalysisTemplate", metadata={"namespace": "website", "name": "website-canary"}, spec={}
    )
    application = policy_rules.ResourceView(
        urn="urn:a",
        type="kubernetes:argoproj.io/v1alpha1:Application",
        name="a",
        inputs={"metadata": {"name": "a", "namespace": "website"}},
        provider="k8s",
    )
    violations = rule.evaluate(policy_rules.StackView(resources=(template, application), role="production"))
    assert [v.urn for v in violations] == ["urn:a"]


# --- Admission: a Rollout from Git meets the workload rules ----------------------------------------


class RolloutRequest(wa.Request):
    """A request for a Rollout (the shared harness knows the built-in kinds only)."""

    @property
    def group_resource(self) -> tuple[str, str]:
        return ("argoproj.io", "rollouts")

    def cel(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "name": self.object["metadata"]["name"],
            "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "rollouts"},
            "subResource": self.subresource,
        }


def _rollout(spec: dict[str, Any] | None = None, *, template: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": d.rollout_strategy("website", "website", _settings()),
    }
    if template:
        body["template"] = {"metadata": {"labels": {"app": "web"}}, "spec": spec or wa.pod_spec()}
    else:
        body["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "website", "namespace": "website"},
        "spec": body,
    }


def test_a_good_rollout_is_admitted() -> None:
    assert wa._denials(RolloutRequest("CREATE", _rollout())) == {}


def test_a_rollout_with_a_foreign_image_or_no_probe_is_refused() -> None:
    foreign = wa._denials(
        RolloutRequest("CREATE", _rollout(wa.pod_spec(wa.container(image="docker.io/library/nginx:1"))))
    )
    assert set(foreign) == {"workloads"}
    assert any("spec.template.spec.containers[name=web].image" in m for m in foreign["workloads"]), foreign
    unprobed = wa._denials(RolloutRequest("CREATE", _rollout(wa.pod_spec(wa.container(probe=False)))))
    assert any("readinessProbe" in m for m in unprobed["workloads"]), unprobed
    privileged = wa._denials(RolloutRequest("CREATE", _rollout(wa.pod_spec(hostNetwork=True))))
    assert "workloads" in privileged


def test_a_rollout_pointing_at_a_deployment_is_judged_through_it() -> None:
    assert wa._denials(RolloutRequest("CREATE", _rollout(template=False))) == {}
    (rule,) = [
        r
        for r in wa.PROD["workloads"]["matchConstraints"]["resourceRules"]
        if r["apiGroups"] == ["argoproj.io"]
    ]
    assert rule["apiVersions"] == ["v1alpha1"] and rule["resources"] == ["rollouts"]
    assert {"name": "has-pod-template", "expression": "has(object.spec.template)"} in wa.PROD["workloads"][
        "matchConditions"
    ]
    assert admission.ROLLOUTS_GROUP == "argoproj.io"


def test_without_a_metrics_source_the_controller_has_no_query_token() -> None:
    def program() -> None:
        provider = k8s.Provider("dev-k8s", kubeconfig="{}")
        controller = d.RolloutsController(
            "dev-rollouts",
            d.RolloutsControllerArgs(
                provider=provider, environment="dev", ha=False, project_id="p", region="fr-par"
            ),
        )
        assert controller.backend is None

    recording = record(program)
    assert not recording.by_type("scaleway:observability/token:Token")
    release = recording.named("dev-rollouts-controller")
    assert release.inputs["values"]["controller"]["replicas"] == 1


# --- The deployment notification names the rolled-back revision and the failed metric -------------


@pytest.fixture(scope="module")
def go_check(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """offline/gotemplate_check, built as the notification tests build it (Debian's Go, offline)."""
    missing = notifications_check.go_unavailable()
    if missing is not None:
        pytest.skip(missing)
    binary = notifications_check.build_checker(tmp_path_factory.mktemp("gotemplate_check"))
    return functools.partial(notifications_check.run_checker, binary)


ABORTED = (
    'RolloutAborted: Rollout aborted update to revision 7: Metric "successRate" assessed Failed due to '
    "failed (1) > failureLimit (0)"
)


def _degraded_message(go_check: Any, resources: list[dict[str, Any]]) -> str:
    settings = notifications.NotificationSettings.model_validate(
        {"contactPoints": [{"name": "oncall", "kind": "telegram", "chatId": "-1001234567890"}]}
    )
    values = notifications.notifications_values(settings)
    template = yaml.safe_load(values["templates"]["template.platform-health-degraded"])
    app = {
        "metadata": {"name": "prod-website", "labels": {labels.APP: "website", labels.ENVIRONMENT: "prod"}},
        "status": {
            "health": {"status": "Degraded"},
            "sync": {"revision": "0123abc"},
            "operationState": {"phase": "Succeeded", "syncResult": {"revision": "0123abc"}},
            "resources": resources,
        },
    }
    results = go_check({"message": template["message"]}, {"app": app})
    assert results["message"]["parse"] + results["message"]["exec"] == "", results
    return str(results["message"]["output"])


def test_an_aborted_canary_is_announced_with_revision_and_metric(go_check: Any) -> None:
    message = _degraded_message(
        go_check,
        [
            {"kind": "Service", "name": "website-stable", "health": {"status": "Healthy"}},
            {"kind": "Rollout", "name": "website", "health": {"status": "Degraded", "message": ABORTED}},
        ],
    )
    assert message.startswith("*website* is degraded in `prod`\nRevision: `0123abc`\n"), message
    assert "\nRollout rolled back: `RolloutAborted: Rollout aborted update to revision 7: " in message
    assert 'Metric "successRate" assessed Failed' in message


def test_without_a_degraded_rollout_the_message_is_the_plain_one(go_check: Any) -> None:
    healthy = [{"kind": "Rollout", "name": "website", "health": {"status": "Healthy"}}]
    message = _degraded_message(go_check, healthy)
    assert "Rollout" not in message and message.endswith("none reported\n"), message
    no_message = [{"kind": "Rollout", "name": "website", "health": {"status": "Degraded"}}]
    assert _degraded_message(go_check, no_message).endswith("none reported\nRollout rolled back\n")


def test_with_the_in_cluster_prometheus_there_is_no_token_and_a_path_to_it() -> None:
    spec = d.analysis_template_spec(
        app="website",
        namespace="website",
        port=8080,
        settings=_settings(),
        address=d.IN_CLUSTER_PROMETHEUS,
        with_token=False,
    )
    assert "args" not in spec
    assert all("headers" not in m["provider"]["prometheus"] for m in spec["metrics"])
    assert d.IN_CLUSTER_PROMETHEUS == "http://kps-prometheus.monitoring.svc:9090"
    (policy,) = d.controller_policies(in_cluster_prometheus=True).values()
    assert policy["egress"][-1] == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9090}],
    }
    (plain,) = d.controller_policies().values()
    assert len(plain["egress"]) == 3
    with pytest.raises(ValueError, match="one metrics backend"):
        d.RolloutsControllerArgs(
            provider=None,  # type: ignore[arg-type]
            environment="prod",
            ha=True,
            project_id="p",
            region="fr-par",
            metrics_source_url="https://m",
            in_cluster_prometheus=True,
        )


# --- What Git may deliver as the app's Rollout ----------------------------------------------------


def _documented_rollout() -> dict[str, Any]:
    return d.rollout_manifest(
        app="website",
        namespace="website",
        replicas=3,
        port=8080,
        settings=_settings(),
        image=f"rg.fr-par.scw.cloud/acme/website:1.0@sha256:{'a' * 64}",
    )


def _rollout_denials(rollout: dict[str, Any]) -> list[str]:
    """The messages of the validations that deny ``rollout`` (cel-python, as the API server)."""
    from tests import cel

    celpy = cel.celpy_module()
    spec = d.rollout_policy_spec("website", "website", _settings())
    activation = {"object": celpy.json_to_cel(rollout)}
    return [v["message"] for v in spec["validations"] if not cel.holds(v["expression"], activation)]


def test_the_documented_rollout_is_admitted() -> None:
    assert _rollout_denials(_documented_rollout()) == []


def _steps(rollout: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = rollout["spec"]["strategy"]["canary"]["steps"]
    return steps


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # Straight to everyone: the gradual steps skipped.
        (lambda r: r["spec"]["strategy"]["canary"].update(steps=[{"setWeight": 100}]), "steps"),
        # One analysis dropped, or pointed at a cluster-wide template, or at another template.
        (lambda r: _steps(r).pop(2), "steps"),
        (lambda r: _steps(r)[2]["analysis"]["templates"][0].update(clusterScope=True), "steps"),
        (lambda r: _steps(r)[2]["analysis"]["templates"][0].update(templateName="always-passes"), "steps"),
        # A shorter pause, as a number of seconds or a shorter duration.
        (lambda r: _steps(r)[1]["pause"].update(duration=60), "steps"),
        # Another app's route, a second router, or other Services.
        (
            lambda r: r["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"][d.GATEWAY_PLUGIN].update(
                namespace="newsletter", httpRoute="newsletter-rollout"
            ),
            "trafficRouting.plugins",
        ),
        (
            lambda r: r["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"].update(
                {"argoproj-labs/other": {}}
            ),
            "trafficRouting.plugins",
        ),
        (lambda r: r["spec"]["strategy"]["canary"].update(stableService="website"), "stableService"),
        (lambda r: r["metadata"].update(name="website-2"), "metadata.name"),
        # No canary at all (a blue-green or plain strategy instead).
        (lambda r: r["spec"].update(strategy={"blueGreen": {"activeService": "website"}}), "steps"),
    ],
)
def test_a_rollout_that_leaves_the_platforms_strategy_is_denied_naming_the_field(
    change: Any, field: str
) -> None:
    rollout = _documented_rollout()
    change(rollout)
    denials = _rollout_denials(rollout)
    assert denials and any(field in message for message in denials), denials


def test_the_rollout_policy_is_declared_for_each_canary_app() -> None:
    recording = _canary_recording()
    policy = recording.named("app-website-rollout-policy")
    assert policy.inputs["metadata"] == {"name": "platform-rollout-website"}
    spec = policy.inputs["spec"]
    assert spec["matchConstraints"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "website"}
    }
    assert spec["matchConstraints"]["resourceRules"][0]["resources"] == ["rollouts"]
    binding = recording.named("app-website-rollout-policy-binding")
    assert binding.inputs["spec"] == {"policyName": "platform-rollout-website", "validationActions": ["Deny"]}
    assert policy.urn in binding.dependencies

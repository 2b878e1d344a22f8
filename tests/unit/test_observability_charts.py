"""What the observability charts' values hold their pods to (issue 18, item 5): sizes with memory
limits, restricted contexts where the workload allows one, pinned images, nothing deployed that no
node needs. Also the shared sizes and contexts of scw_platform/controller_values.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from scw_platform import controller_values, images
from scw_platform import observability as obs
from tests.harness import unwrap
from tests.unit.test_tls import restricted_problems

HELM = "kubernetes:helm.sh/v3:Release"
COLLECTORS = ("alloy-metrics", "alloy-singleton", "alloy-logs")
#: The collectors that can run restricted (alloy-logs reads root-owned node log files).
RESTRICTED_COLLECTORS = ("alloy-metrics", "alloy-singleton")


def _mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, f"{quantity!r}: the platform writes memory in Mi or Gi"
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def assert_sized(resources: dict[str, Any], what: str) -> None:
    """CPU and memory requested, a memory limit, and the limit not below the request."""
    assert resources["requests"]["cpu"], what
    request, limit = resources["requests"]["memory"], resources["limits"]["memory"]
    assert _mebibytes(request) <= _mebibytes(limit), what


def _agent(plan: runner.Plan) -> dict[str, Any]:
    (agent,) = [r for r in plan.by_type(HELM) if r.inputs["chart"] == obs.AGENT_CHART]
    return unwrap(agent.inputs["values"])


def _chart_values(plan: runner.Plan, chart: str) -> dict[str, Any]:
    (found,) = [r for r in plan.by_type(HELM) if r.inputs["chart"] == chart]
    return unwrap(found.inputs["values"])


@pytest.fixture(scope="module")
def prometheus_plan(stack_config: Callable[[str], dict[str, Any]]) -> runner.Plan:
    raw = stack_config("prod")
    raw["platform:operations"]["observability"] = {
        "backend": "prometheus",
        "contactPoints": [{"name": "chat", "kind": "webhook"}],
    }
    return runner.run("prod", config=raw)


# --- The metrics agent (k8s-monitoring) ------------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_agent_deploys_no_windows_exporter(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    metrics = _agent(committed_plans[stack])["clusterMetrics"]
    # deploy is the subchart's condition (the DaemonSet), enabled the scrape of it: both off.
    assert metrics["windows-exporter"] == {"enabled": False, "deploy": False}


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_agent_sizes_every_pod_it_runs(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    values = _agent(committed_plans[stack])
    metrics = values["clusterMetrics"]
    assert_sized(metrics["kube-state-metrics"]["resources"], "kube-state-metrics")
    assert_sized(metrics["node-exporter"]["resources"], "node-exporter")
    assert_sized(values["alloy-operator"]["resources"], "alloy-operator")
    for collector in COLLECTORS:
        assert values[collector]["enabled"] is True, collector
        assert_sized(values[collector]["alloy"]["resources"], collector)
    for collector in RESTRICTED_COLLECTORS:
        assert_sized(values[collector]["configReloader"]["resources"], f"{collector} config reloader")


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_agent_images_are_pinned(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    values = _agent(committed_plans[stack])
    # Left empty, the operator would pick the Alloy version: every collector names the tag.
    assert re.fullmatch(r"v\d+\.\d+\.\d+", obs.ALLOY_IMAGE_TAG)
    assert {values[c]["image"]["tag"] for c in COLLECTORS} == {obs.ALLOY_IMAGE_TAG}
    assert values["clusterMetrics"]["node-exporter"]["image"]["tag"] == obs.NODE_EXPORTER_IMAGE_TAG
    assert "latest" not in str(values)
    # And every one of them by digest too, the config reloader and kube-state-metrics on the tag
    # (their charts render the tag as given); only the operator's digest is a gap (images.yaml).
    reloader = f"{obs.CONFIG_RELOADER_IMAGE_TAG}@{images.digest('prometheus-config-reloader')}"
    for collector in COLLECTORS:
        assert values[collector]["image"]["digest"] == images.digest("alloy"), collector
        assert values[collector]["configReloader"]["image"] == {"tag": reloader}, collector
    assert values["clusterMetrics"]["node-exporter"]["image"]["digest"] == images.digest("node-exporter")
    assert values["clusterMetrics"]["kube-state-metrics"]["image"] == {
        "tag": f"{obs.KUBE_STATE_METRICS_IMAGE_TAG}@{images.digest('kube-state-metrics')}"
    }
    assert "image" not in values["alloy-operator"]


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_collectors_run_restricted_with_a_writable_tmp(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    values = _agent(committed_plans[stack])
    for collector in RESTRICTED_COLLECTORS:
        alloy = values[collector]["alloy"]
        context = alloy["securityContext"]
        assert restricted_problems({}, context) == [], collector
        # The chart adds the runtime's default capabilities back: the values take them away.
        assert context["capabilities"] == {"drop": ["ALL"], "add": []}
        assert context["runAsUser"] == obs.ALLOY_USER != 0
        reloader = values[collector]["configReloader"]["securityContext"]
        assert restricted_problems({}, reloader) == [], f"{collector} config reloader"
        # Alloy's storage path (/tmp/alloy) on an emptyDir: a read-only root would stop the WAL.
        [mount] = alloy["mounts"]["extra"]
        [volume] = values[collector]["controller"]["volumes"]["extra"]
        assert mount == {"name": volume["name"], "mountPath": "/tmp"} and volume["emptyDir"] == {}
    # The log collector keeps the chart's own context (reads root-owned /var/log/pods files).
    assert "securityContext" not in values["alloy-logs"]["alloy"]


def test_restricted_check_is_not_vacuous() -> None:
    context = controller_values.restricted_container(user=obs.ALLOY_USER)
    assert restricted_problems({}, {**context, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}})
    assert restricted_problems({}, {**context, "allowPrivilegeEscalation": True})
    assert restricted_problems({}, {k: v for k, v in context.items() if k != "seccompProfile"})


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_alloy_operator_is_restricted(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    operator = _agent(committed_plans[stack])["alloy-operator"]
    assert restricted_problems(operator["podSecurityContext"], operator["securityContext"]) == []


def test_prometheus_backend_agent_still_pins_and_sizes_its_collectors(prometheus_plan: runner.Plan) -> None:
    values = _agent(prometheus_plan)
    assert "clusterMetrics" not in values and "alloy-metrics" not in values
    for collector in ("alloy-singleton", "alloy-logs"):
        assert values[collector]["image"]["tag"] == obs.ALLOY_IMAGE_TAG
        assert_sized(values[collector]["alloy"]["resources"], collector)


def test_prometheus_backend_sizes_every_component(prometheus_plan: runner.Plan) -> None:
    values = _chart_values(prometheus_plan, obs.PROMETHEUS_STACK_CHART)
    operator = values["prometheusOperator"]
    for what, resources in (
        ("operator", operator["resources"]),
        ("config reloader", operator["prometheusConfigReloader"]["resources"]),
        ("admission patch job", operator["admissionWebhooks"]["patch"]["resources"]),
        ("prometheus", values["prometheus"]["prometheusSpec"]["resources"]),
        ("alertmanager", values["alertmanager"]["alertmanagerSpec"]["resources"]),
        ("kube-state-metrics", values["kube-state-metrics"]["resources"]),
        ("node-exporter", values["prometheus-node-exporter"]["resources"]),
    ):
        assert_sized(resources, what)


# --- Blackbox exporter and Pushgateway ---------------------------------------------------------------

#: The blackbox chart's own container context (prometheus-community/helm-charts
#: charts/prometheus-blackbox-exporter/values.yaml, ``securityContext``): all but seccomp.
BLACKBOX_CHART_CONTAINER = {
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def test_blackbox_exporter_is_restricted_and_sized(committed_plans: dict[str, runner.Plan]) -> None:
    values = _chart_values(committed_plans["prod"], obs.BLACKBOX_CHART)
    assert_sized(values["resources"], "blackbox exporter")
    # The values add the pod-level seccomp profile the chart's defaults lack.
    assert restricted_problems({}, BLACKBOX_CHART_CONTAINER), "the chart's defaults alone fall short"
    assert restricted_problems(values["podSecurityContext"], BLACKBOX_CHART_CONTAINER) == []
    assert values["image"]["tag"] == obs.BLACKBOX_IMAGE_TAG


def test_pushgateway_probes_and_size(committed_plans: dict[str, runner.Plan]) -> None:
    values = _chart_values(committed_plans["prod"], obs.PUSHGATEWAY_CHART)
    assert values["liveness"] == {"enabled": True} and values["readiness"] == {"enabled": True}
    assert_sized(values["resources"], "pushgateway")
    assert restricted_problems(values["securityContext"], values["containerSecurityContext"]) == []


# --- The shared sizes and contexts -------------------------------------------------------------------


@pytest.mark.parametrize("size", sorted(controller_values.SIZES))
def test_every_size_requests_cpu_and_memory_under_a_memory_limit(size: controller_values.Size) -> None:
    resources = controller_values.resources(size)
    assert_sized(resources, size)
    assert "cpu" not in resources["limits"], "no CPU ceiling: throttling is by requests"


def test_sizes_and_contexts_are_fresh_copies() -> None:
    first = controller_values.resources("controller")
    first["limits"]["memory"] = "1Ti"
    assert controller_values.resources("controller")["limits"]["memory"] == "512Mi"
    context = controller_values.restricted_container()
    context["capabilities"]["drop"].append("x")
    assert controller_values.restricted_container()["capabilities"] == {"drop": ["ALL"]}


def test_restricted_contexts_meet_the_profile_with_and_without_a_user() -> None:
    for user in (None, 65532):
        pod = controller_values.restricted_pod(user=user)
        container = controller_values.restricted_container(user=user)
        assert restricted_problems(pod, container) == [], user
        assert restricted_problems({}, container) == [], "the container context stands on its own"
    assert controller_values.restricted_container(user=10)["runAsUser"] == 10
    assert "runAsUser" not in controller_values.restricted_container()

"""Observability as the program declares it: Cockpit data sources and tokens, the agent in both
clusters, alert rules as code split by where Cockpit evaluates them, routing to contact points,
synthetic probes of every app hostname, and the in-cluster Prometheus backend."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import runner
from offline.mocks import Registration
from policy.rules import ResourceView, image_problem, is_default_deny
from program import alerts
from program.paths import ALERT_RULES
from scw_platform import images, labels, slo
from scw_platform import observability as obs
from tests.harness import is_secret, plaintext_secrets, unwrap

SOURCE = "scaleway:observability/source:Source"
TOKEN = "scaleway:observability/token:Token"
ALERT_MANAGER = "scaleway:observability/alertManager:AlertManager"
HELM = "kubernetes:helm.sh/v3:Release"
JOB = "kubernetes:batch/v1:Job"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
CUSTOM_RESOURCE_PROBE = "kubernetes:monitoring.coreos.com/v1:Probe"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
PROMTOOL = shutil.which("promtool")
ALL_GROUPS = [g["name"] for g in obs.load_rule_groups(ALERT_RULES)]
#: What a stack without the heartbeat loads of the rule file (the Watchdog would reach everyone).
DEFAULT_GROUPS = [n for n in ALL_GROUPS if n != alerts.WATCHDOG_GROUP]


def _members(plan: runner.Plan) -> list[Registration]:
    parents = {r.urn for r in plan.registrations if r.type == "platform:observability:Observability"}
    assert len(parents) == 1
    return [r for r in plan.registrations if r.parent in parents]


def _typed(members: list[Registration], type_token: str) -> list[Registration]:
    return [r for r in members if r.type == type_token]


def _release(members: list[Registration], chart: str) -> Registration:
    (found,) = [r for r in _typed(members, HELM) if r.inputs["chart"] == chart]
    return found


def _secret_named(members: list[Registration], name: str) -> Registration:
    (found,) = [r for r in _typed(members, SECRET) if r.inputs["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def prod(committed_plans: dict[str, runner.Plan]) -> list[Registration]:
    return _members(committed_plans["prod"])


@pytest.fixture(scope="module")
def tooling(committed_plans: dict[str, runner.Plan]) -> list[Registration]:
    return _members(committed_plans["tooling"])


@pytest.fixture(scope="module")
def prometheus_plan(stack_config: Callable[[str], dict[str, Any]]) -> runner.Plan:
    raw = stack_config("prod")
    raw["platform:operations"]["observability"] = {
        "backend": "prometheus",
        "metricsRetentionDays": 15,
        "contactPoints": [
            {"name": "oncall", "email": "oncall@example.com"},
            {"name": "chat", "kind": "webhook"},
        ],
    }
    return runner.run("prod", config=raw)


# --- Cockpit: sources, tokens, the agent in both clusters -----------------------------------------


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_both_clusters_ship_metrics_and_logs_to_their_own_cockpit_sources(
    committed_plans: dict[str, runner.Plan], stack_config: Callable[[str], dict[str, Any]], stack: str
) -> None:
    members = _members(committed_plans[stack])
    settings = stack_config(stack)["platform:operations"]["observability"]
    sources = {r.inputs["type"]: r for r in _typed(members, SOURCE)}
    assert set(sources) == {"metrics", "logs"}
    assert sources["metrics"].inputs["retentionDays"] == settings["metricsRetentionDays"]
    assert sources["logs"].inputs["retentionDays"] == settings["logsRetentionDays"]
    assert {s.inputs["name"] for s in sources.values()} == {f"{stack}-metrics", f"{stack}-logs"}
    agent = _release(members, obs.AGENT_CHART)
    values = agent.inputs["values"]
    urls = {d["type"]: d["url"] for d in values["destinations"]}
    assert urls == {
        "prometheus": sources["metrics"].state["pushUrl"],
        "loki": sources["logs"].state["pushUrl"],
    }
    assert values["cluster"]["name"] == stack
    # Every cluster's agent runs on that cluster.
    assert agent.provider_urn.endswith(f"{stack}-k8s")


def test_agent_is_pinned_and_collects_cluster_node_and_log_data(prod: list[Registration]) -> None:
    agent = _release(prod, obs.AGENT_CHART)
    assert agent.inputs["version"] == obs.AGENT_CHART_VERSION == "3.5.6"
    assert agent.inputs["repositoryOpts"]["repo"] == obs.GRAFANA_REPO
    values = agent.inputs["values"]
    cluster_metrics = values["clusterMetrics"]
    assert cluster_metrics["enabled"] is True
    assert cluster_metrics["kube-state-metrics"]["deploy"] is True, (
        "the restore check's status comes from KSM"
    )
    assert cluster_metrics["node-exporter"]["deploy"] is True
    assert values["podLogs"]["enabled"] and values["clusterEvents"]["enabled"]
    assert agent.inputs["namespace"] == obs.MONITORING_NAMESPACE


def test_tokens_are_secret_scoped_and_kept_out_of_helm_values(prod: list[Registration]) -> None:
    tokens = {r.inputs["name"]: r for r in _typed(prod, TOKEN)}
    assert tokens["prod-agent"].inputs["scopes"] == {"writeLogs": True, "writeMetrics": True}
    assert tokens["prod-rules"].inputs["scopes"] == {"setupMetricsRules": True}
    for token in tokens.values():
        assert "secretKey" in token.additional_secret_outputs
        assert is_secret(token.state["secretKey"])
    secret = _secret_named(prod, obs.COCKPIT_TOKEN_SECRET)
    assert is_secret(secret.inputs["stringData"]) and set(unwrap(secret.inputs["stringData"])) == {"token"}
    agent = _release(prod, obs.AGENT_CHART)
    for destination in agent.inputs["values"]["destinations"]:
        # The chart reads the token from the program's Secret: no token in the values.
        assert destination["secret"] == {
            "create": False,
            "name": obs.COCKPIT_TOKEN_SECRET,
            "namespace": obs.MONITORING_NAMESPACE,
        }
        assert destination["tenantIdKey"] == "token"
    for reg in prod:
        assert plaintext_secrets(reg.inputs) == [], reg.name
    assert not any(is_secret(v) for v in agent.inputs["values"].values())


def test_monitoring_namespace_is_privileged_but_not_a_platform_namespace(
    prod: list[Registration], tooling: list[Registration]
) -> None:
    for members in (prod, tooling):
        (namespace,) = _typed(members, "kubernetes:core/v1:Namespace")
        namespace_labels = namespace.inputs["metadata"]["labels"]
        assert namespace.inputs["metadata"]["name"] == obs.MONITORING_NAMESPACE
        # node-exporter and the log collector need the host; everything else is audited as restricted.
        assert namespace_labels["pod-security.kubernetes.io/enforce"] == "privileged"
        assert namespace_labels["pod-security.kubernetes.io/warn"] == "restricted"
        # The platform label would admit it to the External Secrets stores and to the platform's
        # hostnames on the Gateway (Argo CD's, for one).
        assert labels.PLATFORM_NAMESPACE not in namespace_labels
        assert labels.APP_NAMESPACE not in namespace_labels


def test_the_component_builds_its_namespace_labels_without_the_platform_label() -> None:
    built = obs.monitoring_namespace_labels()
    assert built == labels.pod_security("privileged")
    assert labels.PLATFORM_NAMESPACE not in built
    (namespace_labels,) = [
        f for f in dataclasses.fields(obs.ObservabilityArgs) if f.name == "namespace_labels"
    ]
    assert namespace_labels.default_factory is obs.monitoring_namespace_labels


# --- Network policies of the monitoring namespace -----------------------------------------------------

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


#: What the collectors may reach, rule by rule.
MONITORING_EGRESS = [
    # Cluster DNS.
    {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    },
    # Its own pods: kube-state-metrics, the blackbox exporter, Alloy's cluster peers.
    {"to": [{"podSelector": {}}]},
    # Kapsule's API server (outside the cluster), kubelet/cAdvisor and node-exporter: ports only.
    {"ports": _tcp(6443, 10250, 9100)},
    # Argo CD's controller, External Secrets, cert-manager, Traefik and Argo Rollouts metrics, in
    # their namespaces.
    {"to": [{"namespaceSelector": {}}], "ports": _tcp(8082, 8080, 9402, 9100, 8090)},
    # Probes handed straight to Traefik by the CNI.
    {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
        "ports": _tcp(8443),
    },
    # Cockpit, the probed hostnames, the alert webhook: public addresses, HTTPS only.
    {
        "to": [
            {
                "ipBlock": {
                    "cidr": "0.0.0.0/0",
                    "except": [
                        "10.0.0.0/8",
                        "172.16.0.0/12",
                        "192.168.0.0/16",
                        "100.64.0.0/10",
                        "169.254.0.0/16",
                        "127.0.0.0/8",
                    ],
                }
            }
        ],
        "ports": _tcp(443),
    },
]


RESTORE_CHECK_PUSH = {
    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "restore-check"}}}],
    "ports": _tcp(9091),
}
PUSH_INGRESS: dict[str, list[dict[str, Any]]] = {"prod": [RESTORE_CHECK_PUSH], "tooling": []}


def _policies(members: list[Registration]) -> dict[str, Registration]:
    found = {r.inputs["metadata"]["name"]: r for r in _typed(members, NETWORK_POLICY)}
    assert {p.inputs["metadata"]["namespace"] for p in found.values()} == {obs.MONITORING_NAMESPACE}
    return found


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_monitoring_namespace_denies_by_default_and_opens_what_the_collectors_need(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    members = _members(committed_plans[stack])
    policies = _policies(members)
    assert set(policies) == {"default-deny", "monitoring-allow", "platform-rules-sync"}
    deny = policies["default-deny"]
    # The policy pack's own definition of a default deny.
    view = ResourceView(urn=deny.urn, type=deny.type, name=deny.name, inputs=deny.inputs)
    assert is_default_deny(view)
    allow = policies["monitoring-allow"].inputs["spec"]
    assert allow["podSelector"] == {} and sorted(allow["policyTypes"]) == ["Egress", "Ingress"]
    # Nothing outside the namespace may open a connection to it (kubelet probes come from the node),
    # but the restore check (production) to the Pushgateway's port.
    assert allow["ingress"] == [{"from": [{"podSelector": {}}]}, *PUSH_INGRESS[stack]]
    assert allow["egress"] == MONITORING_EGRESS
    # The collectors start (and are uninstalled) while their paths are open.
    workloads = [r for r in members if r.type in (HELM, JOB)]
    assert workloads
    for reg in workloads:
        assert {deny.urn, policies["monitoring-allow"].urn} <= set(reg.dependencies), reg.name


def test_prometheus_backend_admits_the_api_server_to_the_operator_webhook(
    prometheus_plan: runner.Plan,
) -> None:
    allow = _policies(_members(prometheus_plan))["monitoring-allow"].inputs["spec"]
    # Prod's website is a canary: its analysis queries Prometheus from Argo Rollouts' namespace.
    rollouts_query = {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argo-rollouts"}}}],
        "ports": _tcp(9090),
    }
    assert allow["ingress"] == [
        {"from": [{"podSelector": {}}]},
        {"ports": _tcp(10250)},
        RESTORE_CHECK_PUSH,
        rollouts_query,
    ]
    assert allow["egress"] == MONITORING_EGRESS


def _releases(plan: runner.Plan) -> dict[str, Registration]:
    return {r.inputs["name"]: r for r in _members(plan) if r.type == HELM}


def test_production_runs_a_pinned_restricted_pushgateway_the_agent_scrapes_with_pushed_labels(
    committed_plans: dict[str, runner.Plan],
) -> None:
    releases = _releases(committed_plans["prod"])
    gateway = releases[obs.PUSHGATEWAY_SERVICE].inputs
    assert (gateway["chart"], gateway["version"]) == ("prometheus-pushgateway", "3.6.1")
    values = gateway["values"]
    # A patch above the chart's appVersion v1.11.2: the one a digest is recorded for.
    assert values["image"] == {"tag": f"v1.11.3@{images.digest('pushgateway')}"}
    assert values["containerSecurityContext"]["readOnlyRootFilesystem"] is True
    assert values["containerSecurityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert values["serviceMonitor"] == {"enabled": False}
    # The chart's selector labels are what the restore check's egress policy names.
    assert values["nameOverride"] == values["fullnameOverride"] == "pushgateway"
    extra = releases[obs.AGENT_RELEASE].inputs["values"]["alloy-metrics"]["extraConfig"]
    block = extra[extra.index('prometheus.scrape "platform_pushgateway"') :]
    assert "honor_labels    = true" in block
    assert '"__address__" = "pushgateway.monitoring.svc:9091"' in block
    # Tooling runs no batch job that pushes: no Pushgateway there.
    assert obs.PUSHGATEWAY_SERVICE not in _releases(committed_plans["tooling"])
    assert "platform_pushgateway" not in str(
        _releases(committed_plans["tooling"])[obs.AGENT_RELEASE].inputs["values"]
    )


def test_prometheus_backend_scrapes_the_pushgateway_itself(prometheus_plan: runner.Plan) -> None:
    releases = _releases(prometheus_plan)
    assert obs.PUSHGATEWAY_SERVICE in releases
    spec = releases[obs.PROMETHEUS_STACK_RELEASE].inputs["values"]["prometheus"]["prometheusSpec"]
    (scrape,) = [c for c in spec["additionalScrapeConfigs"] if c["job_name"] == "pushgateway"]
    assert scrape["honor_labels"] is True
    assert scrape["static_configs"] == [{"targets": ["pushgateway.monitoring.svc:9091"]}]


# --- Alert rules as code ---------------------------------------------------------------------------


def _rule_files(members: list[Registration]) -> dict[str, dict[str, Any]]:
    (config,) = [
        r for r in _typed(members, CONFIG_MAP) if r.inputs["metadata"]["name"] == obs.RULES_CONFIG_MAP
    ]
    return {name.removesuffix(".yaml"): yaml.safe_load(text) for name, text in config.inputs["data"].items()}


def test_rule_groups_go_where_cockpit_evaluates_them(
    prod: list[Registration], tooling: list[Registration]
) -> None:
    files = _rule_files(prod)
    assert set(files) == {obs.CUSTOM, obs.SCALEWAY}
    assert [g["name"] for g in files[obs.SCALEWAY]["groups"]] == [alerts.DATABASE_GROUP]
    # Prod has the heartbeat: the Watchdog is evaluated in Cockpit with the rest of the file.
    assert [g["name"] for g in files[obs.CUSTOM]["groups"]] == [
        *(n for n in ALL_GROUPS if n != alerts.DATABASE_GROUP),
        alerts.PROBE_TARGETS_GROUP,
        slo.RULE_GROUP,
    ]
    assert files[obs.CUSTOM]["namespace"] == obs.RULES_NAMESPACE
    # The rules shipped are the tested rule file's, unchanged, plus the generated absence rules.
    by_name = {g["name"]: g for g in obs.load_rule_groups(ALERT_RULES)}
    for document in files.values():
        for group in document["groups"]:
            if group["name"] not in (alerts.PROBE_TARGETS_GROUP, slo.RULE_GROUP):
                assert group == by_name[group["name"]]
    # Tooling: no database and no restore check, so neither group (absent() would fire there).
    tooling_files = _rule_files(tooling)
    assert set(tooling_files) == {obs.CUSTOM}
    names = [g["name"] for g in tooling_files[obs.CUSTOM]["groups"]]
    assert alerts.DATABASE_GROUP not in names and alerts.BACKUPS_GROUP not in names
    assert "platform-gitops" in names and "platform-nodes" in names
    assert alerts.WATCHDOG_GROUP not in names, "no heartbeat in tooling: the Watchdog would reach everyone"
    # Tooling probes production's hostnames: their absence rules go with them.
    assert alerts.PROBE_TARGETS_GROUP in names


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's prometheus package")
def test_shipped_rule_files_pass_promtool(prod: list[Registration], tmp_path: Path) -> None:
    assert PROMTOOL is not None
    for target, document in _rule_files(prod).items():
        path = tmp_path / f"{target}.yaml"
        path.write_text(yaml.safe_dump({"groups": document["groups"]}))
        proc = subprocess.run(
            [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_sync_jobs_load_each_file_into_its_data_source(
    prod: list[Registration], committed_plans: dict[str, runner.Plan]
) -> None:
    jobs = {r.name.rsplit("-", 1)[-1]: r for r in _typed(prod, JOB)}
    assert set(jobs) == {obs.CUSTOM, obs.SCALEWAY}
    metrics = next(r for r in _typed(prod, SOURCE) if r.inputs["type"] == "metrics")
    for target, job in jobs.items():
        assert job.delete_before_replace, "a Job's template is immutable"
        assert job.inputs["metadata"]["name"].startswith(f"platform-rules-{target}-")
        (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
        assert image_problem(container["image"]) is None and container["image"] == obs.MIMIRTOOL_IMAGE
        assert container["args"] == ["rules", "sync", f"--rule-files=/rules/{target}.yaml"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MIMIR_TENANT_ID"]["valueFrom"]["secretKeyRef"]["name"] == obs.RULES_TOKEN_SECRET
        if target == obs.CUSTOM:
            assert env["MIMIR_ADDRESS"]["value"] == metrics.state["url"]
        else:
            # The project's Scaleway Metrics source, read from Cockpit (not one the stack creates).
            assert env["MIMIR_ADDRESS"]["value"].endswith(".metrics.cockpit.fr-par.scw.cloud")
            assert env["MIMIR_ADDRESS"]["value"] != metrics.state["url"]
    # A changed rule file gives the Job a new name, so the sync runs again.
    first = obs.content_hash(obs.mimir_rule_file(obs.load_rule_groups(ALERT_RULES)[:1]))
    assert first != obs.content_hash(obs.mimir_rule_file(obs.load_rule_groups(ALERT_RULES)[:2]))


def test_rule_split_follows_what_the_stack_runs() -> None:
    groups = obs.load_rule_groups(ALERT_RULES)
    cluster, scaleway = alerts.split_rule_groups(groups, restore_check=False, database=False)
    assert scaleway == [] and alerts.BACKUPS_GROUP not in [g["name"] for g in cluster]
    cluster, scaleway = alerts.split_rule_groups(groups, restore_check=True, database=True)
    assert [g["name"] for g in scaleway] == [alerts.DATABASE_GROUP]
    assert alerts.BACKUPS_GROUP in [g["name"] for g in cluster]


# --- Routing ---------------------------------------------------------------------------------------


def test_the_alert_manager_is_declared_once_per_project(
    prod: list[Registration], tooling: list[Registration], committed_plans: dict[str, runner.Plan]
) -> None:
    """Prod declares it (tooling's alerts follow prod's routes); with Telegram and the heartbeat it
    belongs to the loaded routing (tests/unit/test_cockpit_routing.py), not to this component, and
    the email path is tested there too."""
    assert not _typed(prod, ALERT_MANAGER) and not _typed(tooling, ALERT_MANAGER)
    (manager,) = committed_plans["prod"].by_type(ALERT_MANAGER)
    assert manager.inputs["region"] == "fr-par"
    assert not committed_plans["tooling"].by_type(ALERT_MANAGER), (
        "one alert manager per project: declared once"
    )


# --- Synthetic checks ------------------------------------------------------------------------------


def test_every_app_hostname_is_probed_every_30_seconds(
    prod: list[Registration], tooling: list[Registration], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    hostnames = [app["hostname"] for app in stack_config("prod")["platform:apps"]]
    blackbox = _release(prod, obs.BLACKBOX_CHART)
    assert blackbox.inputs["version"] == obs.BLACKBOX_CHART_VERSION
    values = blackbox.inputs["values"]
    assert values["image"]["tag"] == obs.BLACKBOX_IMAGE_TAG
    module = values["config"]["modules"][obs.PROBE_MODULE]
    assert module["http"]["fail_if_not_ssl"] is True
    assert module["http"]["tls_config"]["insecure_skip_verify"] is False
    assert module["http"]["valid_status_codes"] == [], "empty means 2xx"
    scrape = _release(prod, obs.AGENT_CHART).inputs["values"]["alloy-metrics"]["extraConfig"]
    assert 'scrape_interval = "30s"' in scrape
    # Its own apps, and tooling's public name (environments.yaml): losing tooling is seen here.
    for hostname in [*hostnames, "argocd.tooling.example.com"]:
        assert f'"__param_target" = "https://{hostname}/"' in scrape
    assert scrape.count("__param_target") == len(hostnames) + 1
    assert f"prometheus.remote_write.{obs.alloy_name(obs.METRICS_DESTINATION)}.receiver" in scrape


def test_tooling_probes_production_from_outside_its_cluster(
    tooling: list[Registration], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    """Cross-cluster probes: production's hostnames, from production's registration, probed by
    tooling's blackbox exporter; dev's are not (not user-facing)."""
    assert [r for r in _typed(tooling, HELM) if r.inputs["chart"] == obs.BLACKBOX_CHART]
    scrape = _release(tooling, obs.AGENT_CHART).inputs["values"]["alloy-metrics"]["extraConfig"]
    targets = sorted(re.findall(r'"__param_target" = "([^"]+)"', scrape))
    prod_hostnames = [app["hostname"] for app in stack_config("prod")["platform:apps"]]
    assert targets == sorted(f"https://{hostname}/" for hostname in prod_hostnames)


# --- Backend prometheus ----------------------------------------------------------------------------


def test_prometheus_backend(prometheus_plan: runner.Plan) -> None:
    members = _members(prometheus_plan)
    stack = _release(members, obs.PROMETHEUS_STACK_CHART)
    assert stack.inputs["version"] == obs.PROMETHEUS_STACK_CHART_VERSION
    values = stack.inputs["values"]
    assert values["prometheus"]["prometheusSpec"]["retention"] == "15d"
    assert values["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"] is False
    receivers = {r["name"]: r for r in values["alertmanager"]["config"]["receivers"]}
    receiver = receivers["chat"]["webhook_configs"][0]
    assert receiver["url_file"] == f"/etc/alertmanager/secrets/{obs.WEBHOOK_SECRET}/url"
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == [obs.WEBHOOK_SECRET]
    assert plaintext_secrets(values) == [] and not is_secret(values)
    webhook = _secret_named(members, obs.WEBHOOK_SECRET)
    assert is_secret(webhook.inputs["stringData"]) and set(unwrap(webhook.inputs["stringData"])) == {"url"}

    (rule,) = _typed(members, PROMETHEUS_RULE)
    names = [g["name"] for g in rule.inputs["spec"]["groups"]]
    assert names == [
        *(n for n in DEFAULT_GROUPS if n != alerts.DATABASE_GROUP),
        alerts.PROBE_TARGETS_GROUP,
        slo.RULE_GROUP,
    ]
    assert stack.urn in rule.dependencies, "the operator's CRDs come with the release"

    probes = _typed(members, CUSTOM_RESOURCE_PROBE)
    targets = sorted(t for p in probes for t in p.inputs["spec"]["targets"]["staticConfig"]["static"])
    assert targets == [
        "https://argocd.tooling.example.com/",
        "https://newsletter.example.com/",
        "https://www.example.com/",
    ]
    assert {p.inputs["spec"]["interval"] for p in probes} == {"30s"}
    assert {p.inputs["spec"]["module"] for p in probes} == {obs.PROBE_MODULE}

    # Metrics stay in the cluster; logs still go to Cockpit; the database group still goes to
    # Cockpit's Scaleway Metrics (only the email contact points receive it).
    assert {r.inputs["type"] for r in _typed(members, SOURCE)} == {"logs"}
    destinations = _release(members, obs.AGENT_CHART).inputs["values"]["destinations"]
    assert [d["type"] for d in destinations] == ["loki"]
    assert "clusterMetrics" not in _release(members, obs.AGENT_CHART).inputs["values"]
    assert [r.name.rsplit("-", 1)[-1] for r in _typed(members, JOB)] == [obs.SCALEWAY]
    assert len(_typed(members, ALERT_MANAGER)) == 1


def test_prometheus_backend_custom_resources_are_parented_and_explicit(prometheus_plan: runner.Plan) -> None:
    for reg in _members(prometheus_plan):
        if reg.type.startswith("kubernetes:"):
            assert reg.provider_urn.endswith("prod-k8s") and reg.name.startswith("prod-observability-"), (
                reg.name
            )


# The alerts on Argo CD, External Secrets and cert-manager need those controllers' metrics.
SCRAPED_CONTROLLERS = {
    "argo-cd": (("controller", "metrics", "service", "annotations"), labels.ARGOCD_CONTROLLER_METRICS_PORT),
    "external-secrets": (("metrics", "service", "annotations"), labels.EXTERNAL_SECRETS_METRICS_PORT),
    "cert-manager": (("serviceAnnotations",), labels.CERT_MANAGER_METRICS_PORT),
}


@pytest.mark.parametrize("stack", ["tooling", "prod"])
def test_controllers_behind_alerts_are_scraped(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    releases = {r.inputs["chart"]: r for r in committed_plans[stack].by_type(HELM)}
    expected = {chart for chart in SCRAPED_CONTROLLERS if chart in releases}
    assert expected >= {"external-secrets", "cert-manager"}, "both clusters run these"
    for chart in expected:
        path, port = SCRAPED_CONTROLLERS[chart]
        node: Any = unwrap(releases[chart].inputs["values"])
        for key in path:
            node = node[key]
        assert node == {"k8s.grafana.com/scrape": "true", "k8s.grafana.com/metrics.portNumber": str(port)}
    if stack == "tooling":
        assert "argo-cd" in expected
        controller = unwrap(releases["argo-cd"].inputs["values"])["controller"]
        assert controller["metrics"]["enabled"] is True


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's prometheus package")
def test_prometheus_backend_scrapes_the_same_annotations(tmp_path: Path) -> None:
    """The Prometheus backend's job for the annotations: promtool accepts its relabelling, and the
    rewrite sends the scrape to the annotated port."""
    assert PROMTOOL is not None
    values = obs.prometheus_stack_values(retention_days=15)
    (job,) = values["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
    assert job == obs.ANNOTATED_SERVICES_SCRAPE
    keep, rewrite = job["relabel_configs"][:2]
    assert keep["source_labels"] == ["__meta_kubernetes_service_annotation_k8s_grafana_com_scrape"]
    # Debian's promtool is built without Kubernetes discovery: check the rest with a static target.
    checked = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    checked["static_configs"] = [{"targets": ["10.0.0.5:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [checked]}))
    proc = subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Prometheus anchors relabel regexes and joins source labels with ";".
    match = re.fullmatch(rewrite["regex"], "10.0.0.5:8080;9402")
    assert match is not None
    assert rewrite["replacement"].replace("$1", match[1]).replace("$2", match[2]) == "10.0.0.5:9402"


def test_probes_may_reach_the_front_doors_pods_only_when_given_them() -> None:
    pods = obs.FrontDoorPods(namespace="traefik", port=8443)
    to_pods = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
        "ports": [{"protocol": "TCP", "port": 8443}],
    }
    assert to_pods in obs.monitoring_policy_spec(backend="cockpit", front_door=pods)["egress"]
    without = obs.monitoring_policy_spec(backend="cockpit")["egress"]
    assert not any("traefik" in str(rule) for rule in without)


def test_only_the_canaries_analysis_may_query_the_in_cluster_prometheus() -> None:
    from_rollouts = {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argo-rollouts"}}}],
        "ports": [{"protocol": "TCP", "port": obs.PROMETHEUS_API_PORT}],
    }
    spec = obs.monitoring_policy_spec(backend="prometheus", query_from=["argo-rollouts"])
    assert from_rollouts in spec["ingress"]
    # Nobody else; and with Cockpit there is no Prometheus to reach.
    assert from_rollouts not in obs.monitoring_policy_spec(backend="prometheus")["ingress"]
    assert (
        from_rollouts
        not in obs.monitoring_policy_spec(backend="cockpit", query_from=["argo-rollouts"])["ingress"]
    )


def test_the_rollouts_controllers_metrics_port_is_scraped_from_monitoring() -> None:
    """The collectors may reach the port the controller's Service asks to be scraped on, and the
    controller's namespace admits them on it (scw_platform/delivery.py)."""
    from scw_platform import delivery

    egress = obs.monitoring_policy_spec(backend="cockpit")["egress"]
    (controllers,) = [rule for rule in egress if rule.get("to") == [{"namespaceSelector": {}}]]
    assert {"protocol": "TCP", "port": delivery.CONTROLLER_METRICS_PORT} in controllers["ports"]
    (policy,) = delivery.controller_policies().values()
    ports = [p["port"] for rule in policy["ingress"] for p in rule["ports"]]
    assert ports == [delivery.CONTROLLER_METRICS_PORT]

"""Progressive delivery: a new release takes a slice of real traffic first, and rolls itself back.

An app that declares ``delivery: {strategy: canary, steps: [5, 25, 50, 100], pauseMinutes: 10}``
is delivered by an Argo Rollouts ``Rollout`` (from the app's GitOps path, in place of its
Deployment) whose canary steps shift the weights of the app's HTTPRoute on the platform Gateway:
at each step the new ReplicaSet gets that share of the requests for ``pauseMinutes``, then an
``AnalysisRun`` of the platform's ``AnalysisTemplate`` reads the canary's own success rate and
latency from Traefik's request metrics in the stack's metrics backend. A failed measurement aborts
the rollout: the controller sets the canary's weight back to 0, scales the canary down and the
stable ReplicaSet keeps serving (docs/delivery.md). Apps without ``delivery`` keep their plain
Deployment and the single-backend route of :mod:`scw_platform.apps`.

Per workload cluster (prod, dev), :class:`RolloutsController`:

* Argo Rollouts from argo-helm's ``argo-rollouts`` chart, pinned (:data:`ROLLOUTS_CHART_VERSION`,
  whose images are :data:`ROLLOUTS_IMAGE_TAG`, the version of the CRDs the offline validation
  reads), in its own namespace with Pod Security ``restricted``, two replicas spread over zones and
  nodes with a PodDisruptionBudget in HA, no dashboard, and of the chart's provider RBAC only the
  Gateway API rules (``providerRBAC.providers``; every other traffic provider's rules off);
* the Gateway API traffic-router plugin (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi,
  :data:`GATEWAY_PLUGIN_VERSION`): the controller downloads the release's linux-amd64 binary from
  GitHub when it starts, as the ``argo-rollouts-config`` ConfigMap's ``trafficRouterPlugins`` entry
  says (chart value ``controller.trafficRouterPlugins``). That download, and the analysis queries
  to Cockpit, are the controller's only ways out beside DNS and the API server;
* a default deny and exact allows (:func:`controller_policies`).

Per canary app, in its namespace (:func:`declare_canary`): the Services ``<app>-stable`` and
``<app>-canary`` (the controller adds a pod-template-hash to each selector), the HTTPRoute
``<app>-rollout`` with both as backendRefs (stable 100, canary 0; named apart from a plain app's
route ``<app>``, see :func:`route_name`), the Secret with the metrics backend's query token and the
``AnalysisTemplate`` ``<app>-canary``.

One writer of the weights: the HTTPRoute is declared by the program once (100/0), and from then on
only the Rollout's plugin writes ``spec.rules`` (the weights live there: the CRD marks ``rules``
and ``backendRefs`` atomic lists, so whoever applies them owns them whole). The route's resource
ignores changes to ``spec.rules`` so a later ``pulumi up`` never re-applies a split mid-rollout, and
the route names its writer (:data:`TRAFFIC_WRITER_ANNOTATION`), which the policy pack checks
(``canary-route-single-writer``). Argo CD never sees the route: it is the platform's envelope, not
in Git, so no ``ignoreDifferences`` is needed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from scw_platform import helm, images, kube, labels
from scw_platform.observability import PROMETHEUS_API_PORT, PROMETHEUS_STACK_RELEASE
from scw_platform.settings import Settings
from scw_platform.slo import traefik_backend, traefik_error_ratio, traefik_latency_quantile

# --------------------------------------------------------------------------------------------
# Settings: platform:apps[].delivery
# --------------------------------------------------------------------------------------------

STRATEGIES = ("canary",)
MAX_STEPS = 10
#: A step's pause is also the analysis window: at least a minute (Traefik is scraped every 30 s
#: to 1 min; a shorter window holds one sample or none) and at most a day.
MIN_PAUSE_MINUTES = 1
MAX_PAUSE_MINUTES = 24 * 60

SUCCESS_RATE = "successRate"
LATENCY_P95 = "latencyP95"
LATENCY_P99 = "latencyP99"
#: The analysis metrics the platform collects for every app (Traefik's per-service counter and
#: latency histogram, scw_platform.ingress): name -> what ``threshold`` means.
COLLECTED_METRICS: Mapping[str, str] = {
    SUCCESS_RATE: "the lowest share of non-5xx responses, in percent (e.g. 99.5)",
    LATENCY_P95: "the highest 95th percentile of response time, in milliseconds (e.g. 500)",
    LATENCY_P99: "the highest 99th percentile of response time, in milliseconds (e.g. 1200)",
}
QUANTILES: Mapping[str, float] = {LATENCY_P95: 0.95, LATENCY_P99: 0.99}
MAX_LATENCY_MS = 60_000


def _strategy(value: Any) -> Any:
    if value not in STRATEGIES:
        raise ValueError(f"must be one of: {', '.join(STRATEGIES)} (got {value!r})")
    return value


def _whole_minutes(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of minutes like 10, not a duration (got {value!r})")
    if value < MIN_PAUSE_MINUTES:
        raise ValueError(
            f"must be at least {MIN_PAUSE_MINUTES} minute (got {value}): the pause is the analysis window, "
            "and Traefik's metrics are scraped every 30 s to 1 min"
        )
    if value > MAX_PAUSE_MINUTES:
        raise ValueError(f"must be at most {MAX_PAUSE_MINUTES} minutes, one day (got {value})")
    return value


class AnalysisMetric(Settings):
    """One measurement of each step's analysis."""

    metric: str
    """successRate, latencyP95 or latencyP99: Traefik's request metrics for the canary's Service."""
    threshold: float
    """successRate: the lowest percentage of non-5xx responses that passes (0 to 100, exclusive);
    latencyP95/latencyP99: the highest response time that passes, in milliseconds."""

    @field_validator("metric", mode="before")
    @classmethod
    def _collected(cls, metric: Any) -> Any:
        if metric not in COLLECTED_METRICS:
            known = "; ".join(f"{name}: {what}" for name, what in COLLECTED_METRICS.items())
            raise ValueError(f"{metric!r} is not a metric the platform collects (one of {known})")
        return metric

    @field_validator("threshold", mode="before")
    @classmethod
    def _in_range(cls, threshold: Any, info: ValidationInfo) -> Any:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"must be a number, without quotes or unit (got {threshold!r})")
        metric = info.data.get("metric")
        if metric == SUCCESS_RATE and not 0 < threshold < 100:
            raise ValueError(f"a success rate is a percentage strictly between 0 and 100 (got {threshold!r})")
        if metric in QUANTILES and not 0 < threshold <= MAX_LATENCY_MS:
            raise ValueError(
                f"a latency is in milliseconds, above 0 and at most {MAX_LATENCY_MS} (got {threshold!r})"
            )
        return float(threshold)


def _default_analysis() -> list[AnalysisMetric]:
    return [
        AnalysisMetric(metric=SUCCESS_RATE, threshold=99.0),
        AnalysisMetric(metric=LATENCY_P95, threshold=1000),
    ]


class DeliverySettings(Settings):
    """``platform:apps[].delivery``: how a new release reaches the app's users."""

    strategy: Annotated[Literal["canary"], BeforeValidator(_strategy)]
    """canary: each step sends a share of the requests to the new release (Gateway API weights)."""
    steps: list[int] = Field(min_length=1, max_length=MAX_STEPS)
    """The canary's share of requests at each step, in percent: strictly increasing, each 1 to 100,
    the last 100 (e.g. [5, 25, 50, 100])."""
    pause_minutes: Annotated[int, BeforeValidator(_whole_minutes)]
    """How long each step holds its share before the analysis reads it (whole minutes, at least 1):
    also the analysis's window."""
    analysis: list[AnalysisMetric] = Field(default_factory=_default_analysis, min_length=1)
    """What each step's analysis measures (default: successRate 99, latencyP95 1000 ms)."""

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        problems: list[str] = []
        outside = [s for s in steps if not 1 <= s <= 100]
        if outside:
            problems.append(f"every step is a percentage from 1 to 100 (got {outside})")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            problems.append(f"steps must be strictly increasing (got {steps})")
        if steps and steps[-1] != 100:
            problems.append(f"the last step must be 100 (got {steps[-1]}): the release ends serving everyone")
        if problems:
            raise ValueError("; ".join(problems))
        return steps

    @field_validator("analysis")
    @classmethod
    def _unique_metrics(cls, analysis: list[AnalysisMetric]) -> list[AnalysisMetric]:
        names = [m.metric for m in analysis]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric {', '.join(twice)} is listed twice")
        return analysis


def canary_allowed(replicas: int) -> str | None:
    """Why an app with ``replicas`` cannot deliver by canary, or None."""
    if replicas < 2:
        return (
            f"canary needs at least 2 replicas (got {replicas}): with one, the canary's first pod "
            "takes a whole replica's share and nothing is left to compare"
        )
    return None


# --------------------------------------------------------------------------------------------
# The controller: pinned chart, plugin, fence.
# --------------------------------------------------------------------------------------------

ROLLOUTS_NAMESPACE = "argo-rollouts"
ROLLOUTS_RELEASE = "argo-rollouts"
ARGO_HELM_REPO = "https://argoproj.github.io/argo-helm"
#: argo-helm charts/argo-rollouts 2.41.1 ships Argo Rollouts v1.9.1 (its appVersion; the image pair
#: quay.io/argoproj/argo-rollouts:v1.9.1 and kubectl-argo-rollouts:v1.9.1, as recorded in
#: spectrocloud/pack-central pull request #302). The tag is pinned here too, so the images cannot
#: move with a re-published chart. The CRDs of v1.9.1 are what offline validation reads.
ROLLOUTS_CHART = "argo-rollouts"
ROLLOUTS_CHART_VERSION = "2.41.1"
ROLLOUTS_IMAGE_TAG = "v1.9.1"
#: argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi: releases publish one binary per
#: platform (.github/workflows/release.yaml uploads gatewayapi-plugin-linux-amd64, ...), the name
#: without the hyphen in "gateway-api" since v0.4.0 (docs/installation.md). Kapsule's PRO2 nodes
#: are amd64.
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
GATEWAY_PLUGIN_VERSION = "v0.8.0"
GATEWAY_PLUGIN_URL = (
    "https://github.com/argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi/releases/download/"
    f"{GATEWAY_PLUGIN_VERSION}/gatewayapi-plugin-linux-amd64"
)
#: Argo Rollouts checks a downloaded plugin against ``sha256`` when the entry has one. The release
#: publishes no checksum file and this machine cannot download the binary, so the digest is not
#: filled in yet: set it (sha256sum of the asset above) before the first deploy. Until then the
#: binary is pinned by release tag only.
GATEWAY_PLUGIN_SHA256: str | None = None
CONTROLLER_METRICS_PORT = labels.ROLLOUTS_CONTROLLER_METRICS_PORT
#: Where the controller downloads its plugins (its home directory's plugin-bin) and /tmp: the only
#: paths it writes, each an emptyDir under a read-only root.
PLUGIN_DIR = "/home/argo-rollouts/plugin-bin"
WRITABLE_DIRS: Mapping[str, str] = {"plugin-bin": PLUGIN_DIR, "tmp": "/tmp"}
#: The chart's selector labels (templates/_helpers.tpl, ``argo-rollouts.selectorLabels``) and the
#: controller's component label (``controller.component``), which its pods carry.
CONTROLLER_PODS: Mapping[str, str] = {
    "app.kubernetes.io/name": "argo-rollouts",
    "app.kubernetes.io/instance": ROLLOUTS_RELEASE,
    "app.kubernetes.io/component": "rollouts-controller",
}
#: Traffic providers whose RBAC the chart adds (templates/_helpers.tpl,
#: ``argo-rollouts.controller.roleRules``): only the Gateway API's, which lets the controller
#: get/list/watch/update HTTPRoutes and create/update the plugin's ConfigMap. The chart cannot
#: narrow those to the app namespaces (its ClusterRole is cluster-wide, as is its read access to
#: Secrets, which analysis arguments need).
CHART_TRAFFIC_PROVIDERS = (
    "ambassador",
    "apisix",
    "awsAppMesh",
    "awsLoadBalancerController",
    "contour",
    "glooPlatform",
    "istio",
    "smi",
    "traefik",
)


def traffic_router_plugins() -> list[dict[str, str]]:
    """The ``trafficRouterPlugins`` entries of argo-rollouts-config (one: the Gateway API plugin)."""
    entry = {"name": GATEWAY_PLUGIN, "location": GATEWAY_PLUGIN_URL}
    if GATEWAY_PLUGIN_SHA256 is not None:
        entry["sha256"] = GATEWAY_PLUGIN_SHA256
    return [entry]


def controller_values(*, ha: bool) -> dict[str, Any]:
    """Values of the argo-rollouts chart (keys from its README and templates at the pinned line)."""
    # Read-only root, as the chart's own default (containerSecurityContext in its values.yaml,
    # which Helm merges key by key): the controller writes the downloaded plugin binary to
    # PLUGIN_DIR and temporary files to /tmp, each an emptyDir of its own (controller.volumes),
    # or it cannot start (argoproj/argo-rollouts#3642: "mkdir /home/argo-rollouts/plugin-bin:
    # read-only file system").
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    controller: dict[str, Any] = {
        "image": {"tag": ROLLOUTS_IMAGE_TAG},
        "replicas": 2 if ha else 1,
        # A drain evicts one replica and waits for it to be back; without HA a budget would block
        # every drain.
        "pdb": {"enabled": ha, "minAvailable": 1} if ha else {"enabled": False},
        "resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "trafficRouterPlugins": traffic_router_plugins(),
        "volumes": [{"name": name, "emptyDir": {"sizeLimit": "256Mi"}} for name in WRITABLE_DIRS],
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in WRITABLE_DIRS.items()],
        "metrics": {
            "enabled": True,
            "service": {
                "port": CONTROLLER_METRICS_PORT,
                "annotations": labels.scrape(CONTROLLER_METRICS_PORT),
            },
        },
    }
    if ha:
        controller["topologySpreadConstraints"] = kube.spread_constraints(CONTROLLER_PODS)
    # The controller's image by tag and digest (images.pin_chart: scw_platform/data/images.yaml).
    return images.pin_chart(
        ROLLOUTS_CHART,
        {
            "installCRDs": True,
            # A chart uninstall must not delete every Rollout of the cluster with its CRD.
            "keepCRDs": True,
            "controller": controller,
            "dashboard": {"enabled": False},
            "providerRBAC": {
                "enabled": True,
                "providers": {**dict.fromkeys(CHART_TRAFFIC_PROVIDERS, False), "gatewayAPI": True},
            },
            "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containerSecurityContext": restricted,
        },
    )


def controller_policies(*, in_cluster_prometheus: bool = False) -> dict[str, Any]:
    """The allows of the controller's namespace on top of its default deny (name -> spec).

    Out: DNS; the API server (Rollouts, ReplicaSets, Services, HTTPRoutes); public HTTPS, for the
    plugin binary (github.com and the release-asset host it redirects to, names without a stable
    address range) and the analysis queries to Cockpit's metrics API; with ``in_cluster_prometheus``
    the monitoring namespace's Prometheus port too. In: the metrics port from the monitoring
    namespace; kubelet probes come from the node and need no rule.
    """
    egress = [kube.dns_egress_rule(), kube.api_server_egress_rule(), kube.public_https_egress_rule()]
    if in_cluster_prometheus:
        egress.append(
            {
                "to": [{"namespaceSelector": kube.namespace_selector(kube.MONITORING_NAMESPACE)}],
                "ports": kube.tcp(IN_CLUSTER_PROMETHEUS_PORT),
            }
        )
    return {
        "argo-rollouts-controller": kube.policy_spec(
            CONTROLLER_PODS,
            ingress=[kube.from_namespace_rule(kube.MONITORING_NAMESPACE, kube.tcp(CONTROLLER_METRICS_PORT))],
            egress=egress,
        )
    }


@dataclass(frozen=True, kw_only=True)
class MetricsBackend:
    """Where the AnalysisRuns query Traefik's metrics: the stack's Cockpit metrics source, or the
    in-cluster Prometheus (observability backend prometheus)."""

    #: The Prometheus API root, ``<source url>/prometheus`` (the provider appends /api/v1/query).
    address: pulumi.Input[str]
    #: Secret: a Cockpit token that may only query metrics; None for the in-cluster Prometheus,
    #: which takes no credential (its namespace's policy says who may reach it).
    token: pulumi.Input[str] | None = None


#: kube-prometheus-stack's Prometheus Service with the platform's ``fullnameOverride``
#: (scw_platform.observability.PROMETHEUS_STACK_RELEASE): ``<fullname>-prometheus`` on 9090
#: (prometheus-community/helm-charts kube-prometheus-stack, templates/prometheus/service.yaml,
#: ``prometheus.service.port``).
IN_CLUSTER_PROMETHEUS_PORT = PROMETHEUS_API_PORT
IN_CLUSTER_PROMETHEUS = f"http://{PROMETHEUS_STACK_RELEASE}-prometheus.{kube.MONITORING_NAMESPACE}.svc:{IN_CLUSTER_PROMETHEUS_PORT}"


@dataclass(frozen=True, kw_only=True)
class RolloutsControllerArgs:
    provider: k8s.Provider
    environment: str
    #: Two replicas with a budget and a spread (production); one otherwise.
    ha: bool
    project_id: pulumi.Input[str]
    region: str
    #: The stack's Cockpit metrics source URL (``Observability.metrics_source_url``); None where the
    #: stack ships no metrics (then no query token, and no app of the stack may be a canary).
    metrics_source_url: pulumi.Input[str] | None = None
    #: Observability backend prometheus: canaries are analysed against the in-cluster Prometheus
    #: (no token), and the controller may reach it.
    in_cluster_prometheus: bool = False
    namespace_labels: Mapping[str, str] = field(default_factory=labels.platform_namespace)

    def __post_init__(self) -> None:
        if self.in_cluster_prometheus and self.metrics_source_url is not None:
            raise ValueError("one metrics backend: a Cockpit metrics source or the in-cluster Prometheus")


class RolloutsController(pulumi.ComponentResource):
    """Argo Rollouts with the Gateway API plugin, fenced, and the analysis's query token."""

    release: k8s.helm.v3.Release
    #: Where canaries are analysed; None without a metrics source.
    backend: MetricsBackend | None = None

    def __init__(
        self, name: str, args: RolloutsControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:delivery:RolloutsController", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": ROLLOUTS_NAMESPACE, "labels": dict(args.namespace_labels)},
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        policies = kube.namespace_policies(
            name,
            namespace=ROLLOUTS_NAMESPACE,
            allows=controller_policies(in_cluster_prometheus=args.in_cluster_prometheus),
            opts=in_namespace,
        )
        # helm.v3.Release: one atomic release whose CRDs exist before the AnalysisTemplates that
        # follow; chart, version and values are recorded as inputs for the offline checks.
        self.release = helm.release(
            f"{name}-controller",
            release_name=ROLLOUTS_RELEASE,
            chart=helm.Chart(ROLLOUTS_CHART, ROLLOUTS_CHART_VERSION, ARGO_HELM_REPO),
            namespace=namespace.metadata.name,
            values=controller_values(ha=args.ha),
            timeout=600,
            # Its paths open first: the controller downloads its plugin when it starts.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=policies)),
        )
        if args.metrics_source_url is not None:
            self.backend = self._analysis_backend(name, args, args.metrics_source_url)
        elif args.in_cluster_prometheus:
            self.backend = MetricsBackend(address=IN_CLUSTER_PROMETHEUS)
        self.register_outputs({"namespace": ROLLOUTS_NAMESPACE, "chartVersion": ROLLOUTS_CHART_VERSION})

    def _analysis_backend(
        self, name: str, args: RolloutsControllerArgs, metrics_source_url: pulumi.Input[str]
    ) -> MetricsBackend:
        """A Cockpit token that may only query metrics, and the source's Prometheus API root."""
        # Query scope only: the token can neither write metrics nor touch alert rules.
        token = scaleway.observability.Token(
            f"{name}-analysis-token",
            name=f"{args.environment}-canary-analysis",
            project_id=args.project_id,
            region=args.region,
            scopes={"query_metrics": True},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return MetricsBackend(
            address=pulumi.Output.from_input(metrics_source_url).apply(
                lambda url: f"{url.rstrip('/')}/prometheus"
            ),
            token=pulumi.Output.secret(token.secret_key),
        )


# --------------------------------------------------------------------------------------------
# Per app: Services, route, analysis.
# --------------------------------------------------------------------------------------------

#: The label the app's Rollout gives its pods (docs/apps.md's template): the Services select it.
POD_NAME_LABEL = "app.kubernetes.io/name"
#: Names the one writer of a canary route's weights (the policy pack reads it).
TRAFFIC_WRITER_ANNOTATION = "platform.scw/traffic-writer"
ANALYSIS_TOKEN_KEY = "token"
#: Measurements the provider may fail to take (Cockpit unreachable) before the run errors, which
#: also aborts: three in a row is a minute and a half of no evidence.
CONSECUTIVE_ERROR_LIMIT = 3
MEASUREMENT_INTERVAL = "30s"
MEASUREMENTS = 3


def stable_service(app: str) -> str:
    return f"{app}-stable"


def canary_service(app: str) -> str:
    return f"{app}-canary"


def analysis_template_name(app: str) -> str:
    return f"{app}-canary"


def analysis_secret_name(app: str) -> str:
    return f"{app}-canary-analysis"


def route_name(app: str) -> str:
    """The canary app's HTTPRoute: named apart from the plain route ``<app>`` on purpose. Turning
    ``delivery`` on (or off) then creates the other route before deleting this one (a new resource,
    not an update the route's ``ignore_changes`` would swallow), so the hostname is always served."""
    return f"{app}-rollout"


def traffic_writer(app: str) -> str:
    """The annotation value: the Rollout (``argoproj.io/Rollout/<name>``) that owns the weights."""
    return f"argoproj.io/Rollout/{app}"


def service_spec(app: str, port: int) -> dict[str, Any]:
    """A ClusterIP Service over the app's pods; the controller narrows it to one ReplicaSet."""
    return {
        "type": "ClusterIP",
        "selector": {POD_NAME_LABEL: app},
        "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
    }


def initial_backend_refs(app: str, port: int) -> list[dict[str, Any]]:
    """Everything to stable: the state between rollouts, and the one the program ever writes."""
    return [
        {"name": stable_service(app), "port": port, "weight": 100},
        {"name": canary_service(app), "port": port, "weight": 0},
    ]


def rollout_steps(app: str, settings: DeliverySettings) -> list[dict[str, Any]]:
    """The Rollout's canary steps: at each share, hold ``pauseMinutes``, then the analysis."""
    steps: list[dict[str, Any]] = []
    for weight in settings.steps:
        steps += [
            {"setWeight": weight},
            {"pause": {"duration": f"{settings.pause_minutes}m"}},
            {"analysis": {"templates": [{"templateName": analysis_template_name(app)}]}},
        ]
    return steps


def rollout_strategy(app: str, namespace: str, settings: DeliverySettings) -> dict[str, Any]:
    """``spec.strategy`` of the app's Rollout: the platform's Services, route and analysis."""
    return {
        "canary": {
            "stableService": stable_service(app),
            "canaryService": canary_service(app),
            "trafficRouting": {
                "plugins": {GATEWAY_PLUGIN: {"httpRoute": route_name(app), "namespace": namespace}}
            },
            # An aborted rollout keeps the canary's pods a little (for logs) and then scales them
            # to 0; the stable ReplicaSet never stopped serving.
            "abortScaleDownDelaySeconds": 30,
            "steps": rollout_steps(app, settings),
        }
    }


def rollout_manifest(
    *, app: str, namespace: str, replicas: int, port: int, settings: DeliverySettings, image: str
) -> dict[str, Any]:
    """The Rollout an app's GitOps path carries in place of its Deployment (docs/delivery.md):
    the strategy above around the app's own pod template. Offline validation renders it per canary
    app and checks it against the Rollout CRD."""
    pods = {POD_NAME_LABEL: app}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": pods},
            "strategy": rollout_strategy(app, namespace, settings),
            "template": {
                "metadata": {"labels": pods},
                "spec": {
                    "automountServiceAccountToken": False,
                    "topologySpreadConstraints": kube.spread_constraints(pods),
                    "containers": [
                        {
                            "name": app,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": port}],
                            "envFrom": [{"secretRef": {"name": f"{app}-env"}}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": port}},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def analysis_query(metric: AnalysisMetric, *, namespace: str, app: str, port: int, window: str) -> str:
    """The PromQL of one measurement, over the canary Service's series alone."""
    services = [traefik_backend(namespace, canary_service(app), port)]
    if metric.metric == SUCCESS_RATE:
        return traefik_error_ratio(services, window)
    return traefik_latency_quantile(services, QUANTILES[metric.metric], window)


def analysis_limit(metric: AnalysisMetric) -> float:
    """The highest value of :func:`analysis_query` that passes: an error ratio, or seconds."""
    if metric.metric == SUCCESS_RATE:
        return round(1 - metric.threshold / 100, 10)
    return metric.threshold / 1000


def success_condition(metric: AnalysisMetric) -> str:
    """Passes at or under the limit. A canary that got no request in the window has no sample (or
    NaN, for a quantile) and passes: there is nothing to judge, and the next step sends more."""
    return f"len(result) == 0 || isNaN(result[0]) || result[0] <= {analysis_limit(metric):g}"


def analysis_template_spec(
    *, app: str, namespace: str, port: int, settings: DeliverySettings, address: str, with_token: bool = True
) -> dict[str, Any]:
    """The AnalysisTemplate each step runs: every metric of ``settings.analysis`` against the
    stack's metrics backend; ``with_token``: the bearer token read from the app namespace's analysis
    Secret (Cockpit), else no credential (the in-cluster Prometheus)."""
    window = f"{settings.pause_minutes}m"
    metrics = []
    for metric in settings.analysis:
        prometheus: dict[str, Any] = {
            "address": address,
            "query": analysis_query(metric, namespace=namespace, app=app, port=port, window=window),
            "timeout": 20,
        }
        if with_token:
            prometheus["headers"] = [{"key": "Authorization", "value": "Bearer {{args.metrics-token}}"}]
        metrics.append(
            {
                "name": metric.metric,
                "interval": MEASUREMENT_INTERVAL,
                "count": MEASUREMENTS,
                # One bad measurement fails the step: a canary that errors for members or payments
                # must not get a second look at a bigger share.
                "failureLimit": 0,
                "consecutiveErrorLimit": CONSECUTIVE_ERROR_LIMIT,
                "successCondition": success_condition(metric),
                "provider": {"prometheus": prometheus},
            }
        )
    spec: dict[str, Any] = {"metrics": metrics}
    if with_token:
        secret = {"name": analysis_secret_name(app), "key": ANALYSIS_TOKEN_KEY}
        spec = {"args": [{"name": "metrics-token", "valueFrom": {"secretKeyRef": secret}}], **spec}
    return spec


def canary_route_spec(*, app: str, hostname: str, port: int, parent_ref: Mapping[str, str]) -> dict[str, Any]:
    """The app's HTTPRoute with its two backends at the initial weights (stable 100, canary 0)."""
    return {
        "parentRefs": [dict(parent_ref)],
        "hostnames": [hostname],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": initial_backend_refs(app, port),
            }
        ],
    }


@dataclass(frozen=True, kw_only=True)
class CanaryArgs:
    """What :func:`declare_canary` needs beside the app's own settings."""

    app: str
    hostname: str
    port: int
    settings: DeliverySettings
    parent_ref: Mapping[str, str]
    backend: MetricsBackend
    #: The Gateway API CRDs and the Gateway (the route), the controller's release (its CRDs).
    route_depends_on: Sequence[pulumi.Resource] = ()
    crds_depend_on: Sequence[pulumi.Resource] = ()


def rollout_policy_name(app: str) -> str:
    return f"platform-rollout-{app}"


def _cel(text: str) -> str:
    """A CEL string literal (the values are DNS labels, paths and durations: no quote inside)."""
    assert "'" not in text and "\\" not in text, text
    return f"'{text}'"


def rollout_policy_spec(app: str, namespace: str, settings: DeliverySettings) -> dict[str, Any]:
    """A ValidatingAdmissionPolicy holding the Rollouts of the app's namespace to the platform's
    strategy (:func:`rollout_strategy`): the configured steps, each pause and each analysis of
    the platform's own template, the platform's Services and the plugin on the app's own route.
    Argo CD writes the Rollout from Git (argocd-manager may), so without it a commit could skip
    its own canary gate (fewer steps, no analysis, a cluster-scoped template) or point the plugin
    at another app's route. One Rollout per app namespace: the app's, named after it.

    Fields are compared one by one rather than as a whole list: the CRD types them (setWeight an
    int32, duration an int-or-string), and a map literal does not compare with a typed object."""
    canary = "object.spec.strategy.canary"
    steps = f"{canary}.steps"
    guard = "has(object.spec.strategy) && has(object.spec.strategy.canary)"
    checks: list[str] = []
    for i, step in enumerate(rollout_steps(app, settings)):
        at = f"{steps}[{i}]"
        if "setWeight" in step:
            checks.append(f"has({at}.setWeight) && {at}.setWeight == {step['setWeight']}")
        elif "pause" in step:
            checks.append(
                # An int-or-string: string() so that a number of seconds compares (and differs).
                f"has({at}.pause) && has({at}.pause.duration) && string({at}.pause.duration) == "
                f"{_cel(step['pause']['duration'])}"
            )
        else:
            (template,) = step["analysis"]["templates"]
            ref = f"{at}.analysis.templates[0]"
            checks.append(
                f"has({at}.analysis) && has({at}.analysis.templates) && size({at}.analysis.templates) == 1"
                f" && {ref}.templateName == {_cel(template['templateName'])}"
                f" && !(has({ref}.clusterScope) && {ref}.clusterScope)"
            )
    plugins = f"{canary}.trafficRouting.plugins"
    plugin = f"{plugins}[{_cel(GATEWAY_PLUGIN)}]"
    configured = f"platform:apps[].delivery of {app}"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["argoproj.io"],
                    "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["rollouts"],
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        },
        "validations": [
            {
                "expression": f"object.metadata.name == {_cel(app)}",
                "message": f"metadata.name: the one Rollout of namespace {namespace} is the app's, {app}",
            },
            {
                "expression": f"{guard} && has({steps}) && size({steps}) == {len(checks)} && "
                + " && ".join(checks),
                "message": f"spec.strategy.canary.steps must be the platform's ({configured}): "
                f"setWeight, pause and the analysis {analysis_template_name(app)} at each of "
                f"{settings.steps}",
            },
            {
                "expression": f"{guard} && has({canary}.stableService) && {canary}.stableService == "
                f"{_cel(stable_service(app))} && has({canary}.canaryService) && {canary}.canaryService == "
                f"{_cel(canary_service(app))}",
                "message": f"spec.strategy.canary.stableService/canaryService must be "
                f"{stable_service(app)} and {canary_service(app)}",
            },
            {
                "expression": f"{guard} && has({canary}.trafficRouting) && has({plugins}) && "
                f"size({plugins}) == 1 && {_cel(GATEWAY_PLUGIN)} in {plugins} && "
                f"{plugin}.httpRoute == {_cel(route_name(app))} && {plugin}.namespace == {_cel(namespace)}",
                "message": f"spec.strategy.canary.trafficRouting.plugins must be {GATEWAY_PLUGIN} alone, on "
                f"the route {namespace}/{route_name(app)}",
            },
        ],
    }


def declare_canary(
    name: str, args: CanaryArgs, *, meta: Mapping[str, Any], opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """The canary app's Services, route, analysis Secret and AnalysisTemplate (children of the
    app's component: ``opts`` carries its parent, provider and namespace dependency)."""
    app, namespace = args.app, str(meta["namespace"])
    resources: list[pulumi.Resource] = []
    # Plain dicts, not the SDK's nested TypedDicts (as kube.default_deny_spec says).
    service_meta: Any
    spec: Any
    for track, service in (("stable", stable_service(app)), ("canary", canary_service(app))):
        service_meta, spec = {**meta, "name": service}, service_spec(app, args.port)
        resources.append(
            k8s.core.v1.Service(
                f"{name}-{track}",
                metadata=service_meta,
                spec=spec,
                # The controller adds rollouts-pod-template-hash to each selector (an atomic map):
                # after the first apply it is the selector's one writer, as for the route's rules.
                opts=pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(ignore_changes=["spec.selector"])
                ),
            )
        )
    resources.append(
        k8s.apiextensions.CustomResource(
            f"{name}-rollout-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={
                **meta,
                "name": route_name(app),
                "annotations": {TRAFFIC_WRITER_ANNOTATION: traffic_writer(app)},
            },
            spec=canary_route_spec(
                app=app, hostname=args.hostname, port=args.port, parent_ref=args.parent_ref
            ),
            opts=pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    depends_on=[*resources, *args.route_depends_on],
                    # The weights live in spec.rules, an atomic list: after the first apply only
                    # the Rollout's plugin writes it (module docstring). With server-side apply the
                    # provider leaves ignored fields out of its apply (pulumi/pulumi-kubernetes
                    # #2714, fixed by #2828, reported for a Patch resource; not observed here).
                    ignore_changes=["spec.rules"],
                ),
            ),
        )
    )
    template_needs: list[pulumi.Resource] = list(args.crds_depend_on)
    token = args.backend.token
    if token is not None:
        secret_meta: Any = {**meta, "name": analysis_secret_name(app)}
        secret = k8s.core.v1.Secret(
            f"{name}-analysis-token",
            metadata=secret_meta,
            type="Opaque",
            string_data={ANALYSIS_TOKEN_KEY: pulumi.Output.secret(token)},
            opts=opts,
        )
        resources.append(secret)
        template_needs.append(secret)
    resources.append(
        k8s.apiextensions.CustomResource(
            f"{name}-analysis",
            api_version="argoproj.io/v1alpha1",
            kind="AnalysisTemplate",
            metadata={**meta, "name": analysis_template_name(app)},
            spec=pulumi.Output.from_input(args.backend.address).apply(
                lambda address: analysis_template_spec(
                    app=app,
                    namespace=namespace,
                    port=args.port,
                    settings=args.settings,
                    address=address,
                    with_token=token is not None,
                )
            ),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=template_needs)),
        )
    )
    # Cluster-scoped: the policy and its binding carry no namespace.
    resources += kube.admission_policy(
        f"{name}-rollout-policy",
        f"{name}-rollout-policy-binding",
        name=rollout_policy_name(app),
        spec=rollout_policy_spec(app, namespace, args.settings),
        binding={"policyName": rollout_policy_name(app), "validationActions": ["Deny"]},
        opts=opts,
    )
    return resources

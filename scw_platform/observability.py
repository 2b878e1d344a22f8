"""Observability: metrics and logs shipped to Scaleway Cockpit, alert rules as code, alert routing
to contact points from config, and synthetic probes of every app hostname.

Per stack with ``platform:operations.observability`` (tooling and prod, so both clusters ship):

* **Cockpit data sources and tokens, declared here.** A custom logs source always (logs go to
  Cockpit with either backend); with backend ``cockpit`` a custom metrics source too. One push token
  (write scopes only) for the agent, kept as a Pulumi secret and in the Kubernetes Secret
  ``monitoring/cockpit-token``; a separate token that may only set up alert rules.
* **The agent**: Grafana's ``k8s-monitoring`` chart (pinned), which runs Alloy collectors plus
  kube-state-metrics and node-exporter: cluster and node metrics, pod logs and cluster events,
  pushed to the stack's Cockpit sources. The chart reads the token from the Secret the program
  declares (``secret.create: false``), so the token never appears in Helm values.
* **Backend ``prometheus``**: ``kube-prometheus-stack`` (pinned) evaluates the rules in the cluster
  (a ``PrometheusRule``) and its Alertmanager posts to the webhook contact point; the agent then
  ships logs only.
* **Alert rules**: ``ops/alerts/platform-rules.yaml``, tested with promtool, read at plan time.
  Cockpit evaluates a rule at the data source holding its series, so the groups are split: the
  ``platform-database`` group goes to the project's *Scaleway Metrics* source (RDB metrics exist
  only there, whatever the backend); every other group goes to the stack's custom metrics source
  (backend cockpit) or into the ``PrometheusRule`` (backend prometheus). The
  ``platform-backups`` group is loaded only where the restore check runs (it alerts on absence).
* **How rules reach Cockpit**: the Scaleway provider declares data sources, tokens and the alert
  manager, but has no resource for rule groups. Cockpit's data sources expose the Mimir ruler API
  (``/prometheus/config/v1/rules``), so the program ships the rule files in a ConfigMap and runs a
  pinned ``mimirtool rules sync`` Job per target data source on every change (the Job's name
  carries a hash of the rules; ``pulumi up`` waits for it and fails if Cockpit refuses a rule).
* **Routing**: email contact points become the Cockpit alert manager's contact points
  (``observability.AlertManager``, one per project and region: declare them in one stack), and
  each gets every alert. Telegram and webhook contact points, routing by severity and the
  heartbeat need an Alertmanager configuration: the in-cluster one (backend prometheus), or, with
  backend cockpit, one the platform loads into Cockpit's alert manager
  (scw_platform/cockpit_routing.py, composed by the stack beside this component).
* **Synthetic checks** (production, one per app hostname): the blackbox exporter (pinned chart)
  probes ``https://<hostname>/`` every 30 s from inside the cluster, failing on an invalid
  certificate, plain HTTP or a non-2xx answer: scraped by the agent (backend cockpit) or a
  ``Probe`` custom resource (backend prometheus).
* **Batch jobs' figures** (``push_clients``, production's restore check): a Pushgateway (pinned
  chart) that only those namespaces may reach, scraped with the pushed labels kept.
* **The namespace** ``monitoring`` enforces Pod Security ``privileged`` (node-exporter and the log
  collector read the nodes) and is therefore *not* a platform namespace: that label would admit it
  to the External Secrets stores and to the platform's hostnames on the Gateway. A default deny
  covers it, plus one policy opening what the collectors need (``monitoring_policy_spec``).

Helm: ``helm.v3.Release`` for every chart: one atomic release per chart whose chart, version and
values are recorded as inputs (kube-prometheus-stack's CRDs and admission webhook run as hooks).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
import yaml
from pydantic import Field, ValidationInfo, field_validator

from scw_platform import helm, images, kube, labels
from scw_platform.controller_values import resources, restricted_container, restricted_pod
from scw_platform.settings import DnsLabel, Settings, no_duplicates

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:operations.observability).
# --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ObservabilityBackend = Literal["cockpit", "prometheus"]
_OBSERVABILITY_BACKENDS: tuple[str, ...] = get_args(ObservabilityBackend)


#: Telegram chat ids: a user (positive) or a group or channel (negative, ``-100...``). Alertmanager
#: takes the id as an integer (telegram_configs ``chat_id``), so ``@channelname`` is not accepted.
_CHAT_ID = re.compile(r"^-?[1-9][0-9]{0,18}$")
#: Which alerts a contact point receives: ``page`` the critical ones (user-facing and actionable),
#: ``channel`` the warnings, ``all`` both.
Receives = Literal["all", "page", "channel"]
SEVERITIES_RECEIVED: Mapping[str, tuple[str, ...]] = {
    "all": ("critical", "warning"),
    "page": ("critical",),
    "channel": ("warning",),
}


class ContactPoint(Settings):
    """Where alerts go: an email address, the webhook whose URL is a deploy-time secret, or a
    Telegram chat (the bot's token is a deploy-time secret)."""

    name: DnsLabel
    """Contact point name (a DNS label), unique in the stack."""
    kind: Literal["email", "webhook", "telegram"] = "email"
    """email, webhook (its URL is the secret platform:alertWebhookUrl) or telegram (the bot token
    is the secret platform:alertTelegramBotToken). With backend cockpit, webhook and telegram
    contact points replace Scaleway's email ones: the two kinds do not mix there."""
    email: str | None = Field(default=None, validate_default=True)
    """Required for kind email. A webhook's URL is the secret platform:alertWebhookUrl."""
    chat_id: str | None = Field(default=None, validate_default=True)
    """Required for kind telegram: the chat's numeric id (negative for a group or channel, e.g.
    -1001234567890); the bot must be a member of it."""
    receives: Receives = "all"
    """Which alerts it gets: page (critical: user-facing and actionable, wake someone), channel
    (warnings) or all. Webhook and telegram contact points only: an email contact point is
    Cockpit's own and gets every alert."""

    @field_validator("email")
    @classmethod
    def _address(cls, email: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "email":
            if email is None:
                raise ValueError("required for kind email: the address alerts are sent to")
            if not _EMAIL.fullmatch(email) or len(email) > 254:
                raise ValueError(f"must be an email address, got {email!r}")
        elif kind == "webhook" and email is not None:
            raise ValueError(
                "not allowed for kind webhook: its URL is the deploy-time secret "
                "platform:alertWebhookUrl (pulumi config set --secret platform:alertWebhookUrl <url>)"
            )
        elif kind == "telegram" and email is not None:
            raise ValueError("not allowed for kind telegram: it posts to chatId")
        return email

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat(cls, chat_id: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind != "telegram":
            if chat_id is not None:
                raise ValueError(f"only for kind telegram, not {kind}")
            return None
        if chat_id is None:
            raise ValueError("required for kind telegram: the numeric id of the chat alerts are posted to")
        # YAML reads -1001234567890 as an integer: accept it, keep it as text.
        text = str(chat_id) if isinstance(chat_id, int) and not isinstance(chat_id, bool) else chat_id
        if not isinstance(text, str) or not _CHAT_ID.fullmatch(text):
            names = " (Alertmanager does not accept @names)" if str(chat_id).startswith("@") else ""
            raise ValueError(
                f"must be a Telegram chat's numeric id (e.g. -1001234567890 for a channel), "
                f"got {chat_id!r}{names}"
            )
        return text


class ObservabilitySettings(Settings):
    """``platform:operations.observability``: metrics, logs, alert rules, routing and probes."""

    backend: ObservabilityBackend = "cockpit"
    """cockpit (Scaleway Cockpit, the default) or prometheus (kube-prometheus-stack in the cluster)."""
    metrics_retention_days: int = Field(default=31, ge=1, le=365)
    """Retention of the stack's Cockpit data sources."""
    logs_retention_days: int = Field(default=7, ge=1, le=31)
    """Retention of the stack's Cockpit logs data source."""
    contact_points: list[ContactPoint] = Field(default_factory=list)
    """Where alerts go; production needs at least one."""
    heartbeat: bool = False
    """The dead man's switch: the always-firing Watchdog alert is sent every minute to an external
    heartbeat receiver (its URL the secret platform:alertHeartbeatUrl), which alarms when it stops.
    With backend cockpit the platform then loads the routing into Cockpit's alert manager."""

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, backend: Any) -> Any:
        if backend not in _OBSERVABILITY_BACKENDS:
            raise ValueError(
                f"unknown observability backend {backend!r} (one of: {', '.join(_OBSERVABILITY_BACKENDS)})"
            )
        return backend

    @field_validator("contact_points")
    @classmethod
    def _unique_names(cls, points: list[ContactPoint]) -> list[ContactPoint]:
        no_duplicates("contact point name", [p.name for p in points])
        return points

    @property
    def emails(self) -> list[str]:
        return [p.email for p in self.contact_points if p.kind == "email" and p.email is not None]

    @property
    def webhook(self) -> ContactPoint | None:
        return next((p for p in self.contact_points if p.kind == "webhook"), None)

    @property
    def telegram(self) -> list[ContactPoint]:
        return [p for p in self.contact_points if p.kind == "telegram"]


MONITORING_NAMESPACE = "monitoring"
GRAFANA_REPO = "https://grafana.github.io/helm-charts"
AGENT_CHART = "k8s-monitoring"
AGENT_CHART_VERSION = "3.5.6"
AGENT_RELEASE = "k8s-monitoring"
#: The Alloy collectors' image. The chart leaves their tag empty (an Alloy custom resource without
#: image.tag gets whatever Alloy version the operator's embedded chart defaults to), so an operator
#: update would change the collectors unseen. v1.11.3: the Alloy release deployed beside
#: k8s-monitoring 3.5.6 (a third party's image list of that chart, find_string
#: "grafana/alloy:v1.11." id 12099871617, next to alloy-operator 1.4.0); the chart's own default at
#: 3.5.6 is not in the stored corpus (grafana/k8s-monitoring-helm docs/Images.md is stored at 3.3.1).
ALLOY_IMAGE_TAG = "v1.11.3"
#: The non-root user the Alloy image ships (uid 473; https://grafana.com/docs/alloy/latest/
#: configure/nonroot/): the image's default USER is root.
ALLOY_USER = 473
#: Node exporter's image: v1.10.2, what k8s-monitoring 3.5.6's node-exporter subchart runs (a third
#: party's record of the chart, see scw_platform/data/images.yaml); pinned so a subchart bump is a
#: deliberate change here. Set as the subchart's ``image.tag`` (prometheus-community
#: charts/prometheus-node-exporter values.yaml; empty there means the subchart's appVersion), not
#: read at the subchart version 3.5.6 bundles.
NODE_EXPORTER_IMAGE_TAG = "v1.10.2"
#: kube-state-metrics' image, pinned rather than left to the subchart: v2.18.0 is the release built
#: on client-go v1.34 (the kube-state-metrics README's compatibility matrix), the clusters'
#: Kubernetes minor, and the one with a recorded digest (scw_platform/data/images.yaml says why
#: the subchart's own default is not used). Set as the subchart's ``image.tag``.
KUBE_STATE_METRICS_IMAGE_TAG = "v2.18.0"
#: The collectors' config reloader sidecar, pinned for the same reason as ALLOY_IMAGE_TAG: v0.91.0
#: is what grafana/alloy's own chart (1.10.0, README values table) pins by digest; the sidecar
#: only watches the mounted config and calls Alloy's /-/reload.
CONFIG_RELOADER_IMAGE_TAG = "v0.91.0"
PROMETHEUS_COMMUNITY_REPO = "https://prometheus-community.github.io/helm-charts"
BLACKBOX_CHART = "prometheus-blackbox-exporter"
BLACKBOX_CHART_VERSION = "11.4.0"
BLACKBOX_IMAGE_TAG = "v0.27.0"
BLACKBOX_SERVICE = "blackbox-exporter"
BLACKBOX_PORT = 9115
PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
PROMETHEUS_STACK_CHART_VERSION = "79.12.0"
PROMETHEUS_STACK_RELEASE = "kps"
#: Its Prometheus Service's port (kube-prometheus-stack ``prometheus.service.port``).
PROMETHEUS_API_PORT = 9090
#: ``<image>:<tag>@<digest>`` once images.yaml records a digest; today the tag alone (no public
#: digest for any mimirtool release was found: the entry's gap says what was searched).
MIMIRTOOL_IMAGE = images.ref("mimirtool")
#: The Pushgateway: where batch jobs (the restore check) leave their figures for the agent to
#: scrape. prometheus-community/helm-charts charts/prometheus-pushgateway, chart 3.6.1 (appVersion
#: v1.11.2, Chart.yaml); the image tag is pinned here rather than left to the chart's appVersion:
#: v1.11.3, the next patch, because it is the one a digest is recorded for (images.yaml).
PUSHGATEWAY_CHART = "prometheus-pushgateway"
PUSHGATEWAY_CHART_VERSION = "3.6.1"
PUSHGATEWAY_IMAGE_TAG = "v1.11.3"
PUSHGATEWAY_SERVICE = "pushgateway"
PUSHGATEWAY_PORT = 9091
#: With nameOverride and the release both ``pushgateway``, the chart's selector labels
#: (``prometheus-pushgateway.selectorLabels`` in its _helpers.tpl) are exactly these.
PUSHGATEWAY_POD_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": PUSHGATEWAY_SERVICE,
    "app.kubernetes.io/instance": PUSHGATEWAY_SERVICE,
}
#: What a job in the cluster pushes to (``restore_check.py --pushgateway``).
PUSHGATEWAY_URL = f"http://{PUSHGATEWAY_SERVICE}.{MONITORING_NAMESPACE}.svc:{PUSHGATEWAY_PORT}"

COCKPIT_TOKEN_SECRET = "cockpit-token"
RULES_TOKEN_SECRET = "cockpit-rules-token"
WEBHOOK_SECRET = "alert-webhook"
TELEGRAM_SECRET = "alert-telegram"
HEARTBEAT_SECRET = "alert-heartbeat"
#: Where kube-prometheus-stack's Alertmanager mounts each Secret of ``alertmanagerSpec.secrets``.
ALERTMANAGER_SECRETS = "/etc/alertmanager/secrets"
RULES_CONFIG_MAP = "platform-rules"
RULES_SYNC_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "platform-rules-sync"}
METRICS_DESTINATION = "cockpit-metrics"
LOGS_DESTINATION = "cockpit-logs"

PROBE_MODULE = "https_2xx"
PROBE_INTERVAL = "30s"
PROBE_TIMEOUT = "10s"

#: Cockpit rule namespace (a tenant's rule groups are grouped in namespaces).
RULES_NAMESPACE = "platform"
#: Rule targets: the stack's custom metrics source, the project's Scaleway metrics source.
CUSTOM, SCALEWAY = "custom", "scaleway"

#: Kapsule serves the Kubernetes API outside the cluster, at https://<id>.api.k8s.<region>.scw.cloud:6443;
#: the in-cluster Service ``kubernetes`` forwards there, and policies see the forwarded address.
KUBERNETES_API_PORT = 6443
#: kubelet (its own and cAdvisor's metrics) and node-exporter (on the host network) on every node.
KUBELET_PORT = 10250
NODE_EXPORTER_PORT = 9100
#: kube-prometheus-stack's operator serves its admission webhook on this port
#: (``prometheusOperator.tls.internalPort``).
PROMETHEUS_OPERATOR_WEBHOOK_PORT = 10250
#: The platform's controllers' metrics (``labels.scrape``), scraped in their own namespaces.
CONTROLLER_METRICS_PORTS = (
    labels.ARGOCD_CONTROLLER_METRICS_PORT,
    labels.EXTERNAL_SECRETS_METRICS_PORT,
    labels.CERT_MANAGER_METRICS_PORT,
    # Traefik's requests per app: the SLO rules' first source (scw_platform/slo.py).
    labels.TRAEFIK_METRICS_PORT,
    labels.ROLLOUTS_CONTROLLER_METRICS_PORT,
)

_RESTRICTED_CONTAINER: Mapping[str, Any] = restricted_container()


# --- Rules ------------------------------------------------------------------------------------------


def load_rule_groups(path: Path) -> list[dict[str, Any]]:
    """The rule groups of a Prometheus rule file (the program passes its own)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(document["groups"])


def mimir_rule_file(groups: Sequence[Mapping[str, Any]]) -> str:
    """A ``mimirtool rules`` file: one namespace and its groups."""
    return yaml.safe_dump({"namespace": RULES_NAMESPACE, "groups": list(groups)}, sort_keys=False)


def content_hash(*texts: str) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
    return digest.hexdigest()[:10]


# --- Helm values ------------------------------------------------------------------------------------


def probe_targets(hostnames: Sequence[str]) -> list[str]:
    return [f"https://{hostname}/" for hostname in hostnames]


def blackbox_values() -> dict[str, Any]:
    # Every image by tag and digest (images.pin_chart: the digests of scw_platform/data/images.yaml).
    return images.pin_chart(BLACKBOX_CHART, _blackbox_values())


def _blackbox_values() -> dict[str, Any]:
    return {
        "fullnameOverride": BLACKBOX_SERVICE,
        "image": {"tag": BLACKBOX_IMAGE_TAG},
        "config": {
            "modules": {
                PROBE_MODULE: {
                    "prober": "http",
                    "timeout": PROBE_TIMEOUT,
                    "http": {
                        # Empty means any 2xx (after redirects, which are followed).
                        "valid_status_codes": [],
                        "method": "GET",
                        "fail_if_not_ssl": True,
                        # An expired, self-signed or wrong-name certificate fails the probe.
                        "tls_config": {"insecure_skip_verify": False},
                        "preferred_ip_protocol": "ip4",
                        "ip_protocol_fallback": False,
                    },
                }
            }
        },
        "resources": resources("exporter"),
        # The chart's container context is restricted but for seccomp, and its pod context is
        # empty (prometheus-community/helm-charts charts/prometheus-blackbox-exporter/values.yaml,
        # 11.x); its liveness and readiness probes (/-/healthy) are on by default.
        "podSecurityContext": restricted_pod(),
    }


def alloy_name(destination: str) -> str:
    """The chart names a destination's Alloy component with lowercase and underscores."""
    return destination.replace("-", "_").lower()


def probe_scrape_config(hostnames: Sequence[str]) -> str:
    """Alloy configuration: the blackbox exporter probes each URL every 30 s (backend cockpit)."""
    exporter = f"{BLACKBOX_SERVICE}.{MONITORING_NAMESPACE}.svc:{BLACKBOX_PORT}"
    targets = "\n".join(
        f'    {{"__address__" = "{exporter}", "__param_module" = "{PROBE_MODULE}", '
        f'"__param_target" = "{url}", "instance" = "{url}"}},'
        for url in probe_targets(hostnames)
    )
    return (
        'prometheus.scrape "platform_probes" {\n'
        '  job_name        = "blackbox"\n'
        '  metrics_path    = "/probe"\n'
        f'  scrape_interval = "{PROBE_INTERVAL}"\n'
        f'  scrape_timeout  = "{PROBE_TIMEOUT}"\n'
        "  targets = [\n"
        f"{targets}\n"
        "  ]\n"
        f"  forward_to = [prometheus.remote_write.{alloy_name(METRICS_DESTINATION)}.receiver]\n"
        "}\n"
    )


def pushgateway_scrape_config() -> str:
    """Alloy configuration: scrape the Pushgateway every minute (backend cockpit).

    ``honor_labels``: the pushed series keep their own ``job`` and ``instance`` labels instead of the
    Pushgateway's, as the Pushgateway's README asks of every scraper ("Configure the Pushgateway as
    a target to scrape"); the batch job's labels (``database``) are what the alert rules group by.
    """
    address = f"{PUSHGATEWAY_SERVICE}.{MONITORING_NAMESPACE}.svc:{PUSHGATEWAY_PORT}"
    return (
        'prometheus.scrape "platform_pushgateway" {\n'
        '  job_name        = "pushgateway"\n'
        "  honor_labels    = true\n"
        '  scrape_interval = "60s"\n'
        f'  targets = [{{"__address__" = "{address}"}}]\n'
        f"  forward_to = [prometheus.remote_write.{alloy_name(METRICS_DESTINATION)}.receiver]\n"
        "}\n"
    )


def pushgateway_values() -> dict[str, Any]:
    """The Pushgateway: one replica, restricted, its figures kept across container restarts.

    ``--persistence.file`` on the chart's emptyDir (mounted at /data) keeps what was pushed when the
    container restarts; a rescheduled pod starts empty, and the figures' alerts stay quiet until the
    next run pushes again (the last-success alerts come from kube-state-metrics, not from here).
    The image is pinned by tag and digest (:func:`images.pin_chart`).
    """
    return images.pin_chart(PUSHGATEWAY_CHART, _pushgateway_values())


def _pushgateway_values() -> dict[str, Any]:
    return {
        "nameOverride": PUSHGATEWAY_SERVICE,
        "fullnameOverride": PUSHGATEWAY_SERVICE,
        "image": {"tag": PUSHGATEWAY_IMAGE_TAG},
        "extraArgs": ["--persistence.file=/data/pushgateway.data", "--persistence.interval=1m"],
        "resources": resources("exporter"),
        # The chart's defaults (charts/prometheus-pushgateway/values.yaml, 3.x), stated so a chart
        # change cannot drop them: /-/healthy and /-/ready on the service port.
        "liveness": {"enabled": True},
        "readiness": {"enabled": True},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": dict(_RESTRICTED_CONTAINER),
        "serviceAccount": {"create": True},
        # Scraped by a static job (pushgateway_scrape_config, PUSHGATEWAY_SCRAPE): the chart's
        # ServiceMonitor would need the operator's CRDs before this release, with either backend.
        "serviceMonitor": {"enabled": False},
    }


#: Backend prometheus: the same scrape as pushgateway_scrape_config, in Prometheus's own terms.
PUSHGATEWAY_SCRAPE: dict[str, Any] = {
    "job_name": "pushgateway",
    "honor_labels": True,
    "scrape_interval": "60s",
    "static_configs": [{"targets": [f"{PUSHGATEWAY_SERVICE}.{MONITORING_NAMESPACE}.svc:{PUSHGATEWAY_PORT}"]}],
}


#: Alloy's metrics collector: its write-ahead log and scrape caches for every series of the
#: cluster (Grafana's estimate: about 11 GiB per million active series,
#: https://grafana.com/docs/alloy/latest/introduction/estimate-resource-usage/; a platform cluster
#: has tens of thousands).
METRICS_COLLECTOR_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "50m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def _collector(size: Mapping[str, Mapping[str, str]], *, restricted: bool = False) -> dict[str, Any]:
    """One Alloy collector's values: the pinned image, its size and, with ``restricted``, the
    non-root context with a writable /tmp.

    The keys are the Alloy chart's, which each collector entry passes to its Alloy custom resource
    (grafana/k8s-monitoring-helm charts/k8s-monitoring/values.yaml: ``alloy.securityContext``,
    ``alloy.resources``; grafana/alloy-operator alloy-values.yaml: ``image``, ``alloy.mounts.extra``,
    ``controller.volumes.extra``, ``configReloader``). The chart's own context for a collector
    drops every capability and adds back the container runtime's default set; ``add: []`` takes
    them away again (a list value replaces the chart's). Alloy writes its WAL under
    ``alloy.storagePath`` (/tmp/alloy), so a read-only root filesystem needs /tmp on an emptyDir.
    """
    values: dict[str, Any] = {
        "image": {"tag": ALLOY_IMAGE_TAG},
        "alloy": {"resources": {section: dict(amounts) for section, amounts in size.items()}},
        # Pinned like the collector (the digest goes on at images.pin_chart).
        "configReloader": {"image": {"tag": CONFIG_RELOADER_IMAGE_TAG}},
    }
    if restricted:
        context = restricted_container(user=ALLOY_USER)
        context["capabilities"] = {"drop": ["ALL"], "add": []}
        values["alloy"]["securityContext"] = context
        values["alloy"]["mounts"] = {"extra": [{"name": "tmp", "mountPath": "/tmp"}]}
        values["controller"] = {"volumes": {"extra": [{"name": "tmp", "emptyDir": {}}]}}
        # The config reloader sidecar: its image names its user (nobody), which runAsNonRoot
        # cannot check, hence the number.
        values["configReloader"].update(
            securityContext=restricted_container(user=ALLOY_USER), resources=resources("exporter")
        )
    return values


def _alloy_operator() -> dict[str, Any]:
    """The operator that turns the chart's Alloy custom resources into collectors: a controller's
    size and a restricted context (its chart sets only runAsNonRoot,
    grafana/alloy-operator charts/alloy-operator values ``securityContext``); its liveness and
    readiness probes are the chart's defaults. Its image stays the subchart's appVersion: which
    alloy-operator chart 3.5.6 bundles is not in the stored corpus, and an operator image ahead of
    or behind its own chart's RBAC and CRD is worse than the chart's pin."""
    return {
        "resources": resources("controller"),
        "podSecurityContext": restricted_pod(),
        "securityContext": restricted_container(),
    }


def agent_values(
    *,
    cluster_name: str,
    backend: str,
    metrics_push_url: pulumi.Input[str] | None,
    logs_push_url: pulumi.Input[str],
    probe_hostnames: Sequence[str] = (),
    pushgateway: bool = False,
) -> dict[str, Any]:
    """Values of the k8s-monitoring chart (3.x): destinations read the token from our Secret;
    images pinned by :func:`images.pin_chart`."""
    token = {"create": False, "name": COCKPIT_TOKEN_SECRET, "namespace": MONITORING_NAMESPACE}
    destinations: list[dict[str, Any]] = []
    if backend == "cockpit":
        destinations.append(
            {
                "name": METRICS_DESTINATION,
                "type": "prometheus",
                "url": metrics_push_url,
                # Cockpit reads the token as the tenant (X-Scope-OrgID), as Scaleway documents it.
                "tenantIdKey": "token",
                "secret": dict(token),
            }
        )
    destinations.append(
        {
            "name": LOGS_DESTINATION,
            "type": "loki",
            "url": logs_push_url,
            "tenantIdKey": "token",
            "secret": dict(token),
        }
    )
    values: dict[str, Any] = {
        "cluster": {"name": cluster_name},
        "destinations": destinations,
        "clusterEvents": {"enabled": True},
        "podLogs": {"enabled": True},
        # Log collection reads the nodes' /var/log/pods (root-owned files): the chart's own
        # context stays, only the image and the size are set.
        "alloy-logs": {"enabled": True, **_collector(resources("controller"))},
        "alloy-singleton": {"enabled": True, **_collector(resources("helper"), restricted=True)},
        "alloy-operator": _alloy_operator(),
    }
    if backend == "cockpit":
        values["clusterMetrics"] = {
            "enabled": True,
            # Node, pod and CronJob/Job state (the restore check's status) and node metrics.
            "kube-state-metrics": {
                "deploy": True,
                "image": {"tag": KUBE_STATE_METRICS_IMAGE_TAG},
                "resources": resources("helper"),
            },
            "node-exporter": {
                "deploy": True,
                "image": {"tag": NODE_EXPORTER_IMAGE_TAG},
                "resources": resources("small"),
            },
            # Every pool is Linux (Kapsule runs no Windows nodes): neither the DaemonSet nor its
            # scrape. feature-cluster-metrics values.yaml: ``windows-exporter.deploy`` is the
            # subchart's condition, ``enabled`` the scrape.
            "windows-exporter": {"enabled": False, "deploy": False},
        }
        values["annotationAutodiscovery"] = {"enabled": True}
        metrics: dict[str, Any] = {
            "enabled": True,
            **_collector(METRICS_COLLECTOR_RESOURCES, restricted=True),
        }
        extra = [
            *([probe_scrape_config(probe_hostnames)] if probe_hostnames else []),
            *([pushgateway_scrape_config()] if pushgateway else []),
        ]
        if extra:
            metrics["extraConfig"] = "\n".join(extra)
        values["alloy-metrics"] = metrics
    # Every image by tag and digest where images.yaml records one (the alloy-operator's is a gap:
    # the production rule reports it rather than this function hiding it).
    return images.pin_chart(AGENT_CHART, values)


#: The Cockpit agent's annotation autodiscovery, for Prometheus: scrape Services annotated with
#: ``labels.scrape(port)`` (Argo CD's controller, External Secrets, cert-manager) on that port.
ANNOTATED_SERVICES_SCRAPE: dict[str, Any] = {
    "job_name": "annotated-services",
    # The scraped series keep their own labels, as the Cockpit agent's autodiscovery does
    # (k8s-monitoring feature-annotation-autodiscovery sets honor_labels = true): Traefik's
    # `service` label is what the SLO rules select on, and a target label would rename it to
    # exported_service.
    "honor_labels": True,
    "kubernetes_sd_configs": [{"role": "endpoints"}],
    "relabel_configs": [
        {
            "source_labels": ["__meta_kubernetes_service_annotation_k8s_grafana_com_scrape"],
            "action": "keep",
            "regex": "true",
        },
        {
            "source_labels": [
                "__address__",
                "__meta_kubernetes_service_annotation_k8s_grafana_com_metrics_portNumber",
            ],
            "action": "replace",
            "regex": r"([^:]+)(?::\d+)?;(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
    ],
}


def _receiver(point: ContactPoint) -> dict[str, Any]:
    """One contact point as an Alertmanager receiver; credentials are read from mounted files."""
    if point.kind == "telegram":
        assert point.chat_id is not None
        return {
            "name": point.name,
            "telegram_configs": [
                {
                    # bot_token_file: Alertmanager 0.26+ (kube-prometheus-stack ships a newer one).
                    "bot_token_file": f"{ALERTMANAGER_SECRETS}/{TELEGRAM_SECRET}/token",
                    "chat_id": int(point.chat_id),
                    "send_resolved": True,
                }
            ],
        }
    return {
        "name": point.name,
        # The URL stays in the Secret the program declares; never in Helm values.
        "webhook_configs": [
            {"url_file": f"{ALERTMANAGER_SECRETS}/{WEBHOOK_SECRET}/url", "send_resolved": True}
        ],
    }


#: Alerts nobody subscribed to end here (an Alertmanager route needs a receiver).
NOWHERE = "nowhere"
HEARTBEAT_RECEIVER = "heartbeat"


def alertmanager_config(
    points: Sequence[ContactPoint], *, heartbeat: bool
) -> tuple[dict[str, Any], list[str]]:
    """The in-cluster Alertmanager's configuration and the Secrets it reads.

    Routing by severity: ``critical`` (user-facing, actionable) goes to every contact point that
    receives pages, ``warning`` to every one that receives the channel; each is a sibling route
    with ``continue`` so one alert reaches all of its receivers. The Watchdog goes to the heartbeat
    receiver only, every minute (its silence is the alarm), and never to a person. Email contact
    points are not here: Cockpit's alert manager sends them what Cockpit evaluates."""
    delivering = [p for p in points if p.kind in ("webhook", "telegram")]
    routes: list[dict[str, Any]] = []
    if heartbeat:
        routes.append(
            {
                "receiver": HEARTBEAT_RECEIVER,
                "matchers": ['alertname="Watchdog"'],
                "group_wait": "0s",
                "group_interval": "1m",
                "repeat_interval": "1m",
                "continue": False,
            }
        )
    for severity in ("critical", "warning"):
        routes += [
            {"receiver": p.name, "matchers": [f'severity="{severity}"'], "continue": True}
            for p in delivering
            if severity in SEVERITIES_RECEIVED[p.receives]
        ]
    receivers: list[dict[str, Any]] = [{"name": NOWHERE}, *(_receiver(p) for p in delivering)]
    secrets = sorted(
        {WEBHOOK_SECRET if p.kind == "webhook" else TELEGRAM_SECRET for p in delivering}
        | ({HEARTBEAT_SECRET} if heartbeat else set())
    )
    if heartbeat:
        receivers.append(
            {
                "name": HEARTBEAT_RECEIVER,
                "webhook_configs": [
                    {"url_file": f"{ALERTMANAGER_SECRETS}/{HEARTBEAT_SECRET}/url", "send_resolved": False}
                ],
            }
        )
    config = {
        "route": {
            "receiver": NOWHERE,
            "group_by": ["alertname", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
    }
    return config, secrets


def prometheus_stack_values(
    *,
    retention_days: int,
    pushgateway: bool = False,
    contact_points: Sequence[ContactPoint] = (),
    heartbeat: bool = False,
) -> dict[str, Any]:
    """kube-prometheus-stack: Prometheus, Alertmanager (routed by :func:`alertmanager_config`),
    kube-state-metrics and node-exporter. Grafana is left out: dashboards and logs live in
    Cockpit's Grafana."""
    config, secrets = alertmanager_config(contact_points, heartbeat=heartbeat)
    # Every pod the chart runs gets a size (the chart sets none: kube-prometheus-stack values.yaml,
    # ``resources: {}`` throughout); probes and restricted contexts are the chart's defaults, its
    # images the chart version's pins (docs/charts.md).
    return {
        "fullnameOverride": PROMETHEUS_STACK_RELEASE,
        "prometheusOperator": {
            "resources": resources("controller"),
            "prometheusConfigReloader": {"resources": resources("exporter")},
            "admissionWebhooks": {"patch": {"resources": resources("small")}},
        },
        "kube-state-metrics": {"resources": resources("helper")},
        "prometheus-node-exporter": {"resources": resources("small")},
        "grafana": {"enabled": False},
        # The platform's own rules only: the chart's defaults would page for things nobody owns.
        "defaultRules": {"create": False},
        "prometheus": {
            "prometheusSpec": {
                "retention": f"{retention_days}d",
                # Select every PrometheusRule, Probe, ServiceMonitor and PodMonitor, not only the
                # chart's own (the platform labels nothing for the chart).
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "additionalScrapeConfigs": [
                    ANNOTATED_SERVICES_SCRAPE,
                    *([PUSHGATEWAY_SCRAPE] if pushgateway else []),
                ],
                # The head block of every series in memory, plus the WAL replay on start.
                "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            }
        },
        "alertmanager": {
            "config": config,
            "alertmanagerSpec": {"secrets": secrets, "resources": resources("helper")},
        },
    }


def probe_spec(hostname: str) -> Any:
    """A prometheus-operator Probe: the blackbox exporter checks one URL every 30 s."""
    return {
        "jobName": "blackbox",
        "interval": PROBE_INTERVAL,
        "scrapeTimeout": PROBE_TIMEOUT,
        "module": PROBE_MODULE,
        "prober": {"url": f"{BLACKBOX_SERVICE}.{MONITORING_NAMESPACE}.svc:{BLACKBOX_PORT}"},
        "targets": {"staticConfig": {"static": probe_targets([hostname])}},
    }


def monitoring_namespace_labels() -> dict[str, str]:
    """Pod Security ``privileged`` (node-exporter and the log collector use the host's network, PID
    namespace and paths), ``restricted`` still audited and warned. Deliberately without the
    platform-namespace label: it admits a namespace to the External Secrets stores and to the
    platform's hostnames on the Gateway, which a namespace running privileged pods must not get."""
    return labels.pod_security("privileged")


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


@dataclass(frozen=True, kw_only=True)
class FrontDoorPods:
    """Where the front door's pods take HTTPS inside the cluster: the namespace and the container
    port of its HTTPS entry point (a probe may be handed straight to them, see below)."""

    namespace: str
    port: int


def monitoring_policy_spec(
    *,
    backend: str,
    front_door: FrontDoorPods | None = None,
    push_from: Sequence[str] = (),
    query_from: Sequence[str] = (),
) -> Any:
    """What the monitoring namespace may do on top of its default deny.

    Ingress: only from its own pods (the collectors scrape kube-state-metrics, the blackbox exporter
    and each other; Prometheus talks to Alertmanager). Kubelet probes need no rule: traffic from a
    pod's own node is always allowed
    (https://kubernetes.io/docs/concepts/services-networking/network-policies/). With backend
    prometheus, the API server also calls the operator's admission webhook. The namespaces in
    ``push_from`` (batch jobs' figures) may reach the Pushgateway's port, nothing else; with backend
    prometheus, those in ``query_from`` (the canaries' analysis) Prometheus's API port.

    Egress: DNS; its own pods; the Kubernetes API, kubelet/cAdvisor and node-exporter; the platform
    controllers' metrics ports; Traefik's HTTPS entry point; public HTTPS (Cockpit's push and ruler
    endpoints, the probed hostnames, the alert webhook). The API server and the nodes are named by
    port only: they carry no pod labels, and Cilium (Kapsule's default CNI) does not match node
    addresses with ``ipBlock`` unless configured to
    (https://docs.cilium.io/en/stable/security/policy/language/#selecting-nodes-with-cidr-ipblock)
    and gives the API server an identity of its own, which ``ipBlock`` rules have been reported not
    to match (https://github.com/cilium/cilium/issues/20550). An address rule could silently cut
    the collectors off their main sources; a rule without peers matches every destination."""
    ingress: list[dict[str, Any]] = [{"from": [{"podSelector": {}}]}]
    # A probe of an app hostname goes to the front door's public address; a CNI that serves
    # LoadBalancer addresses inside the cluster (Cilium's kube-proxy replacement) hands it straight
    # to the front door's pods instead.
    to_front_door = (
        [
            {
                "to": [{"namespaceSelector": kube.namespace_selector(front_door.namespace)}],
                "ports": _tcp(front_door.port),
            }
        ]
        if front_door is not None
        else []
    )
    if backend == "prometheus":
        # Kapsule's API server lives outside the cluster, with no selector to name it.
        ingress.append({"ports": _tcp(PROMETHEUS_OPERATOR_WEBHOOK_PORT)})
    if push_from:
        ingress.append(
            {
                "from": [{"namespaceSelector": kube.namespace_selector(ns)} for ns in sorted(push_from)],
                "ports": _tcp(PUSHGATEWAY_PORT),
            }
        )
    if query_from and backend == "prometheus":
        ingress.append(
            {
                "from": [{"namespaceSelector": kube.namespace_selector(ns)} for ns in sorted(query_from)],
                "ports": _tcp(PROMETHEUS_API_PORT),
            }
        )
    return {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": ingress,
        "egress": [
            kube.dns_egress_rule(),
            {"to": [{"podSelector": {}}]},
            {"ports": _tcp(KUBERNETES_API_PORT, KUBELET_PORT, NODE_EXPORTER_PORT)},
            {"to": [{"namespaceSelector": {}}], "ports": _tcp(*CONTROLLER_METRICS_PORTS)},
            *to_front_door,
            kube.public_https_egress_rule(),
        ],
    }


def mimirtool_policy_spec(pod_labels: Mapping[str, str]) -> Any:
    """A mimirtool Job talks to DNS and Cockpit's public HTTPS endpoints only; nothing talks to it."""
    return {
        "podSelector": {"matchLabels": dict(pod_labels)},
        "policyTypes": ["Ingress", "Egress"],
        # Cockpit's endpoints are public names without a published address range.
        "egress": [kube.dns_egress_rule(), kube.public_https_egress_rule()],
    }


def rules_sync_policy_spec() -> Any:
    return mimirtool_policy_spec(RULES_SYNC_LABELS)


def mimirtool_job_spec(
    *,
    pod_labels: Mapping[str, str],
    args: Sequence[str],
    address: pulumi.Input[str],
    token_secret: str,
    volume: str,
    files: Mapping[str, Any],
) -> Any:
    """A pinned ``mimirtool`` run against one Cockpit endpoint (``address``), its tenant the
    Cockpit token in ``token_secret``, reading the volume ``files`` (a ConfigMap or Secret volume
    source) at ``/<volume>``: unprivileged, read-only, no service account token."""
    return {
        "backoffLimit": 3,
        "activeDeadlineSeconds": 600,
        "template": {
            "metadata": {"labels": dict(pod_labels)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "runAsGroup": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "mimirtool",
                        "image": MIMIRTOOL_IMAGE,
                        "imagePullPolicy": "Always",
                        "args": list(args),
                        "env": [
                            {"name": "MIMIR_ADDRESS", "value": address},
                            # Cockpit takes its token as the tenant ID.
                            {
                                "name": "MIMIR_TENANT_ID",
                                "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}},
                            },
                        ],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "32Mi"},
                            "limits": {"cpu": "200m", "memory": "128Mi"},
                        },
                        "securityContext": dict(_RESTRICTED_CONTAINER),
                        "volumeMounts": [{"name": volume, "mountPath": f"/{volume}", "readOnly": True}],
                    }
                ],
                "volumes": [{"name": volume, **files}],
            },
        },
    }


def rules_sync_job_spec(target: str, address: pulumi.Input[str]) -> Any:
    """``mimirtool rules sync`` of one rule file against one Cockpit data source."""
    return mimirtool_job_spec(
        pod_labels=RULES_SYNC_LABELS,
        args=["rules", "sync", f"--rule-files=/rules/{target}.yaml"],
        address=address,
        token_secret=RULES_TOKEN_SECRET,
        volume="rules",
        files={"configMap": {"name": RULES_CONFIG_MAP}},
    )


#: Why a mimirtool Job (the rules syncs, the alert manager load) departs from two checkov
#: defaults (validate.py requires a reason).
MIMIRTOOL_CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_35=mimirtool takes the tenant (the Cockpit token) only from its "
    "--id flag or MIMIR_TENANT_ID; the variable comes from a secretKeyRef and nothing prints it",
    "checkov.io/skip2": "CKV_K8S_43=pinned by tag (MIMIRTOOL_IMAGE): no digest could be verified "
    "where this was written",
}


# --- The component --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ObservabilityArgs:
    provider: k8s.Provider
    environment: str
    region: str
    project_id: str
    settings: ObservabilitySettings
    #: The stack's front door, when it has one: probes may reach its pods directly.
    front_door: FrontDoorPods | None = None
    #: Alert rule groups (a Prometheus rule file's ``groups``) evaluated on the cluster's own
    #: metrics: in Cockpit's custom metrics source, or by the in-cluster Prometheus.
    rule_groups: Sequence[Mapping[str, Any]]
    #: Alert rule groups evaluated on Cockpit's Scaleway Metrics source (the project's managed
    #: services' metrics, e.g. the managed database's); Cockpit only.
    scaleway_rule_groups: Sequence[Mapping[str, Any]] = ()
    #: Public hostnames probed every 30 s from inside the cluster (production: the apps').
    probe_hostnames: Sequence[str] = ()
    #: Secret: the webhook contact point's URL (backend prometheus).
    webhook_url: pulumi.Input[str] | None = None
    #: Secret: the Telegram bot's token, for the telegram contact points (backend prometheus).
    telegram_bot_token: pulumi.Input[str] | None = None
    #: Secret: the heartbeat receiver's URL (settings.heartbeat, backend prometheus).
    heartbeat_url: pulumi.Input[str] | None = None
    #: Namespaces whose batch jobs push their figures (the restore check's clock on recovery): with
    #: any, the stack runs a Pushgateway (``PUSHGATEWAY_URL``) that only they may reach, scraped
    #: into the same place as every other cluster metric.
    push_clients: Sequence[str] = ()
    #: Namespaces that query the in-cluster Prometheus (backend prometheus: the canaries' analysis,
    #: from Argo Rollouts' namespace).
    query_clients: Sequence[str] = ()
    #: Labels of the monitoring namespace: leave the default (``monitoring_namespace_labels``).
    namespace_labels: Mapping[str, str] = field(default_factory=monitoring_namespace_labels)
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        settings = self.settings
        if settings.webhook is not None and self.webhook_url is None:
            raise ValueError("a webhook contact point needs the URL its Alertmanager posts to")
        if settings.telegram and self.telegram_bot_token is None:
            raise ValueError("telegram contact points need the bot token their Alertmanager posts with")
        if settings.heartbeat and self.heartbeat_url is None:
            raise ValueError("the heartbeat needs the receiver's URL")


class Observability(pulumi.ComponentResource):
    namespace: str = MONITORING_NAMESPACE
    logs_source_url: pulumi.Output[str]
    #: The stack's custom metrics source (backend cockpit), else None.
    metrics_source_url: pulumi.Output[str] | None
    agent: k8s.helm.v3.Release
    blackbox: k8s.helm.v3.Release | None = None
    pushgateway: k8s.helm.v3.Release | None = None
    prometheus_stack: k8s.helm.v3.Release | None = None
    #: Rule groups by where they are evaluated (custom, scaleway, or cluster for PrometheusRule).
    rule_groups: dict[str, list[str]]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:observability:Observability", name, None, opts)
        settings = args.settings
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        logs, metrics, push_token = self._cockpit_sources(name, args)
        self.logs_source_url = logs.url
        self.metrics_source_url = metrics.url if metrics is not None else None
        in_namespace = self._namespace(name, args, k8s_opts)
        #: What a resource in the monitoring namespace is declared with (its provider, after the
        #: namespace and its default deny): scw_platform/cockpit_routing.py places its Job there.
        self.in_namespace = in_namespace
        probes = tuple(args.probe_hostnames)
        self.agent = self._collectors(
            name,
            args,
            logs=logs,
            metrics=metrics,
            push_token=push_token,
            probes=probes,
            in_namespace=in_namespace,
        )
        self._alert_rules(name, args, metrics, probes, in_namespace)

        emails = settings.emails
        if emails:
            # One per project and region: the stack that declares contact points owns it.
            scaleway.observability.AlertManager(
                f"{name}-alert-manager",
                project_id=args.project_id,
                region=args.region,
                contact_points=[{"email": email} for email in emails],
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs(
            {
                "namespace": MONITORING_NAMESPACE,
                "backend": settings.backend,
                "logsSourceUrl": self.logs_source_url,
                "ruleGroups": self.rule_groups,
            }
        )

    def _cockpit_sources(
        self, name: str, args: ObservabilityArgs
    ) -> tuple[
        scaleway.observability.Source, scaleway.observability.Source | None, scaleway.observability.Token
    ]:
        """Declare the stack's Cockpit data sources and the agent's push token (write scopes only).

        A logs source always; a metrics source only with backend cockpit (else Prometheus keeps them).
        """
        settings = args.settings
        cockpit = settings.backend == "cockpit"
        child = pulumi.ResourceOptions(parent=self)
        logs = scaleway.observability.Source(
            f"{name}-logs",
            name=f"{args.environment}-logs",
            type="logs",
            retention_days=settings.logs_retention_days,
            project_id=args.project_id,
            region=args.region,
            opts=child,
        )
        metrics = (
            scaleway.observability.Source(
                f"{name}-metrics",
                name=f"{args.environment}-metrics",
                type="metrics",
                retention_days=settings.metrics_retention_days,
                project_id=args.project_id,
                region=args.region,
                opts=child,
            )
            if cockpit
            else None
        )
        push_token = scaleway.observability.Token(
            f"{name}-push-token",
            name=f"{args.environment}-agent",
            project_id=args.project_id,
            region=args.region,
            scopes={"write_logs": True, "write_metrics": cockpit},
            opts=child,
        )
        return logs, metrics, push_token

    def _namespace(
        self, name: str, args: ObservabilityArgs, k8s_opts: pulumi.ResourceOptions
    ) -> pulumi.ResourceOptions:
        """Declare the monitoring namespace, its default deny and the policy opening the collectors' paths.

        Returns the options of everything inside it: after the namespace and both policies.
        """
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": MONITORING_NAMESPACE, "labels": dict(args.namespace_labels)},
            opts=k8s_opts,
        )
        namespace_ready = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])
        )
        policies = [
            kube.default_deny_policy(
                f"{name}-default-deny", metadata={"namespace": MONITORING_NAMESPACE}, opts=namespace_ready
            ),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-allow",
                metadata={"name": "monitoring-allow", "namespace": MONITORING_NAMESPACE},
                spec=monitoring_policy_spec(
                    backend=args.settings.backend,
                    front_door=args.front_door,
                    push_from=args.push_clients,
                    query_from=args.query_clients,
                ),
                opts=namespace_ready,
            ),
        ]
        # The collectors start with their paths open: under the default deny alone they could reach
        # neither the API nor Cockpit, and the atomic releases would time out and roll back. On
        # destroy, the releases go while those paths still exist.
        return pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[namespace, *policies])
        )

    def _collectors(
        self,
        name: str,
        args: ObservabilityArgs,
        *,
        logs: scaleway.observability.Source,
        metrics: scaleway.observability.Source | None,
        push_token: scaleway.observability.Token,
        probes: Sequence[str],
        in_namespace: pulumi.ResourceOptions,
    ) -> k8s.helm.v3.Release:
        """Declare the push token's Secret, the blackbox exporter (with probes) and the agent release.

        Returns the agent; the blackbox release, when there is one, is kept in :attr:`blackbox`.
        """
        cockpit = args.settings.backend == "cockpit"
        push_key: pulumi.Output[str] = pulumi.Output.secret(push_token.secret_key)
        token_secret = k8s.core.v1.Secret(
            f"{name}-cockpit-token",
            metadata={"name": COCKPIT_TOKEN_SECRET, "namespace": MONITORING_NAMESPACE},
            type="Opaque",
            string_data={"token": push_key},
            opts=in_namespace,
        )
        if probes:
            self.blackbox = helm.release(
                f"{name}-blackbox",
                release_name=BLACKBOX_SERVICE,
                chart=helm.Chart(BLACKBOX_CHART, BLACKBOX_CHART_VERSION, PROMETHEUS_COMMUNITY_REPO),
                namespace=MONITORING_NAMESPACE,
                values=blackbox_values(),
                opts=in_namespace,
            )
        if args.push_clients:
            self.pushgateway = helm.release(
                f"{name}-pushgateway",
                release_name=PUSHGATEWAY_SERVICE,
                chart=helm.Chart(PUSHGATEWAY_CHART, PUSHGATEWAY_CHART_VERSION, PROMETHEUS_COMMUNITY_REPO),
                namespace=MONITORING_NAMESPACE,
                values=pushgateway_values(),
                opts=in_namespace,
            )
        return helm.release(
            f"{name}-agent",
            release_name=AGENT_RELEASE,
            chart=helm.Chart(AGENT_CHART, AGENT_CHART_VERSION, GRAFANA_REPO),
            namespace=MONITORING_NAMESPACE,
            values=agent_values(
                cluster_name=args.environment,
                backend=args.settings.backend,
                metrics_push_url=metrics.push_url if metrics is not None else None,
                logs_push_url=logs.push_url,
                probe_hostnames=probes if cockpit else (),
                pushgateway=bool(args.push_clients) and cockpit,
            ),
            timeout=600,
            # The collectors read the token Secret when they start.
            opts=pulumi.ResourceOptions.merge(
                in_namespace, pulumi.ResourceOptions(depends_on=[token_secret])
            ),
        )

    def _alert_rules(
        self,
        name: str,
        args: ObservabilityArgs,
        metrics: scaleway.observability.Source | None,
        probes: Sequence[str],
        in_namespace: pulumi.ResourceOptions,
    ) -> None:
        """Route each rule group to where it is evaluated, then declare what loads it there.

        Cockpit targets (the custom metrics source, the project's Scaleway Metrics) get a rules sync;
        backend prometheus gets the in-cluster stack. Records the split in :attr:`rule_groups`.
        """
        cockpit = args.settings.backend == "cockpit"
        in_cluster = [dict(group) for group in args.rule_groups]
        scaleway_groups = [dict(group) for group in args.scaleway_rule_groups]
        targets: dict[str, tuple[list[dict[str, Any]], pulumi.Input[str]]] = {}
        if cockpit and metrics is not None:
            targets[CUSTOM] = (in_cluster, metrics.url)
        if scaleway_groups:
            scaleway_source = scaleway.observability.get_source_output(
                origin="scaleway",
                type="metrics",
                project_id=args.project_id,
                region=args.region,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            targets[SCALEWAY] = (scaleway_groups, scaleway_source.url)
        self.rule_groups = {target: [g["name"] for g in groups] for target, (groups, _) in targets.items()}
        if not cockpit:
            self.rule_groups["cluster"] = [g["name"] for g in in_cluster]
            self._prometheus(name, args, in_cluster, probes, in_namespace)
        if targets:
            self._rules_sync(name, args, targets, in_namespace)

    def _prometheus(
        self,
        name: str,
        args: ObservabilityArgs,
        groups: Sequence[Mapping[str, Any]],
        probes: Sequence[str],
        in_namespace: pulumi.ResourceOptions,
    ) -> None:
        # Each credential in its own Secret, mounted by Alertmanager (alertmanagerSpec.secrets):
        # the monitoring namespace runs privileged pods, so the vault's stores do not serve it.
        credentials = [
            k8s.core.v1.Secret(
                f"{name}-{suffix}",
                metadata={"name": secret, "namespace": MONITORING_NAMESPACE},
                type="Opaque",
                string_data={key: pulumi.Output.secret(value)},
                opts=in_namespace,
            )
            for suffix, secret, key, value in (
                ("webhook", WEBHOOK_SECRET, "url", args.webhook_url),
                ("telegram", TELEGRAM_SECRET, "token", args.telegram_bot_token),
                ("heartbeat", HEARTBEAT_SECRET, "url", args.heartbeat_url),
            )
            if value is not None
        ]
        self.prometheus_stack = helm.release(
            f"{name}-prometheus",
            release_name=PROMETHEUS_STACK_RELEASE,
            chart=helm.Chart(
                PROMETHEUS_STACK_CHART, PROMETHEUS_STACK_CHART_VERSION, PROMETHEUS_COMMUNITY_REPO
            ),
            namespace=MONITORING_NAMESPACE,
            values=prometheus_stack_values(
                retention_days=args.settings.metrics_retention_days,
                pushgateway=bool(args.push_clients),
                contact_points=args.settings.contact_points,
                heartbeat=args.settings.heartbeat,
            ),
            timeout=900,
            # Alertmanager mounts its credentials' Secrets when it starts.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=credentials)),
        )
        # The custom resources need the operator's CRDs, which the release installs.
        after_operator = pulumi.ResourceOptions.merge(
            in_namespace, pulumi.ResourceOptions(depends_on=[self.prometheus_stack])
        )
        k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": RULES_CONFIG_MAP, "namespace": MONITORING_NAMESPACE},
            spec={"groups": list(groups)},
            opts=after_operator,
        )
        for hostname in probes:
            k8s.apiextensions.CustomResource(
                f"{name}-probe-{hostname.replace('.', '-')}",
                api_version="monitoring.coreos.com/v1",
                kind="Probe",
                metadata={"name": f"app-{hostname.replace('.', '-')}", "namespace": MONITORING_NAMESPACE},
                spec=probe_spec(hostname),
                opts=pulumi.ResourceOptions.merge(
                    after_operator,
                    pulumi.ResourceOptions(depends_on=[self.blackbox] if self.blackbox else []),
                ),
            )

    def _rules_sync(
        self,
        name: str,
        args: ObservabilityArgs,
        targets: Mapping[str, tuple[list[dict[str, Any]], pulumi.Input[str]]],
        in_namespace: pulumi.ResourceOptions,
    ) -> None:
        rules_token = scaleway.observability.Token(
            f"{name}-rules-token",
            name=f"{args.environment}-rules",
            project_id=args.project_id,
            region=args.region,
            # Alert rules only: it can neither read nor write telemetry.
            scopes={"setup_metrics_rules": True},
            opts=pulumi.ResourceOptions(parent=self),
        )
        rules_key: pulumi.Output[str] = pulumi.Output.secret(rules_token.secret_key)
        token_secret = k8s.core.v1.Secret(
            f"{name}-rules-token",
            metadata={"name": RULES_TOKEN_SECRET, "namespace": MONITORING_NAMESPACE},
            type="Opaque",
            string_data={"token": rules_key},
            opts=in_namespace,
        )
        files = {target: mimir_rule_file(groups) for target, (groups, _) in targets.items()}
        config = k8s.core.v1.ConfigMap(
            f"{name}-rule-files",
            metadata={"name": RULES_CONFIG_MAP, "namespace": MONITORING_NAMESPACE},
            data={f"{target}.yaml": text for target, text in files.items()},
            opts=in_namespace,
        )
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-rules-sync-egress",
            metadata={"name": "platform-rules-sync", "namespace": MONITORING_NAMESPACE},
            spec=rules_sync_policy_spec(),
            opts=in_namespace,
        )
        for target, (_, address) in targets.items():
            k8s.batch.v1.Job(
                f"{name}-rules-sync-{target}",
                # A new name per rule file content: a changed file runs a new sync.
                metadata={
                    "name": f"platform-rules-{target}-{content_hash(files[target])}",
                    "namespace": MONITORING_NAMESPACE,
                    "annotations": MIMIRTOOL_CHECKOV_SKIPS,
                },
                spec=rules_sync_job_spec(target, address),
                opts=pulumi.ResourceOptions.merge(
                    in_namespace,
                    # A Job's template is immutable: a changed address replaces the Job, and the
                    # old one must go first when the name stays the same.
                    pulumi.ResourceOptions(
                        depends_on=[config, token_secret, policy], delete_before_replace=True
                    ),
                ),
            )

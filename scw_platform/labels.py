"""Labels the components agree on, defined once.

The platform Gateway admits HTTPRoutes by the namespace labels, the External Secrets stores serve
namespaces by them, Argo CD's registration is limited to the app namespaces and the policy pack
(``policy/rules.py``, which must stay importable on its own) checks the same keys.
"""

from __future__ import annotations

#: Marks a namespace that belongs to one app (created by ``scw_platform.apps``).
APP_NAMESPACE = "platform.scw/app-namespace"
#: Marks a namespace of the platform itself (Traefik, Argo CD, cert-manager, ...).
PLATFORM_NAMESPACE = "platform.scw/platform-namespace"
#: The app a namespace or object belongs to; the Gateway admits an app's routes only on its own
#: hostname's listener by this label.
APP = "platform.scw/app"
ENVIRONMENT = "platform.scw/environment"
#: Marks a namespace from ``platform:gitops.namespaces`` (e.g. tooling's ``ci``): Argo CD deploys
#: into it, inside the platform's envelope.
GITOPS_NAMESPACE = "platform.scw/gitops-namespace"


def pod_security(enforce: str = "restricted") -> dict[str, str]:
    """Pod Security admission labels: ``enforce`` at the given level, restricted always audited
    and warned so a namespace running below it shows what keeps it there."""
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }


def platform_namespace(*, enforce: str = "restricted") -> dict[str, str]:
    return {**pod_security(enforce), PLATFORM_NAMESPACE: "true"}


def app_namespace(app: str) -> dict[str, str]:
    return {**pod_security(), APP_NAMESPACE: "true", APP: app}


#: Ports the platform's controllers serve Prometheus metrics on (each chart's default).
ARGOCD_CONTROLLER_METRICS_PORT = 8082
EXTERNAL_SECRETS_METRICS_PORT = 8080
CERT_MANAGER_METRICS_PORT = 9402
#: Traefik's ``metrics`` entry point (the chart's default port), on a ClusterIP Service of its own.
TRAEFIK_METRICS_PORT = 9100
#: Argo Rollouts' controller (argo-helm charts/argo-rollouts ``controller.metrics``, port 8090).
ROLLOUTS_CONTROLLER_METRICS_PORT = 8090


def scrape(port: int) -> dict[str, str]:
    """Annotations asking for a Service's metrics to be scraped. The Cockpit agent (k8s-monitoring's
    annotation autodiscovery) reads them as is; the in-cluster Prometheus backend has a scrape job
    for the same annotations (scw_platform.observability), so one convention serves both."""
    return {"k8s.grafana.com/scrape": "true", "k8s.grafana.com/metrics.portNumber": str(port)}

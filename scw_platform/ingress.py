"""One front door: a reserved public IP, Traefik with the Kubernetes Gateway API, the platform
Gateway, cert-manager (``scw_platform.tls``) and DNS (``scw_platform.dns``).

Order, each step explicit (``depends_on``) because nothing in the inputs implies it:

1. Gateway API CRDs (standard channel, pinned release), applied from the upstream release bundle.
2. Traefik and cert-manager Helm releases, each after its namespace's NetworkPolicies (a default
   deny and the allows of ``traefik_policies`` and ``tls.cert_manager_policies``): Traefik's
   Gateway provider and cert-manager's gateway-shim only watch Gateway API kinds whose CRDs exist
   when they start.
3. The GatewayClass, the platform Gateway and the ClusterIssuers.

The public address is a flexible load-balancer IP reserved outside the cluster (``protect`` and
``retain_on_delete``): a cluster can be replaced without the address, or its DNS, changing. Kapsule's
cloud controller puts Traefik's load balancer on it through the Service annotations.

The program owns the Gateway (Traefik's chart creates none): its listeners follow the stack's
hostnames and its annotation names the stack's issuer, and it is validated offline like every
other custom resource. Listener ports are Traefik's entry-point ports (8000 web, 8443 websecure):
Traefik binds a Gateway listener to the entry point with the same port; the load balancer maps
the public 80/443 onto them.

Which namespaces may attach routes: one HTTPS listener per hostname, each admitting either app
namespaces (label ``platform.scw/app-namespace: "true"``) or the platform's own (label
``platform.scw/platform-namespace: "true"``), never both. A label selector ANDs its terms, so one
selector cannot admit "either label"; a per-listener choice also stops an app namespace from
taking over a platform hostname such as Argo CD's. The HTTP listener admits only the Gateway's own
namespace: everything on port 80 is redirected to HTTPS except ACME HTTP-01 challenges, whose
routes cert-manager creates next to the Gateway's certificates. Hostnames configured as redirects
(the apex to www) get a listener admitting platform namespaces and a redirect HTTPRoute next to
the Gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from scw_platform import helm, images, kube, labels, tls
from scw_platform.dns import DnsRecords, DnsRecordsArgs, resource_suffix
from scw_platform.settings import (
    Hostname,
    Settings,
    catalogued,
    no_duplicates,
    validation_context,
    zone_of_region,
)
from scw_platform.tls import CertManager, CertManagerArgs, Dns01Args, GatewayRef

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:ingress).
# --------------------------------------------------------------------------------------------

#: A Gateway listener hostname: a DNS name, optionally a leading ``*.`` wildcard (DNS-01 only).
_GATEWAY_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
#: An IP to adopt: ``<zone>/<uuid>`` (the provider's resource ID, as the console and
#: ``scw lb ip list`` show it) or a bare UUID (then in the front door's zone).
_ADOPT_IP_ID = re.compile(
    r"^((?P<zone>[a-z]{2}-[a-z]{3}-[1-9])/)?"
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
#: A Gateway has at most 64 listeners; one is the HTTP listener.
MAX_HTTPS_LISTENERS = 63


def within_domain(hostname: str, domain: str) -> bool:
    """``www.example.com`` and ``*.apps.example.com`` lie in ``example.com``; ``example.org`` not."""
    bare = hostname.removeprefix("*.")
    return bare == domain or bare.endswith("." + domain)


def _gateway_hostname(hostname: str, info: ValidationInfo) -> str:
    if not _GATEWAY_HOSTNAME.fullmatch(hostname) or len(hostname) > 253:
        raise ValueError(
            f"must be a lowercase DNS name such as www.example.com (or *.apps.example.com), got {hostname!r}"
        )
    domain = info.data.get("domain")
    if domain is not None and not within_domain(hostname, domain):
        raise ValueError(f"{hostname} is outside the configured domain {domain} (platform:ingress.domain)")
    return hostname


GatewayHostname = Annotated[str, AfterValidator(_gateway_hostname)]


class IngressSettings(Settings):
    """``platform:ingress``: the one front door (reserved IP, Traefik, the platform Gateway)."""

    domain: Hostname
    """The public DNS domain; every hostname the Gateway serves lies in it."""
    hostnames: list[GatewayHostname] = Field(default_factory=list)
    """Hostnames served by app namespaces (label platform.scw/app-namespace=true). Hostnames of
    ``platform:apps`` are added to these.
    """
    platform_hostnames: list[GatewayHostname] = Field(default_factory=list, validate_default=True)
    """Hostnames served by the platform's own namespaces (label platform.scw/platform-namespace=true), e.g.
    Argo CD's; ``platform:gitops.argocd.hostname`` is added to these.
    """
    redirects: dict[str, str] = Field(default_factory=dict)
    """Hostnames that only redirect (301) to another hostname, e.g. the apex to www."""
    zone: str | None = None
    """Zone of the reserved IP and its load balancer (default: the stack's scaleway:zone)."""
    adopt_ip_id: str | None = None
    """Adopt an existing flexible IP instead of reserving one (the cutover, docs/runbooks/cutover.md)."""
    replicas: int = Field(default=2, ge=1, le=20)
    """Traefik replicas behind the load balancer."""
    load_balancer_type: str = "LB-S"
    """Load Balancer commercial type (catalogue: loadBalancerTypes)."""

    _zone = field_validator("zone")(zone_of_region)

    @field_validator("load_balancer_type")
    @classmethod
    def _lb_type(cls, name: str) -> str:
        return catalogued("loadBalancerTypes", name)

    @field_validator("hostnames")
    @classmethod
    def _unique_hostnames(cls, hostnames: list[str]) -> list[str]:
        no_duplicates("hostname", hostnames)
        return hostnames

    @field_validator("platform_hostnames")
    @classmethod
    def _unique_platform_hostnames(cls, platform: list[str], info: ValidationInfo) -> list[str]:
        apps = info.data.get("hostnames") or []
        no_duplicates("hostname", platform)
        both = sorted(set(apps) & set(platform))
        if both:
            raise ValueError(
                f"{', '.join(both)} also in hostnames: a hostname is served by apps or by the platform"
            )
        if len(apps) + len(platform) > MAX_HTTPS_LISTENERS:
            raise ValueError(f"at most {MAX_HTTPS_LISTENERS} hostnames in all (one Gateway listener each)")
        return platform

    @field_validator("redirects")
    @classmethod
    def _redirects(cls, redirects: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        domain = info.data.get("domain")
        served = {*(info.data.get("hostnames") or []), *(info.data.get("platform_hostnames") or [])}
        for source, target in redirects.items():
            for hostname in (source, target):
                if not _GATEWAY_HOSTNAME.fullmatch(hostname) or hostname.startswith("*."):
                    raise ValueError(f"{hostname!r} must be a lowercase DNS name without wildcard")
                if domain is not None and not within_domain(hostname, domain):
                    raise ValueError(f"{hostname} is outside the configured domain {domain}")
            if source in served:
                raise ValueError(f"{source} is also served as a hostname: it cannot only redirect")
            if target in redirects:
                raise ValueError(
                    f"{source} -> {target} -> {redirects[target]}: redirect to the final hostname"
                )
        if len(served) + len(redirects) > MAX_HTTPS_LISTENERS:
            raise ValueError(f"at most {MAX_HTTPS_LISTENERS} hostnames in all (one Gateway listener each)")
        return redirects

    @field_validator("adopt_ip_id")
    @classmethod
    def _adoptable(cls, ip_id: str | None, info: ValidationInfo) -> str | None:
        if ip_id is None:
            return None
        match = _ADOPT_IP_ID.fullmatch(ip_id)
        if match is None:
            raise ValueError(
                "must be a load-balancer flexible IP ID, <zone>/<uuid> (e.g. fr-par-1/"
                f"11111111-2222-3333-4444-555555555555) or a bare uuid, got {ip_id!r}"
            )
        ip_zone, zone = match["zone"], info.data.get("zone")
        region = validation_context(info).get("region")
        if ip_zone and region is not None and not ip_zone.startswith(f"{region}-"):
            raise ValueError(f"is in zone {ip_zone}, outside this stack's region {region}")
        if ip_zone and zone is not None and ip_zone != zone:
            raise ValueError(f"is in zone {ip_zone} but platform:ingress.zone is {zone}")
        return ip_id

    def ip_zone(self, default: str) -> str:
        """Zone of the reserved IP: explicit, else the adopted ID's, else the stack's."""
        match = _ADOPT_IP_ID.fullmatch(self.adopt_ip_id or "")
        return self.zone or (match["zone"] if match and match["zone"] else None) or default

    def adopt_import_id(self, default_zone: str) -> str | None:
        """The provider's import ID (``<zone>/<uuid>``) of the IP to adopt, if any."""
        match = _ADOPT_IP_ID.fullmatch(self.adopt_ip_id or "")
        return f"{self.ip_zone(default_zone)}/{match['uuid']}" if match else None


GATEWAY_API_VERSION = "v1.6.1"
#: The standard channel bundle of the pinned release (CRDs plus the safe-upgrades admission policy).
GATEWAY_API_CRDS_URL = f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{GATEWAY_API_VERSION}/standard-install.yaml"

TRAEFIK_REPO = "https://traefik.github.io/charts"
TRAEFIK_CHART_VERSION = "41.3.0"
#: The chart's appVersion, pinned explicitly.
TRAEFIK_IMAGE_TAG = "v3.7.11"
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_RELEASE = "traefik"
#: The chart's ``crds/`` directory holds Traefik's own CRDs (traefik.io IngressRoute, Middleware,
#: TLSOption, ... and hub.traefik.io), served only by the ``kubernetesCRD`` provider, which the
#: values turn off; the Gateway API CRDs are not in it since chart v40.2 (GatewayApiCrds installs
#: them). So the release skips the directory: no API kinds that nothing reconciles, whose objects
#: a namespace could still create and a later provider change would suddenly serve.
#: traefik/traefik-helm-chart v41.3.0, traefik/crds/ and the ``providers`` values.
TRAEFIK_SKIP_CRDS = True
#: The chart's selector labels on Traefik's pods: its name and ``<release>-<namespace>`` as the
#: instance (traefik/templates/_helpers.tpl, ``traefik.labelselector`` and ``traefik.instance-name``).
#: The chart renders ``topologySpreadConstraints`` as given (``_podtemplate.tpl``), selector included.
TRAEFIK_POD_LABELS = {
    "app.kubernetes.io/name": "traefik",
    "app.kubernetes.io/instance": f"{TRAEFIK_RELEASE}-{TRAEFIK_NAMESPACE}",
}
#: Traefik's entry-point ports; Gateway listeners bind to the entry point with the same port.
#: They are the chart's defaults (traefik/values.yaml ``ports.web.port`` 8000, ``ports.websecure.port``
#: 8443), set explicitly in _traefik_entry_points, so the NetworkPolicies name the same numbers.
WEB_PORT = 8000
WEBSECURE_PORT = 8443

GATEWAY_CLASS = "traefik"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_NAME = "platform"
GATEWAY_NAMESPACE = TRAEFIK_NAMESPACE
#: spec.listeners maxItems of the Gateway CRD (gateway-api v1.6.1). Hostnames beyond what the
#: platform Gateway holds go to further Gateways of the same class (``platform-2``, ...): Traefik
#: serves every Gateway of its class on the same entry points, so they share the reserved IP.
MAX_LISTENERS = 64
HTTP_LISTENER = "http"

IP_IDS_ANNOTATION = "service.beta.kubernetes.io/scw-loadbalancer-ip-ids"
ZONE_ANNOTATION = "service.beta.kubernetes.io/scw-loadbalancer-zone"
LB_TYPE_ANNOTATION = "service.beta.kubernetes.io/scw-loadbalancer-type"
ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"

RoutesFrom = Literal["apps", "platform"]


def bare_ip_uuid(resource_id: str) -> str:
    """``fr-par-1/<uuid>`` -> ``<uuid>``: the cloud controller's annotation wants the bare UUID."""
    return resource_id.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class Listener:
    hostname: str
    routes_from: RoutesFrom
    #: The one app whose namespace may attach routes here (its namespace's ``labels.APP``), so
    #: an app cannot take over another app's hostname. None: any app namespace.
    owner: str | None = None
    #: The Gateway holding this listener.
    gateway: str = GATEWAY_NAME

    @property
    def name(self) -> str:
        return f"https-{resource_suffix(self.hostname)}"

    @property
    def secret_name(self) -> str:
        """The Secret gateway-shim writes the certificate to, next to the Gateway."""
        return f"{resource_suffix(self.hostname)}-tls"


def listeners(
    app_hostnames: Sequence[str], platform_hostnames: Sequence[str], owners: Mapping[str, str] | None = None
) -> list[Listener]:
    """One HTTPS listener per hostname, in order, duplicates dropped; a hostname is either kind.
    ``owners`` maps an app hostname to the only app allowed to serve it."""
    owners = owners or {}
    found: dict[str, Listener] = {}
    kinds: tuple[tuple[RoutesFrom, Sequence[str]], ...] = (
        ("apps", app_hostnames),
        ("platform", platform_hostnames),
    )
    for routes_from, hostnames in kinds:
        for hostname in hostnames:
            known = found.get(hostname)
            if known is not None and known.routes_from != routes_from:
                raise ValueError(f"hostname {hostname} is both an app and a platform hostname")
            owner = owners.get(hostname) if routes_from == "apps" else None
            found.setdefault(hostname, Listener(hostname=hostname, routes_from=routes_from, owner=owner))
    # Platform hostnames first, so they stay on the platform Gateway next to its HTTP listener;
    # that Gateway keeps one slot for HTTP, every further one holds HTTPS listeners only.
    ordered = sorted(found.values(), key=lambda listener: listener.routes_from != "platform")
    first = MAX_LISTENERS - 1
    return [
        replace(listener, gateway=gateway_name(0 if i < first else 1 + (i - first) // MAX_LISTENERS))
        for i, listener in enumerate(ordered)
    ]


def gateway_name(shard: int) -> str:
    return GATEWAY_NAME if shard == 0 else f"{GATEWAY_NAME}-{shard + 1}"


def _route_selector(listener: Listener) -> dict[str, object]:
    if listener.routes_from == "platform":
        return {"matchLabels": {labels.PLATFORM_NAMESPACE: "true"}}
    owner = {labels.APP: listener.owner} if listener.owner else {}
    return {"matchLabels": {labels.APP_NAMESPACE: "true", **owner}}


def gateway_spec(hostnames: Sequence[Listener], *, with_http: bool = True) -> dict[str, object]:
    http_routes = [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    # Everything else on port 80 is redirected by Traefik before routing; only the ACME challenge
    # routes, created next to the Gateway, need this listener (one is enough for all Gateways).
    http = {
        "name": HTTP_LISTENER,
        "protocol": "HTTP",
        "port": WEB_PORT,
        "allowedRoutes": {"namespaces": {"from": "Same"}, "kinds": http_routes},
    }
    return {
        "gatewayClassName": GATEWAY_CLASS,
        "listeners": [
            *([http] if with_http else []),
            *(
                {
                    "name": listener.name,
                    "protocol": "HTTPS",
                    "port": WEBSECURE_PORT,
                    "hostname": listener.hostname,
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [{"group": "", "kind": "Secret", "name": listener.secret_name}],
                    },
                    "allowedRoutes": {
                        "namespaces": {"from": "Selector", "selector": _route_selector(listener)},
                        "kinds": http_routes,
                    },
                }
                for listener in hostnames
            ),
        ],
    }


def traefik_policies(gateway: GatewayRef) -> dict[str, Any]:
    """The allows of Traefik's namespace on top of its default deny (policy name -> spec).

    * Traefik's pods: the load balancer delivers the public's requests to the web and websecure
      container ports (from anywhere: the LB and the clients it forwards are outside the cluster);
      the monitoring namespace scrapes the metrics entry point. Out: DNS, the API server (the
      Gateway provider watches Gateway API objects, Services and Secrets), and the backends the
      Gateway routes to: pods in app namespaces and in the platform's own (Argo CD's server), on
      any port, since each route names its own Service port; the receiving namespace's policies
      decide which of its ports take the Gateway's traffic. Plus the HTTP-01 solver pods next to
      the Gateway.
    * The solver pods: see tls.acme_solver_policy.
    """
    backends = [
        {"namespaceSelector": {"matchLabels": {key: "true"}}}
        for key in (labels.APP_NAMESPACE, labels.PLATFORM_NAMESPACE)
    ]
    return {
        "traefik": kube.policy_spec(
            TRAEFIK_POD_LABELS,
            ingress=[
                {"ports": kube.tcp(WEB_PORT, WEBSECURE_PORT)},
                kube.from_namespace_rule(kube.MONITORING_NAMESPACE, kube.tcp(labels.TRAEFIK_METRICS_PORT)),
            ],
            egress=[
                kube.dns_egress_rule(),
                kube.api_server_egress_rule(),
                {"to": backends},
                {
                    "to": [{"podSelector": {"matchLabels": dict(tls.ACME_SOLVER_POD_LABELS)}}],
                    "ports": kube.tcp(tls.ACME_SOLVER_PORT),
                },
            ],
        ),
        "acme-http01-solver": tls.acme_solver_policy(gateway),
    }


def redirect_route_spec(source: str, target: str, listener: Listener) -> dict[str, object]:
    """An HTTPRoute answering every request for ``source`` with a permanent redirect to ``target``."""
    return {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": listener.gateway,
                "namespace": GATEWAY_NAMESPACE,
                "sectionName": listener.name,
            }
        ],
        "hostnames": [source],
        "rules": [
            {
                "filters": [
                    {
                        "type": "RequestRedirect",
                        "requestRedirect": {"scheme": "https", "hostname": target, "statusCode": 301},
                    }
                ]
            }
        ],
    }


def _traefik_pods(replicas: int) -> dict[str, object]:
    """Traefik's pods: image, replicas and their spread, resources and hardened security contexts.

    A step of :func:`traefik_values` (the values' keys keep their order).
    """
    ha = replicas >= 2
    return {
        "image": {"tag": TRAEFIK_IMAGE_TAG},
        # image.tag becomes "<version>@sha256:..." (images.pin_chart), which the chart accepts but
        # calls informational for its version checks; versionOverride states the version itself
        # (traefik/traefik-helm-chart traefik/values.schema.json at v41.3.0: "overrides the default
        # version extracted from image.tag").
        "versionOverride": TRAEFIK_IMAGE_TAG,
        "deployment": {"replicas": replicas},
        # With one replica a PDB would block every node drain; with two or more, one always serves.
        "podDisruptionBudget": {"enabled": ha, "minAvailable": 1},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        # Over zones and nodes (kube.spread_constraints); one replica has nothing to spread.
        **({"topologySpreadConstraints": kube.spread_constraints(TRAEFIK_POD_LABELS)} if ha else {}),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def _traefik_entry_points() -> dict[str, object]:
    """Traefik's entry points: web (redirecting to HTTPS, ACME aside) and websecure, on 80/443,
    and metrics, inside the cluster only.

    A step of :func:`traefik_values`.
    """
    return {
        "web": {
            "port": WEB_PORT,
            "exposedPort": 80,
            "http": {
                "redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}
            },
            # ...except ACME HTTP-01 challenges, which must be answered over plain HTTP.
            "allowACMEByPass": True,
        },
        "websecure": {"port": WEBSECURE_PORT, "exposedPort": 443},
        # Prometheus metrics, for the cluster's scraper only: never on the LoadBalancer Service
        # (``expose.default``); the metrics Service below carries the port instead.
        "metrics": {"port": labels.TRAEFIK_METRICS_PORT, "expose": {"default": False}},
    }


def _traefik_metrics() -> dict[str, object]:
    """Prometheus metrics on the ``metrics`` entry point, per service and entry point (the request
    counters and latency histograms the SLO alerts read: ``traefik_service_requests_total``,
    ``traefik_service_request_duration_seconds_bucket``), not per router (one series set per
    route would multiply the series for nothing the alerts use).

    The chart's metrics Service (``metrics.prometheus.service``, ClusterIP, the metrics port only;
    templates/service-metrics.yaml) carries the scrape annotations, as cert-manager's and External
    Secrets' metrics Services do. A step of :func:`traefik_values`.
    """
    return {
        "prometheus": {
            "entryPoint": "metrics",
            "addEntryPointsLabels": True,
            "addRoutersLabels": False,
            "addServicesLabels": True,
            "service": {"enabled": True, "annotations": labels.scrape(labels.TRAEFIK_METRICS_PORT)},
        }
    }


def traefik_values(
    *, replicas: int, ip_id: pulumi.Input[str], zone: str, load_balancer_type: str
) -> dict[str, object]:
    """Values for the Traefik chart (checked offline against its values.schema.json); the image is
    pinned by tag and digest (:func:`images.pin_chart`)."""
    return images.pin_chart("traefik", _traefik_values(replicas, ip_id, zone, load_balancer_type))


def _traefik_values(
    replicas: int, ip_id: pulumi.Input[str], zone: str, load_balancer_type: str
) -> dict[str, object]:
    return {
        **_traefik_pods(replicas),
        # Routes come only through the Gateway API, where the Gateway decides which namespaces may
        # attach. IngressRoute and Ingress objects would let any namespace claim any hostname.
        "providers": {
            "kubernetesGateway": {"enabled": True},
            "kubernetesCRD": {"enabled": False},
            "kubernetesIngress": {"enabled": False},
        },
        "ingressClass": {"enabled": False},
        # The program owns the GatewayClass and the Gateway (see the module docstring).
        "gatewayClass": {"enabled": False},
        "gateway": {"enabled": False},
        # No traefik.io objects either: the release skips the chart's traefik.io CRDs
        # (TRAEFIK_SKIP_CRDS), and an IngressRoute without its CRD would fail the install.
        "ingressRoute": {"dashboard": {"enabled": False}, "healthcheck": {"enabled": False}},
        "api": {"dashboard": False},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO", "format": "json"},
        # Access logs without request headers: cookies and authorization headers stay out of logs.
        "accessLog": {"enabled": True, "format": "json", "fields": {"headers": {"defaultMode": "drop"}}},
        "ports": _traefik_entry_points(),
        "metrics": _traefik_metrics(),
        "service": {
            "annotations": {
                IP_IDS_ANNOTATION: pulumi.Output.from_input(ip_id).apply(bare_ip_uuid),
                ZONE_ANNOTATION: zone,
                LB_TYPE_ANNOTATION: load_balancer_type,
            }
        },
    }


class GatewayApiCrds(pulumi.ComponentResource):
    """The Gateway API standard-channel CRDs of one pinned release, applied from the upstream bundle."""

    bundle: k8s.yaml.v2.ConfigFile

    def __init__(self, name: str, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:ingress:GatewayApiCrds", name, None, opts)
        # Applied from the release URL at deploy time (nothing vendored): the file is the upstream
        # artifact of the pinned tag, the same one `kubectl apply -f` would use.
        self.bundle = k8s.yaml.v2.ConfigFile(
            f"{name}-bundle",
            file=GATEWAY_API_CRDS_URL,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({"version": GATEWAY_API_VERSION, "url": GATEWAY_API_CRDS_URL})


@dataclass(frozen=True, kw_only=True)
class DnsZone:
    """The domain's zone in Scaleway DNS."""

    zone: str
    ttl: int = 300
    #: Manage an A record per hostname (else the zone only serves DNS-01 challenges).
    records: bool = True


@dataclass(frozen=True, kw_only=True)
class FrontDoorArgs:
    provider: k8s.Provider
    project_id: pulumi.Input[str]
    #: Zone of the reserved IP and of the load balancer the cloud controller creates.
    zone: str
    #: Hostnames served by app namespaces, then by the platform's namespaces.
    app_hostnames: Sequence[str]
    platform_hostnames: Sequence[str] = ()
    #: App hostname -> the only app (namespace label ``labels.APP``) that may route it.
    app_owners: Mapping[str, str] = field(default_factory=dict)
    acme_email: str
    #: Hostnames that only redirect (301, path kept) to another hostname, e.g. the apex to www.
    redirects: Mapping[str, str] = field(default_factory=dict)
    #: ClusterIssuer named by the Gateway's annotation.
    issuer: str
    replicas: int
    load_balancer_type: str = "LB-S"
    #: ``<zone>/<uuid>`` of an existing flexible IP to adopt (imported, never created).
    adopt_ip_id: str | None = None
    #: Protect the reserved IP and keep it on delete (every role but development).
    protect: bool = True
    #: The zone is in Scaleway DNS: A records for every hostname.
    dns: DnsZone | None = None
    #: Solve ACME challenges by DNS-01 through Scaleway DNS (needs ``dns``).
    dns01: bool = False
    tags: Sequence[str] = field(default_factory=tuple)


class FrontDoor(pulumi.ComponentResource):
    ip_address: pulumi.Output[str]
    #: ``<zone>/<uuid>``.
    ip_id: pulumi.Output[str]
    gateway_name: str = GATEWAY_NAME
    gateway_namespace: str = GATEWAY_NAMESPACE
    listeners: list[Listener]
    #: What HTTPRoutes and other Gateway API users must depend on.
    gateway_api_crds: k8s.yaml.v2.ConfigFile
    #: The platform Gateway (HTTP listener and the platform's hostnames first).
    gateway: k8s.apiextensions.CustomResource
    #: Every Gateway by name: the platform Gateway and those holding the overflow of app hostnames.
    gateways: dict[str, k8s.apiextensions.CustomResource]
    traefik: k8s.helm.v3.Release
    cert_manager: CertManager

    def __init__(self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:ingress:FrontDoor", name, None, opts)
        if args.dns01 and args.dns is None:
            raise ValueError("dns01 needs the zone in Scaleway DNS (args.dns)")
        # A redirect's route lives next to the Gateway, in a platform namespace.
        self.listeners = listeners(
            args.app_hostnames, [*args.platform_hostnames, *args.redirects], owners=args.app_owners
        )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        ip = self._reserved_ip(name, args)
        self.ip_id = ip.id
        self.ip_address = ip.ip_address

        crds = GatewayApiCrds(f"{name}-crds", args.provider, opts=pulumi.ResourceOptions(parent=self))
        self.gateway_api_crds = crds.bundle

        self.traefik = self._traefik(name, args, ip, k8s_opts)
        self.cert_manager = self._cert_manager(name, args)
        self.gateways = self._gateways(name, args, k8s_opts)
        self.gateway = self.gateways[GATEWAY_NAME]
        self._redirect_routes(name, args, k8s_opts)

        if args.dns is not None and args.dns.records:
            DnsRecords(
                f"{name}-dns",
                DnsRecordsArgs(
                    zone=args.dns.zone,
                    hostnames=[listener.hostname for listener in self.listeners],
                    address=self.ip_address,
                    ttl=args.dns.ttl,
                    project_id=args.project_id,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs(
            {
                "ipAddress": self.ip_address,
                "ipId": self.ip_id,
                "gatewayName": GATEWAY_NAME,
                "gatewayNamespace": GATEWAY_NAMESPACE,
                "hostnames": [listener.hostname for listener in self.listeners],
            }
        )

    def _traefik(
        self,
        name: str,
        args: FrontDoorArgs,
        ip: scaleway.loadbalancers.Ip,
        k8s_opts: pulumi.ResourceOptions,
    ) -> k8s.helm.v3.Release:
        """Declare Traefik's namespace and Helm release, its load balancer on the reserved IP.

        A step of its own because it must follow the Gateway API CRDs (step 2 of the module docstring).
        """
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": TRAEFIK_NAMESPACE, "labels": labels.platform_namespace()},
            opts=k8s_opts,
        )
        policies = kube.namespace_policies(
            name,
            namespace=TRAEFIK_NAMESPACE,
            allows=traefik_policies(self._gateway_ref()),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        # helm.v3.Release, not helm.v4.Chart: one atomic Helm release that waits for the load
        # balancer and whose chart, version and values are recorded as inputs (validated offline).
        return helm.release(
            f"{name}-traefik",
            release_name=TRAEFIK_RELEASE,
            chart=helm.Chart("traefik", TRAEFIK_CHART_VERSION, TRAEFIK_REPO),
            namespace=namespace.metadata.name,
            values=traefik_values(
                replicas=args.replicas,
                ip_id=ip.id,
                zone=args.zone,
                load_balancer_type=args.load_balancer_type,
            ),
            timeout=600,
            skip_crds=TRAEFIK_SKIP_CRDS,
            # Traefik's Gateway provider watches only kinds whose CRDs exist when it starts; and it
            # starts with its paths open (the release waits for the load balancer to serve).
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.gateway_api_crds, namespace, *policies])
            ),
        )

    def _cert_manager(self, name: str, args: FrontDoorArgs) -> CertManager:
        """Declare cert-manager and its ClusterIssuers (HTTP-01 on the Gateway, DNS-01 when asked).

        The Gateways wait on its issuers, so it comes before them.
        """
        return CertManager(
            f"{name}-tls",
            CertManagerArgs(
                provider=args.provider,
                acme_email=args.acme_email,
                gateway=self._gateway_ref(),
                namespace_labels=labels.platform_namespace(),
                gateway_api_crds=self.gateway_api_crds,
                ha=args.replicas >= 2,
                dns01=Dns01Args(
                    zone=args.dns.zone,
                    project_id=args.project_id,
                    # restricted like cert-manager's: the webhook runs unprivileged
                    # (tls.scaleway_webhook_values).
                    namespace_labels=labels.platform_namespace(),
                )
                if args.dns01 and args.dns is not None
                else None,
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _gateway_ref() -> GatewayRef:
        """The platform Gateway as cert-manager sees it: its HTTP listener and Traefik's pods."""
        return GatewayRef(
            name=GATEWAY_NAME,
            namespace=GATEWAY_NAMESPACE,
            section_name=HTTP_LISTENER,
            pods=TRAEFIK_POD_LABELS,
            http_port=WEB_PORT,
        )

    def _gateways(
        self, name: str, args: FrontDoorArgs, k8s_opts: pulumi.ResourceOptions
    ) -> dict[str, k8s.apiextensions.CustomResource]:
        """Declare the GatewayClass and every Gateway (the platform's, then the app-hostname overflow).

        Step 3 of the module docstring: after Traefik and the issuers. Returns the Gateways by name.
        """
        after_controllers = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[self.gateway_api_crds, self.traefik])
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version="gateway.networking.k8s.io/v1",
            kind="GatewayClass",
            metadata={"name": GATEWAY_CLASS},
            spec={
                "controllerName": GATEWAY_CONTROLLER,
                "description": "Traefik, behind the platform's reserved load-balancer IP",
            },
            opts=after_controllers,
        )
        shards = list(dict.fromkeys([GATEWAY_NAME, *(listener.gateway for listener in self.listeners)]))
        return {
            shard: k8s.apiextensions.CustomResource(
                # The platform Gateway keeps its original logical name (no replacement on upgrade).
                f"{name}-gateway" if shard == GATEWAY_NAME else f"{name}-gateway-{shard}",
                api_version="gateway.networking.k8s.io/v1",
                kind="Gateway",
                metadata={
                    "name": shard,
                    "namespace": GATEWAY_NAMESPACE,
                    # cert-manager's gateway-shim issues one certificate per HTTPS listener.
                    "annotations": {ISSUER_ANNOTATION: args.issuer},
                },
                spec=gateway_spec(
                    [listener for listener in self.listeners if listener.gateway == shard],
                    with_http=shard == GATEWAY_NAME,
                ),
                opts=pulumi.ResourceOptions.merge(
                    after_controllers,
                    # The issuer it names must exist, or the first issuance attempt fails and backs off.
                    pulumi.ResourceOptions(depends_on=[gateway_class, *self.cert_manager.issuers.values()]),
                ),
            )
            for shard in shards
        }

    def _redirect_routes(self, name: str, args: FrontDoorArgs, k8s_opts: pulumi.ResourceOptions) -> None:
        """Declare one redirect HTTPRoute per redirect hostname, next to the Gateway serving it."""
        by_hostname = {listener.hostname: listener for listener in self.listeners}
        for source, target in args.redirects.items():
            k8s.apiextensions.CustomResource(
                f"{name}-redirect-{resource_suffix(source)}",
                api_version="gateway.networking.k8s.io/v1",
                kind="HTTPRoute",
                metadata={"name": f"redirect-{resource_suffix(source)}", "namespace": GATEWAY_NAMESPACE},
                spec=redirect_route_spec(source, target, by_hostname[source]),
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts,
                    pulumi.ResourceOptions(
                        depends_on=[self.gateway_api_crds, self.gateways[by_hostname[source].gateway]]
                    ),
                ),
            )

    def _reserved_ip(self, name: str, args: FrontDoorArgs) -> scaleway.loadbalancers.Ip:
        if args.adopt_ip_id is None:
            return scaleway.loadbalancers.Ip(
                f"{name}-ip",
                zone=args.zone,
                project_id=args.project_id,
                tags=list(args.tags),
                # The address outlives clusters and stacks: DNS and allow-lists elsewhere point at it.
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
            )
        # Adopting (the cutover): `import_` takes the existing IP into this stack's state without
        # changing it. If the declared inputs differ from the live IP, the import fails instead of
        # modifying it, so only the zone is declared and the old IP's tags and reverse DNS are left
        # alone. `Ip.get` would only read it: a read IP is not protected, not retained and not
        # managed, and nothing would stop a later program change from dropping the address.
        # An adopted address is never released by this program, whatever the role.
        # Its own logical name keeps the switch from a reserved to an adopted IP explicit: the
        # reserved one is protected and leaves the state only on purpose (docs/runbooks/cutover.md), never
        # by being swapped for another IP under the same name.
        return scaleway.loadbalancers.Ip(
            f"{name}-ip-adopted",
            zone=args.zone,
            opts=pulumi.ResourceOptions(
                parent=self,
                import_=args.adopt_ip_id,
                protect=True,
                retain_on_delete=True,
                ignore_changes=["tags", "reverse", "projectId"],
            ),
        )


def hostnames_by_kind(
    *,
    app_hostnames: Sequence[str],
    platform_hostnames: Sequence[str],
    extra_app: Sequence[str] = (),
    extra_platform: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """Config hostnames plus those other components serve (apps, Argo CD), each once."""
    apps = list(dict.fromkeys([*app_hostnames, *extra_app]))
    platform = list(dict.fromkeys([*platform_hostnames, *extra_platform]))
    return apps, platform

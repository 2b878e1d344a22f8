"""TLS that nobody renews by hand: cert-manager, the Let's Encrypt ClusterIssuers, optional DNS-01.

* cert-manager (pinned chart, its own CRDs, Gateway API support on) in its own namespace, fenced
  by a default deny and the allows of ``cert_manager_policies``.
* ``letsencrypt-staging`` and ``letsencrypt-production`` ClusterIssuers. Both exist in every
  cluster (staging is there to rehearse without hitting production rate limits); which one the
  platform Gateway's annotation names is the stack's config. HTTP-01 is solved by an HTTPRoute
  that cert-manager attaches to the platform Gateway's HTTP listener.
* Optional DNS-01 through Scaleway DNS: the Scaleway webhook chart, its own least-privileged
  identity (``DomainsDNSFullAccess`` on the one project) and its API key in a Kubernetes Secret
  whose values stay Pulumi secrets. With it, every name of the DNS zone is solved by DNS-01, which
  wildcard names require and which issues certificates before DNS points at the cluster.

Helm: ``helm.v3.Release`` for both charts. cert-manager's ``startupapicheck`` is a Helm hook that
makes the release wait until the API webhook really answers, so the ClusterIssuers that follow are
not rejected by a webhook that is not up yet; ``helm.v4.Chart`` would drop that hook. A Release
also records chart, version and values as inputs, which the offline validators read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import field_validator

from scw_platform import helm, images, kube, labels
from scw_platform.controller_values import (
    replicated_controllers,
    resources,
    restricted_container,
    restricted_pod,
)
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.settings import Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:tls).
# --------------------------------------------------------------------------------------------

_ACME_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
Issuer = Literal["letsencrypt-staging", "letsencrypt-production"]


class TlsSettings(Settings):
    """``platform:tls``: cert-manager and the Let's Encrypt issuer this stack's Gateway uses."""

    acme_email: str
    """Let's Encrypt's contact for expiry and incident notices (a team address, not a person's)."""
    issuer: Issuer = "letsencrypt-production"
    """The ClusterIssuer the Gateway's certificates come from."""
    dns01: bool = False
    """Solve challenges with DNS-01 through Scaleway DNS (needs platform:dns, provider scaleway): required
    for wildcard hostnames, and issues certificates before DNS points at the address.
    """

    @field_validator("acme_email")
    @classmethod
    def _email(cls, email: str) -> str:
        if not _ACME_EMAIL.fullmatch(email) or len(email) > 254:
            raise ValueError(f"must be an email address Let's Encrypt can write to, got {email!r}")
        return email


CERT_MANAGER_REPO = "https://charts.jetstack.io"
CERT_MANAGER_CHART_VERSION = "v1.21.1"
#: The chart's appVersion, pinned explicitly on every image the chart runs.
CERT_MANAGER_IMAGE_TAG = "v1.21.1"
CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_RELEASE = "cert-manager"
#: cert-manager's own service account (the chart's default name for release ``cert-manager``).
CERT_MANAGER_SERVICE_ACCOUNT = "cert-manager"

SCW_WEBHOOK_REPO = "https://helm.scw.cloud/"
SCW_WEBHOOK_CHART = "scaleway-certmanager-webhook"
SCW_WEBHOOK_CHART_VERSION = "0.4.0"
#: The chart's appVersion, pinned explicitly.
SCW_WEBHOOK_IMAGE_TAG = "v0.1.0"
SCW_WEBHOOK_GROUP = "acme.scaleway.com"
SCW_WEBHOOK_SOLVER = "scaleway"
#: The webhook's own namespace (Pod Security restricted, as cert-manager's): its NetworkPolicies
#: (public HTTPS to Scaleway's DNS API) stay apart from cert-manager's. It once held the webhook
#: as root; the name stays so a live stack does not move it.
SCW_WEBHOOK_NAMESPACE = "cert-manager-scaleway"
SCW_WEBHOOK_RELEASE = "scaleway-certmanager-webhook"
#: In cert-manager's namespace: for a ClusterIssuer, solver secrets are read from there.
DNS01_SECRET = "scaleway-dns01-credentials"

#: Container ports of cert-manager's pods, the chart's defaults: the webhook's
#: ``webhook.securePort`` (deploy/charts/cert-manager/values.yaml, 10250) and the controller's
#: Prometheus endpoint (``prometheus`` section there, 9402, labels.CERT_MANAGER_METRICS_PORT).
CERT_MANAGER_WEBHOOK_PORT = 10250
#: The HTTP-01 solver pods cert-manager starts next to the Certificate, so in the Gateway's
#: namespace: they carry this label and listen on 8089 (pkg/apis/acme/v1/types.go
#: ``acme.cert-manager.io/http01-solver``; pkg/issuer/acme/http/http.go ``acmeSolverListenPort``).
ACME_SOLVER_POD_LABELS: Mapping[str, str] = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089
#: The Scaleway webhook's serving port: ``containerPort: 443``, fixed in the chart
#: (scaleway/helm-charts charts/scaleway-certmanager-webhook/templates/deployment.yaml at chart
#: 0.4.0: no value moves it and there is no extraArgs to pass ``--secure-port``), so a non-root
#: webhook needs the port below 1024 opened to it (scaleway_webhook_values).
SCW_WEBHOOK_PORT = 443
#: The webhook's numeric user: its image is FROM scratch with no USER (scaleway/
#: cert-manager-webhook-scaleway Dockerfile), so it would run as root, and runAsNonRoot needs a
#: number. 65532 is the conventional "nonroot" id; the binary and the mounted serving certificate
#: are world-readable, and given its certificate files it should write nothing (not verified in a
#: cluster: docs/charts.md).
SCW_WEBHOOK_USER = 65532
#: Port 80 of the front door: the controller's HTTP-01 self-check fetches the challenge from the
#: hostname before telling the ACME server to (pkg/issuer/acme/http/http.go, ``testReachability``).
HTTP_PORT = 80
#: DNS-01: the controller checks the TXT record's propagation by asking the zone's authoritative
#: nameservers directly (its ``--dns01-recursive-nameservers-only`` default is false).
DNS_PORT = 53

ACME_SERVERS: Mapping[str, str] = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt-production": "https://acme-v02.api.letsencrypt.org/directory",
}


@dataclass(frozen=True, kw_only=True)
class GatewayRef:
    """The Gateway (and its listener) that serves HTTP-01 challenges."""

    name: str
    namespace: str
    section_name: str
    #: The labels of the Gateway's pods and the container port of its HTTP listener: a self-check
    #: of a challenge may reach them directly (the CNI hands the load balancer's address to the
    #: pods), and the solver pods in ``namespace`` admit them.
    pods: Mapping[str, str]
    http_port: int


@dataclass(frozen=True, kw_only=True)
class Dns01Args:
    #: The Scaleway DNS zone whose names are solved by DNS-01.
    zone: str
    project_id: pulumi.Input[str]
    #: Labels of the webhook's namespace (Pod Security, see SCW_WEBHOOK_NAMESPACE).
    namespace_labels: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class CertManagerArgs:
    provider: k8s.Provider
    acme_email: str
    gateway: GatewayRef
    #: Labels of cert-manager's namespace (Pod Security, platform namespace marker).
    namespace_labels: Mapping[str, str]
    #: Gateway API CRDs: cert-manager watches Gateways only if their CRDs exist when it starts,
    #: and the issuers' HTTP-01 solver creates HTTPRoutes.
    gateway_api_crds: pulumi.Resource
    #: Two replicas of each controller plus PodDisruptionBudgets.
    ha: bool
    dns01: Dns01Args | None = None
    tags: Sequence[str] = field(default_factory=tuple)


def cert_manager_pods(component: str) -> dict[str, str]:
    """The labels of one cert-manager deployment's pods (``controller``, ``webhook``, ``cainjector``):
    the chart puts ``app.kubernetes.io/instance: <release>`` and ``app.kubernetes.io/component`` on
    each (deploy/charts/cert-manager/templates/webhook-deployment.yaml and its siblings; the
    values schema's own topologySpreadConstraints example selects by the same two). The chart
    renders ``topologySpreadConstraints`` verbatim: without a selector a constraint selects nothing.
    """
    return {"app.kubernetes.io/instance": CERT_MANAGER_RELEASE, "app.kubernetes.io/component": component}


def cert_manager_values(*, ha: bool) -> dict[str, object]:
    """Values for the cert-manager chart (checked offline against its values.schema.json). Every
    image keeps its tag and gains its digest (:func:`images.pin_chart`): with both set the chart
    renders ``image:tag@digest``."""
    return images.pin_chart("cert-manager", _cert_manager_values(ha=ha))


def _cert_manager_values(*, ha: bool) -> dict[str, object]:
    image = {"tag": CERT_MANAGER_IMAGE_TAG}
    return {
        "crds": {"enabled": True, "keep": True},
        **replicated_controllers(
            CERT_MANAGER_IMAGE_TAG,
            ha=ha,
            pods=cert_manager_pods("controller"),
            helpers={helper: cert_manager_pods(helper) for helper in ("webhook", "cainjector")},
        ),
        # The post-install hook Job: sized like every other pod, so it fits a namespace quota and
        # an OOM stays its own (the chart sets no resources: values.schema.json, default {}).
        "startupapicheck": {"image": image, "resources": resources("small")},
        # The controller's liveness probe (the chart's clock-skew check, on by default) stated so
        # a chart default change cannot drop it silently; the webhook's liveness and readiness
        # probes are rendered unconditionally. The cainjector has no probe value at v1.21.1
        # (docs/charts.md).
        "livenessProbe": {"enabled": True},
        "acmesolver": {"image": image},
        # Leases in cert-manager's own namespace rather than kube-system.
        "global": {"leaderElection": {"namespace": CERT_MANAGER_NAMESPACE}},
        # A certificate's Secret goes with it when a hostname leaves the Gateway.
        "enableCertificateOwnerRef": True,
        "config": {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            # gateway-shim: certificates for the Gateway's annotated HTTPS listeners.
            "gatewayAPI": {"enabled": True},
        },
        # certmanager_certificate_expiration_timestamp_seconds feeds the expiry alert.
        "prometheus": {"enabled": True},
        "serviceAnnotations": labels.scrape(labels.CERT_MANAGER_METRICS_PORT),
    }


def scaleway_webhook_values() -> dict[str, Any]:
    """Values of the scaleway-certmanager-webhook chart (0.4.0, no values schema upstream).

    The chart's names are swapped (scaleway/helm-charts charts/scaleway-certmanager-webhook/
    templates/deployment.yaml at 0.4.0): ``podSecurityContext`` is rendered as the *container's*
    securityContext and ``securityContext`` as the *pod's*. Both are set: non-root, no privilege
    escalation, no capabilities, read-only root filesystem, default seccomp. The fixed port 443
    is opened to the non-root process by the namespaced sysctl
    ``net.ipv4.ip_unprivileged_port_start``, which Kubernetes counts as safe (allowed by default,
    https://kubernetes.io/docs/tasks/administer-cluster/sysctl-cluster/) and Pod Security
    baseline and restricted accept
    (https://kubernetes.io/docs/concepts/security/pod-security-standards/, "Sysctls").
    The chart's probes (liveness and readiness, /healthz over HTTPS) are rendered
    unconditionally. The image's digest is a gap in images.yaml today; :func:`images.pin_chart`
    adds it once recorded.
    """
    return images.pin_chart(SCW_WEBHOOK_CHART, _scaleway_webhook_values())


def _scaleway_webhook_values() -> dict[str, Any]:
    return {
        "groupName": SCW_WEBHOOK_GROUP,
        "certManager": {
            "namespace": CERT_MANAGER_NAMESPACE,
            "serviceAccountName": CERT_MANAGER_SERVICE_ACCOUNT,
        },
        "image": {"tag": SCW_WEBHOOK_IMAGE_TAG},
        "resources": resources("small"),
        # The pod's context (see the docstring for the chart's naming).
        "securityContext": {
            **restricted_pod(user=SCW_WEBHOOK_USER),
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": str(SCW_WEBHOOK_PORT)}],
        },
        # The container's context.
        "podSecurityContext": restricted_container(user=SCW_WEBHOOK_USER),
        # No secret.accessKey/secretKey here: Helm values land in the release's own Secret and in
        # state; the key lives only in DNS01_SECRET, referenced by the issuers.
    }


def cert_manager_policies(gateway: GatewayRef, *, dns01: bool) -> dict[str, Any]:
    """The allows of cert-manager's namespace on top of its default deny (policy name -> spec).

    * Every pod (controller, webhook, cainjector, the startupapicheck hook): DNS and the API server.
    * The controller: the ACME server (public HTTPS), the HTTP-01 self-check (the hostnames' public
      address on 80, or the Gateway's pods on their HTTP port when the CNI short-circuits the load
      balancer), with DNS-01 the zone's authoritative nameservers on 53; scraped on 9402 from the
      monitoring namespace. DNS-01 records are written by the Scaleway webhook, which the
      controller calls through the API server, not directly.
    * The webhook: the API server calls it on its securePort (ports only, see
      kube.webhook_ingress_rule).
    """
    controller: list[dict[str, Any]] = [
        kube.public_https_egress_rule(),
        kube.public_egress_rule(kube.tcp(HTTP_PORT)),
        {
            "to": [
                {
                    "namespaceSelector": kube.namespace_selector(gateway.namespace),
                    "podSelector": {"matchLabels": dict(gateway.pods)},
                }
            ],
            "ports": kube.tcp(gateway.http_port),
        },
    ]
    if dns01:
        controller.append(
            kube.public_egress_rule([{"protocol": "UDP", "port": DNS_PORT}, *kube.tcp(DNS_PORT)])
        )
    return {
        "cert-manager-api": kube.policy_spec(egress=[kube.dns_egress_rule(), kube.api_server_egress_rule()]),
        "cert-manager-controller": kube.policy_spec(
            cert_manager_pods("controller"),
            ingress=[
                kube.from_namespace_rule(
                    kube.MONITORING_NAMESPACE, kube.tcp(labels.CERT_MANAGER_METRICS_PORT)
                )
            ],
            egress=controller,
        ),
        "cert-manager-webhook": kube.policy_spec(
            cert_manager_pods("webhook"), ingress=[kube.webhook_ingress_rule(CERT_MANAGER_WEBHOOK_PORT)]
        ),
    }


def acme_solver_policy(gateway: GatewayRef) -> Any:
    """In the Gateway's namespace: the HTTP-01 solver pods take the challenge requests the Gateway's
    pods forward to them, on the solver's port, and nothing else (their egress stays denied)."""
    return kube.policy_spec(
        ACME_SOLVER_POD_LABELS,
        ingress=[
            {
                "from": [{"podSelector": {"matchLabels": dict(gateway.pods)}}],
                "ports": kube.tcp(ACME_SOLVER_PORT),
            }
        ],
    )


def scaleway_webhook_policies() -> dict[str, Any]:
    """The Scaleway DNS-01 webhook's namespace: the API server calls it on its serving port (it is
    an aggregated API cert-manager reaches through the API server); it reads the solver's Secret
    through the API and writes the TXT records through Scaleway's DNS API (api.scaleway.com,
    public HTTPS)."""
    return {
        "scaleway-webhook": kube.policy_spec(
            ingress=[kube.webhook_ingress_rule(SCW_WEBHOOK_PORT)],
            egress=[kube.dns_egress_rule(), kube.api_server_egress_rule(), kube.public_https_egress_rule()],
        )
    }


def cluster_issuer_spec(
    issuer: str, *, acme_email: str, gateway: GatewayRef, dns01_zone: str | None
) -> dict[str, object]:
    solvers: list[dict[str, object]] = [
        {
            "http01": {
                "gatewayHTTPRoute": {
                    "parentRefs": [
                        {
                            "group": "gateway.networking.k8s.io",
                            "kind": "Gateway",
                            "name": gateway.name,
                            "namespace": gateway.namespace,
                            "sectionName": gateway.section_name,
                        }
                    ]
                }
            }
        }
    ]
    if dns01_zone is not None:
        # A selector wins over the selector-less HTTP-01 solver for every name in the zone.
        secret_ref = {"name": DNS01_SECRET}
        solvers.append(
            {
                "selector": {"dnsZones": [dns01_zone]},
                "dns01": {
                    "webhook": {
                        "groupName": SCW_WEBHOOK_GROUP,
                        "solverName": SCW_WEBHOOK_SOLVER,
                        "config": {
                            "accessKeySecretRef": {**secret_ref, "key": "SCW_ACCESS_KEY"},
                            "secretKeySecretRef": {**secret_ref, "key": "SCW_SECRET_KEY"},
                        },
                    }
                },
            }
        )
    return {
        "acme": {
            "server": ACME_SERVERS[issuer],
            "email": acme_email,
            "privateKeySecretRef": {"name": f"{issuer}-account-key"},
            "solvers": solvers,
        }
    }


class CertManager(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    #: ClusterIssuer name -> resource (letsencrypt-staging, letsencrypt-production).
    issuers: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:tls:CertManager", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": CERT_MANAGER_NAMESPACE, "labels": dict(args.namespace_labels)},
            opts=k8s_opts,
        )
        policies = kube.namespace_policies(
            name,
            namespace=CERT_MANAGER_NAMESPACE,
            allows=cert_manager_policies(args.gateway, dns01=args.dns01 is not None),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        self.release = helm.release(
            f"{name}-cert-manager",
            release_name=CERT_MANAGER_RELEASE,
            chart=helm.Chart("cert-manager", CERT_MANAGER_CHART_VERSION, CERT_MANAGER_REPO),
            namespace=namespace.metadata.name,
            values=cert_manager_values(ha=args.ha),
            timeout=600,
            # cert-manager must find the Gateway API CRDs when it starts, or it never watches Gateways;
            # and its paths must be open, or the startupapicheck hook never reaches the API.
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[args.gateway_api_crds, namespace, *policies])
            ),
        )
        before_issuers: list[pulumi.Resource] = [args.gateway_api_crds, self.release]

        if args.dns01 is not None:
            before_issuers.extend(self._dns01(name, args, args.dns01, k8s_opts))

        self.issuers = {
            issuer: k8s.apiextensions.CustomResource(
                f"{name}-issuer-{issuer}",
                api_version="cert-manager.io/v1",
                kind="ClusterIssuer",
                metadata={"name": issuer},
                spec=cluster_issuer_spec(
                    issuer,
                    acme_email=args.acme_email,
                    gateway=args.gateway,
                    dns01_zone=args.dns01.zone if args.dns01 else None,
                ),
                # cert-manager's webhook validates ClusterIssuers: it must be up (startupapicheck)
                # and the HTTPRoute kind the solver creates must exist.
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=before_issuers)
                ),
            )
            for issuer in ACME_SERVERS
        }
        self.register_outputs({"issuers": sorted(self.issuers)})

    def _dns01(
        self, name: str, args: CertManagerArgs, dns01: Dns01Args, k8s_opts: pulumi.ResourceOptions
    ) -> list[pulumi.Resource]:
        """DNS-01 through Scaleway DNS: the solver's credentials, the Scaleway webhook and its grant
        to read them; returns what the issuers must wait for."""
        credentials = self._dns01_credentials(name, args, dns01, k8s_opts)
        webhook = self._dns01_webhook(name, dns01, k8s_opts)
        binding = self._dns01_secret_reader(name, k8s_opts)
        # Issuers depend on all of it: a DNS-01 challenge needs the webhook, the key and the grant.
        return [webhook, credentials, binding]

    def _dns01_credentials(
        self, name: str, args: CertManagerArgs, dns01: Dns01Args, k8s_opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Secret:
        """The solver's own identity (DNS only, one project) and the Secret in cert-manager's
        namespace that holds its API key, which the ClusterIssuers reference."""
        identity = ScopedIdentity(
            f"{name}-dns01",
            ScopedIdentityArgs(
                description="cert-manager DNS-01: writes ACME challenge TXT records in Scaleway DNS",
                project_id=dns01.project_id,
                permission_sets=["DomainsDNSFullAccess"],
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return k8s.core.v1.Secret(
            f"{name}-dns01-credentials",
            metadata={"name": DNS01_SECRET, "namespace": CERT_MANAGER_NAMESPACE},
            type="Opaque",
            string_data=identity.key_data(),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.release])),
        )

    def _dns01_webhook(
        self, name: str, dns01: Dns01Args, k8s_opts: pulumi.ResourceOptions
    ) -> k8s.helm.v3.Release:
        """The Scaleway webhook's namespace (see SCW_WEBHOOK_NAMESPACE) and its release."""
        namespace = k8s.core.v1.Namespace(
            f"{name}-dns01-namespace",
            metadata={"name": SCW_WEBHOOK_NAMESPACE, "labels": dict(dns01.namespace_labels)},
            opts=k8s_opts,
        )
        policies = kube.namespace_policies(
            f"{name}-dns01",
            namespace=SCW_WEBHOOK_NAMESPACE,
            allows=scaleway_webhook_policies(),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        return helm.release(
            f"{name}-dns01-webhook",
            release_name=SCW_WEBHOOK_RELEASE,
            chart=helm.Chart(SCW_WEBHOOK_CHART, SCW_WEBHOOK_CHART_VERSION, SCW_WEBHOOK_REPO),
            namespace=namespace.metadata.name,
            values=scaleway_webhook_values(),
            # The chart issues its serving certificate through cert-manager (Issuer, Certificate).
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.release, namespace, *policies])
            ),
        )

    def _dns01_secret_reader(self, name: str, k8s_opts: pulumi.ResourceOptions) -> k8s.rbac.v1.RoleBinding:
        """The webhook's grant in cert-manager's namespace; returns the binding the issuers wait for."""
        # The webhook reads the solver's secret from cert-manager's namespace: that one secret, read only.
        role = k8s.rbac.v1.Role(
            f"{name}-dns01-secret-reader",
            metadata={"name": "scaleway-dns01-secret-reader", "namespace": CERT_MANAGER_NAMESPACE},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["secrets"], resource_names=[DNS01_SECRET], verbs=["get"]
                )
            ],
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.release])),
        )
        return k8s.rbac.v1.RoleBinding(
            f"{name}-dns01-secret-reader",
            metadata={"name": "scaleway-dns01-secret-reader", "namespace": CERT_MANAGER_NAMESPACE},
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount", name=SCW_WEBHOOK_RELEASE, namespace=SCW_WEBHOOK_NAMESPACE
                )
            ],
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.release])),
        )

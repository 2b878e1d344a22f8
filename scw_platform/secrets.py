"""Secrets from a vault, never from Git or images: External Secrets Operator and its stores.

One ``SecretsOperator`` per cluster (tooling, production, development when it has a cluster):

* External Secrets Operator (pinned chart and images) in its own namespace, Pod Security
  ``restricted`` enforced;
* ``platform-scaleway``: a ClusterSecretStore on Scaleway Secret Manager, read through a
  ``ScopedIdentity`` of its own whose policy grants ``SecretManagerReadOnly`` (listing, which
  ``path:`` references need) and ``SecretManagerSecretAccess`` (reading values) on the one
  project, nothing else. Its API key sits in a Kubernetes Secret whose values stay Pulumi secrets.
  This store exists with every backend: the program itself writes platform-owned entries (an
  app's database credentials) into Scaleway Secret Manager, so there is one path for every secret;
* ``platform-onepassword`` (backend ``onepassword`` only): a ClusterSecretStore on 1Password's
  SDK provider, authenticated by a service-account token set with
  ``pulumi config set --secret platform:onepasswordServiceAccountToken``.

``app_store`` names the store apps' own keys come from (the configured backend's).

Both stores admit only namespaces the platform labelled (app namespaces and its own): a namespace
someone creates by hand cannot read the vault through them. The platform also owns every
ExternalSecret (Argo CD may not create one, see ``gitops.ENVELOPE_KINDS``), so an app cannot ask
the store for another app's folder.

Helm: ``helm.v3.Release`` (not ``helm.v4.Chart``): one atomic release whose CRDs and webhook are
up before the stores that follow are applied; chart, version and values are recorded as inputs,
which the offline validators check against the chart's ``values.schema.json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from scw_platform import helm, images, kube, labels
from scw_platform.controller_values import replicated_controllers
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.settings import Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:secrets).
# --------------------------------------------------------------------------------------------


class OnePasswordSettings(Settings):
    """``platform:secrets.onepassword``: the vault the service account reads."""

    vault: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*$", max_length=100)]
    """Vault name or UUID (without op://)."""


#: A Scaleway Secret Manager folder (``/prod/website``) or a 1Password item title (``prod-website``).
SCALEWAY_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
ONEPASSWORD_ITEM = re.compile(r"^[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*$")
SecretsBackend = Literal["scaleway", "onepassword"]
_SECRETS_BACKENDS: tuple[str, ...] = get_args(SecretsBackend)


class VaultSettings(Settings):
    """``platform:secrets``: where app secrets live; External Secrets Operator syncs them."""

    backend: SecretsBackend = "scaleway"
    """scaleway (Scaleway Secret Manager, the default) or onepassword (a 1Password service account)."""
    onepassword: OnePasswordSettings | None = Field(default=None, validate_default=True)
    """The 1Password vault; required with backend onepassword, refused otherwise."""
    refresh_interval: Annotated[str, StringConstraints(pattern=r"^\d+[smh]$")] = "15m"
    """How often External Secrets re-reads the vault."""

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, backend: Any) -> Any:
        if backend not in _SECRETS_BACKENDS:
            raise ValueError(f"unknown secrets backend {backend!r} (one of: {', '.join(_SECRETS_BACKENDS)})")
        return backend

    @field_validator("onepassword")
    @classmethod
    def _settings_for_backend(
        cls, settings: OnePasswordSettings | None, info: ValidationInfo
    ) -> OnePasswordSettings | None:
        backend = info.data.get("backend")
        if backend == "onepassword" and settings is None:
            raise ValueError("required with backend onepassword, e.g. {vault: platform-prod}")
        if backend == "scaleway" and settings is not None:
            raise ValueError("only allowed with backend onepassword")
        return settings


EXTERNAL_SECRETS_REPO = "https://charts.external-secrets.io"
EXTERNAL_SECRETS_CHART_VERSION = "2.9.0"
#: The chart's appVersion, pinned explicitly on each of the chart's images.
EXTERNAL_SECRETS_IMAGE_TAG = "v2.9.0"
EXTERNAL_SECRETS_NAMESPACE = "external-secrets"
EXTERNAL_SECRETS_RELEASE = "external-secrets"

SCALEWAY_STORE = "platform-scaleway"
ONEPASSWORD_STORE = "platform-onepassword"
SCALEWAY_CREDENTIALS_SECRET = "scaleway-secret-manager"
ONEPASSWORD_TOKEN_SECRET = "onepassword-service-account"
STORE_NAMES = {"scaleway": SCALEWAY_STORE, "onepassword": ONEPASSWORD_STORE}

#: Read-only on the one project: list and read metadata (``path:`` lookups list secrets first),
#: and read values. Never write: the program writes platform entries with its own credentials.
SCALEWAY_PERMISSION_SETS = ("SecretManagerReadOnly", "SecretManagerSecretAccess")
SCALEWAY_API_URL = "https://api.scaleway.com"
#: The webhook's container port, the chart's ``webhook.port`` default
#: (deploy/charts/external-secrets/values.yaml); the controller's metrics listen on
#: ``metrics.listen.port`` (8080 there, labels.EXTERNAL_SECRETS_METRICS_PORT).
WEBHOOK_PORT = 10250
#: The controller's health endpoint (``--live-addr``: /healthz and /readyz), set explicitly as
#: ``livenessProbe.spec.port`` (a key of the chart's 2.9.0 values schema). 8082 is the port the
#: controller's health endpoint is run on in the manifests read (its 2.9.0 values.yaml itself is
#: not in the stored corpus). Kubelet probes come from the pod's own node, which NetworkPolicies
#: always admit.
CONTROLLER_HEALTH_PORT = 8082


@dataclass(frozen=True, kw_only=True)
class OnePasswordStore:
    vault: str
    #: Secret: the service-account token.
    token: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class SecretsOperatorArgs:
    provider: k8s.Provider
    #: Names the store identity (one per cluster).
    environment: str
    region: str
    project_id: pulumi.Input[str]
    #: ``scaleway`` or ``onepassword``: where apps' own keys come from.
    backend: str
    onepassword: OnePasswordStore | None = None
    #: Two replicas of each controller plus PodDisruptionBudgets.
    ha: bool = False
    #: Labels of the operator's namespace (Pod Security, platform namespace marker).
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    #: Namespace labels that admit a namespace to the stores (any one of them).
    allowed_namespace_labels: Sequence[str] = ()
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.backend not in STORE_NAMES:
            raise ValueError(f"unknown secrets backend {self.backend!r} (one of: {', '.join(STORE_NAMES)})")
        if self.backend == "onepassword" and self.onepassword is None:
            raise ValueError("backend onepassword needs the onepassword store settings")


def operator_pods(suffix: str = "") -> dict[str, str]:
    """The labels of one external-secrets deployment's pods: the chart's selector labels,
    ``app.kubernetes.io/name: external-secrets`` (``-webhook``, ``-cert-controller`` for the helpers)
    and ``app.kubernetes.io/instance: <release>`` (deploy/charts/external-secrets/templates/
    _helpers.tpl, ``external-secrets*.selectorLabels``). Named explicitly: the chart renders
    ``topologySpreadConstraints`` as given (cert-controller-deployment.yaml, toYaml)."""
    return {
        "app.kubernetes.io/name": f"external-secrets{suffix}",
        "app.kubernetes.io/instance": EXTERNAL_SECRETS_RELEASE,
    }


#: The chart's keys of the two helper deployments -> their pods' name suffix.
OPERATOR_HELPERS: Mapping[str, str] = {"webhook": "-webhook", "certController": "-cert-controller"}


def operator_values(*, ha: bool) -> dict[str, Any]:
    """Helm values for the external-secrets chart (checked offline against its values schema); the
    three image blocks pinned by tag and digest (:func:`images.pin_chart`)."""
    return images.pin_chart("external-secrets", _operator_values(ha=ha))


def _operator_values(*, ha: bool) -> dict[str, Any]:
    controllers = replicated_controllers(
        EXTERNAL_SECRETS_IMAGE_TAG,
        ha=ha,
        pods=operator_pods(),
        helpers={helper: operator_pods(suffix) for helper, suffix in OPERATOR_HELPERS.items()},
    )
    for key, probes in operator_probes().items():
        # Helper entries gain their probe switches; the controller's probes are top-level keys.
        controllers[key] = {**controllers[key], **probes} if key in OPERATOR_HELPERS else probes
    return {
        "installCRDs": True,
        **controllers,
        "leaderElect": ha,
        # Only cluster stores, all created by the program: a namespace cannot bring its own store
        # (and its own credentials) to bypass the platform's.
        "processSecretStore": False,
        "processClusterStore": True,
        "processPushSecret": False,
        "processClusterPushSecret": False,
        "processClusterExternalSecret": False,
        "serviceMonitor": {"enabled": False},
        # externalsecret_status_condition feeds the "not synced" alert (the parity gate's signal).
        "metrics": {
            "service": {
                "enabled": True,
                "port": labels.EXTERNAL_SECRETS_METRICS_PORT,
                "annotations": labels.scrape(labels.EXTERNAL_SECRETS_METRICS_PORT),
            }
        },
    }


def operator_probes() -> dict[str, Any]:
    """Liveness and readiness probes on all three deployments.

    The chart (2.9.0) leaves the controller's off by default (``livenessProbe.enabled`` and
    ``readinessProbe.enabled``; on, it renders each probe from its ``spec``): without them a
    controller whose informers are stuck stays Running, and a rollout is "ready" before it
    reconciles. The webhook's and the cert controller's are switched on explicitly so a
    chart default cannot drop them. Paths and ports follow the chart's own spec layout (values
    schema: ``livenessProbe.spec.{port,httpGet}``, ``readinessProbe.spec.httpGet``)."""
    health = {"path": "/healthz", "port": CONTROLLER_HEALTH_PORT}
    ready = {"path": "/readyz", "port": CONTROLLER_HEALTH_PORT}
    return {
        "livenessProbe": {"enabled": True, "spec": {"port": CONTROLLER_HEALTH_PORT, "httpGet": health}},
        "readinessProbe": {"enabled": True, "spec": {"httpGet": ready}},
        **{
            helper: {"livenessProbe": {"enabled": True}, "readinessProbe": {"enabled": True}}
            for helper in OPERATOR_HELPERS
        },
    }


def operator_policies() -> dict[str, Any]:
    """The allows of the operator's namespace on top of its default deny (policy name -> spec).

    * Every pod (controller, webhook, cert-controller): DNS and the API server (the controller
      writes Secrets, the cert-controller rotates the webhook's certificate and patches the
      webhook configurations with its CA).
    * The controller: the vault over public HTTPS (Scaleway Secret Manager at api.scaleway.com,
      or 1Password's API), scraped on its metrics port from the monitoring namespace.
    * The webhook: the API server calls it on its port (ports only, see kube.webhook_ingress_rule).
    """
    return {
        "external-secrets-api": kube.policy_spec(
            egress=[kube.dns_egress_rule(), kube.api_server_egress_rule()]
        ),
        "external-secrets-controller": kube.policy_spec(
            operator_pods(),
            ingress=[
                kube.from_namespace_rule(
                    kube.MONITORING_NAMESPACE, kube.tcp(labels.EXTERNAL_SECRETS_METRICS_PORT)
                )
            ],
            egress=[kube.public_https_egress_rule()],
        ),
        "external-secrets-webhook": kube.policy_spec(
            operator_pods("-webhook"), ingress=[kube.webhook_ingress_rule(WEBHOOK_PORT)]
        ),
    }


def namespace_conditions(label_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Store conditions admitting namespaces that carry any one of ``label_keys`` set to "true"."""
    return [{"namespaceSelector": {"matchLabels": {key: "true"}}} for key in label_keys]


def scaleway_store_spec(
    *, region: str, project_id: pulumi.Input[str], allowed_namespace_labels: Sequence[str]
) -> dict[str, Any]:
    secret_ref = {"name": SCALEWAY_CREDENTIALS_SECRET, "namespace": EXTERNAL_SECRETS_NAMESPACE}
    spec: dict[str, object] = {
        "provider": {
            "scaleway": {
                "region": region,
                "projectId": project_id,
                "apiUrl": SCALEWAY_API_URL,
                "accessKey": {"secretRef": {**secret_ref, "key": "access-key"}},
                "secretKey": {"secretRef": {**secret_ref, "key": "secret-key"}},
            }
        }
    }
    if allowed_namespace_labels:
        spec["conditions"] = namespace_conditions(allowed_namespace_labels)
    return spec


def onepassword_store_spec(*, vault: str, allowed_namespace_labels: Sequence[str]) -> dict[str, Any]:
    spec: dict[str, object] = {
        "provider": {
            "onepasswordSDK": {
                "vault": vault,
                "auth": {
                    "serviceAccountSecretRef": {
                        "name": ONEPASSWORD_TOKEN_SECRET,
                        "namespace": EXTERNAL_SECRETS_NAMESPACE,
                        "key": "token",
                    }
                },
            }
        }
    }
    if allowed_namespace_labels:
        spec["conditions"] = namespace_conditions(allowed_namespace_labels)
    return spec


class SecretsOperator(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    #: The store platform-owned entries (database credentials) are read from.
    platform_store: str
    #: The store apps' own keys are read from (the configured backend's).
    app_store: str
    backend: str
    #: Store name -> resource; ExternalSecrets depend on these.
    stores: dict[str, k8s.apiextensions.CustomResource]
    identity: ScopedIdentity

    def __init__(
        self, name: str, args: SecretsOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:secrets:SecretsOperator", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": EXTERNAL_SECRETS_NAMESPACE, "labels": dict(args.namespace_labels)},
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        policies = kube.namespace_policies(
            name, namespace=EXTERNAL_SECRETS_NAMESPACE, allows=operator_policies(), opts=in_namespace
        )
        self.release = helm.release(
            f"{name}-operator",
            release_name=EXTERNAL_SECRETS_RELEASE,
            chart=helm.Chart("external-secrets", EXTERNAL_SECRETS_CHART_VERSION, EXTERNAL_SECRETS_REPO),
            namespace=namespace.metadata.name,
            values=operator_values(ha=args.ha),
            timeout=600,
            # Its paths open first: the atomic release waits for a webhook the API server can reach.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=policies)),
        )

        self.identity, credentials = self._scaleway_credentials(name, args, in_namespace)
        # The stores are validated by the operator's webhook: it must be up (the release waits
        # for it), and the credentials they name must exist.
        self.stores = {
            SCALEWAY_STORE: self._cluster_store(
                f"{name}-store-scaleway",
                SCALEWAY_STORE,
                scaleway_store_spec(
                    region=args.region,
                    project_id=args.project_id,
                    allowed_namespace_labels=args.allowed_namespace_labels,
                ),
                credentials,
                k8s_opts,
            )
        }
        if args.backend == "onepassword":
            assert args.onepassword is not None
            self.stores[ONEPASSWORD_STORE] = self._onepassword_store(
                name, args, args.onepassword, k8s_opts, in_namespace
            )

        self.backend = args.backend
        self.platform_store = SCALEWAY_STORE
        self.app_store = STORE_NAMES[args.backend]
        self.register_outputs(
            {
                "namespace": EXTERNAL_SECRETS_NAMESPACE,
                "appStore": self.app_store,
                "stores": sorted(self.stores),
            }
        )

    def _scaleway_credentials(
        self, name: str, args: SecretsOperatorArgs, in_namespace: pulumi.ResourceOptions
    ) -> tuple[ScopedIdentity, k8s.core.v1.Secret]:
        """The Scaleway store's own read-only identity and the Secret holding its API key. A step of
        its own because the store exists with every backend (platform entries are always read
        from Scaleway Secret Manager) and must wait for this Secret."""
        identity = ScopedIdentity(
            f"{name}-scaleway",
            ScopedIdentityArgs(
                description=f"External Secrets in {args.environment}: reads Scaleway Secret Manager",
                project_id=args.project_id,
                permission_sets=list(SCALEWAY_PERMISSION_SETS),
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        credentials = k8s.core.v1.Secret(
            f"{name}-scaleway-credentials",
            metadata={"name": SCALEWAY_CREDENTIALS_SECRET, "namespace": EXTERNAL_SECRETS_NAMESPACE},
            type="Opaque",
            string_data=identity.key_data("access-key", "secret-key"),
            opts=in_namespace,
        )
        return identity, credentials

    def _onepassword_store(
        self,
        name: str,
        args: SecretsOperatorArgs,
        onepassword: OnePasswordStore,
        k8s_opts: pulumi.ResourceOptions,
        in_namespace: pulumi.ResourceOptions,
    ) -> k8s.apiextensions.CustomResource:
        """Backend ``onepassword`` only: the service-account token's Secret and the 1Password store
        that reads through it (apps' own keys come from there)."""
        token = k8s.core.v1.Secret(
            f"{name}-onepassword-token",
            metadata={"name": ONEPASSWORD_TOKEN_SECRET, "namespace": EXTERNAL_SECRETS_NAMESPACE},
            type="Opaque",
            string_data={"token": pulumi.Output.secret(onepassword.token)},
            opts=in_namespace,
        )
        return self._cluster_store(
            f"{name}-store-onepassword",
            ONEPASSWORD_STORE,
            onepassword_store_spec(
                vault=onepassword.vault, allowed_namespace_labels=args.allowed_namespace_labels
            ),
            token,
            k8s_opts,
        )

    def _cluster_store(
        self,
        resource_name: str,
        store: str,
        spec: dict[str, Any],
        credential: k8s.core.v1.Secret,
        k8s_opts: pulumi.ResourceOptions,
    ) -> k8s.apiextensions.CustomResource:
        """One ClusterSecretStore, after the operator's release (its webhook validates stores) and
        the Secret holding the credential the store names. Shared by both backends' stores."""
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version="external-secrets.io/v1",
            kind="ClusterSecretStore",
            metadata={"name": store},
            spec=spec,
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.release, credential])
            ),
        )

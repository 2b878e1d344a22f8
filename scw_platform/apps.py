"""One template for every app: the envelope the platform owns, from a few lines of stack config.

Per app (``platform:apps`` in the stack file), in the workload cluster:

* a namespace named after the app, labelled as an app namespace (the platform Gateway admits its
  routes; Argo CD's registration covers it) with Pod Security ``restricted`` enforced, audited and
  warned; a ResourceQuota sized from the app's replicas and resources (no LoadBalancer or NodePort
  Service: the front door is the only way in) and a LimitRange with the app's defaults;
* NetworkPolicies: one denies all ingress and egress; one allows ingress from the Traefik namespace
  on the app's port only, egress to cluster DNS, to the database's private address (a /32) on 5432
  when the app has a database, and to the destinations the stack lists, nothing else;
* an ``ExternalSecret`` mapping **each** declared key explicitly (no ``dataFrom``): a key missing in
  the vault fails the sync, naming it, instead of leaving the variable silently unset. When the app
  has a database, the program writes its credentials into Scaleway Secret Manager (one secret, one
  version, data a Pulumi secret) and the same ExternalSecret maps them as ``DATABASE_*`` keys;
* the image pull secret for the private registry, set on the namespace's default service account
  (whose token is no longer mounted by default);
* an ``HTTPRoute`` on the platform Gateway for the app's hostname (the Gateway's HTTPS listener and
  certificate for it come from the front door, fed with the same hostnames);
* its delivery record (:attr:`App.delivery`, a ``scw_platform.contract.RegisteredApp``), which the
  stack exports in its registration: the tooling stack declares the app's Argo CD ``Application``
  from it (project = environment, destination = the environment's cluster and the app's namespace,
  source = the app's GitOps path). This stack declares nothing in tooling.

The contract with the app's GitOps path: a Service named after the app exposing ``port`` (the route's
backend), pods reading their environment from the Secret ``<app>-env`` (``envFrom``), and the
parity gate's PreSync hook (``python -m offline.parity <stack> --render-hooks <checkout>``)
committed next to them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from scw_platform import images, kube, labels
from scw_platform.contract import IMAGE_PATTERN, RegisteredApp
from scw_platform.delivery import CanaryArgs, DeliverySettings, MetricsBackend, canary_allowed, declare_canary
from scw_platform.settings import Hostname, PgIdentifier, Settings, no_duplicates, strict_cidr
from scw_platform.slo import SloSettings
from scw_platform.workload_admission import WorkloadAdmissionSettings

#: The images of the hooks the platform renders into every app's GitOps path: the parity gate's
#: (offline/parity.py; ``--gate-image`` overrides it) and the migration's grants step's, the
#: PostgreSQL client (offline/migrations.py). Pinned by digest, tag kept, from
#: scw_platform/data/images.yaml (which records where each digest was read). The workload
#: admission admits exactly these references from outside the platform registry.
GATE_IMAGE = images.ref("busybox")
PSQL_IMAGE = images.ref("postgres")
HOOK_IMAGES = (GATE_IMAGE, PSQL_IMAGE)

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (one entry of platform:apps).
# --------------------------------------------------------------------------------------------


class AppResources(Settings):
    cpu_request: Annotated[str, StringConstraints(pattern=r"^\d+m?$")] = "100m"
    """CPU each pod requests (e.g. 100m); the namespace quota is sized from it."""
    memory_request: Annotated[str, StringConstraints(pattern=r"^\d+(Mi|Gi)$")] = "128Mi"
    """Memory each pod requests (Mi or Gi)."""
    cpu_limit: Annotated[str, StringConstraints(pattern=r"^\d+m?$")] = "1"
    """CPU limit of each pod."""
    memory_limit: Annotated[str, StringConstraints(pattern=r"^\d+(Mi|Gi)$")] = "512Mi"
    """Memory limit of each pod (Mi or Gi)."""


#: The widest app egress entry accepted.
MIN_EGRESS_PREFIX = 16
#: Never an app's egress destination: every private and special-purpose range. Apps reach their
#: database through the platform's own rule and cluster services by selector, never by address;
#: Kapsule's pod range sits in carrier-grade NAT space and its service range in RFC 1918 space.
NOT_EGRESS: Mapping[str, str] = {
    "0.0.0.0/8": "this network",
    "10.0.0.0/8": "private, RFC 1918: the VPCs and the cluster's service range",
    "172.16.0.0/12": "private, RFC 1918",
    "192.168.0.0/16": "private, RFC 1918",
    "100.64.0.0/10": "carrier-grade NAT: the cluster's pod range",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local: the metadata service",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved",
}


class AppEgress(Settings):
    cidr: Annotated[ipaddress.IPv4Network, BeforeValidator(strict_cidr)]
    """Public ranges only (NOT_EGRESS): apps never reach another VPC, the pods or the metadata."""
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(min_length=1)
    """TCP ports allowed to the range."""
    description: Annotated[str, StringConstraints(min_length=1)]
    """What the range is (a payment provider, an API)."""

    @field_validator("cidr")
    @classmethod
    def _public_and_narrow(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen < MIN_EGRESS_PREFIX:
            raise ValueError(
                f"{value} is wider than /{MIN_EGRESS_PREFIX}: it would all but undo the app's default-deny "
                "egress; list the ranges it needs"
            )
        for blocked, why in NOT_EGRESS.items():
            if value.overlaps(ipaddress.IPv4Network(blocked)):
                raise ValueError(f"{value} overlaps {blocked} ({why}): app egress lists public ranges only")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[int]) -> list[int]:
        no_duplicates("port", [str(p) for p in ports])
        return ports


#: Keys the platform writes into every app's secret when the app has a database (from the
#: program's own vault entry, see scw_platform/apps.py); apps must not declare them.
DATABASE_KEYS = (
    "DATABASE_URL",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
)
_APP_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _relative_path(path: str) -> str:
    if ".." in path.split("/") or "." in path.split("/"):
        raise ValueError(f"{path!r}: a path inside the GitOps repository, without '.' or '..' segments")
    return path


def _app_name(name: str) -> str:
    if not _APP_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a DNS label: lowercase letters, digits and '-', starting with a letter, "
            "at most 32 characters (it names the app's namespace)"
        )
    return name


def _env_key(key: str) -> str:
    if not _ENV_KEY.fullmatch(key):
        raise ValueError(
            f"{key!r} is not an environment variable name: upper-case letters, digits and '_', "
            "not starting with a digit (e.g. STRIPE_SECRET_KEY)"
        )
    return key


AppName = Annotated[str, AfterValidator(_app_name)]
AppEnvKey = Annotated[str, AfterValidator(_env_key)]


class MigrateSettings(Settings):
    """The app's schema migration, run before each rollout (a PreSync hook after the parity gate)."""

    command: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=1000)]],
        Field(min_length=1, max_length=50),
    ]
    """The command and its arguments, run from the app's own image as the migrator user, e.g.
    [python, manage.py, migrate, --noinput]."""
    timeout_minutes: int = Field(default=15, ge=1, le=240)
    """How long the migration may run before the sync fails."""


class AppSettings(Settings):
    name: AppName
    """The app's name: its namespace, Argo CD Application (<env>-<name>) and vault location."""
    hostname: Hostname
    """Public hostname the app's HTTPRoute serves on the platform Gateway (one of the environment's
    hostnames in environments.yaml).
    """
    port: int = Field(ge=1, le=65535)
    """Port the app's Service sends traffic to."""
    image: Annotated[str, StringConstraints(max_length=255, pattern=IMAGE_PATTERN)]
    """Image repository without tag (the tag is Git's business: the image updater writes it)."""
    gitops_path: Annotated[
        str,
        StringConstraints(max_length=255, pattern=r"^[\w.-]+(/[\w.-]+)*$"),
        AfterValidator(_relative_path),
    ]
    """Directory of the app's manifests in the GitOps repository (no . or .. segments)."""
    database: PgIdentifier | None = None
    """An app database declared under platform:database.databases."""
    required_keys: list[AppEnvKey] = Field(default_factory=list)
    """Environment keys the app needs; a missing one fails the rollout, naming it."""
    replicas: int = Field(default=2, ge=1, le=50)
    """Pods the app runs; the namespace quota leaves room for a rolling update of all of them."""
    resources: AppResources = AppResources()
    """Requests and limits of each pod (the namespace quota follows)."""
    egress: list[AppEgress] = Field(default_factory=list)
    """Egress beyond DNS and the database, denied unless listed."""
    migrate: MigrateSettings | None = None
    """Schema migrations in the rollout (needs a database): the hook gets the migrator's
    credentials from their own Secret, the app's pods never do."""
    max_connections: int = Field(default=10, ge=1, le=1000)
    """Database connections one replica opens at most (its pool size): the budget the database's
    connection limit must hold, for every replica a rolling update may run."""
    admission: WorkloadAdmissionSettings = WorkloadAdmissionSettings()
    """What the app's workloads from Git may do beyond the platform's defaults: more image
    registries, a Kubernetes API token (scw_platform/workload_admission.py)."""
    slo: SloSettings | None = None
    """The app's service-level objective: multi-window, multi-burn-rate alerts over Traefik's
    requests and the synthetic probe (where the stack has observability)."""
    secrets_path: str | None = None
    """Where the app's keys live in the vault (default: see PlatformConfig.app_secrets_path): a Scaleway
    Secret Manager folder such as /prod/website, or a 1Password item title.
    """
    delivery: DeliverySettings | None = None
    """Progressive delivery (docs/delivery.md): canary steps over the route's weights, each gated by
    an analysis of the canary's success rate and latency; without it, a plain Deployment."""

    @field_validator("required_keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        no_duplicates("key", keys)
        return keys

    @field_validator("delivery")
    @classmethod
    def _enough_replicas(
        cls, delivery: DeliverySettings | None, info: ValidationInfo
    ) -> DeliverySettings | None:
        # replicas is validated first (field order); an invalid one has its own message.
        replicas = info.data.get("replicas")
        problem = canary_allowed(replicas) if delivery is not None and isinstance(replicas, int) else None
        if problem is not None:
            raise ValueError(problem)
        return delivery


#: The platform's own entry for an app in Scaleway Secret Manager (in the app's folder).
DATABASE_SECRET = "platform-database"
#: The migrator's entry beside it: read by the migration hook's ExternalSecret only.
MIGRATOR_SECRET = "platform-database-migrator"
#: DATABASE_* key -> property of the JSON document the program writes.
DATABASE_PROPERTIES: Mapping[str, str] = {
    "DATABASE_URL": "url",
    "DATABASE_HOST": "host",
    "DATABASE_PORT": "port",
    "DATABASE_NAME": "name",
    "DATABASE_USER": "user",
    "DATABASE_PASSWORD": "password",
}
assert tuple(DATABASE_PROPERTIES) == DATABASE_KEYS
PULL_SECRET = kube.PULL_SECRET
POSTGRES_PORT = 5432
#: Resources of the parity gate's hook pod (counted in the quota).
GATE_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "100m", "memory": "32Mi"},
}


def env_secret_name(app: str) -> str:
    """The Secret the ExternalSecret writes and the app's pods read (``envFrom``)."""
    return f"{app}-env"


def remote_key(backend: str, location: str, key: str) -> str:
    """The vault reference of one key: ``path:/prod/web/KEY`` (Scaleway) or ``item/KEY`` (1Password)."""
    if backend == "scaleway":
        return f"path:{location.rstrip('/')}/{key}"
    if backend == "onepassword":
        return f"{location}/{key}"
    raise ValueError(f"unknown secrets backend {backend!r}")


# --- Quantities (only the forms config.AppResources admits) ------------------------------------

_CPU = re.compile(r"^(\d+)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")


def millicores(quantity: str) -> int:
    match = _CPU.fullmatch(quantity)
    if match is None:
        raise ValueError(f"unsupported CPU quantity {quantity!r}")
    return int(match[1]) if match[2] else int(match[1]) * 1000


def mebibytes(quantity: str) -> int:
    match = _MEMORY.fullmatch(quantity)
    if match is None:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def cpu(m: int) -> str:
    return f"{m // 1000}" if m % 1000 == 0 else f"{m}m"


def memory(mi: int) -> str:
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"


def quota_hard(app: AppSettings) -> dict[str, str]:
    """Room for a rolling update (every replica twice) plus the gate's hook pod and one spare."""
    pods = 2 * app.replicas + 2
    r = app.resources
    return {
        "pods": str(pods),
        "requests.cpu": cpu(pods * millicores(r.cpu_request)),
        "requests.memory": memory(pods * mebibytes(r.memory_request)),
        "limits.cpu": cpu(pods * millicores(r.cpu_limit)),
        "limits.memory": memory(pods * mebibytes(r.memory_limit)),
        # The front door is the only way in: no Service of the app gets its own public address.
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }


def limit_range_spec(app: AppSettings) -> Any:
    r = app.resources
    return {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": r.cpu_limit, "memory": r.memory_limit},
                "defaultRequest": {"cpu": r.cpu_request, "memory": r.memory_request},
                "max": {"cpu": r.cpu_limit, "memory": r.memory_limit},
            }
        ]
    }


# --- Network policies ----------------------------------------------------------------------------


def allow_spec(app: AppSettings, *, ingress_namespace: str, database_host: pulumi.Input[str] | None) -> Any:
    """What the app may do on top of the default deny (policies are additive)."""
    egress: list[object] = [kube.dns_egress_rule()]
    if database_host is not None:
        egress.append(
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": pulumi.Output.from_input(database_host).apply(lambda ip: f"{ip}/32")
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}],
            }
        )
    for rule in app.egress:
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": str(rule.cidr)}}],
                "ports": [{"protocol": "TCP", "port": port} for port in rule.ports],
            }
        )
    return {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": kube.namespace_selector(ingress_namespace)}],
                "ports": [{"protocol": "TCP", "port": app.port}],
            }
        ],
        "egress": egress,
    }


# --- The secrets contract ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AppVault:
    """Where the app's keys come from, and where the program writes its own entries."""

    #: scaleway | onepassword
    backend: str
    #: ClusterSecretStore of the app's own keys (the backend's).
    app_store: str
    #: ClusterSecretStore of platform entries (always Scaleway Secret Manager).
    platform_store: str
    #: The app's folder (Scaleway) or item (1Password) holding its declared keys.
    location: str
    #: The Scaleway Secret Manager folder the program writes the app's platform entries to.
    platform_path: str
    region: str
    project_id: pulumi.Input[str]
    refresh_interval: str = "15m"


def external_secret_data(
    app: AppSettings, vault: AppVault, *, with_database: bool
) -> list[dict[str, object]]:
    """One explicit entry per declared key, then the platform's database keys."""
    data: list[dict[str, object]] = [
        {"secretKey": key, "remoteRef": {"key": remote_key(vault.backend, vault.location, key)}}
        for key in app.required_keys
    ]
    if with_database:
        database_ref = remote_key("scaleway", vault.platform_path, DATABASE_SECRET)
        for key, prop in DATABASE_PROPERTIES.items():
            entry: dict[str, object] = {
                "secretKey": key,
                "remoteRef": {"key": database_ref, "property": prop},
            }
            if vault.platform_store != vault.app_store:
                entry["sourceRef"] = {
                    "storeRef": {"kind": "ClusterSecretStore", "name": vault.platform_store}
                }
            data.append(entry)
    return data


def external_secret_spec(app: AppSettings, vault: AppVault, *, with_database: bool) -> dict[str, Any]:
    return {
        "refreshInterval": vault.refresh_interval,
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": vault.app_store},
        "target": {
            "name": env_secret_name(app.name),
            "creationPolicy": "Owner",
            # A vault entry deleted by mistake must not empty a running app's Secret; the parity
            # gate reports it before the next rollout instead.
            "deletionPolicy": "Retain",
        },
        "data": external_secret_data(app, vault, with_database=with_database),
    }


def synced_keys(app: AppSettings, *, with_database: bool) -> list[str]:
    """Every key of the app's Secret: the declared ones, then the platform's database keys."""
    return [*app.required_keys, *(DATABASE_KEYS if with_database else ())]


@dataclass(frozen=True, kw_only=True)
class AppDatabase:
    """The app's database on the managed PostgreSQL's private endpoint."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    name: str
    user: str
    #: Secret.
    password: pulumi.Input[str]
    #: The migrator (all on this database), for the migration hook only; None: no migrations.
    migrator_user: str | None = None
    #: Secret.
    migrator_password: pulumi.Input[str] | None = None


def migrator_secret_name(app: str) -> str:
    """The Secret the migration hook reads (the app's pods read only ``<app>-env``)."""
    return f"{app}-migrator"


def migrator_external_secret_spec(app: AppSettings, vault: AppVault) -> dict[str, Any]:
    """The DATABASE_* keys of the migrator's entry, into their own Secret."""
    reference = remote_key("scaleway", vault.platform_path, MIGRATOR_SECRET)
    return {
        "refreshInterval": vault.refresh_interval,
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": vault.platform_store},
        "target": {
            "name": migrator_secret_name(app.name),
            "creationPolicy": "Owner",
            "deletionPolicy": "Retain",
        },
        "data": [
            {"secretKey": key, "remoteRef": {"key": reference, "property": prop}}
            for key, prop in DATABASE_PROPERTIES.items()
        ],
    }


def database_document(host: str, port: int, name: str, user: str, password: str) -> str:
    url = f"postgresql://{user}:{password}@{host}:{port}/{name}?sslmode=require"
    return json.dumps(
        {"host": host, "port": str(port), "name": name, "user": user, "password": password, "url": url},
        sort_keys=True,
    )


# --- Routing and delivery ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AppGateway:
    """The platform Gateway and the HTTPS listener serving the app's hostname."""

    name: str
    namespace: str
    section_name: str
    #: Gateway API CRDs (and the Gateway): the HTTPRoute kind must exist first.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def route_spec(app: AppSettings, gateway: AppGateway) -> dict[str, Any]:
    return {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": gateway.name,
                "namespace": gateway.namespace,
                "sectionName": gateway.section_name,
            }
        ],
        "hostnames": [app.hostname],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": app.name, "port": app.port}],
            }
        ],
    }


# --- The component -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AppArgs:
    settings: AppSettings
    environment: str
    #: Provider of the cluster the app runs in.
    provider: k8s.Provider
    vault: AppVault
    database: AppDatabase | None = None
    gateway: AppGateway | None = None
    #: Namespace of the Traefik pods, the only ingress the app admits.
    ingress_namespace: str
    #: ``rg.<region>.scw.cloud``.
    registry_host: pulumi.Input[str]
    #: Secret: the read-only registry key the pull secret carries.
    registry_password: pulumi.Input[str]
    #: How the image updater picks new tags for this app.
    update_strategy: str = "semver"
    update_allow_tags: str | None = None
    #: What the ExternalSecret needs first (the operator and its stores).
    secrets_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    tags: Sequence[str] = field(default_factory=tuple)
    #: Where a canary app's analysis queries metrics (settings.delivery; scw_platform.delivery).
    metrics_backend: MetricsBackend | None = None
    #: The Argo Rollouts release: its CRDs before the app's AnalysisTemplate.
    rollouts_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.settings.database is not None and self.database is None:
            raise ValueError(f"app {self.settings.name} uses database {self.settings.database}: pass it")
        if self.settings.delivery is not None and self.metrics_backend is None:
            raise ValueError(f"app {self.settings.name} delivers by canary: pass the metrics backend")


class App(pulumi.ComponentResource):
    name: str
    namespace: k8s.core.v1.Namespace
    external_secret: k8s.apiextensions.CustomResource
    #: Keys of the app's Secret (declared, then the platform's database keys).
    keys: list[str]
    #: What the tooling stack needs to deliver the app (exported in the stack's registration).
    delivery: RegisteredApp

    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:apps:App", name, None, opts)
        app = args.settings
        self.name = app.name
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": app.name, "labels": labels.app_namespace(app.name)},
            opts=k8s_opts,
        )
        meta: Any = {"namespace": app.name, "labels": {labels.APP: app.name}}
        in_namespace = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[self.namespace])
        )
        self._guardrails(name, args, meta, in_namespace)
        self._pull_access(name, args, meta, in_namespace)

        before_sync: list[pulumi.Resource] = [self.namespace, *args.secrets_depends_on]
        if args.database is not None:
            before_sync.append(self._database_entry(name, args, args.database))
        self.keys = synced_keys(app, with_database=args.database is not None)
        self.external_secret = k8s.apiextensions.CustomResource(
            f"{name}-env",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={**meta, "name": env_secret_name(app.name)},
            spec=external_secret_spec(app, args.vault, with_database=args.database is not None),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=before_sync)),
        )

        if app.migrate is not None and args.database is not None:
            self._migrator_secret(
                name, args, args.database, meta=meta, before_sync=before_sync, k8s_opts=k8s_opts
            )
        if args.gateway is not None and app.delivery is not None and args.metrics_backend is not None:
            self._canary(name, args, args.gateway, app.delivery, args.metrics_backend, meta, k8s_opts)
        elif args.gateway is not None:
            self._route(name, args, args.gateway, meta, k8s_opts)
        self.delivery = RegisteredApp(
            name=app.name,
            path=app.gitops_path,
            image=app.image,
            strategy=args.update_strategy,
            allow_tags=args.update_allow_tags,
            hostname=app.hostname,
        )
        self.register_outputs({"namespace": app.name, "keys": self.keys})

    def _guardrails(self, name: str, args: AppArgs, meta: Any, in_namespace: pulumi.ResourceOptions) -> None:
        """Declare the namespace's limits: quota, default limits, deny-all and the one allow policy.

        Together they are the envelope the platform owns, whatever the app's GitOps path ships.
        """
        app = args.settings
        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata={**meta, "name": "app"},
            spec={"hard": quota_hard(app)},
            opts=in_namespace,
        )
        k8s.core.v1.LimitRange(
            f"{name}-limits", metadata={**meta, "name": "app"}, spec=limit_range_spec(app), opts=in_namespace
        )
        kube.default_deny_policy(f"{name}-default-deny", metadata=meta, opts=in_namespace)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-allow",
            metadata={**meta, "name": "app-allow"},
            spec=allow_spec(
                app,
                ingress_namespace=args.ingress_namespace,
                database_host=args.database.host if args.database is not None else None,
            ),
            opts=in_namespace,
        )

    def _pull_access(self, name: str, args: AppArgs, meta: Any, in_namespace: pulumi.ResourceOptions) -> None:
        """Declare the registry pull secret and hand it to the namespace's default service account."""
        pull_secret = kube.image_pull_secret(
            f"{name}-registry-pull",
            metadata=meta,
            host=args.registry_host,
            password=args.registry_password,
            opts=in_namespace,
        )
        # Every pod of the namespace pulls with it without naming it; no pod gets an API token
        # unless its own service account asks for one. A server-side-apply patch: the account is
        # the namespace controller's, and deleting the patch only gives these fields back.
        k8s.core.v1.ServiceAccountPatch(
            f"{name}-default-account",
            metadata={"name": "default", "namespace": args.settings.name},
            image_pull_secrets=[{"name": PULL_SECRET}],
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[pull_secret])),
        )

    def _route(
        self, name: str, args: AppArgs, gateway: AppGateway, meta: Any, k8s_opts: pulumi.ResourceOptions
    ) -> None:
        """Declare the app's HTTPRoute on the platform Gateway, after the Gateway API CRDs exist."""
        k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={**meta, "name": args.settings.name},
            spec=route_spec(args.settings, gateway),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.namespace, *gateway.depends_on])
            ),
        )

    def _canary(  # noqa: PLR0917 - the route's inputs plus the delivery's
        self,
        name: str,
        args: AppArgs,
        gateway: AppGateway,
        delivery: DeliverySettings,
        backend: MetricsBackend,
        meta: Any,
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """A canary app's route (two backends, weights the Rollout drives), its stable and canary
        Services and its AnalysisTemplate (scw_platform.delivery.declare_canary)."""
        declare_canary(
            name,
            CanaryArgs(
                app=args.settings.name,
                hostname=args.settings.hostname,
                port=args.settings.port,
                settings=delivery,
                parent_ref=route_spec(args.settings, gateway)["parentRefs"][0],
                backend=backend,
                route_depends_on=tuple(gateway.depends_on),
                crds_depend_on=tuple(args.rollouts_depends_on),
            ),
            meta=meta,
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.namespace])),
        )

    def _database_entry(self, name: str, args: AppArgs, database: AppDatabase) -> pulumi.Resource:
        """The app's database credentials as one Scaleway Secret Manager entry (JSON document)."""
        return self._vault_entry(
            f"{name}-database",
            args,
            secret_name=DATABASE_SECRET,
            description=f"Database credentials of app {args.settings.name}, written by the platform",
            database=database,
            user=database.user,
            password=database.password,
        )

    def _migrator_secret(
        self,
        name: str,
        args: AppArgs,
        database: AppDatabase,
        *,
        meta: Any,
        before_sync: list[pulumi.Resource],
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """The migrator's credentials: their own vault entry and their own Secret, which only the
        migration hook reads (the app's pods get ``<app>-env``, without them)."""
        if database.migrator_user is None or database.migrator_password is None:
            raise ValueError(f"app {args.settings.name} migrates: its database needs a migrator user")
        entry = self._vault_entry(
            f"{name}-database-migrator",
            args,
            secret_name=MIGRATOR_SECRET,
            description=f"Migrator credentials of app {args.settings.name}'s database (its migration hook)",
            database=database,
            user=database.migrator_user,
            password=database.migrator_password,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-migrator",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={**meta, "name": migrator_secret_name(args.settings.name)},
            spec=migrator_external_secret_spec(args.settings, args.vault),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[*before_sync, entry])
            ),
        )

    def _vault_entry(
        self,
        resource_name: str,
        args: AppArgs,
        *,
        secret_name: str,
        description: str,
        database: AppDatabase,
        user: str,
        password: pulumi.Input[str],
    ) -> pulumi.Resource:
        """One database user's credentials as a Scaleway Secret Manager entry (a JSON document)."""
        secret = scaleway.secrets.Secret(
            resource_name,
            name=secret_name,
            path=args.vault.platform_path,
            description=description,
            project_id=args.vault.project_id,
            region=args.vault.region,
            tags=[*args.tags, f"app={args.settings.name}"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        document: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(database.host, database.port, password).apply(
                lambda parts: database_document(parts[0], int(parts[1]), database.name, user, parts[2])
            )
        )
        return scaleway.secrets.Version(
            f"{resource_name}-version",
            secret_id=secret.id,
            data=document,
            description="written by the platform program",
            region=args.vault.region,
            opts=pulumi.ResourceOptions(parent=self),
        )

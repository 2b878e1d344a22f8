"""What a stack costs each month, from its planned resources and the catalogue's list prices, and
the budget it must fit (``platform:budget``).

:func:`estimate` prices resources as the offline plan records them (``type``, ``name``,
``inputs``: an ``offline.mocks.Registration`` or a policy ``ResourceView`` alike) against the
committed catalogue (``scw_platform/data/scaleway.yaml``). Every resource type is either billable,
with a rule here that turns it into priced lines, or known to cost nothing of its own
(:data:`NON_BILLABLE`, with the reason); a type in neither is reported, never taken as free. A
line whose catalogue entry records no price (``unpriced``) keeps its quantity and says why it has
no figure: the estimate is then incomplete, and says so.

Each line has a quantity at the minimum and at the maximum of autoscaling (a pool's
``minSize``..``maxSize`` nodes and as many root volumes); everything else is the same at both
ends. Usage that the plan cannot know (Cockpit volumes, stored GB) comes from
:class:`UsageAssumptions`, whose defaults are assumptions, printed next to the lines they drive.
Amounts are ``Decimal`` EUR per month, list prices excluding VAT; traffic, support plans and
discounts are not included (docs/cost.md).

No Pulumi here: the policy pack prices a CrossGuard stack with the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Protocol

from pydantic import Field

from scw_platform import catalogue
from scw_platform.catalogue import Catalogue, NodeType, Price, SectionName
from scw_platform.settings import Settings

#: The Service annotation the cloud controller creates a Load Balancer of; the same string as
#: ``scw_platform.ingress.LB_TYPE_ANNOTATION`` (a test keeps the copy from drifting; importing
#: the ingress component would pull Kubernetes and Pulumi into the policy pack).
LB_TYPE_ANNOTATION = "service.beta.kubernetes.io/scw-loadbalancer-type"
#: The label that names an app's namespace objects (``scw_platform.labels.APP``).
APP_LABEL = "platform.scw/app"

SECONDS_PER_MONTH = catalogue.HOURS_PER_MONTH * 3600
SECONDS_PER_DAY = Decimal(86400)

Amount = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class UsageAssumptions(Settings):
    """``platform:budget.usage``: what the plan cannot know. The defaults are assumptions, not
    measurements: replace them with the figures Cockpit's and the console's usage pages show."""

    metrics_samples_per_second: Amount = 500
    """Custom metric samples each Cockpit metrics source ingests per second (assumed; Cockpit bills
    custom metrics per million samples ingested)."""
    logs_gb_per_day: Amount = 1
    """GB of custom logs each Cockpit logs source ingests per day (assumed)."""
    object_storage_gb: Amount = 50
    """GB stored in each Object Storage bucket (assumed; the restore check's dumps)."""
    registry_gb: Amount = 20
    """GB of images stored in each Container Registry namespace (assumed)."""


class BudgetSettings(Settings):
    """``platform:budget``: the most this stack may cost per month, and the usage it is estimated
    with (docs/cost.md)."""

    monthly_eur: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
    """The stack's monthly budget in EUR (list prices excluding VAT): `make plan` and the policy
    pack's stack-budget rule fail when the estimate's maximum (autoscaling at maxSize) exceeds it."""
    usage: UsageAssumptions = UsageAssumptions()
    """Usage the estimate assumes where the plan cannot know it."""


class PlannedResource(Protocol):
    """What the estimate reads of a resource: its type token, name and inputs."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> Mapping[str, Any]: ...


# --------------------------------------------------------------------------------------------
# Lines and the estimate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One billable quantity of one resource, at the minimum and the maximum of autoscaling."""

    resource: str
    type: str
    item: str
    unit: str
    low: Decimal
    high: Decimal
    #: The catalogue entry priced (``"kapsuleNodeTypes/PRO2-M"``).
    ref: str
    price: Price | None
    #: The assumption behind the quantity, when it is one.
    note: str = ""
    #: Why the line has no price (no catalogue entry, or the entry records none).
    problem: str | None = None

    @property
    def unit_price(self) -> Decimal | None:
        return self.price.monthly if self.price is not None else None

    @property
    def monthly_low(self) -> Decimal | None:
        return self.low * self.price.monthly if self.price is not None else None

    @property
    def monthly_high(self) -> Decimal | None:
        return self.high * self.price.monthly if self.price is not None else None


@dataclass(frozen=True)
class AppShare:
    """An app's share of the node cost, by its namespace quota's requests: the larger of its CPU
    share and its memory share of the nodes apps can run on (its dominant resource)."""

    app: str
    cpu: Decimal
    memory_gib: Decimal
    share_low: Decimal
    share_high: Decimal
    monthly_low: Decimal | None
    monthly_high: Decimal | None


@dataclass(frozen=True)
class Showback:
    """The node cost of the pools apps can run on (no taints), shared out by quota requests."""

    apps: tuple[AppShare, ...] = ()
    node_low: Decimal | None = None
    node_high: Decimal | None = None
    #: Why shares could not be priced (a node type without price or size), if so.
    problem: str | None = None

    @property
    def unallocated_low(self) -> Decimal | None:
        return _remainder(self.node_low, [a.monthly_low for a in self.apps])

    @property
    def unallocated_high(self) -> Decimal | None:
        return _remainder(self.node_high, [a.monthly_high for a in self.apps])


def _remainder(total: Decimal | None, parts: list[Decimal | None]) -> Decimal | None:
    if total is None or any(p is None for p in parts):
        return None
    return total - sum((p for p in parts if p is not None), Decimal(0))


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]
    #: Resources whose type is neither billable nor known to be free: ``name (type)``.
    unclassified: tuple[str, ...] = ()
    showback: Showback = field(default_factory=Showback)

    @property
    def priced(self) -> tuple[Line, ...]:
        return tuple(line for line in self.lines if line.price is not None)

    @property
    def unpriced(self) -> tuple[Line, ...]:
        return tuple(line for line in self.lines if line.price is None)

    @property
    def minimum(self) -> Decimal:
        """The priced lines' total at the minimum of autoscaling (EUR per month)."""
        return sum((line.monthly_low or Decimal(0) for line in self.priced), Decimal(0))

    @property
    def maximum(self) -> Decimal:
        """The priced lines' total at the maximum of autoscaling (EUR per month)."""
        return sum((line.monthly_high or Decimal(0) for line in self.priced), Decimal(0))

    @property
    def complete(self) -> bool:
        """Every billable resource priced and every resource type classified."""
        return not self.unpriced and not self.unclassified

    def problems(self) -> list[str]:
        """Why the estimate is incomplete: the unpriced lines, one entry per catalogue entry
        (with the lines it leaves unpriced), then each unclassified resource."""
        grouped: dict[tuple[str, str], list[Line]] = {}
        for line in self.unpriced:
            grouped.setdefault((line.ref, line.problem or ""), []).append(line)
        return [
            f"{ref}: {', '.join(f'{line.resource} ({line.item})' for line in lines)}: {problem}"
            for (ref, problem), lines in sorted(grouped.items())
        ] + [
            f"{what}: no cost rule knows this resource type; add it to scw_platform/budget.py (a "
            "billable rule, or NON_BILLABLE with the reason)"
            for what in self.unclassified
        ]

    def top(self, count: int = 3) -> list[Line]:
        """The priced lines that weigh most at the maximum."""
        return sorted(self.priced, key=lambda line: (-(line.monthly_high or 0), line.resource, line.item))[
            :count
        ]


# --------------------------------------------------------------------------------------------
# What is billable, and what is not
# --------------------------------------------------------------------------------------------

_VPC_FAQ = "free of charge (VPC FAQ, validated 2024-12-16)"

#: Resource types that cost nothing of their own, and why.
NON_BILLABLE: dict[str, str] = {
    "scaleway:iam/application:Application": "IAM is free (IAM FAQ, validated 2025-01-04)",
    "scaleway:iam/apiKey:ApiKey": "IAM is free (IAM FAQ, validated 2025-01-04)",
    "scaleway:iam/policy:Policy": "IAM is free (IAM FAQ, validated 2025-01-04)",
    "scaleway:network/vpc:Vpc": f"VPCs and VPC routing are {_VPC_FAQ}",
    "scaleway:network/privateNetwork:PrivateNetwork": f"Private Networks are {_VPC_FAQ}",
    "scaleway:network/gatewayNetwork:GatewayNetwork": "the attachment of a Public Gateway (priced) "
    "to a Private Network (free)",
    "scaleway:kubernetes/acl:Acl": "a setting of the cluster's API server (priced with the cluster)",
    "scaleway:databases/database:Database": "a database inside the instance (priced with the instance)",
    "scaleway:databases/user:User": "a role inside the instance (priced with the instance)",
    "scaleway:databases/privilege:Privilege": "a grant inside the instance (priced with the instance)",
    "scaleway:domain/record:Record": "a record in an existing DNS zone; the zone and the domain are "
    "not the plan's",
    "scaleway:object/bucketPolicy:BucketPolicy": "a setting of the bucket (priced with the bucket)",
    "scaleway:observability/token:Token": "Cockpit bills data ingested and retained, not tokens "
    "(Cockpit pricing, validated 2025-11-27)",
    "scaleway:observability/alertManager:AlertManager": "Cockpit bills data ingested and retained; "
    "its pricing page lists no alerting charge (validated 2025-11-27)",
    "scaleway:secrets/secret:Secret": "Secret Manager bills secret versions and API requests, not "
    "secrets (Secret Manager FAQ, validated 2025-04-15)",
}

#: Whole providers that create nothing Scaleway bills: component resources (``platform:``),
#: Pulumi's own (providers, stack references) and generated values.
NON_BILLABLE_PROVIDERS: dict[str, str] = {
    "platform:": "a component: its children are priced",
    "pulumi:": "Pulumi's own (a provider, a stack reference)",
    "random:": "a value generated in the state",
}

#: Kubernetes objects are not billed by Scaleway, except those that make the cloud controller or
#: the CSI driver create a Scaleway resource (a Load Balancer, a volume): these are priced below.
KUBERNETES = "kubernetes:"


def classify(type_token: str) -> str:
    """``"billable"``, ``"free"`` or ``"unknown"``."""
    if type_token in _RULES:
        return "billable"
    if type_token in NON_BILLABLE or type_token.startswith((*NON_BILLABLE_PROVIDERS, KUBERNETES)):
        return "free"
    return "unknown"


# --------------------------------------------------------------------------------------------
# Pricing rules, one per billable type
# --------------------------------------------------------------------------------------------


@dataclass
class _Pool:
    node: NodeType
    low: Decimal
    high: Decimal
    tainted: bool
    line: Line


@dataclass
class _Context:
    catalogue: Catalogue
    usage: UsageAssumptions
    pools: list[_Pool] = field(default_factory=list)


def _number(value: Any, default: int | None = None) -> Decimal:
    """A numeric input (the engine hands integers over as floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if default is None:
            raise ValueError(f"not a number: {value!r}")
        return Decimal(default)
    return (
        Decimal(repr(value)) if isinstance(value, float) and not value.is_integer() else Decimal(int(value))
    )


def _line(
    ctx: _Context,
    resource: PlannedResource,
    *,
    section: SectionName,
    name: str,
    item: str,
    low: Decimal,
    high: Decimal | None = None,
    unit: str | None = None,
    note: str = "",
) -> Line:
    """A line priced by ``section``'s entry ``name``. A service's rule says which ``unit`` it
    counts, and a catalogue price per another unit is refused rather than multiplied."""
    entry = ctx.catalogue.find(section, name)
    ref = f"{section}/{entry.name if entry is not None else name}"
    counted = unit if section == "services" and unit is not None else catalogue.UNITS.get(section, "unit")

    def line(price: Price | None, problem: str | None = None) -> Line:
        return Line(
            resource=resource.name,
            type=resource.type,
            item=item,
            unit=counted,
            low=low,
            high=low if high is None else high,
            ref=ref,
            price=price,
            note=note,
            problem=problem,
        )

    if entry is None:
        return line(None, f"the catalogue has no {section} entry {name!r} (scw_platform/data/scaleway.yaml)")
    if entry.prices is None:
        return line(None, entry.unpriced)
    if section == "services" and entry.prices.unit != counted:
        return line(
            None, f"the catalogue prices it per {entry.prices.unit!r}, the estimate counts {counted!r}"
        )
    return line(entry.prices)


def _cluster(r: PlannedResource, ctx: _Context) -> list[Line]:
    offer = str(r.inputs.get("type") or "kapsule")
    return [
        _line(
            ctx, r, section="kapsuleControlPlanes", name=offer, item=f"control plane {offer}", low=Decimal(1)
        )
    ]


def _pool(r: PlannedResource, ctx: _Context) -> list[Line]:
    inputs = r.inputs
    node_type = str(inputs.get("nodeType"))
    if inputs.get("autoscaling"):
        low, high = _number(inputs.get("minSize")), _number(inputs.get("maxSize"))
    else:
        low = high = _number(inputs.get("size"))
    nodes = _line(
        ctx, r, section="kapsuleNodeTypes", name=node_type, item=f"{node_type} nodes", low=low, high=high
    )
    lines = [nodes]
    node = ctx.catalogue.kapsule_node_type(node_type)
    if node is not None:
        ctx.pools.append(_Pool(node=node, low=low, high=high, tainted=bool(inputs.get("taints")), line=nodes))
    volume = inputs.get("rootVolumeType")
    size = _number(inputs.get("rootVolumeSizeInGb"), default=0)
    if volume is None:
        lines.append(
            Line(
                resource=r.name,
                type=r.type,
                item="root volumes",
                unit="GB",
                low=low * size,
                high=high * size,
                ref="blockVolumeTypes/?",
                price=None,
                problem="the plan sets no rootVolumeType: Kapsule's default for the type is not catalogued",
            )
        )
    else:
        lines.append(
            _line(
                ctx,
                r,
                section="blockVolumeTypes",
                name=str(volume),
                item=f"root volumes {volume}, {size} GB each",
                low=low * size,
                high=high * size,
            )
        )
    if not inputs.get("publicIpDisabled"):
        lines.append(
            _line(
                ctx,
                r,
                section="services",
                name="instance-flexible-ipv4",
                item="node public IPv4s",
                low=low,
                high=high,
                unit="IP",
            )
        )
    return lines


def _database(r: PlannedResource, ctx: _Context) -> list[Line]:
    inputs = r.inputs
    node_type = str(inputs.get("nodeType"))
    ha = bool(inputs.get("isHaCluster"))
    nodes = Decimal(2 if ha else 1)
    item = f"{node_type} nodes" + (" (HA: primary and standby)" if ha else "")
    lines = [_line(ctx, r, section="rdbNodeTypes", name=node_type, item=item, low=nodes)]
    volume = str(inputs.get("volumeType") or "lssd")
    if volume == "lssd":
        node = ctx.catalogue.rdb_node_type(node_type)
        size = Decimal(node.local_storage_gb or 0) if node is not None else Decimal(0)
    else:
        size = _number(inputs.get("volumeSizeInGb"), default=0)
    lines.append(
        _line(
            ctx,
            r,
            section="services",
            name=f"rdb-volume-{volume}",
            item=f"{volume} volume, {size} GB",
            low=size,
            unit="GB-month",
        )
    )
    if not inputs.get("disableBackup"):
        retention = _number(inputs.get("backupScheduleRetention"), default=7)
        frequency = _number(inputs.get("backupScheduleFrequency"), default=24)
        kept = Decimal(math.ceil(retention * 24 / frequency))
        lines.append(
            _line(
                ctx,
                r,
                section="services",
                name="rdb-backup-storage",
                item=f"managed backups, {kept} kept",
                low=size * kept,
                unit="GB-month",
                note=f"upper bound: {kept} backups kept, each as large as the volume",
            )
        )
    return lines


def _load_balancer(r: PlannedResource, ctx: _Context) -> list[Line]:
    lb_type = str(r.inputs.get("type"))
    return [
        _line(
            ctx, r, section="loadBalancerTypes", name=lb_type, item=f"{lb_type} load balancer", low=Decimal(1)
        )
    ]


def _service_lb(r: PlannedResource, ctx: _Context, annotations: Any, what: str) -> list[Line]:
    """The Load Balancer the cloud controller creates for a Service the annotation types."""
    lb_type = annotations.get(LB_TYPE_ANNOTATION) if isinstance(annotations, Mapping) else None
    if lb_type is None:
        return []
    return [
        _line(
            ctx,
            r,
            section="loadBalancerTypes",
            name=str(lb_type),
            item=f"{lb_type} load balancer ({what})",
            low=Decimal(1),
        )
    ]


def _helm_release(r: PlannedResource, ctx: _Context) -> list[Line]:
    # The chart's Service, as the values the program passes set it: Traefik's, annotated with
    # the Load Balancer type (scw_platform/ingress.py). Nothing else a release creates is read.
    values = r.inputs.get("values")
    service = values.get("service") if isinstance(values, Mapping) else None
    annotations = service.get("annotations") if isinstance(service, Mapping) else None
    return _service_lb(r, ctx, annotations, "chart Service")


def _kubernetes_service(r: PlannedResource, ctx: _Context) -> list[Line]:
    spec = r.inputs.get("spec")
    if not isinstance(spec, Mapping) or spec.get("type") != "LoadBalancer":
        return []
    metadata = r.inputs.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    lines = _service_lb(r, ctx, annotations, "Service type LoadBalancer")
    return lines or [
        Line(
            resource=r.name,
            type=r.type,
            item="load balancer (Service type LoadBalancer)",
            unit="load balancer",
            low=Decimal(1),
            high=Decimal(1),
            ref="loadBalancerTypes/?",
            price=None,
            problem=f"no {LB_TYPE_ANNOTATION} annotation: the controller's default type is not catalogued",
        )
    ]


def _volume_claims(r: PlannedResource, claims: Iterable[Any], what: str) -> list[Line]:
    lines = []
    for claim in claims:
        spec = claim.get("spec") if isinstance(claim, Mapping) else None
        storage_class = spec.get("storageClassName") if isinstance(spec, Mapping) else None
        lines.append(
            Line(
                resource=r.name,
                type=r.type,
                item=f"{what} ({storage_class or 'default storage class'})",
                unit="GB",
                low=Decimal(0),
                high=Decimal(0),
                ref="blockVolumeTypes/?",
                price=None,
                problem="Kubernetes storage classes are not mapped to catalogued volume types",
            )
        )
    return lines


def _pvc(r: PlannedResource, ctx: _Context) -> list[Line]:
    return _volume_claims(r, [r.inputs], "persistent volume claim")


def _statefulset(r: PlannedResource, ctx: _Context) -> list[Line]:
    spec = r.inputs.get("spec")
    templates = spec.get("volumeClaimTemplates") if isinstance(spec, Mapping) else None
    return _volume_claims(r, templates or [], "volume claim template")


def _lb_ip(r: PlannedResource, ctx: _Context) -> list[Line]:
    return [
        _line(
            ctx,
            r,
            section="services",
            name="lb-flexible-ipv4",
            item="flexible IPv4",
            low=Decimal(1),
            unit="IP",
        )
    ]


def _gateway(r: PlannedResource, ctx: _Context) -> list[Line]:
    gw_type = str(r.inputs.get("type"))
    return [
        _line(ctx, r, section="publicGatewayTypes", name=gw_type, item=f"{gw_type} gateway", low=Decimal(1))
    ]


def _gateway_ip(r: PlannedResource, ctx: _Context) -> list[Line]:
    return [
        _line(
            ctx,
            r,
            section="services",
            name="public-gateway-flexible-ipv4",
            item="flexible IPv4",
            low=Decimal(1),
            unit="IP",
        )
    ]


def _bucket(r: PlannedResource, ctx: _Context) -> list[Line]:
    gb = _number(ctx.usage.object_storage_gb)
    return [
        _line(
            ctx,
            r,
            section="services",
            name="object-storage-standard",
            item="Standard (Multi-AZ) storage",
            low=gb,
            unit="GB-month",
            note=f"assumed {gb} GB stored (platform:budget.usage.objectStorageGb)",
        )
    ]


def _secret_version(r: PlannedResource, ctx: _Context) -> list[Line]:
    return [
        _line(
            ctx,
            r,
            section="services",
            name="secret-manager-version",
            item="secret version",
            low=Decimal(1),
            unit="version",
        )
    ]


def _registry(r: PlannedResource, ctx: _Context) -> list[Line]:
    gb = _number(ctx.usage.registry_gb)
    note = f"assumed {gb} GB of images (platform:budget.usage.registryGb)"
    if r.inputs.get("isPublic"):
        return [
            Line(
                resource=r.name,
                type=r.type,
                item="public images",
                unit="GB-month",
                low=gb,
                high=gb,
                ref="services/registry-public-storage",
                price=None,
                note=note,
                problem="public images: free up to 75 GB (Container Registry FAQ), no price above",
            )
        ]
    return [
        _line(
            ctx,
            r,
            section="services",
            name="registry-private-storage",
            item="private images",
            low=gb,
            unit="GB-month",
            note=note,
        )
    ]


def _cockpit_source(r: PlannedResource, ctx: _Context) -> list[Line]:
    kind = r.inputs.get("type")
    retention = _number(r.inputs.get("retentionDays"), default=0)
    if kind == "metrics":
        rate = _number(ctx.usage.metrics_samples_per_second)
        ingested = rate * SECONDS_PER_MONTH / Decimal(1_000_000)
        per_day = rate * SECONDS_PER_DAY / Decimal(10_000_000)
        assumption = f"assumed {rate} samples/s (platform:budget.usage.metricsSamplesPerSecond)"
        units = ("million samples", "10 million samples stored")
        return _cockpit(
            r,
            ctx,
            kind="metrics",
            ingested=ingested,
            stored_per_day=per_day,
            retention=retention,
            assumption=assumption,
            units=units,
        )
    if kind == "logs":
        per_day = _number(ctx.usage.logs_gb_per_day)
        ingested = per_day * catalogue.DAYS_PER_MONTH
        assumption = f"assumed {per_day} GB/day (platform:budget.usage.logsGbPerDay)"
        return _cockpit(
            r,
            ctx,
            kind="logs",
            ingested=ingested,
            stored_per_day=per_day,
            retention=retention,
            assumption=assumption,
            units=("GB ingested", "GB stored"),
        )
    return [
        Line(
            resource=r.name,
            type=r.type,
            item=f"Cockpit {kind} source",
            unit="unit",
            low=Decimal(0),
            high=Decimal(0),
            ref="services/?",
            price=None,
            problem=f"Cockpit {kind!r} sources have no cost rule",
        )
    ]


def _cockpit(
    r: PlannedResource,
    ctx: _Context,
    *,
    kind: str,
    ingested: Decimal,
    stored_per_day: Decimal,
    retention: Decimal,
    assumption: str,
    units: tuple[str, str],
) -> list[Line]:
    """Ingestion, and retention beyond the free days: the stored volume is a day's ingestion
    times the extra days (Cockpit pricing's own example: 2 GB/day x (10 - 7) days)."""
    lines = [
        _line(
            ctx,
            r,
            section="services",
            name=f"cockpit-custom-{kind}",
            item=f"{kind} ingested",
            low=ingested,
            unit=units[0],
            note=assumption,
        )
    ]
    retained = ctx.catalogue.service(f"cockpit-{kind}-retention")
    free_days = Decimal(retained.free_retention_days or 0) if retained is not None else Decimal(0)
    extra = retention - free_days
    if extra > 0:
        lines.append(
            _line(
                ctx,
                r,
                section="services",
                name=f"cockpit-{kind}-retention",
                item=f"{kind} kept {retention} days ({extra} beyond the free {free_days})",
                low=stored_per_day * extra,
                unit=units[1],
                note=assumption,
            )
        )
    return lines


_RULES: dict[str, Callable[[PlannedResource, _Context], list[Line]]] = {
    "scaleway:kubernetes/cluster:Cluster": _cluster,
    "scaleway:kubernetes/pool:Pool": _pool,
    "scaleway:databases/instance:Instance": _database,
    "scaleway:loadbalancers/loadBalancer:LoadBalancer": _load_balancer,
    "scaleway:loadbalancers/ip:Ip": _lb_ip,
    "scaleway:network/publicGateway:PublicGateway": _gateway,
    "scaleway:network/publicGatewayIp:PublicGatewayIp": _gateway_ip,
    "scaleway:object/bucket:Bucket": _bucket,
    "scaleway:secrets/version:Version": _secret_version,
    "scaleway:registry/namespace:Namespace": _registry,
    "scaleway:observability/source:Source": _cockpit_source,
    "kubernetes:helm.sh/v3:Release": _helm_release,
    "kubernetes:helm.sh/v4:Chart": _helm_release,
    "kubernetes:core/v1:Service": _kubernetes_service,
    "kubernetes:core/v1:PersistentVolumeClaim": _pvc,
    "kubernetes:apps/v1:StatefulSet": _statefulset,
}

#: The billable resource types, each with its rule above.
BILLABLE: frozenset[str] = frozenset(_RULES)


# --------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------


def estimate(
    resources: Iterable[PlannedResource],
    usage: UsageAssumptions | None = None,
    cat: Catalogue | None = None,
) -> Estimate:
    """Price ``resources`` (in plan order; lines come out sorted by resource and item)."""
    ctx = _Context(catalogue=cat or catalogue.load(), usage=usage or UsageAssumptions())
    lines: list[Line] = []
    unclassified: list[str] = []
    quotas: list[PlannedResource] = []
    for resource in resources:
        rule = _RULES.get(resource.type)
        if rule is not None:
            lines.extend(rule(resource, ctx))
        elif classify(resource.type) == "unknown":
            unclassified.append(f"{resource.name} ({resource.type})")
        if resource.type == "kubernetes:core/v1:ResourceQuota":
            quotas.append(resource)
    return Estimate(
        lines=tuple(sorted(lines, key=lambda line: (line.resource, line.item))),
        unclassified=tuple(sorted(unclassified)),
        showback=_showback(ctx.pools, quotas),
    )


def _showback(pools: list[_Pool], quotas: list[PlannedResource]) -> Showback:
    apps = sorted(
        (
            (str(labels[APP_LABEL]), q)
            for q in quotas
            if isinstance(labels := (q.inputs.get("metadata") or {}).get("labels"), Mapping)
            and APP_LABEL in labels
        ),
        key=lambda pair: pair[0],
    )
    if not apps:
        return Showback()
    # Apps run where nothing taints the nodes away from them (the builders pool is CI's).
    usable = [p for p in pools if not p.tainted]
    if not usable:
        return Showback(problem="no untainted pool for the apps to run on")
    sizes = [(p, p.node.vcpus, p.node.memory_gib) for p in usable]
    if any(vcpus is None or memory is None for _, vcpus, memory in sizes):
        return Showback(problem="a node type's vCPUs or memory are not catalogued")
    cpu_low = sum((p.low * _number(vcpus) for p, vcpus, _ in sizes), Decimal(0))
    cpu_high = sum((p.high * _number(vcpus) for p, vcpus, _ in sizes), Decimal(0))
    mem_low = sum((p.low * _number(memory) for p, _, memory in sizes), Decimal(0))
    mem_high = sum((p.high * _number(memory) for p, _, memory in sizes), Decimal(0))
    priced = all(p.line.price is not None for p in usable)
    node_low = sum((p.line.monthly_low or Decimal(0) for p in usable), Decimal(0)) if priced else None
    node_high = sum((p.line.monthly_high or Decimal(0) for p in usable), Decimal(0)) if priced else None
    shares = []
    for app, quota in apps:
        hard = ((quota.inputs.get("spec") or {}).get("hard")) or {}
        try:
            cpu = cpu_quantity(hard.get("requests.cpu", hard.get("cpu", "0")))
            memory = memory_gib(hard.get("requests.memory", hard.get("memory", "0")))
        except ValueError as exc:
            return Showback(problem=f"app {app}'s quota: {exc}")
        low = _dominant(cpu, memory, cpu_low, mem_low)
        high = _dominant(cpu, memory, cpu_high, mem_high)
        shares.append(
            AppShare(
                app=app,
                cpu=cpu,
                memory_gib=memory,
                share_low=low,
                share_high=high,
                monthly_low=low * node_low if node_low is not None else None,
                monthly_high=high * node_high if node_high is not None else None,
            )
        )
    problem = None if priced else "a node type of the apps' pools has no price"
    return Showback(apps=tuple(shares), node_low=node_low, node_high=node_high, problem=problem)


def _dominant(cpu: Decimal, memory: Decimal, cpu_capacity: Decimal, memory_capacity: Decimal) -> Decimal:
    # No nodes at this end of autoscaling (minSize 0): nothing to share.
    if cpu_capacity == 0 or memory_capacity == 0:
        return Decimal(0)
    return max(cpu / cpu_capacity, memory / memory_capacity)


_QUANTITY = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<suffix>[A-Za-z]*)$")
_MEMORY_SUFFIXES = {
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def cpu_quantity(value: Any) -> Decimal:
    """A Kubernetes CPU quantity ("800m", "2", 1.5) in cores."""
    match = _QUANTITY.match(str(value))
    if match is None or match["suffix"] not in ("", "m"):
        raise ValueError(f"not a CPU quantity: {value!r}")
    number = Decimal(match["number"])
    return number / 1000 if match["suffix"] == "m" else number


def memory_gib(value: Any) -> Decimal:
    """A Kubernetes memory quantity ("768Mi", "1Gi", "2G") in GiB."""
    match = _QUANTITY.match(str(value))
    if match is None or match["suffix"] not in _MEMORY_SUFFIXES:
        raise ValueError(f"not a memory quantity: {value!r}")
    return Decimal(match["number"]) * _MEMORY_SUFFIXES[match["suffix"]] / Decimal(2**30)

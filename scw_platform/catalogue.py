"""The catalogue of Scaleway commercial types the platform may use (``scw_platform/data/scaleway.yaml``,
shipped with the library: they are facts about Scaleway, not about one organisation).

Every entry is a dated public fact: it carries the https URL of the page that states it and the
date of the fact (``checked``), set on the entry or as its section's default. Loading validates the
whole file and raises one :class:`CatalogueError` that lists every problem, each naming its section
and entry. Models forbid unknown keys, so a typo (``vcpu:``) is an error, not a silently missing
fact. Facts that could not be confirmed are absent (``None``), never guessed.

Config validation asks::

    from scw_platform import catalogue

    node = catalogue.kapsule_node_type("PRO2-S")  # NodeType | None, on the committed catalogue
    if node is None:
        raise ValueError(f"unknown node type 'DEV1-XXL' ({catalogue.hint('kapsuleNodeTypes')})")

Lookups ignore case (the Scaleway APIs themselves list database and load-balancer types in lower
case); ``entry.name`` is the catalogue's spelling.

Prices: every entry carries either a ``prices`` block (:class:`Price`: a list price in EUR
excluding VAT, per month, per hour or per day, or explicitly free, with its own source, date and
publisher) or an ``unpriced`` text saying why no figure is recorded. A gap is stated, never filled:
an estimate that needs a missing price fails for that line (``scw_platform.budget``). Hourly prices
become monthly at :data:`HOURS_PER_MONTH` hours, daily ones at ``HOURS_PER_MONTH / 24`` days. What
one unit is depends on the section (:data:`UNITS`): a node, a cluster, a GB of provisioned volume,
or, for ``services``, the price's own ``unit``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from scw_platform.contract import ProblemsError

#: The catalogue the library ships (package data, so ``pip install .`` carries it).
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "scaleway.yaml"

SectionName = Literal[
    "kapsuleNodeTypes",
    "kapsuleControlPlanes",
    "blockVolumeTypes",
    "rdbNodeTypes",
    "loadBalancerTypes",
    "publicGatewayTypes",
    "services",
]
SECTIONS: tuple[SectionName, ...] = get_args(SectionName)

#: What one priced unit of each section is ("services" entries state their own ``prices.unit``).
UNITS: dict[SectionName, str] = {
    "kapsuleNodeTypes": "node",
    "kapsuleControlPlanes": "cluster",
    "blockVolumeTypes": "GB",
    "rdbNodeTypes": "node",
    "loadBalancerTypes": "load balancer",
    "publicGatewayTypes": "gateway",
}

#: The conversion the catalogue states for hourly list prices (Scaleway's own monthly figures for
#: Instances are exactly hourly x 730: e.g. DEV1-M 0.020196/h and 14.74308/month in the recorded
#: Instance API listing).
HOURS_PER_MONTH = Decimal(730)
DAYS_PER_MONTH = HOURS_PER_MONTH / 24

#: Section keys: provenance defaults for the entries, defaults for their price blocks, and the
#: reason shared by entries that have no price.
_SECTION_KEYS = frozenset(
    {"source", "checked", "membership", "notes", "entries", "priceDefaults", "unpriced"}
)
_TOP_LEVEL_KEYS = frozenset({"retrieved", *SECTIONS})


class CatalogueError(ProblemsError):
    """The catalogue is invalid; ``problems`` lists every problem found, each naming its entry."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(f"invalid Scaleway catalogue, {len(problems)} problem(s)", problems)


# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------


def _iso_date(value: object) -> date:
    # YAML turns 2026-06-23 into a date; a timestamp or a number is not a date of a fact.
    if isinstance(value, datetime) or not isinstance(value, date | str):
        raise ValueError("must be an ISO date (YYYY-MM-DD)")
    return date.fromisoformat(value) if isinstance(value, str) else value


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be a public https:// URL")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
HttpsUrl = Annotated[str, Field(strict=True), AfterValidator(_https_url)]
# Underscores: volume types are spelt as the APIs spell them (sbs_5k).
TypeName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
Text = Annotated[str, StringConstraints(strict=True, min_length=1)]
Count = Annotated[int, Field(strict=True, gt=0)]
Size = Annotated[int, Field(strict=True, ge=0)]
Quantity = Annotated[float, Field(strict=True, gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)


class Price(_Model):
    """A list price in EUR excluding VAT, with the page and date it was read from.

    Exactly one of ``monthlyEur``, ``hourlyEur`` (x :data:`HOURS_PER_MONTH`), ``dailyEur`` (x
    :data:`DAYS_PER_MONTH`) or ``free: true``. A zero amount is refused: free is said, so that a
    typo cannot make something free. ``publisher`` says whose record the figure is: Scaleway's own
    (its docs or its API) or a third party's record of Scaleway's figure.
    """

    monthly_eur: Quantity | None = None
    hourly_eur: Quantity | None = None
    daily_eur: Quantity | None = None
    free: Literal[True] | None = None
    #: What one unit is, for "services" entries (e.g. "GB-month", "million samples").
    unit: Text | None = None
    publisher: Literal["scaleway", "third-party"]
    source: HttpsUrl
    checked: IsoDate
    region: Text | None = None
    notes: Text | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> Price:
        given = [
            k for k in ("monthly_eur", "hourly_eur", "daily_eur", "free") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("needs exactly one of monthlyEur, hourlyEur, dailyEur or free: true")
        return self

    @property
    def monthly(self) -> Decimal:
        """The monthly list price of one unit, in EUR (0 when free)."""
        if self.monthly_eur is not None:
            return _decimal(self.monthly_eur)
        if self.hourly_eur is not None:
            return _decimal(self.hourly_eur) * HOURS_PER_MONTH
        if self.daily_eur is not None:
            return _decimal(self.daily_eur) * DAYS_PER_MONTH
        return Decimal(0)


def _decimal(value: float) -> Decimal:
    # repr() of a float parsed from YAML is its shortest round-trip text: "0.000177", not the
    # binary expansion, so Decimal arithmetic starts from the figure the file states.
    return Decimal(repr(value))


class Membership(_Model):
    """Why the entries belong in their section (e.g. which Instance types Kapsule accepts)."""

    rule: Text
    source: HttpsUrl
    checked: IsoDate


class Entry(_Model):
    """Fields every catalogue entry has: its name, its provenance, and its price or why it has
    none."""

    name: TypeName
    family: TypeName | None = None
    source: HttpsUrl
    checked: IsoDate
    notes: Text | None = None
    prices: Price | None = None
    #: Why no price is recorded (no stored public page states one): the gap, said.
    unpriced: Text | None = None

    @model_validator(mode="after")
    def _price_or_reason(self) -> Entry:
        if (self.prices is None) == (self.unpriced is None):
            raise ValueError(
                "needs either prices (with their source and date) or unpriced: <why no public "
                "figure is recorded>, not both"
                if self.prices is not None
                else "needs prices (with their source and date) or unpriced: <why no public figure "
                "is recorded>"
            )
        return self


class NodeType(Entry):
    """An Instance commercial type usable in a Kapsule pool."""

    family: TypeName
    vcpus: Count | None = None
    memory_gib: Quantity | None = Field(default=None, alias="memoryGiB")
    max_local_storage_gb: Size | None = Field(default=None, alias="maxLocalStorageGB")
    bandwidth_mbps: Count | None = None


class DatabaseNodeType(Entry):
    """A Managed Database for PostgreSQL node type (memory in decimal GB, as the API states it)."""

    family: TypeName
    vcpus: Count | None = None
    memory_gb: Quantity | None = Field(default=None, alias="memoryGB")
    max_connections: Count | None = None
    instance_range: Text | None = None
    generation: Text | None = None
    ha_required: Annotated[bool, Field(strict=True)] | None = None
    local_storage_gb: Count | None = Field(default=None, alias="localStorageGB")


class LoadBalancerType(Entry):
    """A Load Balancer commercial type."""

    bandwidth_mbps: Count | None = None
    max_connections: Count | None = None


class PublicGatewayType(Entry):
    """A Public Gateway commercial type."""

    bandwidth_mbps: Count | None = None


class ControlPlaneType(Entry):
    """A Kapsule control plane offer (the cluster's ``type``: mutualized or dedicated)."""

    memory_gb: Count | None = Field(default=None, alias="memoryGB")


class BlockVolumeType(Entry):
    """A volume type a Kapsule pool's root volume can be (priced per provisioned GB)."""

    iops: Count | None = None


class Service(Entry):
    """A unit-priced service: its price states the unit (a GB-month, a million samples, ...)."""

    #: Days of retention included free, for retention prices (Cockpit).
    free_retention_days: Size | None = None

    @model_validator(mode="after")
    def _unit(self) -> Service:
        if self.prices is not None and self.prices.unit is None:
            raise ValueError("prices.unit: a service's price must say what one unit is")
        return self


_ENTRY_MODELS: dict[SectionName, type[Entry]] = {
    "kapsuleNodeTypes": NodeType,
    "kapsuleControlPlanes": ControlPlaneType,
    "blockVolumeTypes": BlockVolumeType,
    "rdbNodeTypes": DatabaseNodeType,
    "loadBalancerTypes": LoadBalancerType,
    "publicGatewayTypes": PublicGatewayType,
    "services": Service,
}

E = TypeVar("E", bound=Entry)


# --------------------------------------------------------------------------------------------
# The loaded catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Catalogue:
    """The validated catalogue: one tuple of entries per section, in file order."""

    retrieved: date
    kapsule_node_types: tuple[NodeType, ...]
    kapsule_control_planes: tuple[ControlPlaneType, ...]
    block_volume_types: tuple[BlockVolumeType, ...]
    rdb_node_types: tuple[DatabaseNodeType, ...]
    load_balancer_types: tuple[LoadBalancerType, ...]
    public_gateway_types: tuple[PublicGatewayType, ...]
    services: tuple[Service, ...]

    def section(self, section: SectionName) -> tuple[Entry, ...]:
        """The entries of a section, by its YAML name (``"kapsuleNodeTypes"``, ...)."""
        sections: dict[str, tuple[Entry, ...]] = {
            "kapsuleNodeTypes": self.kapsule_node_types,
            "kapsuleControlPlanes": self.kapsule_control_planes,
            "blockVolumeTypes": self.block_volume_types,
            "rdbNodeTypes": self.rdb_node_types,
            "loadBalancerTypes": self.load_balancer_types,
            "publicGatewayTypes": self.public_gateway_types,
            "services": self.services,
        }
        if section not in sections:
            raise ValueError(f"unknown catalogue section {section!r} (sections: {', '.join(SECTIONS)})")
        return sections[section]

    def find(self, section: SectionName, name: str) -> Entry | None:
        """The entry of ``section`` named ``name`` (case-insensitive), if any."""
        return _find(self.section(section), name)

    def kapsule_node_type(self, name: str) -> NodeType | None:
        return _find(self.kapsule_node_types, name)

    def rdb_node_type(self, name: str) -> DatabaseNodeType | None:
        return _find(self.rdb_node_types, name)

    def load_balancer_type(self, name: str) -> LoadBalancerType | None:
        return _find(self.load_balancer_types, name)

    def public_gateway_type(self, name: str) -> PublicGatewayType | None:
        return _find(self.public_gateway_types, name)

    def control_plane(self, name: str) -> ControlPlaneType | None:
        return _find(self.kapsule_control_planes, name)

    def block_volume_type(self, name: str) -> BlockVolumeType | None:
        return _find(self.block_volume_types, name)

    def service(self, name: str) -> Service | None:
        return _find(self.services, name)

    def names(self, section: SectionName) -> list[str]:
        """Every entry name of a section, in file order."""
        return [entry.name for entry in self.section(section)]

    def families(self, section: SectionName) -> list[str]:
        """The families of a section in order of first appearance ([] where entries have none)."""
        return list(dict.fromkeys(e.family for e in self.section(section) if e.family is not None))

    def hint(self, section: SectionName, examples: int = 3) -> str:
        """What an error message can tell the user: the allowed families and a few names."""
        entries = self.section(section)
        families = self.families(section)
        if not families:
            return f"allowed: {', '.join(e.name for e in entries)}"
        firsts = [next(e.name for e in entries if e.family == f) for f in families[:examples]]
        return f"allowed families: {', '.join(families)}; e.g. {', '.join(firsts)}"


def _find(entries: Iterable[E], name: str) -> E | None:
    wanted = name.casefold()
    return next((entry for entry in entries if entry.name.casefold() == wanted), None)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue; without ``path``, the committed one (loaded once, cached)."""
    return _load_default() if path is None else _parse(path)


@functools.cache
def _load_default() -> Catalogue:
    return _parse(DEFAULT_PATH)


def _parse(path: Path) -> Catalogue:
    document = _read(path)
    problems = [f"unknown top-level key {key!r}" for key in document if key not in _TOP_LEVEL_KEYS]
    retrieved = _retrieved(document.get("retrieved"), problems)
    sections = {name: _section(name, document.get(name), retrieved, problems) for name in SECTIONS}
    if problems:
        raise CatalogueError(problems)
    assert retrieved is not None  # a missing or invalid date is a problem above
    return Catalogue(
        retrieved=retrieved,
        kapsule_node_types=_only(NodeType, sections["kapsuleNodeTypes"]),
        kapsule_control_planes=_only(ControlPlaneType, sections["kapsuleControlPlanes"]),
        block_volume_types=_only(BlockVolumeType, sections["blockVolumeTypes"]),
        rdb_node_types=_only(DatabaseNodeType, sections["rdbNodeTypes"]),
        load_balancer_types=_only(LoadBalancerType, sections["loadBalancerTypes"]),
        public_gateway_types=_only(PublicGatewayType, sections["publicGatewayTypes"]),
        services=_only(Service, sections["services"]),
    )


def _read(path: Path) -> Mapping[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogueError([f"{path}: cannot be read as YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise CatalogueError([f"{path}: must be a mapping with 'retrieved' and the sections"])
    return document


def _retrieved(value: object, problems: list[str]) -> date | None:
    try:
        return _iso_date(value)
    except ValueError:
        problems.append("retrieved: must be the ISO date (YYYY-MM-DD) the catalogue was compiled")
        return None


def _section(name: SectionName, raw: object, retrieved: date | None, problems: list[str]) -> list[Entry]:
    if not isinstance(raw, dict):
        problems.append(f"{name}: missing, or not a mapping with 'entries'")
        return []
    problems.extend(f"{name}: unknown key {key!r}" for key in raw if key not in _SECTION_KEYS)
    if "membership" in raw:
        _validate(Membership, raw["membership"], f"{name}: membership", problems)
    items = raw.get("entries")
    if not isinstance(items, list) or not items:
        problems.append(f"{name}: 'entries' must be a non-empty list")
        return []
    defaults = {key: raw[key] for key in ("source", "checked") if key in raw}
    price_defaults = raw.get("priceDefaults") or {}
    if not isinstance(price_defaults, dict):
        problems.append(f"{name}: priceDefaults: must be a mapping (source, checked, publisher, ...)")
        price_defaults = {}
    entries = [
        _entry(
            name,
            index,
            item,
            defaults=defaults,
            price_defaults=price_defaults,
            unpriced=raw.get("unpriced"),
            problems=problems,
        )
        for index, item in enumerate(items)
    ]
    valid = [entry for entry in entries if entry is not None]
    problems.extend(_duplicates(name, valid))
    problems.extend(_after_retrieved(name, valid, retrieved))
    return valid


def _entry(
    section: SectionName,
    index: int,
    item: object,
    *,
    defaults: Mapping[str, Any],
    price_defaults: Mapping[str, Any],
    unpriced: object,
    problems: list[str],
) -> Entry | None:
    label = item.get("name") if isinstance(item, dict) else None
    where = f"{section}: entry {label!r}" if isinstance(label, str) else f"{section}: entry #{index + 1}"
    if not isinstance(item, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    data = {**defaults, **item}
    if isinstance(data.get("prices"), dict):
        data["prices"] = {**price_defaults, **data["prices"]}
    elif "prices" not in data and unpriced is not None and "unpriced" not in data:
        # The section's reason applies to the entries that record no price of their own.
        data["unpriced"] = unpriced
    entry = _validate(_ENTRY_MODELS[section], data, where, problems)
    return entry if isinstance(entry, Entry) else None


def _validate(model: type[BaseModel], data: object, where: str, problems: list[str]) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(where, error) for error in exc.errors())
        return None


def _describe(where: str, error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {field!r}"
    if error["type"] == "missing" and field in ("source", "checked"):
        return (
            f"{where}: no {field} (every fact needs its public https source and the date it was "
            "checked, on the entry or as the section default)"
        )
    if error["type"] == "missing" and field in ("prices.source", "prices.checked"):
        return (
            f"{where}: no {field} (every price needs its public https source and the date it was "
            "read, on the price or as the section's priceDefaults)"
        )
    if not field:  # a model-level rule (price or reason; one amount): the message says it all
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    return f"{where}: {field}: {error['msg'].removeprefix('Value error, ')}"


def _duplicates(section: SectionName, entries: Sequence[Entry]) -> list[str]:
    seen: dict[str, str] = {}
    problems: list[str] = []
    for entry in entries:
        key = entry.name.casefold()
        if key in seen:
            problems.append(f"{section}: entry {entry.name!r}: duplicate name (also listed as {seen[key]!r})")
        seen.setdefault(key, entry.name)
    return problems


def _after_retrieved(section: SectionName, entries: Sequence[Entry], retrieved: date | None) -> list[str]:
    if retrieved is None:
        return []
    problems: list[str] = []
    for entry in entries:
        dates = {"checked": entry.checked, "prices.checked": entry.prices.checked if entry.prices else None}
        problems.extend(
            f"{section}: entry {entry.name!r}: {field} {value} is after the catalogue's retrieved "
            f"date {retrieved}"
            for field, value in dates.items()
            if value is not None and value > retrieved
        )
    return problems


def _only(model: type[E], entries: Sequence[Entry]) -> tuple[E, ...]:
    return tuple(entry for entry in entries if isinstance(entry, model))


# --------------------------------------------------------------------------------------------
# The same questions, asked of the committed catalogue
# --------------------------------------------------------------------------------------------


def kapsule_node_type(name: str) -> NodeType | None:
    return load().kapsule_node_type(name)


def rdb_node_type(name: str) -> DatabaseNodeType | None:
    return load().rdb_node_type(name)


def load_balancer_type(name: str) -> LoadBalancerType | None:
    return load().load_balancer_type(name)


def public_gateway_type(name: str) -> PublicGatewayType | None:
    return load().public_gateway_type(name)


def control_plane(name: str) -> ControlPlaneType | None:
    return load().control_plane(name)


def block_volume_type(name: str) -> BlockVolumeType | None:
    return load().block_volume_type(name)


def service(name: str) -> Service | None:
    return load().service(name)


def find(section: SectionName, name: str) -> Entry | None:
    return load().find(section, name)


def names(section: SectionName) -> list[str]:
    return load().names(section)


def families(section: SectionName) -> list[str]:
    return load().families(section)


def hint(section: SectionName) -> str:
    return load().hint(section)

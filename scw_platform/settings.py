"""The base of every settings model, and the field types and checks several components share.

A settings model is a component's typed input as a stack file writes it: camelCase keys (snake_case
in Python), unknown keys refused (a typo must not be silently ignored), frozen once validated.
Field docstrings are the field descriptions: the configuration reference (docs/configuration.md)
is generated from them.

Checks here are facts about Scaleway and Kubernetes only. Policy (what a production environment
must have) is the program's: the library validates what a value is, never who may use it. The one
piece of context a check may read is the stack's ``region`` (zones and private endpoints depend
on it), passed as pydantic's validation context.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo
from pydantic.alias_generators import to_camel

from scw_platform import catalogue

#: Private endpoints of managed databases only work in the region's default zone.
DEFAULT_ZONE = {"fr-par": "fr-par-1", "nl-ams": "nl-ams-1", "pl-waw": "pl-waw-1"}
Region = Literal["fr-par", "nl-ams", "pl-waw"]
#: The zones of each region, as Scaleway's own SDK lists them (scaleway-core 2.12.0,
#: ``scaleway_core/bridge/zone.py``: ``ALL_ZONES``, fr-par-1..3, nl-ams-1..3, pl-waw-1..2; there is
#: no pl-waw-3). A Kapsule cluster's pools may sit in several zones of its region ("these clusters
#: can deploy node pools across various Availability Zones",
#: https://www.scaleway.com/en/docs/kubernetes/reference-content/multi-az-clusters/). Not
#: confirmed here: that Kapsule offers every one of these zones (that page lists none per region),
#: nor which node types each zone has ("not all node types are available in every AZ and stocks
#: might be limited", same page): a pool's type is checked against the catalogue, not its zone.
ZONES: dict[str, tuple[str, ...]] = {
    "fr-par": ("fr-par-1", "fr-par-2", "fr-par-3"),
    "nl-ams": ("nl-ams-1", "nl-ams-2", "nl-ams-3"),
    "pl-waw": ("pl-waw-1", "pl-waw-2"),
}

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")]
PgIdentifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
Hostname = Annotated[
    str, StringConstraints(max_length=253, pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
]


class Settings(BaseModel):
    """Base of every settings model (see the module docstring)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


def validation_context(info: ValidationInfo) -> dict[str, Any]:
    """The validation context: ``{"region": ...}`` when the caller knows the stack's region."""
    return info.context or {}


def strict_cidr(value: Any) -> Any:
    """An IPv4 network written as text, without host bits."""
    # "10.0.0.1/24" has host bits set: almost always a typo for a host or a network. Only text: an
    # integer (or true, which YAML hands over as 1) would silently become 0.0.0.1/32.
    if not isinstance(value, str):
        raise ValueError(f"must be an IPv4 network in CIDR notation like 203.0.113.0/28, got {value!r}")
    return ipaddress.IPv4Network(value, strict=True)


def zone_of_region(zone: str | None, info: ValidationInfo) -> str | None:
    """A zone field: one of the stack's region's zones (:data:`ZONES`), when the region is known."""
    region = validation_context(info).get("region")
    zones = ZONES.get(region or "")
    if zone is not None and zones and zone not in zones:
        raise ValueError(f"must be a zone of region {region} ({', '.join(zones)}), got {zone!r}")
    return zone


def catalogued(section: catalogue.SectionName, name: str) -> str:
    """A commercial type the catalogue of Scaleway types lists (scw_platform/data/scaleway.yaml)."""
    if catalogue.find(section, name) is None:
        raise ValueError(f"unknown type {name!r} ({catalogue.hint(section)})")
    return name


def no_duplicates(what: str, values: list[str]) -> None:
    """Refuse a list that holds a value twice, naming the duplicates."""
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, duplicates))}")

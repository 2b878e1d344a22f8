"""DNS for the front door: one A record per hostname in a Scaleway DNS zone, pointing at the
reserved IP. Only when the zone is managed in Scaleway DNS (``platform:dns.provider: scaleway``);
with an external DNS provider the operator points the names at the exported ``ingressIp``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumiverse_scaleway as scaleway
from pydantic import Field

from scw_platform.settings import Hostname, Settings

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:dns).
# --------------------------------------------------------------------------------------------


class DnsSettings(Settings):
    """``platform:dns``: where the domain's zone lives; with Scaleway DNS, A records are managed."""

    provider: Literal["scaleway", "external"] = "scaleway"
    """scaleway: the zone is in Scaleway DNS (records and DNS-01 are managed); external: you manage the
    records elsewhere.
    """
    zone: Hostname | None = None
    """The Scaleway DNS zone (default: platform:ingress.domain); every hostname must lie in it."""
    records: bool = True
    """With provider scaleway: manage one A record per hostname. Off while hand-made records still serve
    the old site (cutover rehearsal with DNS-01, docs/runbooks/cutover.md).
    """
    ttl: int = Field(default=300, ge=60, le=86400)
    """TTL in seconds of the managed A records."""

    @property
    def managed(self) -> bool:
        """The zone is in Scaleway DNS (DNS-01 possible)."""
        return self.provider == "scaleway"


def record_name(hostname: str, zone: str) -> str:
    """The record's name relative to its zone: ``www`` for www.example.com, ``""`` for the apex."""
    if hostname == zone:
        return ""
    suffix = "." + zone
    if not hostname.endswith(suffix):
        raise ValueError(f"{hostname} is not in the DNS zone {zone}")
    return hostname[: -len(suffix)]


def resource_suffix(hostname: str) -> str:
    """A stable, readable logical-name suffix for a hostname (``*.apps.x`` -> ``wildcard.apps.x``)."""
    return "wildcard" + hostname[1:] if hostname.startswith("*") else hostname


@dataclass(frozen=True, kw_only=True)
class DnsRecordsArgs:
    zone: str
    hostnames: Sequence[str]
    address: pulumi.Input[str]
    ttl: int = 300
    project_id: pulumi.Input[str] | None = None
    #: Resources the records must follow (the address's holder).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class DnsRecords(pulumi.ComponentResource):
    records: dict[str, scaleway.domain.Record]

    def __init__(self, name: str, args: DnsRecordsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:dns:DnsRecords", name, None, opts)
        self.records = {
            hostname: scaleway.domain.Record(
                f"{name}-{resource_suffix(hostname)}",
                dns_zone=args.zone,
                name=record_name(hostname, args.zone),
                type="A",
                data=args.address,
                ttl=args.ttl,
                project_id=args.project_id,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
            for hostname in args.hostnames
        }
        self.register_outputs({"fqdns": sorted(self.records)})

"""The Scaleway catalogue: committed facts and prices are sourced and dated, every entry states its
price or why it has none, the stack files only use catalogued types, and a broken catalogue is
refused with every problem named."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scw_platform import catalogue
from scw_platform.catalogue import SECTIONS, Catalogue, CatalogueError, Entry

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "scw_platform" / "data" / "scaleway.yaml"
SOURCE = "https://example.org/scaleway/specs"


@pytest.fixture(scope="module")
def committed() -> Catalogue:
    return catalogue.load(COMMITTED)


def _entries(cat: Catalogue) -> Iterator[tuple[str, Entry]]:
    for section in SECTIONS:
        for entry in cat.section(section):
            yield section, entry


# --------------------------------------------------------------------------------------------
# The committed catalogue
# --------------------------------------------------------------------------------------------


def test_default_load_is_the_committed_file_and_is_cached() -> None:
    assert catalogue.DEFAULT_PATH == COMMITTED
    assert catalogue.load() is catalogue.load()
    assert catalogue.load().names("kapsuleNodeTypes") == catalogue.load(COMMITTED).names("kapsuleNodeTypes")


def test_every_section_has_entries(committed: Catalogue) -> None:
    for section in SECTIONS:
        assert committed.section(section), section


def test_every_entry_has_an_https_source_and_a_checked_date(committed: Catalogue) -> None:
    for section, entry in _entries(committed):
        where = f"{section}/{entry.name}"
        url = urlsplit(entry.source)
        assert url.scheme == "https" and url.netloc, where
        assert type(entry.checked) is date, where
        assert entry.checked <= committed.retrieved, where
        if entry.prices is not None:
            assert urlsplit(entry.prices.source).scheme == "https", where
            assert type(entry.prices.checked) is date, where
            assert entry.prices.checked <= committed.retrieved, where
            assert entry.prices.publisher in ("scaleway", "third-party"), where


def test_every_entry_states_its_price_or_why_it_has_none(committed: Catalogue) -> None:
    for section, entry in _entries(committed):
        assert (entry.prices is None) != (entry.unpriced is None), f"{section}/{entry.name}"
        if entry.unpriced is not None:
            assert "No stored public page" in entry.unpriced, f"{section}/{entry.name}"


def test_checked_dates_are_iso_dates_in_the_file() -> None:
    # YAML turns an unquoted YYYY-MM-DD into a date: anything else (a timestamp, a number, a
    # free-form string) would show up here as another type.
    raw = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert type(raw["retrieved"]) is date
    for section in SECTIONS:
        items = raw[section]["entries"]
        dates = [raw[section].get("checked"), (raw[section].get("priceDefaults") or {}).get("checked")]
        dates += [item.get("checked") for item in items]
        dates += [(item.get("prices") or {}).get("checked") for item in items]
        for value in (v for v in dates if v is not None):
            assert type(value) is date and not isinstance(value, datetime), (section, value)


def _stack_usages() -> list[tuple[str, str, str]]:
    """(stack file, config key, type name) for every commercial type a committed stack file names."""
    usages = []
    for path in sorted(REPO.glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
        cluster = config.get("platform:cluster") or {}
        if cluster:
            usages.append((path.name, "kapsuleControlPlanes", cluster.get("type", "kapsule")))
        for pool in cluster.get("pools") or []:
            usages.append((path.name, "kapsuleNodeTypes", pool["nodeType"]))
            usages.append((path.name, "blockVolumeTypes", pool.get("rootVolumeType", "sbs_15k")))
        for key, section, field in (
            ("platform:database", "rdbNodeTypes", "nodeType"),
            ("platform:ingress", "loadBalancerTypes", "loadBalancerType"),
            ("platform:network", "publicGatewayTypes", "publicGatewayType"),
        ):
            value = (config.get(key) or {}).get(field)
            if value is not None:
                usages.append((path.name, section, value))
    return usages


def test_the_types_the_stack_files_use_are_catalogued(committed: Catalogue) -> None:
    usages = _stack_usages()
    # Guards against a vacuous pass (no stack file found, or the keys moved).
    assert any(section == "kapsuleNodeTypes" for _, section, _ in usages), usages
    lookups: dict[str, Callable[[str], Entry | None]] = {
        "kapsuleNodeTypes": committed.kapsule_node_type,
        "kapsuleControlPlanes": committed.control_plane,
        "blockVolumeTypes": committed.block_volume_type,
        "rdbNodeTypes": committed.rdb_node_type,
        "loadBalancerTypes": committed.load_balancer_type,
        "publicGatewayTypes": committed.public_gateway_type,
    }
    missing = [u for u in usages if lookups[u[1]](u[2]) is None]
    assert not missing, f"stack files use types the catalogue does not list: {missing}"


def test_lookups_return_the_catalogued_facts(committed: Catalogue) -> None:
    pro2_s = committed.kapsule_node_type("PRO2-S")
    assert pro2_s is not None and (pro2_s.family, pro2_s.vcpus, pro2_s.memory_gib) == ("PRO2", 8, 32)
    dev1_m = catalogue.kapsule_node_type("DEV1-M")
    assert dev1_m is not None and (dev1_m.vcpus, dev1_m.memory_gib, dev1_m.max_local_storage_gb) == (3, 4, 40)
    db = committed.rdb_node_type("db-pro2-xxs")  # the API's own spelling
    assert db is not None and db.name == "DB-PRO2-XXS" and (db.vcpus, db.memory_gb) == (2, 8)
    assert committed.public_gateway_type("VPC-GW-M") is not None
    assert committed.load_balancer_type("LB-S") is not None
    assert committed.kapsule_node_type("DEV1-XXL") is None
    assert committed.kapsule_node_type("DEV1-S") is None  # too little memory for Kapsule


def test_unconfirmed_facts_are_absent_not_guessed(committed: Catalogue) -> None:
    assert all(db.max_connections is None for db in committed.rdb_node_types)
    lb_gp_m = committed.load_balancer_type("LB-GP-M")
    assert lb_gp_m is not None and lb_gp_m.bandwidth_mbps is None
    # No public figure was found for these: they say so instead of carrying a guess.
    assert all(db.prices is None and db.unpriced for db in committed.rdb_node_types)
    assert all(gw.prices is None and gw.unpriced for gw in committed.public_gateway_types)
    for name in ("secret-manager-version", "rdb-backup-storage", "public-gateway-flexible-ipv4"):
        service = committed.service(name)
        assert service is not None and service.prices is None and service.unpriced, name


def _monthly(cat: Catalogue, section: catalogue.SectionName, name: str) -> Decimal:
    entry = cat.find(section, name)
    assert entry is not None and entry.prices is not None, (section, name)
    return entry.prices.monthly


def test_committed_prices_are_the_figures_their_sources_state(committed: Catalogue) -> None:
    # The Instance API listing's own monthly_price is hourly_price x 730: the catalogue keeps the
    # hourly figure, and the conversion gives the listing's monthly figure back.
    assert _monthly(committed, "kapsuleNodeTypes", "PRO2-M") == Decimal("326.1348")
    assert _monthly(committed, "kapsuleNodeTypes", "PRO2-S") == Decimal("163.0674")
    assert _monthly(committed, "kapsuleNodeTypes", "DEV1-M") == Decimal("14.74308")
    assert all(node.prices is not None for node in committed.kapsule_node_types)
    assert _monthly(committed, "kapsuleControlPlanes", "kapsule") == 0
    control_plane = committed.control_plane("kapsule")
    assert control_plane is not None and control_plane.prices is not None and control_plane.prices.free
    # Object Storage's FAQ: "EUR 0.00002/GB/hour ~EUR 0.0146/GB/month".
    assert _monthly(committed, "services", "object-storage-standard") == Decimal("0.0146")
    assert _monthly(committed, "services", "registry-private-storage") == Decimal("0.027")
    assert _monthly(committed, "services", "cockpit-custom-metrics") == Decimal("0.15")
    assert _monthly(committed, "services", "cockpit-logs-retention").quantize(Decimal("1e-12")) == Decimal(
        "0.060833333333"
    )
    logs = committed.service("cockpit-logs-retention")
    assert logs is not None and logs.free_retention_days == 7


def test_third_party_figures_say_so(committed: Catalogue) -> None:
    """Where no Scaleway page gave the figure, the record used is marked and explained."""
    third_party = [
        f"{section}/{entry.name}"
        for section, entry in _entries(committed)
        if entry.prices is not None and entry.prices.publisher == "third-party"
    ]
    assert third_party == [
        "kapsuleControlPlanes/kapsule-dedicated-4",
        "blockVolumeTypes/sbs_15k",
        "loadBalancerTypes/LB-S",
        "loadBalancerTypes/LB-GP-M",
        "services/lb-flexible-ipv4",
    ]
    for section, entry in _entries(committed):
        if entry.prices is not None and entry.prices.publisher == "third-party":
            assert entry.prices.notes and "OpenCost" in entry.prices.notes, f"{section}/{entry.name}"


def test_families_and_names(committed: Catalogue) -> None:
    assert committed.families("kapsuleNodeTypes") == [
        "DEV1",
        "GP1",
        "PLAY2",
        "PRO2",
        "POP2",
        "POP2-HC",
        "POP2-HM",
    ]
    assert committed.families("rdbNodeTypes") == ["DB-DEV", "DB-PLAY2", "DB-PRO2", "DB-POP2", "DB-GP"]
    assert committed.families("publicGatewayTypes") == []
    assert catalogue.families("kapsuleNodeTypes") == committed.families("kapsuleNodeTypes")
    assert committed.names("publicGatewayTypes") == ["VPC-GW-S", "VPC-GW-M", "VPC-GW-L", "VPC-GW-XL"]
    assert catalogue.names("kapsuleNodeTypes")[:3] == ["DEV1-M", "DEV1-L", "DEV1-XL"]


def test_hint_for_error_messages(committed: Catalogue) -> None:
    assert committed.hint("kapsuleNodeTypes") == (
        "allowed families: DEV1, GP1, PLAY2, PRO2, POP2, POP2-HC, POP2-HM; e.g. DEV1-M, GP1-XS, PLAY2-NANO"
    )
    assert catalogue.hint("publicGatewayTypes") == "allowed: VPC-GW-S, VPC-GW-M, VPC-GW-L, VPC-GW-XL"


def test_an_unknown_section_is_an_error(committed: Catalogue) -> None:
    with pytest.raises(ValueError, match="unknown catalogue section 'nodeTypes'"):
        committed.families("nodeTypes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Broken catalogues are refused, every problem named
# --------------------------------------------------------------------------------------------


UNPRICED = "No stored public page states it."


def _valid() -> dict[str, Any]:
    provenance = {"source": SOURCE, "checked": date(2026, 6, 1)}
    gap = {"unpriced": UNPRICED}
    return {
        "retrieved": date(2026, 12, 1),
        "kapsuleNodeTypes": {
            **provenance,
            **gap,
            "entries": [
                {"name": "PRO2-S", "family": "PRO2", "vcpus": 8, "memoryGiB": 32},
                {"name": "PRO2-M", "family": "PRO2", "vcpus": 16, "memoryGiB": 64},
            ],
        },
        "kapsuleControlPlanes": {"entries": [{"name": "kapsule", **provenance, **gap}]},
        "blockVolumeTypes": {"entries": [{"name": "sbs_15k", **provenance, **gap}]},
        "rdbNodeTypes": {"entries": [{"name": "DB-PRO2-XXS", "family": "DB-PRO2", **provenance, **gap}]},
        "loadBalancerTypes": {"entries": [{"name": "LB-S", "bandwidthMbps": 200, **provenance, **gap}]},
        "publicGatewayTypes": {"entries": [{"name": "VPC-GW-S", "bandwidthMbps": 100, **provenance, **gap}]},
        "services": {"entries": [{"name": "object-storage-standard", **provenance, **gap}]},
    }


@pytest.fixture
def write(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def _write(document: dict[str, Any]) -> Path:
        path = tmp_path / "scaleway.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path

    return _write


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(CatalogueError) as caught:
        catalogue.load(path)
    return tuple(caught.value.problems)


def test_a_valid_catalogue_loads(write: Callable[[dict[str, Any]], Path]) -> None:
    cat = catalogue.load(write(_valid()))
    assert cat.names("kapsuleNodeTypes") == ["PRO2-S", "PRO2-M"]
    node = cat.kapsule_node_type("PRO2-S")
    assert node is not None and node.source == SOURCE and node.checked == date(2026, 6, 1)


def test_an_entry_without_source_or_date_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    entry = document["rdbNodeTypes"]["entries"][0]
    del entry["source"], entry["checked"]
    problems = _problems(write(document))
    assert len(problems) == 2, problems
    assert all(p.startswith("rdbNodeTypes: entry 'DB-PRO2-XXS': no ") for p in problems), problems
    assert {p.split(": no ")[1].split(" ")[0] for p in problems} == {"source", "checked"}


def test_an_entry_may_override_its_section_default(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["kapsuleNodeTypes"]["entries"][1]["source"] = "https://example.org/other"
    cat = catalogue.load(write(document))
    sources = [node.source for node in cat.kapsule_node_types]
    assert sources == [SOURCE, "https://example.org/other"]


def test_a_duplicate_name_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["kapsuleNodeTypes"]["entries"].append(
        {"name": "pro2-s", "family": "PRO2", "vcpus": 8, "memoryGiB": 32}
    )
    problems = _problems(write(document))
    assert problems == ("kapsuleNodeTypes: entry 'pro2-s': duplicate name (also listed as 'PRO2-S')",)


def test_an_unknown_key_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    entry = document["kapsuleNodeTypes"]["entries"][1]
    entry["vcpu"] = entry.pop("vcpus")
    document["publicGatewayTypes"]["bandwith"] = 100
    problems = _problems(write(document))
    assert "kapsuleNodeTypes: entry 'PRO2-M': unknown key 'vcpu'" in problems
    assert "publicGatewayTypes: unknown key 'bandwith'" in problems


@pytest.mark.parametrize(
    ("field", "value"),
    [("vcpus", 0), ("vcpus", -2), ("memoryGiB", 0), ("memoryGiB", -1.5), ("vcpus", "8"), ("vcpus", True)],
)
def test_a_non_positive_or_non_numeric_size_is_refused(
    write: Callable[[dict[str, Any]], Path], field: str, value: object
) -> None:
    document = _valid()
    document["kapsuleNodeTypes"]["entries"][0][field] = value
    problems = _problems(write(document))
    assert len(problems) == 1 and problems[0].startswith(f"kapsuleNodeTypes: entry 'PRO2-S': {field}: ")


def test_database_memory_must_be_positive(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["rdbNodeTypes"]["entries"][0]["memoryGB"] = 0
    assert _problems(write(document))[0].startswith("rdbNodeTypes: entry 'DB-PRO2-XXS': memoryGB: ")


def test_a_source_must_be_a_public_https_url(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["loadBalancerTypes"]["entries"][0]["source"] = "http://example.org/lb"
    problems = _problems(write(document))
    assert problems == ("loadBalancerTypes: entry 'LB-S': source: must be a public https:// URL",)


def test_a_fact_checked_after_the_catalogue_was_retrieved_is_refused(
    write: Callable[[dict[str, Any]], Path],
) -> None:
    document = _valid()
    document["publicGatewayTypes"]["entries"][0]["checked"] = date(2027, 1, 1)
    problems = _problems(write(document))
    assert problems == (
        "publicGatewayTypes: entry 'VPC-GW-S': checked 2027-01-01 is after the catalogue's retrieved "
        "date 2026-12-01",
    )


def test_a_timestamp_is_not_a_checked_date(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["loadBalancerTypes"]["entries"][0]["checked"] = datetime(2026, 6, 1, 12, 0)
    assert _problems(write(document))[0].startswith("loadBalancerTypes: entry 'LB-S': checked: ")


def test_every_problem_is_listed_in_one_error(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    document["kapsuleNodeTypes"]["entries"][0]["vcpus"] = 0
    del document["rdbNodeTypes"]["entries"][0]["source"]
    document["extra"] = True
    problems = _problems(write(document))
    assert len(problems) == 3, problems
    assert any("'PRO2-S': vcpus" in p for p in problems)
    assert any("'DB-PRO2-XXS': no source" in p for p in problems)
    assert "unknown top-level key 'extra'" in problems


def test_a_missing_section_or_retrieved_date_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    del document["loadBalancerTypes"], document["retrieved"]
    problems = _problems(write(document))
    assert "loadBalancerTypes: missing, or not a mapping with 'entries'" in problems
    assert any(p.startswith("retrieved: ") for p in problems)


def test_an_unreadable_file_is_a_catalogue_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(CatalogueError, match="cannot be read as YAML"):
        catalogue.load(missing)


# --------------------------------------------------------------------------------------------
# Prices: sourced, dated, one amount each, and every gap said
# --------------------------------------------------------------------------------------------


def _priced(monthly_eur: object, **changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(_valid())
    entry = document["kapsuleNodeTypes"]["entries"][0]
    entry["prices"] = {
        "monthlyEur": monthly_eur,
        "publisher": "scaleway",
        "source": "https://example.org/pricing",
        "checked": date(2026, 11, 30),
        "region": "fr-par",
        **changes,
    }
    return document


def test_a_price_block_loads_on_an_existing_entry(write: Callable[[dict[str, Any]], Path]) -> None:
    node = catalogue.load(write(_priced(163.07))).kapsule_node_type("PRO2-S")
    assert node is not None and node.prices is not None
    assert (node.prices.monthly_eur, node.prices.region) == (163.07, "fr-par")
    assert node.prices.monthly == Decimal("163.07")
    # The section's reason stays with the entry that records no price of its own.
    other = catalogue.load(write(_priced(163.07))).kapsule_node_type("PRO2-M")
    assert other is not None and other.prices is None and other.unpriced == UNPRICED


def test_a_price_must_be_positive_and_sourced(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _priced(0)
    del document["kapsuleNodeTypes"]["entries"][0]["prices"]["source"]
    problems = _problems(write(document))
    assert sorted(problems) == [
        "kapsuleNodeTypes: entry 'PRO2-S': no prices.source (every price needs its public https "
        "source and the date it was read, on the price or as the section's priceDefaults)",
        "kapsuleNodeTypes: entry 'PRO2-S': prices.monthlyEur: Input should be greater than 0",
    ]


def test_hourly_and_daily_prices_convert_at_730_hours(write: Callable[[dict[str, Any]], Path]) -> None:
    hourly = catalogue.load(write(_priced(None, hourlyEur=0.44676))).kapsule_node_type("PRO2-S")
    assert hourly is not None and hourly.prices is not None
    assert hourly.prices.monthly == Decimal("326.1348")
    daily = catalogue.load(write(_priced(None, dailyEur=0.002))).kapsule_node_type("PRO2-S")
    assert daily is not None and daily.prices is not None
    assert daily.prices.monthly.quantize(Decimal("1e-12")) == Decimal("0.060833333333")


def test_a_price_has_exactly_one_amount(write: Callable[[dict[str, Any]], Path]) -> None:
    both = _problems(write(_priced(10, hourlyEur=0.01)))
    none = _problems(write(_priced(None)))
    expected = (
        "kapsuleNodeTypes: entry 'PRO2-S': prices: needs exactly one of monthlyEur, hourlyEur, "
        "dailyEur or free: true"
    )
    assert both == (expected,) and none == (expected,)


def test_free_is_said_not_a_zero(write: Callable[[dict[str, Any]], Path]) -> None:
    node = catalogue.load(write(_priced(None, free=True))).kapsule_node_type("PRO2-S")
    assert node is not None and node.prices is not None and node.prices.monthly == 0
    assert _problems(write(_priced(None, free=False)))  # only `free: true` means free


def test_a_price_names_its_publisher(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _priced(10)
    del document["kapsuleNodeTypes"]["entries"][0]["prices"]["publisher"]
    assert _problems(write(document)) == (
        "kapsuleNodeTypes: entry 'PRO2-S': prices.publisher: Field required",
    )
    wrong = _problems(write(_priced(10, publisher="a blog")))
    assert wrong[0].startswith("kapsuleNodeTypes: entry 'PRO2-S': prices.publisher: Input should be")


def test_an_entry_without_price_or_reason_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    del document["loadBalancerTypes"]["entries"][0]["unpriced"]
    problems = _problems(write(document))
    assert problems == (
        "loadBalancerTypes: entry 'LB-S': needs prices (with their source and date) or unpriced: "
        "<why no public figure is recorded>",
    )


def test_an_entry_with_both_a_price_and_a_reason_is_refused(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _priced(10)
    document["kapsuleNodeTypes"]["entries"][0]["unpriced"] = UNPRICED
    assert _problems(write(document)) == (
        "kapsuleNodeTypes: entry 'PRO2-S': needs either prices (with their source and date) or "
        "unpriced: <why no public figure is recorded>, not both",
    )


def test_price_defaults_fill_the_entries_prices(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    section = document["kapsuleNodeTypes"]
    section["priceDefaults"] = {"publisher": "scaleway", "source": SOURCE, "checked": date(2026, 6, 2)}
    section["entries"][0]["prices"] = {"hourlyEur": 0.22338}
    node = catalogue.load(write(document)).kapsule_node_type("PRO2-S")
    assert node is not None and node.prices is not None
    assert (node.prices.source, node.prices.checked) == (SOURCE, date(2026, 6, 2))
    # Without the defaults, the price would have no provenance: refused.
    del section["priceDefaults"]
    problems = _problems(write(document))
    assert {p.split(": no ")[1].split(" ")[0] for p in problems if ": no " in p} == {
        "prices.source",
        "prices.checked",
    }


def test_a_service_price_says_its_unit(write: Callable[[dict[str, Any]], Path]) -> None:
    document = _valid()
    service = document["services"]["entries"][0]
    del service["unpriced"]
    service["prices"] = {
        "hourlyEur": 0.00002,
        "publisher": "scaleway",
        "source": SOURCE,
        "checked": date(2026, 6, 1),
    }
    assert _problems(write(document)) == (
        "services: entry 'object-storage-standard': prices.unit: a service's price must say what one unit is",
    )
    service["prices"]["unit"] = "GB-month"
    entry = catalogue.load(write(document)).service("object-storage-standard")
    assert entry is not None and entry.prices is not None and entry.prices.monthly == Decimal("0.0146")


def test_a_price_read_after_the_catalogue_was_retrieved_is_refused(
    write: Callable[[dict[str, Any]], Path],
) -> None:
    problems = _problems(write(_priced(10, checked=date(2027, 1, 2))))
    assert problems == (
        "kapsuleNodeTypes: entry 'PRO2-S': prices.checked 2027-01-02 is after the catalogue's "
        "retrieved date 2026-12-01",
    )

"""Inputs the configuration used to accept and now refuses, each naming its key: an empty tag
pattern, unknown commercial types, label syntax, app egress to private or special ranges,
repository paths that climb out, reserved database names, an upgrade policy that cannot move,
and a production without its restore check or contact points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from program import config, model
from program.config import ConfigError

#: The deploy-time secrets the committed stacks need (prod's Telegram bot and heartbeat receiver).
SECRETS = dict.fromkeys(
    (
        "gitopsRepoCredential",
        "gitopsWriteCredential",
        "argocdWebhookSecret",
        "alertTelegramBotToken",
        "alertHeartbeatUrl",
    ),
    "s",
)


def _problems(raw: dict[str, Any]) -> str:
    platform = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("scaleway:")}
    with pytest.raises(ConfigError) as caught:
        config.load(platform, scaleway, stack="t", project="platform", secrets=SECRETS)
    return str(caught.value)


def _accepted(raw: dict[str, Any]) -> model.PlatformConfig:
    platform = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("scaleway:")}
    return config.load(platform, scaleway, stack="t", project="platform", secrets=SECRETS)


Change = Callable[[dict[str, Any]], None]


def _pool(**changes: Any) -> Change:
    return lambda raw: raw["platform:cluster"]["pools"][0].update(changes)


def _egress(cidr: str) -> Change:
    return lambda raw: raw["platform:apps"][0].__setitem__(
        "egress", [{"cidr": cidr, "ports": [443], "description": "x"}]
    )


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            lambda raw: raw["platform:gitops"].__setitem__(
                "imageUpdates", [{"app": "website", "allowTags": ""}]
            ),
            "platform:gitops.imageUpdates[0].allowTags",
            "at least 1 character",
        ),
        (
            lambda raw: raw["platform:gitops"].__setitem__(
                "imageUpdates", [{"app": "website", "allowTags": r"^v(?!0)\d+$"}]
            ),
            "platform:gitops.imageUpdates[0].allowTags",
            "must be an RE2 expression",
        ),
        (
            _pool(nodeType="DEV1-XXL"),
            "platform:cluster.pools[0].nodeType",
            "unknown type 'DEV1-XXL' (allowed families:",
        ),
        (
            lambda raw: raw["platform:database"].__setitem__("nodeType", "DB-HUGE"),
            "platform:database.nodeType",
            "unknown type 'DB-HUGE'",
        ),
        (
            lambda raw: raw["platform:ingress"].__setitem__("loadBalancerType", "LB-XXL"),
            "platform:ingress.loadBalancerType",
            "unknown type 'LB-XXL'",
        ),
        (
            lambda raw: raw["platform:network"].__setitem__("publicGatewayType", "VPC-GW-XXL"),
            "platform:network.publicGatewayType",
            "unknown type 'VPC-GW-XXL'",
        ),
        (
            _pool(labels={"workload": "x" * 5000}),
            "platform:cluster.pools[0].labels",
            "is not a valid label value",
        ),
        (
            _pool(labels={"bad key!": "x"}),
            "platform:cluster.pools[0].labels",
            "is not a valid Kubernetes label key",
        ),
        (
            _pool(labels={"node-role.kubernetes.io/admin": "x"}),
            "platform:cluster.pools[0].labels",
            "uses a prefix reserved for Kubernetes",
        ),
        (
            lambda raw: raw["platform:cluster"]["apiAllowedRanges"][0].__setitem__("cidr", True),
            "platform:cluster.apiAllowedRanges[0].cidr",
            "must be an IPv4 network in CIDR notation like 203.0.113.0/28, got True",
        ),
        (
            lambda raw: raw["platform:cluster"]["apiAllowedRanges"][0].__setitem__("cidr", 1),
            "platform:cluster.apiAllowedRanges[0].cidr",
            "got 1",
        ),
        (
            lambda raw: raw["platform:cluster"]["apiAllowedRanges"].append(
                dict(raw["platform:cluster"]["apiAllowedRanges"][0])
            ),
            "platform:cluster.apiAllowedRanges",
            "duplicate range '203.0.113.0/28'",
        ),
        (
            lambda raw: raw["platform:apps"][0].__setitem__("gitopsPath", "a/" * 200 + "a"),
            "platform:apps[0].gitopsPath",
            "at most 255 characters",
        ),
        (
            lambda raw: raw["platform:operations"]["restoreCheck"]["databases"][0]["tables"].append(
                "members"
            ),
            "platform:operations.restoreCheck.databases[0].tables",
            "duplicate table 'members'",
        ),
        (
            lambda raw: raw["platform:operations"]["restoreCheck"]["databases"][0]["minRows"].__setitem__(
                "members", True
            ),
            "platform:operations.restoreCheck.databases[0].minRows.members",
            "valid integer",
        ),
        (
            lambda raw: raw["platform:operations"]["restoreCheck"]["bucketAdmins"].append(
                raw["platform:operations"]["restoreCheck"]["bucketAdmins"][0]
            ),
            "platform:operations.restoreCheck.bucketAdmins",
            "duplicate bucket admin",
        ),
        (
            _pool(upgradePolicy={"maxSurge": 0, "maxUnavailable": 0}),
            "platform:cluster.pools[0].upgradePolicy",
            "both be 0",
        ),
        (_egress("169.254.169.254/32"), "platform:apps[0].egress[0].cidr", "the metadata service"),
        (_egress("169.254.0.0/16"), "platform:apps[0].egress[0].cidr", "link-local"),
        (
            _egress("100.64.1.0/24"),
            "platform:apps[0].egress[0].cidr",
            "carrier-grade NAT: the cluster's pod range",
        ),
        (_egress("10.32.0.0/20"), "platform:apps[0].egress[0].cidr", "the cluster's service range"),
        (_egress("192.168.1.0/24"), "platform:apps[0].egress[0].cidr", "private, RFC 1918"),
        (_egress("127.0.0.1/32"), "platform:apps[0].egress[0].cidr", "loopback"),
        (_egress("128.0.0.0/1"), "platform:apps[0].egress[0].cidr", "wider than /16"),
        (_egress("0.0.0.0/0"), "platform:apps[0].egress[0].cidr", "wider than /16"),
        (
            lambda raw: raw["platform:apps"][0].__setitem__("gitopsPath", "apps/../environments/tooling"),
            "platform:apps[0].gitopsPath",
            "without '.' or '..' segments",
        ),
        (
            lambda raw: raw["platform:apps"][0].__setitem__("gitopsPath", "/etc/passwd"),
            "platform:apps[0].gitopsPath",
            "must match",
        ),
        (
            lambda raw: raw["platform:database"]["databases"][0].__setitem__("user", "postgres"),
            "platform:database.databases[0].user",
            "'postgres' is reserved",
        ),
        (
            lambda raw: raw["platform:database"]["databases"][0].__setitem__("user", "platform_admin"),
            "platform:database.databases[0].user",
            "'platform_admin' is reserved",
        ),
        (
            lambda raw: raw["platform:database"]["databases"][0].__setitem__("name", "pg_catalog"),
            "platform:database.databases[0].name",
            "'pg_catalog' is reserved",
        ),
        (
            lambda raw: raw["platform:operations"].pop("restoreCheck"),
            "platform:operations.restoreCheck",
            "required for role production",
        ),
        (
            lambda raw: raw["platform:operations"]["observability"].__setitem__("contactPoints", []),
            "platform:operations.observability.contactPoints",
            "at least one contact point for role production",
        ),
        (
            lambda raw: raw["platform:operations"].pop("observability"),
            "platform:operations.observability",
            "required for role production",
        ),
    ],
)
def test_a_hole_is_closed(
    stack_config: Callable[[str], dict[str, Any]], change: Change, key: str, message: str
) -> None:
    raw = stack_config("prod")
    change(raw)
    problems = _problems(raw)
    assert any(line.startswith(f"  - {key}:") and message in line for line in problems.splitlines()), problems


@pytest.mark.parametrize(
    "change",
    [
        _egress("203.0.113.0/24"),
        _egress("198.51.100.7/32"),
        _pool(labels={"workload": "builds", "platform.scw/pool": "apps"}),
        _pool(upgradePolicy={"maxSurge": 0, "maxUnavailable": 1}),
        lambda raw: raw["platform:database"]["databases"][0].__setitem__("user", "website_app"),
    ],
)
def test_the_valid_neighbours_stay_accepted(
    stack_config: Callable[[str], dict[str, Any]], change: Change
) -> None:
    raw = stack_config("prod")
    change(raw)
    assert _accepted(raw).environment == "prod"


def test_the_tooling_stack_also_needs_its_acl(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:cluster"]["apiAllowedRanges"] = []
    assert "platform:cluster.apiAllowedRanges: required for role tooling" in _problems(raw)


def test_a_stack_name_the_file_system_refuses_is_a_clear_error() -> None:
    from offline import runner

    with pytest.raises(FileNotFoundError, match="no stack file"):
        runner.read_stack_config("x" * 5000)


def test_an_overlong_stack_reference_is_refused() -> None:
    from program import environments
    from tests.harness import environments_document

    document = environments_document({"tooling": {"stack": "organization/platform/" + "x" * 300}})
    with pytest.raises(
        environments.EnvironmentsError, match=r"tooling\.stack: String should have at most 200"
    ):
        environments.parse(document)

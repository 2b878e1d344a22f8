"""Severity routing, Telegram and the dead man's switch with backend cockpit (issue 16, items 2
and 4): the platform's Alertmanager configuration, with its credentials inline, loaded into
Cockpit's alert manager by a mimirtool Job; checked with Debian's amtool."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import runner
from program import alerts
from scw_platform import cockpit_routing as routing
from scw_platform import observability as obs
from scw_platform.observability import ContactPoint, ObservabilitySettings
from tests.harness import plaintext_secrets, unwrap
from tests.unit.test_alert_routing import AMTOOL, _routes_to

OBS = "platform:operations"
PAGER = {"name": "oncall", "kind": "telegram", "chatId": -1001234567890, "receives": "page"}
CHANNEL = {"name": "team", "kind": "telegram", "chatId": "-1009876543210", "receives": "channel"}
HOOK = {"name": "chat", "kind": "webhook"}
CREDENTIALS = {
    obs.TELEGRAM_SECRET: "123456:bot-token",
    obs.WEBHOOK_SECRET: "https://chat.example.com/hook",
    obs.HEARTBEAT_SECRET: "https://beat.example.com/ping",
}


def _settings(
    *points: dict[str, Any], heartbeat: bool = False, backend: str = "cockpit"
) -> ObservabilitySettings:
    return ObservabilitySettings.model_validate(
        {"backend": backend, "contactPoints": list(points), "heartbeat": heartbeat}
    )


def _points(*raw: dict[str, Any]) -> list[ContactPoint]:
    return [ContactPoint.model_validate(point) for point in raw]


# --- When the routing is loaded ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (_settings({"name": "a", "email": "a@example.com"}), False),
        (_settings(PAGER), True),
        (_settings(HOOK), True),
        (_settings(heartbeat=True), True),
        (_settings(PAGER, backend="prometheus"), False),
    ],
)
def test_only_backend_cockpit_with_what_email_cannot_do_loads_a_routing(
    settings: ObservabilitySettings, expected: bool
) -> None:
    assert routing.routed(settings) is expected


def test_the_component_refuses_what_it_cannot_own() -> None:
    with pytest.raises(ValueError, match="backend cockpit with telegram"):
        routing.CockpitRoutingArgs(
            environment="prod",
            region="fr-par",
            project_id="p",
            settings=_settings(PAGER, backend="prometheus"),
        )
    with pytest.raises(ValueError, match="email contact points are Scaleway's own"):
        routing.CockpitRoutingArgs(
            environment="prod",
            region="fr-par",
            project_id="p",
            settings=_settings(PAGER, {"name": "a", "email": "a@example.com"}),
        )


# --- The configuration ---------------------------------------------------------------------------


def test_credentials_are_written_inline_where_the_in_cluster_form_names_files() -> None:
    config = routing.inline_config(_points(PAGER, CHANNEL, HOOK), heartbeat=True, credentials=CREDENTIALS)
    text = yaml.safe_dump(config)
    assert "_file" not in text and obs.ALERTMANAGER_SECRETS not in text
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["oncall"]["telegram_configs"] == [
        {"chat_id": -1001234567890, "send_resolved": True, "bot_token": "123456:bot-token"}
    ]
    assert receivers["chat"]["webhook_configs"][0]["url"] == "https://chat.example.com/hook"
    assert receivers["heartbeat"]["webhook_configs"][0]["url"] == "https://beat.example.com/ping"
    # The routes are the in-cluster Alertmanager's, unchanged: one generator for both backends.
    in_cluster, _ = obs.alertmanager_config(_points(PAGER, CHANNEL, HOOK), heartbeat=True)
    assert config["route"] == in_cluster["route"]


def test_a_missing_credential_is_an_error_not_an_empty_value() -> None:
    with pytest.raises(ValueError, match="no value for the credentials alert-heartbeat"):
        routing.inline_config(
            _points(PAGER), heartbeat=True, credentials={obs.TELEGRAM_SECRET: "123456:bot-token"}
        )


def test_the_load_is_named_by_the_routing_and_never_by_a_credential() -> None:
    points = _points(PAGER, CHANNEL)
    first = routing.config_hash(points, heartbeat=False)
    assert first == routing.config_hash(points, heartbeat=False)
    assert first != routing.config_hash(points, heartbeat=True)
    assert first != routing.config_hash(
        _points(PAGER, CHANNEL | {"chatId": "-1000000000001"}), heartbeat=False
    )
    # The hash is over the redacted form: no credential value can change (or be read from) it.
    redacted = routing.inline_config(
        points, heartbeat=False, credentials={obs.TELEGRAM_SECRET: routing.REDACTED}
    )
    assert yaml.safe_dump(redacted).count(routing.REDACTED) == 2


@pytest.mark.skipif(AMTOOL is None, reason="amtool not found: install Debian's prometheus-alertmanager")
def test_amtool_accepts_the_loaded_configuration_as_rendered(tmp_path: Path) -> None:
    """Unlike the in-cluster form, nothing is swapped before the check: the inline keys are what
    every Alertmanager version (Debian's 0.25 included) reads."""
    assert AMTOOL is not None
    config = routing.inline_config(_points(PAGER, CHANNEL, HOOK), heartbeat=True, credentials=CREDENTIALS)
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _routes_to(path, "alertname=AppEndpointDown", "severity=critical") == {"oncall", "chat"}
    assert _routes_to(path, "alertname=ClusterMetricsAbsent", "severity=warning") == {"team", "chat"}
    assert _routes_to(path, "alertname=Watchdog", "severity=heartbeat") == {"heartbeat"}


def test_the_load_job_is_restricted_and_reads_its_tenant_from_the_token_secret() -> None:
    spec = routing.load_job_spec("https://am.example")
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["alertmanager", "load", "/config/alertmanager.yaml"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MIMIR_ADDRESS"]["value"] == "https://am.example"
    assert env["MIMIR_TENANT_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": routing.TOKEN_SECRET,
        "key": "token",
    }
    assert pod["volumes"] == [{"name": "config", "secret": {"secretName": routing.CONFIG_SECRET}}]
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["template"]["metadata"]["labels"] == routing.LOAD_LABELS


# --- Through the program -------------------------------------------------------------------------


def test_prod_on_cockpit_with_telegram_and_a_heartbeat_loads_its_routing() -> None:
    """The committed prod: Telegram pages and channel, the heartbeat, backend cockpit."""
    plan = runner.run("prod")
    (manager,) = plan.by_type("scaleway:observability/alertManager:AlertManager")
    # One writer: Scaleway's contact points stay empty, the loaded configuration routes.
    assert not manager.inputs.get("contactPoints")
    # The same alert manager the stack declared with email contact points (not a new one).
    assert manager.aliases > 0
    tokens = {r.inputs["name"]: r for r in plan.by_type("scaleway:observability/token:Token")}
    assert tokens["prod-alertmanager"].inputs["scopes"] == {"setupAlerts": True}
    secrets = {
        r.inputs["metadata"]["name"]: r
        for r in plan.by_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"].get("namespace") == obs.MONITORING_NAMESPACE
    }
    config_secret = secrets[routing.CONFIG_SECRET]
    assert plaintext_secrets(config_secret.inputs) == []
    loaded = yaml.safe_load(unwrap(unwrap(config_secret.inputs["stringData"])[routing.CONFIG_KEY]))
    receivers = {r["name"]: r for r in loaded["receivers"]}
    assert set(receivers) == {obs.NOWHERE, "platform-oncall", "platform-team", obs.HEARTBEAT_RECEIVER}
    assert receivers["platform-oncall"]["telegram_configs"][0]["chat_id"] == -1001000000001
    assert "_file" not in yaml.safe_dump(loaded)
    (job,) = [
        r
        for r in plan.by_type("kubernetes:batch/v1:Job")
        if r.inputs["metadata"]["name"].startswith("platform-alertmanager-")
    ]
    settings = ObservabilitySettings.model_validate(
        {
            "contactPoints": [
                {
                    "name": "platform-oncall",
                    "kind": "telegram",
                    "chatId": "-1001000000001",
                    "receives": "page",
                },
                {
                    "name": "platform-team",
                    "kind": "telegram",
                    "chatId": "-1001000000002",
                    "receives": "channel",
                },
            ],
            "heartbeat": True,
        }
    )
    digest = routing.config_hash(settings.contact_points, heartbeat=True)
    assert job.inputs["metadata"]["name"] == f"platform-alertmanager-{digest}"
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    address = {e["name"]: e.get("value") for e in container["env"]}["MIMIR_ADDRESS"]
    assert address.endswith(".alertmanager.cockpit.fr-par.scw.cloud")
    assert {config_secret.urn, secrets[routing.TOKEN_SECRET].urn} <= set(job.dependencies)
    # The Watchdog is evaluated where every other cluster rule is: Cockpit's custom source.
    (rule_files,) = [
        r
        for r in plan.by_type("kubernetes:core/v1:ConfigMap")
        if r.inputs["metadata"]["name"] == obs.RULES_CONFIG_MAP
    ]
    custom = yaml.safe_load(rule_files.inputs["data"]["custom.yaml"])
    assert alerts.WATCHDOG_GROUP in [g["name"] for g in custom["groups"]]


def test_email_contact_points_alone_keep_scaleway_routing(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("prod")
    raw[OBS]["observability"] = {
        **raw[OBS]["observability"],
        "contactPoints": [{"name": "oncall", "email": "oncall@example.com"}],
        "heartbeat": False,
    }
    plan = runner.run("prod", config=raw)
    (manager,) = plan.by_type("scaleway:observability/alertManager:AlertManager")
    assert [p["email"] for p in manager.inputs["contactPoints"]] == ["oncall@example.com"]
    assert not [
        r for r in plan.by_type("kubernetes:batch/v1:Job") if "alertmanager" in r.inputs["metadata"]["name"]
    ]
    assert not [
        r
        for r in plan.by_type("scaleway:observability/token:Token")
        if r.inputs["name"].endswith("-alertmanager")
    ]

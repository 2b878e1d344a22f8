"""Alerts that reach people, and only the right ones: Telegram contact points, routing by
severity (critical pages, warning goes to the channel) and the dead man's switch (issue 16,
items 2 and 4). The rendered Alertmanager configuration is checked with Debian's amtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from offline import runner
from program import alerts
from scw_platform import observability as obs
from scw_platform.observability import ContactPoint, alertmanager_config
from tests.harness import new_problems, plaintext_secrets, unwrap

AMTOOL = shutil.which("amtool")
OBS = "platform:operations"
PAGER = {"name": "oncall", "kind": "telegram", "chatId": -1001234567890, "receives": "page"}
CHANNEL = {"name": "team", "kind": "telegram", "chatId": "-1009876543210", "receives": "channel"}
HOOK = {"name": "chat", "kind": "webhook"}


def _points(*raw: dict[str, Any]) -> list[ContactPoint]:
    return [ContactPoint.model_validate(point) for point in raw]


# --- Settings ----------------------------------------------------------------------------------


def test_a_telegram_chat_id_from_yaml_is_kept_as_its_number() -> None:
    (point,) = _points(PAGER)
    assert point.chat_id == "-1001234567890" and point.receives == "page"


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"name": "x", "kind": "telegram"}, "chat_id", "required for kind telegram"),
        ({"name": "x", "kind": "telegram", "chatId": "@platform"}, "chat_id", "does not accept @names"),
        ({"name": "x", "kind": "telegram", "chatId": "12ab"}, "chat_id", "numeric id"),
        ({"name": "x", "kind": "telegram", "chatId": True}, "chat_id", "numeric id"),
        ({"name": "x", "kind": "webhook", "chatId": "-1"}, "chat_id", "only for kind telegram, not webhook"),
        (
            {"name": "x", "kind": "telegram", "chatId": "-1", "email": "a@example.com"},
            "email",
            "not allowed for kind telegram",
        ),
        ({"name": "x", "kind": "sms"}, "kind", "'email', 'webhook' or 'telegram'"),
        (
            {"name": "x", "email": "a@example.com", "receives": "pager"},
            "receives",
            "'all', 'page' or 'channel'",
        ),
    ],
)
def test_bad_contact_points_name_the_field(raw: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ContactPoint.model_validate(raw)
    errors = caught.value.errors()
    # Pydantic names a given key by its alias (chatId) and a missing one by the field (chat_id).
    names = {field, re.sub(r"_(\w)", lambda m: m.group(1).upper(), field)}
    assert any(names & set(map(str, e["loc"])) and message in e["msg"] for e in errors), errors


def _with_observability(**observability: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw[OBS]["observability"] = {**raw[OBS]["observability"], **observability}

    return mutate


@pytest.mark.parametrize(
    ("observability", "secrets", "expected"),
    [
        # Backend cockpit (prod's): the routing is loaded into Cockpit's alert manager, which
        # then has no email contact points (prod's committed ones are Telegram chats).
        (
            {"contactPoints": [PAGER, CHANNEL]},
            {},
            "platform:alertTelegramBotToken: required with the telegram contact point",
        ),
        (
            {"contactPoints": [PAGER, CHANNEL, {"name": "a", "email": "a@example.com"}]},
            {"alertTelegramBotToken": "t"},
            "platform:operations.observability.contactPoints[2].kind: email cannot be combined with "
            "telegram, webhook or the heartbeat on backend cockpit",
        ),
        (
            {"heartbeat": True, "contactPoints": [{"name": "a", "email": "a@example.com"}]},
            {"alertHeartbeatUrl": "https://example.com/beat"},
            "platform:operations.observability.contactPoints[0].kind: email cannot be combined",
        ),
        (
            {"heartbeat": True, "contactPoints": []},
            {"alertHeartbeatUrl": "https://example.com/beat"},
            "platform:operations.observability.contactPoints: needs a webhook or telegram contact point",
        ),
        (
            {"contactPoints": [PAGER, CHANNEL], "heartbeat": True},
            {"alertTelegramBotToken": "t"},
            "platform:alertHeartbeatUrl: required with platform:operations.observability.heartbeat",
        ),
        (
            {"contactPoints": [CHANNEL, HOOK | {"receives": "channel"}]},
            {"alertTelegramBotToken": "t", "alertWebhookUrl": "https://example.com/hook"},
            "platform:operations.observability.contactPoints: no webhook or telegram contact point receives "
            "critical alerts",
        ),
        (
            {"contactPoints": [{"name": "a", "email": "a@example.com", "receives": "page"}]},
            {},
            "platform:operations.observability.contactPoints[0].receives: 'page' is for webhook and "
            "telegram contact points",
        ),
        (
            {"contactPoints": [HOOK]},
            {},
            "platform:alertWebhookUrl: required with the webhook contact point",
        ),
        (
            {"backend": "prometheus", "contactPoints": [PAGER]},
            {},
            "platform:alertTelegramBotToken: required with the telegram contact point",
        ),
        (
            {"backend": "prometheus", "contactPoints": [PAGER], "heartbeat": True},
            {"alertTelegramBotToken": "t"},
            "platform:alertHeartbeatUrl: required with platform:operations.observability.heartbeat",
        ),
        (
            {"backend": "prometheus", "contactPoints": [CHANNEL]},
            {"alertTelegramBotToken": "t"},
            "platform:operations.observability.contactPoints: no webhook or telegram contact point receives "
            "critical alerts",
        ),
        (
            {"backend": "prometheus", "contactPoints": [PAGER]},
            {"alertTelegramBotToken": "t"},
            "platform:operations.observability.contactPoints: no webhook or telegram contact point receives "
            "warning alerts",
        ),
        (
            {"backend": "prometheus", "contactPoints": [{"name": "a", "email": "a@example.com"}]},
            {},
            "platform:operations.observability.contactPoints: needs a webhook or telegram contact point",
        ),
    ],
)
def test_routing_that_cannot_work_is_refused(
    stack_config: Callable[[str], dict[str, Any]],
    observability: dict[str, Any],
    secrets: dict[str, str],
    expected: str,
) -> None:
    problems = new_problems(stack_config, "prod", _with_observability(**observability), secrets=secrets)
    assert any(line.startswith(expected) for line in problems), problems


# --- The Alertmanager configuration --------------------------------------------------------------


def test_pages_and_channel_messages_go_where_each_contact_point_asked() -> None:
    config, secrets = alertmanager_config(_points(PAGER, CHANNEL, HOOK), heartbeat=True)
    route = config["route"]
    assert route["receiver"] == obs.NOWHERE
    heartbeat, *by_severity = route["routes"]
    assert heartbeat == {
        "receiver": "heartbeat",
        "matchers": ['alertname="Watchdog"'],
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "1m",
        "continue": False,
    }
    assert [(r["matchers"], r["receiver"], r["continue"]) for r in by_severity] == [
        (['severity="critical"'], "oncall", True),
        (['severity="critical"'], "chat", True),
        (['severity="warning"'], "team", True),
        (['severity="warning"'], "chat", True),
    ]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {obs.NOWHERE, "oncall", "team", "chat", "heartbeat"}
    assert receivers["oncall"]["telegram_configs"] == [
        {
            "bot_token_file": "/etc/alertmanager/secrets/alert-telegram/token",
            "chat_id": -1001234567890,
            "send_resolved": True,
        }
    ]
    assert receivers["heartbeat"]["webhook_configs"][0]["url_file"].endswith("/alert-heartbeat/url")
    assert secrets == ["alert-heartbeat", "alert-telegram", "alert-webhook"]
    # No credential in the configuration itself, only file paths.
    assert "token" not in yaml.safe_dump(config).replace("bot_token_file", "").replace("/token", "")


def test_without_heartbeat_the_watchdog_has_no_route() -> None:
    config, secrets = alertmanager_config(_points(HOOK), heartbeat=False)
    assert not [r for r in config["route"]["routes"] if r["receiver"] == "heartbeat"]
    assert secrets == ["alert-webhook"]


def _amtool_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    """The rendered config for Debian's amtool 0.25, which predates the file forms of the two
    credentials (telegram_configs' bot_token_file: Alertmanager 0.26; webhook_configs' url_file:
    0.27; kube-prometheus-stack ships a newer Alertmanager): only those two keys are swapped for
    their inline forms, everything else is checked as rendered."""
    for receiver in config["receivers"]:
        for telegram in receiver.get("telegram_configs", []):
            assert telegram.pop("bot_token_file").startswith(obs.ALERTMANAGER_SECRETS)
            telegram["bot_token"] = "placeholder-for-amtool-0.25"
        for hook in receiver.get("webhook_configs", []):
            assert hook.pop("url_file").startswith(obs.ALERTMANAGER_SECRETS)
            hook["url"] = "https://example.com/hook"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _routes_to(path: Path, *labels: str) -> set[str]:
    assert AMTOOL is not None
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={path}", *labels],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name for name in result.stdout.strip().split(",") if name}


@pytest.mark.skipif(AMTOOL is None, reason="amtool not found: install Debian's prometheus-alertmanager")
def test_amtool_accepts_the_configuration_and_routes_as_designed(tmp_path: Path) -> None:
    assert AMTOOL is not None
    config, _ = alertmanager_config(_points(PAGER, CHANNEL, HOOK), heartbeat=True)
    path = _amtool_config(tmp_path, config)
    check = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _routes_to(path, "alertname=AppEndpointDown", "severity=critical") == {"oncall", "chat"}
    assert _routes_to(path, "alertname=KubeNodeNotReady", "severity=warning") == {"team", "chat"}
    # The dead man's switch reaches the heartbeat receiver and nobody else.
    assert _routes_to(path, "alertname=Watchdog", "severity=heartbeat") == {"heartbeat"}
    assert _routes_to(path, "alertname=Unknown", "severity=info") == {obs.NOWHERE}


# --- Through the program -------------------------------------------------------------------------


def test_a_prometheus_stack_with_telegram_and_heartbeat(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("prod")
    raw[OBS]["observability"] = {
        "backend": "prometheus",
        "contactPoints": [PAGER, CHANNEL],
        "heartbeat": True,
    }
    plan = runner.run("prod", config=raw)
    secrets = {
        r.inputs["metadata"]["name"]: r
        for r in plan.by_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"].get("namespace") == obs.MONITORING_NAMESPACE
    }
    assert {"alert-telegram", "alert-heartbeat"} <= set(secrets)
    assert "alert-webhook" not in secrets
    for name, key in (("alert-telegram", "token"), ("alert-heartbeat", "url")):
        assert set(unwrap(secrets[name].inputs["stringData"])) == {key}
        assert plaintext_secrets(secrets[name].inputs) == []
    (release,) = [r for r in plan.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kps"]
    values = release.inputs["values"]
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alert-heartbeat", "alert-telegram"]
    assert {secrets[n].urn for n in ("alert-telegram", "alert-heartbeat")} <= set(release.dependencies)
    (rule,) = plan.by_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    assert alerts.WATCHDOG_GROUP in [g["name"] for g in rule.inputs["spec"]["groups"]]


def test_the_watchdog_is_loaded_only_with_a_heartbeat() -> None:
    without, _ = alerts.stack_rule_groups(restore_check=True, database=True)
    with_heartbeat, _ = alerts.stack_rule_groups(restore_check=True, database=True, heartbeat=True)
    assert alerts.WATCHDOG_GROUP not in [g["name"] for g in without]
    assert alerts.WATCHDOG_GROUP in [g["name"] for g in with_heartbeat]

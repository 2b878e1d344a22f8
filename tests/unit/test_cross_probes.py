"""Alerting that survives a cluster: each cluster probes the other's public hostnames, and every
probed URL has an absence rule (issue 16, item 2). promtool proves the generated rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import parity, runner
from program import alerts, model
from scw_platform import contract
from scw_platform.contract import REGISTRATION_KEY, RegistrationError

PROMTOOL = shutil.which("promtool")
NEWS = "https://news.example.com/"
REGISTRY = "rg.fr-par.scw.cloud/acme-platform"


def _registration(plan: runner.Plan) -> dict[str, Any]:
    value = plan.exports[REGISTRATION_KEY].value
    assert isinstance(value, dict)
    return value


def test_production_registers_its_apps_hostnames(committed_plans: dict[str, runner.Plan]) -> None:
    exported = _registration(committed_plans["prod"])
    assert {app["name"]: app["hostname"] for app in exported["apps"]} == {
        "website": "www.example.com",
        "newsletter": "newsletter.example.com",
    }


def test_a_hostname_the_environment_may_not_serve_is_refused(committed_plans: dict[str, runner.Plan]) -> None:
    exported = _registration(committed_plans["prod"])
    exported["apps"][0]["hostname"] = "www.bank.example.net"
    with pytest.raises(RegistrationError) as caught:
        contract.parse_registration(
            exported,
            stack="organization/platform/prod",
            environment="prod",
            registry_endpoint=REGISTRY,
            hostname_allowed=lambda hostname: hostname.endswith(".example.com"),
        )
    assert caught.value.problems == [
        "organization/platform/prod:argocdRegistration.apps[0].hostname: must be one of the environment's "
        "hostnames (environments.yaml: <environment>.dns.hostnames)"
    ]


@pytest.mark.parametrize(
    "hostname",
    [
        # Under a *.example.com pattern the first label is free: only the shape check stops these
        # from becoming a probe URL or an injected PromQL matcher.
        "u@localhost:9090/#.example.com",
        'x"}) or vector(1) or absent(y{a=".example.com',
        "WWW.example.com",
    ],
)
def test_the_hubs_own_predicate_never_lets_a_malformed_hostname_through(
    committed_plans: dict[str, runner.Plan], hostname: str
) -> None:
    from program import stacks

    exported = _registration(committed_plans["prod"])
    exported["apps"][0]["hostname"] = hostname
    tooling = parity.load_stack("tooling")
    assert isinstance(tooling, model.ToolingConfig)
    serves = stacks._serves(tooling, "prod")
    assert serves(hostname) or hostname == "WWW.example.com", "the pattern alone would admit it"
    with pytest.raises(RegistrationError) as caught:
        contract.parse_registration(
            exported, stack="p", environment="prod", registry_endpoint=REGISTRY, hostname_allowed=serves
        )
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == ["p:argocdRegistration.apps[0].hostname"]


def test_a_registration_without_hostnames_still_parses(committed_plans: dict[str, runner.Plan]) -> None:
    """Stacks deployed before cross-cluster probes export no hostname: nothing to probe, no error."""
    exported = _registration(committed_plans["prod"])
    for app in exported["apps"]:
        app.pop("hostname")
    parsed = contract.parse_registration(exported, stack="p", environment="prod", registry_endpoint=REGISTRY)
    assert [app.hostname for app in parsed.apps] == [None, None]


def test_absence_rules_name_each_probed_url() -> None:
    group = alerts.probe_absence_group(["www.example.com", "argocd.tooling.example.com"])
    assert group["name"] == alerts.PROBE_TARGETS_GROUP
    assert [rule["expr"] for rule in group["rules"]] == [
        'absent(probe_success{instance="https://www.example.com/"})',
        'absent(probe_success{instance="https://argocd.tooling.example.com/"})',
    ]
    assert {rule["labels"]["severity"] for rule in group["rules"]} == {"warning"}
    assert alerts.probe_absence_group([])["rules"] == []


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's prometheus package")
def test_a_probe_that_stops_reporting_alerts_and_a_live_one_does_not(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump({"groups": [alerts.probe_absence_group(["www.example.com", "news.example.com"])]})
    )
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = tmp_path / "test.yaml"
    unit.write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yaml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        # www reports throughout; news stops after 10 minutes (stale after 5).
                        "input_series": [
                            {
                                "series": 'probe_success{instance="https://www.example.com/"}',
                                "values": "1x40",
                            },
                            {
                                "series": 'probe_success{instance="https://news.example.com/"}',
                                "values": "1x10",
                            },
                        ],
                        "alert_rule_test": [
                            {"eval_time": "20m", "alertname": "ProbeTargetAbsent", "exp_alerts": []},
                            {
                                "eval_time": "30m",
                                "alertname": "ProbeTargetAbsent",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "warning",
                                            "instance": NEWS,
                                        },
                                        "exp_annotations": {
                                            "summary": f"No probe results for {NEWS} for 10 minutes",
                                            "description": f"The blackbox exporter has reported nothing for "
                                            f"{NEWS} for 10 minutes: its AppEndpointDown alert cannot fire.",
                                            "runbook": "docs/runbooks/alerts.md#probetargetabsent",
                                        },
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(unit)], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr

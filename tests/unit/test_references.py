"""Reading other stacks: which registered stacks exist (the Pulumi CLI's list, here a stand-in
executable on PATH), and the registration contract's guard on its own."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from program import environments, references
from scw_platform import contract
from scw_platform.contract import RegistrationError, parse_registration

SERVER = "https://f139b375-575b-5b1e-b69e-3a542ce806b2.api.k8s.fr-par.scw.cloud:6443"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").decode()
REGISTRY = "rg.fr-par.scw.cloud/acme-platform"


def _registration(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "version": contract.REGISTRATION_VERSION,
        "environment": "prod",
        "server": SERVER,
        "caData": CA,
        "token": "eyJhbGciOiJSUzI1NiJ9.payload.signature",
        "namespaces": ["newsletter", "website"],
        "facts": {"database-host": "10.20.0.5", "environment": "prod"},
        "apps": [
            {"name": "website", "path": "apps/website", "image": f"{REGISTRY}/website", "strategy": "semver"},
            {
                "name": "newsletter",
                "path": "apps/newsletter",
                "image": f"{REGISTRY}/newsletter",
                "strategy": "digest",
                "allowTags": "^v1",
            },
        ],
    }
    value.update(changes)
    return value


def _parse(value: Any) -> contract.Registration:
    return parse_registration(
        value, stack="org/platform/prod", environment="prod", registry_endpoint=REGISTRY
    )


def test_a_well_formed_registration_parses() -> None:
    registration = _parse(_registration())
    assert registration.server == SERVER and registration.namespaces == ("newsletter", "website")
    assert [a.name for a in registration.apps] == ["website", "newsletter"]
    assert registration.apps[0].allow_tags is None and registration.apps[1].allow_tags == "^v1"


def test_every_problem_is_reported_at_once() -> None:
    bad = _registration(server="https://kubernetes.default.svc", namespaces=["website", "website"], extra=1)
    bad["apps"][0]["strategy"] = "latest"
    with pytest.raises(RegistrationError) as caught:
        _parse(bad)
    problems = caught.value.problems
    assert any(p.startswith("org/platform/prod:argocdRegistration.server:") for p in problems)
    assert any("namespaces[1]: 'website' is listed twice" in p for p in problems)
    assert any("argocdRegistration.extra: unknown key" in p for p in problems)
    assert any("apps[0].strategy: must be one of" in p for p in problems)
    # newsletter's namespace was never registered: its app is refused too.
    assert any("apps[1].name: must be one of the registered namespaces" in p for p in problems)


@pytest.mark.parametrize(
    "server",
    [
        "https://kubernetes.default.svc",
        "https://kubernetes.default.svc.cluster.local:443",
        "https://127.0.0.1:6443",
        "https://10.10.0.4:6443",
        "http://f139b375-575b-5b1e-b69e-3a542ce806b2.api.k8s.fr-par.scw.cloud:6443",
        "https://f139b375-575b-5b1e-b69e-3a542ce806b2.api.k8s.fr-par.scw.cloud.evil.example:6443",
        SERVER + "/",
        "",
        None,
        42,
    ],
)
def test_only_a_kapsule_api_server_is_accepted(server: Any) -> None:
    with pytest.raises(RegistrationError, match=r"argocdRegistration\.server: must be a Kapsule API server"):
        _parse(_registration(server=server))


def test_same_stack_compares_the_parts_both_spell_out() -> None:
    assert environments.same_stack("organization/platform/prod", "organization/platform/prod")
    assert environments.same_stack("prod", "organization/platform/prod")
    assert environments.same_stack("acme/prod", "acme/platform/prod")
    assert not environments.same_stack("organization/platform/prod", "organization/platform/dev")
    assert not environments.same_stack("other/platform/prod", "organization/platform/prod")
    assert not environments.same_stack("organization/platform/preprod", "organization/platform/prod")
    assert not environments.same_stack("acme/dev", "acme/platform/prod")
    assert not environments.same_stack("other/prod", "acme/platform/prod")


def _fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    cli = tmp_path / "pulumi"
    cli.write_text(f"#!/bin/sh\n{script}\n")
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")


def test_the_cli_directory_lists_existing_stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = json.dumps(
        [{"name": "organization/platform/tooling", "current": True}, {"name": "acme/platform/prod"}]
    )
    args = tmp_path / "args"
    _fake_cli(tmp_path, monkeypatch, f"echo \"$@\" > {args}\ncat <<'EOF'\n{listing}\nEOF")
    directory = references.CliStackDirectory()
    assert directory.exists("acme/platform/prod")
    assert not directory.exists("acme/platform/dev")
    assert args.read_text().split() == ["stack", "ls", "--all", "--json"]


@pytest.mark.parametrize("script", ["exit 3", "echo 'not json'", "echo '{\"name\": 1}'"])
def test_a_cli_that_cannot_answer_takes_every_stack_as_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    # The engine's own "unknown stack" error then names a missing one; skipping it silently would not.
    _fake_cli(tmp_path, monkeypatch, script)
    assert references.CliStackDirectory().exists("acme/platform/prod")


def test_no_cli_on_path_takes_every_stack_as_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert references.CliStackDirectory().exists("acme/platform/prod")


def test_known_stacks() -> None:
    known = references.KnownStacks(frozenset({"organization/platform/prod"}))
    assert known.exists("organization/platform/prod") and not known.exists("organization/platform/dev")

"""platform:ingress / platform:tls / platform:dns: bad input is a config error naming the key.

Each case mutates a committed stack file and checks the problems the mutation adds, so a problem
in another part of a half-edited stack file does not make these tests fail or pass by accident.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline import runner
from program.config import ConfigError
from tests.harness import Mutation, StackConfig, environments_with, new_problems
from tests.harness import load_config as _load

UUID = "0b9c6a1e-5d4f-4e2a-9c3b-7a8d9e0f1a2b"


def setting(key: str, **changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw[f"platform:{key}"] = {**copy.deepcopy(raw.get(f"platform:{key}") or {}), **changes}

    return mutate


def remove(key: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw.pop(f"platform:{key}", None)

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(raw)

    return mutate


CASES: list[tuple[str, str, Mutation, str]] = [
    (
        "hostname-outside-domain",
        "prod",
        setting("ingress", hostnames=["www.example.com", "www.example.org"]),
        "platform:ingress.hostnames[1]: www.example.org is outside the configured domain example.com",
    ),
    (
        "suffix-is-not-a-subdomain",
        "prod",
        setting("ingress", hostnames=["notexample.com"]),
        "platform:ingress.hostnames[0]: notexample.com is outside the configured domain example.com",
    ),
    (
        # Tooling's name: every hostname a stack serves is its own environment's (environments.yaml).
        "hostname-of-another-environment",
        "prod",
        setting("ingress", hostnames=["www.example.com", "argocd.tooling.example.com"]),
        "platform:ingress.hostnames[1]: argocd.tooling.example.com is not one of environments.yaml: "
        "prod.dns.hostnames",
    ),
    (
        "malformed-hostname",
        "prod",
        setting("ingress", hostnames=["WWW.example.com"]),
        "platform:ingress.hostnames[0]: must be a lowercase DNS name",
    ),
    (
        "duplicate-hostname",
        "prod",
        setting("ingress", hostnames=["www.example.com", "www.example.com"]),
        "platform:ingress.hostnames: duplicate hostname 'www.example.com'",
    ),
    (
        "duplicate-across-kinds",
        "tooling",
        setting("ingress", hostnames=["ops.example.com"], platformHostnames=["ops.example.com"]),
        "platform:ingress.platformHostnames: ops.example.com also in hostnames",
    ),
    (
        "redirect-source-also-served",
        "prod",
        setting("ingress", hostnames=["example.com"]),
        "platform:ingress.redirects: example.com is also served as a hostname",
    ),
    (
        "redirect-chain",
        "prod",
        setting("ingress", redirects={"example.com": "www.example.com", "web.example.com": "example.com"}),
        "platform:ingress.redirects: web.example.com -> example.com -> www.example.com",
    ),
    (
        "redirect-outside-domain",
        "prod",
        setting("ingress", redirects={"example.com": "www.example.org"}),
        "platform:ingress.redirects: www.example.org is outside the configured domain example.com",
    ),
    (
        "app-hostname-only-redirects",
        "prod",
        setting("ingress", redirects={"www.example.com": "example.com"}),
        "platform:apps[0].hostname: www.example.com is in platform:ingress.redirects",
    ),
    (
        "duplicate-platform-hostname",
        "tooling",
        setting("ingress", platformHostnames=["ops.example.com", "ops.example.com"]),
        "platform:ingress.platformHostnames: duplicate hostname 'ops.example.com'",
    ),
    (
        "unknown-dns-provider",
        "prod",
        setting("dns", provider="route53"),
        "platform:dns.provider: Input should be 'scaleway' or 'external'",
    ),
    (
        "invalid-acme-email",
        "prod",
        setting("tls", acmeEmail="platform-at-example.com"),
        "platform:tls.acmeEmail: must be an email address Let's Encrypt can write to",
    ),
    (
        "acme-email-without-tld",
        "tooling",
        setting("tls", acmeEmail="ops@localhost"),
        "platform:tls.acmeEmail: must be an email address",
    ),
    (
        "malformed-ip-id",
        "prod",
        setting("ingress", adoptIpId="fr-par-1:" + UUID),
        "platform:ingress.adoptIpId: must be a load-balancer flexible IP ID, <zone>/<uuid>",
    ),
    (
        "ip-id-not-a-uuid",
        "prod",
        setting("ingress", adoptIpId="51.158.10.20"),
        "platform:ingress.adoptIpId: must be a load-balancer flexible IP ID",
    ),
    (
        "ip-id-other-region",
        "prod",
        setting("ingress", adoptIpId=f"nl-ams-1/{UUID}"),
        "platform:ingress.adoptIpId: is in zone nl-ams-1, outside this stack's region fr-par",
    ),
    (
        "ip-id-zone-disagrees",
        "prod",
        setting("ingress", zone="fr-par-2", adoptIpId=f"fr-par-1/{UUID}"),
        "platform:ingress.adoptIpId: is in zone fr-par-1 but platform:ingress.zone is fr-par-2",
    ),
    (
        "production-on-staging",
        "prod",
        setting("tls", issuer="letsencrypt-staging"),
        "platform:tls.issuer: must be letsencrypt-production for role production",
    ),
    (
        "unknown-issuer",
        "tooling",
        setting("tls", issuer="letsencrypt"),
        "platform:tls.issuer: Input should be 'letsencrypt-staging' or 'letsencrypt-production'",
    ),
    (
        "single-replica-in-production",
        "prod",
        setting("ingress", replicas=1),
        "platform:ingress.replicas: must be >= 2 for role production",
    ),
    (
        "typo-in-ingress",
        "prod",
        setting("ingress", hostname=["www.example.com"]),
        "platform:ingress.hostname: unknown key (allowed: domain, hostnames, platformHostnames",
    ),
    (
        "ingress-without-tls",
        "prod",
        remove("tls"),
        "platform:tls: required with platform:ingress",
    ),
    (
        "tls-without-ingress",
        "prod",
        remove("ingress"),
        "platform:tls: only allowed with platform:ingress",
    ),
    (
        "wildcard-without-dns01",
        "prod",
        setting("ingress", hostnames=["*.apps.example.com"]),
        "platform:ingress.hostnames: wildcard hostnames (*.apps.example.com) can only be certified",
    ),
    (
        "dns01-without-scaleway-dns",
        "prod",
        both(setting("tls", dns01=True), setting("dns", provider="external")),
        "platform:tls.dns01: needs the zone in Scaleway DNS",
    ),
    (
        "hostname-outside-dns-zone",
        "prod",
        setting("dns", zone="shop.example.com"),
        "platform:dns.zone: example.com, newsletter.example.com, www.example.com lie outside the DNS zone",
    ),
    (
        "app-hostname-outside-domain",
        "prod",
        setting("ingress", domain="example.net", hostnames=[], redirects={}),
        "platform:apps[0].hostname: www.example.com is outside platform:ingress.domain example.net",
    ),
    (
        "argocd-hostname-outside-domain",
        "tooling",
        setting("ingress", domain="example.net"),
        "platform:gitops.argocd.hostname: argocd.tooling.example.com is outside platform:ingress.domain",
    ),
    (
        "argocd-hostname-served-by-apps",
        "tooling",
        setting("ingress", hostnames=["argocd.tooling.example.com"]),
        "platform:gitops.argocd.hostname: argocd.tooling.example.com is also an app hostname",
    ),
    (
        "ingress-without-cluster",
        "dev",
        both(
            remove("cluster"),
            setting("ingress", domain="example.com"),
            setting("tls", acmeEmail="platform@example.com"),
        ),
        "platform:ingress: requires platform:cluster",
    ),
]


@pytest.mark.parametrize(("stack", "mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_front_door_config_names_the_key(
    stack_config: StackConfig, stack: str, mutate: Mutation, expected: str
) -> None:
    found = new_problems(stack_config, stack, mutate)
    assert any(p.startswith(expected) for p in found), "\n".join(found) or "no new problem"


def test_all_front_door_problems_are_reported_together(stack_config: StackConfig) -> None:
    found = new_problems(
        stack_config,
        "prod",
        both(
            setting("ingress", hostnames=["www.example.org"], adoptIpId="not-an-id"),
            setting("tls", acmeEmail="nobody", issuer="letsencrypt-staging"),
        ),
    )
    keys = {p.split(":", 2)[0] + ":" + p.split(":", 2)[1] for p in found}
    assert {
        "platform:ingress.hostnames[0]",
        "platform:ingress.adoptIpId",
        "platform:tls.acmeEmail",
        "platform:tls.issuer",
    } <= keys, found


def test_invalid_front_door_config_creates_nothing(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw["platform:tls"] = {**raw["platform:tls"], "issuer": "letsencrypt-staging"}
    with pytest.raises(ConfigError, match=r"platform:tls\.issuer"):
        runner.run("prod", config=raw)
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


# --- what valid config means ----------------------------------------------------------------


def test_issuer_defaults_per_role(stack_config: StackConfig) -> None:
    raw = stack_config("tooling")
    raw["platform:tls"] = {"acmeEmail": "platform@example.com"}
    tooling = _load("tooling", raw)
    assert tooling.front_door.tls.issuer == "letsencrypt-production"

    raw = stack_config("dev")
    raw["platform:ingress"] = {"domain": "example.com", "hostnames": ["www.dev.example.com"], "replicas": 1}
    raw["platform:tls"] = {"acmeEmail": "platform@example.com"}
    # Every hostname a stack serves is its environment's in environments.yaml.
    serving = environments_with({"dev": {"dns": {"zone": "example.com", "hostnames": ["*.dev.example.com"]}}})
    dev = _load("dev", raw, environments=serving)
    assert dev.front_door is not None and dev.front_door.tls.issuer == "letsencrypt-staging"
    assert dev.front_door.ingress.replicas == 1


@pytest.mark.parametrize(
    ("adopt", "zone", "expected"),
    [
        (f"fr-par-1/{UUID}", None, f"fr-par-1/{UUID}"),
        (UUID, None, f"fr-par-1/{UUID}"),
        (UUID, "fr-par-2", f"fr-par-2/{UUID}"),
        (f"fr-par-2/{UUID}", None, f"fr-par-2/{UUID}"),
    ],
)
def test_adopted_ip_ids_are_normalised_to_the_import_id(
    stack_config: StackConfig, adopt: str, zone: str | None, expected: str
) -> None:
    raw = stack_config("prod")
    raw["platform:ingress"] = {
        **raw["platform:ingress"],
        "adoptIpId": adopt,
        **({"zone": zone} if zone else {}),
    }
    cfg = _load("prod", raw)
    ingress = cfg.front_door.ingress
    assert ingress.adopt_import_id(cfg.zone) == expected
    assert ingress.ip_zone(cfg.zone) == expected.split("/", maxsplit=1)[0]


def test_committed_front_door_config(stack_config: StackConfig) -> None:
    prod = _load("prod", stack_config("prod"))
    ingress, tls, dns = prod.front_door.ingress, prod.front_door.tls, prod.front_door.dns
    assert dns is not None
    assert ingress.domain == "example.com"
    assert tls.issuer == "letsencrypt-production"
    assert dns.managed and ingress.adopt_ip_id is None
    tooling = _load("tooling", stack_config("tooling"))
    assert tooling.front_door.tls.acme_email
    dev = _load("dev", stack_config("dev")).front_door
    assert dev is not None and dev.ingress.domain == "dev.example.com"
    # Development's default issuer: Let's Encrypt's staging CA.
    assert dev.tls.issuer == "letsencrypt-staging"

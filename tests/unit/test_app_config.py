"""Config rules of platform:apps and platform:secrets: bad input is a clear error naming its key,
and nothing is created (the stack-level proof of "nothing created" is in test_config.py)."""

from __future__ import annotations

from typing import Any

import pytest

from program.model import SECRET_KEYS
from scw_platform.apps import DATABASE_KEYS
from tests.harness import Mutation, StackConfig, environments_with
from tests.harness import config_problems as _problems
from tests.harness import load_config as _load

APPS = "platform:apps"


def _set(*path: Any, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        node: Any = raw
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _add_app(**overrides: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        app = {
            "name": "shop",
            "hostname": "shop.example.com",
            "port": 8080,
            "image": "rg.fr-par.scw.cloud/acme-platform/shop",
            "gitopsPath": "apps/shop",
            "requiredKeys": ["STRIPE_SECRET_KEY"],
        }
        raw[APPS].append({**app, **overrides})

    return mutate


ONEPASSWORD = {"backend": "onepassword", "onepassword": {"vault": "platform-prod"}}

# (id, mutation, exact key path, words the message must contain)
INVALID: list[tuple[str, Mutation, str, str]] = [
    ("duplicate-name", _add_app(name="website"), f"{APPS}[2].name", "duplicate app name 'website'"),
    (
        "duplicate-hostname",
        _add_app(hostname="www.example.com"),
        f"{APPS}[2].hostname",
        "duplicate hostname 'www.example.com' (also used by website)",
    ),
    (
        "name-not-dns-label",
        _set(APPS, 0, "name", value="Web_Site"),
        f"{APPS}[0].name",
        "'Web_Site' is not a DNS label",
    ),
    (
        "name-too-long",
        _add_app(name="a" * 40),
        f"{APPS}[2].name",
        "at most 32 characters",
    ),
    (
        "key-not-env-name",
        _set(APPS, 1, "requiredKeys", value=["MAILER_DSN", "unsubscribe-key"]),
        f"{APPS}[1].requiredKeys[1]",
        "'unsubscribe-key' is not an environment variable name",
    ),
    (
        "key-starts-with-digit",
        _add_app(requiredKeys=["2FA_SECRET"]),
        f"{APPS}[2].requiredKeys[0]",
        "'2FA_SECRET' is not an environment variable name",
    ),
    ("duplicate-key", _add_app(requiredKeys=["A", "A"]), f"{APPS}[2].requiredKeys", "duplicate key 'A'"),
    (
        "undeclared-database",
        _add_app(database="shop"),
        f"{APPS}[2].database",
        "database 'shop' is not declared in platform:database.databases",
    ),
    (
        "key-reserved-for-the-database",
        _set(APPS, 0, "requiredKeys", value=["SESSION_SECRET", "DATABASE_URL"]),
        f"{APPS}[0].requiredKeys",
        "DATABASE_URL provided by the platform",
    ),
    (
        "unknown-backend",
        _set("platform:secrets", value={"backend": "vault"}),
        "platform:secrets.backend",
        "unknown secrets backend 'vault' (one of: scaleway, onepassword)",
    ),
    (
        "typo-in-secrets",
        _set("platform:secrets", value={"backnd": "scaleway"}),
        "platform:secrets.backnd",
        "unknown key (allowed: backend, onepassword, refreshInterval)",
    ),
    (
        "onepassword-without-vault",
        _set("platform:secrets", value={"backend": "onepassword"}),
        "platform:secrets.onepassword",
        "required with backend onepassword",
    ),
    (
        "onepassword-settings-with-scaleway",
        _set("platform:secrets", value={"backend": "scaleway", "onepassword": {"vault": "x"}}),
        "platform:secrets.onepassword",
        "only allowed with backend onepassword",
    ),
    (
        "bad-refresh-interval",
        _set("platform:secrets", value={"refreshInterval": "soon"}),
        "platform:secrets.refreshInterval",
        "must match",
    ),
    (
        "scaleway-path-not-a-folder",
        _set(APPS, 0, "secretsPath", value="prod/website"),
        f"{APPS}[0].secretsPath",
        "must be a Scaleway Secret Manager folder",
    ),
    (
        "shared-secrets-path",
        _set(APPS, 1, "secretsPath", value="/prod/website"),
        f"{APPS}[1].secretsPath",
        "/prod/website is also app 'website''s location",
    ),
    (
        "secrets-path-of-a-later-app",
        _set(APPS, 0, "secretsPath", value="/prod/newsletter"),
        f"{APPS}[0].secretsPath",
        "/prod/newsletter is also app 'newsletter''s location",
    ),
]


@pytest.mark.parametrize(("mutate", "path", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_bad_input_names_the_key(
    stack_config: StackConfig, mutate: Mutation, path: str, message: str
) -> None:
    baseline = _problems("prod", stack_config("prod"))
    raw = stack_config("prod")
    mutate(raw)
    problems = [p for p in _problems("prod", raw) if p not in baseline]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems[0]
    assert message in problems[0], problems[0]


def test_committed_prod_declares_two_apps_and_loads(stack_config: StackConfig) -> None:
    cfg = _load("prod", stack_config("prod"))
    assert [app.name for app in cfg.apps] == ["website", "newsletter"]
    assert cfg.vault.backend == "scaleway"
    assert cfg.app_secrets_path(cfg.apps[0]) == "/prod/website"
    assert cfg.app_platform_path(cfg.apps[0]) == "/prod/website"


def test_onepassword_needs_the_service_account_token(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw["platform:secrets"] = ONEPASSWORD
    secrets = {k: "x" for k in SECRET_KEYS if k != "onepasswordServiceAccountToken"}
    problems = _problems("prod", raw, secrets)
    assert problems == [
        "platform:onepasswordServiceAccountToken: required with platform:secrets.backend onepassword: "
        "pulumi config set --secret platform:onepasswordServiceAccountToken <token>"
    ]


def test_onepassword_locations_default_to_items(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw["platform:secrets"] = ONEPASSWORD
    raw[APPS][1]["secretsPath"] = "Newsletter prod"
    cfg = _load("prod", raw)
    website, newsletter = cfg.apps
    assert cfg.app_secrets_path(website) == "prod-website"
    assert cfg.app_secrets_path(newsletter) == "Newsletter prod"
    # The program's own entries still go to Scaleway Secret Manager.
    assert cfg.app_platform_path(newsletter) == "/prod/newsletter"


def test_onepassword_item_rejects_a_slash(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw["platform:secrets"] = ONEPASSWORD
    raw[APPS][0]["secretsPath"] = "prod/website"
    assert _problems("prod", raw) == [
        f"{APPS}[0].secretsPath: must be a 1Password item title (letters, digits, "
        "'_', '.', '-' and single spaces; no '/') (got 'prod/website')"
    ]


def test_secrets_need_a_cluster(stack_config: StackConfig) -> None:
    raw = stack_config("dev")
    raw.pop("platform:cluster")
    raw["platform:secrets"] = {"backend": "scaleway"}
    assert "platform:secrets: requires platform:cluster (External Secrets runs in it)" in _problems(
        "dev", raw
    )


def test_database_keys_are_free_for_apps_without_a_database(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw[APPS][0].pop("database")
    raw[APPS][0].pop("migrate")  # migrations run as the database's migrator
    raw[APPS][0]["requiredKeys"] = ["DATABASE_URL"]
    assert _problems("prod", raw) == []


def test_all_app_problems_are_reported_together(stack_config: StackConfig) -> None:
    raw = stack_config("prod")
    raw[APPS][0]["name"] = "Bad Name"
    raw[APPS][1]["requiredKeys"] = ["lower"]
    raw["platform:secrets"] = {"backend": "hashicorp"}
    problems = _problems("prod", raw)
    paths = {p.split(": ", 1)[0] for p in problems}
    assert {f"{APPS}[0].name", f"{APPS}[1].requiredKeys[0]", "platform:secrets.backend"} <= paths


def test_reserved_keys_match_the_apps_component() -> None:
    from scw_platform.apps import DATABASE_PROPERTIES

    assert tuple(DATABASE_PROPERTIES) == DATABASE_KEYS


def test_apps_need_the_front_door_in_development(stack_config: StackConfig) -> None:
    # Registered by tooling (managedBy in environments.yaml; tooling sets the repository), serving
    # names of its own: the stack file adds only platform:gitops and the app.
    environments = environments_with(
        {"dev": {"managedBy": "tooling", "dns": {"zone": "example.com", "hostnames": ["*.dev.example.com"]}}}
    )
    raw = stack_config("dev")
    for key in ("platform:ingress", "platform:tls", "platform:dns"):
        raw.pop(key)
    raw["platform:gitops"] = {}
    raw[APPS] = [
        {
            "name": "web",
            "hostname": "web.dev.example.com",
            "port": 8080,
            "image": "rg.fr-par.scw.cloud/acme-platform/web",
            "gitopsPath": "apps/web",
        }
    ]
    assert _problems("dev", raw, environments=environments) == [
        "platform:ingress: required with platform:apps: each app's route attaches to the platform Gateway"
    ]

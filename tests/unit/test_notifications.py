"""Deployment notifications: the settings' bad input, the chart's notifications values, the
ExternalSecret, the offline validator, and the templates parsed and rendered by Go's text/template
with Sprig (offline/gotemplate_check), as Argo CD's notifications-engine runs them."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from offline import notifications_check, schemas
from scw_platform import gitops, labels
from scw_platform import notifications as n
from tests.harness import record

TELEGRAM = {"name": "ops", "kind": "telegram", "chatId": "-1001234567890"}
WEBHOOK = {"name": "deploys", "kind": "webhook"}
STORE = "platform-scaleway"
EXTERNAL_SECRET = "kubernetes:external-secrets.io/v1:ExternalSecret"
TRIGGERS = ["on-deployed", "on-sync-failed", "on-health-degraded"]


needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (a fresh clone has no ../shared/schemas)",
)


def _settings(*points: Mapping[str, Any]) -> n.NotificationSettings:
    return n.NotificationSettings.model_validate({"contactPoints": list(points or (TELEGRAM, WEBHOOK))})


def _problems(raw: Any) -> list[str]:
    """The settings' errors as a stack file's reader sees them: camelCase path, then the message."""
    try:
        n.NotificationSettings.model_validate(raw)
    except ValidationError as error:
        return [
            ".".join(to_camel(p) if isinstance(p, str) else str(p) for p in e["loc"]) + ": " + e["msg"]
            for e in error.errors()
        ]
    return []


def _values_and_spec(settings: n.NotificationSettings | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = settings or _settings()
    spec = n.notifications_secret_spec(settings, store=STORE, remote_keys=n.vault_references(settings))
    return n.notifications_values(settings), spec


def _yaml_of(values: Mapping[str, Any], section: str, key: str) -> Any:
    return yaml.safe_load(values[section][key])


# --- settings: bad input names the key ------------------------------------------------------------


def test_email_is_refused_naming_the_key_and_the_allowed_kinds() -> None:
    (problem,) = _problems({"contactPoints": [{"name": "ops", "kind": "email"}]})
    assert problem.startswith("contactPoints.0.kind: Value error, email is not available"), problem
    assert "SMTP" in problem and "telegram, webhook" in problem


def test_an_unknown_kind_lists_the_allowed_ones() -> None:
    (problem,) = _problems({"contactPoints": [{"name": "ops", "kind": "slack"}]})
    assert (
        problem
        == "contactPoints.0.kind: Value error, unknown contact point kind 'slack' (one of: telegram, webhook)"
    )


def test_telegram_needs_a_chat_id() -> None:
    (problem,) = _problems({"contactPoints": [{"name": "ops", "kind": "telegram"}]})
    assert problem.startswith("contactPoints.0.chatId: Value error, required for kind telegram"), problem


def test_a_chat_id_on_a_webhook_is_refused() -> None:
    (problem,) = _problems({"contactPoints": [{**WEBHOOK, "chatId": "-100123"}]})
    assert problem.startswith("contactPoints.0.chatId: Value error, not allowed for kind webhook"), problem
    assert n.VAULT_FOLDER in problem


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [
        # Argo CD would send a positive id to the channel "@123456789".
        ("123456789", "a user's chat id cannot be used"),
        ("ops-room", "must be a group or channel id like -1001234567890"),
        ("@abc", "must be a group or channel id like -1001234567890"),
        ("-0", "must be a group or channel id like -1001234567890"),
    ],
)
def test_a_chat_id_argo_cd_cannot_send_to_is_refused(chat_id: str, expected: str) -> None:
    (problem,) = _problems({"contactPoints": [{**TELEGRAM, "chatId": chat_id}]})
    assert problem.startswith("contactPoints.0.chatId: Value error, ") and expected in problem, problem


def test_duplicate_contact_point_names_are_refused() -> None:
    (problem,) = _problems({"contactPoints": [TELEGRAM, {**WEBHOOK, "name": "ops"}]})
    assert problem == "contactPoints: Value error, duplicate contact point name 'ops'"


def test_at_least_one_contact_point() -> None:
    (problem,) = _problems({"contactPoints": []})
    assert problem.startswith("contactPoints: List should have at least 1 item"), problem


def test_a_yaml_integer_chat_id_and_a_channel_username_are_accepted() -> None:
    settings = _settings(
        {**TELEGRAM, "chatId": -1001234567890}, {**TELEGRAM, "name": "news", "chatId": "@acme_news"}
    )
    assert [p.chat_id for p in settings.contact_points] == ["-1001234567890", "@acme_news"]
    (subscription,) = n.notifications_values(settings)["subscriptions"]
    # Argo CD prefixes the @ itself (notifications-engine telegram.go).
    assert subscription["recipients"] == ["ops:-1001234567890", "news:acme_news"]


def test_every_field_is_described() -> None:
    for model in (n.NotificationSettings, n.NotificationContactPoint):
        undescribed = [
            name for name, info in model.model_fields.items() if not (info.description or "").strip()
        ]
        assert not undescribed, f"{model.__name__}: add a docstring under {undescribed}"


# --- the chart's values -------------------------------------------------------------------------


def test_values_enable_notifications_without_the_charts_secret() -> None:
    values, _ = _values_and_spec()
    assert values["enabled"] is True
    assert values["secret"] == {"create": False}, "the ExternalSecret owns argocd-notifications-secret"
    assert values["subscriptions"] == [
        {"recipients": ["ops:-1001234567890", "deploys"], "triggers": TRIGGERS}
    ]


def test_services_refer_to_the_secrets_keys_only() -> None:
    values, _ = _values_and_spec()
    assert sorted(values["notifiers"]) == ["service.telegram.ops", "service.webhook.deploys"]
    assert _yaml_of(values, "notifiers", "service.telegram.ops") == {"token": "$telegram-ops"}
    assert _yaml_of(values, "notifiers", "service.webhook.deploys") == {
        "url": "$webhook-deploys",
        "headers": [{"name": "Content-Type", "value": "application/json"}],
    }


def test_three_triggers_each_sending_its_own_template() -> None:
    values, _ = _values_and_spec()
    assert list(values["triggers"]) == [f"trigger.{t}" for t in TRIGGERS]
    (deployed,) = _yaml_of(values, "triggers", "trigger.on-deployed")
    assert deployed["send"] == ["platform-deployed"]
    assert "phase == 'Succeeded'" in deployed["when"] and "health.status == 'Healthy'" in deployed["when"]
    # Once per synced revision: status.sync.revision moves with unrelated commits (see the module).
    assert deployed["oncePer"] == "app.status.operationState.syncResult?.revision"
    (failed,) = _yaml_of(values, "triggers", "trigger.on-sync-failed")
    assert failed["send"] == ["platform-sync-failed"] and "['Error', 'Failed']" in failed["when"]
    assert "oncePer" not in failed
    (degraded,) = _yaml_of(values, "triggers", "trigger.on-health-degraded")
    assert degraded == {
        "description": "The app's health is Degraded.",
        "when": "app.status.health.status == 'Degraded'",
        "send": ["platform-health-degraded"],
    }


def test_templates_have_a_webhook_section_only_when_there_is_a_webhook() -> None:
    values, _ = _values_and_spec(_settings(TELEGRAM))
    template = _yaml_of(values, "templates", "template.platform-deployed")
    assert set(template) == {"message"}
    values, _ = _values_and_spec()
    template = _yaml_of(values, "templates", "template.platform-deployed")
    assert template["webhook"]["deploys"]["method"] == "POST"


def test_every_label_the_templates_read_is_one_of_labels_py() -> None:
    values, _ = _values_and_spec()
    text = json.dumps(values)
    read = set(re.findall(r"platform\.scw/[\w.-]+", text))
    defined = {v for k, v in vars(labels).items() if k.isupper() and isinstance(v, str)}
    assert read <= defined, f"labels not in scw_platform.labels: {read - defined}"
    assert {labels.APP, labels.ENVIRONMENT} <= read, "messages name the app and the environment"


def test_the_namespace_is_gitops_own() -> None:
    assert n.ARGOCD_NAMESPACE == gitops.ARGOCD_NAMESPACE


# --- the ExternalSecret ---------------------------------------------------------------------------


def test_one_vault_entry_per_contact_point() -> None:
    _, spec = _values_and_spec()
    assert spec == {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": STORE},
        "target": {"name": "argocd-notifications-secret", "creationPolicy": "Owner"},
        "data": [
            {"secretKey": "telegram-ops", "remoteRef": {"key": "path:/platform/argocd-notifications/ops"}},
            {
                "secretKey": "webhook-deploys",
                "remoteRef": {"key": "path:/platform/argocd-notifications/deploys"},
            },
        ],
    }


def test_remote_keys_must_match_the_contact_points() -> None:
    with pytest.raises(ValueError, match=r"do not match the configured contact points \['deploys', 'ops'\]"):
        n.notifications_secret_spec(_settings(), store=STORE, remote_keys={"ops": "path:/x/ops"})


@needs_schemas
def test_the_external_secret_is_valid_against_its_crd() -> None:
    _, spec = _values_and_spec()
    document = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": n.NOTIFICATIONS_SECRET, "namespace": n.ARGOCD_NAMESPACE},
        "spec": spec,
    }
    assert schemas.validate_custom_resource(document) == []


def test_declare_notifications_secret_registers_the_external_secret_under_the_callers_parent() -> None:
    settings = _settings()

    def program() -> dict[str, Any]:
        provider = k8s.Provider("unit-k8s", kubeconfig=pulumi.Output.secret("apiVersion: v1"))
        parent = pulumi.ComponentResource("unit:test:Parent", "unit-parent")
        external = n.declare_notifications_secret(
            "unit-notifications",
            provider=provider,
            store=STORE,
            settings=settings,
            remote_keys=n.vault_references(settings),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return {"urn": external.urn}

    recording = record(program)
    (external,) = recording.by_type(EXTERNAL_SECRET)
    assert external.name == "unit-notifications"
    assert external.parent == recording.named("unit-parent").urn
    assert external.provider_urn == recording.named("unit-k8s").urn
    assert external.inputs["metadata"] == {"name": "argocd-notifications-secret", "namespace": "argocd"}
    assert external.inputs["spec"] == n.notifications_secret_spec(
        settings, store=STORE, remote_keys=n.vault_references(settings)
    )
    assert recording.outputs["urn"].value == external.urn


# --- the offline validator ------------------------------------------------------------------------


def test_the_generated_values_pass_the_validator() -> None:
    for settings in (_settings(), _settings(TELEGRAM), _settings(WEBHOOK)):
        assert n.notification_problems(*_values_and_spec(settings)) == []


def _send(values: dict[str, Any], template: str) -> None:
    key = "trigger.on-deployed"
    (condition,) = yaml.safe_load(values["triggers"][key])
    values["triggers"][key] = yaml.safe_dump([{**condition, "send": [template]}])


def _set(values: dict[str, Any], section: str, key: str, document: Any) -> None:
    values[section][key] = yaml.safe_dump(document)


Breakage = Callable[[dict[str, Any], dict[str, Any]], None]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (
            lambda v, s: _send(v, "app-deployed"),
            "trigger.on-deployed[0].send: template 'app-deployed' is not defined",
        ),
        (
            lambda v, s: v["subscriptions"][0]["recipients"].append("slack:ops"),
            "subscriptions[0].recipients: 'slack:ops' names no configured service",
        ),
        (
            lambda v, s: v["subscriptions"][0]["triggers"].append("on-sync-running"),
            "subscriptions[0].triggers: trigger 'on-sync-running' is not defined",
        ),
        (
            lambda v, s: s["data"].pop(),
            "service.webhook.deploys: $webhook-deploys is no key of the ExternalSecret "
            "(it provides: telegram-ops)",
        ),
        (
            lambda v, s: _set(v, "notifiers", "service.telegram.ops", {"token": "$telegram-token"}),
            "service.telegram.ops: $telegram-token is no key of the ExternalSecret "
            "(it provides: telegram-ops, webhook-deploys)",
        ),
        (
            lambda v, s: v["secret"].update(create=True),
            "notifications.secret.create: must be false "
            "(the ExternalSecret owns argocd-notifications-secret)",
        ),
        (
            lambda v, s: s["target"].update(name="argocd-secret"),
            "the ExternalSecret must write argocd-notifications-secret, not "
            "{'name': 'argocd-secret', 'creationPolicy': 'Owner'}",
        ),
        (
            lambda v, s: v["notifiers"].update({"service.webhook.audit": "url: $webhook-deploys\n"}),
            "template.platform-deployed: no webhook section for service 'audit'",
        ),
        (
            lambda v, s: v["notifiers"].pop("service.webhook.deploys"),
            "template.platform-deployed.webhook.deploys: no webhook service of that name",
        ),
        (
            lambda v, s: _set(v, "triggers", "trigger.on-deployed", [{"send": ["platform-deployed"]}]),
            "trigger.on-deployed[0].when: required (without it the trigger never fires)",
        ),
        (
            lambda v, s: _set(
                v,
                "triggers",
                "trigger.on-deployed",
                [{"when": "time.Now() > 0", "send": ["platform-deployed"]}],
            ),
            "trigger.on-deployed[0].when: reads 'time.Now': a condition may read only app.* fields",
        ),
        (
            lambda v, s: v["templates"].update({"template.broken": "message: [unclosed\n"}),
            "template.broken: not YAML",
        ),
    ],
)
def test_the_validator_catches(break_it: Breakage, expected: str) -> None:
    values, spec = _values_and_spec()
    break_it(values, spec)
    problems = n.notification_problems(values, spec)
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("app.status.health.status == 'Healthy'", []),
        ("app.status.operationState?.syncResult?.revision", []),
        ("app.status.operationState.phase in ['Error', 'Failed'] and not (app.spec.project == 'x')", []),
        ("", ["is empty"]),
        ("(app.status.health.status == 'Healthy'", ["unclosed '('"]),
        ("app.status.operationState.phase in ['Error', 'Failed')", ["unbalanced ')' at offset 53"]),
        ("app.status.health.status == 'Healthy", ["unterminated string at offset 28"]),
        (
            "status.health.status == 'Healthy'",
            ["reads 'status.health.status': a condition may read only app.* fields"],
        ),
        ("app.status.health.status == `Healthy`", ["unexpected '`' at offset 28"]),
    ],
)
def test_condition_problems(expression: str, expected: list[str]) -> None:
    assert n.condition_problems(expression) == expected


# --- the templates, parsed and rendered by Go's text/template with Sprig ----------------------------

GoResults = notifications_check.CheckerResults
GoCheck = Callable[[Mapping[str, str], Mapping[str, Any] | None], GoResults]


@pytest.fixture(scope="module")
def go_check(tmp_path_factory: pytest.TempPathFactory) -> GoCheck:
    """offline/gotemplate_check, built once by the offline check's own builder (GOPATH mode
    against Debian's Go sources, nothing downloaded)."""
    missing = notifications_check.go_unavailable()
    if missing is not None:
        pytest.skip(missing)
    binary = notifications_check.build_checker(tmp_path_factory.mktemp("gotemplate_check"))
    return functools.partial(notifications_check.run_checker, binary)


def _parser(go_check: GoCheck) -> n.TemplateParser:
    def parse(texts: Mapping[str, str]) -> dict[str, str]:
        return {where: r["parse"] for where, r in go_check(texts, None).items() if r["parse"]}

    return parse


def test_every_template_parses_with_gos_text_template(go_check: GoCheck) -> None:
    values, spec = _values_and_spec()
    seen: list[str] = []

    def parse(texts: Mapping[str, str]) -> dict[str, str]:
        seen.extend(texts)
        return dict(_parser(go_check)(texts))

    assert n.notification_problems(values, spec, parse_templates=parse) == []
    # Messages and webhook bodies of all three templates reached the parser.
    assert len(seen) == 6 and all(where.startswith("template.platform-") for where in seen), seen


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ toJSON .app }}", 'function "toJSON" not defined'),
        ("{{ if .app }}unclosed", "unexpected EOF"),
        ('{{ env "HOME" }}', 'function "env" not defined'),
    ],
)
def test_the_validator_reports_a_template_that_does_not_parse(
    go_check: GoCheck, text: str, error: str
) -> None:
    values, spec = _values_and_spec()
    template = _yaml_of(values, "templates", "template.platform-sync-failed")
    _set(values, "templates", "template.platform-sync-failed", {**template, "message": text})
    problems = n.notification_problems(values, spec, parse_templates=_parser(go_check))
    assert len(problems) == 1 and problems[0].startswith("template.platform-sync-failed.message: "), problems
    assert error in problems[0]


REVISION, OLD_REVISION = "a" * 40, "b" * 40
IMAGES = [
    "rg.fr-par.scw.cloud/acme/web@sha256:" + "1" * 64,
    "rg.fr-par.scw.cloud/acme/web_worker@sha256:" + "2" * 64,
]
APPLICATION: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {
        "name": "prod-web",
        "namespace": "argocd",
        "labels": {labels.ENVIRONMENT: "prod", labels.APP: "web"},
    },
    "status": {
        "sync": {"status": "Synced", "revision": OLD_REVISION},
        "health": {"status": "Healthy"},
        "summary": {"images": IMAGES},
        "operationState": {
            "phase": "Succeeded",
            "message": "successfully synced (all tasks run)",
            "syncResult": {"revision": REVISION},
        },
    },
}


def _rendered(
    go_check: GoCheck, template: str, app: Mapping[str, Any], webhook: str = "deploys"
) -> tuple[str, Any]:
    """The template's chat message and its webhook body (parsed as JSON), rendered for ``app``."""
    values, _ = _values_and_spec()
    document = _yaml_of(values, "templates", f"template.{template}")
    texts = {"message": document["message"], "body": document["webhook"][webhook]["body"]}
    results = go_check(texts, {"app": app})
    assert {r["parse"] + r["exec"] for r in results.values()} == {""}, results
    return results["message"]["output"], json.loads(results["body"]["output"])


def test_a_deploy_names_app_environment_revision_and_digests(go_check: GoCheck) -> None:
    message, body = _rendered(go_check, "platform-deployed", APPLICATION)
    assert message == (
        f"*web* deployed to `prod`\nRevision: `{REVISION}`\nImages:\n- `{IMAGES[0]}`\n- `{IMAGES[1]}`\n"
    )
    assert body == {
        "status": "deployed",
        "app": "web",
        "application": "prod-web",
        "environment": "prod",
        "revision": REVISION,
        "images": IMAGES,
        "health": "Healthy",
        "message": "successfully synced (all tasks run)",
    }


def test_a_failed_sync_quotes_the_error_without_breaking_markdown_or_json(go_check: GoCheck) -> None:
    app = copy.deepcopy(APPLICATION)
    error = 'one or more objects failed to apply: `Deployment "web"` is invalid'
    app["status"]["operationState"] = {"phase": "Failed", "message": error}
    app["status"]["health"] = {"status": "Degraded"}
    message, body = _rendered(go_check, "platform-sync-failed", app)
    assert message.startswith(f"*web* failed to sync in `prod`\nRevision: `{OLD_REVISION}`\n"), message
    # Inside the code block a backtick would end it early.
    assert message.endswith(
        "```\none or more objects failed to apply: 'Deployment \"web\"' is invalid\n```\n"
    )
    assert body["status"] == "sync-failed" and body["message"] == error and body["health"] == "Degraded"


def test_an_application_with_no_labels_or_status_still_renders(go_check: GoCheck) -> None:
    message, body = _rendered(go_check, "platform-health-degraded", {"metadata": {"name": "root-dev"}})
    assert message == "*root-dev* is degraded in `unknown`\nRevision: `unknown`\nImages: none reported\n"
    assert body == {
        "status": "health-degraded",
        "app": "root-dev",
        "application": "root-dev",
        "environment": "unknown",
        "revision": "unknown",
        "images": [],
        "health": "Unknown",
        "message": "",
    }


# --- every field read exists in Argo CD's Application CRD -----------------------------------------

_TOKENS = re.compile(r'\(|\)|"[^"]*"|[^\s()]+')


def _dig_paths(text: str) -> list[list[str]]:
    """The key paths of every ``(dig "k1" "k2" ... <default> .app)`` in a template text."""
    tokens = _TOKENS.findall(text)
    paths: list[list[str]] = []
    for start, token in enumerate(tokens):
        if token != "dig" or tokens[start - 1] != "(":
            continue
        arguments: list[str] = []
        depth = 0
        for argument in tokens[start + 1 :]:
            if argument == ")" and depth == 0:
                break
            if argument == "(" and depth == 0:
                arguments.append("(...)")
            elif depth == 0 and argument != ")":
                arguments.append(argument)
            depth += {"(": 1, ")": -1}.get(argument, 0)
        assert arguments[-1] == ".app", text
        # The arguments before the default (a string, a name or a parenthesized call) and .app.
        paths.append([a.strip('"') for a in arguments[:-2]])
    return paths


def _crd_has(schema: Mapping[str, Any], path: list[str]) -> bool:
    if path[0] == "metadata":
        # ObjectMeta: labels and annotations take any key.
        return (path[1] in {"name", "namespace"} and len(path) == 2) or path[1] in {"labels", "annotations"}
    node: Mapping[str, Any] = schema
    for key in path:
        while node.get("type") == "array":
            node = node["items"]
        properties = node.get("properties")
        if properties is None:
            return bool(node.get("x-kubernetes-preserve-unknown-fields") or node.get("additionalProperties"))
        if key not in properties:
            return False
        node = properties[key]
    return True


@needs_schemas
def test_every_application_field_read_is_in_the_crd() -> None:
    (crd_file,) = sorted(schemas.schemas_dir().glob("argo-cd-v*/application-crd.yaml"))[-1:]
    crd = yaml.safe_load(crd_file.read_text(encoding="utf-8"))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    values, _ = _values_and_spec()
    read: list[list[str]] = []
    for text in values["triggers"].values():
        for condition in yaml.safe_load(text):
            for expression in (condition["when"], condition.get("oncePer", "")):
                read += [
                    chain.replace("?", "").split(".")[1:]
                    for chain in re.findall(r"\bapp(?:\??\.\w+)+", expression)
                ]
    for text in values["templates"].values():
        read += _dig_paths(text)
        read += [chain.split(".")[2:] for chain in re.findall(r"\.app(?:\.\w+)+", text)]
    assert ["status", "summary", "images"] in read and [
        "status",
        "operationState",
        "syncResult",
        "revision",
    ] in read
    missing = [".".join(path) for path in read if not _crd_has(schema, path)]
    assert not missing, f"not in {crd_file}: {missing}"

"""Deployment notifications: Argo CD announces every deploy, failed sync and degraded app.

Argo CD (tooling cluster, argo-helm's argo-cd chart) runs its notifications controller with the
values built here (``notifications_values``, the chart's ``notifications:`` block). Every
Application is subscribed by default, through the chart's global ``subscriptions``, to three
triggers, each sending one template to every configured contact point:

* ``on-deployed``: the last sync operation succeeded and the app is Healthy; once per synced
  revision (``oncePer`` on the operation's ``syncResult.revision``, not ``status.sync.revision``:
  the latter moves with every commit to the repository, even one that changes nothing the app
  deploys, and would announce the same deploy again);
* ``on-sync-failed``: the sync operation ended in phase Error or Failed;
* ``on-health-degraded``: the app's health is Degraded.

Without ``oncePer`` the controller notifies when a condition turns true, not while it stays true.
``on-deployed`` may be announced as soon as a sync succeeds while the app still reports the health
it had before the sync; Argo CD's catalogue guards against that by comparing health's and the
operation's timestamps (``time.Parse``), which would also silence every sync that does not change
health. The platform keeps the plain condition: one early "deployed" is preferred to none.

Each message names the app (its Application label ``labels.APP``, or the Application's name), the
environment (label ``labels.ENVIRONMENT``), the Git revision and the images the app runs
(``status.summary.images``: they show digests where the manifests pin them, as the image updater's
``digest`` strategy writes them). A degraded app's chat message also quotes each degraded Rollout's
health message: an aborted canary names its revision and the failed metric (docs/delivery.md).

Contact points (``NotificationSettings.contact_points``) are of two kinds:

* ``telegram``: a bot posts to ``chatId``, a group or channel id (``-1001234567890``) or a public
  channel's ``@username``. Argo CD reads a recipient that does not start with ``-`` as a channel
  name and prefixes ``@`` itself (notifications-engine ``pkg/services/telegram.go``), so the
  recipient is written without ``@`` and a user's positive chat id is refused. Messages use
  Telegram's legacy Markdown, as the service sends them; every value that may hold a Markdown
  character is inside a code span.
* ``webhook``: a JSON document (app, application, environment, revision, images, status, health,
  message) POSTed to a URL kept in the vault (the URL usually carries the receiver's credential).

Email is refused: Argo CD would need an SMTP server, which the platform does not run.

Secrets: one vault entry per contact point (a bot token, or a webhook URL), synced by an
ExternalSecret (``notifications_secret_spec``) into ``argocd-notifications-secret``, the Secret the
controller reads; the chart must not create that Secret itself (``notifications.secret.create:
false``). Service configuration refers to a key as ``$<key>``; the controller substitutes it in every
string of the service's YAML (notifications-engine ``pkg/api/config.go``, ``[$][\\w-_]+``), so keys
are limited to letters, digits, ``_`` and ``-``, which contact point names already are.

``notification_problems`` checks the rendered values offline: triggers send defined templates,
subscriptions name defined triggers and configured services, every ``$key`` is one the
ExternalSecret provides, webhook sections match the webhook services, and each trigger condition
is balanced and reads only ``app.`` fields. It does not run expr-lang, Argo CD's condition language
(the controller compiles conditions at start-up); template bodies are parsed by a caller-supplied
parser (the tests use Go's own text/template with Sprig, built from offline/gotemplate_check).

Sources relied on (facts, not text):

* Argo CD docs, operator-manual/notifications: ``triggers.md`` (``when``, ``oncePer``, ``send``;
  conditions are expr-lang), ``templates.md``, ``subscriptions.md`` (global subscriptions with
  ``recipients: [<service>:<recipient>]`` and ``triggers``), ``catalog.md`` (on-deployed,
  on-sync-failed, on-health-degraded conditions), ``services/telegram.md`` (``service.telegram``
  with ``token: $<key>``; channel username or chat id as recipient), ``services/webhook.md``
  (``service.webhook.<name>`` with ``url``/``headers``; per-template ``webhook.<name>`` with
  ``method`` and ``body``; an empty recipient), ``services/overview.md`` (``service.<type>.<name>``,
  ``$<secret-key>``).
* Argo CD's ``notifications_catalog/triggers/on-deployed.yaml`` (``oncePer:
  app.status.operationState?.syncResult?.revision``, the timestamp guard discussed above).
* argoproj/notifications-engine: ``pkg/api/config.go`` (service keys, ``$`` substitution, global
  subscriptions split on ``:``), ``pkg/services/telegram.go``, ``pkg/services/webhook.go`` (the
  template's webhook section is picked by service name; method defaults to GET),
  ``pkg/templates/service.go`` (Sprig ``TxtFuncMap`` less ``env``/``expandenv``), ``go.mod``
  (Sprig v3.2.3, which has ``dig`` since 3.2.0, per Sprig's changelog).
* argo-helm ``charts/argo-cd/values.yaml`` and ``templates/argocd-notifications/configmap.yaml``,
  ``secret.yaml``: ``notifications.notifiers``/``templates``/``triggers`` are maps of ConfigMap keys
  to YAML text, ``subscriptions`` a list rendered into the ConfigMap's ``subscriptions`` key,
  ``secret.create`` switches the chart's own Secret off.
* The Application CRD (Argo CD v3.5.1, in ../shared/schemas) for the status fields read here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field, ValidationInfo, field_validator

from scw_platform import labels
from scw_platform.settings import DnsLabel, Settings, no_duplicates

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module (where the program puts it is the program's choice).
# --------------------------------------------------------------------------------------------

NotificationKind = Literal["telegram", "webhook"]
_KINDS: tuple[str, ...] = get_args(NotificationKind)
#: A group's or channel's id (negative), or a public channel's username (5 to 32 characters).
_CHAT_ID = re.compile(r"^(-[1-9][0-9]{0,18}|@[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9])$")


class NotificationContactPoint(Settings):
    """Where Argo CD announces deployments: a Telegram chat, or a webhook whose URL is in the vault."""

    name: DnsLabel
    """Contact point name (a DNS label), unique; its vault entry is named after it."""
    kind: NotificationKind
    """telegram (a bot posts to chatId; the vault entry holds the bot's token) or webhook (JSON POSTed
    to the URL the vault entry holds). Email is not available: Argo CD would need an SMTP server.
    """
    chat_id: str | None = Field(default=None, validate_default=True)
    """Required for kind telegram, refused otherwise: a group or channel id (-1001234567890) or a public
    channel's @username.
    """

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, kind: Any) -> Any:
        if kind == "email":
            raise ValueError(
                "email is not available for deployment notifications: Argo CD would need an SMTP "
                f"server, which the platform does not run (kind: one of {', '.join(_KINDS)})"
            )
        if kind not in _KINDS:
            raise ValueError(f"unknown contact point kind {kind!r} (one of: {', '.join(_KINDS)})")
        return kind

    @field_validator("chat_id", mode="before")
    @classmethod
    def _numeric_chat_id(cls, chat_id: Any) -> Any:
        # YAML hands an unquoted -1001234567890 over as an integer (true, an int to Python too, is
        # left to be refused).
        if isinstance(chat_id, int) and not isinstance(chat_id, bool):
            return str(chat_id)
        return chat_id

    @field_validator("chat_id")
    @classmethod
    def _chat(cls, chat_id: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "telegram":
            if chat_id is None:
                raise ValueError("required for kind telegram: the group or channel the bot posts to")
            if re.fullmatch(r"[0-9]+", chat_id):
                raise ValueError(
                    "must be a group or channel id (negative, like -1001234567890) or a public "
                    "channel's @username: Argo CD sends a recipient that does not start with '-' to "
                    f"the channel @<chatId>, so a user's chat id cannot be used (got {chat_id!r})"
                )
            if not _CHAT_ID.fullmatch(chat_id):
                raise ValueError(
                    "must be a group or channel id like -1001234567890 or a public channel's "
                    f"@username (5 to 32 letters, digits or _), got {chat_id!r}"
                )
        elif kind == "webhook" and chat_id is not None:
            raise ValueError(
                "not allowed for kind webhook: its URL is the contact point's vault entry "
                f"(by default {VAULT_FOLDER}/<name>)"
            )
        return chat_id


class NotificationSettings(Settings):
    """Deployment notifications from Argo CD: every Application announces deploys, failed syncs and
    degraded health to every contact point."""

    contact_points: list[NotificationContactPoint] = Field(min_length=1)
    """Where the announcements go (at least one)."""

    @field_validator("contact_points")
    @classmethod
    def _unique_names(cls, points: list[NotificationContactPoint]) -> list[NotificationContactPoint]:
        no_duplicates("contact point name", [p.name for p in points])
        return points


# --------------------------------------------------------------------------------------------
# Names Argo CD and the chart fix.
# --------------------------------------------------------------------------------------------

#: gitops.ARGOCD_NAMESPACE (gitops imports this module, so it cannot import gitops).
ARGOCD_NAMESPACE = "argocd"
#: The Secret Argo CD's notifications controller reads ``$<key>`` references from.
NOTIFICATIONS_SECRET = "argocd-notifications-secret"
#: The Scaleway Secret Manager folder holding one entry per contact point, named after it.
VAULT_FOLDER = "/platform/argocd-notifications"

#: What notifications-engine substitutes in a service's configuration (pkg/api/config.go).
_SECRET_REFERENCE = re.compile(r"[$]([\w-]+)")
#: What the chart's ConfigMap keys look like (``service.<type>(.<name>)``, ``trigger.<name>``, ...).
_SERVICE_PREFIX, _TRIGGER_PREFIX, _TEMPLATE_PREFIX = "service.", "trigger.", "template."


def secret_key(point: NotificationContactPoint) -> str:
    """The contact point's key in argocd-notifications-secret (``telegram-ops``, ``webhook-deploys``)."""
    return f"{point.kind}-{point.name}"


def vault_references(settings: NotificationSettings, folder: str = VAULT_FOLDER) -> dict[str, str]:
    """Contact point name -> its Scaleway Secret Manager reference (``path:<folder>/<name>``)."""
    return {point.name: f"path:{folder.rstrip('/')}/{point.name}" for point in settings.contact_points}


# --------------------------------------------------------------------------------------------
# Triggers and templates.
# --------------------------------------------------------------------------------------------

# Template expressions. ``dig`` (Sprig) reads a path with a default, so an Application without
# the labels or without an operation yet still renders; ``.app`` is the Application as a map.
_APP = f'(dig "metadata" "labels" "{labels.APP}" .app.metadata.name .app)'
_ENVIRONMENT = f'(dig "metadata" "labels" "{labels.ENVIRONMENT}" "unknown" .app)'
# The revision the last operation synced; before any operation, the one Argo CD compared.
_COMPARED_REVISION = '(dig "status" "sync" "revision" "unknown" .app)'
_REVISION = f'(dig "status" "operationState" "syncResult" "revision" {_COMPARED_REVISION} .app)'
_IMAGES = '(dig "status" "summary" "images" (list) .app)'
_HEALTH = '(dig "status" "health" "status" "Unknown" .app)'
_OPERATION_MESSAGE = '(dig "status" "operationState" "message" "" .app)'


@dataclass(frozen=True)
class _Event:
    trigger: str
    template: str
    description: str
    when: str
    #: The webhook body's ``status``.
    status: str
    #: The Telegram message's first line, after the app's name.
    headline: str
    once_per: str | None = None
    #: Whether the message quotes the operation's message (what failed).
    with_operation_message: bool = False
    #: Whether the message quotes each degraded Rollout's health message: an aborted canary's names
    #: the revision and the failed metric (scw_platform.delivery).
    with_rollouts: bool = False


_EVENTS: tuple[_Event, ...] = (
    _Event(
        trigger="on-deployed",
        template="platform-deployed",
        description="The last sync succeeded and the app is Healthy; once per synced revision.",
        when=(
            "app.status.operationState != nil and app.status.operationState.phase == 'Succeeded' "
            "and app.status.health.status == 'Healthy'"
        ),
        once_per="app.status.operationState.syncResult?.revision",
        status="deployed",
        headline="deployed to",
    ),
    _Event(
        trigger="on-sync-failed",
        template="platform-sync-failed",
        description="The sync operation ended in phase Error or Failed.",
        when="app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']",
        status="sync-failed",
        headline="failed to sync in",
        with_operation_message=True,
    ),
    _Event(
        trigger="on-health-degraded",
        template="platform-health-degraded",
        description="The app's health is Degraded.",
        when="app.status.health.status == 'Degraded'",
        status="health-degraded",
        headline="is degraded in",
        with_rollouts=True,
    ),
)

#: Argo CD's own health check of argoproj.io/Rollout (resource_customizations/argoproj.io/Rollout/
#: health.lua) reports an aborted rollout as Degraded with the Rollout's status message, which Argo
#: Rollouts writes as "RolloutAborted: Rollout aborted update to revision <n>: Metric "<name>"
#: assessed Failed ...". The resource's health sits in the Application's status.resources[].
_DEGRADED_ROLLOUTS = (
    '{{ range (dig "status" "resources" (list) .app) }}{{ if eq .kind "Rollout" }}{{ with .health }}'
    '{{ if eq .status "Degraded" }}\nRollout rolled back{{ with .message }}: '
    '`{{ . | replace "`" "\'" | trunc 400 }}`{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}'
)


def _message(event: _Event) -> str:
    """The chat message (Telegram's legacy Markdown): values that may hold a Markdown character sit in
    code spans or a code block, whose closing backtick is the only character they must not hold."""
    lines = [
        f"*{{{{ {_APP} }}}}* {event.headline} `{{{{ {_ENVIRONMENT} }}}}`",
        f"Revision: `{{{{ {_REVISION} }}}}`",
        # One image a line, or "none reported" on the same line.
        f"Images:{{{{ range {_IMAGES} }}}}\n- `{{{{ . }}}}`{{{{ else }}}} none reported{{{{ end }}}}",
    ]
    if event.with_rollouts:
        # Nothing when no Rollout is degraded: the message is then the plain health line.
        lines[-1] += _DEGRADED_ROLLOUTS
    if event.with_operation_message:
        # Backticks would close the code block early; a long error is cut to keep the chat readable.
        lines += ["```", f'{{{{ {_OPERATION_MESSAGE} | replace "`" "\'" | trunc 600 }}}}', "```"]
    return "\n".join(lines) + "\n"


def _webhook_body(event: _Event) -> str:
    """The webhook's JSON document: every value through ``toJson``, so any text stays valid JSON."""
    fields = {
        "status": f'"{event.status}"',
        "app": f"{{{{ toJson {_APP} }}}}",
        "application": "{{ toJson .app.metadata.name }}",
        "environment": f"{{{{ toJson {_ENVIRONMENT} }}}}",
        "revision": f"{{{{ toJson {_REVISION} }}}}",
        "images": f"{{{{ toJson {_IMAGES} }}}}",
        "health": f"{{{{ toJson {_HEALTH} }}}}",
        "message": f"{{{{ toJson {_OPERATION_MESSAGE} }}}}",
    }
    return "{\n" + ",\n".join(f'  "{key}": {value}' for key, value in fields.items()) + "\n}\n"


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as literal blocks, so the ConfigMap reads like the templates."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def _yaml(document: Any) -> str:
    # Wide lines: a condition stays on one line instead of being folded.
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=1000)


def _recipient(point: NotificationContactPoint) -> str:
    """The subscription's ``<service>[:<recipient>]``: a webhook has no recipient, a channel's
    username goes without its ``@`` (Argo CD adds it)."""
    if point.kind == "telegram" and point.chat_id is not None:
        return f"{point.name}:{point.chat_id.removeprefix('@')}"
    return point.name


def _service(point: NotificationContactPoint) -> dict[str, Any]:
    reference = f"${secret_key(point)}"
    if point.kind == "telegram":
        return {"token": reference}
    return {"url": reference, "headers": [{"name": "Content-Type", "value": "application/json"}]}


def notifications_values(settings: NotificationSettings) -> dict[str, Any]:
    """The argo-cd chart's ``notifications:`` block (a pure function, so tests can inspect it)."""
    webhooks = [p.name for p in settings.contact_points if p.kind == "webhook"]
    templates: dict[str, str] = {}
    for event in _EVENTS:
        template: dict[str, Any] = {"message": _message(event)}
        if webhooks:
            body = _webhook_body(event)
            template["webhook"] = {name: {"method": "POST", "body": body} for name in webhooks}
        templates[f"{_TEMPLATE_PREFIX}{event.template}"] = _yaml(template)
    triggers = {
        f"{_TRIGGER_PREFIX}{event.trigger}": _yaml(
            [
                {
                    "description": event.description,
                    "when": event.when,
                    **({"oncePer": event.once_per} if event.once_per else {}),
                    "send": [event.template],
                }
            ]
        )
        for event in _EVENTS
    }
    return {
        "enabled": True,
        # The ExternalSecret owns argocd-notifications-secret (notifications_secret_spec).
        "secret": {"create": False},
        "notifiers": {
            f"{_SERVICE_PREFIX}{point.kind}.{point.name}": _yaml(_service(point))
            for point in settings.contact_points
        },
        "triggers": triggers,
        "templates": templates,
        # Global subscriptions: every Application, every trigger, every contact point; nothing for an
        # app team to annotate or forget.
        "subscriptions": [
            {
                "recipients": [_recipient(point) for point in settings.contact_points],
                "triggers": [event.trigger for event in _EVENTS],
            }
        ],
    }


# --------------------------------------------------------------------------------------------
# The Secret, from the vault.
# --------------------------------------------------------------------------------------------


def notifications_secret_spec(
    settings: NotificationSettings,
    *,
    store: str,
    remote_keys: Mapping[str, str],
) -> dict[str, Any]:
    """The ExternalSecret's spec: one key per contact point (``secret_key``) from its vault entry
    (``remote_keys``: contact point name -> remote reference, e.g. ``vault_references``) into
    argocd-notifications-secret."""
    names = [point.name for point in settings.contact_points]
    if sorted(remote_keys) != sorted(names):
        raise ValueError(
            f"remote keys for contact points {sorted(remote_keys)} do not match the configured "
            f"contact points {sorted(names)}"
        )
    return {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
        "target": {"name": NOTIFICATIONS_SECRET, "creationPolicy": "Owner"},
        "data": [
            {"secretKey": secret_key(point), "remoteRef": {"key": remote_keys[point.name]}}
            for point in settings.contact_points
        ],
    }


def declare_notifications_secret(
    name: str,
    *,
    provider: k8s.Provider,
    store: str,
    settings: NotificationSettings,
    remote_keys: Mapping[str, str],
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.apiextensions.CustomResource:
    """The ExternalSecret in ``argocd`` (the caller's ``opts`` carry its parent and what it waits for:
    the namespace, the operator and its stores)."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version="external-secrets.io/v1",
        kind="ExternalSecret",
        metadata={"name": NOTIFICATIONS_SECRET, "namespace": ARGOCD_NAMESPACE},
        spec=notifications_secret_spec(settings, store=store, remote_keys=remote_keys),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider)),
    )


# --------------------------------------------------------------------------------------------
# The offline validator.
# --------------------------------------------------------------------------------------------

#: Template id -> text in, template id -> parse error out (only templates that fail).
TemplateParser = Callable[[Mapping[str, str]], Mapping[str, str]]

# expr-lang tokens, enough to check what the conditions here are made of.
_CONDITION_TOKEN = re.compile(
    r"""\s+
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<number>[0-9]+(?:\.[0-9]+)?)
    |(?P<chain>[A-Za-z_]\w*(?:\??\.[A-Za-z_]\w*)*)
    |(?P<open>[(\[])
    |(?P<close>[)\]])
    |(?P<operator>==|!=|<=|>=|&&|\|\||[<>!,+*/%-])
    """,
    re.VERBOSE,
)
_CONDITION_WORDS = frozenset(
    {"and", "or", "not", "in", "nil", "true", "false", "matches", "contains", "startsWith", "endsWith"}
)
_PAIRS = {")": "(", "]": "["}


def condition_problems(expression: str) -> list[str]:
    """What is wrong with a trigger's ``when`` or ``oncePer``: unbalanced brackets, an unterminated
    string, a character expr-lang has no use for, or a name other than an ``app.`` field. This is a
    syntax check of the subset the platform writes, not expr-lang itself."""
    if not expression.strip():
        return ["is empty"]
    problems: list[str] = []
    open_brackets: list[str] = []
    position = 0
    while position < len(expression):
        match = _CONDITION_TOKEN.match(expression, position)
        if match is None:
            character = expression[position]
            what = "unterminated string" if character in "'\"" else f"unexpected {character!r}"
            return [*problems, f"{what} at offset {position}"]
        kind, token = match.lastgroup, match.group()
        if kind == "open":
            open_brackets.append(token)
        elif kind == "close":
            if not open_brackets or open_brackets.pop() != _PAIRS[token]:
                return [*problems, f"unbalanced {token!r} at offset {position}"]
        elif kind == "chain" and token not in _CONDITION_WORDS and not token.startswith(("app.", "app?.")):
            problems.append(f"reads {token!r}: a condition may read only app.* fields")
        position = match.end()
    problems += [f"unclosed {bracket!r}" for bracket in open_brackets]
    return problems


def notification_problems(
    values: Mapping[str, Any],
    secret_spec: Mapping[str, Any],
    *,
    parse_templates: TemplateParser | None = None,
) -> list[str]:
    """Offline checks of the chart's ``notifications:`` block against the ExternalSecret's spec (see the
    module docstring); ``parse_templates`` parses the template texts when given."""
    problems: list[str] = []
    if values.get("enabled") is not True:
        problems.append("notifications.enabled: must be true")
    if values.get("secret", {}).get("create") is not False:
        problems.append(
            f"notifications.secret.create: must be false (the ExternalSecret owns {NOTIFICATIONS_SECRET})"
        )
    if secret_spec.get("target", {}).get("name") != NOTIFICATIONS_SECRET:
        problems.append(
            f"the ExternalSecret must write {NOTIFICATIONS_SECRET}, not {secret_spec.get('target')}"
        )
    provided = {entry["secretKey"] for entry in secret_spec.get("data", [])}
    services = _parsed(values.get("notifiers", {}), _SERVICE_PREFIX, problems)
    templates = _parsed(values.get("templates", {}), _TEMPLATE_PREFIX, problems)
    triggers = _parsed(values.get("triggers", {}), _TRIGGER_PREFIX, problems)

    service_types = _service_types(services, provided, problems)
    webhooks = {name for name, kind in service_types.items() if kind == "webhook"}
    sent = _trigger_templates(triggers, set(templates), problems)
    texts = _template_texts(templates, webhooks, sent, problems)
    if parse_templates is not None:
        problems += [f"{where}: {error}" for where, error in sorted(parse_templates(texts).items())]
    for index, subscription in enumerate(values.get("subscriptions") or []):
        where = f"subscriptions[{index}]"
        problems += [
            f"{where}.triggers: trigger {trigger!r} is not defined"
            for trigger in subscription.get("triggers") or []
            if trigger not in triggers
        ]
        problems += [
            f"{where}.recipients: {recipient!r} names no configured service"
            for recipient in subscription.get("recipients") or []
            if str(recipient).split(":")[0] not in service_types
        ]
    return problems


def _service_types(services: Mapping[str, Any], provided: set[str], problems: list[str]) -> dict[str, str]:
    """Service name -> type (``service.<type>(.<name>)``, the name defaulting to the type); every
    ``$<key>`` a service refers to must be one the ExternalSecret provides."""
    types: dict[str, str] = {}
    for key, config in services.items():
        parts = key.split(".")
        if len(parts) > 2:
            problems.append(f"service.{key}: must be service.<type> or service.<type>.<name>")
            continue
        types[parts[-1]] = parts[0]
        problems += [
            f"service.{key}: ${reference} is no key of the ExternalSecret "
            f"(it provides: {', '.join(sorted(provided)) or 'none'})"
            for reference in sorted(set(_secret_references(config)))
            if reference not in provided
        ]
    return types


def _trigger_templates(triggers: Mapping[str, Any], templates: set[str], problems: list[str]) -> set[str]:
    """The templates the triggers send; each condition must be well formed and send defined ones."""
    sent: set[str] = set()
    for name, conditions in triggers.items():
        if not isinstance(conditions, list) or not conditions:
            problems.append(f"trigger.{name}: must be a list of conditions")
            continue
        for index, condition in enumerate(conditions):
            where = f"trigger.{name}[{index}]"
            if not isinstance(condition, dict):
                problems.append(f"{where}: must be a map (when, send, ...)")
                continue
            if "when" not in condition:
                problems.append(f"{where}.when: required (without it the trigger never fires)")
            for field in ("when", "oncePer"):
                if field in condition:
                    problems += [f"{where}.{field}: {p}" for p in condition_problems(str(condition[field]))]
            send = condition.get("send") or []
            if not send:
                problems.append(f"{where}.send: names no template")
            problems += [f"{where}.send: template {t!r} is not defined" for t in send if t not in templates]
            sent.update(send)
    return sent


def _template_texts(
    templates: Mapping[str, Any], webhooks: set[str], sent: set[str], problems: list[str]
) -> dict[str, str]:
    """Every Go template text (the message, each webhook's body and path) by where it is; a template's
    webhook sections must name webhook services, and a sent template needs one for each."""
    texts: dict[str, str] = {}
    for name, template in templates.items():
        if not isinstance(template, dict):
            problems.append(f"template.{name}: must be a map")
            continue
        if "message" in template:
            texts[f"template.{name}.message"] = str(template["message"])
        sections = template.get("webhook") or {}
        for webhook, request in sections.items():
            if webhook not in webhooks:
                problems.append(f"template.{name}.webhook.{webhook}: no webhook service of that name")
            for part in ("body", "path"):
                if isinstance(request, dict) and part in request:
                    texts[f"template.{name}.webhook.{webhook}.{part}"] = str(request[part])
        if name in sent:
            # Without its section a webhook gets the chat message in a GET (webhook.go's defaults).
            problems += [
                f"template.{name}: no webhook section for service {webhook!r}"
                for webhook in sorted(webhooks - set(sections))
            ]
    return texts


def _secret_references(config: Any) -> list[str]:
    """Every ``$<key>`` in the strings of a service's configuration, as the controller substitutes."""
    if isinstance(config, str):
        return _SECRET_REFERENCE.findall(config)
    if isinstance(config, dict):
        return [ref for value in config.values() for ref in _secret_references(value)]
    if isinstance(config, list):
        return [ref for value in config for ref in _secret_references(value)]
    return []


def _parsed(entries: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    """ConfigMap keys ``<prefix><name>`` with YAML text, parsed, by name; bad keys and YAML reported."""
    parsed: dict[str, Any] = {}
    for key, text in entries.items():
        if not key.startswith(prefix):
            problems.append(f"{key}: must start with {prefix!r}")
            continue
        try:
            parsed[key.removeprefix(prefix)] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"{key}: not YAML ({error})")
    return parsed

"""The program's rules between keys: what a stack's keys need from each other and from
environments.yaml.

The library's settings models say what a value *is* (a zone of the region, a catalogued node
type, a pinned image); what each role needs and may not do without is ``program/policy.py``.
Each rule adds ``key path: message`` lines to one :class:`Problems`; all are reported together,
before any resource exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from program import environments as env_list
from program.environments import Environments
from program.model import Operations, app_secrets_path
from scw_platform import catalogue, cockpit_routing
from scw_platform.apps import DATABASE_KEYS, AppSettings, mebibytes, millicores
from scw_platform.ci import CiSettings, concurrent_pods, pod_ephemeral_gb
from scw_platform.cluster import ClusterSettings, Pool
from scw_platform.database import DatabaseSettings
from scw_platform.dns import DnsSettings
from scw_platform.gitops import GitOpsSettings
from scw_platform.ingress import IngressSettings, within_domain
from scw_platform.observability import SEVERITIES_RECEIVED, ContactPoint, ObservabilitySettings
from scw_platform.secrets import ONEPASSWORD_ITEM, SCALEWAY_PATH, VaultSettings
from scw_platform.tls import TlsSettings

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Problems:
    items: list[str]

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def plain_choice(value: Any, path: str, allowed: Iterable[str], problems: Problems) -> Any:
    allowed = tuple(allowed)
    if value is None:
        problems.add(path, f"required (one of: {', '.join(allowed)})")
        return None
    if value not in allowed:
        problems.add(path, f"must be one of: {', '.join(allowed)} (got {value!r})")
        return None
    return value


def environment(raw: Any, environments: Environments, problems: Problems) -> str | None:
    """``platform:environment``: one of the environments of environments.yaml."""
    declared = ", ".join(sorted(environments.entries))
    if raw is None:
        problems.add(
            "platform:environment",
            f"required: this stack's environment in {environments.source} ({declared})",
        )
        return None
    if not isinstance(raw, str) or raw not in environments.entries:
        problems.add(
            "platform:environment",
            f"must be an environment of {environments.source} ({declared}), got {str(raw)[:80]!r}",
        )
        return None
    return raw


def project_id(
    raw: Any, environment: str | None, environments: Environments, problems: Problems
) -> str | None:
    """``scaleway:projectId`` (the provider's default project) is the environment's own project."""
    if raw is None:
        problems.add("scaleway:projectId", "required (the Scaleway project UUID every identity is scoped to)")
        return None
    if not _UUID.fullmatch(str(raw)):
        problems.add("scaleway:projectId", f"must be a project UUID (got {str(raw)[:80]!r})")
        return None
    if environment is not None and raw != environments.entries[environment].project_id:
        problems.add(
            "scaleway:projectId",
            f"must be {environments.key(environment, 'projectId')} "
            f"({environments.entries[environment].project_id}): one project per environment",
        )
    return str(raw)


def served_hostnames(
    environment: str,
    environments: Environments,
    *,
    apps: list[AppSettings],
    ingress: IngressSettings | None,
    gitops: GitOpsSettings | None,
    problems: Problems,
) -> None:
    """Every hostname the stack serves is one environments.yaml gives its environment, so no two
    environments can claim the same name (the list checks that across environments)."""
    entry = environments.entries[environment]
    listed = set(entry.dns.hostnames) if entry.dns is not None else set()
    served: list[tuple[str, str]] = [
        (f"platform:apps[{i}].hostname", app.hostname) for i, app in enumerate(apps)
    ]
    if ingress is not None:
        served += [(f"platform:ingress.hostnames[{i}]", h) for i, h in enumerate(ingress.hostnames)]
        served += [
            (f"platform:ingress.platformHostnames[{i}]", h) for i, h in enumerate(ingress.platform_hostnames)
        ]
        served += [(f"platform:ingress.redirects.{h}", h) for h in ingress.redirects]
    if gitops is not None and gitops.argocd is not None and gitops.argocd.hostname is not None:
        served.append(("platform:gitops.argocd.hostname", gitops.argocd.hostname))
    webhook = gitops.argocd.webhook if gitops is not None and gitops.argocd is not None else None
    if webhook is not None and webhook.hostname is not None:
        served.append(("platform:gitops.argocd.webhook.hostname", webhook.hostname))
    for path, hostname in served:
        if not any(env_list.matches(pattern, hostname) for pattern in listed):
            problems.add(
                path,
                f"{hostname} is not one of {environments.key(environment, 'dns.hostnames')} "
                f"({', '.join(sorted(listed)) or 'none'}): list it there first",
            )


def gitops_rules(
    role: str,
    gitops: GitOpsSettings,
    *,
    environment: str,
    environments: Environments,
    apps: list[AppSettings],
    secrets: Mapping[str, Any],
    problems: Problems,
    apps_known: bool = True,
) -> None:
    if role == "tooling":
        _tooling_gitops_rules(gitops, secrets=secrets, problems=problems)
    else:
        if environments.entries[environment].managed_by is None:
            problems.add(
                environments.key(environment, "managedBy"),
                "required with platform:gitops: the tooling environment whose Argo CD registers this one",
            )
        _workload_gitops_rules(role, gitops, problems=problems)
        _promotion_rules(role, gitops, environment=environment, environments=environments, problems=problems)
        if apps_known and not apps and not gitops.namespaces:
            # An empty namespace list would register the cluster for every namespace.
            problems.add(
                "platform:gitops",
                "a registered environment needs platform:apps or platform:gitops.namespaces: "
                "Argo CD manages those namespaces only",
            )
    path = "platform:gitops"
    declared = {app.name for app in apps}
    for i, update in enumerate(gitops.image_updates if apps_known else ()):
        if update.app not in declared:
            problems.add(
                f"{path}.imageUpdates[{i}].app",
                f"app '{update.app}' is not declared in platform:apps "
                f"(declared: {', '.join(sorted(declared)) or 'none'})",
            )


def _tooling_gitops_rules(gitops: GitOpsSettings, *, secrets: Mapping[str, Any], problems: Problems) -> None:
    path = "platform:gitops"
    # Only tooling holds Git credentials: Argo CD's read-only one and the image updater's write one.
    for key, what in (
        ("gitopsRepoCredential", "<read-only token|deploy key>"),
        ("gitopsWriteCredential", "<token|key>"),
    ):
        if key not in secrets:
            problems.add(
                f"platform:{key}", f"required with {path}: pulumi config set --secret platform:{key} {what}"
            )
    if gitops.repo_url is None:
        problems.add(f"{path}.repoUrl", "required for role tooling (the repository Argo CD reads)")
    if gitops.argocd is None:
        problems.add(f"{path}.argocd", "required for role tooling (Argo CD runs in the tooling cluster)")
    else:
        _webhook_rules(gitops, secrets=secrets, problems=problems)
    # The OIDC client secret is no deploy-time secret: it is the vault's (gitops.OIDC_VAULT_KEY);
    # the retired platform:argocdOidcClientSecret is refused in program/config.py.
    if gitops.argocd is not None and gitops.argocd.hostname is not None and gitops.argocd.oidc is None:
        problems.add(
            f"{path}.argocd.oidc",
            "required with argocd.hostname: a public Argo CD UI with the local admin account is refused; "
            "configure single sign-on, or remove hostname and reach the UI with kubectl port-forward",
        )
    branch = gitops.image_updater.write_back_branch
    if branch == gitops.target_revision or not branch.startswith(WRITE_BACK_PREFIX):
        problems.add(
            f"{path}.imageUpdater.writeBackBranch",
            f"must start with {WRITE_BACK_PREFIX} (the prefix the GitOps repository's pipeline checks, "
            f"docs/gitops.md) and differ from targetRevision '{gitops.target_revision}': the image updater "
            "writes to its own branches and a merge request brings them in",
        )
    if gitops.target_revision == "HEAD" or gitops.target_revision.startswith("refs/"):
        problems.add(
            f"{path}.targetRevision",
            "must name the protected branch itself (e.g. main), not HEAD or a refs/ path",
        )
    _workload_only_keys(gitops, problems)


def _webhook_rules(gitops: GitOpsSettings, *, secrets: Mapping[str, Any], problems: Problems) -> None:
    """The Git webhook: its shared secret, and exactly one hostname it is reached on."""
    argocd = gitops.argocd
    assert argocd is not None
    path = "platform:gitops.argocd.webhook"
    webhook = argocd.webhook
    if webhook is None:
        return
    if "argocdWebhookSecret" not in secrets:
        problems.add(
            "platform:argocdWebhookSecret",
            f"required with {path}: pulumi config set --secret platform:argocdWebhookSecret <secret> "
            "(the same value goes into the Git host's webhook settings)",
        )
    if argocd.hostname is None and webhook.hostname is None:
        problems.add(
            f"{path}.hostname",
            "required without platform:gitops.argocd.hostname: the hostname the Git host calls "
            "(only /api/webhook is routed there)",
        )
    elif argocd.hostname is not None and webhook.hostname is not None:
        problems.add(
            f"{path}.hostname",
            f"not allowed with platform:gitops.argocd.hostname: the webhook is served on {argocd.hostname}",
        )


def _workload_only_keys(gitops: GitOpsSettings, problems: Problems) -> None:
    """How an environment's images update is the environment's own stack's to say."""
    for key in ("image_updates", "promoted_from"):
        if key in gitops.model_fields_set:
            problems.add(
                f"platform:gitops.{_camel(key)}",
                "not allowed for role tooling (set it in the environment's stack)",
            )


def _promotion_rules(
    role: str, gitops: GitOpsSettings, *, environment: str, environments: Environments, problems: Problems
) -> None:
    """Production receives images by promotion only: a digest that ran in an earlier environment,
    through a reviewed merge request (ops/promote.py), never the image updater's guess."""
    path = "platform:gitops.promotedFrom"
    source = gitops.promoted_from
    if source is None:
        if role == "production":
            problems.add(
                path,
                "required for role production: images reach production only by promotion of a digest "
                "another environment ran (e.g. promotedFrom: dev; docs/releases.md)",
            )
        return
    entries = environments.entries
    own_hub = entries[environment].managed_by
    if source == environment:
        problems.add(path, f"'{source}' is this environment: promote from another one")
    elif source not in entries:
        problems.add(path, f"unknown environment '{source}' (known: {', '.join(sorted(entries))})")
    elif own_hub is not None and (entries[source].role == "tooling" or entries[source].managed_by != own_hub):
        problems.add(
            path,
            f"'{source}' must be a workload environment registered by the same tooling environment "
            f"as this one ({own_hub}): promotion compares what both run in one Argo CD",
        )
    if gitops.image_updates:
        problems.add(
            "platform:gitops.imageUpdates",
            f"not allowed with {path}: no image updater writes an environment fed by promotion "
            f"(configure image updates in '{source}')",
        )


def _workload_gitops_rules(role: str, gitops: GitOpsSettings, *, problems: Problems) -> None:
    path = "platform:gitops"
    # The hub owns Argo CD, the repository and the image updater; a workload stack only says which
    # namespaces and apps it offers, and how their images update.
    for key in ("argocd", "repo_url", "repo_username", "target_revision", "image_updater", "notifications"):
        if key in gitops.model_fields_set:
            problems.add(f"{path}.{_camel(key)}", f"not allowed for role {role} (the tooling stack sets it)")


#: Every write-back branch starts with this (docs/gitops.md, "The image updater's branches").
WRITE_BACK_PREFIX = "image-updater-"


#: Keys that moved to environments.yaml, with where they live now.
_MOVED: Mapping[str, str] = {
    "platform:role": "<environment>.role",
    "platform:addressPlan": "<environment>.subnet",
    "platform:gitops.toolingStack": "<environment>.managedBy (the tooling environment's stack is read)",
    "platform:gitops.environments": "<environment>.managedBy of each environment tooling registers",
    "platform:gitops.stacks": "<environment>.stack",
}


def without_moved_keys(raw_platform: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """``raw_platform`` without the keys that moved to environments.yaml, each reported."""
    raw = {k: v for k, v in raw_platform.items() if f"platform:{k}" not in _MOVED}
    gitops = raw_platform.get("gitops")
    if isinstance(gitops, dict):
        raw["gitops"] = {k: v for k, v in gitops.items() if f"platform:gitops.{k}" not in _MOVED}
    for key, now in _MOVED.items():
        head, _, sub = key.removeprefix("platform:").partition(".")
        if (sub and isinstance(gitops, dict) and sub in gitops) or (not sub and head in raw_platform):
            problems.add(key, f"moved to {env_list.FILE_NAME}: {now}")
    return raw


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def app_rules(
    apps: list[AppSettings],
    database: DatabaseSettings | None,
    problems: Problems,
    *,
    databases_known: bool = True,
) -> None:
    databases = {d.name for d in database.databases} if database else set()
    names = [a.name for a in apps]
    hostnames = [a.hostname for a in apps]
    for i, app in enumerate(apps):
        path = f"platform:apps[{i}]"
        if names.index(app.name) != i:
            problems.add(f"{path}.name", f"duplicate app name '{app.name}'")
        if hostnames.index(app.hostname) != i:
            problems.add(
                f"{path}.hostname",
                f"duplicate hostname '{app.hostname}' (also used by {names[hostnames.index(app.hostname)]})",
            )
        if databases_known and app.database is not None and app.database not in databases:
            problems.add(
                f"{path}.database",
                f"database '{app.database}' is not declared in platform:database.databases "
                f"(declared: {', '.join(sorted(databases)) or 'none'})",
            )
        if app.migrate is not None and app.database is None:
            problems.add(
                f"{path}.migrate",
                "requires platform:apps[].database: the migration runs as that database's migrator",
            )
    if database is not None:
        connection_budget(apps, database, problems)


#: Connections the platform itself may hold beside the apps': PostgreSQL's reserved superuser
#: slots (superuser_reserved_connections, 3 by default), the managed service's own monitoring and
#: the admin, and per app database one for its migrator and one for the restore check's reader.
PLATFORM_CONNECTIONS = 5
PER_DATABASE_CONNECTIONS = 2


def connection_budget(apps: list[AppSettings], database: DatabaseSettings, problems: Problems) -> None:
    """Every app's pool (maxConnections per replica, for every replica a rolling update may run:
    twice its replicas) plus the platform's own connections fit the database's connection limit."""
    # An app naming an undeclared database has its own problem; it does not count here.
    declared = {entry.name for entry in database.databases}
    users = [a for a in apps if a.database in declared]
    if not users:
        return
    budget = {a.name: a.max_connections * 2 * a.replicas for a in users}
    platform = PLATFORM_CONNECTIONS + PER_DATABASE_CONNECTIONS * len(database.databases)
    total = sum(budget.values()) + platform
    if total > database.max_connections:
        parts = ", ".join(
            f"{name} {a.max_connections} x {2 * a.replicas} = {budget[name]}"
            for name, a in ((a.name, a) for a in users)
        )
        problems.add(
            "platform:database.maxConnections",
            f"{total} connections needed, more than the limit {database.max_connections}: {parts} "
            f"(maxConnections x replicas x 2 for a rolling update), platform {platform}; lower the apps' "
            "maxConnections or replicas, or raise the limit",
        )


def delivery_rules(
    apps: Sequence[AppSettings], observability: ObservabilitySettings | None, problems: Problems
) -> None:
    """A canary app's analysis reads Traefik's metrics from the stack's metrics backend: without
    observability the analysis could only error, and every canary would abort."""
    if observability is not None:
        return
    for i, app in enumerate(apps):
        if app.delivery is not None:
            problems.add(
                f"platform:apps[{i}].delivery",
                "needs platform:operations.observability (the analysis queries Traefik's metrics in "
                "the stack's metrics backend: Cockpit, or the in-cluster Prometheus)",
            )


def operations_rules(
    operations: Operations,
    raw: Any,
    *,
    database: DatabaseSettings | None,
    present: Mapping[str, bool],
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    """platform:operations: what the restore check and observability need from other keys."""
    raw_check = raw.get("restoreCheck") if isinstance(raw, dict) else None
    if raw_check is not None:
        _restore_check_rules(raw_check, database=database, present=present, problems=problems)
    if operations.observability is not None:
        _observability_rules(operations.observability, present=present, secrets=secrets, problems=problems)


def _restore_check_rules(
    raw_check: Any, *, database: DatabaseSettings | None, present: Mapping[str, bool], problems: Problems
) -> None:
    path = "platform:operations"
    if not present["cluster"]:
        problems.add(f"{path}.restoreCheck", "requires platform:cluster (the CronJob runs in it)")
    if not present["database"]:
        problems.add(f"{path}.restoreCheck", "requires platform:database (the databases it dumps)")
    elif database is not None:
        # From the raw entries, so an invalid sibling (a bad maxAge) does not hide this problem.
        declared = {d.name for d in database.databases}
        entries = raw_check.get("databases") if isinstance(raw_check, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            name = entry.get("database") if isinstance(entry, dict) else None
            if isinstance(name, str) and name not in declared:
                problems.add(
                    f"{path}.restoreCheck.databases[{i}].database",
                    f"database '{name}' is not declared in platform:database.databases "
                    f"(declared: {', '.join(sorted(declared)) or 'none'})",
                )


def _observability_rules(
    observability: ObservabilitySettings,
    *,
    present: Mapping[str, bool],
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    opath = "platform:operations.observability"
    if not present["cluster"]:
        problems.add(opath, "requires platform:cluster (the agent runs in it)")
    webhooks = [i for i, p in enumerate(observability.contact_points) if p.kind == "webhook"]
    for i in webhooks[1:]:
        problems.add(
            f"{opath}.contactPoints[{i}]",
            "only one webhook contact point (its URL is the one secret platform:alertWebhookUrl)",
        )
    if webhooks and "alertWebhookUrl" not in secrets:
        problems.add(
            "platform:alertWebhookUrl",
            f"required with the webhook contact point {opath}.contactPoints[{webhooks[0]}]: "
            "pulumi config set --secret platform:alertWebhookUrl <url>",
        )
    _routing_rules(observability, secrets=secrets, problems=problems)


def _routing_rules(
    observability: ObservabilitySettings, *, secrets: Mapping[str, Any], problems: Problems
) -> None:
    """Telegram, severity routing and the heartbeat need an Alertmanager configuration: the
    in-cluster one (backend prometheus) or the one the platform loads into Cockpit's alert manager
    (backend cockpit, scw_platform/cockpit_routing.py), where it replaces Scaleway's email contact
    points, which receive every alert."""
    opath = "platform:operations.observability"
    points = observability.contact_points
    telegram = [i for i, p in enumerate(points) if p.kind == "telegram"]
    if telegram and "alertTelegramBotToken" not in secrets:
        problems.add(
            "platform:alertTelegramBotToken",
            f"required with the telegram contact point {opath}.contactPoints[{telegram[0]}]: "
            "pulumi config set --secret platform:alertTelegramBotToken <bot token>",
        )
    for i, point in enumerate(points):
        if point.receives != "all" and point.kind == "email":
            problems.add(
                f"{opath}.contactPoints[{i}].receives",
                f"'{point.receives}' is for webhook and telegram contact points: an email contact point "
                "is Cockpit's own and receives every alert; use all",
            )
    if observability.heartbeat and "alertHeartbeatUrl" not in secrets:
        problems.add(
            "platform:alertHeartbeatUrl",
            f"required with {opath}.heartbeat: pulumi config set --secret platform:alertHeartbeatUrl <url>",
        )
    if cockpit_routing.routed(observability):
        for i, point in enumerate(points):
            if point.kind == "email":
                problems.add(
                    f"{opath}.contactPoints[{i}].kind",
                    "email cannot be combined with telegram, webhook or the heartbeat on backend cockpit: "
                    "the platform then loads the whole routing into Cockpit's alert manager, which "
                    "replaces Scaleway's email contact points (and has no mail server to name). Use "
                    "telegram or webhook contact points only, or backend prometheus",
                )
        _delivery_rules(points, problems)
    elif observability.backend == "prometheus":
        _delivery_rules(points, problems)


def _delivery_rules(points: Sequence[ContactPoint], problems: Problems) -> None:
    """An Alertmanager configuration the platform writes (in the cluster, or loaded into Cockpit)
    delivers through webhook and Telegram contact points, and each severity must reach one."""
    opath = "platform:operations.observability"
    delivering = [p for p in points if p.kind in ("webhook", "telegram")]
    if not delivering:
        problems.add(
            f"{opath}.contactPoints",
            "needs a webhook or telegram contact point: the platform's Alertmanager configuration "
            "(backend prometheus, or the heartbeat on backend cockpit) delivers through them (with "
            "backend prometheus, email contact points receive only what Cockpit evaluates, the "
            "database alerts)",
        )
    else:
        for severity, receives in (("critical", "page or all"), ("warning", "channel or all")):
            if not [p for p in delivering if severity in SEVERITIES_RECEIVED[p.receives]]:
                problems.add(
                    f"{opath}.contactPoints",
                    f"no webhook or telegram contact point receives {severity} alerts (receives: "
                    f"{receives}): they would reach nobody",
                )


def secrets_rules(
    apps: list[AppSettings],
    vault: VaultSettings,
    *,
    environment: str | None,
    has_cluster: bool,
    present: bool,
    secrets: Mapping[str, Any],
    problems: Problems,
) -> None:
    """platform:secrets and each app's secrets contract (paths, keys the platform reserves)."""
    if present and not has_cluster:
        problems.add("platform:secrets", "requires platform:cluster (External Secrets runs in it)")
    if vault.backend == "onepassword" and "onepasswordServiceAccountToken" not in secrets:
        problems.add(
            "platform:onepasswordServiceAccountToken",
            "required with platform:secrets.backend onepassword: "
            "pulumi config set --secret platform:onepasswordServiceAccountToken <token>",
        )
    locations = _app_secret_locations(apps, vault, environment=environment, problems=problems)
    for i, app, where in locations:
        # A default location follows the name (a duplicate name is reported on its own): blame the
        # app whose explicit secretsPath collides with another app's location.
        others = [other.name for j, other, elsewhere in locations if elsewhere == where and j != i]
        if others and app.secrets_path is not None:
            problems.add(
                f"platform:apps[{i}].secretsPath",
                f"{where} is also app '{others[0]}''s location: each app reads only its own keys",
            )


def _app_secret_locations(
    apps: list[AppSettings], vault: VaultSettings, *, environment: str | None, problems: Problems
) -> list[tuple[int, AppSettings, str]]:
    """Each app's place in the vault, after the checks of its keys and its ``secretsPath``."""
    locations: list[tuple[int, AppSettings, str]] = []
    for i, app in enumerate(apps):
        path = f"platform:apps[{i}]"
        reserved = [key for key in app.required_keys if key in DATABASE_KEYS] if app.database else []
        if reserved:
            problems.add(
                f"{path}.requiredKeys",
                f"{', '.join(reserved)} provided by the platform for the app's database "
                "(remove them from requiredKeys)",
            )
        if app.secrets_path is not None:
            if vault.backend == "scaleway" and not SCALEWAY_PATH.fullmatch(app.secrets_path):
                problems.add(
                    f"{path}.secretsPath",
                    f"must be a Scaleway Secret Manager folder such as /{environment or 'prod'}/{app.name} "
                    f"(got {app.secrets_path!r})",
                )
                continue
            if vault.backend == "onepassword" and not ONEPASSWORD_ITEM.fullmatch(app.secrets_path):
                problems.add(
                    f"{path}.secretsPath",
                    "must be a 1Password item title (letters, digits, '_', '.', '-' and single spaces; "
                    f"no '/') (got {app.secrets_path!r})",
                )
                continue
        if environment is not None:
            locations.append((i, app, app_secrets_path(app, environment, vault.backend)))
    return locations


def front_door_rules(
    raw: Mapping[str, Any],
    *,
    ingress: IngressSettings | None,
    tls: TlsSettings | None,
    dns: DnsSettings | None,
    apps: list[AppSettings],
    gitops: GitOpsSettings | None,
    problems: Problems,
) -> None:
    """platform:ingress / tls / dns: what they need from each other and from apps and gitops."""
    _front_door_presence(raw, problems)
    if ingress is None:
        return
    argocd = gitops.argocd.hostname if gitops is not None and gitops.argocd is not None else None
    _served_by_whom(ingress, apps=apps, argocd=argocd, problems=problems)
    _certified(ingress, tls=tls, dns=dns, apps=apps, argocd=argocd, problems=problems)


def _front_door_presence(raw: Mapping[str, Any], problems: Problems) -> None:
    """The front door's keys come together, in a stack with a cluster."""
    present = {k: raw.get(k) is not None for k in ("ingress", "tls", "dns", "cluster")}
    if present["ingress"] and not present["cluster"]:
        problems.add("platform:ingress", "requires platform:cluster (Traefik and the Gateway run in it)")
    if present["ingress"] and not present["tls"]:
        problems.add(
            "platform:tls",
            "required with platform:ingress (the Gateway's HTTPS listeners need certificates), "
            "e.g. {acmeEmail: platform@example.com}",
        )
    for key in ("tls", "dns"):
        if present[key] and not present["ingress"]:
            problems.add(
                f"platform:{key}", "only allowed with platform:ingress (the front door it configures)"
            )


def _served_by_whom(
    ingress: IngressSettings, *, apps: list[AppSettings], argocd: str | None, problems: Problems
) -> None:
    """Every app and Argo CD hostname lies in the domain, is served by one kind of namespace only,
    and is not a redirect."""
    domain = ingress.domain
    path = "platform:ingress"
    for i, app in enumerate(apps):
        if not within_domain(app.hostname, domain):
            problems.add(f"platform:apps[{i}].hostname", f"{app.hostname} is outside {path}.domain {domain}")
        elif app.hostname in ingress.platform_hostnames:
            problems.add(
                f"platform:apps[{i}].hostname",
                f"{app.hostname} is listed in {path}.platformHostnames: app namespaces cannot serve it",
            )
    if argocd is not None:
        if not within_domain(argocd, domain):
            problems.add("platform:gitops.argocd.hostname", f"{argocd} is outside {path}.domain {domain}")
        elif argocd in ingress.hostnames or argocd in {a.hostname for a in apps}:
            problems.add(
                "platform:gitops.argocd.hostname",
                f"{argocd} is also an app hostname: only the platform's namespaces may serve Argo CD",
            )
    for i, app in enumerate(apps):
        if app.hostname in ingress.redirects:
            problems.add(
                f"platform:apps[{i}].hostname", f"{app.hostname} is in {path}.redirects: it only redirects"
            )
    if argocd is not None and argocd in ingress.redirects:
        problems.add("platform:gitops.argocd.hostname", f"{argocd} is in {path}.redirects: it only redirects")


def _certified(
    ingress: IngressSettings,
    *,
    tls: TlsSettings | None,
    dns: DnsSettings | None,
    apps: list[AppSettings],
    argocd: str | None,
    problems: Problems,
) -> None:
    """Every hostname can get a certificate: wildcards through DNS-01, in the managed zone."""
    path = "platform:ingress"
    every = [*ingress.hostnames, *ingress.platform_hostnames, *ingress.redirects]
    wildcards = [h for h in every if h.startswith("*.")]
    if wildcards and (tls is None or not tls.dns01):
        problems.add(
            f"{path}.hostnames",
            f"wildcard hostnames ({', '.join(wildcards)}) can only be certified through DNS-01: "
            "set platform:tls.dns01: true (with platform:dns provider scaleway)",
        )
    if tls is not None and tls.dns01 and (dns is None or not dns.managed):
        problems.add(
            "platform:tls.dns01",
            "needs the zone in Scaleway DNS: set platform:dns: {provider: scaleway} (the webhook writes "
            "the challenge TXT records there)",
        )
    if dns is not None and dns.managed:
        zone = dns.zone or ingress.domain
        extra = sorted(a.hostname for a in apps) + ([argocd] if argocd else [])
        outside = [h for h in dict.fromkeys([*every, *extra]) if not within_domain(h, zone)]
        if outside:
            problems.add("platform:dns.zone", f"{', '.join(outside)} lie outside the DNS zone {zone}")


def environment_rules(
    environment: str, environments: Environments, parsed: Mapping[str, Any], problems: Problems
) -> None:
    """What the stack serves and exports agrees with its entry in environments.yaml."""
    gitops = parsed.get("gitops")
    served_hostnames(
        environment,
        environments,
        apps=parsed.get("apps") or [],
        ingress=parsed.get("ingress"),
        gitops=gitops,
        problems=problems,
    )
    if environments.entries[environment].managed_by is not None and gitops is None:
        problems.add(
            environments.key(environment, "managedBy"),
            "set, but this stack has no platform:gitops: its tooling environment would wait for a "
            "registration it never exports",
        )


#: Bytes in a GiB over bytes in a GB: a Kubernetes quantity of 1Gi against a volume of 1 GB.
_GIB_PER_GB = 2**30 / 10**9


def ci_rules(
    ci: CiSettings, cluster: ClusterSettings | None, *, secrets: Mapping[str, Any], problems: Problems
) -> None:
    """platform:ci against the cluster it runs in: its pool exists and is tainted, and a build's
    limits fit on one of the pool's nodes (disk from the pool, CPU and memory from the catalogue)."""
    if "ciRunnerToken" not in secrets:
        problems.add(
            "platform:ciRunnerToken",
            "required with platform:ci: pulumi config set --secret platform:ciRunnerToken <token>",
        )
    quota, per_pod, pods = ci.ephemeral_storage_quota_gb, pod_ephemeral_gb(ci), concurrent_pods(ci)
    if quota < ci.build.ephemeral_storage_limit_gb:
        problems.add(
            "platform:ci.ephemeralStorageQuotaGb",
            f"{quota} GiB is less than one build's limit "
            f"(build.ephemeralStorageLimitGb {ci.build.ephemeral_storage_limit_gb}): no build could start",
        )
    elif quota < per_pod * pods:
        # A job pod over the quota is refused at creation: the job fails instead of waiting.
        problems.add(
            "platform:ci.ephemeralStorageQuotaGb",
            f"{quota} GiB holds {quota // per_pod} job pod(s) of {per_pod} GiB (the build's limit and its "
            f"runner's), fewer than the {pods} that may run at once: raise it to {per_pod * pods} or "
            "run fewer at once",
        )
    if cluster is None:
        return
    index = next((i for i, pool in enumerate(cluster.pools) if pool.name == ci.pool), None)
    if index is None:
        problems.add(
            "platform:ci.pool",
            f"pool '{ci.pool}' is not in platform:cluster.pools "
            f"(pools: {', '.join(p.name for p in cluster.pools)})",
        )
        return
    _builders_pool_rules(ci, cluster.pools[index], f"platform:cluster.pools[{index}]", problems)


def _builders_pool_rules(ci: CiSettings, pool: Pool, path: str, problems: Problems) -> None:
    if not any(taint.effect in ("NoSchedule", "NoExecute") for taint in pool.taints):
        problems.add(
            "platform:ci.pool",
            f"pool '{pool.name}' has no NoSchedule taint: give it one ({path}.taints, e.g. "
            f"[{{key: platform.scw/dedicated, value: {pool.name}}}]) so that nothing else runs on the "
            "builders' nodes",
        )
    node = catalogue.kapsule_node_type(pool.node_type)
    # Block volumes: the pool's root volume. Local SSD: the type's local disk (the catalogue).
    local_gb = node.max_local_storage_gb if node is not None else None
    disk_gb = pool.root_volume_size_gb if pool.root_volume_type != "l_ssd" else local_gb
    limit = ci.build.ephemeral_storage_limit_gb
    if disk_gb is not None and limit * _GIB_PER_GB > disk_gb:
        problems.add(
            "platform:ci.build.ephemeralStorageLimitGb",
            f"{limit} GiB is more than a {pool.name} node's disk ({disk_gb} GB, {path}): one build could "
            "fill it",
        )
    if node is None:
        return
    memory_gib = mebibytes(ci.build.memory_limit) / 1024
    if node.memory_gib is not None and memory_gib > node.memory_gib:
        problems.add(
            "platform:ci.build.memoryLimit",
            f"{ci.build.memory_limit} is more than a {pool.node_type} node's memory "
            f"({node.memory_gib:g} GiB)",
        )
    if node.vcpus is not None and millicores(ci.build.cpu_limit) > node.vcpus * 1000:
        problems.add(
            "platform:ci.build.cpuLimit",
            f"{ci.build.cpu_limit} is more than a {pool.node_type} node's {node.vcpus} vCPUs",
        )

"""Severity routing, Telegram and webhook contact points and the dead man's switch with backend
``cockpit``: the platform loads the whole Alertmanager configuration into Cockpit's alert manager.

Why this path: the Scaleway provider (and the Cockpit API behind it) declares only email contact
points, and every alert reaches every one of them. Cockpit's alert manager is a Prometheus
Alertmanager whose configuration API Scaleway exposes (``GET``/``POST``/``DELETE /api/v1/alerts``
on ``https://<id>.alertmanager.cockpit.<region>.scw.cloud``, scaleway/docs-content
pages/cockpit/reference-content/cockpit-supported-endpoints.mdx), and a Cockpit token may carry the
``setup_alerts`` scope ("permission to set up alerts", pulumiverse_scaleway observability.Token).
That endpoint is the Mimir alertmanager's per-tenant configuration API, which ``mimirtool
alertmanager load`` writes (grafana/mimir docs, references/architecture/components/alertmanager.md).
So the routing the in-cluster Alertmanager gets with backend prometheus
(:func:`scw_platform.observability.alertmanager_config`, checked with amtool) is, with backend
cockpit, loaded into Cockpit by a pinned mimirtool Job, the same way the rule groups are synced.

Three consequences, each enforced in config (program/rules.py):

* **One writer.** The loaded configuration replaces whatever Scaleway's contact-point API wrote
  there, so in this mode the alert manager is declared without contact points, and email contact
  points are refused (Cockpit's managed email has no SMTP settings a tenant configuration could name).
* **Credentials inline.** A tenant's configuration may not name files (Mimir refuses
  ``*_file`` credentials: pkg/alertmanager/api.go, ``errPasswordFileNotAllowed``), and the files
  would not exist there anyway. The bot token and the URLs are written into the configuration,
  which therefore lives in a Kubernetes Secret built from Pulumi secrets, never in a ConfigMap.
* **A new load per configuration.** The Job's name carries a hash of the configuration with its
  credentials left out (a hash of a secret does not belong in a name). A rotated credential alone
  does not change it: ``pulumi up --replace`` the Job's URN (docs/runbooks/alerts.md).

The alert manager is one per project and region: the stack that declares contact points owns it,
and every other stack's Cockpit-evaluated alerts (tooling's, the database's) follow its routes.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
import yaml

from scw_platform.observability import (
    ALERTMANAGER_SECRETS,
    HEARTBEAT_SECRET,
    MIMIRTOOL_CHECKOV_SKIPS,
    MONITORING_NAMESPACE,
    TELEGRAM_SECRET,
    WEBHOOK_SECRET,
    ContactPoint,
    ObservabilitySettings,
    alertmanager_config,
    mimirtool_job_spec,
    mimirtool_policy_spec,
)

TOKEN_SECRET = "cockpit-alertmanager-token"
CONFIG_SECRET = "cockpit-alertmanager-config"
CONFIG_KEY = "alertmanager.yaml"
LOAD_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "platform-alertmanager-load"}

#: The file forms of the two credentials the routing uses, and the inline key each becomes
#: (prometheus/alertmanager docs/configuration.md: telegram_config bot_token / bot_token_file,
#: webhook_config url / url_file).
_INLINE_KEYS: Mapping[str, str] = {"bot_token_file": "bot_token", "url_file": "url"}
#: Stands for a credential where the configuration is hashed (never a real value).
REDACTED = "<redacted>"


def routed(settings: ObservabilitySettings) -> bool:
    """Whether backend cockpit loads its own routing (a Telegram or webhook contact point, or the
    heartbeat), rather than leaving Scaleway's email contact points to receive everything."""
    return settings.backend == "cockpit" and (
        settings.heartbeat or any(p.kind in ("telegram", "webhook") for p in settings.contact_points)
    )


def inline_config(
    points: Sequence[ContactPoint], *, heartbeat: bool, credentials: Mapping[str, str]
) -> dict[str, Any]:
    """:func:`alertmanager_config` with each credential file replaced by its value.

    ``credentials`` maps each Secret the configuration reads (``alert-telegram``, ``alert-webhook``,
    ``alert-heartbeat``) to its value; a missing one is an error, never an empty credential."""
    config, needed = alertmanager_config(points, heartbeat=heartbeat)
    missing = sorted(set(needed) - set(credentials))
    if missing:
        raise ValueError(f"no value for the credentials {', '.join(missing)}")
    config = copy.deepcopy(config)
    for receiver in config["receivers"]:
        for key, integrations in receiver.items():
            if not key.endswith("_configs"):
                continue
            for integration in integrations:
                for file_key, inline_key in _INLINE_KEYS.items():
                    if file_key in integration:
                        # <ALERTMANAGER_SECRETS>/<secret>/<key>: the Secret names the credential.
                        path = integration.pop(file_key)
                        secret = path.removeprefix(f"{ALERTMANAGER_SECRETS}/").split("/")[0]
                        integration[inline_key] = credentials[secret]
    return config


def config_hash(points: Sequence[ContactPoint], *, heartbeat: bool) -> str:
    """A short hash of the routing with the credentials left out (it names the load Job)."""
    _, needed = alertmanager_config(points, heartbeat=heartbeat)
    redacted = inline_config(points, heartbeat=heartbeat, credentials=dict.fromkeys(needed, REDACTED))
    return hashlib.sha256(yaml.safe_dump(redacted, sort_keys=True).encode()).hexdigest()[:10]


def load_job_spec(address: pulumi.Input[str]) -> Any:
    """``mimirtool alertmanager load`` of the configuration Secret into one alert manager."""
    return mimirtool_job_spec(
        pod_labels=LOAD_LABELS,
        args=["alertmanager", "load", f"/config/{CONFIG_KEY}"],
        address=address,
        token_secret=TOKEN_SECRET,
        volume="config",
        files={"secret": {"secretName": CONFIG_SECRET}},
    )


@dataclass(frozen=True, kw_only=True)
class CockpitRoutingArgs:
    environment: str
    region: str
    project_id: str
    settings: ObservabilitySettings
    #: Secrets, each present exactly when the settings need it (as ObservabilityArgs checks).
    webhook_url: pulumi.Input[str] | None = None
    telegram_bot_token: pulumi.Input[str] | None = None
    heartbeat_url: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not routed(self.settings):
            raise ValueError("CockpitRouting is for backend cockpit with telegram, webhook or heartbeat")
        if any(p.kind == "email" for p in self.settings.contact_points):
            raise ValueError("email contact points are Scaleway's own: they cannot join a loaded routing")


class CockpitRouting(pulumi.ComponentResource):
    """Cockpit's alert manager, enabled without contact points, and the Job that loads the
    platform's routing into it (a token that may only set up alerts)."""

    alert_manager: scaleway.observability.AlertManager
    job: k8s.batch.v1.Job

    def __init__(
        self,
        name: str,
        args: CockpitRoutingArgs,
        *,
        in_namespace: pulumi.ResourceOptions,
        alert_manager_aliases: Sequence[pulumi.Alias] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``alert_manager_aliases``: where the stack declared the alert manager before (with email
        contact points), so switching to a loaded routing keeps it rather than disabling it and
        enabling a new one."""
        super().__init__("platform:observability:CockpitRouting", name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        in_namespace = pulumi.ResourceOptions.merge(in_namespace, here)
        settings = args.settings
        # No contact points: the loaded configuration is the only writer of the routing.
        self.alert_manager = scaleway.observability.AlertManager(
            f"{name}-alert-manager",
            project_id=args.project_id,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self, aliases=list(alert_manager_aliases)),
        )
        token = scaleway.observability.Token(
            f"{name}-token",
            name=f"{args.environment}-alertmanager",
            project_id=args.project_id,
            region=args.region,
            # The alert manager's configuration only: it can neither read nor write telemetry.
            scopes={"setup_alerts": True},
            opts=here,
        )
        token_key: pulumi.Output[str] = pulumi.Output.secret(token.secret_key)
        token_secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={"name": TOKEN_SECRET, "namespace": MONITORING_NAMESPACE},
            type="Opaque",
            string_data={"token": token_key},
            opts=in_namespace,
        )
        given = {
            WEBHOOK_SECRET: args.webhook_url,
            TELEGRAM_SECRET: args.telegram_bot_token,
            HEARTBEAT_SECRET: args.heartbeat_url,
        }
        _, needed = alertmanager_config(settings.contact_points, heartbeat=settings.heartbeat)
        values: dict[str, pulumi.Input[str]] = {}
        for secret in needed:
            value = given[secret]
            if value is None:
                raise ValueError(f"the routing reads {secret}, which was not given")
            values[secret] = value
        # Secret end to end: the credentials are inside, so the whole file is one secret.
        rendered: pulumi.Output[str] = pulumi.Output.all(**values).apply(
            lambda credentials: yaml.safe_dump(
                inline_config(settings.contact_points, heartbeat=settings.heartbeat, credentials=credentials),
                sort_keys=False,
            )
        )
        secret_config: pulumi.Output[str] = pulumi.Output.secret(rendered)
        config_secret = k8s.core.v1.Secret(
            f"{name}-config",
            metadata={"name": CONFIG_SECRET, "namespace": MONITORING_NAMESPACE},
            type="Opaque",
            string_data={CONFIG_KEY: secret_config},
            opts=in_namespace,
        )
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-load-egress",
            metadata={"name": "platform-alertmanager-load", "namespace": MONITORING_NAMESPACE},
            spec=mimirtool_policy_spec(LOAD_LABELS),
            opts=in_namespace,
        )
        digest = config_hash(settings.contact_points, heartbeat=settings.heartbeat)
        self.job = k8s.batch.v1.Job(
            f"{name}-load",
            metadata={
                "name": f"platform-alertmanager-{digest}",
                "namespace": MONITORING_NAMESPACE,
                "annotations": MIMIRTOOL_CHECKOV_SKIPS,
            },
            spec=load_job_spec(self.alert_manager.alert_manager_url),
            opts=pulumi.ResourceOptions.merge(
                in_namespace,
                # A Job's template is immutable: a new address replaces it, the old one first.
                pulumi.ResourceOptions(
                    depends_on=[config_secret, token_secret, policy], delete_before_replace=True
                ),
            ),
        )
        self.register_outputs({"alertManagerUrl": self.alert_manager.alert_manager_url})

"""The validated stack configuration, typed by role: what ``program.config.load`` returns and
``program.stacks.build`` composes.

Each role's class says what that role always has, so composition never re-checks what the rules
proved: tooling always has a cluster, a registry, Argo CD and a front door; production always has
a cluster, a database, delivery by GitOps, a front door, a restore check and observability;
development may have only its address space. ``PlatformConfig`` is the union, discriminated by
``role``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pulumi

from program import environments as env_list
from program.environments import Environments
from scw_platform.apps import AppSettings
from scw_platform.backup import RestoreCheckSettings
from scw_platform.budget import BudgetSettings
from scw_platform.ci import CiSettings
from scw_platform.cluster import ClusterSettings
from scw_platform.database import DatabaseSettings
from scw_platform.dns import DnsSettings
from scw_platform.drill import BackupDrillSettings
from scw_platform.gitops import ArgoCdSettings, GitOpsSettings
from scw_platform.ingress import IngressSettings
from scw_platform.network import NetworkSettings
from scw_platform.observability import ObservabilitySettings
from scw_platform.registry import RegistrySettings
from scw_platform.secrets import SCALEWAY_PATH, VaultSettings
from scw_platform.settings import DEFAULT_ZONE, Region, Settings
from scw_platform.tls import TlsSettings


class Operations(Settings):
    """``platform:operations``: what keeps the platform recoverable and observable."""

    observability: ObservabilitySettings | None = None
    """Metrics, logs, alert rules, routing and probes."""
    restore_check: RestoreCheckSettings | None = None
    """The daily dump, restore and sanity check of the app databases."""
    backup_drill: BackupDrillSettings | None = None
    """The monthly restore of Scaleway's managed backups into a scratch instance (opt-in)."""


#: The ``platform:`` keys and the settings model each parses into (None: a plain value).
PLATFORM_KEYS: dict[str, Any] = {
    "environment": None,
    "network": NetworkSettings,
    "cluster": ClusterSettings,
    "database": DatabaseSettings,
    "registry": RegistrySettings,
    "gitops": GitOpsSettings,
    "apps": list[AppSettings],
    "ingress": IngressSettings,
    "tls": TlsSettings,
    "dns": DnsSettings,
    "secrets": VaultSettings,
    "operations": Operations,
    "ci": CiSettings,
    # The stack's monthly budget; the offline plan and the policy pack check the estimate against
    # it (docs/cost.md).
    "budget": BudgetSettings,
}

#: Deploy-time secrets, set with `pulumi config set --secret platform:<key>`. They are read with
#: get_secret and stay Pulumi secrets end to end; only their presence is validated.
SECRET_KEYS: dict[str, str] = {
    "gitopsRepoCredential": "read-only token or SSH deploy key Argo CD reads the GitOps repository with",
    "gitopsWriteCredential": "token or SSH key the image updater pushes its write-back branches with "
    "(write access; keep the target branch protected)",
    "argocdWebhookSecret": "shared secret of the Git host's push webhook into Argo CD "
    "(platform:gitops.argocd.webhook; the same value goes into the Git host's webhook settings)",
    "onepasswordServiceAccountToken": "1Password service-account token External Secrets reads the vault with "
    "(platform:secrets.backend onepassword)",
    "ciRunnerToken": "the CI runners' credential: a GitLab runner authentication token (glrt-...), or with "
    "platform:ci.provider github a GitHub token for the runner scale set",
    "alertWebhookUrl": "URL of the webhook contact point (e.g. a chat bot) alerts are posted to "
    "(platform:operations.observability.contactPoints, kind webhook)",
    "alertTelegramBotToken": "token of the Telegram bot that posts alerts to the telegram contact points' "
    "chats (platform:operations.observability.contactPoints, kind telegram)",
    "alertHeartbeatUrl": "URL of the external heartbeat receiver the Watchdog alert pings every minute "
    "(platform:operations.observability.heartbeat)",
}


@dataclass(frozen=True, kw_only=True)
class FrontDoorConfig:
    """``platform:ingress`` with the ``platform:tls`` it requires and the optional ``platform:dns``."""

    ingress: IngressSettings
    tls: TlsSettings
    dns: DnsSettings | None = None


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A workload environment delivered by Argo CD: its ``platform:gitops``, the tooling stack
    that registers it (environments.yaml ``managedBy``) and the apps it runs."""

    gitops: GitOpsSettings
    tooling_stack: str
    apps: tuple[AppSettings, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """What every role has."""

    stack: str
    project: str
    environment: str
    region: Region
    zone: str
    project_id: str
    address_plan: Mapping[str, ipaddress.IPv4Network]
    network: NetworkSettings = field(default_factory=NetworkSettings)
    #: platform:secrets (the vault behind External Secrets); defaults to Scaleway Secret Manager.
    vault: VaultSettings = field(default_factory=VaultSettings)
    observability: ObservabilitySettings | None = None
    #: Deploy-time secrets by key (see SECRET_KEYS); values are Pulumi secrets.
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Every environment (environments.yaml), this one included.
    environments: Environments = field(default_factory=env_list.load_file)
    #: platform:budget: the stack's monthly budget (checked offline against the plan's estimate).
    budget: BudgetSettings | None = None
    #: Stateful and address-bearing resources are protected everywhere but development.
    protect_stateful: ClassVar[bool] = True

    def secret(self, key: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.secrets[key])

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return self.address_plan[self.environment]

    @property
    def tags(self) -> list[str]:
        role = self.environments.entries[self.environment].role
        return [f"platform={self.project}", f"environment={self.environment}", f"role={role}"]

    @property
    def database_zone(self) -> str:
        # platform:database.zone, when set, is validated to be this very zone.
        return DEFAULT_ZONE[self.region]

    def app_secrets_path(self, app: AppSettings) -> str:
        """Where ``app``'s keys live in the configured vault (see :func:`app_secrets_path`)."""
        return app_secrets_path(app, self.environment, self.vault.backend)

    def app_platform_path(self, app: AppSettings) -> str:
        """The Scaleway Secret Manager folder the program writes the app's platform secrets to."""
        return app_secrets_path(app, self.environment, "scaleway")


@dataclass(frozen=True, kw_only=True)
class ToolingConfig(StackConfig):
    """The workshop: the registry, Argo CD and the image updater, serving every environment."""

    role: Literal["tooling"] = "tooling"
    cluster: ClusterSettings
    registry: RegistrySettings
    gitops: GitOpsSettings
    #: platform:gitops.argocd and .repoUrl, which tooling requires.
    argocd: ArgoCdSettings
    repo_url: str
    front_door: FrontDoorConfig
    #: platform:ci, the CI runners and their builds' envelope.
    ci: CiSettings | None = None
    apps: tuple[AppSettings, ...] = ()

    @property
    def registered_stacks(self) -> dict[str, str]:
        """The stack of each environment this Argo CD registers, by environment."""
        return self.environments.registered_stacks_of(self.environment)


@dataclass(frozen=True, kw_only=True)
class ProductionConfig(StackConfig):
    """The website: private nodes, the managed database, its restore check and a pager."""

    role: Literal["production"] = "production"
    cluster: ClusterSettings
    database: DatabaseSettings
    delivery: Delivery
    front_door: FrontDoorConfig
    restore_check: RestoreCheckSettings
    observability: ObservabilitySettings
    #: platform:operations.backupDrill, the monthly restore of Scaleway's managed backups (opt-in).
    backup_drill: BackupDrillSettings | None = None

    @property
    def apps(self) -> tuple[AppSettings, ...]:
        return self.delivery.apps


@dataclass(frozen=True, kw_only=True)
class DevelopmentConfig(StackConfig):
    """A development environment: an address space, and optionally a small cluster with apps."""

    role: Literal["development"] = "development"
    cluster: ClusterSettings | None = None
    delivery: Delivery | None = None
    front_door: FrontDoorConfig | None = None
    #: A small database of its own, optional: what a release migrates is proven here before prod
    #: receives it. Never protected, never restore-checked (it is rebuilt, not repaired).
    database: DatabaseSettings | None = None
    restore_check: None = None
    #: Nothing in development is protected: it is rebuilt, never repaired.
    protect_stateful: ClassVar[bool] = False

    @property
    def apps(self) -> tuple[AppSettings, ...]:
        return self.delivery.apps if self.delivery is not None else ()


WorkloadConfig = ProductionConfig | DevelopmentConfig
PlatformConfig = ToolingConfig | ProductionConfig | DevelopmentConfig


def app_secrets_path(app: AppSettings, environment: str, backend: str) -> str:
    """An app's place in the vault: its ``secretsPath``, else ``/<environment>/<app>`` in Scaleway
    Secret Manager or the item ``<environment>-<app>`` in 1Password.

    The program's own entries for the app (database credentials) always go to Scaleway Secret
    Manager: with backend scaleway into the same folder, with onepassword into the default folder.
    """
    if backend == "scaleway":
        if app.secrets_path is not None and SCALEWAY_PATH.fullmatch(app.secrets_path):
            return app.secrets_path
        return f"/{environment}/{app.name}"
    return app.secrets_path or f"{environment}-{app.name}"

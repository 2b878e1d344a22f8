"""The migration hook of an app with ``migrate``: a PreSync Job rendered into the app's GitOps path
beside the parity gate (``make gates`` writes both), like the gate, because an Argo CD hook must
live in the synced manifests: a Job the program declared would run at ``pulumi up``, not before
each rollout.

Order: the gate has sync wave 0 (Argo CD's default), this hook wave 1, so a missing key fails the
sync before any migration runs, and the app's resources sync only after the migration succeeded.

The Job runs in the app's namespace envelope (restricted Pod Security, default deny, egress to
DNS and the database's /32 only), with the migrator's credentials from their own Secret
(``<app>-migrator``; the app's pods read ``<app>-env`` only):

1. an init container (PostgreSQL's client) runs :func:`scw_platform.db_grants.migrator_grants_sql`
   as the migrator: tables and sequences it creates are the runtime user's to read and write and
   the reader's to dump (default privileges), and existing ones are fixed up; idempotent;
2. the app's own image runs the configured command. Its tag is the GitOps path's business: the
   image updater's kustomize ``images:`` entry for the app's image applies to this Job too (the
   rendered tag :data:`PINNED_BY_GITOPS` only stands in for it).

``backoffLimit: 0``: a failing migration fails the Job, and so the sync, at once; its name
(``platform-migrate``, in the app's namespace) and the app's label say which app failed.
"""

from __future__ import annotations

from typing import Any

from offline import hooks
from program.model import PlatformConfig
from scw_platform.apps import PSQL_IMAGE, AppSettings, migrator_secret_name
from scw_platform.database import MIGRATOR_SUFFIX, READER_SUFFIX
from scw_platform.db_grants import migrator_grants_sql

MIGRATE_JOB = "platform-migrate"
MIGRATE_FILE = "platform-migrate.yaml"
#: Both containers run as this high, unprivileged UID (no clash with a node's users): the app's
#: image must run its migration as any user, as restricted Pod Security expects of it anyway.
HOOK_UID = 10001
#: The tag the rendered hook names: the GitOps path's kustomize ``images:`` entry for the app's image
#: (the image updater writes it) replaces it with the tag or digest the app's pods run, so the
#: migration runs exactly that build. Left as is, it fails to pull: loud, never a stale image.
PINNED_BY_GITOPS = "pinned-by-gitops"


def migration_job(app: AppSettings, *, runtime_user: str) -> dict[str, Any]:
    """The PreSync hook Job for ``app`` (plain data; :mod:`offline.parity` renders it)."""
    if app.migrate is None or app.database is None:
        raise ValueError(f"app {app.name} has no migrate or no database")
    labels = {
        "app.kubernetes.io/name": MIGRATE_JOB,
        "app.kubernetes.io/part-of": app.name,
        "platform.scw/hook": "migrate",
    }
    grants = migrator_grants_sql(
        app.database, runtime_user, f"{runtime_user}{MIGRATOR_SUFFIX}", f"{runtime_user}{READER_SUFFIX}"
    )
    return hooks.hook_job(
        name=MIGRATE_JOB,
        namespace=app.name,
        labels=labels,
        annotations=_annotations(),
        deadline_seconds=app.migrate.timeout_minutes * 60,
        ttl_seconds=86400,
        uid=HOOK_UID,
        pod={
            "initContainers": [_grants_container(app, grants)],
            "containers": [_migrate_container(app)],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    )


def _annotations() -> dict[str, str]:
    return {
        "argocd.argoproj.io/hook": "PreSync",
        # After the parity gate (wave 0): a missing key stops the sync before any migration.
        "argocd.argoproj.io/sync-wave": "1",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation,HookSucceeded",
        "checkov.io/skip1": "CKV_K8S_43=the app's image: its tag or digest is set by the GitOps "
        "path's kustomize images entry, which the image updater writes",
        "checkov.io/skip2": "CKV_K8S_35=the migrator's credentials as environment variables: the "
        "migration tools read DATABASE_URL; the Secret is the hook's alone",
    }


def _grants_container(app: AppSettings, grants: str) -> dict[str, Any]:
    return {
        "name": "grants",
        "image": PSQL_IMAGE,
        "imagePullPolicy": "Always",
        "command": [
            "psql",
            "--no-psqlrc",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            "$(DATABASE_URL)",
            "--command",
            grants,
        ],
        "envFrom": [{"secretRef": {"name": migrator_secret_name(app.name)}}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "securityContext": hooks.restricted_container(),
    }


def _migrate_container(app: AppSettings) -> dict[str, Any]:
    assert app.migrate is not None
    resources = app.resources
    return {
        "name": "migrate",
        "image": f"{app.image}:{PINNED_BY_GITOPS}",
        "imagePullPolicy": "Always",
        "command": list(app.migrate.command),
        "envFrom": [{"secretRef": {"name": migrator_secret_name(app.name)}}],
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        # Migration tools write temporary files: to /tmp, an emptyDir; the image stays read-only.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": hooks.restricted_container(),
    }


def migration_files(cfg: PlatformConfig) -> dict[str, dict[str, Any]]:
    """GitOps-repository path -> the hook Job, for every app that migrates."""
    database = getattr(cfg, "database", None)
    users = {entry.name: entry.user for entry in (database.databases if database is not None else ())}
    return {
        f"{app.gitops_path}/{MIGRATE_FILE}": migration_job(app, runtime_user=users[app.database])
        for app in cfg.apps
        if app.migrate is not None and app.database is not None
    }

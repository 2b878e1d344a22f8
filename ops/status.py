"""What each environment runs, per app, and how far an environment is behind the one it is promoted from.

People ask "what runs in prod, and is it what dev tried?" and scripts need the same answer in a
stable form. Argo CD knows what runs; the GitOps repository knows what dev received and when. This
reads both, never writes:

    ARGOCD_AUTH_TOKEN=... python -m ops.status --argocd-url https://argocd.example.com \\
        [--env dev --env prod] [--repo PATH_TO_GITOPS_CLONE [--target main] [--drift-from dev]] \\
        [--json] [--ca-file PEM] [--platform-dir DIR]

Per environment (every one whose stack file has apps, in ``environments.yaml`` order, or each
``--env``) and per app of its stack file, from its Application ``<env>-<app>`` (``ops/argocd_api.py``):

* the image (repository and tag, from ``status.summary.images``) and the digest it runs: the one
  those images pin, else the one the running Pods report;
* the Git revision the sync status refers to (``status.sync.revision``), the sync and health status;
* the last successful sync: ``status.operationState.finishedAt`` when the last operation
  Succeeded, else the newest ``status.history[].deployedAt``;
* with ``--repo``, the drift: "prod behind dev by N promotions", N the number of distinct images
  the ``--drift-from`` environment's override file received on the target branch (``git log
  --first-parent``, read from ``origin/<target>`` when the clone has it, as of its last fetch,
  else ``<target>``) after the last version that pinned the image this environment runs (by
  digest; by tag for versions that pinned only a tag): 0 means the same image, unknown (with the
  reason) when this environment's image never appeared there or it runs no single image.

A missing Application (404) is a row that says so, not an error. Output: a table for people
(aligned columns; rows by app, then environment in the order above), or with ``--json`` one
object whose schema is stable (new keys may be added, none removed or retyped)::

    {
      "schema": 1,
      "argocdUrl": "https://argocd.example.com",
      "ref": "origin/main" | null,            # where drift was read; null without --repo
      "driftFrom": "dev" | null,              # null without --repo
      "rows": [
        {
          "app": "website", "environment": "prod", "application": "prod-website",
          "found": true,                      # false: the Application does not exist (404)
          "image": "rg.fr-par.scw.cloud/ns/website:1.4.2" | null,
          "digest": "sha256:<64 hex>" | null,  # null unless exactly one digest runs
          "digests": ["sha256:<64 hex>", ...], # every digest that runs, sorted
          "digestSource": "summary" | "pods" | "none" | null,
          "revision": "<git sha>" | null,
          "sync": "Synced" | "OutOfSync" | "Unknown" | null,
          "health": "Healthy" | "Progressing" | "Degraded" | ... | null,
          "lastSyncedAt": "2025-01-01T12:00:00Z" | null,
          "drift": {"from": "dev", "behind": 2 | null, "reason": null | "<why unknown>"} | null
        }
      ]
    }

``drift`` is null without ``--repo``, for the ``--drift-from`` environment itself and for a
missing Application.

Exit codes: 0 printed; 1 Argo CD could not be read (unreachable, 401, 403: the message names the
call; a 403 means the token lacks ``applications, get``: use the platform-status account's token),
or ``git`` failed; 2 usage error (no token, unknown environment, not a Git clone). Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ops.argocd_api import TOKEN_ENV, Application, ArgoCD, ArgoCDError, Running, token_problem
from ops.releases import (
    App,
    Environment,
    ImageRef,
    Platform,
    ReleaseError,
    add_platform_dir,
    check_repository,
    image_history,
    load_platform,
    promotions_behind,
    short,
    target_ref,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SCHEMA = 1
COLUMNS = ("APP", "ENV", "IMAGE", "DIGEST", "REVISION", "SYNC", "HEALTH", "LAST SYNC", "DRIFT")


class UsageError(Exception):
    """The report cannot run as asked: exit 2 with this message."""


@dataclass(frozen=True)
class Drift:
    source: str
    behind: int | None
    reason: str | None = None


@dataclass(frozen=True)
class Row:
    app: str
    environment: str
    application: str
    found: bool
    image: str | None = None
    digests: tuple[str, ...] = ()
    digest_source: str | None = None
    revision: str | None = None
    sync: str | None = None
    health: str | None = None
    last_synced_at: str | None = None
    drift: Drift | None = None

    @property
    def digest(self) -> str | None:
        return self.digests[0] if len(self.digests) == 1 else None

    def to_json(self) -> dict[str, Any]:
        drift = self.drift
        return {
            "app": self.app,
            "environment": self.environment,
            "application": self.application,
            "found": self.found,
            "image": self.image,
            "digest": self.digest,
            "digests": list(self.digests),
            "digestSource": self.digest_source,
            "revision": self.revision,
            "sync": self.sync,
            "health": self.health,
            "lastSyncedAt": self.last_synced_at,
            "drift": None
            if drift is None
            else {"from": drift.source, "behind": drift.behind, "reason": drift.reason},
        }

    def cells(self) -> tuple[str, ...]:
        if not self.found:
            return (self.app, self.environment, f"Application {self.application} not found", *["-"] * 6)
        if self.digest:
            digest = short(self.digest)
        else:
            digest = f"{len(self.digests)} digests" if self.digests else "-"
        return (
            self.app,
            self.environment,
            self.image or "-",
            digest,
            (self.revision or "-")[:12],
            self.sync or "-",
            self.health or "-",
            self.last_synced_at or "-",
            drift_text(self.drift),
        )


def drift_text(drift: Drift | None) -> str:
    if drift is None:
        return "-"
    if drift.behind is None:
        return f"unknown: {drift.reason}"
    return f"same as {drift.source}" if drift.behind == 0 else f"{drift.behind} behind {drift.source}"


def running_ref(app: App, running: Running) -> ImageRef | None:
    """The one image the environment runs, as far as Argo CD tells; None when it is not one."""
    tags = {ref.tag for ref in running.refs if ref.tag}
    if len(running.digests) > 1 or (not running.digests and len(tags) != 1):
        return None
    digest = running.digests[0] if running.digests else None
    return ImageRef(app.image or "", next(iter(tags)) if len(tags) == 1 else None, digest)


class Report:
    def __init__(
        self, platform: Platform, argocd: ArgoCD, repo: Path | None, target: str, drift_from: str
    ) -> None:
        self.platform = platform
        self.argocd = argocd
        self.repo = repo
        self.ref = target_ref(repo, target) if repo else None
        self.drift_from = drift_from
        self._histories: dict[str, tuple[str, list[ImageRef]] | None] = {}

    def history(self, app: str) -> tuple[str, list[ImageRef]] | None:
        """The drift source's override path of ``app`` and its images, oldest first; None when
        that environment has no such app."""
        if app not in self._histories:
            assert self.repo is not None and self.ref is not None
            source = self.platform.environment(self.drift_from)
            found = source.app(app)
            if found is None:
                self._histories[app] = None
            else:
                path = source.override_path(found)
                self._histories[app] = (path, image_history(self.repo, self.ref, path, found.image))
        return self._histories[app]

    def drift(self, environment: Environment, app: App, running: Running) -> Drift | None:
        if self.repo is None or environment.name == self.drift_from:
            return None
        history = self.history(app.name)
        if history is None:
            return Drift(self.drift_from, None, f"{self.drift_from} has no app {app.name}")
        path, images = history
        if not images:
            return Drift(
                self.drift_from, None, f"{self.drift_from}'s override {path} has no history in {self.ref}"
            )
        mine = running_ref(app, running)
        if mine is None:
            return Drift(self.drift_from, None, f"{environment.name} runs no single image")
        behind = promotions_behind(images, mine)
        if behind is None:
            seen = short(mine.digest) if mine.digest else f"tag {mine.tag}"
            reason = f"{environment.name}'s {seen} never appeared in {self.drift_from}'s override history"
            return Drift(self.drift_from, None, reason)
        return Drift(self.drift_from, behind)

    def row(self, environment: Environment, app: App) -> Row:
        name = environment.application(app.name)
        try:
            application: Application = self.argocd.application(name, project=environment.project)
        except ArgoCDError as exc:
            if exc.status == 404:
                return Row(app.name, environment.name, name, found=False)
            raise
        running = self.argocd.running(application, app.image)
        images = sorted({ref.name for ref in running.refs})
        return Row(
            app.name,
            environment.name,
            name,
            found=True,
            image=", ".join(images) or None,
            digests=running.digests,
            digest_source=running.source,
            revision=application.revision or None,
            sync=application.sync_status,
            health=application.health_status,
            last_synced_at=application.last_synced_at,
            drift=self.drift(environment, app, running),
        )

    def rows(self, environments: Sequence[Environment]) -> list[Row]:
        order = {environment.name: index for index, environment in enumerate(environments)}
        pairs = sorted(
            ((environment, app) for environment in environments for app in environment.apps),
            key=lambda pair: (pair[1].name, order[pair[0].name]),
        )
        return [self.row(environment, app) for environment, app in pairs]


def table(rows: Sequence[Row]) -> str:
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.status",
        description=f"What each environment runs, per app, from Argo CD. Token: ${TOKEN_ENV}.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--argocd-url", required=True, help="Argo CD's server, e.g. https://argocd.example.com"
    )
    parser.add_argument("--ca-file", help="CA bundle that signed Argo CD's certificate")
    parser.add_argument("--env", action="append", dest="envs", help="only this environment (repeatable)")
    parser.add_argument("--repo", type=Path, help="local clone of the GitOps repository, for the drift")
    parser.add_argument("--target", default="main", help="branch the drift is read from (default main)")
    parser.add_argument(
        "--drift-from", default="dev", help="environment drift is counted against (default dev)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object (schema in the module docstring)"
    )
    add_platform_dir(parser)
    return parser


def setup(args: argparse.Namespace) -> tuple[Report, list[Environment]]:
    """Everything checked before the first call; UsageError or ReleaseError (exit 2)."""
    if urlsplit(args.argocd_url).scheme not in ("http", "https"):
        raise UsageError(f"--argocd-url {args.argocd_url!r} is not an http(s) URL")
    if args.ca_file and not Path(args.ca_file).is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    token = os.environ.get(TOKEN_ENV, "").strip()
    if (problem := token_problem(token)) is not None:
        raise UsageError(problem)
    platform = load_platform(args.platform_dir)
    if args.envs:
        environments = [platform.environment(name) for name in dict.fromkeys(args.envs)]
    else:
        environments = [env for env in map(platform.environment, platform.names) if env.apps]
    if args.repo is not None:
        platform.environment(args.drift_from)
        check_repository(args.repo)
    report = Report(
        platform,
        ArgoCD(args.argocd_url, token, ca_file=args.ca_file),
        args.repo,
        args.target,
        args.drift_from,
    )
    return report, environments


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        report, environments = setup(args)
    except (UsageError, ReleaseError) as exc:
        print(f"status: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = report.rows(environments)
    except (ArgoCDError, ReleaseError) as exc:
        print(f"status: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        document = {
            "schema": SCHEMA,
            "argocdUrl": report.argocd.url,
            "ref": report.ref,
            "driftFrom": args.drift_from if args.repo is not None else None,
            "rows": [row.to_json() for row in rows],
        }
        print(json.dumps(document, indent=2))
    else:
        print(table(rows))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

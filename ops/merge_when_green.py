"""Open, refresh and close the merge requests of the image updater's write-back branches.

The rollout chain: CI pushes an image, the Argo CD image updater commits the new tag to an
``image-updater-<sha>`` branch, this step (scheduled) opens a merge request from that branch into
the target and asks the Git host to merge it when its pipeline is green, and Argo CD rolls out what
lands on the target. The pipeline's gate is ``ops/writeback_check.py``: auto-merge is only as safe
as that gate, which is why the merge request is never merged here, only handed to the host's
merge-when-green (GitLab merge-when-pipeline-succeeds, GitHub auto-merge).

    GITOPS_API_TOKEN=... python -m ops.merge_when_green --provider gitlab|github --url URL \\
        --project PATH --target main [--prefix image-updater-] [--dry-run]

The token comes from the environment only: a flag would show in process lists and CI logs.

Each run converges, so it can run as often as the schedule likes:

* a write-back branch without an open merge request into the target gets one, with auto-merge
  (unless the host says the branch is already merged: then it is skipped);
* a branch with one gets its title and description refreshed when they differ (its head commit is
  in the description), and auto-merge asked again when it is not set: GitLab refuses it while the
  pipeline has not started, and the next run is when to ask again;
* an open merge request from a prefixed branch that no longer exists is closed.

Merge requests from forks are never touched, even with a prefixed branch name: their content is
not the updater's. One line per action on stdout, then a summary. Exit codes: 0 done (including
auto-merge deferred to the next run), 1 a Git host call failed (the message names it; what was done
before stays done, the next run carries on), 2 usage error (no token, bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from ops.githost import (
    AutoMerge,
    AutoMergeState,
    Branch,
    GitHost,
    GitHostError,
    GitHubHost,
    GitLabHost,
    MergeRequest,
    NothingToMergeError,
)

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
TOKEN_ENV = "GITOPS_API_TOKEN"
DEFAULT_PREFIX = "image-updater-"
GATE = "ops/writeback_check.py"
PROVIDERS = ("gitlab", "github")


class UsageError(Exception):
    """The step cannot run as asked: exit 2 with this message."""


def title_for(branch: Branch) -> str:
    return f"image updater: {branch.name}"


def description_for(branch: Branch, target: str) -> str:
    """Says where the change comes from and what has to pass, for whoever opens the merge request."""
    return (
        f"Write-back branch `{branch.name}` of the Argo CD image updater, at commit `{branch.commit}`: "
        f"new image tags for `{target}`.\n\n"
        f"Opened by `ops/merge_when_green.py`, which asks the Git host to merge it into `{target}` once "
        "the pipeline is green. That pipeline must pass the write-back gate "
        f"(`{GATE}`: `python -m ops.writeback_check --repo . --target {target} --branch {branch.name}`), "
        "which refuses any change other than the image updater's own override files. "
        "Do not merge by hand while the gate fails.\n"
    )


def describe(outcome: AutoMerge) -> str:
    if outcome.state is AutoMergeState.SET:
        return "auto-merge set, merges when the pipeline is green"
    if outcome.state is AutoMergeState.MERGED:
        return "merged at once: its pipeline was already green"
    return f"auto-merge not set yet ({outcome.detail}); it is requested again on the next run"


@dataclass
class Tally:
    opened: int = 0
    updated: int = 0
    auto_merge: int = 0
    closed: int = 0
    unchanged: int = 0
    skipped: int = 0

    LABELS: ClassVar[dict[str, str]] = {"auto_merge": "auto-merge re-requested"}

    def summary(self, dry_run: bool) -> str:
        counts = ", ".join(f"{value} {self.LABELS.get(name, name)}" for name, value in vars(self).items())
        return f"merge-when-green: {counts}{' (dry run: nothing was changed)' if dry_run else ''}"


class Reconciler:
    """Brings the open merge requests into ``target`` in line with the write-back branches."""

    def __init__(self, host: GitHost, target: str, prefix: str, *, dry_run: bool) -> None:
        self.host = host
        self.target = target
        self.prefix = prefix
        self.dry_run = dry_run
        self.tally = Tally()
        self.doing = "listing branches and merge requests"  # for the error message, should one come

    def say(self, line: str) -> None:
        print(line, flush=True)  # flushed: a later failure must not swallow what was already done

    def run(self) -> Tally:
        branches = self.host.list_branches(self.prefix)
        open_requests = self.host.list_open_merge_requests(self.prefix, self.target)
        by_branch: dict[str, MergeRequest] = {}
        for merge_request in open_requests:
            by_branch.setdefault(merge_request.source_branch, merge_request)
        names = {branch.name for branch in branches}
        for branch in branches:
            existing = by_branch.get(branch.name)
            if existing is None:
                self.open_for(branch)
            else:
                self.refresh(branch, existing)
        for merge_request in open_requests:
            if merge_request.source_branch not in names:
                self.close_stale(merge_request)
        return self.tally

    def open_for(self, branch: Branch) -> None:
        route = f"{branch.name} -> {self.target}"
        self.doing = f"opening {route}"
        if self.dry_run:
            self.say(f"would open {route} with auto-merge")
            self.tally.opened += 1
            return
        try:
            opened = self.host.open_merge_request(
                branch.name, self.target, title_for(branch), description_for(branch, self.target)
            )
        except NothingToMergeError as exc:
            self.say(f"skipped {branch.name}: {exc.problem}")
            self.tally.skipped += 1
            return
        merge_request = opened.merge_request
        outcome = f": {describe(opened.auto_merge)}" if opened.auto_merge else ""
        link = f" ({merge_request.url})" if merge_request.url else ""
        self.say(f"opened {merge_request.reference} {route}{link}{outcome}")
        self.tally.opened += 1

    def refresh(self, branch: Branch, merge_request: MergeRequest) -> None:
        title, description = title_for(branch), description_for(branch, self.target)
        changed = [
            name
            for name, now, wanted in (
                ("title", merge_request.title, title),
                ("description", merge_request.description, description),
            )
            if now != wanted
        ]
        label = f"{merge_request.reference} {branch.name}"
        self.doing = f"refreshing {label}"
        if changed:
            verb = "would update" if self.dry_run else "updated"
            if not self.dry_run:
                merge_request = self.host.update_merge_request(
                    merge_request, title=title, description=description
                )
            self.say(f"{verb} {label}: {', '.join(changed)} (branch at {branch.commit[:12]})")
            self.tally.updated += 1
        if not merge_request.auto_merge:
            if self.dry_run:
                self.say(f"would request auto-merge {label}")
            else:
                self.say(f"auto-merge {label}: {describe(self.host.request_auto_merge(merge_request))}")
            self.tally.auto_merge += 1
        elif not changed:
            self.say(f"unchanged {label}: auto-merge set")
            self.tally.unchanged += 1

    def close_stale(self, merge_request: MergeRequest) -> None:
        label = f"{merge_request.reference} {merge_request.source_branch}"
        self.doing = f"closing {label}"
        if not self.dry_run:
            self.host.close_merge_request(merge_request)
        self.say(f"{'would close' if self.dry_run else 'closed'} {label}: its source branch is gone")
        self.tally.closed += 1


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.merge_when_green",
        description="Open merge-when-green merge requests for the image updater's write-back branches. "
        f"The API token is read from ${TOKEN_ENV}.",
        allow_abbrev=False,
    )
    parser.add_argument("--provider", required=True, choices=PROVIDERS, help="kind of Git host")
    parser.add_argument(
        "--url", required=True, help="GitLab: https://gitlab.example.com; GitHub: https://api.github.com"
    )
    parser.add_argument("--project", required=True, help="GitLab project path, GitHub owner/repo")
    parser.add_argument("--target", required=True, help="branch the merge requests go into, e.g. main")
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"write-back branch prefix ({DEFAULT_PREFIX})"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only read the host and print what would be done (a branch the host would refuse as "
        "already merged is still listed as to open)",
    )
    return parser


def validate(args: argparse.Namespace) -> None:
    """Refuse what would make the step act on the wrong branches or the wrong host."""
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise UsageError(f"--url {args.url!r} is not an http(s) URL")
    parts = args.project.split("/")
    if any(not part for part in parts) or (args.provider == "github" and len(parts) != 2):
        expected = "owner/repo" if args.provider == "github" else "a project path such as group/project"
        raise UsageError(f"--project {args.project!r} is not {expected}")
    if not args.prefix or any(char.isspace() for char in args.prefix):
        raise UsageError("--prefix must be a non-empty branch prefix: an empty one would match every branch")
    if not args.target or args.target.startswith(args.prefix):
        raise UsageError(f"--target {args.target!r} must be a branch outside the prefix {args.prefix!r}")


def build_host(provider: str, url: str, project: str, token: str) -> GitHost:
    if provider == "gitlab":
        return GitLabHost(url, project, token)
    return GitHubHost(url, project, token)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    token = os.environ.get(TOKEN_ENV, "").strip()
    try:
        validate(args)
        if not token:
            raise UsageError(
                f"${TOKEN_ENV} is not set: export the Git host API token (never pass it as a flag)"
            )
    except UsageError as exc:
        print(f"merge-when-green: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reconciler = Reconciler(
        build_host(args.provider, args.url, args.project, token),
        args.target,
        args.prefix,
        dry_run=args.dry_run,
    )
    try:
        tally = reconciler.run()
    except GitHostError as exc:
        message = str(exc).replace(token, "***")
        print(f"merge-when-green: error while {reconciler.doing}: {message}", file=sys.stderr)
        print(reconciler.tally.summary(args.dry_run) + ", stopped by the error", file=sys.stderr)
        return EXIT_API
    print(tally.summary(args.dry_run))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

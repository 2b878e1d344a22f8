"""Promote what one environment runs to another, through one merge request on the GitOps repository.

The image updater keeps dev current: it writes each new image into dev's override files and the
Git host merges them when the write-back gate passes. Prod should get exactly what was tried in dev,
by digest, and only through a reviewed change. This step makes that change:

    GITOPS_API_TOKEN=... ARGOCD_AUTH_TOKEN=... python -m ops.promote dev prod \\
        --repo PATH_TO_GITOPS_CLONE --argocd-url https://argocd.example.com \\
        --provider gitlab|github --url URL --project PATH [--target main] [--app NAME ...] \\
        [--auto-merge] [--dry-run] [--without-argocd] [--ca-file PEM] [--platform-dir DIR]

Per app (every app of the source's stack file, or each ``--app``), with the apps' paths from the
two stack files (``ops/releases.py``):

1. The digest in Git: the source's override ``.argocd-source-<src>-<app>.yaml`` at the tip of
   ``origin/<target>`` (fetched first), its image of the app's repository (the stack file's
   ``image``).
2. With Argo CD (the default): the source's Application ``<src>-<app>`` must be Synced and Healthy,
   and run that digest: the digests its ``status.summary.images`` pin, or, when those name only a
   tag, the ones its running Pods report (``ops/argocd_api.py``). A tag-only override is promoted
   at the digest the Pods run. The destination's Application must exist.
3. The destination's override file at ``origin/<target>`` gets exactly that digest: the source's
   image reference (repository, tag kept for readability as ``repo:tag@sha256:...``, kustomize
   alias kept) replaces the destination's entry of that image; everything else in it stays.

Refused, one ``promote: refused <app>: <reason>`` line each on stderr, exit 1, nothing pushed and no
merge request when any app is refused: the app is not in the destination's stack file (or the two
stack files name different images), the source has no valid override pinning one image of the
app, the source's Application is missing, not Synced/Healthy, never ran the digest Git pins, runs
several digests at once or reports none, the destination's Application is missing (404), the two
overrides have different forms (kustomize, helm), or no digest is known (a tag-only override with
``--without-argocd``). An app whose destination already pins the digest is skipped with a note.

``--without-argocd`` promotes the digests from Git alone, and says so on stdout and in the merge
request: what the source runs was not verified. Nothing is asked of Argo CD then.

The change: a branch ``promote/<src>-to-<dst>/<UTC yyyymmddThhmmss>`` with one commit on
``origin/<target>``, made with Git plumbing (a temporary index, ``commit-tree``), so neither the
clone's working tree nor its checked-out branch is touched; author and committer from Git's
config and environment. It is pushed to ``origin`` and one merge request is opened through
``ops/githost.py``; the host is asked to merge it when green only with ``--auto-merge``. The files
it writes are in the shape ``ops/writeback_check.py`` admits, so the write-back gate passes on the
branch with ``--paths`` set to the destination's app paths. When an open merge request from a
``promote/<src>-to-<dst>/`` branch already carries exactly these files, it is named and no second
one is opened. ``--dry-run`` fetches and reads (Git, Argo CD, the Git host) and prints the branch,
the files and the merge request it would make; it creates, pushes and opens nothing.

Tokens come from the environment only, as for ``ops/merge_when_green.py``: ``GITOPS_API_TOKEN``
(the Git host) and ``ARGOCD_AUTH_TOKEN`` (the platform-status account's, read-only). Exit codes: 0
done, or nothing to do; 1 refused, or a call to Argo CD, the Git host or ``git`` failed (the
message names it); 2 usage error. Never a traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from ops import merge_when_green as mwg
from ops.argocd_api import TOKEN_ENV as ARGOCD_TOKEN_ENV
from ops.argocd_api import Application, ArgoCD, ArgoCDError, Running, token_problem
from ops.githost import GitHost, GitHostError, MergeRequest
from ops.releases import (
    App,
    Environment,
    GitError,
    ImageRef,
    Override,
    OverrideImage,
    ReleaseError,
    add_platform_dir,
    check_repository,
    git,
    images_of,
    load_platform,
    parse_override,
    promoted_override,
    read_at,
    resolve,
    short,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
GATE = "ops/writeback_check.py"
UNVERIFIED = (
    "what {src} runs was NOT verified (--without-argocd): the digests come from {src}'s override "
    "files in Git alone"
)


class UsageError(Exception):
    """The step cannot run as asked: exit 2 with this message."""


class RefusedError(Exception):
    """One app cannot be promoted; ``reason`` says why."""

    def __init__(self, app: str, reason: str) -> None:
        super().__init__(f"{app}: {reason}")
        self.app = app
        self.reason = reason


@dataclass(frozen=True)
class Evidence:
    """What Argo CD said about the source's Application when the promotion was planned."""

    application: str
    revision: str
    sync: str
    health: str


@dataclass(frozen=True)
class Plan:
    app: str
    path: str  # the destination's override file
    content: str
    before: ImageRef | None  # the destination's image before, None when it pinned none
    after: ImageRef
    evidence: Evidence | None


@dataclass(frozen=True)
class Skip:
    app: str
    reason: str


def branch_prefix(source: str, destination: str) -> str:
    return f"promote/{source}-to-{destination}/"


def hex12(digest: str | None) -> str:
    return short(digest).removeprefix("sha256:")


def verified_digest(app: str, label: str, git_ref: ImageRef, running: Running) -> str:
    """The digest of ``app`` to promote, given what Argo CD says ``label`` runs; RefusedError otherwise."""
    if git_ref.digest is None and git_ref.tag:
        tags = sorted({ref.tag for ref in running.refs if ref.tag})
        # Without a tag in what Argo CD reports, nothing ties the running digest to Git's tag:
        # promoting it would label prod's file with a tag that is not what runs.
        if not tags:
            raise RefusedError(
                app, f"Git pins tag {git_ref.tag} but {label} reports no tag to match it with (digests only)"
            )
        if git_ref.tag not in tags:
            raise RefusedError(app, f"Git pins tag {git_ref.tag} but {label} runs {', '.join(tags)}")
    if not running.digests:
        raise RefusedError(
            app,
            f"no digest known: {label} reports none for {git_ref.repository or 'its image'} "
            "(no summary image pins one, no running Pod reports one)",
        )
    shorts = ", ".join(short(digest) for digest in running.digests)
    # Two digests at once is a rollout in progress (or a stuck one), whatever Git pins: what dev
    # has proven is only known once it runs one.
    if len(running.digests) > 1:
        raise RefusedError(app, f"{label} runs {len(running.digests)} digests ({shorts}): a rollout?")
    if git_ref.digest is not None and git_ref.digest not in running.digests:
        raise RefusedError(
            app, f"Git pins {short(git_ref.digest)} but {label} never ran it (it runs {shorts})"
        )
    return git_ref.digest or running.digests[0]


class Promotion:
    """Plans the promotion of each app from ``source`` to ``destination`` at commit ``base``."""

    def __init__(
        self,
        source: Environment,
        destination: Environment,
        *,
        repo: Path,
        target: str,
        base: str,
        argocd: ArgoCD | None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.repo = repo
        self.where = f"origin/{target}"
        self.base = base
        self.argocd = argocd

    def _override(self, app: str, path: str, owner: str) -> Override | None:
        data = read_at(self.repo, self.base, path)
        if data is None:
            return None
        try:
            return parse_override(data)
        except ValueError as exc:
            raise RefusedError(app, f"{owner}'s override {path} is not a valid override: {exc}") from exc

    def _source_image(self, app: App) -> tuple[Override, OverrideImage]:
        path = self.source.override_path(app)
        override = self._override(app.name, path, self.source.name)
        if override is None:
            raise RefusedError(app.name, f"{self.source.name}'s override {path} is not in {self.where}")
        try:
            found = images_of(override, app.image)
        except ValueError as exc:
            raise RefusedError(app.name, f"{self.source.name}'s override {path}: {exc}") from exc
        if len(found) != 1:
            what = f"images of {app.image}" if app.image else "images"
            raise RefusedError(
                app.name, f"{self.source.name}'s override {path} pins {len(found)} {what}, not one"
            )
        return override, found[0]

    def _application(self, environment: Environment, app: str) -> Application:
        assert self.argocd is not None
        name = environment.application(app)
        try:
            return self.argocd.application(name, project=environment.project)
        except ArgoCDError as exc:
            if exc.status == 404:
                reason = f"{environment.name}'s Application {name} does not exist in Argo CD"
                raise RefusedError(app, f"{reason} (project {environment.project})") from exc
            raise

    def _verify(self, app: App, git_ref: ImageRef) -> tuple[str, Evidence]:
        assert self.argocd is not None
        application = self._application(self.source, app.name)
        label = f"{self.source.name}'s Application {application.name}"
        state = f"{application.sync_status}/{application.health_status}"
        if not application.synced_and_healthy:
            raise RefusedError(app.name, f"{label} is {state}, not Synced/Healthy")
        digest = verified_digest(app.name, label, git_ref, self.argocd.running(application, app.image))
        self._application(self.destination, app.name)
        evidence = Evidence(
            application.name, application.revision, application.sync_status, application.health_status
        )
        return digest, evidence

    def plan(self, name: str) -> Plan | Skip:
        app = self.source.app(name)
        assert app is not None  # the command line checked it
        target_app = self.destination.app(name)
        if target_app is None:
            where = f"{self.destination.stack_file} platform:apps"
            raise RefusedError(name, f"not in {self.destination.name}'s stack file ({where})")
        if target_app.image != app.image:
            raise RefusedError(
                name, f"the stack files name different images ({app.image}, {target_app.image})"
            )
        source_override, image = self._source_image(app)
        if self.argocd is not None:
            digest, evidence = self._verify(app, image.ref)
        elif image.ref.digest is not None:
            digest, evidence = image.ref.digest, None
        else:
            raise RefusedError(
                name,
                f"no digest known: {self.source.name}'s override pins only the tag {image.ref.tag} "
                "and Argo CD is not asked what runs (--without-argocd)",
            )
        path = self.destination.override_path(target_app)
        current = self._override(name, path, self.destination.name)
        try:
            before = images_of(current, app.image) if current else []
        except ValueError as exc:
            # The write-back gate admits any non-empty string: a malformed entry is refused here.
            raise RefusedError(name, f"{self.destination.name}'s override {path}: {exc}") from exc
        if any(found.ref.digest == digest for found in before):
            return Skip(name, f"{self.destination.name} already pins {short(digest)}")
        try:
            new = promoted_override(current, source_override, image, digest)
        except ValueError as exc:
            raise RefusedError(name, str(exc)) from exc
        after = ImageRef(image.ref.repository, image.ref.tag, digest, image.ref.alias)
        return Plan(name, path, new.render(), before[0].ref if len(before) == 1 else None, after, evidence)


# --------------------------------------------------------------------------------------------
# The merge request
# --------------------------------------------------------------------------------------------


def title_for(source: str, destination: str, plans: Sequence[Plan]) -> str:
    apps = ", ".join(f"{plan.app} {hex12(plan.after.digest)}" for plan in plans)
    return f"promote {source} to {destination}: {apps}"


def before_text(plan: Plan, quote: str = "") -> str:
    """The destination's image before: its digest, else its tag, else none."""
    if plan.before is None:
        return "none"
    if plan.before.digest:
        return f"{quote}{plan.before.digest}{quote}"
    return f"tag {quote}{plan.before.tag}{quote} (no digest)"


def description_for(
    source: str,
    destination: str,
    target: str,
    plans: Sequence[Plan],
    *,
    verified_at: str | None,
    checked: str,
) -> str:
    """Per app the old and new digest and what Argo CD said; the warning when it was not asked."""
    if verified_at is None:
        head = f"**Warning: {UNVERIFIED.format(src=source)}.**\n\n"
    else:
        head = f"Verified against Argo CD at {verified_at} on {checked}.\n\n"
    rows = [
        "| App | " + f"{destination} before | {destination} after | {source} revision | "
        f"{source} sync / health |",
        "| --- | --- | --- | --- | --- |",
    ]
    for plan in plans:
        evidence = plan.evidence
        revision = f"`{evidence.revision}`" if evidence and evidence.revision else "not verified"
        state = f"{evidence.sync} / {evidence.health}" if evidence else "not verified"
        rows.append(
            f"| {plan.app} | {before_text(plan, '`')} | `{plan.after.digest}` | {revision} | {state} |"
        )
    files = "\n".join(f"- `{plan.path}`: `{plan.after}`" for plan in plans)
    paths = ",".join(sorted({plan.path.rpartition("/")[0] for plan in plans}))
    return (
        f"Promotes to **{destination}** the images **{source}** runs.\n\n{head}" + "\n".join(rows) + "\n\n"
        f"Files:\n{files}\n\n"
        f"Opened by `ops/promote.py`. The pipeline's write-back gate (`{GATE}`: `python -m "
        f"ops.writeback_check --repo . --target {target} --branch <this branch> --paths {paths}`) "
        "must pass before it is merged.\n"
    )


def commit_message(title: str, plans: Sequence[Plan]) -> str:
    lines = [f"{plan.app}: {before_text(plan)} -> {plan.after.digest}" for plan in plans]
    return f"{title}\n\n" + "\n".join(lines) + "\n"


def branch_matches(repo: Path, base: str, tip: str, plans: Sequence[Plan]) -> bool:
    """Whether ``tip`` changes exactly the planned files, to exactly the planned content."""
    merge_base = git(repo, "merge-base", base, tip).decode().strip()
    changed = git(repo, "diff", "--name-only", "-z", merge_base, tip, "--").decode().split("\0")
    if set(filter(None, changed)) != {plan.path for plan in plans}:
        return False
    return all(read_at(repo, tip, plan.path) == plan.content.encode() for plan in plans)


def same_open_request(
    host: GitHost, repo: Path, *, prefix: str, target: str, base: str, plans: Sequence[Plan]
) -> MergeRequest | None:
    for merge_request in host.list_open_merge_requests(prefix, target):
        try:
            git(repo, "fetch", "--quiet", "origin", f"refs/heads/{merge_request.source_branch}")
            tip = resolve(repo, "FETCH_HEAD")
            if tip and branch_matches(repo, base, tip, plans):
                return merge_request
        except GitError:
            continue  # its branch is gone or unrelated: not the same content
    return None


def branch_name(prefix: str) -> str:
    return f"{prefix}{datetime.now(UTC):%Y%m%dT%H%M%S}"


def create_branch(repo: Path, prefix: str, commit: str) -> str:
    """A new branch ``<prefix><UTC time>`` at ``commit``; a name taken already (two runs within a
    second) waits for the next second rather than move someone's branch."""
    while True:
        branch = branch_name(prefix)
        if resolve(repo, f"refs/heads/{branch}") is None:
            git(repo, "update-ref", f"refs/heads/{branch}", commit, "")  # "": only if it does not exist
            return branch
        time.sleep(0.1)


def make_commit(repo: Path, base: str, plans: Sequence[Plan], message: str) -> str:
    """A commit on ``base`` with the planned files, through a temporary index (no checkout)."""
    with tempfile.TemporaryDirectory(prefix="promote-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git(repo, "read-tree", base, env=env)
        for plan in plans:
            blob = git(repo, "hash-object", "-w", "--stdin", stdin=plan.content.encode()).decode().strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{plan.path}", env=env)
        tree = git(repo, "write-tree", env=env).decode().strip()
    return git(repo, "commit-tree", tree, "-p", base, "-F", "-", stdin=message.encode()).decode().strip()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.promote",
        description="Promote the image digests one environment runs to another through one merge "
        f"request. Tokens: ${mwg.TOKEN_ENV} (Git host), ${ARGOCD_TOKEN_ENV} (Argo CD).",
        allow_abbrev=False,
    )
    parser.add_argument("source", help="environment to promote from, e.g. dev")
    parser.add_argument("destination", help="environment to promote to, e.g. prod")
    parser.add_argument("--app", action="append", dest="apps", help="only this app (repeatable)")
    parser.add_argument("--repo", required=True, type=Path, help="local clone of the GitOps repository")
    parser.add_argument("--argocd-url", help="Argo CD's server, e.g. https://argocd.example.com")
    parser.add_argument("--ca-file", help="CA bundle that signed Argo CD's certificate")
    parser.add_argument(
        "--without-argocd",
        action="store_true",
        help="promote the digests in Git without asking Argo CD what the source runs (unverified)",
    )
    parser.add_argument("--provider", required=True, choices=mwg.PROVIDERS, help="kind of Git host")
    parser.add_argument(
        "--url", required=True, help="GitLab: https://gitlab.example.com; GitHub: https://api.github.com"
    )
    parser.add_argument("--project", required=True, help="GitLab project path, GitHub owner/repo")
    parser.add_argument("--target", default="main", help="branch Argo CD syncs from (default main)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    parser.add_argument("--auto-merge", action="store_true", help="ask the host to merge when green")
    add_platform_dir(parser)
    return parser


@dataclass(frozen=True)
class Setup:
    source: Environment
    destination: Environment
    apps: list[str]
    git_token: str
    argocd: ArgoCD | None


def check_arguments(args: argparse.Namespace) -> None:
    """The arguments make sense together; UsageError otherwise. Sets ``args.prefix``."""
    if args.source == args.destination:
        raise UsageError(f"source and destination are both {args.source!r}")
    if args.without_argocd == bool(args.argocd_url):
        raise UsageError(
            "--without-argocd and --argocd-url exclude each other"
            if args.without_argocd
            else "--argocd-url is required (or --without-argocd to promote from Git alone, unverified)"
        )
    if args.argocd_url and urlsplit(args.argocd_url).scheme not in ("http", "https"):
        raise UsageError(f"--argocd-url {args.argocd_url!r} is not an http(s) URL")
    if args.ca_file and not Path(args.ca_file).is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    args.prefix = branch_prefix(args.source, args.destination)
    try:
        mwg.validate(args)
    except mwg.UsageError as exc:
        raise UsageError(str(exc)) from exc


def setup(args: argparse.Namespace) -> Setup:
    """Everything checked before the first call; UsageError or ReleaseError (exit 2)."""
    check_arguments(args)
    git_token = os.environ.get(mwg.TOKEN_ENV, "").strip()
    if not git_token:
        raise UsageError(f"${mwg.TOKEN_ENV} is not set: export the Git host API token (never a flag)")
    argocd = None
    if args.argocd_url:
        token = os.environ.get(ARGOCD_TOKEN_ENV, "").strip()
        if (problem := token_problem(token)) is not None:
            raise UsageError(problem)
        argocd = ArgoCD(args.argocd_url, token, ca_file=args.ca_file)
    platform = load_platform(args.platform_dir)
    source, destination = platform.environment(args.source), platform.environment(args.destination)
    # The destination's own stack file says where its images come from; anything else would be a
    # second writer beside its image updater, or a skipped stage.
    if destination.promoted_from is None:
        raise UsageError(
            f"{destination.name} is not fed by promotion ({destination.stack_file} sets no "
            "platform:gitops.promotedFrom): its image updater writes its paths"
        )
    if destination.promoted_from != source.name:
        raise UsageError(
            f"{destination.name} receives images from {destination.promoted_from} only "
            f"({destination.stack_file}: platform:gitops.promotedFrom), not from {source.name}"
        )
    check_repository(args.repo)
    known = [app.name for app in source.apps]
    if not known:
        raise UsageError(f"{source.name} has no apps ({source.stack_file} has no platform:apps)")
    unknown = [name for name in args.apps or () if name not in known]
    if unknown:
        raise UsageError(f"{source.name} has no app {', '.join(unknown)} (its apps: {', '.join(known)})")
    return Setup(source, destination, list(dict.fromkeys(args.apps or known)), git_token, argocd)


def say(line: str) -> None:
    print(line, flush=True)


def promote(args: argparse.Namespace, ready: Setup) -> int:
    src, dst = ready.source.name, ready.destination.name
    git(
        args.repo,
        "fetch",
        "--quiet",
        "origin",
        f"+refs/heads/{args.target}:refs/remotes/origin/{args.target}",
    )
    base = resolve(args.repo, f"refs/remotes/origin/{args.target}")
    if base is None:
        raise GitError(f"origin/{args.target} does not resolve to a commit after fetching it")
    say(f"promote: {src} -> {dst} into {args.target} (origin/{args.target} at {base[:12]})")
    if ready.argocd is None:
        say(f"WARNING: {UNVERIFIED.format(src=src)}")
    promotion = Promotion(
        ready.source, ready.destination, repo=args.repo, target=args.target, base=base, argocd=ready.argocd
    )
    plans: list[Plan] = []
    refusals: list[RefusedError] = []
    for name in ready.apps:
        try:
            outcome = promotion.plan(name)
        except RefusedError as refused:
            refusals.append(refused)
            continue
        if isinstance(outcome, Skip):
            say(f"{outcome.app}: skipped, {outcome.reason}")
            continue
        plans.append(outcome)
        evidence = outcome.evidence
        seen = (
            f"{evidence.application} {evidence.sync}/{evidence.health} at {evidence.revision[:12] or '?'}"
            if evidence
            else "not verified"
        )
        before = (
            short(outcome.before.digest) if outcome.before and outcome.before.digest else before_text(outcome)
        )
        say(f"{name}: {before} -> {short(outcome.after.digest)} ({seen})")
    if refusals:
        for refusal in refusals:
            print(f"promote: refused {refusal.app}: {refusal.reason}", file=sys.stderr)
        count = f"{len(refusals)} of {len(ready.apps)} app(s) refused"
        print(f"promote: nothing pushed, no merge request: {count}", file=sys.stderr)
        return EXIT_REFUSED
    if not plans:
        say(f"promote: nothing to promote, {dst} already pins what {src} runs")
        return EXIT_OK
    return open_promotion(args, ready, base, plans)


def open_promotion(args: argparse.Namespace, ready: Setup, base: str, plans: list[Plan]) -> int:
    src, dst = ready.source.name, ready.destination.name
    host = mwg.build_host(args.provider, args.url, args.project, ready.git_token)
    existing = same_open_request(
        host, args.repo, prefix=args.prefix, target=args.target, base=base, plans=plans
    )
    if existing is not None:
        link = f" ({existing.url})" if existing.url else ""
        say(
            f"already open: {existing.reference} {existing.source_branch}{link} promotes exactly this; "
            "not opening a second"
        )
        if args.auto_merge and not existing.auto_merge and not args.dry_run:
            # An earlier run opened it but the host refused auto-merge then (no pipeline yet):
            # asking again is what that run's --auto-merge meant.
            say(f"{existing.reference}: {mwg.describe(host.request_auto_merge(existing))}")
        return EXIT_OK
    now = datetime.now(UTC)
    title = title_for(src, dst, plans)
    description = description_for(
        src,
        dst,
        args.target,
        plans,
        verified_at=ready.argocd.url if ready.argocd else None,
        checked=f"{now:%Y-%m-%dT%H:%M:%SZ}",
    )
    auto = "on" if args.auto_merge else "off"
    if args.dry_run:
        say(f"dry run: would push {branch_name(args.prefix)} on origin/{args.target} ({base[:12]}) writing:")
        for plan in plans:
            say(f"  {plan.path}:")
            say("".join(f"    {line}\n" for line in plan.content.splitlines()).rstrip("\n"))
        say(f'dry run: would open a merge request into {args.target}: "{title}" (auto-merge {auto})')
        say("dry run: nothing was changed")
        return EXIT_OK
    commit = make_commit(args.repo, base, plans, commit_message(title, plans))
    branch = create_branch(args.repo, args.prefix, commit)
    git(args.repo, "push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    say(f"pushed {branch} (commit {commit[:12]})")
    try:
        opened = host.open_merge_request(branch, args.target, title, description, auto_merge=args.auto_merge)
    except GitHostError as exc:
        # Take the push back: a promotion branch without its merge request is not a promotion,
        # and each failed run would otherwise leave one more.
        taken_back = subprocess.run(
            ["git", "-C", str(args.repo), "push", "--quiet", "origin", "--delete", branch],
            capture_output=True,
            text=True,
            check=False,
        )
        then = (
            f"{branch} was pushed and deleted again; run again once the host accepts it"
            if taken_back.returncode == 0
            else f"{branch} is pushed: open its merge request by hand, or delete the branch and run again"
        )
        raise GitHostError(exc.call, f"{exc.problem}; {then}") from exc
    merge_request = opened.merge_request
    link = f" ({merge_request.url})" if merge_request.url else ""
    outcome = (
        mwg.describe(opened.auto_merge) if opened.auto_merge else "auto-merge off (--auto-merge asks for it)"
    )
    say(f"opened {merge_request.reference} {branch} -> {args.target}{link}: {outcome}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        ready = setup(args)
    except (UsageError, ReleaseError) as exc:
        print(f"promote: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secrets = [ready.git_token, os.environ.get(ARGOCD_TOKEN_ENV, "").strip()]
    try:
        return promote(args, ready)
    except (ArgoCDError, GitHostError, ReleaseError) as exc:
        message = str(exc)
        for secret in filter(None, secrets):
            message = message.replace(secret, "***")
        print(f"promote: error: {message}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())

"""Delete old image tags from the platform's Container Registry namespace, never one still deployed.

CI pushes every commit's image to ``rg.<region>.scw.cloud/<namespace>/<image>:<commit sha>``, so
tags pile up and the namespace's storage grows without bound. This tool removes the old ones while
keeping everything an environment could still pull: the GitOps repository is the only record of
what runs (manifests under ``environments/<env>/`` and the image updater's
``.argocd-source-<app>.yaml`` overrides), so it is read first and whatever it references stays.

    python -m ops.registry_cleanup --region fr-par --namespace NAME --gitops PATH \\
        [--keep 10] [--older-than-days 30] [--dry-run] [--api-url URL]

Per image, a tag is kept when any of these holds, checked in this order (the first is the reason
printed), and deleted otherwise:

1. its name, or its digest, is referenced anywhere under ``--gitops`` (every environment, every
   file but ``.git``): a full reference ``<registry>/<namespace>/<image>[:tag][@sha256:...]`` in
   any text file, or, in YAML, a tag or digest value next to the image's repository (kustomize
   ``images`` entries, Helm values ``repository``/``tag``, the updater's Helm parameters
   ``<prefix>.name``/``<prefix>.tag``); a tag or digest value with no repository beside it (an
   override that sets only ``image.tag``) keeps that tag in every image, because a miss here would
   delete a running image while an extra keep costs only storage;
2. it is one of the ``--keep`` newest tags of the image (by creation time), a rollback target;
3. the registry reports no creation time for it (its age is unknown);
4. it is younger than ``--older-than-days`` (a build that may still be on its way to an env);
5. its digest is also the digest of a tag kept above: deleting a tag can delete its manifest and
   with it every tag sharing the digest (the ``force`` flag of the delete call, below).

Tags to delete that share a digest only with other tags to delete are deleted with ``force``; once
one of them is gone, "not found" for the others is success (the manifest went with the first).

Credentials come from the environment as the SDK reads them (``Client.from_env``):
``SCW_ACCESS_KEY``, ``SCW_SECRET_KEY`` and ``SCW_DEFAULT_PROJECT_ID`` are required (the project
scopes the namespace lookup), ``SCW_API_URL`` or ``--api-url`` changes the endpoint (tests).

Output: one ``KEEP <image>:<tag> (<reason>)`` or ``DELETE <image>:<tag> (<reason>)`` line per
tag (``WOULD DELETE`` with ``--dry-run``), newest first within an image, then a summary. Every
listing is done before the first deletion, so a listing error deletes nothing. Exit codes: 0 done;
1 an API call failed (the message names the call; deletions before it stand); 2 usage error
(arguments, credentials, GitOps path, unknown namespace). Never a traceback.

SDK calls this relies on (scaleway 2.12.0 / scaleway-core 2.12.0, read in the installed source):

* ``scaleway_core/profile/profile.py:98`` ``Profile.from_env`` (inherited by ``Client``): reads
  the ``SCW_*`` variables of ``scaleway_core/profile/env.py:11``, never the config file;
  ``profile.py:65`` ``api_url`` defaults to ``https://api.scaleway.com``.
* ``scaleway_core/api.py:105`` ``API.__init__`` runs ``Client.validate`` (``client.py:28``): key
  formats, project id, an absolute ``api_url`` without a trailing slash; it raises ValueError,
  whose message quotes a malformed secret key (``client.py:42``), masked here.
* ``scaleway/registry/v1/api.py:105`` ``list_namespaces_all(region, name, project_id, page_size)``
  (name is an exact match), ``:409`` ``list_images_all(region, namespace_id, page_size)``, ``:653``
  ``list_tags_all(image_id, region, page_size)``, ``:767`` ``delete_tag(tag_id, region, force)``
  (``force`` documented at ``:779``: needed when two tags share a digest, deprecated; a Python
  ``True`` that ``requests`` sends as ``force=True``, ``api.py:134-143``).
* ``scaleway_core/utils/fetch_all_pages.py:19``: the ``*_all`` helpers request page 1, 2, ...
  and stop at a page shorter than ``page_size`` or an empty one.
* ``scaleway_core/api.py:187`` ``_throw_on_error`` raises ``ScalewayException`` (``:88``, holds
  the response) for HTTP >= 400 and first decodes the body as JSON, so a non-JSON error body
  raises ``requests.JSONDecodeError`` instead; ``api.py:166`` sends with no timeout.
* ``scaleway/registry/v1/marshalling.py:195`` ``unmarshal_Tag``: ``created_at`` through
  ``dateutil.parser.isoparse``, ``digest`` as the API sends it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml
from scaleway.registry.v1 import RegistryV1API
from scaleway_core.api import ScalewayException

from ops import scaleway_api

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2

PAGE_SIZE = 100  # the API's maximum page size (api.py docstrings): fewest requests
REGION = re.compile(r"[a-z]{2}-[a-z]{3}")
#: The platform's namespace rule (scw_platform/registry.py, RegistrySettings.namespace).
NAMESPACE = re.compile(r"[a-z0-9][a-z0-9-]{2,52}[a-z0-9]")
#: Image path components and tags, as the OCI distribution reference grammar defines them.
IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG_VALUE = re.compile(TAG)
#: YAML keys whose values are tags or digests (tag, newTag, image.tag, digest, ...).
TAG_KEY = re.compile(r"tag|digest", re.IGNORECASE)
#: YAML keys that name an image repository: a slash in their value means "some other image".
REPOSITORY_KEYS = frozenset({"repository", "repo", "name", "newname", "image", "imagename"})
MAX_FILE_BYTES = 8 * 1024 * 1024
T = TypeVar("T")


class UsageError(Exception):
    """The cleanup cannot start as asked: exit 2 with this message."""


class ApiError(Exception):
    """A registry call failed: exit 1. ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RemoteTag:
    """The fields of the SDK's ``Tag`` the rules use, typed (the SDK ships no type marker)."""

    id: str
    name: str
    digest: str
    created_at: datetime | None


@dataclass(frozen=True)
class RemoteImage:
    id: str
    name: str


@dataclass(frozen=True)
class Decision:
    image: str
    tag: RemoteTag
    delete: bool
    reason: str
    #: Other tags of the image with this digest that are deleted too: the delete needs ``force``.
    shared: bool = False


@dataclass
class References:
    """What the GitOps checkout references, each with the first file (sorted) that does.

    Keys are ``(image, tag)`` and ``(image, digest)``; image ``None`` is a tag or digest seen with
    no repository beside it, which keeps that tag or digest in every image.
    """

    tags: dict[tuple[str | None, str], str] = field(default_factory=dict)
    digests: dict[tuple[str | None, str], str] = field(default_factory=dict)

    def add(self, image: str | None, tag: str | None, digest: str | None, source: str) -> None:
        if tag:
            self.tags.setdefault((image, tag), source)
        if digest:
            self.digests.setdefault((image, digest.lower()), source)


@dataclass(frozen=True)
class Policy:
    keep: int
    older_than: timedelta
    now: datetime


@dataclass
class Tally:
    images: int = 0
    kept: int = 0
    deleted: int = 0


# --------------------------------------------------------------------------------------------
# Registry: the four SDK calls, each failure an ApiError naming the call
# --------------------------------------------------------------------------------------------


def _describe(exc: Exception) -> tuple[str, int | None]:
    """A one-line reason and the HTTP status, from what the SDK or requests raised."""
    answer = scaleway_api.api_answer(exc)
    if answer is not None:
        status, detail = answer
        return (f"HTTP {status}: {detail}" if status is not None else detail), status
    return (str(exc).splitlines()[0] if str(exc) else type(exc).__name__), None


class Registry:
    """The registry API for one region, with failures turned into :class:`ApiError`."""

    def __init__(self, api: Any, region: str) -> None:
        self.api = api
        self.region = region

    def _call(self, call: str, what: str, fetch: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fetch(region=self.region, **kwargs)
        except (ScalewayException, requests.RequestException, ValueError, TypeError, KeyError) as exc:
            reason, status = _describe(exc)
            raise ApiError(f"{call} ({what}) failed: {reason}", status) from exc

    def namespace(self, name: str, project_id: str) -> tuple[str, str]:
        """The namespace's id and registry endpoint; a missing namespace is a usage error."""
        found = self._call(
            "list_namespaces",
            f"name {name}",
            self.api.list_namespaces_all,
            name=name,
            project_id=project_id,
            page_size=PAGE_SIZE,
        )
        matches = [ns for ns in found if ns.name == name]
        if len(matches) != 1:
            raise UsageError(
                f"namespace {name!r} not found in region {self.region} of project {project_id} "
                f"(list_namespaces returned {len(matches)} namespace(s) of that name)"
            )
        return str(matches[0].id), str(matches[0].endpoint or "")

    def images(self, namespace_id: str) -> list[RemoteImage]:
        found = self._call(
            "list_images",
            f"namespace {namespace_id}",
            self.api.list_images_all,
            namespace_id=namespace_id,
            page_size=PAGE_SIZE,
        )
        # The filter is the API's; checking it again keeps another namespace's images out for sure.
        return [RemoteImage(str(i.id), str(i.name)) for i in found if i.namespace_id == namespace_id]

    def tags(self, image: RemoteImage) -> list[RemoteTag]:
        found = self._call(
            "list_tags", f"image {image.name}", self.api.list_tags_all, image_id=image.id, page_size=PAGE_SIZE
        )
        return [RemoteTag(str(t.id), str(t.name), _digest(t.digest), _aware(t.created_at)) for t in found]

    def delete(self, image: str, tag: RemoteTag, force: bool) -> None:
        what = f"{image}:{tag.name}, tag {tag.id}"
        self._call("delete_tag", what, self.api.delete_tag, tag_id=tag.id, force=True if force else None)


def _digest(value: Any) -> str:
    """Digests compared in one form: lowercase ``sha256:<hex>`` (a bare hex digest gets the prefix)."""
    text = str(value or "").strip().lower()
    return f"sha256:{text}" if re.fullmatch(r"[0-9a-f]{64}", text) else text


def _aware(value: Any) -> datetime | None:
    """Creation times in UTC when the API sent no offset, so ages compare with an aware ``now``."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# GitOps checkout: what is referenced
# --------------------------------------------------------------------------------------------


def reference_pattern(prefixes: Iterable[str]) -> re.Pattern[str]:
    """Full references under any of ``prefixes`` (``rg.fr-par.scw.cloud/ns``): image, tag, digest."""
    hosts = "|".join(re.escape(prefix.rstrip("/")) for prefix in sorted(set(prefixes)) if prefix)
    return re.compile(
        rf"(?<![\w.-])(?:{hosts})/(?P<image>{IMAGE_PATH})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST.pattern}))?"
    )


def check_gitops(root: Path) -> None:
    """Refuse a path that is not the GitOps checkout: scanning the wrong directory finds no
    reference, and then every deployed tag old enough would be deleted."""
    if not root.is_dir():
        raise UsageError(f"--gitops {root} is not a directory")
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"], capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise UsageError("git is not installed or not on PATH") from exc
    if done.returncode != 0 or done.stdout.strip() != b"true":
        raise UsageError(f"--gitops {root} is not a Git checkout")
    if not (root / "environments").is_dir():
        raise UsageError(f"--gitops {root} has no environments/ directory: not the GitOps repository")


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` but Git's own, in a stable order (first source wins)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
                yield path


def _scalars(mapping: dict[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items() if isinstance(v, str | int | float)}


def value_groups(node: Any) -> Iterator[dict[str, str]]:
    """Groups of sibling scalar values that may name an image and its tag: every YAML mapping,
    and Helm parameter lists (``[{name: image.tag, value: ...}]``) grouped by name prefix."""
    if isinstance(node, dict):
        yield _scalars(node)
        for value in node.values():
            yield from value_groups(value)
    elif isinstance(node, list):
        if node and all(isinstance(item, dict) and {"name", "value"} <= set(item) for item in node):
            groups: dict[str, dict[str, str]] = {}
            for item in node:
                prefix, _, leaf = str(item["name"]).rpartition(".")
                groups.setdefault(prefix, {})[leaf] = str(item["value"])
            yield from groups.values()
        for item in node:
            yield from value_groups(item)


def _split_value(value: str) -> tuple[str | None, str | None]:
    """A tag value as ``(tag, digest)``: ``abc``, ``sha256:...`` or ``abc@sha256:...``."""
    tag, _, digest = value.strip().partition("@")
    if not digest and DIGEST.fullmatch(tag.lower()):
        return None, tag
    tag_ok = tag if TAG_VALUE.fullmatch(tag) else None
    return tag_ok, (digest if DIGEST.fullmatch(digest.lower()) else None)


def collect_group(group: dict[str, str], source: str, pattern: re.Pattern[str], refs: References) -> None:
    """Tag and digest values of one group, for the group's image(s) of this namespace, or for every
    image when the group names no repository at all."""
    values = [value for key, value in group.items() if TAG_KEY.search(key)]
    if not values:
        return
    images: set[str | None] = {m["image"] for v in group.values() if (m := pattern.fullmatch(v.strip()))}
    if not images:
        if any(key.lower() in REPOSITORY_KEYS and "/" in value for key, value in group.items()):
            return  # the tag of an image outside this namespace
        images = {None}
    for value in values:
        tag, digest = _split_value(value)
        for image in images:
            refs.add(image, tag, digest, source)


def scan_gitops(root: Path, pattern: re.Pattern[str]) -> References:
    """Every reference to the namespace's images in the checkout, text first, then YAML structure."""
    refs = References()
    for path in iter_files(root):
        source = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
        except OSError as exc:  # a file not read could hold the only reference to a running image
            raise UsageError(f"cannot read {source} in the GitOps checkout: {exc.strerror}") from exc
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for match in pattern.finditer(text):
            refs.add(match["image"], match["tag"], match["digest"], source)
        if path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            documents = list(yaml.safe_load_all(text))
        except (yaml.YAMLError, ValueError):
            continue  # a template, not YAML: the text scan above is all there is
        for group in value_groups(documents):
            collect_group(group, source, pattern, refs)
    return refs


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


def reference_reason(image: str, tag: RemoteTag, refs: References) -> str | None:
    """Why the GitOps checkout keeps ``tag``, or None."""
    for owner, suffix in ((image, ""), (None, " (no repository named there)")):
        if source := refs.tags.get((owner, tag.name)):
            return f"tag referenced in {source}{suffix}"
        if tag.digest and (source := refs.digests.get((owner, tag.digest))):
            return f"digest {_short(tag.digest)} referenced in {source}{suffix}"
    return None


def policy_reason(rank: int, tag: RemoteTag, policy: Policy) -> str | None:
    """Why age and rank keep ``tag`` (``rank`` 0 is the newest), or None."""
    if rank < policy.keep:
        return f"among the newest {policy.keep}"
    if tag.created_at is None:
        return "no creation time reported"
    if policy.now - tag.created_at < policy.older_than:
        return f"younger than {policy.older_than.days} days, created {tag.created_at:%Y-%m-%d}"
    return None


def plan_image(image: str, tags: Sequence[RemoteTag], refs: References, policy: Policy) -> list[Decision]:
    """The decision for every tag of one image, newest first (no creation time sorts newest)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(tags, key=lambda t: (t.created_at is None, t.created_at or epoch, t.name), reverse=True)
    decisions: list[Decision] = []
    for rank, tag in enumerate(ordered):
        keep = reference_reason(image, tag, refs) or policy_reason(rank, tag, policy)
        if keep is not None:
            decisions.append(Decision(image, tag, delete=False, reason=keep))
            continue
        age = (policy.now - tag.created_at).days if tag.created_at else 0
        reason = f"unreferenced, not among the newest {policy.keep}, {age} days old"
        decisions.append(Decision(image, tag, delete=True, reason=reason))
    return settle_digests(decisions)


def settle_digests(decisions: Sequence[Decision]) -> list[Decision]:
    """Keep a tag whose digest a kept tag shares (its delete could take the kept tag's manifest);
    mark the tags to delete that share a digest only among themselves, which need ``force``."""
    kept = {d.tag.digest: d.tag.name for d in decisions if not d.delete and d.tag.digest}
    doomed = [d.tag.digest for d in decisions if d.delete and d.tag.digest]
    settled: list[Decision] = []
    for decision in decisions:
        digest = decision.tag.digest
        if decision.delete and digest in kept:
            reason = f"digest {_short(digest)} is also that of kept tag {kept[digest]}"
            settled.append(replace(decision, delete=False, reason=reason))
        elif decision.delete and doomed.count(digest) > 1:
            settled.append(replace(decision, shared=True))
        else:
            settled.append(decision)
    return settled


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.registry_cleanup",
        description="Delete old tags of a Scaleway Container Registry namespace, keeping deployed ones.",
    )
    parser.add_argument("--region", required=True, help="registry region, e.g. fr-par")
    parser.add_argument("--namespace", required=True, help="registry namespace name")
    parser.add_argument("--gitops", required=True, type=Path, help="checkout of the GitOps repository")
    parser.add_argument("--keep", type=int, default=10, help="newest tags kept per image (default 10)")
    parser.add_argument(
        "--older-than-days", type=int, default=30, help="delete only tags older than this (default 30)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    parser.add_argument("--api-url", help="Scaleway API URL (default: SCW_API_URL, else the SDK's)")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    if not REGION.fullmatch(args.region):
        raise UsageError(f"invalid --region {args.region!r}: expected a region such as fr-par")
    if not NAMESPACE.fullmatch(args.namespace):
        raise UsageError(f"invalid --namespace {args.namespace!r}")
    if args.keep < 0 or args.older_than_days < 0:
        raise UsageError("--keep and --older-than-days must be 0 or more")


def connect(args: argparse.Namespace) -> tuple[Registry, str]:
    """The registry API from the environment's credentials, and the project id; usage errors for
    missing or malformed settings (the SDK validates them before any request)."""
    try:
        api, project_id = scaleway_api.from_env(RegistryV1API, args.api_url)
    except scaleway_api.CredentialsError as exc:
        raise UsageError(str(exc)) from exc
    return Registry(api, args.region), project_id


def execute(registry: Registry, decisions: Sequence[Decision], dry_run: bool, tally: Tally) -> None:
    """Print each decision, deleting as it goes; a forced delete may take its digest's other tags
    with it, so "not found" for those afterwards is what was wanted."""
    gone: set[str] = set()
    for decision in decisions:
        label = f"{decision.image}:{decision.tag.name} ({decision.reason})"
        if not decision.delete:
            tally.kept += 1
            print(f"KEEP {label}")
            continue
        if not dry_run:
            try:
                registry.delete(decision.image, decision.tag, force=decision.shared)
            except ApiError as exc:
                if not (exc.status == 404 and decision.shared and decision.tag.digest in gone):
                    raise
            gone.add(decision.tag.digest)
        tally.deleted += 1
        print(f"{'WOULD DELETE' if dry_run else 'DELETE'} {label}")


def cleanup(args: argparse.Namespace, tally: Tally) -> None:
    """Look the namespace up, read the checkout, list every tag, then delete."""
    check_arguments(args)
    gitops = args.gitops.resolve()
    check_gitops(gitops)
    registry, project_id = connect(args)
    namespace_id, endpoint = registry.namespace(args.namespace, project_id)
    prefixes = {f"rg.{args.region}.scw.cloud/{args.namespace}", endpoint}
    refs = scan_gitops(gitops, reference_pattern(prefixes))
    policy = Policy(args.keep, timedelta(days=args.older_than_days), datetime.now(UTC))
    plans = [
        plan_image(image.name, registry.tags(image), refs, policy)
        for image in sorted(registry.images(namespace_id), key=lambda i: i.name)
    ]
    tally.images = len(plans)
    for decisions in plans:
        execute(registry, decisions, args.dry_run, tally)


def summary(args: argparse.Namespace, tally: Tally, failed: bool) -> str:
    deleted = f"{tally.deleted} would be deleted (dry run)" if args.dry_run else f"{tally.deleted} deleted"
    verdict = "FAILED" if failed else "OK"
    return (
        f"registry-cleanup: {verdict}, namespace {args.namespace} ({args.region}): {tally.images} image(s), "
        f"{tally.kept + tally.deleted} tag(s), {tally.kept} kept, {deleted}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    tally = Tally()
    try:
        cleanup(args, tally)
    except UsageError as exc:
        print(f"registry-cleanup: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"registry-cleanup: error: {exc}", file=sys.stderr)
        print(summary(args, tally, failed=True))
        return EXIT_API
    print(summary(args, tally, failed=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

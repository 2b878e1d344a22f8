"""Pipeline gate for the image updater's write-back branches: only its own override files may change.

The image updater (argocd-image-updater v1.x, configured by the ``ImageUpdater`` resources of
``scw_platform/gitops.py``) pushes its commits to ``image-updater-<sha256>`` branches and the Git
host merges them into ``main`` when the pipeline is green. This check is that pipeline's gate: it
computes the files changed between ``git merge-base <target> <branch>`` and ``<branch>`` (with
rename detection; a rename names both paths) and refuses every path that is not a file the image
updater itself would write. Run from a local clone:

    python -m ops.writeback_check --repo PATH --target main [--branch HEAD] [--paths a,b]

Allowed, and nothing else:

* an added or modified regular file (mode 100644; no symlink, submodule or executable) named
  ``.argocd-source-<name>.yaml``, ``<name>`` a Kubernetes object name (lowercase letters, digits,
  ``-`` and ``.``), directly inside one of ``--paths`` (the Applications' source paths) or, without
  ``--paths``, directly inside any directory;
* whose content at the branch tip is one YAML document that is exactly what the updater writes:
  ``helm: {parameters: [{name, value, forceString}, ...]}`` or ``kustomize: {images: [str, ...]}``
  (no other key at any level, no duplicate key, strings where the updater writes strings,
  at most 64 KiB).

Refused besides: deletions and renames of override files (the updater only creates or rewrites
them), an empty override (that drops the pinned images, like a deletion), every other path
(manifests, ``kustomization.yaml``, values files, ``.argocd-source.yaml`` which Argo CD applies to
every app of a directory, the ``<namespace>_<app>`` variant used only for Applications outside the
updater's namespace, which this platform does not have).

Exit codes: 0 the branch only touches allowed files (or nothing at all); 1 at least one path is
refused (one ``REFUSED <path>: <reason>`` line each, then a summary); 2 usage error (not a Git
repository, unknown branch or target, no merge base, bad ``--paths``), with a message, no traceback.

Upstream behaviour this relies on, read in argoproj-labs/argocd-image-updater:

* ``pkg/common/constants.go``: the default write-back file is ``.argocd-source-<app>.yaml``
  (``.argocd-source-<namespace>_<app>.yaml`` when the Application's namespace is not the
  updater's), the ``kustomization`` and ``helmvalues`` write-back target prefixes, the common
  ``.argocd-source-`` prefix.
* ``api/v1alpha1/imageupdater_types.go``: ``writeBackConfig.gitConfig.writeBackTarget`` is optional;
  ``kustomization[:dir]`` makes the updater edit that directory's ``kustomization.yaml`` (the
  ``images`` list) and ``helmvalues[:file]`` a Helm values file, instead of the default file. The
  platform sets neither, so those files are never the updater's to change here.
* ``pkg/argocd/update.go`` and ``pkg/argocd/argocd.go`` (``parseDefaultTarget``,
  ``parseKustomizeBase``, ``parseTarget``; they sit in one or the other depending on the version):
  the default file sits in the Application's ``spec.source.path``; the namespaced name is chosen
  only when the Application lives outside the controller's namespace.
* ``pkg/argocd/git.go`` (``commitChangesGit``, ``writeOverrides``, ``writeKustomization``): the
  ``base:target`` branch form creates the write branch from the base; the updater writes (and
  ``git add``s) the override file and never removes or renames one.
* ``pkg/argocd/types.go`` and ``pkg/argocd/update.go`` (``helmOverride``, ``kustomizeOverride``,
  ``marshalParamsOverride``): the override is marshalled from structs holding only
  ``helm.parameters`` (Argo CD ``HelmParameter``: name, value, forceString) or ``kustomize.images``
  (a list of image strings); an existing file is read back into the same structs, so any other key
  would not survive an update by the updater itself.
* ``docs/basics/update-methods.md``: the same behaviour from the user's side (default file in the
  source path, ``write-back-target: kustomization`` as the alternative).

What this does not judge: which helm parameter names or image references are legitimate (a write
key holder could still pin another image or set another parameter through an allowed file). The
merge is automatic once this passes, so what such a file can still do is bounded only by the
environment's AppProject (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import posixpath
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

#: Default write-back file of the image updater, ``<name>`` a Kubernetes object name (DNS-1123).
OVERRIDE_NAME = re.compile(r"\.argocd-source-[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?\.yaml")
REGULAR_FILE_MODE = "100644"
MAX_OVERRIDE_BYTES = 64 * 1024
HELM_PARAMETER_KEYS = {"name": str, "value": str, "forceString": bool}


class UsageError(Exception):
    """The check could not run: exit 2 with this message."""


@dataclass(frozen=True)
class Change:
    """One entry of ``git diff --raw``: status letter, new path, renamed-from path, new mode and blob."""

    status: str
    path: str
    old_path: str | None
    new_mode: str
    new_blob: str


@dataclass(frozen=True)
class Finding:
    path: str
    reason: str


# --------------------------------------------------------------------------------------------
# Git
# --------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> bytes:
    """Run ``git -C repo args``; a failure becomes a :class:`UsageError` carrying git's message."""
    command = ["git", "-C", str(repo), *args]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise UsageError("git is not installed or not on PATH") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise UsageError(f"git {' '.join(args)} failed: {message}")
    return done.stdout


def check_repository(repo: Path) -> None:
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a directory")
    try:
        git(repo, "rev-parse", "--git-dir")
    except UsageError as exc:
        raise UsageError(f"{repo} is not a Git repository") from exc


def resolve_commit(repo: Path, rev: str, what: str) -> str:
    """The commit id ``rev`` names; revisions that look like options are refused, not passed on."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"invalid {what} {rev!r}")
    try:
        out = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except UsageError as exc:
        raise UsageError(f"unknown {what} {rev!r}: no such branch or commit in {repo}") from exc
    return out.decode().strip()


def merge_base(repo: Path, target: str, branch: str, names: str) -> str:
    """The merge base of two commit ids; ``names`` says which for the message."""
    try:
        return git(repo, "merge-base", target, branch).decode().strip()
    except UsageError as exc:
        raise UsageError(f"no merge base between {names}: unrelated histories") from exc


def parse_raw(output: bytes) -> list[Change]:
    """Parse ``git diff --raw -z --no-abbrev``: ``:<old mode> <new mode> <old> <new> <status>`` then
    one path, or two (from, to) for renames and copies, each NUL-terminated."""
    fields = output.decode("utf-8", errors="surrogateescape").split("\0")
    changes: list[Change] = []
    index = 0
    while index < len(fields) and fields[index].startswith(":"):
        _old_mode, new_mode, _old_blob, new_blob, status = fields[index][1:].split(" ")
        if status[0] in "RC":
            old_path, path = fields[index + 1], fields[index + 2]
            index += 3
        else:
            old_path, path = None, fields[index + 1]
            index += 2
        changes.append(Change(status[0], path, old_path, new_mode, new_blob))
    return changes


def changed_files(repo: Path, base: str, head: str) -> list[Change]:
    raw = git(repo, "diff", "--raw", "-z", "--no-abbrev", "-M", "--no-ext-diff", base, head, "--")
    return parse_raw(raw)


# --------------------------------------------------------------------------------------------
# What the image updater may write
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe loading that refuses duplicate keys instead of keeping the last one silently."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    for key in keys:
        if keys.count(key) > 1:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", node.start_mark)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _only_key(value: Any, key: str, where: str) -> Any:
    """``value[key]`` when ``value`` is a mapping with that single key, else ValueError."""
    if not isinstance(value, dict) or list(value) != [key]:
        found = sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{where} must hold only {key!r}, found {found}")
    return value[key]


def _non_empty_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list")
    return value


def check_helm(helm: Any) -> None:
    parameters = _non_empty_list(_only_key(helm, "parameters", "helm"), "helm.parameters")
    for number, parameter in enumerate(parameters):
        where = f"helm.parameters[{number}]"
        if not isinstance(parameter, dict):
            raise ValueError(f"{where} must be a mapping")
        extra = sorted(set(map(str, parameter)) - set(HELM_PARAMETER_KEYS))
        if extra:
            raise ValueError(f"{where} has keys the image updater never writes: {extra}")
        for key, kind in HELM_PARAMETER_KEYS.items():
            if key in parameter and not isinstance(parameter[key], kind):
                raise ValueError(f"{where}.{key} must be a {kind.__name__}")
        if not parameter.get("name"):
            raise ValueError(f"{where} has no name")


def check_kustomize(kustomize: Any) -> None:
    images = _non_empty_list(_only_key(kustomize, "images", "kustomize"), "kustomize.images")
    for number, image in enumerate(images):
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"kustomize.images[{number}] must be a non-empty image string")


def content_problem(data: bytes) -> str | None:
    """Why ``data`` is not an override the image updater writes, or None when it is one."""
    if len(data) > MAX_OVERRIDE_BYTES:
        return f"larger than {MAX_OVERRIDE_BYTES} bytes"
    try:
        document = yaml.load(data.decode("utf-8"), Loader=_StrictLoader)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"not a single valid YAML document ({first_line})"
    if document is None:
        return "empty override: drops the pinned images, the image updater never writes that"
    checks = {"helm": check_helm, "kustomize": check_kustomize}
    if not isinstance(document, dict) or len(document) != 1 or next(iter(document)) not in checks:
        found = sorted(map(str, document)) if isinstance(document, dict) else type(document).__name__
        return f"must hold exactly one of 'helm' or 'kustomize' at the top, found {found}"
    try:
        key, value = next(iter(document.items()))
        checks[key](value)
    except ValueError as exc:
        return str(exc)
    return None


def name_problem(path: str, allowed_dirs: frozenset[str] | None) -> str | None:
    """Why ``path`` is not where the image updater writes, or None."""
    directory, name = posixpath.split(path)
    if not OVERRIDE_NAME.fullmatch(name):
        return "not an image updater override file (.argocd-source-<app>.yaml)"
    if allowed_dirs is not None and directory not in allowed_dirs:
        return f"override file outside the allowed app paths ({', '.join(sorted(allowed_dirs))})"
    return None


def judge(repo: Path, change: Change, allowed_dirs: frozenset[str] | None) -> list[Finding]:
    """The findings for one changed entry (empty when the updater could have made it)."""
    findings: list[Finding] = []
    if change.old_path is not None:
        reason = f"renamed to {change.path}: the image updater never renames"
        findings.append(Finding(change.old_path, reason))
    if change.status == "D":
        reason = name_problem(change.path, allowed_dirs) or "override deleted: the updater never deletes"
        return [*findings, Finding(change.path, reason)]
    problem = name_problem(change.path, allowed_dirs)
    if problem is None and change.new_mode != REGULAR_FILE_MODE:
        problem = f"mode {change.new_mode}, not a regular non-executable file"
    if problem is None:
        problem = content_problem(git(repo, "cat-file", "blob", change.new_blob))
    if problem is not None:
        findings.append(Finding(change.path, problem))
    return findings


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_paths(value: str | None) -> frozenset[str] | None:
    """``apps/website,apps/newsletter`` -> normalised directories; None means any directory."""
    if value is None:
        return None
    dirs = [item.strip().strip("/") for item in value.split(",")]
    for item in dirs:
        parts = item.split("/")
        if not item or any(part in ("", ".", "..") for part in parts):
            raise UsageError(f"invalid --paths entry {item!r}: use repository-relative directories")
    return frozenset(dirs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.writeback_check",
        description="Fail when an image updater write-back branch changes more than its override files.",
    )
    parser.add_argument("--repo", required=True, type=Path, help="local clone of the GitOps repository")
    parser.add_argument("--target", required=True, help="branch the merge request targets, e.g. main")
    parser.add_argument("--branch", default="HEAD", help="write-back branch to check (default HEAD)")
    parser.add_argument("--paths", help="comma-separated app source paths the overrides may live in")
    return parser


def run(args: argparse.Namespace) -> int:
    allowed_dirs = parse_paths(args.paths)
    check_repository(args.repo)
    target = resolve_commit(args.repo, args.target, "target")
    branch = resolve_commit(args.repo, args.branch, "branch")
    base = merge_base(args.repo, target, branch, f"{args.target} and {args.branch}")
    changes = changed_files(args.repo, base, branch)
    if not changes:
        between = f"{args.target} and {args.branch} (merge base {base[:12]})"
        print(f"writeback-check: OK, nothing changed between {between}")
        return EXIT_OK
    findings = [finding for change in changes for finding in judge(args.repo, change, allowed_dirs)]
    for finding in findings:
        print(f"REFUSED {finding.path}: {finding.reason}")
    paths = {path for change in changes for path in (change.path, change.old_path) if path}
    refused = {finding.path for finding in findings}
    verdict = "FAILED" if refused else "OK"
    print(
        f"writeback-check: {verdict}, {len(paths)} changed path(s) between {args.target} and "
        f"{args.branch}, {len(refused)} refused"
    )
    return EXIT_REFUSED if refused else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return run(args)
    except UsageError as exc:
        print(f"writeback-check: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

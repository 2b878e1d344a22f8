"""What promotion and status share: environments and their apps, image references, override files.

``ops/promote.py`` (copy the image dev runs to prod through a merge request) and ``ops/status.py``
(what each environment runs, and how far prod is behind dev) read the same facts; this module is
where they are read, once, without any network call: files of the platform repository and ``git``
on a clone of the GitOps repository.

* **Environments and apps.** ``environments.yaml`` lists the environments, each with ``stack:
  organization/platform/<stack>``; the stack file ``Pulumi.<stack>.yaml`` beside it holds the
  environment's ``platform:apps`` (``name``, ``gitopsPath``, ``image``: the repository without tag).
  Nothing here knows a path: each environment's app paths come from its own stack file. Per app the
  program declares the Argo CD Application ``<env>-<app>`` in the AppProject ``<env>``
  (``scw_platform/gitops.py``, ``application_name`` and ``EnvironmentProject``), and the image
  updater writes its override ``.argocd-source-<env>-<app>.yaml`` in the app's path.
* **Image references**, as a kustomize ``images`` entry spells them: ``[alias=]repository[:tag]
  [@sha256:<64 hex>]``. The optional ``alias=`` is the image name in the manifests that kustomize
  replaces (kustomize ``images[].name``); it is kept as written.
* **Override files**, exactly the two forms the image updater writes and ``ops/writeback_check.py``
  admits (its ``content_problem`` is applied first, so a file read here passes that gate's content
  rules, and a file rendered here is in the same shape): ``kustomize: {images: [<ref>, ...]}`` or
  ``helm: {parameters: [{name, value, forceString}, ...]}``. For Helm the image is a group of
  parameters sharing a prefix ``P`` (``image``, ``app.image``, ...): ``P.name`` or
  ``P.repository`` (the repository; optional, the chart may default it), ``P.tag`` and
  ``P.digest``. The digest is read from ``P.digest`` (``sha256:<hex>``) or from a tag of the form
  ``<tag>@sha256:<hex>``; a group with neither pins no digest. A chart that takes the whole
  reference in one parameter (the updater's ``helm.image-spec``) is not recognised: its override
  names no image here, and promotion refuses it.
* **History** of an override file in the GitOps repository: ``git log --first-parent`` of the file
  on the target branch, oldest first, so the order is the order in which the branch received the
  versions (a merge request's merge commit counts once, at the point it landed).

Upstream behaviour relied on (argoproj-labs/argocd-image-updater, read as cited in
``ops/writeback_check.py``): ``pkg/argocd/update.go`` ``SetKustomizeImage`` writes ``alias=`` and
the image's full name, which the registry-scanner's ``pkg/image/image.go`` renders as
``repo@<digest>`` when the updater pins a digest and ``repo:<tag>`` otherwise
(``GetFullNameWithTag``); for Helm, ``GetTagWithDigest`` gives the tag parameter ``<tag>@<digest>``.
The ``repo:<tag>@<digest>`` form promotion writes (the tag kept for people) is one kustomize
applies with both parts since kubernetes-sigs/kustomize#4406, and parses in ``edit set image``
(the way Argo CD applies ``kustomize.images``) since kubernetes-sigs/kustomize#5234; the kustomize
bundled with the Argo CD in use must have both (not checked here).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from ops.writeback_check import content_problem

#: The platform repository (environments.yaml and the stack files live at its root).
PLATFORM_DIR = Path(__file__).resolve().parents[1]
ENVIRONMENTS_FILE = "environments.yaml"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
#: Helm parameter suffixes that make up an image: repository (two spellings), tag, digest.
HELM_REPOSITORY_KEYS = ("name", "repository")
HELM_IMAGE_KEYS = (*HELM_REPOSITORY_KEYS, "tag", "digest")


class ReleaseError(Exception):
    """A platform file or the GitOps clone cannot be read as needed; the message names which."""


# --------------------------------------------------------------------------------------------
# Environments and their apps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    name: str
    path: str  # gitopsPath: the Application's spec.source.path
    image: str | None  # repository without tag, from the stack file; None when it gives none


@dataclass(frozen=True)
class Environment:
    name: str
    stack_file: str
    apps: tuple[App, ...]
    #: platform:gitops.promotedFrom: the only environment this one receives images from.
    promoted_from: str | None = None

    @property
    def project(self) -> str:
        """The AppProject of the environment's Applications."""
        return self.name

    def app(self, name: str) -> App | None:
        return next((app for app in self.apps if app.name == name), None)

    def application(self, app: str) -> str:
        return f"{self.name}-{app}"

    def override_path(self, app: App) -> str:
        """The image updater's override file of ``app`` in this environment."""
        return posixpath.join(app.path, f".argocd-source-{self.name}-{app.name}.yaml")


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReleaseError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReleaseError(f"{path} cannot be read: {first}") from exc


def _app_from(entry: Any, where: str) -> App:
    if not isinstance(entry, dict):
        raise ReleaseError(f"{where} is not a mapping")
    name, path, image = entry.get("name"), entry.get("gitopsPath"), entry.get("image")
    if not isinstance(name, str) or not name:
        raise ReleaseError(f"{where} has no name")
    if not isinstance(path, str) or not path:
        raise ReleaseError(f"{where} ({name}) has no gitopsPath")
    parts = path.strip("/").split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ReleaseError(f"{where} ({name}): gitopsPath {path!r} is not a plain relative path")
    if image is not None and not isinstance(image, str):
        raise ReleaseError(f"{where} ({name}): image is not a string")
    return App(name, path.strip("/"), image or None)


@dataclass
class Platform:
    """``environments.yaml`` of a platform directory; stack files are read when first asked for."""

    directory: Path
    stacks: Mapping[str, str]  # environment -> stack name (the last part of its ``stack``)
    _loaded: dict[str, Environment] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.stacks)

    def environment(self, name: str) -> Environment:
        if name not in self.stacks:
            known = ", ".join(self.stacks) or "none"
            raise ReleaseError(f"unknown environment {name!r}: {ENVIRONMENTS_FILE} lists {known}")
        if name not in self._loaded:
            self._loaded[name] = self._read(name)
        return self._loaded[name]

    def _read(self, name: str) -> Environment:
        stack_file = f"Pulumi.{self.stacks[name]}.yaml"
        document = _load_yaml(self.directory / stack_file)
        config = document.get("config") if isinstance(document, dict) else None
        if not isinstance(config, dict):
            raise ReleaseError(f"{stack_file} has no config mapping")
        entries = config.get("platform:apps") or []
        if not isinstance(entries, list):
            raise ReleaseError(f"{stack_file}: platform:apps is not a list")
        apps = tuple(_app_from(entry, f"{stack_file}: platform:apps[{i}]") for i, entry in enumerate(entries))
        gitops = config.get("platform:gitops")
        source = gitops.get("promotedFrom") if isinstance(gitops, dict) else None
        if source is not None and not isinstance(source, str):
            raise ReleaseError(f"{stack_file}: platform:gitops.promotedFrom is not a string")
        return Environment(name, stack_file, apps, source)


def add_platform_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--platform-dir`` option the release tools share."""
    parser.add_argument(
        "--platform-dir",
        type=Path,
        default=PLATFORM_DIR,
        help="platform repository with environments.yaml and the stack files (default: this one)",
    )


def load_platform(directory: Path = PLATFORM_DIR) -> Platform:
    if not (directory / ENVIRONMENTS_FILE).is_file():
        raise ReleaseError(
            f"{directory / ENVIRONMENTS_FILE} does not exist: point --platform-dir at a checkout of the "
            "platform repository"
        )
    document = _load_yaml(directory / ENVIRONMENTS_FILE)
    entries = document.get("environments") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ReleaseError(f"{directory / ENVIRONMENTS_FILE} has no environments mapping")
    stacks: dict[str, str] = {}
    for name, entry in entries.items():
        stack = entry.get("stack") if isinstance(entry, dict) else None
        if not isinstance(stack, str) or not stack.split("/")[-1]:
            raise ReleaseError(f"{ENVIRONMENTS_FILE}: environment {name} has no stack")
        stacks[str(name)] = stack.split("/")[-1]
    return Platform(directory, stacks)


# --------------------------------------------------------------------------------------------
# Image references
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    repository: str  # "" only for a Helm image whose chart supplies the repository
    tag: str | None = None
    digest: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """``[alias=]repository[:tag][@sha256:<hex>]``; ValueError naming what is wrong."""
        alias, _, rest = text.strip().rpartition("=")
        name, at, digest = rest.partition("@")
        if at and not DIGEST.fullmatch(digest):
            raise ValueError(f"{text!r}: {digest!r} is not a sha256 digest")
        head, colon, tag = name.rpartition(":")
        if not colon or "/" in tag:  # no tag: the colon, if any, was a registry port
            head, tag = name, ""
        if not head or any(char.isspace() for char in text.strip()):
            raise ValueError(f"{text!r} is not an image reference")
        if tag and not _TAG.fullmatch(tag):
            raise ValueError(f"{text!r}: {tag!r} is not an image tag")
        return cls(head, tag or None, digest or None, alias or None)

    def __str__(self) -> str:
        alias = f"{self.alias}=" if self.alias else ""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{alias}{self.repository}{tag}{digest}"

    @property
    def name(self) -> str:
        """Repository and tag, without alias or digest: how people name the image."""
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def short(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits, as registries and the Argo CD UI abbreviate."""
    return digest[: len("sha256:") + 12] if digest else "none"


def image_id_digest(image_id: str) -> str | None:
    """The repository digest in a container status ``imageID`` (``[scheme://]repo@sha256:...``).

    A bare ``sha256:...`` is the runtime's local image id, not a registry digest: None."""
    _, at, digest = image_id.rpartition("@")
    return digest.lower() if at and DIGEST.fullmatch(digest.lower()) else None


# --------------------------------------------------------------------------------------------
# Override files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HelmParameter:
    name: str
    value: str
    force_string: bool | None = None

    def rendered(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value}
        if self.force_string is not None:
            out["forceString"] = self.force_string
        return out


@dataclass(frozen=True)
class OverrideImage:
    """One image an override pins: the reference, and for Helm the parameters' prefix."""

    ref: ImageRef
    helm_prefix: str | None = None


@dataclass(frozen=True)
class Override:
    form: Literal["kustomize", "helm"]
    kustomize_images: tuple[str, ...] = ()
    helm_parameters: tuple[HelmParameter, ...] = ()

    def images(self) -> list[OverrideImage]:
        """Every image the override pins; ValueError for a kustomize entry that is no reference."""
        if self.form == "kustomize":
            return [OverrideImage(ImageRef.parse(entry)) for entry in self.kustomize_images]
        return [self._helm_image(prefix) for prefix in self._helm_prefixes()]

    def _helm_prefixes(self) -> list[str]:
        prefixes: list[str] = []
        for parameter in self.helm_parameters:
            prefix, dot, key = parameter.name.rpartition(".")
            if dot and key in ("tag", "digest") and prefix not in prefixes:
                prefixes.append(prefix)
        return prefixes

    def _helm_value(self, prefix: str, key: str) -> str | None:
        wanted = f"{prefix}.{key}"
        return next((p.value for p in self.helm_parameters if p.name == wanted), None)

    def _helm_image(self, prefix: str) -> OverrideImage:
        repository = next(filter(None, (self._helm_value(prefix, key) for key in HELM_REPOSITORY_KEYS)), "")
        tag, _, tag_digest = (self._helm_value(prefix, "tag") or "").partition("@")
        digest = self._helm_value(prefix, "digest") or tag_digest or None
        if digest is not None and not DIGEST.fullmatch(digest):
            raise ValueError(f"helm parameters {prefix}.*: {digest!r} is not a sha256 digest")
        return OverrideImage(ImageRef(repository, tag or None, digest), helm_prefix=prefix)

    def render(self) -> str:
        if self.form == "kustomize":
            document: dict[str, Any] = {"kustomize": {"images": list(self.kustomize_images)}}
        else:
            document = {"helm": {"parameters": [p.rendered() for p in self.helm_parameters]}}
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=4096)


def parse_override(data: bytes) -> Override:
    """An override file's content; ValueError with the write-back gate's reason when it is not one."""
    problem = content_problem(data)
    if problem is not None:
        raise ValueError(problem)
    document = yaml.safe_load(data.decode("utf-8"))
    if "kustomize" in document:
        return Override("kustomize", kustomize_images=tuple(document["kustomize"]["images"]))
    parameters = tuple(
        HelmParameter(p["name"], str(p.get("value", "")), p.get("forceString"))
        for p in document["helm"]["parameters"]
    )
    return Override("helm", helm_parameters=parameters)


def images_of(override: Override, repository: str | None) -> list[OverrideImage]:
    """The override's images of ``repository``: all of them when it is None, and a Helm image
    without a repository parameter when it is the override's only one (the chart names it)."""
    images = override.images()
    if repository is None:
        return images
    matching = [image for image in images if image.ref.repository == repository]
    if not matching and len(images) == 1 and images[0].ref.repository == "":
        return images
    return matching


def promoted_override(
    current: Override | None, source: Override, image: OverrideImage, digest: str
) -> Override:
    """``current`` (the destination's override, None when it has none) pinning ``image`` of
    ``source`` at ``digest``, everything else in it kept. ValueError when the forms differ."""
    if current is not None and current.form != source.form:
        raise ValueError(f"the destination's override is {current.form}, the source's {source.form}")
    if source.form == "kustomize":
        new = replace(image.ref, digest=digest)
        images: list[str] = []
        for entry in current.kustomize_images if current else ():
            ref = ImageRef.parse(entry)
            same = ref.repository == new.repository or (new.alias is not None and ref.alias == new.alias)
            if not same:
                images.append(entry)
            elif str(new) not in images:  # the first entry of the image becomes the new one
                images.append(str(new))
        if str(new) not in images:
            images.append(str(new))
        return Override("kustomize", kustomize_images=tuple(images))
    prefix = image.helm_prefix or ""
    return Override("helm", helm_parameters=_helm_promoted(current, source, prefix, digest))


def _helm_promoted(
    current: Override | None, source: Override, prefix: str, digest: str
) -> tuple[HelmParameter, ...]:
    """The source's image parameters of ``prefix`` at ``digest``: in ``P.digest`` when the source
    has one, else in the tag as ``<tag>@<digest>``; the destination's other parameters kept."""
    names = {f"{prefix}.{key}" for key in HELM_IMAGE_KEYS}
    has_digest_parameter = any(p.name == f"{prefix}.digest" for p in source.helm_parameters)
    image: list[HelmParameter] = []
    for parameter in source.helm_parameters:
        value = parameter.value
        if parameter.name == f"{prefix}.digest":
            value = digest
        elif parameter.name == f"{prefix}.tag" and not has_digest_parameter:
            value = f"{value.partition('@')[0]}@{digest}"
        if parameter.name in names:
            image.append(replace(parameter, value=value))
    others = [p for p in (current.helm_parameters if current else ()) if p.name not in names]
    return (*others, *image)


# --------------------------------------------------------------------------------------------
# Git (read-only here; ops/promote.py writes through the same helper)
# --------------------------------------------------------------------------------------------


class GitError(ReleaseError):
    """A git command failed; the message carries git's own."""


def git(repo: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
    command = ["git", "-C", str(repo), *args]
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, check=False, env={**os.environ, **(env or {})}
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    if done.returncode != 0:
        message = " ".join(done.stderr.decode(errors="replace").split()) or f"exit status {done.returncode}"
        raise GitError(f"git {' '.join(args)} failed: {message}")
    return done.stdout


def check_repository(repo: Path) -> None:
    if not repo.is_dir():
        raise ReleaseError(f"{repo} is not a directory")
    try:
        git(repo, "rev-parse", "--git-dir")
    except GitError as exc:
        raise ReleaseError(f"{repo} is not a Git repository") from exc


def resolve(repo: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names none."""
    if not rev or rev.startswith("-"):
        return None
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except GitError:
        return None


def target_ref(repo: Path, target: str) -> str:
    """Where a read-only tool reads ``target``: ``origin/<target>`` when the clone has it (what the
    Git host holds, as of the last fetch), else the local branch. ReleaseError when neither exists."""
    for ref in (f"refs/remotes/origin/{target}", f"refs/heads/{target}"):
        if resolve(repo, ref):
            return ref.removeprefix("refs/remotes/").removeprefix("refs/heads/")
    raise ReleaseError(f"{repo} has no branch {target!r} (neither origin/{target} nor {target})")


def read_at(repo: Path, commit: str, path: str) -> bytes | None:
    """``path`` at ``commit``, or None when the file is not there."""
    try:
        return git(repo, "cat-file", "blob", f"{commit}:{path}")
    except GitError:
        return None


def image_history(repo: Path, ref: str, path: str, repository: str | None) -> list[ImageRef]:
    """The image of ``repository`` in each version of the override ``path`` that ``ref`` received,
    oldest first. Versions that are not a valid override, or pin no single such image, are left out."""
    log = git(repo, "log", "--first-parent", "--reverse", "--format=%H", ref, "--", path).decode()
    history: list[ImageRef] = []
    for commit in log.split():
        data = read_at(repo, commit, path)
        if data is None:
            continue
        try:
            found = images_of(parse_override(data), repository)
        except ValueError:
            continue
        if len(found) == 1:
            history.append(found[0].ref)
    return history


def identity(ref: ImageRef) -> str | None:
    """What tells two versions of an image apart: the digest, else the tag."""
    return ref.digest or (f"tag {ref.tag}" if ref.tag else None)


def promotions_behind(history: Sequence[ImageRef], running: ImageRef) -> int | None:
    """How many distinct images the source received after the last time it had ``running``
    (by digest; by tag for versions that pinned only a tag); None when it never had it."""
    mine = {identity(running), f"tag {running.tag}" if running.tag else None} - {None}
    keys = [identity(ref) for ref in history]
    last = max((index for index, key in enumerate(keys) if key in mine), default=None)
    if last is None:
        return None
    return len({key for key in keys[last + 1 :] if key is not None and key not in mine})

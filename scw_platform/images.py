"""The images the platform itself runs, each with the digest it is pinned to
(``scw_platform/data/images.yaml``, shipped with the library: facts about upstream images).

An entry names its registry, repository and tag, and either a digest (``sha256:`` + 64 lowercase
hex) with the place it was read (``source``) and the day (``checked``), or a ``gap`` saying why
none is recorded. Chart images also say which chart runs them and at which values path the pinned
chart version takes the digest (:class:`ValuesPath`). Loading validates the whole file and raises
one :class:`ImagesError` listing every problem, each naming its entry and key.

The modules ask::

    from scw_platform import images

    images.ref("busybox")     # "docker.io/library/busybox:1.37.0@sha256:..." (tag kept)
    images.tag("traefik")     # "v3.7.11"
    images.digest("traefik")  # "sha256:..." or None (a gap)
    images.chart_values("cert-manager-webhook")  # {"webhook.image.digest": "sha256:..."}
    images.chart_overrides("cert-manager")  # {"image": {"digest": ...}, "webhook": {"image": ...}, ...}
    images.pin_chart("cert-manager", values)  # values with those merged in (tags checked)

``scripts/resolve_digests.py`` asks the registries for the current digests (``--write`` records
them, closing a gap). A gap is reported, never hidden: the production policy rule admits a gap's
image only as recorded here, and tests/unit/test_images.py lists the gaps production runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from scw_platform.contract import ProblemsError

#: The file the library ships (package data, so ``pip install .`` carries it).
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "images.yaml"

#: A content digest as registries name an image index or manifest (OCI image-spec descriptor
#: digests; the platform only uses sha256).
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
_DIGEST = re.compile(DIGEST_PATTERN)
_DIGEST_RULE = "sha256: followed by 64 lowercase hex digits"

#: How a chart takes the digest at a values path (scw_platform/data/images.yaml's header):
#: "<tag>@sha256:<hex>" as the tag, "sha256:<hex>" in a digest key, the bare hex in a key the chart
#: prefixes with "@sha256:" itself, or not at all.
Form = Literal["tag-suffix", "digest-appended", "hex-appended", "none"]


class ImagesError(ProblemsError):
    """The image list (or an override of it) is invalid; ``problems`` names each entry and key."""

    def __init__(self, problems: Sequence[str], headline: str | None = None) -> None:
        super().__init__(headline or f"invalid image list, {len(problems)} problem(s)", problems)


def check_digest(value: object, key: str) -> str:
    """``value`` if it is a sha256 digest, else a ValueError that names ``key``."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"{key}: {value!r} is not a digest: {_DIGEST_RULE}")
    return value


def _iso_date(value: object) -> date:
    if isinstance(value, datetime) or not isinstance(value, date | str):
        raise ValueError("must be an ISO date (YYYY-MM-DD)")
    return date.fromisoformat(value) if isinstance(value, str) else value


def _digest(value: object) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"{value!r} is not a digest: {_DIGEST_RULE}")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Digest = Annotated[str, BeforeValidator(_digest)]
Text = Annotated[str, StringConstraints(strict=True, min_length=1)]
# A registry host (with an optional port), as a reference spells it.
Registry = Annotated[
    str,
    StringConstraints(
        strict=True, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:\d+)?$"
    ),
]
# The OCI distribution spec's repository name components.
Repository = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
]
# The distribution spec's tag grammar; "latest" is refused by the model.
Tag = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
ValuesKey = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")]
EntryName = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ValuesPath(_Model):
    """Where a chart's values take an image's digest (dotted path) and in which form."""

    path: ValuesKey
    form: Form


class Condition(_Model):
    """The image runs only when the release's value at ``path`` equals ``equals`` (absent:
    ``default``)."""

    path: ValuesKey
    equals: bool | str | int = True
    default: bool | str | int | None = None


class ChartUse(_Model):
    """The chart that runs an image and how its pinned version takes the digest."""

    name: Text
    version: Text
    values: tuple[ValuesPath, ...]
    enabled_when: tuple[Condition, ...] = ()
    #: False: the values paths were read at another chart version than the pinned one.
    verified: Annotated[bool, Field(strict=True)] = True
    notes: Text | None = None

    @model_validator(mode="after")
    def _some_values(self) -> ChartUse:
        # A validator, not min_length: pydantic would also report an empty tuple when an item fails.
        if not self.values:
            raise ValueError(
                "values: list at least one values path (form none when the chart takes no digest)"
            )
        return self


class Image(_Model):
    """One image the platform runs."""

    name: Text
    registry: Registry
    repository: Repository
    tag: Tag | None = None
    digest: Digest | None = None
    source: Text | None = None
    checked: IsoDate | None = None
    #: Why no digest (or no tag) is recorded: what was searched, what to do.
    gap: Text | None = None
    component: Text
    chart: ChartUse | None = None
    notes: Text | None = None

    @model_validator(mode="after")
    def _provenance(self) -> Image:
        problems = []
        if self.tag == "latest":
            problems.append("tag: 'latest' names no release; pin a version")
        if self.digest is not None:
            if self.tag is None:
                problems.append("tag: a digest without its tag (the tag is kept for readability)")
            if self.source is None or self.checked is None:
                problems.append("source and checked: a digest needs where it was read and the date")
        if (self.digest is None or self.tag is None) and self.gap is None:
            problems.append(
                "gap: an entry without a digest (or tag) must say why none is recorded and what was searched"
            )
        if self.digest is not None and self.tag is not None and self.gap is not None:
            problems.append("gap: given although the entry has its tag and digest")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def name_ref(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        return self.tag is not None and self.digest is not None

    @property
    def ref(self) -> str:
        """``registry/repository:tag@digest`` (``:tag`` alone while the digest is a gap)."""
        if self.tag is None:
            raise ValueError(f"image {self.name!r} has no tag recorded ({self.gap})")
        suffix = f"@{self.digest}" if self.digest else ""
        return f"{self.name_ref}:{self.tag}{suffix}"

    def value_for(self, values_path: ValuesPath) -> str | None:
        """What to set at ``values_path`` to pin this image (None: no digest, or the chart takes
        none there)."""
        if self.digest is None or self.tag is None or values_path.form == "none":
            return None
        if values_path.form == "tag-suffix":
            return f"{self.tag}@{self.digest}"
        return self.digest.removeprefix("sha256:") if values_path.form == "hex-appended" else self.digest


class Images:
    """The validated image list, by entry name, in file order."""

    def __init__(self, entries: Sequence[Image], checked: date) -> None:
        self.checked = checked
        self._entries = {entry.name: entry for entry in entries}

    def __iter__(self) -> Iterator[Image]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> Image:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"no image {name!r} in {DEFAULT_PATH.name} (known: {', '.join(self._entries)})"
            ) from None

    def ref(self, name: str) -> str:
        return self.get(name).ref

    def tag(self, name: str) -> str | None:
        return self.get(name).tag

    def digest(self, name: str) -> str | None:
        return self.get(name).digest

    def for_chart(self, chart: str) -> list[Image]:
        """The entries a chart runs (by chart name)."""
        return [e for e in self if e.chart is not None and e.chart.name == chart]

    def charts(self) -> list[str]:
        return list(dict.fromkeys(e.chart.name for e in self if e.chart is not None))

    def chart_values(self, name: str) -> dict[str, str]:
        """values path -> value that pins the image, for each path its chart takes a digest at."""
        entry = self.get(name)
        if entry.chart is None:
            return {}
        found = {vp.path: entry.value_for(vp) for vp in entry.chart.values}
        return {path: value for path, value in found.items() if value is not None}

    def chart_overrides(self, chart: str) -> dict[str, Any]:
        """Nested Helm values pinning every recorded digest of ``chart``'s images, for the caller to
        deep-merge into the release's values (gaps are left out: the policy rule reports them)."""
        nested: dict[str, Any] = {}
        for entry in self.for_chart(chart):
            for path, value in self.chart_values(entry.name).items():
                *parents, last = path.split(".")
                node = nested
                for key in parents:
                    node = node.setdefault(key, {})
                node[last] = value
        return nested

    def pin_chart(self, chart: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a release's ``values`` with :meth:`chart_overrides` merged in (dicts merged
        key by key, the pinning value replacing a leaf). A path under a top-level key the values
        leave out is skipped: the release does not run that component.

        The digest belongs to the entry's tag, so the tag the values already name must be that
        tag: at a tag-suffix path the value being replaced, at any other path the sibling ``tag``
        key. A mismatch (a module's tag bumped without its images.yaml entry, or the reverse)
        would pin one release's digest under another's tag; it raises :class:`ImagesError`
        naming every such path instead.
        """
        problems: list[str] = []
        merged = _merge(values, {})
        for entry in self.for_chart(chart):
            assert entry.chart is not None
            for vp in entry.chart.values:
                value = entry.value_for(vp)
                if value is None:
                    continue
                *parents, last = vp.path.split(".")
                if parents and parents[0] not in merged:
                    # The release leaves out that section (a collector or feature it does not
                    # run): no pin there, rather than a section the chart would otherwise not see.
                    continue
                node = merged
                for key in parents:
                    if not isinstance(node.get(key), dict):
                        node[key] = {}
                    node = node[key]
                named = node.get(last) if vp.form == "tag-suffix" else node.get("tag")
                if named is not None and named not in (entry.tag, value):
                    where = vp.path if vp.form == "tag-suffix" else ".".join([*parents, "tag"])
                    problems.append(
                        f"chart {chart}: {where} is {named!r} but images.{entry.name} records the "
                        f"digest of tag {entry.tag!r} (bump both together)"
                    )
                    continue
                node[last] = value
        if problems:
            raise ImagesError(
                problems, f"chart {chart}: {len(problems)} image tag(s) disagree with {DEFAULT_PATH.name}"
            )
        return merged

    def gaps(self) -> list[Image]:
        return [e for e in self if not e.pinned]

    def gap_for(self, image: str) -> Image | None:
        """The recorded gap whose reference is ``image`` (``registry/repository:tag``), if any: an
        image no digest could be read for yet, with the reason in its ``gap``."""
        return next((e for e in self.gaps() if e.tag is not None and e.ref == image), None)

    def recorded_for(self, image: str) -> Image | None:
        """The entry whose ``registry/repository:tag`` is ``image``'s (any digest it carries
        left out), if one is recorded."""
        reference = image.partition("@")[0]
        return next((e for e in self if e.tag is not None and f"{e.name_ref}:{e.tag}" == reference), None)


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, as new dicts all the way down (``base`` untouched)."""
    merged: dict[str, Any] = {
        key: _merge(value, {}) if isinstance(value, Mapping) else value for key, value in base.items()
    }
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = _merge(value, {}) if isinstance(value, Mapping) else value
    return merged


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load(path: Path | None = None) -> Images:
    """Load and validate an image list; without ``path``, the committed one (cached)."""
    return _load_default() if path is None else _parse(path)


@functools.cache
def _load_default() -> Images:
    return _parse(DEFAULT_PATH)


def _parse(path: Path) -> Images:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImagesError([f"{path}: cannot be read as YAML: {exc}"]) from exc
    return parse(document)


def parse(document: object) -> Images:
    """Validate a loaded document (``checked`` and ``images``)."""
    if not isinstance(document, dict):
        raise ImagesError(["the document must be a mapping with 'checked' and 'images'"])
    problems = [f"unknown top-level key {key!r}" for key in document if key not in ("checked", "images")]
    checked: date | None = None
    try:
        checked = _iso_date(document.get("checked"))
    except ValueError:
        problems.append("checked: must be the ISO date (YYYY-MM-DD) the list was compiled")
    raw = document.get("images")
    entries: list[Image] = []
    if not isinstance(raw, dict) or not raw:
        problems.append("images: must be a non-empty map of image name to entry")
        raw = {}
    for name, item in raw.items():
        where = f"images.{name}"
        if not isinstance(name, str) or not EntryName.fullmatch(name):
            problems.append(f"{where}: the name must be lowercase letters, digits and '-'")
            continue
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        # The top-level date is the default for entries read that day (an entry may say its own).
        defaults = {"checked": checked} if checked is not None and item.get("digest") is not None else {}
        try:
            entry = Image.model_validate({**defaults, **item, "name": name})
        except ValidationError as exc:
            problems.extend(_describe(where, error) for error in exc.errors())
            continue
        if checked is not None and entry.checked is not None and entry.checked > checked:
            problems.append(f"{where}: checked {entry.checked} is after the list's checked date {checked}")
        entries.append(entry)
    problems.extend(_duplicate_refs(entries))
    if problems:
        raise ImagesError(problems)
    assert checked is not None
    return Images(entries, checked)


def _describe(where: str, error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {field!r}"
    return f"{where}.{field}: {message}" if field else f"{where}: {message}"


def _duplicate_refs(entries: Sequence[Image]) -> list[str]:
    """Two entries for one chart values path would pin it twice (possibly differently)."""
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for entry in entries:
        if entry.chart is None:
            continue
        for vp in entry.chart.values:
            key = (entry.chart.name, vp.path)
            if key in seen:
                problems.append(
                    f"images.{entry.name}.chart.values: {vp.path} of chart {entry.chart.name} is also "
                    f"listed by {seen[key]!r}"
                )
            seen.setdefault(key, entry.name)
    return problems


# --------------------------------------------------------------------------------------------
# The same questions, asked of the committed list
# --------------------------------------------------------------------------------------------


def get(name: str) -> Image:
    return load().get(name)


def ref(name: str) -> str:
    return load().ref(name)


def tag(name: str) -> str | None:
    return load().tag(name)


def digest(name: str) -> str | None:
    return load().digest(name)


def chart_values(name: str) -> dict[str, str]:
    return load().chart_values(name)


def gap_for(image: str) -> Image | None:
    return load().gap_for(image)


def recorded_for(image: str) -> Image | None:
    return load().recorded_for(image)


def for_chart(chart: str) -> list[Image]:
    return load().for_chart(chart)


def chart_overrides(chart: str) -> dict[str, Any]:
    return load().chart_overrides(chart)


def pin_chart(chart: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return load().pin_chart(chart, values)

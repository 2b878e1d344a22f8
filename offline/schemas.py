"""Validate custom resources and Helm values against upstream schemas, offline.

The schemas are upstream data kept outside the repository, in ``../shared/schemas`` (override with
the environment variable ``PLATFORM_SCHEMAS_DIR``): the CustomResourceDefinitions of Gateway API,
cert-manager, Argo CD, Argo CD Image Updater and External Secrets, and the ``values.schema.json``
of the Traefik, cert-manager and External Secrets charts. A user's fresh clone may not have that
folder: callers check :func:`schemas_available` first and report the checks as skipped.

Custom resources: the CRD version's ``openAPIV3Schema`` is translated to JSON Schema the way the
API server reads it:

* an object schema with ``properties`` rejects unknown fields (the API server prunes or, with
  strict field validation, rejects them) unless it says ``x-kubernetes-preserve-unknown-fields``;
* ``x-kubernetes-int-or-string`` accepts an integer or a string;
* ``nullable: true`` accepts null;
* ``metadata`` is checked against a small ObjectMeta schema (the CRD leaves it open).

Not evaluated: CEL rules (``x-kubernetes-validations``) and ``format``; the API server still
checks those at apply time.

Helm values: the values the program passes are checked before Helm merges them with the chart's
defaults, so ``required`` is not enforced (a default fills it); types, enums and unknown keys are.

A corrupt, unreadable or missing schema file raises :class:`SchemaFileError`: it is never a pass.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.protocols import Validator

from program import paths

# The repository's layout is the program's (program/paths.py).
ROOT = paths.ROOT

#: Default location: ``<repo>/../shared/schemas``; ``PLATFORM_SCHEMAS_DIR`` overrides it.
SCHEMAS_DIR = Path(os.environ.get("PLATFORM_SCHEMAS_DIR") or ROOT.parent / "shared" / "schemas")

#: API groups served by CRDs the platform installs. An object in one of these groups is a custom
#: resource even when the schemas folder is absent (so it is reported as skipped, not passed).
KNOWN_CUSTOM_GROUPS = frozenset(
    {
        "gateway.networking.k8s.io",
        "gateway.networking.x-k8s.io",
        "cert-manager.io",
        "acme.cert-manager.io",
        "argoproj.io",
        "argocd-image-updater.argoproj.io",
        "external-secrets.io",
        "generators.external-secrets.io",
        "traefik.io",
        "traefik.containo.us",
        "hub.traefik.io",
        "acme.scaleway.com",
    }
)

#: Chart name -> glob of the schemas folder holding its ``values.schema.json``.
VALUES_SCHEMA_FOLDERS = {
    "traefik": "traefik-helm-chart-v*",
    "cert-manager": "cert-manager-v*",
    "external-secrets": "external-secrets-v*",
}

#: Charts known to ship no values schema upstream: their values cannot be checked this way.
CHARTS_WITHOUT_VALUES_SCHEMA = {
    "argo-cd": "argo-helm's argo-cd chart ships no values.schema.json upstream",
    "argocd-image-updater": "argo-helm's argocd-image-updater chart ships no values.schema.json upstream",
}

_MAX_MESSAGE = 300

# A minimal ObjectMeta: what a program may set. Server-populated fields (uid, resourceVersion,
# creationTimestamp, managedFields, ...) are accepted too, since an exported object carries them.
_OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array"},
        "selfLink": {"type": "string"},
    },
    "additionalProperties": False,
}

# OpenAPI v3 (as used by CRDs) is closest to draft 4 (boolean exclusiveMinimum/Maximum), but a
# number such as 443.0 is an integer to the API server (and to draft 6+).
_CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, type_checker=jsonschema.Draft6Validator.TYPE_CHECKER
)


class SchemaFileError(Exception):
    """A schema file is missing, unreadable, corrupt, or not a valid schema."""


class SchemasUnavailableError(SchemaFileError):
    """The schemas folder itself is absent (a fresh clone): schema checks must be reported skipped."""


def schemas_dir() -> Path:
    """The schemas folder in use, re-reading ``PLATFORM_SCHEMAS_DIR`` (tests change it)."""
    override = os.environ.get("PLATFORM_SCHEMAS_DIR")
    return Path(override) if override else SCHEMAS_DIR


def schemas_available(directory: Path | None = None) -> bool:
    folder = directory or schemas_dir()
    return folder.is_dir() and any(folder.iterdir())


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"cert-manager.io/v1"`` -> ``("cert-manager.io", "v1")``; ``"v1"`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def is_custom_group(group: str, directory: Path | None = None) -> bool:
    """Whether objects of this API group are custom resources (served by a CRD)."""
    if group in KNOWN_CUSTOM_GROUPS:
        return True
    folder = directory or schemas_dir()
    if schemas_available(folder):
        try:
            return group in {g for g, _ in _crd_index(str(folder.resolve()))}
        except SchemaFileError:
            # Reported by the CRD check itself when it validates; here only the known groups count.
            return False
    return False


# --------------------------------------------------------------------------------------------
# CRD index and validators (parsed once per schemas folder; guarded for threaded callers).
# --------------------------------------------------------------------------------------------

_lock = threading.RLock()
_crd_indexes: dict[str, dict[tuple[str, str], tuple[Path, dict[str, Any]]]] = {}
_crd_validators: dict[tuple[str, str, str, str], Validator] = {}
_values_validators: dict[str, Validator] = {}


def _yaml_loader() -> type[yaml.SafeLoader]:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _crd_index(folder: str) -> dict[tuple[str, str], tuple[Path, dict[str, Any]]]:
    """(group, kind) -> (file, CRD document) for every CRD under ``folder``."""
    with _lock:
        if folder in _crd_indexes:
            return _crd_indexes[folder]
        index: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        for path in sorted(Path(folder).glob("*/*.yaml")):
            for document in _load_yaml_documents(path):
                if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                    continue
                try:
                    key = (str(document["spec"]["group"]), str(document["spec"]["names"]["kind"]))
                    versions = document["spec"]["versions"]
                except (KeyError, TypeError) as exc:
                    raise SchemaFileError(
                        f"{path}: CRD without spec.group/names.kind/versions ({exc})"
                    ) from exc
                if not isinstance(versions, list):
                    raise SchemaFileError(f"{path}: CRD spec.versions is not a list")
                index[key] = (path, document)
        _crd_indexes[folder] = index
        return index


def _load_yaml_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaFileError(f"schema file {path} cannot be read: {exc}") from exc
    try:
        return list(yaml.load_all(text, Loader=_yaml_loader()))
    except yaml.YAMLError as exc:
        raise SchemaFileError(f"schema file {path} is not valid YAML: {exc}") from exc


def _crd_validator(folder: str, group: str, version: str, kind: str) -> Validator | str:
    """A validator for ``group/version`` ``kind``, or a message saying why there is none."""
    key = (folder, group, version, kind)
    with _lock:
        if key in _crd_validators:
            return _crd_validators[key]
        index = _crd_index(folder)
        found = index.get((group, kind))
        if found is None:
            kinds = sorted(k for g, k in index if g == group)
            if kinds:
                return f"no CRD for kind {kind} in group {group} (kinds with a schema: {', '.join(kinds)})"
            groups = sorted({g for g, _ in index})
            return f"no CRD schema for API group {group!r} (groups with a schema: {', '.join(groups)})"
        path, document = found
        served: dict[str, dict[str, Any]] = {
            str(v.get("name")): v for v in document["spec"]["versions"] if isinstance(v, dict)
        }
        entry = served.get(version)
        if entry is None:
            return f"{group}/{version} is not a version of {kind} (the CRD has: {', '.join(sorted(served))})"
        if not entry.get("served", False):
            return (
                f"{group}/{version} {kind} is not served by the CRD (served: "
                + ", ".join(sorted(n for n, v in served.items() if v.get("served")))
                + ")"
            )
        schema = (entry.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            raise SchemaFileError(f"{path}: version {version} of {kind} has no schema.openAPIV3Schema")
        translated = crd_to_jsonschema(schema)
        translated.setdefault("properties", {})["metadata"] = _OBJECT_META
        try:
            _CrdValidator.check_schema(translated)
        except jsonschema_exceptions.SchemaError as exc:
            raise SchemaFileError(f"{path}: {kind} {version} schema is not valid: {exc.message}") from exc
        validator = _CrdValidator(translated)
        _crd_validators[key] = validator
        return validator


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_JUNCTORS = ("allOf", "anyOf", "oneOf")


def crd_to_jsonschema(node: Any, in_junctor: bool = False) -> Any:
    """Translate an ``openAPIV3Schema`` node into JSON Schema with Kubernetes semantics.

    ``in_junctor``: inside allOf/anyOf/oneOf/not, a structural schema only adds value validations
    for fields declared outside, so unknown fields are not rejected there.
    """
    if not isinstance(node, dict):
        return node
    out = {
        key: _translate_member(key, value, in_junctor)
        for key, value in node.items()
        if key not in ("nullable", "x-kubernetes-int-or-string")
    }
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = node.get("x-kubernetes-embedded-resource") is True
    if (
        "properties" in node
        and not (in_junctor or preserve or embedded)
        and "additionalProperties" not in node
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        int_or_string = {"type": ["integer", "string"]}
        out["allOf"] = [int_or_string, *out.get("allOf", [])]
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


def _translate_member(key: str, value: Any, in_junctor: bool) -> Any:
    """One member of a schema node, with the subschemas it holds translated."""
    if key in _SCHEMA_MAPS and isinstance(value, dict):
        return {name: crd_to_jsonschema(sub, in_junctor) for name, sub in value.items()}
    if key == "items":
        return (
            [crd_to_jsonschema(sub, in_junctor) for sub in value]
            if isinstance(value, list)
            else crd_to_jsonschema(value, in_junctor)
        )
    if key == "additionalProperties" and isinstance(value, dict):
        return crd_to_jsonschema(value, in_junctor)
    if key in _JUNCTORS and isinstance(value, list):
        return [crd_to_jsonschema(sub, True) for sub in value]
    if key == "not":
        return crd_to_jsonschema(value, True)
    return value


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def _require_folder(directory: Path | None) -> Path:
    folder = directory or schemas_dir()
    if not schemas_available(folder):
        raise SchemasUnavailableError(
            f"the schemas folder {folder} is absent or empty (a fresh clone has no ../shared/schemas): "
            "schema checks cannot run"
        )
    return folder


def validate_custom_resource(obj: dict[str, Any], directory: Path | None = None) -> list[str]:
    """Problems of a custom resource against its CRD's schema, as ``path: message`` lines.

    An empty list means valid. An unknown group, kind or version is a problem, not a pass.
    Raises :class:`SchemaFileError` for a corrupt schema file and :class:`SchemasUnavailableError`
    when the schemas folder is absent.
    """
    folder = _require_folder(directory)
    if not isinstance(obj, dict):
        return [f"(root): expected an object, got {type(obj).__name__}"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        return ["(root): apiVersion and kind must be non-empty strings"]
    group, version = split_api_version(api_version)
    validator = _crd_validator(str(folder.resolve()), group, version, kind)
    if isinstance(validator, str):
        return [f"(root): {validator}"]
    return format_errors(validator.iter_errors(obj))


def values_schema_path(chart: str, directory: Path | None = None) -> Path | None:
    """The chart's ``values.schema.json``, or None when the chart ships none upstream."""
    folder = _require_folder(directory)
    pattern = VALUES_SCHEMA_FOLDERS.get(chart_basename(chart))
    if pattern is None:
        return None
    candidates = sorted(folder.glob(pattern))
    if not candidates:
        raise SchemaFileError(f"no schema folder matching {pattern!r} in {folder} for chart {chart!r}")
    path = candidates[-1] / "values.schema.json"
    if not path.is_file():
        raise SchemaFileError(f"the values schema of chart {chart!r} is missing: {path}")
    return path


def values_schema_note(chart: str) -> str:
    """Why a chart's values are not schema-checked (for the report)."""
    name = chart_basename(chart)
    return CHARTS_WITHOUT_VALUES_SCHEMA.get(
        name, f"no upstream values.schema.json is known for chart {name!r}; its values are not checked"
    )


def chart_basename(chart: str) -> str:
    """``"oci://registry/charts/traefik"`` or ``"traefik/traefik"`` -> ``"traefik"``."""
    return chart.rstrip("/").rsplit("/", 1)[-1]


def validate_helm_values(
    chart: str, values: dict[str, Any], directory: Path | None = None
) -> list[str] | None:
    """Problems of a release's values against the chart's ``values.schema.json``.

    None when the chart has no upstream schema (argo-cd, argocd-image-updater: see
    :func:`values_schema_note`). Raises :class:`SchemaFileError` for a missing or corrupt schema.
    """
    path = values_schema_path(chart, directory)
    if path is None:
        return None
    validator = _values_validator(path)
    return format_errors(validator.iter_errors(values if values is not None else {}))


def _values_validator(path: Path) -> Validator:
    key = str(path.resolve())
    with _lock:
        if key in _values_validators:
            return _values_validators[key]
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaFileError(f"values schema {path} cannot be read: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaFileError(f"values schema {path} is not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise SchemaFileError(f"values schema {path} is not a JSON object")
        schema = _without_required(copy.deepcopy(schema))
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        try:
            cls.check_schema(schema)
        except jsonschema_exceptions.SchemaError as exc:
            raise SchemaFileError(f"values schema {path} is not a valid JSON Schema: {exc.message}") from exc
        validator = cls(schema)
        _values_validators[key] = validator
        return validator


def _without_required(node: Any) -> Any:
    """Drop ``required`` everywhere: chart defaults, merged in by Helm, fill required keys."""
    if isinstance(node, dict):
        return {
            k: _without_required(v) for k, v in node.items() if not (k == "required" and isinstance(v, list))
        }
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


def clear_caches() -> None:
    """Forget parsed schemas (tests that swap schema folders call this)."""
    with _lock:
        _crd_indexes.clear()
        _crd_validators.clear()
        _values_validators.clear()


# --------------------------------------------------------------------------------------------
# Error formatting.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    path: str
    message: str


def json_path(parts: Iterable[Any]) -> str:
    """``["spec", "listeners", 0, "tls"]`` -> ``spec.listeners[0].tls``; empty -> ``(root)``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _most_specific(error: jsonschema_exceptions.ValidationError) -> jsonschema_exceptions.ValidationError:
    """For anyOf/oneOf failures, the branch error that explains most (e.g. nullable wrappers)."""
    while error.validator in ("anyOf", "oneOf", "allOf") and error.context:
        candidates = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        best = jsonschema_exceptions.best_match(candidates or error.context)
        if best is None or best is error:
            break
        error = best
    return error


def _problems(errors: Iterator[jsonschema_exceptions.ValidationError]) -> list[_Problem]:
    found: set[_Problem] = set()
    for error in errors:
        specific = _most_specific(error)
        message = specific.message
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        found.add(_Problem(json_path(specific.absolute_path), message))
    return sorted(found, key=lambda p: (p.path, p.message))


def format_errors(errors: Iterator[jsonschema_exceptions.ValidationError]) -> list[str]:
    return [f"{p.path}: {p.message}" for p in _problems(errors)]

"""Plan artifacts: what a stack would create, written as files a reviewer and validators can read.

    python -m offline.plan prod --out build      # -> build/prod/

``build/<stack>/``

* ``inventory.json``: every resource the program registers (URN, type, name, parent, provider,
  protect, retainOnDelete, dependencies, inputs) with every secret value replaced by ``[secret]``
  (a secret map keeps its keys), plus the stack's exports (secret ones masked too);
* ``manifests/<provider>/<kind>_<namespace>_<name>.yaml``: one file per Kubernetes object the
  program declares directly (resource types ``kubernetes:<group>/<version>:<Kind>``), grouped by
  the Kubernetes provider (that is, the cluster) it is applied with;
* ``helm/<release>.yaml``: one file per Helm release (chart, repo, version, values).

Output is deterministic: resources sorted by URN, keys sorted, stable file names. Two runs of the
same stack produce byte-identical files.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc

from offline.mocks import Registration
from offline.runner import Plan

SECRET = "[secret]"
UNKNOWN = "[unknown]"

#: Helm resource types whose inputs describe a chart installation.
HELM_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
#: Kubernetes resource types that are not a single object (multi-object components, providers).
_NOT_OBJECTS = re.compile(r"^kubernetes:(helm\.sh|yaml|kustomize)/")
_K8S_OBJECT = re.compile(r"^kubernetes:(?P<group>[^:/]+)/(?P<version>[^:/]+):(?P<kind>[A-Za-z0-9]+)$")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def plain(value: Any) -> Any:
    """A JSON-friendly copy of ``value``: secrets masked, assets described, numbers normalised."""
    if rpc.is_rpc_secret(value):
        return masked(value["value"])
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | bool | int | float):
        return UNKNOWN if value == rpc.UNKNOWN else value
    return _describe(value)


def _describe(value: Any) -> Any:
    """Assets and archives by what they point at; anything else by its type (never a repr)."""
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        return {"path": str(value.path)}
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, pulumi.RemoteAsset | pulumi.RemoteArchive):
        return {"uri": value.uri}
    if isinstance(value, pulumi.AssetArchive):
        return {"assets": {k: plain(v) for k, v in sorted(value.assets.items())}}
    if type(value).__name__ == "Unknown":
        return UNKNOWN
    return f"<{type(value).__name__}>"


def masked(value: Any) -> Any:
    """A secret's shape with every value replaced by ``[secret]``.

    A map that is secret as a whole (a Secret's ``stringData``) keeps its keys, so the manifest
    still has the shape its schema expects and a reviewer sees which keys are set; no value shows.
    """
    if rpc.is_rpc_secret(value):
        return masked(value["value"])
    if isinstance(value, dict):
        return {str(k): masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return SECRET


def sorted_registrations(plan: Plan) -> list[Registration]:
    # The SDK registers from several threads: arrival order is not stable, URNs are.
    return sorted(plan.registrations, key=lambda r: r.urn)


def resource_record(reg: Registration) -> dict[str, Any]:
    return {
        "urn": reg.urn,
        "type": reg.type,
        "name": reg.name,
        "custom": reg.custom,
        "read": bool(getattr(reg, "read", False)),
        "parent": reg.parent,
        "provider": reg.provider_urn,
        "protect": reg.protect,
        "retainOnDelete": reg.retain_on_delete,
        "deleteBeforeReplace": reg.delete_before_replace,
        "dependencies": sorted(reg.dependencies),
        "inputs": plain(reg.inputs),
    }


def inventory(plan: Plan) -> dict[str, Any]:
    return {
        "project": plan.project,
        "stack": plan.stack,
        "exports": {k: SECRET if e.secret else plain(e.value) for k, e in sorted(plan.exports.items())},
        "resources": [resource_record(r) for r in sorted_registrations(plan)],
    }


def is_kubernetes_object(reg: Registration) -> bool:
    """A single Kubernetes object the program declares (not a read, chart, or provider)."""
    return (
        reg.custom
        and not getattr(reg, "read", False)
        and bool(_K8S_OBJECT.match(reg.type))
        and not _NOT_OBJECTS.match(reg.type)
    )


def is_helm_release(reg: Registration) -> bool:
    return reg.type in HELM_TYPES and not getattr(reg, "read", False)


def kubernetes_object(reg: Registration) -> dict[str, Any]:
    """The object as declared, secrets masked; apiVersion/kind filled from the type if absent."""
    match = _K8S_OBJECT.match(reg.type)
    assert match is not None, reg.type
    obj = plain(reg.inputs)
    group, version = match["group"], match["version"]
    obj.setdefault("apiVersion", version if group == "core" else f"{group}/{version}")
    obj.setdefault("kind", match["kind"])
    return dict(obj)


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-") or "unnamed"


def _provider_folder(reg: Registration, names: dict[str, str]) -> str:
    urn = reg.provider_urn
    return _safe(names.get(urn, urn.rsplit("::", 1)[-1])) if urn else "_default-provider"


def _object_file(reg: Registration, obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else reg.name
    namespace = metadata.get("namespace")
    parts = [str(obj.get("kind") or "object")]
    if isinstance(namespace, str) and namespace:
        parts.append(namespace)
    parts.append(str(name))
    return "_".join(_safe(p) for p in parts)


def _unique(paths: dict[str, list[Registration]]) -> dict[str, Registration]:
    """Stable unique file names: clashing ones get the resource name appended, then a counter."""
    result: dict[str, Registration] = {}
    for path, regs in sorted(paths.items()):
        if len(regs) == 1:
            result[f"{path}.yaml"] = regs[0]
            continue
        for i, reg in enumerate(sorted(regs, key=lambda r: r.urn)):
            candidate = f"{path}__{_safe(reg.name)}"
            if f"{candidate}.yaml" in result:
                candidate += f"-{i}"
            result[f"{candidate}.yaml"] = reg
    return result


def manifest_files(plan: Plan) -> dict[str, tuple[Registration, dict[str, Any]]]:
    """Relative path (``manifests/...``) -> (registration, object) for every Kubernetes object."""
    regs = sorted_registrations(plan)
    provider_names = {r.urn: r.name for r in regs if r.type.startswith("pulumi:providers:")}
    objects = {r.urn: kubernetes_object(r) for r in regs if is_kubernetes_object(r)}
    by_path: dict[str, list[Registration]] = {}
    for reg in regs:
        if reg.urn in objects:
            path = f"manifests/{_provider_folder(reg, provider_names)}/{_object_file(reg, objects[reg.urn])}"
            by_path.setdefault(path, []).append(reg)
    return {path: (reg, objects[reg.urn]) for path, reg in _unique(by_path).items()}


def helm_record(reg: Registration) -> dict[str, Any]:
    inputs = plain(reg.inputs)
    repository = inputs.get("repositoryOpts") or {}
    return {
        "urn": reg.urn,
        "type": reg.type,
        "provider": reg.provider_urn,
        "name": inputs.get("name", reg.name),
        "namespace": inputs.get("namespace"),
        "chart": inputs.get("chart"),
        "repo": repository.get("repo") if isinstance(repository, dict) else None,
        "version": inputs.get("version"),
        "valueYamlFiles": inputs.get("valueYamlFiles", []),
        "values": inputs.get("values") or {},
    }


def helm_files(plan: Plan) -> dict[str, tuple[Registration, dict[str, Any]]]:
    regs = [r for r in sorted_registrations(plan) if is_helm_release(r)]
    by_path: dict[str, list[Registration]] = {}
    for reg in regs:
        by_path.setdefault(f"helm/{_safe(reg.name)}", []).append(reg)
    return {path: (reg, helm_record(reg)) for path, reg in _unique(by_path).items()}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dump_yaml(data: Any, header: str = "") -> str:
    body = yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100)
    return header + body


@dataclass
class Artifacts:
    root: Path
    inventory: Path
    manifests: list[Path] = field(default_factory=list)
    helm: list[Path] = field(default_factory=list)


def write(plan: Plan, out: Path) -> Artifacts:
    """Write the stack's artifacts into ``out/<stack>/`` (replacing a previous run's)."""
    root = out / plan.stack
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    result = Artifacts(root=root, inventory=root / "inventory.json")
    result.inventory.write_text(dump_json(inventory(plan)), encoding="utf-8")
    for relative, (reg, obj) in manifest_files(plan).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        header = f"# urn: {reg.urn}\n# Declared by the Pulumi program; offline plan, secret values masked.\n"
        path.write_text(dump_yaml(obj, header), encoding="utf-8")
        result.manifests.append(path)
    for relative, (reg, record) in helm_files(plan).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(record, f"# urn: {reg.urn}\n"), encoding="utf-8")
        result.helm.append(path)
    return result

"""Offline validation of a stack's plan artifacts with tools nobody here wrote.

    python -m offline.validate prod            # plan prod under mocks, write build/prod/, validate it
    python -m offline.validate --all           # every committed stack
    python -m offline.validate --artifacts build/prod --role production --kubernetes-version 1.34

Checks, each over the artifacts of ``offline.artifacts``:

* ``kubernetes-validate --strict``: core Kubernetes kinds against the Kubernetes version of the
  stack's cluster (the newest the package ships when it lacks that version; printed);
* CRD schemas: custom resources against their CRD's ``openAPIV3Schema`` (``offline.schemas``);
* Helm values schemas: each release's values against the chart's ``values.schema.json``;
* checkov: the manifests folder, once per stack, from its own virtualenv (``.venv-checkov``);
  any skipped check must carry an inline reason (``checkov.io/skip<N>: CKV_K8S_xx=reason``);
* policy rules: ``policy/rules.py`` on ``inventory.json``;
* Argo Rollouts: the Rollout each canary app's GitOps path carries (docs/delivery.md), rendered
  from the stack file and checked against the v1.9.1 Rollout CRD and against the Services, route
  and AnalysisTemplate the plan declares (``check_stack_rollouts``).

Prints one table (check, objects checked, failures) then each failure with its file, path in the
object and message; exits 1 on any failure. A check that cannot run (no ``../shared/schemas`` in a
fresh clone, no checkov virtualenv) is shown as SKIPPED with the reason, never as a pass; with
``--no-skips`` (CI) a skipped check fails the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offline import artifacts, runner, schemas
from program import paths

# The repository's layout is the program's (program/paths.py).
ROOT = paths.ROOT
BUILD = ROOT / "build"
CHECKOV = Path(os.environ.get("PLATFORM_CHECKOV") or ROOT / ".venv-checkov" / "bin" / "checkov")
_NO_REASON = {"", "no comment provided"}


@dataclass(frozen=True, order=True)
class Failure:
    file: str
    path: str
    message: str


@dataclass
class CheckResult:
    name: str
    objects: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: Why the check could not run (shown as SKIPPED).
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.failures:
            return "FAIL"
        return "SKIPPED" if self.skipped else "ok"


@dataclass
class Manifest:
    path: Path
    relative: str
    obj: dict[str, Any]

    @property
    def group(self) -> str:
        return schemas.split_api_version(str(self.obj.get("apiVersion") or ""))[0]


# --------------------------------------------------------------------------------------------
# Loading artifacts.
# --------------------------------------------------------------------------------------------


def load_manifests(root: Path) -> tuple[list[Manifest], list[Failure]]:
    manifests: list[Manifest] = []
    problems: list[Failure] = []
    for path in sorted((root / "manifests").rglob("*.yaml")):
        relative = str(path.relative_to(root))
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as exc:
            problems.append(Failure(relative, "(file)", f"not valid YAML: {exc}"))
            continue
        if len(documents) != 1 or not isinstance(documents[0], dict):
            problems.append(Failure(relative, "(file)", "expected exactly one Kubernetes object"))
            continue
        manifests.append(Manifest(path, relative, documents[0]))
    return manifests, problems


def load_helm(root: Path) -> list[tuple[str, dict[str, Any]]]:
    releases = []
    for path in sorted((root / "helm").glob("*.yaml")):
        releases.append((str(path.relative_to(root)), yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
    return releases


# --------------------------------------------------------------------------------------------
# kubernetes-validate.
# --------------------------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def kubernetes_version(wanted: str | None) -> tuple[str, str]:
    """(major.minor to validate against, explanation) for the cluster's version ``wanted``."""
    from kubernetes_validate import utils as kv

    shipped = sorted({".".join(v.split(".")[:2]) for v in kv.all_versions()}, key=_version_key)
    newest = shipped[-1]
    if not wanted:
        return newest, f"the stack has no cluster version; using the newest shipped, {newest}"
    minor = ".".join(wanted.split(".")[:2])
    if minor in shipped:
        return minor, f"the stack's cluster version {wanted}"
    return newest, (
        f"kubernetes-validate {_kv_version()} ships no schemas for {minor} "
        f"(it has {shipped[0]}..{newest}); using the newest, {newest}"
    )


def _kv_version() -> str:
    from kubernetes_validate import version

    return str(version.__version__)


@functools.cache
def _cache_kubernetes_validate_schemas() -> None:
    """kubernetes-validate re-reads its 1.5 MB definitions file per object; read it once."""
    from kubernetes_validate import utils as kv

    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def check_core(manifests: list[Manifest], version: str, custom: set[str]) -> CheckResult:
    import kubernetes_validate

    _cache_kubernetes_validate_schemas()
    result = CheckResult(f"kubernetes-validate --strict (Kubernetes {version})")
    for manifest in manifests:
        if manifest.group in custom:
            continue
        result.objects += 1
        try:
            kubernetes_validate.validate(manifest.obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            result.failures.append(Failure(manifest.relative, schemas.json_path(exc.path), exc.message))
        except kubernetes_validate.SchemaNotFoundError as exc:
            result.failures.append(Failure(manifest.relative, "(root)", exc.message))
        except kubernetes_validate.InvalidSchemaError as exc:
            result.failures.append(Failure(manifest.relative, "(root)", f"schema file error: {exc.message}"))
    return result


# --------------------------------------------------------------------------------------------
# Upstream schemas: CRDs and Helm values.
# --------------------------------------------------------------------------------------------

_SCHEMAS_MISSING = (
    "SKIPPED: upstream schemas not found at {folder} (a fresh clone has no ../shared/schemas; "
    "set PLATFORM_SCHEMAS_DIR): {what} NOT checked"
)


def check_custom(manifests: list[Manifest], custom: set[str], folder: Path) -> CheckResult:
    result = CheckResult("CRD schemas (openAPIV3Schema)")
    selected = [m for m in manifests if m.group in custom]
    if not schemas.schemas_available(folder):
        result.skipped = _SCHEMAS_MISSING.format(folder=folder, what=f"{len(selected)} custom resource(s)")
        return result
    for manifest in selected:
        result.objects += 1
        try:
            problems = schemas.validate_custom_resource(manifest.obj, folder)
        except schemas.SchemaFileError as exc:
            result.failures.append(Failure(manifest.relative, "(schema)", f"schema file error: {exc}"))
            continue
        for problem in problems:
            path, _, message = problem.partition(": ")
            result.failures.append(Failure(manifest.relative, path, message))
    return result


def check_values(releases: list[tuple[str, dict[str, Any]]], folder: Path) -> CheckResult:
    result = CheckResult("Helm values schemas (values.schema.json)")
    if not schemas.schemas_available(folder):
        result.skipped = _SCHEMAS_MISSING.format(folder=folder, what=f"{len(releases)} Helm release(s)")
        return result
    for relative, release in releases:
        chart = str(release.get("chart") or "")
        values = release.get("values") or {}
        try:
            problems = schemas.validate_helm_values(chart, values, folder)
            schema_path = schemas.values_schema_path(chart, folder)
        except schemas.SchemaFileError as exc:
            result.objects += 1
            result.failures.append(Failure(relative, "(schema)", f"schema file error: {exc}"))
            continue
        if problems is None:
            result.notes.append(f"{relative}: {schemas.values_schema_note(chart)} (not counted)")
            continue
        result.objects += 1
        if schema_path is not None:
            schema_version = schema_path.parent.name.rsplit("-v", 1)[-1]
            if str(release.get("version") or "").lstrip("v") != schema_version:
                result.notes.append(
                    f"{relative}: chart {chart} {release.get('version')} checked against the "
                    f"values schema of {schema_version}"
                )
        if release.get("valueYamlFiles"):
            result.notes.append(f"{relative}: valueYamlFiles are not checked, only inline values")
        for problem in problems:
            path, _, message = problem.partition(": ")
            result.failures.append(
                Failure(relative, f"values.{path}" if path != "(root)" else "values", message)
            )
    return result


# --------------------------------------------------------------------------------------------
# checkov.
# --------------------------------------------------------------------------------------------


def checkov_available(binary: Path = CHECKOV) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)


def _checkov_path(keys: Any) -> str:
    if not isinstance(keys, list) or not keys:
        return "(object)"
    parts: list[Any] = []
    for part in str(keys[0]).split("/"):
        match = re.fullmatch(r"\[(\d+)\]", part)
        parts.append(int(match[1]) if match else part)
    return schemas.json_path(parts)


def check_checkov(root: Path, count: int, binary: Path) -> CheckResult:
    result = CheckResult("checkov (Kubernetes manifests)")
    if count == 0:
        return result
    if not checkov_available(binary):
        result.skipped = (
            f"SKIPPED: checkov not found at {binary} (run `make checkov-setup`): "
            f"{count} manifest(s) NOT checked"
        )
        return result
    # Run from the manifests folder so checkov reports paths relative to it ("/<cluster>/<file>").
    command = [str(binary.resolve()), "-d", ".", "--framework", "kubernetes", "-o", "json", "--skip-download"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=600, cwd=root / "manifests"
    )
    try:
        report = json.loads(completed.stdout) if completed.stdout.strip() else {}
    except json.JSONDecodeError:
        report = None
    if report is None or completed.returncode not in (0, 1):
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        result.failures.append(
            Failure(
                "manifests/", "(checkov)", f"checkov failed (exit {completed.returncode}): {' | '.join(tail)}"
            )
        )
        return result
    result.objects = count
    reports = report if isinstance(report, list) else [report]
    for entry in reports:
        results = entry.get("results") or {} if isinstance(entry, dict) else {}
        for failed in results.get("failed_checks") or []:
            result.failures.append(
                Failure(
                    "manifests" + str(failed.get("file_path", "")),
                    _checkov_path((failed.get("check_result") or {}).get("evaluated_keys")),
                    f"{failed.get('check_id')} {failed.get('check_name')} ({failed.get('resource')})",
                )
            )
        for skipped in results.get("skipped_checks") or []:
            reason = str((skipped.get("check_result") or {}).get("suppress_comment") or "").strip()
            where = "manifests" + str(skipped.get("file_path", ""))
            if reason.lower() in _NO_REASON:
                result.failures.append(
                    Failure(
                        where, "metadata.annotations", f"{skipped.get('check_id')} skipped without a reason"
                    )
                )
            else:
                result.notes.append(f"{where}: {skipped.get('check_id')} skipped inline: {reason}")
        for error in results.get("parsing_errors") or []:
            result.failures.append(
                Failure(f"manifests/{str(error).lstrip('./')}", "(file)", "checkov could not parse this file")
            )
    return result


# --------------------------------------------------------------------------------------------
# Policy rules.
# --------------------------------------------------------------------------------------------


def check_policy(root: Path, role: str | None) -> CheckResult:
    from policy import rules

    inventory = json.loads((root / "inventory.json").read_text(encoding="utf-8"))
    stack = rules.inventory_view(inventory, role)
    result = CheckResult(f"policy rules ({len(rules.RULES)} rules, role {stack.effective_role})")
    result.objects = len(stack.resources)
    files = _files_by_urn(root)
    for violation in rules.evaluate(stack):
        file, prefix = files.get(violation.urn, ("inventory.json", f"{violation.urn} inputs"))
        path = ".".join(p for p in (prefix, violation.path) if p) or "(resource)"
        result.failures.append(Failure(file, path, f"[{violation.rule}] {violation.message}"))
    return result


def _files_by_urn(root: Path) -> dict[str, tuple[str, str]]:
    """URN -> (artifact file, path prefix) so a violation points at the file a reviewer reads.

    A manifest is the resource's inputs and a Helm file holds ``values``/``version`` at the top,
    so a rule's path into the inputs is also the path in the file; other resources are found in
    ``inventory.json`` under their URN.
    """
    found: dict[str, tuple[str, str]] = {}
    for folder in ("manifests", "helm"):
        for path in sorted((root / folder).rglob("*.yaml")):
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
            if first.startswith("# urn:"):
                found[first[len("# urn:") :].strip()] = (str(path.relative_to(root)), "")
    return found


# --------------------------------------------------------------------------------------------
# Running and reporting.
# --------------------------------------------------------------------------------------------


def validate_artifacts(
    root: Path,
    *,
    role: str | None,
    kubernetes: str | None,
    schemas_folder: Path | None = None,
    checkov: Path | None = None,
) -> tuple[list[CheckResult], str]:
    """Run every check on the artifacts in ``root``; returns the results and a header line."""
    folder = schemas_folder or schemas.schemas_dir()
    checkov = checkov or CHECKOV
    version, why = kubernetes_version(kubernetes)
    manifests, unreadable = load_manifests(root)
    custom = {m.group for m in manifests if schemas.is_custom_group(m.group, folder)}
    core = check_core(manifests, version, custom)
    core.failures.extend(unreadable)
    results = [
        core,
        check_custom(manifests, custom, folder),
        check_values(load_helm(root), folder),
        check_checkov(root, len(manifests), checkov),
        check_policy(root, role),
    ]
    return results, f"Kubernetes schemas {version}: {why}"


def render(stack: str, root: Path, results: list[CheckResult], header: str) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"== stack {stack}: {root}", header, ""]
    lines.append(f"{'check':<{width}}  {'objects':>7}  {'failures':>8}  result")
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.objects:>7}  {len(r.failures):>8}  {r.status}")
    skipped = [r.skipped for r in results if r.skipped]
    notes = [f"  {r.name.split(' (')[0]}: {n}" for r in results for n in r.notes]
    if skipped:
        lines += ["", *(f"!! {s}" for s in skipped)]
    if notes:
        lines += ["", "Notes:", *notes]
    failures = [(r.name.split(" (")[0], f) for r in results for f in sorted(r.failures)]
    if failures:
        lines += ["", "Failures (file  path: message):"]
        lines += [f"  [{check}] {f.file}  {f.path}: {f.message}" for check, f in failures]
    return "\n".join(lines)


def stack_settings(stack: str) -> tuple[str | None, str | None]:
    """(role, cluster Kubernetes version): the role from environments.yaml's entry for the stack
    file's environment, the version from the stack file."""
    from program import environments

    config = runner.read_stack_config(stack)
    cluster = config.get("platform:cluster")
    version = cluster.get("version") if isinstance(cluster, dict) else None
    entry = environments.load_file(paths.ENVIRONMENTS).entries.get(str(config.get("platform:environment")))
    return (entry.role if entry else None), (str(version) if version else None)


def check_stack_notifications(plan: runner.Plan) -> CheckResult:
    """Argo CD's notification config as the plan records it: the release's ``notifications``
    values and the ExternalSecret beside them (the artifacts mask the release's values: the
    release carries a secret)."""
    from offline import notifications_check
    from offline.mocks import unwrap_secrets
    from scw_platform.notifications import NOTIFICATIONS_SECRET

    result = CheckResult("Argo CD notifications (templates, triggers, services, secret keys)")
    releases = [
        r for r in plan.by_type("kubernetes:helm.sh/v3:Release") if r.inputs.get("chart") == "argo-cd"
    ]
    values = unwrap_secrets(releases[0].inputs.get("values")) if releases else None
    block = values.get("notifications") if isinstance(values, dict) else None
    if not isinstance(block, dict) or not block.get("enabled"):
        result.notes.append("Argo CD's notifications are off in this stack (not counted)")
        return result
    secrets = [
        r
        for r in plan.by_type("kubernetes:external-secrets.io/v1:ExternalSecret")
        if r.inputs["metadata"]["name"] == NOTIFICATIONS_SECRET
    ]
    spec = unwrap_secrets(secrets[0].inputs["spec"]) if secrets else {}
    problems, skipped = notifications_check.check(block, spec)
    if not secrets:
        problems.append(f"notifications are on but no ExternalSecret {NOTIFICATIONS_SECRET} is declared")
    result.objects = len(block.get("subscriptions") or [])
    result.failures = [Failure("helm/argocd-argocd.yaml", "notifications", p) for p in problems]
    if skipped is not None:
        result.notes.append(f"templates not parsed with Go's text/template: {skipped}")
    return result


ROLLOUTS_FILE = "rollouts (documented template)"


def check_stack_rollouts(plan: runner.Plan, folder: Path | None = None) -> CheckResult:
    """The Rollout each canary app's GitOps path must carry (``scw_platform.delivery.rollout_manifest``,
    docs/delivery.md), rendered from the stack file's ``platform:apps`` and checked against the
    Argo Rollouts CRD, and against the plan: the Services, HTTPRoute and AnalysisTemplate it names
    must be the ones the program declares in the app's namespace. Skipped visibly without the
    schemas folder (the cross-references are still checked)."""
    from scw_platform import delivery
    from scw_platform.apps import AppSettings

    folder = folder or schemas.schemas_dir()
    result = CheckResult("Argo Rollouts (canary apps' Rollout against the CRD and the plan)")
    raw = runner.read_stack_config(plan.stack).get("platform:apps") or []
    apps = [
        AppSettings.model_validate(entry)
        for entry in raw
        if isinstance(entry, dict) and entry.get("delivery")
    ]
    if not apps:
        result.notes.append("no app of this stack delivers by canary (not counted)")
        return result
    declared = {
        (
            r.type.rsplit(":", 1)[-1],
            str(r.inputs["metadata"].get("namespace")),
            str(r.inputs["metadata"].get("name")),
        )
        for r in plan.registrations
        if r.type.startswith("kubernetes:") and isinstance(r.inputs.get("metadata"), dict)
    }
    checked = schemas.schemas_available(folder)
    if not checked:
        result.skipped = _SCHEMAS_MISSING.format(folder=folder, what=f"{len(apps)} Rollout(s)")
    for app in apps:
        assert app.delivery is not None
        rollout = delivery.rollout_manifest(
            app=app.name,
            namespace=app.name,
            replicas=app.replicas,
            port=app.port,
            settings=app.delivery,
            image=f"{app.image}:example",
        )
        where = f"{ROLLOUTS_FILE}/{app.name}"
        result.objects += 1
        canary = rollout["spec"]["strategy"]["canary"]
        route = canary["trafficRouting"]["plugins"][delivery.GATEWAY_PLUGIN]["httpRoute"]
        templates = {
            t["templateName"] for s in canary["steps"] for t in s.get("analysis", {}).get("templates", [])
        }
        wanted = [
            ("Service", canary["stableService"]),
            ("Service", canary["canaryService"]),
            ("HTTPRoute", route),
            *(("AnalysisTemplate", name) for name in sorted(templates)),
        ]
        for kind, name in wanted:
            if (kind, app.name, name) not in declared:
                result.failures.append(
                    Failure(
                        where,
                        "spec.strategy.canary",
                        f"names {kind} {app.name}/{name}, which the plan does not declare",
                    )
                )
        if checked:
            for problem in schemas.validate_custom_resource(rollout, folder):
                path, _, message = problem.partition(": ")
                result.failures.append(Failure(where, path, message))
    return result


def validate_stack(stack: str, out: Path = BUILD, no_skips: bool = False) -> tuple[bool, str]:
    plan = runner.run(stack)
    written = artifacts.write(plan, out)
    role, version = stack_settings(stack)
    results, header = validate_artifacts(written.root, role=role, kubernetes=version)
    results.append(check_stack_notifications(plan))
    results.append(check_stack_rollouts(plan))
    ok = all(not r.failures for r in results) and not (no_skips and any(r.skipped for r in results))
    return ok, render(stack, written.root, results, header)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stack", nargs="?", help=f"stack name (here: {', '.join(runner.stack_names())})")
    parser.add_argument("--all", action="store_true", help="validate every committed stack")
    parser.add_argument("--out", default=str(BUILD), metavar="DIR", help="artifacts folder (default build/)")
    parser.add_argument("--artifacts", metavar="DIR", help="validate an existing artifacts folder instead")
    parser.add_argument("--role", choices=("tooling", "production", "development"))
    parser.add_argument("--kubernetes-version", metavar="X.Y")
    parser.add_argument("--no-skips", action="store_true", help="a skipped check fails the run (CI)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    started = time.perf_counter()
    ok = True
    if args.artifacts:
        root = Path(args.artifacts)
        results, header = validate_artifacts(root, role=args.role, kubernetes=args.kubernetes_version)
        print(render(root.name, root, results, header))
        ok = all(not r.failures for r in results) and not (args.no_skips and any(r.skipped for r in results))
    else:
        if args.all == bool(args.stack):
            parser.error("give a stack name or --all")
        stacks = runner.stack_names() if args.all else [args.stack]
        for i, stack in enumerate(stacks):
            stack_ok, report = validate_stack(stack, Path(args.out), args.no_skips)
            print(("\n" if i else "") + report)
            ok = ok and stack_ok
    elapsed = time.perf_counter() - started
    print(f"\nvalidation {'passed' if ok else 'FAILED'} in {elapsed:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""offline.validate: the committed stacks pass; a deliberately broken plan is caught by each
validator, with its file, path in the object and message; missing tools or schemas are visible."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from offline import artifacts, runner, schemas, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validation"
BROKEN = FIXTURES / "broken"

HAVE_SCHEMAS = schemas.schemas_available()
HAVE_CHECKOV = validate.checkov_available()
_NO_SCHEMAS = pytest.mark.skipif(
    not HAVE_SCHEMAS, reason=f"upstream schemas not found at {schemas.schemas_dir()} (../shared/schemas)"
)
needs_checkov = pytest.mark.skipif(
    not HAVE_CHECKOV,
    reason=f"checkov not installed at {validate.CHECKOV} (`make checkov-setup`; CI installs it)",
)


def needs_schemas(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.schemas(_NO_SCHEMAS(test))


def by_check(results: list[validate.CheckResult]) -> dict[str, validate.CheckResult]:
    return {r.name.split(" (")[0]: r for r in results}


@pytest.fixture(scope="module")
def broken() -> dict[str, validate.CheckResult]:
    results, _ = validate.validate_artifacts(BROKEN, role="production", kubernetes="1.34")
    return by_check(results)


# --- The committed stacks -------------------------------------------------------------------


@pytest.mark.parametrize("stack", runner.stack_names())
def test_committed_stack_validates(
    stack: str, committed_plans: dict[str, runner.Plan], tmp_path: Path
) -> None:
    written = artifacts.write(committed_plans[stack], tmp_path)
    role, version = validate.stack_settings(stack)
    results, header = validate.validate_artifacts(written.root, role=role, kubernetes=version)
    report = validate.render(stack, written.root, results, header)
    assert all(not r.failures for r in results), report
    checks = by_check(results)
    declared = [r for r in committed_plans[stack].registrations if not r.read]
    assert checks["policy rules"].objects == len(declared)
    manifests = len(written.manifests)
    checked = checks["kubernetes-validate --strict"].objects + checks["CRD schemas"].objects
    if HAVE_SCHEMAS:
        assert checked in (0, manifests)
        assert not checks["CRD schemas"].skipped and not checks["Helm values schemas"].skipped
    else:
        # A fresh clone (no ../shared/schemas): the custom resources are skipped, visibly and counted.
        skipped = checks["CRD schemas"].skipped or ""
        found = re.search(r"(\d+) custom resource\(s\) NOT checked", skipped)
        assert found is not None, skipped
        assert checked + int(found[1]) == manifests
    if HAVE_CHECKOV and manifests:
        assert checks["checkov"].objects == manifests and not checks["checkov"].skipped


def test_kubernetes_version_choice() -> None:
    assert validate.kubernetes_version("1.34") == ("1.34", "the stack's cluster version 1.34")
    assert validate.kubernetes_version("1.34.2")[0] == "1.34"
    newest, why = validate.kubernetes_version("1.99")
    assert newest == validate.kubernetes_version(None)[0]
    assert "ships no schemas for 1.99" in why and f"using the newest, {newest}" in why


# --- Each validator catches the broken plan -------------------------------------------------


def test_kubernetes_validate_catches_a_wrong_type(broken: dict[str, validate.CheckResult]) -> None:
    failures = broken["kubernetes-validate --strict"].failures
    assert (
        validate.Failure(
            "manifests/broken-k8s/deployment_web_web.yaml",
            "spec.replicas",
            "'two' is not of type 'integer', 'null'",
        )
        in failures
    )


def test_kubernetes_validate_strict_catches_an_unknown_field(tmp_path: Path) -> None:
    folder = tmp_path / "manifests" / "c"
    folder.mkdir(parents=True)
    (folder / "configmap_cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\ndatas:\n  c: d\n"
    )
    (folder / "widget_w.yaml").write_text("apiVersion: v1\nkind: Widget\nmetadata:\n  name: w\n")
    (tmp_path / "inventory.json").write_text(json.dumps({"resources": []}))
    results, _ = validate.validate_artifacts(
        tmp_path, role="production", kubernetes="1.34", checkov=tmp_path / "no-checkov"
    )
    core = by_check(results)["kubernetes-validate --strict"]
    assert core.objects == 2
    messages = {f.file: f"{f.path}: {f.message}" for f in core.failures}
    assert "'datas' was unexpected" in messages["manifests/c/configmap_cm.yaml"]
    assert "Couldn't find schema for kind Widget" in messages["manifests/c/widget_w.yaml"]


@needs_schemas
def test_crd_schema_catches_unknown_field_and_wrong_type(broken: dict[str, validate.CheckResult]) -> None:
    failures = broken["CRD schemas"].failures
    file = "manifests/broken-k8s/gateway_traefik_public.yaml"
    assert validate.Failure(file, "spec.listeners[1].port", "'eighty' is not of type 'integer'") in failures
    assert any(
        f.file == file and f.path == "spec.listeners[1]" and "'tlss' was unexpected" in f.message
        for f in failures
    )


@needs_schemas
def test_values_schema_catches_unknown_key_and_wrong_type(broken: dict[str, validate.CheckResult]) -> None:
    failures = broken["Helm values schemas"].failures
    assert any(f.path == "values" and "'prots' was unexpected" in f.message for f in failures)
    assert (
        validate.Failure(
            "helm/traefik.yaml",
            "values.providers.kubernetesGateway.enabled",
            "'yes' is not of type 'boolean'",
        )
        in failures
    )


@needs_checkov
def test_checkov_catches_a_privileged_container_and_an_unjustified_skip(
    broken: dict[str, validate.CheckResult],
) -> None:
    failures = broken["checkov"].failures
    file = "manifests/broken-k8s/deployment_web_web.yaml"
    assert any(
        f.file == file
        and f.path == "spec.template.spec.containers[0].securityContext.privileged"
        and f.message.startswith("CKV_K8S_16 ")
        for f in failures
    )
    assert validate.Failure(file, "metadata.annotations", "CKV_K8S_43 skipped without a reason") in failures


@needs_checkov
def test_checkov_skip_with_an_inline_reason_is_accepted_and_shown(
    broken: dict[str, validate.CheckResult],
) -> None:
    result = broken["checkov"]
    file = "manifests/broken-k8s/serviceaccount_web_web.yaml"
    assert result.objects == 3
    assert not [f for f in result.failures if f.file == file], result.failures
    assert (
        f"{file}: CKV_K8S_21 skipped inline: the namespace is set explicitly by the program" in result.notes
    )


def test_policy_rules_catch_the_broken_plan(broken: dict[str, validate.CheckResult]) -> None:
    failures = broken["policy rules"].failures
    rules_hit = {f.message.split("]", 1)[0].lstrip("[") for f in failures}
    assert {
        "container-image-tag-pinned",
        "gateway-listeners-tls",
        "helm-chart-version-pinned",
        "kubernetes-provider-kubeconfig-secret",
        "rdb-private-endpoint-only",
        "rdb-backups-production",
        "stateful-resources-protected",
    } <= rules_hit
    # Violations point at the file a reviewer reads, with the path inside it.
    assert (
        validate.Failure(
            "manifests/broken-k8s/deployment_web_web.yaml",
            "spec.template.spec.containers[0].image",
            "[container-image-tag-pinned] image 'rg.fr-par.scw.cloud/acme/web:latest' uses the tag latest",
        )
        in failures
    )


def test_cli_prints_one_table_then_failures_and_exits_non_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # checkov has its own tests; without it this one runs in a second.
    monkeypatch.setattr(validate, "CHECKOV", tmp_path / "no-checkov")
    code = validate.main(["--artifacts", str(BROKEN), "--role", "production", "--kubernetes-version", "1.34"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("check ") == 1 and "objects  failures  result" in out
    table, details = out.split("Failures (file  path: message):")
    assert "FAIL" in table
    assert "manifests/broken-k8s/deployment_web_web.yaml  spec.replicas: 'two' is not of type" in details
    assert "validation FAILED" in out


# --- Missing or corrupt schemas, missing checkov ---------------------------------------------


def test_missing_schemas_are_reported_skipped_never_passed(
    committed_plans: dict[str, runner.Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = artifacts.write(committed_plans["prod"], tmp_path)
    monkeypatch.setenv("PLATFORM_SCHEMAS_DIR", str(tmp_path / "no-schemas-here"))
    monkeypatch.setattr(validate, "CHECKOV", tmp_path / "no-checkov")
    results, header = validate.validate_artifacts(written.root, role="production", kubernetes="1.34")
    checks = by_check(results)
    for name in ("CRD schemas", "Helm values schemas"):
        assert checks[name].status == "SKIPPED" and checks[name].objects == 0
        assert "NOT checked" in str(checks[name].skipped)
    report = validate.render("prod", written.root, results, header)
    assert f"!! SKIPPED: upstream schemas not found at {tmp_path / 'no-schemas-here'}" in report
    if written.manifests:
        assert checks["checkov"].status == "SKIPPED"
        assert "!! SKIPPED: checkov not found" in report

    args = ["--artifacts", str(written.root), "--role", "production", "--kubernetes-version", "1.34"]
    assert validate.main(args) == 0
    assert validate.main([*args, "--no-skips"]) == 1


def test_a_corrupt_schema_file_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    folder = tmp_path / "schemas" / "gateway-api-v9"
    folder.mkdir(parents=True)
    (folder / "gateway.networking.k8s.io_gateways.yaml").write_text("spec: {group: [unclosed\n")
    artifacts_dir = tmp_path / "artifacts"
    shutil.copytree(BROKEN, artifacts_dir)
    schemas.clear_caches()
    results, _ = validate.validate_artifacts(
        artifacts_dir,
        role="production",
        kubernetes="1.34",
        schemas_folder=tmp_path / "schemas",
        checkov=tmp_path / "no-checkov",
    )
    custom = by_check(results)["CRD schemas"]
    assert custom.status == "FAIL"
    assert any("schema file error" in f.message and "not valid YAML" in f.message for f in custom.failures)
    values = by_check(results)["Helm values schemas"]
    assert any("schema file error" in f.message for f in values.failures)

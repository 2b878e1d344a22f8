"""offline.schemas: custom resources and Helm values against the upstream schemas."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from offline import schemas

_SKIP_WITHOUT_SCHEMAS = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (../shared/schemas is absent in a "
    "fresh clone; CI has it)",
)


def needs_schemas(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test as needing ../shared/schemas and skip it, with the reason, when absent."""
    return pytest.mark.schemas(_SKIP_WITHOUT_SCHEMAS(test))


GATEWAY: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "public", "namespace": "traefik", "labels": {"app": "traefik"}},
    "spec": {
        "gatewayClassName": "traefik",
        "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP"},
            {
                "name": "websecure",
                "port": 443,
                "protocol": "HTTPS",
                "hostname": "*.example.org",
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "wildcard-tls"}]},
            },
        ],
    },
}

CLUSTER_ISSUER: dict[str, Any] = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "ClusterIssuer",
    "metadata": {"name": "letsencrypt-production"},
    "spec": {
        "acme": {
            "server": "https://acme-v02.api.letsencrypt.org/directory",
            "email": "platform@example.org",
            "privateKeySecretRef": {"name": "letsencrypt-production-account"},
            "solvers": [
                {
                    "http01": {
                        "gatewayHTTPRoute": {
                            "parentRefs": [{"name": "public", "namespace": "traefik", "kind": "Gateway"}]
                        }
                    }
                }
            ],
        }
    },
}


def gateway() -> dict[str, Any]:
    return copy.deepcopy(GATEWAY)


@needs_schemas
def test_valid_custom_resources_pass() -> None:
    assert schemas.validate_custom_resource(gateway()) == []
    assert schemas.validate_custom_resource(copy.deepcopy(CLUSTER_ISSUER)) == []


@needs_schemas
def test_integral_floats_from_the_engine_are_integers() -> None:
    obj = gateway()
    obj["spec"]["listeners"][0]["port"] = 80.0
    assert schemas.validate_custom_resource(obj) == []


@needs_schemas
def test_unknown_field_is_rejected_with_its_path() -> None:
    obj = gateway()
    obj["spec"]["listeners"][1]["tls"]["certificateRef"] = [{"name": "typo"}]
    problems = schemas.validate_custom_resource(obj)
    assert len(problems) == 1
    assert problems[0].startswith("spec.listeners[1].tls: ")
    assert "'certificateRef' was unexpected" in problems[0]


@needs_schemas
def test_unknown_top_level_and_metadata_fields_are_rejected() -> None:
    obj = gateway()
    obj["specs"] = {}
    obj["metadata"]["label"] = {"a": "b"}
    problems = schemas.validate_custom_resource(obj)
    assert any(p.startswith("(root): ") and "'specs'" in p for p in problems)
    assert any(p.startswith("metadata: ") and "'label'" in p for p in problems)


@needs_schemas
def test_wrong_type_is_rejected_with_its_path() -> None:
    obj = gateway()
    obj["spec"]["listeners"][0]["port"] = "eighty"
    assert schemas.validate_custom_resource(obj) == [
        "spec.listeners[0].port: 'eighty' is not of type 'integer'"
    ]


@needs_schemas
def test_wrong_enum_value_is_rejected() -> None:
    obj = copy.deepcopy(CLUSTER_ISSUER)
    obj["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"][0]["port"] = "https"
    problems = schemas.validate_custom_resource(obj)
    assert problems and problems[0].startswith(
        "spec.acme.solvers[0].http01.gatewayHTTPRoute.parentRefs[0].port: "
    )


@needs_schemas
def test_preserve_unknown_fields_allows_extra_keys() -> None:
    # Argo CD's Application keeps spec.source.helm.valuesObject open (preserve-unknown-fields).
    app: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "website", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "website"},
            "source": {
                "repoURL": "https://example.org/git/website.git",
                "targetRevision": "main",
                "path": "deploy",
                "helm": {"valuesObject": {"anything": {"goes": [1, 2]}}},
            },
        },
    }
    assert schemas.validate_custom_resource(app) == []
    app["spec"]["source"]["helmm"] = {}
    assert any("'helmm' was unexpected" in p for p in schemas.validate_custom_resource(app))


@needs_schemas
def test_unknown_kind_version_and_group_are_errors_not_passes() -> None:
    wrong_version = {**gateway(), "apiVersion": "gateway.networking.k8s.io/v9"}
    assert "not a version of Gateway" in schemas.validate_custom_resource(wrong_version)[0]
    wrong_kind = {**gateway(), "kind": "Gateways"}
    assert "no CRD for kind Gateways" in schemas.validate_custom_resource(wrong_kind)[0]
    wrong_group = {**gateway(), "apiVersion": "example.org/v1"}
    assert "no CRD schema for API group" in schemas.validate_custom_resource(wrong_group)[0]
    not_served = {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "x"},
    }
    assert "not served" in schemas.validate_custom_resource(not_served)[0]


@needs_schemas
def test_helm_values_checked_against_the_chart_schema() -> None:
    good = {
        "providers": {"kubernetesGateway": {"enabled": True}},
        "ports": {
            "web": {
                "http": {
                    "redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}
                },
                "allowACMEByPass": True,
            }
        },
    }
    assert schemas.validate_helm_values("traefik", good) == []
    assert schemas.validate_helm_values("cert-manager", {"crds": {"enabled": True}}) == []
    bad = {"providers": {"kubernetesGateway": {"enabled": "yes"}}, "prots": {}}
    problems = schemas.validate_helm_values("traefik", bad)
    assert problems is not None
    assert any(p.startswith("(root): ") and "'prots'" in p for p in problems)
    assert any(p.startswith("providers.kubernetesGateway.enabled: ") for p in problems)


@needs_schemas
def test_charts_without_an_upstream_schema_return_none() -> None:
    assert schemas.validate_helm_values("argo-cd", {"anything": 1}) is None
    assert schemas.validate_helm_values("argocd-image-updater", {}) is None
    assert "no values.schema.json upstream" in schemas.values_schema_note("argo-cd")
    assert schemas.chart_basename("oci://ghcr.io/traefik/helm/traefik") == "traefik"


@needs_schemas
def test_repeated_validation_is_cached_and_fast() -> None:
    import time

    schemas.validate_custom_resource(gateway())
    start = time.perf_counter()
    for _ in range(200):
        schemas.validate_custom_resource(gateway())
    assert time.perf_counter() - start < 2.0


def test_missing_schemas_folder_is_reported_not_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_SCHEMAS_DIR", str(tmp_path / "absent"))
    assert schemas.schemas_dir() == tmp_path / "absent"
    assert not schemas.schemas_available()
    with pytest.raises(schemas.SchemasUnavailableError, match="absent or empty"):
        schemas.validate_custom_resource(gateway())
    with pytest.raises(schemas.SchemasUnavailableError):
        schemas.validate_helm_values("traefik", {})
    # Known custom groups are still recognised as custom (so they are reported skipped).
    assert schemas.is_custom_group("gateway.networking.k8s.io")
    assert not schemas.is_custom_group("apps")


def _fake_schemas(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    (folder / "demo-v1").mkdir(parents=True)
    (folder / "demo-v1" / "demo.example.org_widgets.yaml").write_text(
        """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.demo.example.org}
spec:
  group: demo.example.org
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            properties:
              port: {x-kubernetes-int-or-string: true}
              note: {type: string, nullable: true}
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  known: {type: string}
""",
        encoding="utf-8",
    )
    return folder


def test_kubernetes_extensions_are_translated(tmp_path: Path) -> None:
    folder = _fake_schemas(tmp_path)
    schemas.clear_caches()
    widget = {"apiVersion": "demo.example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    for spec in ({"port": 8080}, {"port": "http"}, {"note": None}, {"extra": {"known": "a", "other": 1}}):
        assert schemas.validate_custom_resource({**widget, "spec": spec}, folder) == [], spec
    assert schemas.validate_custom_resource({**widget, "spec": {"port": True}}, folder)
    assert schemas.validate_custom_resource({**widget, "spec": {"note": 3}}, folder) == [
        "spec.note: 3 is not of type 'string'"
    ]
    assert schemas.validate_custom_resource({**widget, "spec": {"other": 1}}, folder)


def test_corrupt_crd_file_raises_a_schema_error(tmp_path: Path) -> None:
    folder = _fake_schemas(tmp_path)
    (folder / "demo-v1" / "broken.yaml").write_text("spec: [unclosed\n  - x: {", encoding="utf-8")
    schemas.clear_caches()
    with pytest.raises(schemas.SchemaFileError, match=r"broken\.yaml is not valid YAML"):
        schemas.validate_custom_resource({"apiVersion": "demo.example.org/v1", "kind": "Widget"}, folder)


def test_crd_without_a_schema_raises_a_schema_error(tmp_path: Path) -> None:
    folder = _fake_schemas(tmp_path)
    path = folder / "demo-v1" / "demo.example.org_widgets.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("    schema:")], encoding="utf-8")
    schemas.clear_caches()
    with pytest.raises(schemas.SchemaFileError, match=r"has no schema\.openAPIV3Schema"):
        schemas.validate_custom_resource({"apiVersion": "demo.example.org/v1", "kind": "Widget"}, folder)


def test_corrupt_or_missing_values_schema_raises_a_schema_error(tmp_path: Path) -> None:
    folder = _fake_schemas(tmp_path)
    schemas.clear_caches()
    with pytest.raises(schemas.SchemaFileError, match="no schema folder matching"):
        schemas.validate_helm_values("traefik", {}, folder)
    (folder / "traefik-helm-chart-v41.3.0").mkdir()
    with pytest.raises(schemas.SchemaFileError, match="values schema of chart 'traefik' is missing"):
        schemas.validate_helm_values("traefik", {}, folder)
    (folder / "traefik-helm-chart-v41.3.0" / "values.schema.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(schemas.SchemaFileError, match="is not valid JSON"):
        schemas.validate_helm_values("traefik", {}, folder)
    (folder / "traefik-helm-chart-v41.3.0" / "values.schema.json").write_text(
        '{"type": "object", "properties": {"a": {"type": "no-such-type"}}}', encoding="utf-8"
    )
    schemas.clear_caches()
    with pytest.raises(schemas.SchemaFileError, match="not a valid JSON Schema"):
        schemas.validate_helm_values("traefik", {}, folder)

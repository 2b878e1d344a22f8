"""offline.artifacts: inventory, manifests and Helm values written per stack, deterministically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import rpc

from offline import artifacts, plan, runner
from offline.mocks import SECRET_MARKER, Registration

P = "urn:pulumi:demo::platform::"
PROVIDER = P + "pulumi:providers:kubernetes::demo-k8s"


def reg(type_: str, name: str, inputs: dict[str, Any], **options: Any) -> Registration:
    return Registration(
        urn=P + f"{type_}::{name}",
        type=type_,
        name=name,
        id=f"id-{name}",
        parent=options.pop("parent", ""),
        provider=options.pop("provider", f"{PROVIDER}::00000000-provider"),
        custom=options.pop("custom", True),
        protect=options.pop("protect", False),
        retain_on_delete=options.pop("retain_on_delete", False),
        delete_before_replace=False,
        dependencies=options.pop("dependencies", []),
        inputs=inputs,
        **options,
    )


def demo_plan() -> runner.Plan:
    secret = rpc.wrap_rpc_secret
    registrations = [
        reg(
            "pulumi:providers:kubernetes",
            "demo-k8s",
            {"kubeconfig": secret("MOCKSECRET-kubeconfig")},
            provider="",
        ),
        reg(
            "kubernetes:core/v1:Namespace",
            "web-ns",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web", "labels": {"a": "b"}}},
        ),
        reg(
            "kubernetes:core/v1:Secret",
            "web-db",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": "web"},
                "stringData": secret({"password": "MOCKSECRET-pw", "user": "web"}),
            },
        ),
        reg(
            "kubernetes:apps/v1:Deployment",
            "web",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "web"},
                "spec": {
                    "replicas": 2.0,
                    "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}},
                },
            },
        ),
        # Declared without apiVersion/kind inputs: filled from the type token.
        reg("kubernetes:gateway.networking.k8s.io/v1:Gateway", "gw", {"metadata": {"name": "public"}}),
        # Two resources for the same object (a conflict the policy reports); files stay distinct.
        reg("kubernetes:core/v1:ConfigMap", "cm-a", {"metadata": {"name": "cm", "namespace": "web"}}),
        reg("kubernetes:core/v1:ConfigMap", "cm-b", {"metadata": {"name": "cm", "namespace": "web"}}),
        reg(
            "kubernetes:helm.sh/v3:Release",
            "traefik",
            {
                "chart": "traefik",
                "version": "41.3.0",
                "namespace": "traefik",
                "repositoryOpts": {"repo": "https://traefik.github.io/charts"},
                "values": {"deployment": {"replicas": 2.0}, "token": secret("MOCKSECRET-t")},
            },
        ),
        reg("kubernetes:core/v1:Namespace", "read-only", {"metadata": {"name": "x"}}, read=True),
        reg("platform:ingress:FrontDoor", "front", {}, custom=False, provider=""),
        reg("scaleway:loadbalancers/ip:Ip", "ip", {"zone": "fr-par-1"}, protect=True, retain_on_delete=True),
    ]
    exports = {"role": runner.Export("production", False), "kubeconfig": runner.Export("MOCKSECRET-k", True)}
    # Arrival order is not stable in real runs: feed them reversed to prove sorting.
    return runner.Plan(stack="demo", project="platform", registrations=registrations[::-1], exports=exports)


def test_inventory_records_every_resource_with_secrets_masked() -> None:
    data = artifacts.inventory(demo_plan())
    urns = [r["urn"] for r in data["resources"]]
    assert urns == sorted(urns)
    assert len(urns) == 11
    by_name = {r["name"]: r for r in data["resources"]}
    provider = by_name["demo-k8s"]
    assert provider["inputs"] == {"kubeconfig": "[secret]"}
    assert set(provider) >= {
        "urn",
        "type",
        "name",
        "parent",
        "provider",
        "protect",
        "retainOnDelete",
        "dependencies",
        "inputs",
    }
    assert by_name["web"]["provider"] == PROVIDER
    assert by_name["web"]["inputs"]["spec"]["replicas"] == 2
    # A secret map keeps its keys; no value shows.
    assert by_name["web-db"]["inputs"]["stringData"] == {"password": "[secret]", "user": "[secret]"}
    assert by_name["ip"]["protect"] and by_name["ip"]["retainOnDelete"]
    assert by_name["read-only"]["read"]
    assert data["exports"] == {"kubeconfig": "[secret]", "role": "production"}
    assert SECRET_MARKER not in json.dumps(data)


def test_manifest_files_one_per_declared_object() -> None:
    files = artifacts.manifest_files(demo_plan())
    assert sorted(files) == [
        "manifests/demo-k8s/configmap_web_cm__cm-a.yaml",
        "manifests/demo-k8s/configmap_web_cm__cm-b.yaml",
        "manifests/demo-k8s/deployment_web_web.yaml",
        "manifests/demo-k8s/gateway_public.yaml",
        "manifests/demo-k8s/namespace_web.yaml",
        "manifests/demo-k8s/secret_web_db.yaml",
    ]
    _, gateway = files["manifests/demo-k8s/gateway_public.yaml"]
    assert gateway["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway["kind"] == "Gateway"


def test_helm_values_file_per_release() -> None:
    files = artifacts.helm_files(demo_plan())
    assert list(files) == ["helm/traefik.yaml"]
    _, record = files["helm/traefik.yaml"]
    assert record["chart"] == "traefik"
    assert record["repo"] == "https://traefik.github.io/charts"
    assert record["version"] == "41.3.0"
    assert record["values"] == {"deployment": {"replicas": 2}, "token": "[secret]"}


def test_write_lays_out_the_build_folder(tmp_path: Path) -> None:
    written = artifacts.write(demo_plan(), tmp_path)
    assert written.root == tmp_path / "demo"
    assert json.loads(written.inventory.read_text())["stack"] == "demo"
    secret_file = written.root / "manifests/demo-k8s/secret_web_db.yaml"
    text = secret_file.read_text()
    assert text.startswith(f"# urn: {P}kubernetes:core/v1:Secret::web-db\n")
    assert yaml.safe_load(text)["stringData"] == {"password": "[secret]", "user": "[secret]"}
    helm = yaml.safe_load((written.root / "helm/traefik.yaml").read_text())
    assert helm["values"]["deployment"]["replicas"] == 2
    for path in written.root.rglob("*"):
        if path.is_file():
            assert SECRET_MARKER not in path.read_text(), path
    # A second write replaces the first (no stale files from an older plan).
    (written.root / "manifests/stale.yaml").write_text("x")
    artifacts.write(demo_plan(), tmp_path)
    assert not (written.root / "manifests/stale.yaml").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    a = artifacts.write(demo_plan(), tmp_path / "a")
    b = artifacts.write(demo_plan(), tmp_path / "b")
    assert _tree(a.root) == _tree(b.root)


@pytest.mark.parametrize("stack", runner.stack_names())
def test_two_runs_of_a_committed_stack_are_byte_identical(
    stack: str, committed_plans: dict[str, runner.Plan], tmp_path: Path
) -> None:
    first = artifacts.write(committed_plans[stack], tmp_path / "first")
    second = artifacts.write(runner.run(stack), tmp_path / "second")
    assert _tree(first.root) == _tree(second.root)
    inventory = json.loads(first.inventory.read_text())
    assert len(inventory["resources"]) == len(committed_plans[stack].registrations)
    for name, content in _tree(first.root).items():
        assert SECRET_MARKER.encode() not in content, f"{stack}: {name} holds a plaintext secret"


def test_plan_cli_writes_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.main(["dev", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "dev" / "inventory.json").is_file()
    assert f"Artifacts: {tmp_path / 'dev'}/" in capsys.readouterr().out

"""Invariants that hold for every committed stack, whatever its role.

Each check is a function that returns the offending resources, so it can be (and is) tested
against a deliberately broken program too: a check that cannot fail proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
import pytest

from offline import runner
from offline.mocks import SECRET_MARKER, DuplicateUrnError, Registration
from tests.harness import is_secret, plaintext_secrets, record

STACKS = runner.stack_names()
K8S_PROVIDER = "pulumi:providers:kubernetes"
INSTANCE = "scaleway:databases/instance:Instance"


@pytest.fixture(params=STACKS)
def plan(request: pytest.FixtureRequest, committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans[request.param]


# -- the checks -------------------------------------------------------------------------------


def public_databases(regs: Iterable[Registration]) -> list[str]:
    return [r.name for r in regs if r.type == INSTANCE and "loadBalancer" in r.inputs]


def clusters_off_the_private_network(regs: Iterable[Registration]) -> list[str]:
    regs = list(regs)
    networks = {r.id for r in regs if r.type == "scaleway:network/privateNetwork:PrivateNetwork"}
    return [
        r.name
        for r in regs
        if r.type == "scaleway:kubernetes/cluster:Cluster"
        and r.inputs.get("privateNetworkId") not in networks
    ]


def kubernetes_without_explicit_provider(regs: Iterable[Registration]) -> list[str]:
    regs = list(regs)
    providers = {r.urn for r in regs if r.type == K8S_PROVIDER}
    return [
        r.name
        for r in regs
        if r.type.startswith("kubernetes:") and r.custom and r.provider_urn not in providers
    ]


def plaintext_secret_inputs(regs: Iterable[Registration]) -> list[str]:
    return [f"{r.name}{path}" for r in regs for path in plaintext_secrets(r.inputs)]


def plaintext_secret_exports(exports: dict[str, runner.Export]) -> list[str]:
    return [f"{k}{path}" for k, e in exports.items() if not e.secret for path in plaintext_secrets(e.value)]


# -- on every committed stack -------------------------------------------------------------------


def test_stacks_are_discovered() -> None:
    assert {"tooling", "prod", "dev"} <= set(STACKS)


def test_no_database_public_endpoint(plan: runner.Plan) -> None:
    assert public_databases(plan.registrations) == []


def test_every_cluster_on_a_private_network(plan: runner.Plan) -> None:
    assert plan.by_type("scaleway:kubernetes/cluster:Cluster"), "every committed stack has a cluster"
    assert clusters_off_the_private_network(plan.registrations) == []


def test_every_kubernetes_resource_has_an_explicit_provider(plan: runner.Plan) -> None:
    assert kubernetes_without_explicit_provider(plan.registrations) == []


def test_kubernetes_providers_get_secret_kubeconfigs(plan: runner.Plan) -> None:
    for provider in plan.by_type(K8S_PROVIDER):
        assert is_secret(provider.inputs["kubeconfig"]), provider.name


def test_production_database_protected(plan: runner.Plan) -> None:
    if plan.exports["role"].value != "production":
        assert plan.stack != "prod"
        return
    instances = plan.by_type(INSTANCE)
    assert instances, "a production stack without a database"
    assert all(i.protect for i in instances)


def test_no_plaintext_secret_in_inputs(plan: runner.Plan) -> None:
    assert plaintext_secret_inputs(plan.registrations) == []


def test_no_plaintext_secret_in_exports(plan: runner.Plan) -> None:
    assert plaintext_secret_exports(plan.exports) == []


def test_secrets_exist_to_be_found(plan: runner.Plan) -> None:
    """Guards the two scans above: each stack does carry marked secrets, wrapped."""
    wrapped = [r.name for r in plan.registrations if SECRET_MARKER in repr(r.inputs)]
    assert wrapped, "no fake secret reached any input: the leak scan would be vacuous"


def test_component_children_are_named_after_their_component(plan: runner.Plan) -> None:
    components = {r.urn: r for r in plan.registrations if r.type.startswith("platform:")}
    misnamed = [
        f"{r.name} (child of {components[r.parent].name})"
        for r in plan.registrations
        if r.parent in components and not r.name.startswith(f"{components[r.parent].name}-")
    ]
    assert misnamed == []


# -- the checks themselves catch what they are meant to catch -----------------------------------


def test_scanner_finds_plaintext_and_ignores_wrapped_secrets() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": SECRET_MARKER}
    value: Any = {"a": [secret, {"b": f"token {SECRET_MARKER}-x"}], "c": "plain", "d": SECRET_MARKER}
    assert plaintext_secrets(value) == [".a[1].b", ".d"]
    assert plaintext_secrets(secret) == []


def test_an_unsecreted_password_is_caught() -> None:
    def program() -> dict[str, Any]:
        import pulumi_random as random

        password = random.RandomPassword("pw", length=24)
        scaleway.network.Vpc("leaky", name="leaky", tags=[pulumi.Output.unsecret(password.result)])
        scaleway.network.Vpc("tidy", name="tidy", tags=[password.result])
        return {"leak": pulumi.Output.unsecret(password.result), "kept": password.result}

    rec = record(program)
    assert plaintext_secret_inputs(rec.registrations) == ["leaky.tags[0]"]
    assert plaintext_secret_exports(rec.outputs) == ["leak"]


def test_missing_provider_and_public_database_are_caught() -> None:
    def program() -> None:
        provider = k8s.Provider("p", kubeconfig=pulumi.Output.secret("kubeconfig"))
        k8s.core.v1.Namespace("with", opts=pulumi.ResourceOptions(provider=provider))
        k8s.core.v1.Namespace("without")
        scaleway.databases.Instance("db", node_type="DB-DEV-S", engine="PostgreSQL-16", load_balancer={})
        scaleway.kubernetes.Cluster("loose", version="1.34", cni="cilium", delete_additional_resources=True)

    rec = record(program)
    assert kubernetes_without_explicit_provider(rec.registrations) == ["without"]
    assert public_databases(rec.registrations) == ["db"]
    assert clusters_off_the_private_network(rec.registrations) == ["loose"]


def test_duplicate_urn_raises() -> None:
    def program() -> None:
        scaleway.network.Vpc("same", name="first")
        scaleway.network.Vpc("same", name="second")

    with pytest.raises(DuplicateUrnError, match=r"two resources share the URN .*Vpc::same"):
        record(program)


def test_same_name_different_type_is_not_a_duplicate() -> None:
    def program() -> None:
        scaleway.network.Vpc("same", name="vpc")
        scaleway.registry.Namespace("same", name="images")

    assert len(record(program).registrations) == 2

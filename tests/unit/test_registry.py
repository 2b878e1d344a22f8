"""Registry: a private container registry namespace, protected where images must survive."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pytest

from scw_platform.registry import PULL_PERMISSION_SETS, Registry, RegistryArgs, RegistryPull, pull_identity
from tests.harness import Recording, record, unwrap

NAMESPACE = "scaleway:registry/namespace:Namespace"


def build(*, protect: bool, name: str = "registry", namespace: str = "acme-platform") -> Recording:
    def program() -> dict[str, object]:
        registry = Registry(name, RegistryArgs(namespace=namespace, region="fr-par", protect=protect))
        return {"endpoint": registry.endpoint, "namespaceId": registry.namespace_id}

    return record(program)


@pytest.fixture(scope="module")
def protected() -> Recording:
    return build(protect=True)


def test_namespace_is_a_child_named_after_the_component(protected: Recording) -> None:
    component = protected.named("registry")
    assert component.type == "platform:registry:Registry"
    assert [(c.name, c.type) for c in protected.children(component)] == [("registry-namespace", NAMESPACE)]


def test_namespace_is_private(protected: Recording) -> None:
    namespace = protected.named("registry-namespace")
    assert namespace.inputs["isPublic"] is False
    assert namespace.inputs["name"] == "acme-platform"
    assert namespace.inputs["region"] == "fr-par"


def test_protected_when_asked(protected: Recording) -> None:
    assert protected.named("registry-namespace").protect is True


def test_not_protected_otherwise() -> None:
    rec = build(protect=False, name="scratch", namespace="scratch-images")
    namespace = rec.named("scratch-namespace")
    assert namespace.protect is False
    assert namespace.inputs["name"] == "scratch-images"
    assert namespace.inputs["isPublic"] is False


def test_endpoint_and_id_are_exposed(protected: Recording) -> None:
    namespace = protected.named("registry-namespace")
    assert protected.outputs["endpoint"].value == "rg.fr-par.scw.cloud/acme-platform"
    assert not protected.outputs["endpoint"].secret
    assert protected.outputs["namespaceId"].value == namespace.id


# --- One pull identity per environment ------------------------------------------------------------

TOOLING_PROJECT = "3f9d1c7e-2b4a-4e8f-a6d5-0c1b9e8f7a62"
SECRET = "kubernetes:core/v1:Secret"


@pytest.fixture(scope="module")
def two_environments() -> Recording:
    """prod's and dev's pull identities and one pull Secret each, as two stacks would declare them
    (one program here, to compare them)."""

    def program() -> dict[str, object]:
        provider = k8s.Provider("unit-k8s", kubeconfig=pulumi.Output.secret("apiVersion: v1"))
        for environment in ("prod", "dev"):
            identity = pull_identity(
                environment, registry_project_id=TOOLING_PROJECT, tags=(f"environment={environment}",)
            )
            RegistryPull.of("rg.fr-par.scw.cloud", identity).pull_secret(
                f"{environment}-app-registry-pull",
                metadata={"namespace": "website"},
                opts=pulumi.ResourceOptions(provider=provider),
            )
        return {}

    return record(program)


def test_each_environment_has_its_own_read_only_identity_on_the_registrys_project(
    two_environments: Recording,
) -> None:
    for environment in ("prod", "dev"):
        component = two_environments.named(f"{environment}-registry-pull")
        assert component.type == "platform:identity:ScopedIdentity"
        policy = two_environments.named(f"{environment}-registry-pull-policy")
        assert policy.inputs["rules"] == [
            {"permissionSetNames": list(PULL_PERMISSION_SETS), "projectIds": [TOOLING_PROJECT]}
        ]
        application = two_environments.named(f"{environment}-registry-pull-app")
        assert policy.inputs["applicationId"] == application.id
        assert f"environment={environment}" in application.inputs["tags"]
    assert PULL_PERMISSION_SETS == ("ContainerRegistryReadOnly",)


def test_prods_and_devs_pull_secrets_hold_different_keys(two_environments: Recording) -> None:
    passwords = {}
    for environment in ("prod", "dev"):
        secret = two_environments.named(f"{environment}-app-registry-pull")
        assert secret.inputs["type"] == "kubernetes.io/dockerconfigjson"
        config = json.loads(unwrap(secret.inputs["stringData"])[".dockerconfigjson"])
        key = two_environments.named(f"{environment}-registry-pull-key")
        passwords[environment] = config["auths"]["rg.fr-par.scw.cloud"]["password"]
        assert passwords[environment] == unwrap(key.state["secretKey"])
        # The Secret depends on its own environment's key only.
        keys = [d for d in secret.dependencies if d.endswith("-registry-pull-key")]
        assert keys == [key.urn]
    assert passwords["prod"] != passwords["dev"]

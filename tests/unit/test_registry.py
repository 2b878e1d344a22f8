"""Registry: a private container registry namespace, protected where images must survive."""

from __future__ import annotations

import pytest

from scw_platform.registry import Registry, RegistryArgs
from tests.harness import Recording, record

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

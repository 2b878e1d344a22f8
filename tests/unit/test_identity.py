"""ScopedIdentity: an IAM application whose policy grants exactly the requested permission sets,
limited to one project, and an API key whose secret stays secret."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from offline.mocks import SECRET_MARKER
from scw_platform.identity import PERMISSION_SETS, ScopedIdentity, ScopedIdentityArgs
from tests.harness import Recording, is_secret, record

PROJECT = "6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"
APPLICATION = "scaleway:iam/application:Application"
POLICY = "scaleway:iam/policy:Policy"
API_KEY = "scaleway:iam/apiKey:ApiKey"


def build(name: str, permission_sets: Sequence[str]) -> Recording:
    def program() -> dict[str, object]:
        identity = ScopedIdentity(
            name,
            ScopedIdentityArgs(
                description=f"{name} identity",
                project_id=PROJECT,
                permission_sets=permission_sets,
                tags=("environment=tooling",),
            ),
        )
        return {
            "applicationId": identity.application_id,
            "accessKey": identity.access_key,
            "secretKey": identity.secret_key,
        }

    return record(program)


@pytest.fixture(scope="module")
def ci_push() -> Recording:
    return build("ci-push", ["ContainerRegistryFullAccess"])


@pytest.fixture(scope="module")
def multi() -> Recording:
    return build("dns-and-secrets", ["SecretManagerSecretAccess", "DomainsDNSFullAccess"])


def test_children_are_parented_and_named_after_the_component(ci_push: Recording) -> None:
    component = ci_push.named("ci-push")
    assert component.type == "platform:identity:ScopedIdentity"
    assert {(c.name, c.type) for c in ci_push.children(component)} == {
        ("ci-push-app", APPLICATION),
        ("ci-push-policy", POLICY),
        ("ci-push-key", API_KEY),
    }


def test_policy_is_scoped_to_the_project(ci_push: Recording) -> None:
    policy = ci_push.named("ci-push-policy")
    application = ci_push.named("ci-push-app")
    assert policy.inputs["applicationId"] == application.id
    assert policy.inputs["rules"] == [
        {"permissionSetNames": ["ContainerRegistryFullAccess"], "projectIds": [PROJECT]}
    ]
    # Never organization-wide.
    assert "organizationId" not in policy.inputs["rules"][0]
    assert not policy.inputs.get("noPrincipal")


def test_permission_sets_exactly_as_requested(multi: Recording) -> None:
    (rule,) = multi.named("dns-and-secrets-policy").inputs["rules"]
    assert sorted(rule["permissionSetNames"]) == ["DomainsDNSFullAccess", "SecretManagerSecretAccess"]
    assert rule["projectIds"] == [PROJECT]


def test_api_key_belongs_to_the_application(ci_push: Recording) -> None:
    key = ci_push.named("ci-push-key")
    assert key.inputs["applicationId"] == ci_push.named("ci-push-app").id
    assert key.inputs["defaultProjectId"] == PROJECT
    assert ci_push.outputs["applicationId"].value == ci_push.named("ci-push-app").id


def test_secret_key_is_secret_access_key_is_not(ci_push: Recording) -> None:
    secret_key = ci_push.outputs["secretKey"]
    assert secret_key.secret
    assert SECRET_MARKER in secret_key.value
    assert is_secret(ci_push.named("ci-push-key").state["secretKey"])
    # The access key is an identifier, useful in plain sight (e.g. in an audit log).
    access_key = ci_push.outputs["accessKey"]
    assert access_key.value.startswith("SCW")
    assert SECRET_MARKER not in access_key.value


@pytest.mark.parametrize(
    ("permission_sets", "message"),
    [
        ([], "must not be empty"),
        (["AllProductsFullAccess"], "unknown permission sets ['AllProductsFullAccess']"),
        (["ContainerRegistryReadOnly", "IAMManager"], "unknown permission sets ['IAMManager']"),
        # Buckets, bucket policies and every object of the project: no identity's.
        (["ObjectStorageFullAccess"], "unknown permission sets ['ObjectStorageFullAccess']"),
        (
            ["ObjectStorageBucketPolicyFullAccess"],
            "unknown permission sets ['ObjectStorageBucketPolicyFullAccess']",
        ),
    ],
)
def test_args_refuse_unknown_or_empty_permission_sets(permission_sets: list[str], message: str) -> None:
    with pytest.raises(ValueError, match="permission") as caught:
        ScopedIdentityArgs(description="x", project_id=PROJECT, permission_sets=permission_sets)
    assert message in str(caught.value)


def test_every_allowed_set_is_accepted() -> None:
    args = ScopedIdentityArgs(description="x", project_id=PROJECT, permission_sets=sorted(PERMISSION_SETS))
    assert set(args.permission_sets) == PERMISSION_SETS
    assert "AllProductsFullAccess" not in PERMISSION_SETS


def test_no_object_storage_full_access_set_is_handed_out() -> None:
    object_storage = {name for name in PERMISSION_SETS if name.startswith("ObjectStorage")}
    assert object_storage == {
        "ObjectStorageReadOnly",
        "ObjectStorageObjectsRead",
        "ObjectStorageObjectsWrite",
    }

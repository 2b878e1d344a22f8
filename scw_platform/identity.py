"""A least-privilege machine identity: IAM application, a policy of named permission sets limited
to one project, and an API key. One per consumer (CI, image pulls, each in-cluster controller)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumiverse_scaleway as scaleway

#: Permission sets the platform hands out. Anything broader (``AllProductsFullAccess``, IAM
#: management) is refused: a leaked key must not be able to grant itself more.
PERMISSION_SETS = frozenset(
    {
        "ContainerRegistryReadOnly",
        "ContainerRegistryFullAccess",
        "SecretManagerSecretAccess",
        "SecretManagerReadOnly",
        "SecretManagerFullAccess",
        "DomainsDNSFullAccess",
        "ObservabilityFullAccess",
        # Object Storage: the object-level sets only. ObjectStorageFullAccess (buckets, their
        # policies and every object of the project) is no job's: the restore check reads and writes
        # objects, its bucket policy narrows that to its prefix (scw_platform.backup). Names and
        # scope: https://www.scaleway.com/en/docs/iam/reference-content/permission-sets/
        # (scaleway/docs-content pages/iam/reference-content/permission-sets.mdx, validated
        # 2026-03-20), "Storage > Object Storage".
        "ObjectStorageReadOnly",
        "ObjectStorageObjectsRead",
        "ObjectStorageObjectsWrite",
        # The backup drill's: it creates and deletes a scratch database instance.
        "RelationalDatabasesFullAccess",
    }
)


@dataclass(frozen=True, kw_only=True)
class ScopedIdentityArgs:
    description: str
    project_id: pulumi.Input[str]
    permission_sets: Sequence[str]
    tags: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not self.permission_sets:
            raise ValueError("permission_sets must not be empty")
        unknown = sorted(set(self.permission_sets) - PERMISSION_SETS)
        if unknown:
            raise ValueError(f"unknown permission sets {unknown}; allowed: {sorted(PERMISSION_SETS)}")


class ScopedIdentity(pulumi.ComponentResource):
    #: What its policy grants, on :attr:`project_id` only.
    permission_sets: tuple[str, ...]
    project_id: pulumi.Input[str]
    application_id: pulumi.Output[str]
    access_key: pulumi.Output[str]
    #: Secret.
    secret_key: pulumi.Output[str]

    def __init__(
        self, name: str, args: ScopedIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:identity:ScopedIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        application = scaleway.iam.Application(
            f"{name}-app",
            name=name,
            description=args.description,
            tags=list(args.tags),
            opts=child,
        )
        scaleway.iam.Policy(
            f"{name}-policy",
            name=name,
            description=args.description,
            application_id=application.id,
            rules=[
                {
                    "permission_set_names": sorted(args.permission_sets),
                    # Scoped to the one project, never the organization.
                    "project_ids": [args.project_id],
                }
            ],
            tags=list(args.tags),
            opts=child,
        )
        key = scaleway.iam.ApiKey(
            f"{name}-key",
            application_id=application.id,
            description=args.description,
            default_project_id=args.project_id,
            opts=child,
        )
        self.permission_sets = tuple(sorted(args.permission_sets))
        self.project_id = args.project_id
        self.application_id = application.id
        self.access_key = key.access_key
        self.secret_key = pulumi.Output.secret(key.secret_key)
        self.register_outputs({"applicationId": self.application_id, "accessKey": self.access_key})

    def key_data(
        self, access: str = "SCW_ACCESS_KEY", secret: str = "SCW_SECRET_KEY"
    ) -> dict[str, pulumi.Output[str]]:
        """The API key as a Kubernetes Secret's ``string_data`` under the given key names, both
        values Pulumi secrets (the access key too: it names the key, and the two travel together)."""
        return {access: pulumi.Output.secret(self.access_key), secret: pulumi.Output.secret(self.secret_key)}

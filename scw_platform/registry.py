"""A private container registry namespace (tooling). Images are pushed by CI and pulled by the
clusters, each with its own scoped identity.

One pull identity per environment (:func:`pull_identity`): each workload stack declares its own,
read-only on the registry's project, and its clusters' pull Secrets carry that key only. A key that
leaks from one cluster is revoked by that environment's ``pulumi up`` without touching the others,
and Scaleway's audit trail names the environment that pulled.

What Scaleway's IAM cannot do (so what this module does not pretend to):

* scope a Container Registry permission to one namespace: rules are scoped to projects or the
  organization; resource-level conditions exist for IAM, Key Manager and Secret Manager only
  (https://www.scaleway.com/en/docs/iam/reference-content/supported-products-resource-level/,
  scaleway/docs-content pages/iam/reference-content/supported-products-resource-level.mdx,
  validated 2026-07-13). A second namespace in the same project is therefore no boundary: the CI
  push key (``ContainerRegistryFullAccess``, the only set that writes) reaches every namespace of
  the project;
* make a tag immutable: a namespace has a name, description, project and ``is_public`` and nothing
  else (pulumiverse_scaleway 1.60 ``registry.Namespace``; Scaleway Registry API v1 namespaces).

What the platform does instead: what it runs with its own credentials (the restore check, the
backup drill, production's apps) is pulled by digest in production, so a tag that CI moves changes
nothing that runs; CI can still delete a manifest (an outage of the next pull, never another image
running under the platform's name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_scaleway as scaleway
from pydantic import StringConstraints

from scw_platform import kube
from scw_platform.identity import ScopedIdentity, ScopedIdentityArgs
from scw_platform.settings import Settings

#: What a cluster's pull key may do: list and read images, on the registry's project only.
PULL_PERMISSION_SETS = ("ContainerRegistryReadOnly",)

# --------------------------------------------------------------------------------------------
# Settings: the typed input of this module's component (platform:registry).
# --------------------------------------------------------------------------------------------


class RegistrySettings(Settings):
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{2,52}[a-z0-9])$")]
    """Container Registry namespace: images live at rg.<region>.scw.cloud/<namespace>/<repository>.
    Namespace names are unique across Scaleway.
    """


@dataclass(frozen=True, kw_only=True)
class RegistryArgs:
    namespace: str
    region: str
    protect: bool


class Registry(pulumi.ComponentResource):
    namespace_id: pulumi.Output[str]
    #: e.g. rg.fr-par.scw.cloud/acme-platform
    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:registry:Registry", name, None, opts)
        namespace = scaleway.registry.Namespace(
            f"{name}-namespace",
            name=args.namespace,
            description="Platform images, built by CI and pulled by the clusters",
            is_public=False,
            region=args.region,
            # Every image the platform runs lives here; losing the namespace deletes them all.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.namespace_id = namespace.id
        self.endpoint = namespace.endpoint
        self.register_outputs({"namespaceId": self.namespace_id, "endpoint": self.endpoint})


def pull_identity_name(environment: str) -> str:
    """``<environment>-registry-pull``: the resource name of an environment's pull identity."""
    return f"{environment}-registry-pull"


def pull_identity(
    environment: str,
    *,
    registry_project_id: pulumi.Input[str],
    tags: Sequence[str] = (),
    opts: pulumi.ResourceOptions | None = None,
) -> ScopedIdentity:
    """``environment``'s own read-only identity on the registry's project (tooling's): its clusters'
    pull Secrets, and nothing else, carry its key."""
    return ScopedIdentity(
        pull_identity_name(environment),
        ScopedIdentityArgs(
            description=f"{environment} clusters: pull images from the platform registry",
            project_id=registry_project_id,
            permission_sets=list(PULL_PERMISSION_SETS),
            tags=tags,
        ),
        opts=opts,
    )


@dataclass(frozen=True, kw_only=True)
class RegistryPull:
    """Read-only credentials for the private registry an image lives in (one environment's)."""

    host: pulumi.Input[str]
    #: Secret.
    password: pulumi.Input[str]

    @classmethod
    def of(cls, host: pulumi.Input[str], identity: ScopedIdentity) -> RegistryPull:
        """The registry at ``host`` with ``identity``'s key (a :func:`pull_identity`)."""
        return cls(host=host, password=identity.secret_key)

    def pull_secret(
        self, resource_name: str, *, metadata: Mapping[str, Any], opts: pulumi.ResourceOptions
    ) -> k8s.core.v1.Secret:
        """The namespace's image pull Secret for this registry (``kube.image_pull_secret``)."""
        return kube.image_pull_secret(
            resource_name, metadata=metadata, host=self.host, password=self.password, opts=opts
        )

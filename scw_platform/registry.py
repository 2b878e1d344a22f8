"""A private container registry namespace (tooling). Images are pushed by CI and pulled by the
clusters, each with its own scoped identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pulumi
import pulumiverse_scaleway as scaleway
from pydantic import StringConstraints

from scw_platform.settings import Settings

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

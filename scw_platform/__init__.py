"""scw_platform: typed Pulumi components for a Kubernetes platform on Scaleway.

One module per capability, each with its typed settings models beside the component that takes
them. The library reads no ``pulumi.Config``, knows no roles and no repository layout: a program
(this repository's ``program`` package, or ``examples/``) validates its own configuration,
applies its own policy and passes settings and data in.
"""

__version__ = "0.1.0"

"""The platform's policy rules, as pure functions over a neutral view of resources.

The same rules run in two places:

* offline, on a plan's ``inventory.json`` (``python -m offline.validate``), where secret values
  appear as ``"[secret]"`` and ``retainOnDelete`` is recorded;
* in Pulumi CrossGuard (``pulumi preview --policy-pack policy``) through the adapters in
  ``policy/crossguard.py``.

A rule never imports Pulumi: it sees :class:`ResourceView` (type, name, inputs, protect,
retain-on-delete, provider, dependencies) and, for rules about the whole stack, a
:class:`StackView` (every resource, the stack's role, and what the caller can see). Some facts
are invisible to Python policy packs: pulumi-policy 1.21 hands a policy secret values already
unwrapped, and the analyzer protocol carries no ``retainOnDelete``. Rules that need those declare
it in ``needs``; CrossGuard reports them "not applicable" and the offline run enforces them.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

SECRET = "[secret]"
UNKNOWN = "[unknown]"

ROLES = ("tooling", "production", "development")
#: Label that marks a Namespace as an application namespace (one per onboarded app).
APP_NAMESPACE_LABEL = "platform.scw/app-namespace"
PSS_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

#: Capabilities a caller may lack: secretness of values, and the retainOnDelete option.
SECRETS = "secrets"
RETAIN_ON_DELETE = "retain_on_delete"
ALL_CAPABILITIES = frozenset({SECRETS, RETAIN_ON_DELETE})

RDB_INSTANCE = "scaleway:databases/instance:Instance"
RDB_DATABASE = "scaleway:databases/database:Database"
KAPSULE_CLUSTER = "scaleway:kubernetes/cluster:Cluster"
KAPSULE_POOL = "scaleway:kubernetes/pool:Pool"
KAPSULE_ACL = "scaleway:kubernetes/acl:Acl"
REGISTRY_NAMESPACE = "scaleway:registry/namespace:Namespace"
LB_IP = "scaleway:loadbalancers/ip:Ip"
IAM_POLICY = "scaleway:iam/policy:Policy"
K8S_PROVIDER = "pulumi:providers:kubernetes"
HELM_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
K8S_SECRET = "kubernetes:core/v1:Secret"
GATEWAY_KINDS = ("Gateway", "ListenerSet")

_K8S_OBJECT = re.compile(r"^kubernetes:(?P<group>[^:/]+)/(?P<version>[^:/]+):(?P<kind>[A-Za-z0-9]+)$")
_NOT_OBJECTS = re.compile(r"^kubernetes:(helm\.sh|yaml|kustomize)/")
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


# --------------------------------------------------------------------------------------------
# Views.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceView:
    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    protect: bool = False
    #: None when the caller cannot see the option (CrossGuard).
    retain_on_delete: bool | None = None
    #: URN of the resource's provider ("" for the default provider or a provider itself).
    provider: str = ""
    dependencies: tuple[str, ...] = ()

    def get(self, *path: str | int) -> Any:
        return dig(self.inputs, *path)

    @property
    def kind(self) -> str | None:
        match = _K8S_OBJECT.match(self.type)
        return match["kind"] if match and not _NOT_OBJECTS.match(self.type) else None

    @property
    def is_kubernetes_object(self) -> bool:
        return self.kind is not None

    @property
    def is_helm(self) -> bool:
        return self.type in HELM_TYPES

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.inputs.get("metadata")
        return value if isinstance(value, Mapping) else {}

    @property
    def labels(self) -> Mapping[str, Any]:
        value = self.metadata.get("labels")
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class StackView:
    resources: tuple[ResourceView, ...]
    #: tooling | production | development; None when unknown (treated as production).
    role: str | None = None
    #: What the caller can see (see module docstring): offline sees everything.
    capabilities: frozenset[str] = ALL_CAPABILITIES
    #: The stack's platform:budget map (monthlyEur, usage), when the caller knows it: the
    #: stack-budget rule (policy/budget.py) checks the cost estimate against it.
    budget: Mapping[str, Any] | None = None

    @property
    def effective_role(self) -> str:
        return self.role or "production"

    def of_type(self, *types: str) -> list[ResourceView]:
        return [r for r in self.resources if r.type in types]


@dataclass(frozen=True, order=True)
class Violation:
    rule: str
    urn: str
    path: str
    message: str

    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


Finding = tuple[str, str]  # (path in the resource's inputs, message)
ResourceCheck = Callable[[ResourceView, StackView], Iterable[Finding]]
StackCheck = Callable[[StackView], Iterable[tuple[ResourceView, Finding]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    #: Which resources a per-resource rule looks at.
    applies: Callable[[ResourceView], bool]
    check: ResourceCheck | None = None
    #: Rules that relate resources to each other look at the whole stack instead.
    stack_check: StackCheck | None = None
    #: Roles the rule is enforced for (None: every role).
    roles: frozenset[str] | None = None
    #: Capabilities the rule needs (see module docstring).
    needs: frozenset[str] = frozenset()
    #: The CrossGuard policy config the rule reads beyond the role (JSON schema properties).
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_stack_rule(self) -> bool:
        """Needs more than one resource in view: the stack's role or other resources."""
        return self.stack_check is not None or self.roles is not None

    def enforced_for(self, stack: StackView) -> bool:
        return self.roles is None or stack.effective_role in self.roles

    def missing(self, stack: StackView) -> frozenset[str]:
        return self.needs - stack.capabilities

    def evaluate(self, stack: StackView) -> list[Violation]:
        if not self.enforced_for(stack) or self.missing(stack):
            return []
        found: list[Violation] = []
        if self.stack_check is not None:
            for resource, (path, message) in self.stack_check(stack):
                found.append(Violation(self.name, resource.urn, path, message))
        if self.check is not None:
            for resource in stack.resources:
                if self.applies(resource):
                    found.extend(self.check_resource(resource, stack))
        return sorted(set(found))

    def check_resource(self, resource: ResourceView, stack: StackView) -> list[Violation]:
        assert self.check is not None
        return [Violation(self.name, resource.urn, p, m) for p, m in self.check(resource, stack)]


# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------


def dig(value: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list | tuple) or part >= len(value):
                return None
            value = value[part]
        else:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
    return value


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN


def is_masked_secret(value: Any) -> bool:
    return value == SECRET


def _types(*types: str) -> Callable[[ResourceView], bool]:
    wanted = frozenset(types)
    return lambda r: r.type in wanted


def _truthy_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0


def role_from_tags(resources: Iterable[ResourceView]) -> str | None:
    """The program tags every Scaleway resource ``role=<role>`` (PlatformConfig.tags)."""
    for resource in sorted(resources, key=lambda r: r.urn):
        tags = resource.inputs.get("tags")
        if isinstance(tags, list | tuple):
            for tag in tags:
                if isinstance(tag, str) and tag.startswith("role=") and tag[5:] in ROLES:
                    return tag[5:]
    return None


# --------------------------------------------------------------------------------------------
# Scaleway rules.
# --------------------------------------------------------------------------------------------


def _rdb_private_only(r: ResourceView, _: StackView) -> Iterator[Finding]:
    # Any load_balancer block, even an empty one, gives the instance a public endpoint.
    load_balancer = r.get("loadBalancer")
    if load_balancer is not None and not is_unknown(load_balancer):
        yield "loadBalancer", "a public endpoint (load_balancer) is set; the database must be private-only"
    private = r.get("privateNetwork")
    if not private:
        yield "privateNetwork", "no private network endpoint: the database would only be reachable publicly"


def _rdb_backups(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.get("disableBackup") is True:
        yield "disableBackup", "backups are disabled"
    retention = r.get("backupScheduleRetention")
    if is_unknown(retention):
        return
    if not isinstance(retention, int | float):
        yield "backupScheduleRetention", "no backup retention set (need >= 7 days)"
    elif retention < 7:
        yield "backupScheduleRetention", f"backup retention is {retention:g} day(s); need >= 7"


def _rdb_encrypted(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.get("encryptionAtRest") is not True:
        yield "encryptionAtRest", "encryption at rest must be enabled"


def _cluster_private_network(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if not r.get("privateNetworkId"):
        yield "privateNetworkId", "the cluster is not attached to a private network"


def _pool_private(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.get("publicIpDisabled") is not True:
        yield "publicIpDisabled", "nodes get public IPs; production nodes egress through the Public Gateway"


def _acl_not_world(r: ResourceView, _: StackView) -> Iterator[Finding]:
    rules = r.get("aclRules")
    if r.get("noIpAllowed") is True:
        return
    if not _truthy_list(rules):
        yield "aclRules", "the ACL has no rule: the API server would be open to every address"
        return
    for i, rule in enumerate(rules):
        ip = dig(rule, "ip")
        if not isinstance(ip, str) or is_unknown(ip):
            continue
        try:
            network = ipaddress.ip_network(ip, strict=False)
        except ValueError:
            yield f"aclRules[{i}].ip", f"{ip!r} is not an IP range"
            continue
        if network.prefixlen == 0:
            yield f"aclRules[{i}].ip", f"{ip} opens the Kubernetes API to the whole internet"


def _clusters_have_acl(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    acl_dependencies = {d for acl in stack.of_type(KAPSULE_ACL) for d in acl.dependencies}
    for cluster in stack.of_type(KAPSULE_CLUSTER):
        if cluster.urn not in acl_dependencies:
            yield cluster, ("", "no API-server ACL (scaleway:kubernetes/acl:Acl) restricts this cluster")


def _registry_private(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.get("isPublic") is not False:
        yield "isPublic", "the registry namespace must be private (is_public=False)"


_FORBIDDEN_PERMISSION_SETS = frozenset({"AllProductsFullAccess", "IAMManager", "OrganizationManager"})


def _iam_scoped(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.get("organizationId"):
        yield "organizationId", "policy rules must be scoped to a project, not the organization"
    rules = r.get("rules")
    if not _truthy_list(rules):
        yield "rules", "an IAM policy without rules"
        return
    for i, rule in enumerate(rules):
        if dig(rule, "organizationId"):
            yield f"rules[{i}].organizationId", "scoped to the whole organization; scope it to the project"
        if not _truthy_list(dig(rule, "projectIds")):
            yield f"rules[{i}].projectIds", "no project scope"
        for name in dig(rule, "permissionSetNames") or []:
            if name in _FORBIDDEN_PERMISSION_SETS:
                yield f"rules[{i}].permissionSetNames", f"{name} is broader than any platform identity needs"


#: ObjectStorageFullAccess (buckets, bucket policies, every object of the project) and
#: ObjectStorageBucketPolicyFullAccess: no job or controller needs either; the restore check holds
#: ObjectStorageObjectsRead and ObjectStorageObjectsWrite, narrowed by its bucket policy
#: (https://www.scaleway.com/en/docs/iam/reference-content/permission-sets/, Object Storage).
_OBJECT_STORAGE_FULL = re.compile(r"^ObjectStorage\w*FullAccess$")


def _no_object_storage_full_access(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if not r.get("applicationId"):
        return  # a person's or a group's policy: not the program's to decide
    for i, rule in enumerate(r.get("rules") or []):
        for name in dig(rule, "permissionSetNames") or []:
            if isinstance(name, str) and _OBJECT_STORAGE_FULL.match(name):
                yield (
                    f"rules[{i}].permissionSetNames",
                    f"{name} on a job or controller identity: grant ObjectStorageObjectsRead/"
                    "ObjectStorageObjectsWrite (and a bucket policy for the bucket) instead",
                )


IAM_APPLICATION = "scaleway:iam/application:Application"
IAM_API_KEY = "scaleway:iam/apiKey:ApiKey"
PULL_SECRET_TYPE = "kubernetes.io/dockerconfigjson"
#: What a registry pull key's application may hold.
_PULL_SETS = frozenset({"ContainerRegistryReadOnly"})


def _tag(r: ResourceView, key: str) -> str | None:
    for tag in r.inputs.get("tags") or ():
        if isinstance(tag, str) and tag.startswith(f"{key}="):
            return tag[len(key) + 1 :]
    return None


def environment_from_tags(resources: Iterable[ResourceView]) -> str | None:
    """The stack's environment: the program tags every Scaleway resource ``environment=<name>``,
    so the most frequent value is the stack's (a stray resource of another environment's, the very
    thing a rule looks for, does not outvote the stack); None on a tie or without tags."""
    counts = Counter(
        tag for r in resources if r.type.startswith("scaleway:") and (tag := _tag(r, "environment"))
    )
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _depended_on(r: ResourceView, by_urn: Mapping[str, ResourceView], type_token: str) -> list[ResourceView]:
    return [by_urn[d] for d in r.dependencies if d in by_urn and by_urn[d].type == type_token]


def _granted_sets(stack: StackView, by_urn: Mapping[str, ResourceView]) -> dict[str, set[str]]:
    """Permission sets by IAM application URN (over every policy naming it)."""
    granted: dict[str, set[str]] = {}
    for policy in stack.of_type(IAM_POLICY):
        names = {n for rule in policy.get("rules") or [] for n in dig(rule, "permissionSetNames") or []}
        for app in _depended_on(policy, by_urn, IAM_APPLICATION):
            granted.setdefault(app.urn, set()).update(names)
    return granted


def _pull_key_findings(
    app: ResourceView, environment: str | None, granted: Mapping[str, set[str]]
) -> Iterator[Finding]:
    owner = _tag(app, "environment")
    if environment is not None and owner != environment:
        yield (
            "stringData",
            f"its key is application {app.name}'s, of environment {owner or '(none)'}, "
            f"not this stack's environment {environment}",
        )
    extra = sorted(granted.get(app.urn, set()) - _PULL_SETS)
    if extra:
        yield "stringData", f"its key's application {app.name} may do more than pull: {', '.join(extra)}"


def _pull_keys_own_environment(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    """Every image pull Secret carries an API key of this stack, whose application is this
    environment's and may only pull. A key read from another stack (a StackReference) is shared
    with every stack that reads it: revoking it breaks them all, and a leak from one cluster opens
    the registry to all."""
    by_urn = {r.urn: r for r in stack.resources}
    environment = environment_from_tags(stack.resources)
    granted = _granted_sets(stack, by_urn)
    for secret in stack.of_type(K8S_SECRET):
        if secret.get("type") != PULL_SECRET_TYPE:
            continue
        keys = _depended_on(secret, by_urn, IAM_API_KEY)
        if not keys:
            yield (
                secret,
                (
                    "stringData",
                    "the pull Secret's key is no API key of this stack (read from another stack, it is "
                    "shared with every stack that reads it): declare the environment's own pull identity",
                ),
            )
        for key in keys:
            for app in _depended_on(key, by_urn, IAM_APPLICATION):
                for finding in _pull_key_findings(app, environment, granted):
                    yield secret, finding


_STATEFUL = (RDB_INSTANCE, RDB_DATABASE, REGISTRY_NAMESPACE, LB_IP)


def _protected(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if not r.protect:
        yield "", "stateful or address-bearing resource without protect=True"


def _retained(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.retain_on_delete is False:
        yield "", "the reserved ingress IP must be retain_on_delete=True: the address outlives the stack"


# --------------------------------------------------------------------------------------------
# Kubernetes rules.
# --------------------------------------------------------------------------------------------


def _explicit_provider(r: ResourceView, _: StackView) -> Iterator[Finding]:
    # Default providers are named default_<version> (pulumi:disable-default-providers forbids them).
    if not r.provider or r.provider.rsplit("::", 1)[-1].startswith("default"):
        yield "", "no explicit Kubernetes provider: it would deploy to whatever kubeconfig is current"


def _kubeconfig_secret(r: ResourceView, _: StackView) -> Iterator[Finding]:
    kubeconfig = r.get("kubeconfig")
    if kubeconfig is not None and not is_masked_secret(kubeconfig) and not is_unknown(kubeconfig):
        yield "kubeconfig", "the provider's kubeconfig is not a Pulumi secret"


def _helm_pinned(r: ResourceView, _: StackView) -> Iterator[Finding]:
    version = r.get("version")
    if is_unknown(version):
        return
    if not isinstance(version, str) or not version.strip():
        yield "version", "no chart version: Helm would install whatever is newest"
    elif not _EXACT_VERSION.fullmatch(version.strip()):
        yield "version", f"chart version {version!r} is not an exact version (no ranges, wildcards or tags)"


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None."""
    if not isinstance(image, str) or is_unknown(image) or is_masked_secret(image):
        return None
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (it means latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag or tag == "latest":
        return f"image {image!r} uses the tag latest"
    return None


def pod_spec_path(kind: str | None) -> tuple[str, ...] | None:
    return _POD_SPEC_PATHS.get(kind or "")


def _images_pinned(r: ResourceView, _: StackView) -> Iterator[Finding]:
    path = pod_spec_path(r.kind)
    assert path is not None
    spec = dig(r.inputs, *path)
    if not isinstance(spec, Mapping):
        return
    prefix = ".".join(path)
    for list_name in _CONTAINER_LISTS:
        containers = spec.get(list_name)
        if not isinstance(containers, list | tuple):
            continue
        for i, container in enumerate(containers):
            image = dig(container, "image")
            if image is None:
                yield f"{prefix}.{list_name}[{i}].image", "container without an image"
                continue
            problem = image_problem(image)
            if problem:
                yield f"{prefix}.{list_name}[{i}].image", problem


def _helm_images_pinned(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """``image: {tag: latest}`` or ``image: repo:latest`` anywhere in a release's values."""

    def walk(node: Any, path: str) -> Iterator[Finding]:
        if isinstance(node, Mapping):
            for key, value in node.items():
                sub = f"{path}.{key}"
                if key == "image" and isinstance(value, Mapping) and value.get("tag") == "latest":
                    yield f"{sub}.tag", "image tag latest"
                elif key == "image" and isinstance(value, str) and value.endswith(":latest"):
                    yield sub, f"image {value!r} uses the tag latest"
                else:
                    yield from walk(value, sub)
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")

    yield from walk(r.get("values"), "values")


# --- Production runs every image by digest, tag kept (scw_platform/data/images.yaml records
# which digest each platform image is pinned to, and where each chart takes it).

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
#: How the message names what a values path holds in each form of scw_platform.images.Form.
_DIGEST_FORMS = {
    "tag-suffix": "<tag>@sha256:<digest>",
    "digest-appended": "sha256:<digest>",
    "hex-appended": "the digest's 64 hex digits (the chart adds @sha256:)",
}


def digest_problem(image: Any) -> str | None:
    """Why an image reference is not ``registry/repository:tag@sha256:<64 hex>``, or None."""
    if not isinstance(image, str) or is_unknown(image) or is_masked_secret(image):
        return None
    reference, at, digest = image.partition("@")
    if not at:
        return f"image {image!r} is not pinned by digest (production runs <image>:<tag>@sha256:<digest>)"
    if not _SHA256.fullmatch(digest):
        return f"image {image!r}: {digest!r} is not a digest (sha256: followed by 64 lowercase hex digits)"
    if ":" not in reference.rsplit("/", 1)[-1]:
        return f"image {image!r} has a digest but no tag (keep the tag, for readability)"
    return None


def _chart_image_runs(condition: Any, values: Mapping[str, Any]) -> bool:
    value = dig(values, *condition.path.split("."))
    return (condition.default if value is None else value) == condition.equals


def _images_by_digest(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """A recorded gap (an entry of images.yaml without a digest, its ``gap`` saying why none
    could be read) is admitted as recorded, at its exact tag: the list of gaps production runs is
    asserted in tests/unit/test_images.py and printed in docs/charts.md, and
    scripts/resolve_digests.py --write closes them where a registry is reachable."""
    # Imported here: the library's image list loads a YAML file, which only this rule needs.
    from scw_platform import images as platform_images

    if r.is_helm:
        yield from _helm_values_pin_digests(r)
        return
    for path, container in _containers(r):
        image = dig(container, "image")
        problem = digest_problem(image)
        if problem and not (isinstance(image, str) and platform_images.gap_for(image)):
            yield f"{path}.image", problem
        elif not problem and isinstance(image, str) and not is_unknown(image) and not is_masked_secret(image):
            # A well-formed digest that is not the one recorded for that tag: stale, or another image.
            entry = platform_images.recorded_for(image)
            if entry is not None and entry.digest is not None and not image.endswith(f"@{entry.digest}"):
                yield (
                    f"{path}.image",
                    f"image {image!r}: scw_platform/data/images.yaml records {entry.digest} for "
                    f"{entry.name_ref}:{entry.tag} ({entry.name})",
                )


def _helm_values_pin_digests(r: ResourceView) -> Iterator[Finding]:
    # Imported here: the library's image list loads a YAML file, which only this rule needs.
    from scw_platform import images as platform_images

    values = r.get("values")
    chart = r.get("chart")
    if not isinstance(values, Mapping) or not isinstance(chart, str):
        return  # masked or unknown values: nothing to read (the values rules say why elsewhere)
    for entry in platform_images.for_chart(chart):
        assert entry.chart is not None
        if not all(_chart_image_runs(c, values) for c in entry.chart.enabled_when):
            continue
        if entry.digest is None:
            continue  # a recorded gap (see _images_by_digest)
        for vp in entry.chart.values:
            if vp.form == "none":
                continue  # the chart cannot take a digest there: docs/charts.md lists it
            value = dig(values, *vp.path.split("."))
            form = _DIGEST_FORMS[vp.form]
            # The recorded pin itself, not any well-formed digest: a stale or foreign one fails.
            if value == entry.value_for(vp):
                continue
            yield (
                f"values.{vp.path}",
                f"{entry.registry}/{entry.repository} ({entry.name} in scw_platform/data/images.yaml) is "
                f"not pinned by digest: set {vp.path} to {form} ({entry.digest}), got {value!r}",
            )


def _is_app_namespace(r: ResourceView) -> bool:
    return r.type == NAMESPACE and str(r.labels.get(APP_NAMESPACE_LABEL, "")).lower() == "true"


def _restricted_pss(r: ResourceView, _: StackView) -> Iterator[Finding]:
    if r.labels.get(PSS_ENFORCE_LABEL) != "restricted":
        yield (
            f"metadata.labels.{PSS_ENFORCE_LABEL}",
            "an app namespace must enforce the restricted Pod Security Standard",
        )


def is_default_deny(policy: ResourceView) -> bool:
    spec = policy.get("spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    if selector is None or not isinstance(selector, Mapping):
        return False
    if selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    types = spec.get("policyTypes") or []
    if not {"Ingress", "Egress"} <= set(types):
        return False
    return not spec.get("ingress") and not spec.get("egress")


def _namespaces_default_deny(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    yield from _without_default_deny(stack, _is_app_namespace, "app namespace")


def _without_default_deny(
    stack: StackView, selected: Callable[[ResourceView], bool], what: str
) -> Iterator[tuple[ResourceView, Finding]]:
    """Every ``selected`` Namespace has a default-deny NetworkPolicy of its own."""
    denied = {
        (p.provider, dig(p.metadata, "namespace"))
        for p in stack.of_type(NETWORK_POLICY)
        if is_default_deny(p)
    }
    for namespace in stack.resources:
        if not selected(namespace):
            continue
        name = namespace.metadata.get("name")
        if not isinstance(name, str) or not name:
            yield (
                namespace,
                ("metadata.name", f"the {what} needs an explicit name to attach policies to"),
            )
        elif (namespace.provider, name) not in denied:
            yield (
                namespace,
                (
                    "",
                    f"{what} {name!r} has no default-deny NetworkPolicy "
                    "(empty podSelector, policyTypes Ingress and Egress, no rules)",
                ),
            )


#: The namespaces CI jobs run in (scw_platform.ci).
CI_NAMESPACES = frozenset({"ci"})
_GITLAB_PRIVILEGED = re.compile(r"^\s*privileged\s*=\s*true\s*$", re.MULTILINE)


def _is_ci_namespace(r: ResourceView) -> bool:
    return r.type == NAMESPACE and r.metadata.get("name") in CI_NAMESPACES


def _ci_namespaces_default_deny(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    yield from _without_default_deny(stack, _is_ci_namespace, "CI namespace")


def _is_platform_namespace(r: ResourceView) -> bool:
    """Every other Namespace the plan declares: the platform creates it to install into (Traefik,
    cert-manager and its DNS-01 webhook, External Secrets, Argo CD, argocd-manager, monitoring, the
    restore check and drill, the GitOps and runner-controller namespaces). Chosen by declaration,
    not by label: the monitoring namespace deliberately lacks the platform-namespace label, and a
    namespace must not leave the rule by losing one."""
    return r.type == NAMESPACE and not _is_app_namespace(r) and not _is_ci_namespace(r)


def _platform_namespaces_default_deny(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    yield from _without_default_deny(stack, _is_platform_namespace, "platform namespace")


def _containers(r: ResourceView) -> Iterator[tuple[str, Any]]:
    """(path, container) of every container of a pod-spec object."""
    path = pod_spec_path(r.kind)
    spec = dig(r.inputs, *path) if path is not None else None
    if not isinstance(spec, Mapping) or path is None:
        return
    for list_name in _CONTAINER_LISTS:
        containers = spec.get(list_name)
        for i, container in enumerate(containers if isinstance(containers, list | tuple) else ()):
            yield f"{'.'.join(path)}.{list_name}[{i}]", container


def _not_privileged(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """No container anywhere is privileged: pod specs, and Helm values (a ``privileged: true`` key
    at any depth, or GitLab Runner's ``privileged = true`` in its config template)."""
    if r.is_helm:
        yield from _privileged_values(r.get("values"), "values")
        return
    for path, container in _containers(r):
        if dig(container, "securityContext", "privileged") is True:
            yield f"{path}.securityContext.privileged", "privileged container"


def _privileged_values(node: Any, path: str) -> Iterator[Finding]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "privileged" and value is True:
                yield f"{path}.{key}", "privileged: true in Helm values"
            else:
                yield from _privileged_values(value, f"{path}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _privileged_values(value, f"{path}[{i}]")
    elif isinstance(node, str) and _GITLAB_PRIVILEGED.search(node):
        yield path, "privileged = true in a runner configuration"


def _in_ci(r: ResourceView) -> bool:
    namespace = dig(r.metadata, "namespace") if not r.is_helm else r.get("namespace")
    return namespace in CI_NAMESPACES


def _build_pods_bounded(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """Every container CI starts has an ephemeral-storage limit: pod specs in a CI namespace,
    GitLab Runner's job pods (its config template) and ARC's runner pods (the scale set's template)."""
    if not r.is_helm:
        for path, container in _containers(r):
            if dig(container, "resources", "limits", "ephemeral-storage") is None:
                yield f"{path}.resources.limits", "no ephemeral-storage limit"
        return
    values = r.get("values")
    config = dig(values, "runners", "config")
    if isinstance(config, str) and not re.search(r"^\s*ephemeral_storage_limit\s*=", config, re.MULTILINE):
        yield "values.runners.config", "GitLab Runner's job pods have no ephemeral_storage_limit"
    containers = dig(values, "template", "spec", "containers")
    for i, container in enumerate(containers if isinstance(containers, list | tuple) else ()):
        if dig(container, "resources", "limits", "ephemeral-storage") is None:
            yield f"values.template.spec.containers[{i}].resources.limits", "no ephemeral-storage limit"


def _secret_values_are_secret(r: ResourceView, stack: StackView) -> Iterator[Finding]:
    for field_name in ("data", "stringData"):
        values = r.get(field_name)
        if values is None or is_masked_secret(values) or is_unknown(values):
            continue
        if not isinstance(values, Mapping):
            yield field_name, "unexpected shape"
            continue
        for key, value in sorted(values.items()):
            if not is_masked_secret(value) and not is_unknown(value):
                yield (
                    f"{field_name}.{key}",
                    "literal value in a Kubernetes Secret: pass it as a Pulumi secret",
                )


def _redirecting_ports(stack: StackView, provider: str) -> set[Any]:
    """Ports of Traefik entry points (same cluster) that are public on 80 and redirect to HTTPS.

    Traefik binds a Gateway listener to the entry point with the same port (8000 for ``web``);
    the chart's ``exposedPort`` is what the load balancer publishes.
    """
    ports: set[Any] = set()
    for release in stack.resources:
        if not _is_traefik(release) or release.provider != provider:
            continue
        entries = dig(release.inputs, "values", "ports")
        if not isinstance(entries, Mapping):
            continue
        for entry in entries.values():
            if (
                isinstance(entry, Mapping)
                and entry.get("exposedPort") == 80
                and dig(entry, "http", "redirections", "entryPoint")
                and entry.get("port") is not None
            ):
                ports.add(entry["port"])
    return ports


def _listener_findings(listeners: Any, prefix: str, http_ports: set[Any]) -> Iterator[Finding]:
    if not isinstance(listeners, list | tuple):
        return
    for i, listener in enumerate(listeners):
        protocol = str(dig(listener, "protocol") or "").upper()
        port = dig(listener, "port")
        where = f"{prefix}[{i}]"
        if protocol in ("HTTPS", "TLS"):
            mode = dig(listener, "tls", "mode") or "Terminate"
            if mode != "Passthrough" and not _truthy_list(dig(listener, "tls", "certificateRefs")):
                yield f"{where}.tls.certificateRefs", f"{protocol} listener without a certificate reference"
        elif protocol == "HTTP" and port != 80 and port not in http_ports and not is_unknown(port):
            yield (
                f"{where}.port",
                f"plain HTTP listener on port {port}: HTTP is allowed only on port 80 (or a Traefik "
                "entry point published on 80 that redirects to HTTPS), for the redirect and ACME",
            )


def _gateways_tls(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    for gateway in stack.resources:
        if gateway.kind in GATEWAY_KINDS:
            ports = _redirecting_ports(stack, gateway.provider)
            for finding in _listener_findings(gateway.get("spec", "listeners"), "spec.listeners", ports):
                yield gateway, finding


def _traefik_gateway_tls(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """Traefik's chart renders the Gateway from ``values.gateway.listeners`` (a map by name)."""
    values = r.get("values")
    listeners = dig(values, "gateway", "listeners")
    if not isinstance(listeners, Mapping):
        return
    ports = dig(values, "ports") or {}
    for name, listener in sorted(listeners.items()):
        protocol = str(dig(listener, "protocol") or "").upper()
        where = f"values.gateway.listeners.{name}"
        if protocol in ("HTTPS", "TLS"):
            if dig(listener, "mode") != "Passthrough" and not _truthy_list(dig(listener, "certificateRefs")):
                yield f"{where}.certificateRefs", f"{protocol} listener without a certificate reference"
        elif protocol == "HTTP":
            entry = _entrypoint(ports, name, dig(listener, "port"))
            exposed = dig(entry, "exposedPort")
            if exposed is not None and exposed != 80:
                yield f"{where}.port", f"plain HTTP exposed on port {exposed}: only port 80 may be HTTP"
            if not dig(entry, "http", "redirections", "entryPoint"):
                yield where, "plain HTTP listener whose entry point does not redirect to HTTPS"


def _entrypoint(ports: Any, name: str, port: Any) -> Any:
    if not isinstance(ports, Mapping):
        return None
    if isinstance(ports.get(name), Mapping):
        return ports[name]
    for entry in ports.values():
        if isinstance(entry, Mapping) and port is not None and entry.get("port") == port:
            return entry
    return None


def _is_traefik(r: ResourceView) -> bool:
    chart = r.get("chart")
    return r.is_helm and isinstance(chart, str) and chart.rstrip("/").rsplit("/", 1)[-1] == "traefik"


def _object_identity(r: ResourceView) -> tuple[str, str, str, str, str]:
    api_version = str(r.get("apiVersion") or "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return (
        r.provider,
        group,
        str(r.get("kind") or r.kind),
        str(dig(r.metadata, "namespace") or ""),
        str(dig(r.metadata, "name") or ""),
    )


def _unique_objects(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    seen: dict[tuple[str, str, str, str, str], ResourceView] = {}
    for r in sorted(stack.resources, key=lambda x: x.urn):
        if not r.is_kubernetes_object:
            continue
        key = _object_identity(r)
        if not key[4]:
            continue
        if key in seen:
            kind, namespace, name = key[2], key[3], key[4]
            yield (
                r,
                (
                    "metadata",
                    f"{kind} {namespace + '/' if namespace else ''}{name} "
                    f"is also declared by {seen[key].urn}",
                ),
            )
        else:
            seen[key] = r


# --------------------------------------------------------------------------------------------
# The rule set.
# --------------------------------------------------------------------------------------------

#: Argo CD's namespace in tooling: the hub's alone (DESIGN.md §5).
ARGOCD_NAMESPACE = "argocd"


def _not_in_the_hub(r: ResourceView, _: StackView) -> Iterator[Finding]:
    """A workload stack declares nothing of Argo CD's: no object in ``argocd`` and no argoproj.io
    kind (Applications, AppProjects, ...), whatever cluster its provider reaches. Whoever writes
    those is an Argo CD admin."""
    if r.metadata.get("namespace") == ARGOCD_NAMESPACE:
        yield "metadata.namespace", f"a workload stack may not declare objects in {ARGOCD_NAMESPACE}"
    if r.type.startswith("kubernetes:argocd-image-updater.argoproj.io/") or (
        r.type.startswith("kubernetes:argoproj.io/") and r.kind not in ARGO_ROLLOUTS_KINDS
    ):
        yield "kind", f"a workload stack may not declare Argo CD objects ({r.kind}): the tooling stack does"


#: Argo Rollouts' kinds share Argo CD's API group but act in their own cluster only: a workload
#: stack declares its canaries' AnalysisTemplates (scw_platform.delivery).
ARGO_ROLLOUTS_KINDS = frozenset({"Rollout", "AnalysisTemplate", "AnalysisRun", "Experiment"})
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
K8S_SERVICE = "kubernetes:core/v1:Service"
ANALYSIS_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
#: Names the one writer of a weighted route's weights (scw_platform.delivery; a test keeps the two
#: equal: this module must stay importable on its own).
TRAFFIC_WRITER_ANNOTATION = "platform.scw/traffic-writer"
_ROLLOUT_WRITER = re.compile(r"^argoproj\.io/Rollout/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _route_backends(r: ResourceView) -> list[Any]:
    rules = r.get("spec", "rules")
    refs: list[Any] = []
    for rule in rules if isinstance(rules, list) else []:
        found = dig(rule, "backendRefs")
        refs += found if isinstance(found, list) else []
    return refs


def _canary_routes(stack: StackView) -> Iterator[tuple[ResourceView, Finding]]:
    """A route that splits traffic (more than one backend, or naming a traffic writer) has one
    writer of its weights: the Rollout it names. The program declares only the state between
    rollouts (one backend at 100, the rest at 0: re-applying a split on the next ``pulumi up``
    would fight the Rollout), its backends are Services the program declares (so Git cannot write
    them too), an AnalysisTemplate gates its steps, and no other route serves its hostnames."""
    routes = stack.of_type(HTTP_ROUTE)
    services = {
        (s.provider, str(dig(s.metadata, "namespace") or ""), str(dig(s.metadata, "name") or ""))
        for s in stack.of_type(K8S_SERVICE)
    }
    analysed = {
        (a.provider, str(dig(a.metadata, "namespace") or "")) for a in stack.of_type(ANALYSIS_TEMPLATE)
    }
    for r in routes:
        annotations = dig(r.metadata, "annotations")
        writer = annotations.get(TRAFFIC_WRITER_ANNOTATION) if isinstance(annotations, Mapping) else None
        if len(_route_backends(r)) > 1 or writer is not None:
            others = [o for o in routes if o.urn != r.urn and o.provider == r.provider]
            for finding in _canary_route_findings(r, writer, others, services, analysed):
                yield r, finding


def _canary_route_findings(
    r: ResourceView,
    writer: Any,
    others: list[ResourceView],
    services: set[tuple[str, str, str]],
    analysed: set[tuple[str, str]],
) -> Iterator[Finding]:
    refs = _route_backends(r)
    namespace = str(dig(r.metadata, "namespace") or "")
    if not isinstance(writer, str) or not _ROLLOUT_WRITER.fullmatch(writer):
        yield (
            f"metadata.annotations.{TRAFFIC_WRITER_ANNOTATION}",
            "a route that splits traffic names the one writer of its weights, "
            f"argoproj.io/Rollout/<name> (got {writer!r})",
        )
    rules = r.get("spec", "rules")
    if not isinstance(rules, list) or len(rules) != 1 or len(refs) != 2:
        yield "spec.rules", "a canary route has one rule with two backends: stable and canary"
    weights = [dig(ref, "weight") if isinstance(ref, Mapping) else None for ref in refs]
    # Inputs may carry numbers as floats (100.0); a missing weight is 1 to the Gateway API.
    numbers = [w if isinstance(w, int | float) and not isinstance(w, bool) else -1 for w in weights]
    if sorted(numbers) != [0] * (len(refs) - 1) + [100]:
        yield (
            "spec.rules[0].backendRefs",
            f"the program declares everything on one backend (weights 100 and 0, got {weights}): "
            "any other split is the Rollout's to write",
        )
    for i, ref in enumerate(refs):
        name = dig(ref, "name") if isinstance(ref, Mapping) else None
        if (r.provider, namespace, str(name)) not in services:
            yield (
                f"spec.rules[0].backendRefs[{i}].name",
                f"Service {namespace}/{name} is not declared by the program: a canary's Services are "
                "the platform's (Git would be a second writer of them)",
            )
    if (r.provider, namespace) not in analysed:
        yield "metadata.namespace", f"no AnalysisTemplate in {namespace} gates the canary's steps"
    hostnames = set(r.get("spec", "hostnames") or [])
    for other in others:
        shared = hostnames & set(other.get("spec", "hostnames") or [])
        if shared:
            yield (
                "spec.hostnames",
                f"{other.urn} also routes {sorted(shared)}: a second writer of its traffic",
            )


_NOT_DEVELOPMENT = frozenset({"production", "tooling"})
_WORKLOAD = frozenset({"production", "development"})
_PRODUCTION = frozenset({"production"})

# --- The stack-budget rule lives in its own module (it prices the stack from the catalogue); it
# builds on the views above, so it is imported here, after them.
from policy.budget import STACK_BUDGET  # noqa: E402

RULES: tuple[Rule, ...] = (
    Rule(
        "rdb-private-endpoint-only",
        "Managed PostgreSQL has no public endpoint (no load_balancer) and a private-network endpoint.",
        _types(RDB_INSTANCE),
        _rdb_private_only,
    ),
    Rule(
        "rdb-backups-production",
        "Production databases keep backups enabled with a retention of at least 7 days.",
        _types(RDB_INSTANCE),
        _rdb_backups,
        roles=_PRODUCTION,
    ),
    Rule(
        "rdb-encrypted-production",
        "Production databases are encrypted at rest.",
        _types(RDB_INSTANCE),
        _rdb_encrypted,
        roles=_PRODUCTION,
    ),
    Rule(
        "kapsule-private-network",
        "Every Kapsule cluster is attached to a private network.",
        _types(KAPSULE_CLUSTER),
        _cluster_private_network,
    ),
    Rule(
        "kapsule-pool-no-public-ip-production",
        "Production node pools have public IPs disabled (egress through the Public Gateway).",
        _types(KAPSULE_POOL),
        _pool_private,
        roles=_PRODUCTION,
    ),
    Rule(
        "kapsule-acl-not-world",
        "A Kapsule API-server ACL never admits 0.0.0.0/0 (or any /0) and is never empty.",
        _types(KAPSULE_ACL),
        _acl_not_world,
    ),
    Rule(
        "kapsule-acl-required-production",
        "Every production Kapsule cluster has an API-server ACL.",
        lambda r: False,
        stack_check=_clusters_have_acl,
        roles=_PRODUCTION,
    ),
    Rule(
        "stateful-resources-protected",
        "Database instance and databases, registry namespace and reserved IPs are protect=True "
        "(every role but development).",
        _types(*_STATEFUL),
        _protected,
        roles=_NOT_DEVELOPMENT,
    ),
    Rule(
        "ingress-ip-retained-on-delete",
        "The reserved ingress IP (scaleway:loadbalancers/ip:Ip) is retain_on_delete=True "
        "(every role but development).",
        _types(LB_IP),
        _retained,
        roles=_NOT_DEVELOPMENT,
        needs=frozenset({RETAIN_ON_DELETE}),
    ),
    Rule(
        "registry-namespace-private",
        "The container registry namespace is private.",
        _types(REGISTRY_NAMESPACE),
        _registry_private,
    ),
    Rule(
        "iam-policy-project-scoped",
        "IAM policies are scoped to the project, never the organization, with no all-powerful set.",
        _types(IAM_POLICY),
        _iam_scoped,
    ),
    Rule(
        "iam-no-object-storage-full-access",
        "No IAM policy of a job or controller identity (an IAM application) grants an Object Storage "
        "FullAccess set: object-level sets, narrowed by a bucket policy.",
        _types(IAM_POLICY),
        _no_object_storage_full_access,
    ),
    Rule(
        "registry-pull-key-own-environment",
        "Every image pull Secret carries an API key of this stack whose IAM application is this "
        "environment's and may only pull (ContainerRegistryReadOnly): no pull key shared between "
        "environments.",
        lambda r: False,
        stack_check=_pull_keys_own_environment,
    ),
    Rule(
        "kubernetes-provider-kubeconfig-secret",
        "The kubeconfig of every Kubernetes provider is a Pulumi secret.",
        _types(K8S_PROVIDER),
        _kubeconfig_secret,
        needs=frozenset({SECRETS}),
    ),
    Rule(
        "kubernetes-explicit-provider",
        "Every Kubernetes object and Helm release names an explicit provider (never the default one).",
        lambda r: r.is_kubernetes_object or r.is_helm,
        _explicit_provider,
    ),
    Rule(
        "helm-chart-version-pinned",
        "Every Helm release pins an exact chart version (no empty version, range or wildcard).",
        lambda r: r.is_helm,
        _helm_pinned,
    ),
    Rule(
        "container-image-tag-pinned",
        "Every container image in a pod spec has a tag (or digest) that is not latest.",
        lambda r: pod_spec_path(r.kind) is not None,
        _images_pinned,
    ),
    Rule(
        "helm-values-image-not-latest",
        "No Helm release's values set an image tag latest.",
        lambda r: r.is_helm,
        _helm_images_pinned,
    ),
    Rule(
        "platform-images-by-digest-production",
        "In production every container image in a pod spec is <image>:<tag>@sha256:<digest>, and every "
        "Helm release pins a digest at each values path scw_platform/data/images.yaml lists for its chart "
        "(an image recorded there as a gap, no digest readable yet, only at its recorded tag).",
        lambda r: r.is_helm or pod_spec_path(r.kind) is not None,
        _images_by_digest,
        roles=_PRODUCTION,
    ),
    Rule(
        "app-namespace-restricted-pod-security",
        f"Every app namespace (label {APP_NAMESPACE_LABEL}: 'true') enforces the restricted Pod "
        "Security Standard.",
        _is_app_namespace,
        _restricted_pss,
    ),
    Rule(
        "app-namespace-default-deny",
        f"Every app namespace (label {APP_NAMESPACE_LABEL}: 'true') has a default-deny NetworkPolicy "
        "for ingress and egress.",
        lambda r: False,
        stack_check=_namespaces_default_deny,
    ),
    Rule(
        "kubernetes-secret-values-secret",
        "A Kubernetes Secret declared with data/stringData holds only Pulumi secrets, no literals.",
        _types(K8S_SECRET),
        _secret_values_are_secret,
        needs=frozenset({SECRETS}),
    ),
    Rule(
        "gateway-listeners-tls",
        "Every HTTPS/TLS Gateway listener references a certificate; plain HTTP only on port 80 "
        "(directly, or a Traefik entry point published on 80 that redirects to HTTPS).",
        lambda r: False,
        stack_check=_gateways_tls,
    ),
    Rule(
        "traefik-gateway-listeners-tls",
        "Gateway listeners in Traefik's values: HTTPS/TLS with certificates, HTTP only to redirect.",
        _is_traefik,
        _traefik_gateway_tls,
    ),
    Rule(
        "workload-stack-declares-nothing-in-argocd",
        "A workload stack (production, development) declares no Argo CD object and nothing in "
        "namespace argocd: the tooling stack registers environments from their exports.",
        lambda r: r.is_kubernetes_object,
        _not_in_the_hub,
        roles=_WORKLOAD,
    ),
    Rule(
        "canary-route-single-writer",
        "A route that splits traffic is written by the Rollout it names alone: declared at weights "
        "100/0, to Services the program declares, gated by an AnalysisTemplate, its hostnames served "
        "by no other route.",
        lambda r: False,
        stack_check=_canary_routes,
    ),
    Rule(
        "no-privileged-containers",
        "No container is privileged anywhere: pod specs, Helm values, CI runner configurations.",
        lambda r: r.is_helm or pod_spec_path(r.kind) is not None,
        _not_privileged,
    ),
    Rule(
        "ci-namespace-default-deny",
        f"Every CI namespace ({', '.join(sorted(CI_NAMESPACES))}) has a default-deny NetworkPolicy for "
        "ingress and egress.",
        lambda r: False,
        stack_check=_ci_namespaces_default_deny,
    ),
    Rule(
        "platform-namespace-default-deny",
        "Every other namespace the plan declares (the platform's own: controllers, monitoring, jobs, "
        "GitOps namespaces) has a default-deny NetworkPolicy for ingress and egress.",
        lambda r: False,
        stack_check=_platform_namespaces_default_deny,
    ),
    Rule(
        "ci-build-pods-ephemeral-storage-limited",
        "Every build pod (in a CI namespace, or started by a CI runner release) has an "
        "ephemeral-storage limit on every container.",
        lambda r: _in_ci(r) and (r.is_helm or pod_spec_path(r.kind) is not None),
        _build_pods_bounded,
    ),
    Rule(
        "kubernetes-objects-unique",
        "No two resources manage the same Kubernetes object (cluster, group, kind, namespace, name).",
        lambda r: False,
        stack_check=_unique_objects,
    ),
    STACK_BUDGET,
)

RULES_BY_NAME = {rule.name: rule for rule in RULES}


def evaluate(stack: StackView, rules: Iterable[Rule] = RULES) -> list[Violation]:
    return sorted(v for rule in rules for v in rule.evaluate(stack))


def inventory_view(
    inventory: Mapping[str, Any], role: str | None = None, budget: Mapping[str, Any] | None = None
) -> StackView:
    """A :class:`StackView` of a plan's ``inventory.json`` (see ``offline.artifacts``).

    The role comes from the caller (the stack file), else the stack's ``role`` export, else the
    ``role=`` tags on its Scaleway resources. ``budget`` is the stack file's ``platform:budget``.
    """
    resources = tuple(
        ResourceView(
            urn=str(r["urn"]),
            type=str(r["type"]),
            name=str(r["name"]),
            inputs=r.get("inputs") or {},
            protect=bool(r.get("protect")),
            retain_on_delete=bool(r.get("retainOnDelete")),
            provider=str(r.get("provider") or ""),
            dependencies=tuple(r.get("dependencies") or ()),
        )
        for r in inventory.get("resources", [])
        if not r.get("read")
    )
    exported = (inventory.get("exports") or {}).get("role")
    role = role or (exported if exported in ROLES else None) or role_from_tags(resources)
    return StackView(resources=resources, role=role, capabilities=ALL_CAPABILITIES, budget=budget)

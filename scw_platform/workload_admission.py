"""Admission of the workloads an app's GitOps path ships: ValidatingAdmissionPolicies (built into
the API server, no controller to run) bound to every app namespace.

Argo CD applies whatever the app's path in Git holds into its namespace. The envelope
(:mod:`scw_platform.apps`) bounds what that costs and reaches (quota, LimitRange, network
policies, Pod Security ``restricted``); these policies bound what it runs:

``images`` (every container, init container and ephemeral container)
    the image comes from the platform registry (``rg.<region>.scw.cloud/<namespace>/``) or from a
    registry of the app's allow-list (:attr:`WorkloadAdmissionSettings.image_registries`), written
    out in full: ``busybox`` is refused even with ``docker.io/library`` listed (the runtime's
    short-name expansion is not the policy's business). The exact references the platform's own
    hooks run (``platform_images``) are admitted as they are.
``digest`` (only where the environment requires it: production)
    the image is pinned by digest (``...@sha256:<64 hex>``): prod runs the digest dev ran.
``resources`` (containers and init containers)
    ``requests.cpu``, ``requests.memory`` and ``limits.memory``. No CPU limit is required, as none
    of the platform's own controllers sets one (``scw_platform.controller_values``): in an app
    namespace the LimitRange's default fills it at pod creation and its ``max`` caps it. Memory is
    not compressible, so the point at which the kernel kills the app is part of the reviewed
    manifest. Ephemeral containers may not set resources at all (API reference, EphemeralContainer).
``readiness`` (the containers of a pod whose ``restartPolicy`` is Always, the default)
    a ``readinessProbe``: a Deployment, StatefulSet, DaemonSet or ReplicaSet (whose pods must
    restart Always) is never sent traffic before it answers. Jobs and CronJobs (``Never`` or
    ``OnFailure``), and so the platform's hooks, need none.
``host`` and ``privilege`` (pod and every container)
    no ``hostNetwork``, ``hostPID``, ``hostIPC``, ``hostPath`` volume or ``hostPort``; no
    ``privileged`` container, no ``capabilities.add`` (stricter than restricted, which admits
    NET_BIND_SERVICE).
``token``
    ``automountServiceAccountToken: false`` in the pod spec, and no projected
    ``serviceAccountToken`` volume, unless the app's config asks for a token
    (:attr:`WorkloadAdmissionSettings.automount_service_account_token`). Explicit in the pod spec
    because the pod's value wins over its service account's ("Opt out of API credential
    automounting"), and a policy on the pod cannot see the account: an app's own ServiceAccount
    from Git would otherwise mount a token by default.
``services``
    ``spec.type`` ClusterIP (the default) and no ``spec.externalIPs``: the platform Gateway is the
    only way in (the quota already holds LoadBalancers and NodePorts at 0; this says why, at sync).

Where: one policy per shape of pod spec, so each expression reads one schema
(:data:`POD_SPECS`): ``pods`` (``object.spec``; CREATE and UPDATE of Pods and of their
``ephemeralcontainers`` subresource), ``workloads`` (``object.spec.template.spec`` of Deployments,
StatefulSets, DaemonSets, ReplicaSets, Jobs and Argo Rollouts' Rollouts, the canary apps'
workloads; a Rollout without a template, pointing at a Deployment, is judged through that
Deployment) and ``cronjobs``
(``object.spec.jobTemplate.spec.template.spec``), and ``services``. Both levels on purpose: the
controllers' policies refuse at sync time, in the Argo CD sync result people read; the pods' policy
catches pods no manifest describes (a controller this policy does not know, ``kubectl debug``, a
``kubectl run``), late. A pod of a Deployment meets the same rules twice and passes twice (the
LimitRange only adds to what it checks; mutating admission runs before validating admission).

Scope: each binding selects the namespaces labelled :data:`scw_platform.labels.APP_NAMESPACE`
(``matchResources.namespaceSelector``), which only the program sets: namespaces are cluster-scoped,
outside what Argo CD's registration may write. Per-app parameters are literals keyed by namespace
(an app's namespace is its name, immutable): no parameter resource (``paramKind``) that someone with
access to one ConfigMap could loosen, and every change shows in the plan. ``validationActions:
[Deny]``: a denial is what Argo CD's sync result shows; Audit would only annotate audit events no one
on the platform reads. ``failurePolicy: Fail``: an expression that cannot be evaluated refuses.
An object being deleted is not judged (its finalizers' removal is an UPDATE): as in
:mod:`scw_platform.argocd_admission`, refusing it would keep a violating object from ever going.

Messages start with the field, e.g. ``spec.template.spec.containers[name=web].image: ...``:
containers by name (unique in a pod) rather than by index, because computing an index needs
functions the test evaluator lacks (below); the first violation is named, with a count of the rest.

CEL: only the standard macros and functions (``has``, ``all``/``exists``/``filter``/``map``,
``in``, ``size``, ``startsWith``, ``matches``, ``string``) that cel-go and cel-python share. Avoided:
Kubernetes' list library (``indexOf``), the strings extension (``split``, ``join``), two-variable
comprehensions, and comparisons with null (cel-python lacks heterogeneous equality); ``oldObject``
is read only behind ``request.operation == 'UPDATE'`` (it is null on CREATE).
"""

# Kubernetes documentation this module relies on:
# * https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/
#   (matchConstraints, matchConditions, variables, validations with message/messageExpression,
#   bindings' matchResources.namespaceSelector and validationActions; 'object' is null for DELETE,
#   'oldObject' null for CREATE; 'request' the AdmissionRequest; failurePolicy).
# * https://kubernetes.io/docs/reference/using-api/cel/ (the CEL libraries the API server adds:
#   list, strings, regex; not available in cel-python, so not used).
# * https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/ (mutating
#   admission, LimitRanger and ServiceAccount included, runs before validating admission).
# * https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/
#   ("Opt out of API credential automounting": the pod spec's value takes precedence over the
#   service account's).
# * https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/ (EphemeralContainer:
#   resources are not allowed; added through the ephemeralcontainers subresource).
# * https://kubernetes.io/docs/concepts/services-networking/service/ (type ClusterIP is the default;
#   externalIPs).

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, Field, field_validator

from scw_platform import kube, labels
from scw_platform.settings import Settings, no_duplicates

# --------------------------------------------------------------------------------------------
# Settings: one entry per app (platform:apps[].admission).
# --------------------------------------------------------------------------------------------

#: A registry host (a DNS name with a dot, or localhost, and an optional port), then an optional
#: path prefix of lowercase repository components (the distribution spec's grammar).
_HOST = r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+|localhost)(?::[0-9]{1,5})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"^{_HOST}(?:/{_COMPONENT})*$")
#: A digest the policies accept: sha256 only, lowercase hex.
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"
_DIGEST = re.compile(rf"^{DIGEST_PATTERN}$")
#: A full image reference: registry host, repository, then a tag and/or a digest.
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_IMAGE = re.compile(rf"^{_HOST}(?:/{_COMPONENT})+(?::{_TAG})?(?:@(?P<digest>[^@]+))?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_digest(digest: str, key: str) -> str:
    """``digest`` when it is ``sha256:`` and 64 lowercase hex digits; else a ValueError naming ``key``."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"{key}: {digest!r} is not a digest: sha256: followed by 64 lowercase hex digits")
    return digest


def check_registry(entry: str, key: str) -> str:
    """``entry`` when it is a registry host with an optional port and path prefix (``ghcr.io/acme``,
    ``registry.example.com:5000``); else a ValueError naming ``key`` and what is wrong."""
    if not isinstance(entry, str):
        raise ValueError(f"{key}: must be a registry host such as ghcr.io/acme, got {entry!r}")
    if "://" in entry:
        problem = "no scheme: write the host as an image reference starts, e.g. ghcr.io/acme"
    elif "@" in entry:
        problem = "no digest: an entry names where images come from, not one image"
    elif entry.endswith("/"):
        problem = "no trailing '/'"
    elif re.search(r"/[^/]*:", entry):
        problem = "no tag: an entry names where images come from, not one image"
    elif not re.match(rf"^{_HOST}(?:/|$)", entry):
        problem = (
            "must start with a registry host: a DNS name with a dot (or localhost) and an optional "
            "port, e.g. docker.io/library, not a bare repository"
        )
    elif not _REGISTRY.fullmatch(entry):
        problem = "the path prefix must be lowercase repository components separated by '/'"
    else:
        return entry
    raise ValueError(f"{key}: {entry!r} is not a registry host with an optional path prefix: {problem}")


def _registry_entry(entry: str) -> str:
    return check_registry(entry, "imageRegistries")


RegistryPrefix = Annotated[str, AfterValidator(_registry_entry)]


class WorkloadAdmissionSettings(Settings):
    """``platform:apps[].admission``: what the app's workloads from Git may do beyond the
    platform's defaults (images from the platform registry only, no service-account token)."""

    image_registries: list[RegistryPrefix] = Field(default_factory=list, max_length=20)
    """Registries the app's images may come from besides the platform registry: a host with an
    optional port and path prefix, no scheme, no tag (e.g. ghcr.io/acme, docker.io/library). Images
    must name the registry in full (docker.io/library/nginx, not nginx)."""
    automount_service_account_token: bool = False
    """Whether the app's pods may get a Kubernetes API token (automountServiceAccountToken true or
    unset, or a projected serviceAccountToken volume); by default every pod must set
    automountServiceAccountToken: false."""

    @field_validator("image_registries")
    @classmethod
    def _unique_registries(cls, entries: list[str]) -> list[str]:
        no_duplicates("registry", entries)
        return entries


# --------------------------------------------------------------------------------------------
# The policies.
# --------------------------------------------------------------------------------------------

PODS = "pods"
WORKLOADS = "workloads"
#: Argo Rollouts' API group and the one version it serves (argoproj/argo-rollouts v1.9.1,
#: manifests/crds/rollout-crd.yaml); every other group matched here serves v1.
ROLLOUTS_GROUP = "argoproj.io"
API_VERSIONS: Mapping[str, str] = {ROLLOUTS_GROUP: "v1alpha1"}
CRONJOBS = "cronjobs"
SERVICES = "services"


@dataclass(frozen=True)
class PodSpecShape:
    """Where a matched kind keeps its pod spec: the CEL path, the path messages name, the resource
    rules matching it ((API group, resources)...) and its lists of containers."""

    cel: str
    field: str
    resource_rules: tuple[tuple[str, tuple[str, ...]], ...]
    #: Ephemeral containers exist on Pods only: a pod template may not hold any.
    containers: tuple[str, ...] = ("containers", "initContainers")
    #: Whether the kinds may run long (restartPolicy Always): a CronJob's pods never do (the API
    #: server's own validation, before validating admission, allows only Never and OnFailure).
    long_running: bool = True
    #: More matchConditions beside "not being deleted": a Rollout that points at a Deployment
    #: (``spec.workloadRef``) instead of carrying a template is not judged, its Deployment is.
    #: Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs always have a template.
    match_conditions: tuple[Mapping[str, str], ...] = ()


#: The pod-spec policies by id.
POD_SPECS: Mapping[str, PodSpecShape] = {
    PODS: PodSpecShape(
        "object.spec",
        "spec",
        (("", ("pods", "pods/ephemeralcontainers")),),
        ("containers", "initContainers", "ephemeralContainers"),
    ),
    WORKLOADS: PodSpecShape(
        "object.spec.template.spec",
        "spec.template.spec",
        (
            ("apps", ("deployments", "statefulsets", "daemonsets", "replicasets")),
            ("batch", ("jobs",)),
            # A canary app's Rollout (scw_platform.delivery) keeps its pod template where a
            # Deployment does (the v1.9.1 Rollout CRD: spec.template).
            (ROLLOUTS_GROUP, ("rollouts",)),
        ),
        match_conditions=({"name": "has-pod-template", "expression": "has(object.spec.template)"},),
    ),
    CRONJOBS: PodSpecShape(
        "object.spec.jobTemplate.spec.template.spec",
        "spec.jobTemplate.spec.template.spec",
        (("batch", ("cronjobs",)),),
        long_running=False,
    ),
}
_CONTAINERS = "containers"
_INIT = "initContainers"
_NOT_BEING_DELETED = {
    "name": "not-being-deleted",
    "expression": "request.operation != 'UPDATE' || !has(oldObject.metadata.deletionTimestamp)",
}


def policy_name(policy_id: str) -> str:
    """The ValidatingAdmissionPolicy (and binding) name."""
    return f"platform-workloads-{policy_id}"


def binding_specs(policy_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """ValidatingAdmissionPolicyBinding specs by policy id: deny, in the app namespaces only."""
    return {
        pid: {
            "policyName": policy_name(pid),
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {labels.APP_NAMESPACE: "true"}}},
        }
        for pid in policy_ids
    }


def _cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in sorted(set(values))) + "]"


def _per_namespace(values: Mapping[str, Iterable[str]]) -> str:
    """CEL: the list for the request's namespace, [] for a namespace not in ``values``."""
    literal = "{" + ", ".join(f"'{ns}': {_cel_list(v)}" for ns, v in sorted(values.items())) + "}"
    return f"(request.namespace in {literal} ? {literal}[request.namespace] : [])"


def _items(shape: PodSpecShape, key: str) -> str:
    return f"(has({shape.cel}.{key}) ? {shape.cel}.{key} : [])"


def _violations(shape: PodSpecShape, lists: Sequence[str], bad: str, field: str, text: str) -> str:
    """CEL: one message per container of ``lists`` for which ``bad`` (over ``c``) holds, naming
    ``<list>[name=<name>].<field>``; ``text`` is a CEL string expression over ``c``."""
    return " + ".join(
        f"{_items(shape, key)}.filter(c, {bad}).map(c, '{shape.field}.{key}[name=' + c.name + "
        f"'].{field}: ' + {text})"
        for key in lists
    )


#: CEL: the image of container ``c``, '' when it has none (a message must not fail to evaluate).
_IMAGE_OF_C = "(has(c.image) ? c.image : '')"


def _images(shape: PodSpecShape, prefixes: str) -> str:
    allowed = (
        "has(c.image) && (c.image in variables.platformImages || "
        "variables.registries.exists(r, c.image.startsWith(r)))"
    )
    text = (
        f'"\'" + {_IMAGE_OF_C} + "\' is not from the platform registry or the app\'s allow-list ({prefixes})"'
    )
    return _violations(shape, shape.containers, f"!({allowed})", "image", text)


def _digests(shape: PodSpecShape) -> str:
    pinned = f"has(c.image) && (c.image in variables.platformImages || c.image.matches('@{DIGEST_PATTERN}$'))"
    text = (
        f'"\'" + {_IMAGE_OF_C} + "\' is not pinned by digest (<repository>@sha256:<64 hex>): '
        'this environment runs digests only"'
    )
    return _violations(shape, shape.containers, f"!({pinned})", "image", text)


def _resources(shape: PodSpecShape) -> str:
    parts = []
    for section, resource in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        present = f"has(c.resources) && has(c.resources.{section}) && '{resource}' in c.resources.{section}"
        text = "'required (cpu and memory requests and a memory limit on every container)'"
        parts.append(
            _violations(shape, (_CONTAINERS, _INIT), f"!({present})", f"resources.{section}.{resource}", text)
        )
    return " + ".join(parts)


def _readiness(shape: PodSpecShape) -> str:
    text = "'required: a long-running workload (restartPolicy Always) gets traffic only once ready'"
    found = _violations(shape, (_CONTAINERS,), "!has(c.readinessProbe)", "readinessProbe", text)
    return f"((has({shape.cel}.restartPolicy) && {shape.cel}.restartPolicy != 'Always') ? [] : {found})"


def _host(shape: PodSpecShape) -> str:
    spec = shape.cel
    namespaces = " + ".join(
        f"((has({spec}.{key}) && {spec}.{key}) ? "
        f"['{shape.field}.{key}: not allowed in an app namespace'] : [])"
        for key in ("hostNetwork", "hostPID", "hostIPC")
    )
    paths = (
        f"{_items(shape, 'volumes')}.filter(v, has(v.hostPath)).map(v, '{shape.field}.volumes[name=' + "
        "v.name + '].hostPath: not allowed in an app namespace (use an emptyDir or a PersistentVolumeClaim)')"
    )
    ports = _violations(
        shape,
        shape.containers,
        "has(c.ports) && c.ports.exists(p, has(p.hostPort) && p.hostPort != 0)",
        "ports[].hostPort",
        "'not allowed in an app namespace (a Service reaches the pod)'",
    )
    return f"{namespaces} + {paths} + {ports}"


def _privilege(shape: PodSpecShape) -> str:
    privileged = _violations(
        shape,
        shape.containers,
        "has(c.securityContext) && has(c.securityContext.privileged) && c.securityContext.privileged",
        "securityContext.privileged",
        "'not allowed in an app namespace'",
    )
    added = _violations(
        shape,
        shape.containers,
        "has(c.securityContext) && has(c.securityContext.capabilities) && "
        "has(c.securityContext.capabilities.add) && size(c.securityContext.capabilities.add) > 0",
        "securityContext.capabilities.add",
        "'no capability may be added in an app namespace (drop ALL and add none)'",
    )
    return f"{privileged} + {added}"


def _token(shape: PodSpecShape) -> str:
    spec = shape.cel
    automount = (
        f"((has({spec}.automountServiceAccountToken) && !{spec}.automountServiceAccountToken) ? [] : "
        f"['{shape.field}.automountServiceAccountToken: must be false: the app gets no Kubernetes API "
        "token unless its config says automountServiceAccountToken: true'])"
    )
    projected = (
        f"{_items(shape, 'volumes')}.filter(v, has(v.projected) && has(v.projected.sources) && "
        f"v.projected.sources.exists(s, has(s.serviceAccountToken))).map(v, '{shape.field}.volumes[name=' + "
        "v.name + '].projected.sources[].serviceAccountToken: no Kubernetes API token unless the app "
        "config says automountServiceAccountToken: true')"
    )
    return f"(request.namespace in variables.tokenNamespaces ? [] : {automount} + {projected})"


def _reported(variable: str, field: str, rule: str) -> dict[str, str]:
    """A validation refusing while ``variables.<variable>`` holds a message: the first, and a count."""
    found = f"variables.{variable}"
    return {
        "expression": f"size({found}) == 0",
        "message": f"{field}: {rule}",
        "messageExpression": (
            f"{found}[0] + (size({found}) > 1 ? ' (and ' + string(size({found}) - 1) + ' more)' : '')"
        ),
        "reason": "Forbidden",
    }


@dataclass(frozen=True)
class _Parameters:
    """What the pod-spec policies splice into their CEL, checked (see :func:`workload_policies`)."""

    extra_registries: Mapping[str, tuple[str, ...]]
    token_namespaces: tuple[str, ...]
    platform_images: tuple[str, ...]
    require_digest: bool


def _pod_spec_policy(shape: PodSpecShape, endpoint: str, parameters: _Parameters) -> dict[str, Any]:
    prefixes = f"{endpoint}/ and the app's imageRegistries"
    image_field = f"{shape.field}.containers[].image"
    rules: list[tuple[str, str, str, str]] = [
        ("imageViolations", _images(shape, prefixes), image_field, f"images from {prefixes}"),
    ]
    if parameters.require_digest:
        rules.append(("digestViolations", _digests(shape), image_field, "images pinned by digest"))
    rules.append(
        (
            "resourceViolations",
            _resources(shape),
            f"{shape.field}.containers[].resources",
            "cpu and memory requests and a memory limit on every container and init container",
        )
    )
    if shape.long_running:
        rules.append(
            (
                "readinessViolations",
                _readiness(shape),
                f"{shape.field}.containers[].readinessProbe",
                "a readiness probe on every container of a long-running workload",
            )
        )
    rules += [
        (
            "hostViolations",
            _host(shape),
            shape.field,
            "no hostNetwork, hostPID, hostIPC, hostPath volume or hostPort",
        ),
        (
            "privilegeViolations",
            _privilege(shape),
            f"{shape.field}.containers[].securityContext",
            "no privileged container and no added capability",
        ),
        (
            "tokenViolations",
            _token(shape),
            f"{shape.field}.automountServiceAccountToken",
            "false, and no projected serviceAccountToken volume, unless the app's config allows a token",
        ),
    ]
    extra = {ns: [f"{r}/" for r in entries] for ns, entries in parameters.extra_registries.items() if entries}
    variables = [
        {"name": "registries", "expression": f"{_cel_list([endpoint + '/'])} + {_per_namespace(extra)}"},
        {"name": "platformImages", "expression": _cel_list(parameters.platform_images)},
        {"name": "tokenNamespaces", "expression": _cel_list(parameters.token_namespaces)},
        *({"name": name, "expression": expression} for name, expression, _, _ in rules),
    ]
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [group],
                    "apiVersions": [API_VERSIONS.get(group, "v1")],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": list(resources),
                }
                for group, resources in shape.resource_rules
            ]
        },
        "matchConditions": [_NOT_BEING_DELETED, *(dict(c) for c in shape.match_conditions)],
        "variables": variables,
        "validations": [_reported(name, field, rule) for name, _, field, rule in rules],
    }


def _service_policy() -> dict[str, Any]:
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["services"],
                }
            ]
        },
        "matchConditions": [_NOT_BEING_DELETED],
        "validations": [
            {
                "expression": "!has(object.spec.type) || object.spec.type == 'ClusterIP'",
                "message": (
                    "spec.type: Services in an app namespace are ClusterIP only (the platform Gateway is "
                    "the way in)"
                ),
                "messageExpression": (
                    "'spec.type: ' + object.spec.type + ' is not allowed in an app namespace: Services are "
                    "ClusterIP only (the platform Gateway is the way in)'"
                ),
                "reason": "Forbidden",
            },
            {
                "expression": "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0",
                "message": (
                    "spec.externalIPs: not allowed in an app namespace (the platform Gateway is the way in)"
                ),
                "reason": "Forbidden",
            },
        ],
    }


def _platform_image(image: str, key: str) -> str:
    match = _IMAGE.fullmatch(image) if isinstance(image, str) else None
    if match is None:
        raise ValueError(
            f"{key}: {image!r} is not a full image reference "
            "(<registry host>/<repository>[:tag][@sha256:<64 hex>])"
        )
    if match["digest"] is not None:
        check_digest(match["digest"], key)
    return image


def _parameters(
    apps: Mapping[str, WorkloadAdmissionSettings], require_digest: bool, platform_images: Sequence[str]
) -> _Parameters:
    for namespace in apps:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"apps: {namespace!r} is not a namespace name (a DNS label)")
    return _Parameters(
        extra_registries={ns: tuple(settings.image_registries) for ns, settings in apps.items()},
        token_namespaces=tuple(
            ns for ns, settings in apps.items() if settings.automount_service_account_token
        ),
        platform_images=tuple(
            _platform_image(image, f"platform_images[{i}]") for i, image in enumerate(platform_images)
        ),
        require_digest=require_digest,
    )


def _policies(endpoint: str, parameters: _Parameters) -> dict[str, dict[str, Any]]:
    checked = check_registry(endpoint, "registry_endpoint")
    return {
        **{pid: _pod_spec_policy(shape, checked, parameters) for pid, shape in POD_SPECS.items()},
        SERVICES: _service_policy(),
    }


def _policy(endpoint: str, *, pid: str, parameters: _Parameters) -> dict[str, Any]:
    return _policies(endpoint, parameters)[pid]


def workload_policies(
    *,
    registry_endpoint: str,
    apps: Mapping[str, WorkloadAdmissionSettings],
    require_digest: bool,
    platform_images: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """ValidatingAdmissionPolicy specs by policy id (module docstring). ``registry_endpoint``: the
    platform registry, ``rg.<region>.scw.cloud/<namespace>``; ``apps``: each app namespace's
    settings (a namespace not listed gets the defaults); ``require_digest``: images by digest only;
    ``platform_images``: the exact references the platform's own hooks run, admitted as they are
    (by registry and by digest). Bind each id as :func:`binding_specs` says, under
    :func:`policy_name`. Bad input raises ValueError naming the parameter."""
    return _policies(registry_endpoint, _parameters(apps, require_digest, platform_images))


def declare_workload_admission(
    name: str,
    *,
    provider: k8s.Provider,
    settings: Mapping[str, WorkloadAdmissionSettings],
    registry_endpoint: pulumi.Input[str],
    require_digest: bool,
    platform_images: Sequence[str] = (),
    opts: pulumi.ResourceOptions | None = None,
) -> list[pulumi.Resource]:
    """Every policy of :func:`workload_policies` and its binding, in the cluster of ``provider``
    (``settings``: app name, which is its namespace -> the app's admission settings). The inputs
    are checked now; the specs wait for ``registry_endpoint`` (tooling's output)."""
    parameters = _parameters(settings, require_digest, platform_images)
    endpoint = pulumi.Output.from_input(registry_endpoint)
    resource_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider))
    resources: list[pulumi.Resource] = []
    for pid, binding in binding_specs([*POD_SPECS, SERVICES]).items():
        spec = endpoint.apply(functools.partial(_policy, pid=pid, parameters=parameters))
        resources.extend(
            kube.admission_policy(
                f"{name}-{pid}",
                f"{name}-{pid}-binding",
                name=policy_name(pid),
                spec=spec,
                binding=binding,
                opts=resource_opts,
            )
        )
    return resources


@dataclass(frozen=True, kw_only=True)
class WorkloadAdmissionArgs:
    provider: k8s.Provider
    #: App name (its namespace) -> the app's admission settings.
    settings: Mapping[str, WorkloadAdmissionSettings]
    #: The platform registry (``rg.<region>.scw.cloud/<namespace>``; tooling's output).
    registry_endpoint: pulumi.Input[str]
    #: Production: every image by digest.
    require_digest: bool
    #: The platform's own hook images, admitted as they are (scw_platform.apps.HOOK_IMAGES).
    platform_images: Sequence[str] = ()


class WorkloadAdmission(pulumi.ComponentResource):
    """The policies and bindings of :func:`declare_workload_admission`, as one component."""

    resources: list[pulumi.Resource]

    def __init__(
        self, name: str, args: WorkloadAdmissionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:admission:WorkloadAdmission", name, None, opts)
        self.resources = declare_workload_admission(
            name,
            provider=args.provider,
            settings=args.settings,
            registry_endpoint=args.registry_endpoint,
            require_digest=args.require_digest,
            platform_images=args.platform_images,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"policies": [policy_name(pid) for pid in [*POD_SPECS, SERVICES]]})

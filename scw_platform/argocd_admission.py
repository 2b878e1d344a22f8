"""Admission policies on Argo CD's Applications and ApplicationSets in tooling's ``argocd`` namespace.

A root app (``<env>-root``, project ``platform``) applies whatever ``environments/<env>`` in Git
holds, Applications and ApplicationSets included. Argo CD marks every object it applies with the
tracking annotation ``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>``, so
the creating root app, and through it the environment, is known at admission. DESIGN.md §7: a
commit reaches its environment's AppProject, never the program-owned Applications. The policies
(:func:`application_policies`, one ValidatingAdmissionPolicy spec per id):

``applications`` (CREATE, UPDATE of an Application that carries, or carried, the annotation)
    * ``spec.project`` is the environment of the root app in the tracking id;
    * ``metadata.name`` starts with ``<env>-`` (and not with ``<other-env>-`` where another
      environment's name itself starts with ``<env>-``, e.g. ``prod-eu`` next to ``prod``);
    * ``metadata.name`` is not reserved: no ``...-root`` name, none of ``program_owned``;
    * on UPDATE, ``spec.project`` and ``spec.destination`` (server, name, namespace) stay as they
      were: a child moves elsewhere only by being replaced (a new name; the old one is pruned).
      Removing the annotation does not escape: the old object's tracking id still applies.
``applicationsets`` (CREATE, UPDATE of a tracked ApplicationSet)
    * the template's ``spec.project`` is the environment; no ``templatePatch``; no generator's
      template (at any nesting Argo CD allows) sets another project;
    * its own ``metadata.name`` starts with ``<env>-`` and is not reserved (the same two rules as
      an Application's, although ApplicationSet names cannot collide with Applications);
    * ``spec.template.metadata.name`` is required, starts with ``<env>-`` literally (so every
      generated name does), and is not reserved; a generator's template that overrides
      ``metadata.name`` obeys the same. What a parameter expands to is unknown here:
      ``prod-{{.name}}`` may still yield ``prod-website``. That case is caught when the generated
      Application reaches the API server, by ``program-owned`` below (the ApplicationSet
      controller sets itself as the Application's owner; it writes no tracking annotation).
``program-owned`` (CREATE, UPDATE of an Application named ``...-root`` or in ``program_owned``, by
anyone)
    * no tracking annotation: no root app creates or adopts one (an UPDATE that adds it, or of an
      object that already carries it, is refused);
    * no ``metadata.ownerReferences``: no ApplicationSet adopts one (its controller updates any
      same-named Application that has no controller yet), and the garbage collector never owns it.
``program-owned-delete`` (DELETE of the same names)
    * refused for every service account (``request.userInfo.username`` starts with
      ``system:serviceaccount:``): Argo CD's application controller (a root app's prune or
      cascade), its API server (any UI or CLI user), the ApplicationSet controller and the garbage
      collector are all service accounts. The platform program deletes with the cluster's admin
      credential, which is not a service account, so removing an app or an environment still
      works. Why the username and not ``request.userInfo.groups``: a service account's username has
      one documented form, ``system:serviceaccount:<namespace>:<name>``, set by the token
      authenticator, and a request that impersonates a service account (Argo CD's sync
      impersonation, when enabled, does) carries that username too; the groups are a list whose
      content depends on the authenticator and, for an impersonated request, on the
      ``Impersonate-Group`` headers the client chose. The username also names one identity, should
      an exemption ever be needed. If operators ever run the program with a service-account token,
      this policy refuses the program's own deletes (the root apps when an environment goes).

``object`` is null for DELETE and ``oldObject`` is null for CREATE (Kubernetes docs, "Validation
Expression"), so the DELETE policy (which matches DELETE only) reads ``oldObject`` only, and in the
CREATE/UPDATE policies every ``oldObject`` access is behind ``request.operation == 'UPDATE'``. The
guard is the operation rather than ``oldObject != null``: comparing an object with null relies on
CEL's heterogeneous equality, which cel-go has and the evaluator of the tests (cel-python) lacks.

Binding: each policy is bound by a ValidatingAdmissionPolicyBinding of the same name with
``validationActions: [Deny]`` and no ``matchResources`` (the policy's own ``matchConstraints`` and
``matchConditions`` scope it); see :func:`binding_specs`. Every policy fails closed
(``failurePolicy: Fail``): an expression that cannot be evaluated refuses the request.

Migration note: children created before these policies (a tracked ``blog`` instead of
``prod-blog``) fail every later UPDATE, the controller's status writes included: rename them in
Git (Argo CD creates the new name and prunes the old one) before binding.
"""

# Kubernetes documentation this module relies on:
# * https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/
#   ("Validation Expression": 'object' is null for DELETE requests, 'oldObject' is null for CREATE
#   requests, 'request' holds the attributes of the admission request; "Matching requests":
#   match conditions see the same variables; "Variable composition").
# * https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/validating-admission-policy-v1/
#   (the same variable list in the API reference of spec.validations[].expression).
# * https://kubernetes.io/docs/reference/config-api/apiserver-admission.v1/#admission-k8s-io-v1-AdmissionRequest
#   (request.operation, request.userInfo.username / groups).
# * https://kubernetes.io/docs/reference/access-authn-authz/authentication/#service-account-tokens
#   ("Service accounts authenticate with the username system:serviceaccount:(NAMESPACE):(SERVICEACCOUNT)").

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from scw_platform.gitops import (
    _GENERATOR_NESTING,
    _LEAF_GENERATORS,
    ARGOCD_NAMESPACE,
    TRACKING_ANNOTATION,
    _same_environment,
    _template_keeps_project,
    root_app_name,
)

#: Policy ids (keys of :func:`application_policies`).
APPLICATIONS = "applications"
APPLICATION_SETS = "applicationsets"
PROGRAM_OWNED = "program-owned"
PROGRAM_OWNED_DELETE = "program-owned-delete"
#: What every root app's name ends with (``root_app_name``): reserved for the program.
ROOT_SUFFIX = root_app_name("")
#: The username prefix of every service account (authentication docs, "Service account tokens").
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

#: An environment is a DNS label (it prefixes names and is an AppProject's name); an Application
#: name a DNS subdomain. Both are spliced into CEL string literals, so nothing else is accepted.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_TRACKED = f"has(object.metadata.annotations) && '{TRACKING_ANNOTATION}' in object.metadata.annotations"
_WAS_TRACKED = (
    "request.operation == 'UPDATE' && has(oldObject.metadata.annotations) && "
    f"'{TRACKING_ANNOTATION}' in oldObject.metadata.annotations"
)


def policy_name(policy_id: str) -> str:
    """The ValidatingAdmissionPolicy (and binding) name; the first two match today's objects."""
    return f"platform-root-{policy_id}"


def binding_specs(policy_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """ValidatingAdmissionPolicyBinding specs by policy id: deny, nothing narrowed further."""
    return {pid: {"policyName": policy_name(pid), "validationActions": ["Deny"]} for pid in policy_ids}


def _cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in sorted(set(values))) + "]"


def _checked(values: Iterable[str], pattern: re.Pattern[str], what: str) -> list[str]:
    values = list(values)
    bad = [value for value in values if not isinstance(value, str) or not pattern.fullmatch(value)]
    if bad:
        raise ValueError(f"not a valid {what}: {bad!r}")
    return values


def _constraints(resource: str, operations: Sequence[str]) -> dict[str, Any]:
    return {
        "resourceRules": [
            {
                "apiGroups": ["argoproj.io"],
                "apiVersions": ["*"],
                "operations": list(operations),
                "resources": [resource],
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ARGOCD_NAMESPACE}},
    }


def _optional(root: str, *path: str) -> str:
    """CEL: the string at ``root.path`` or '' when a step is missing (or ``oldObject`` is null)."""
    steps = [f"{root}.{'.'.join(path[: i + 1])}" for i in range(len(path))]
    guards = ["request.operation == 'UPDATE'"] if root == "oldObject" else []
    return "(" + " && ".join([*guards, *(f"has({step})" for step in steps)]) + f" ? {steps[-1]} : '')"


def _destination(root: str) -> str:
    """CEL: ``[server, name, namespace]`` of ``root``'s destination, '' for what is not set."""
    keys = ("server", "name", "namespace")
    return "[" + ", ".join(_optional(root, "spec", "destination", key) for key in keys) + "]"


def _every_generator(check: Callable[[str], str]) -> str:
    """CEL: ``check`` holds for every template of every generator of ``object``."""
    return f"!has(object.spec.generators) || object.spec.generators.all(g, {generator_templates('g', check)})"


def _reserved(name: str) -> str:
    """CEL: ``name`` belongs to the program (a root app's suffix or a listed Application)."""
    return f"({name}.endsWith('{ROOT_SUFFIX}') || {name} in variables.programOwned)"


def _in_environment(name: str) -> str:
    """CEL: ``name`` starts with ``<env>-`` and not with a longer environment's ``<env2>-``."""
    return (
        f"(variables.environment != '' && {name}.startsWith(variables.environment + '-') && "
        f"!variables.nestedEnvironments.exists(e, {name}.startsWith(e + '-')))"
    )


def _tracked_variables(environments: Sequence[str], program_owned: Sequence[str]) -> list[dict[str, str]]:
    annotation = f"['{TRACKING_ANNOTATION}']"
    return [
        # The new object's tracking id; on an UPDATE that drops it, the one it was created with.
        {
            "name": "trackingId",
            "expression": f"({_TRACKED}) ? object.metadata.annotations{annotation} : "
            f"({_WAS_TRACKED}) ? oldObject.metadata.annotations{annotation} : ''",
        },
        {"name": "environments", "expression": _cel_list(environments)},
        {"name": "programOwned", "expression": _cel_list(program_owned)},
        # `<env>-root:` is a prefix of one tracking id only: `:` ends the app name.
        {
            "name": "owners",
            "expression": f"variables.environments.filter(e, variables.trackingId.startsWith(e + "
            f"'{ROOT_SUFFIX}:'))",
        },
        {"name": "environment", "expression": "size(variables.owners) == 1 ? variables.owners[0] : ''"},
        {
            "name": "nestedEnvironments",
            "expression": "variables.environments.filter(e, variables.environment != '' && "
            "e.startsWith(variables.environment + '-'))",
        },
    ]


def _tracked_policy(resource: str, variables: list[dict[str, str]], validations: list[dict[str, str]]) -> Any:
    return {
        "failurePolicy": "Fail",
        "matchConstraints": _constraints(resource, ("CREATE", "UPDATE")),
        "matchConditions": [
            {"name": "applied-by-an-argo-cd-app", "expression": f"({_TRACKED}) || ({_WAS_TRACKED})"},
            # An object being deleted only loses finalizers: judging it would keep the children of
            # an environment that left the list from ever finishing their deletion.
            {
                "name": "not-being-deleted",
                "expression": "request.operation != 'UPDATE' || !has(oldObject.metadata.deletionTimestamp)",
            },
        ],
        "variables": variables,
        "validations": [{**validation, "reason": "Forbidden"} for validation in validations],
    }


def _name_validations(kind: str) -> list[dict[str, str]]:
    return [
        {
            "expression": _in_environment("object.metadata.name"),
            "message": f"metadata.name: an {kind} created by a root app (<env>-root) must be named <env>-...",
            "messageExpression": (
                f"'metadata.name: {kind} ' + object.metadata.name + ' (tracking id ' + variables.trackingId"
                " + ') must be named ' + variables.environment + '-... after the environment of the root"
                " app that created it'"
            ),
        },
        {
            "expression": "!" + _reserved("object.metadata.name"),
            "message": (
                f"metadata.name: an {kind} created by a root app may not take a name of the program "
                f"(*{ROOT_SUFFIX}, or one of the Applications the platform declares)"
            ),
            "messageExpression": (
                f"'metadata.name: ' + object.metadata.name + ' is reserved for the platform program "
                f"(*{ROOT_SUFFIX} and the per-app Applications it declares)'"
            ),
        },
    ]


def _unchanged_validations() -> list[dict[str, str]]:
    old, new = _destination("oldObject"), _destination("object")
    return [
        {
            "expression": "request.operation != 'UPDATE' || "
            f"{_optional('oldObject', 'spec', 'project')} == {_optional('object', 'spec', 'project')}",
            "message": "spec.project: a root app's Application keeps its project on update",
            "messageExpression": (
                f"'spec.project of ' + object.metadata.name + ' may not change from ' + "
                f"{_optional('oldObject', 'spec', 'project')} + ' (replace the Application instead)'"
            ),
        },
        {
            "expression": f"request.operation != 'UPDATE' || {old} == {new}",
            "message": (
                "spec.destination: a root app's Application keeps its destination (server, name, "
                "namespace) on update; replace it under a new name instead"
            ),
        },
    ]


def _applications(variables: list[dict[str, str]]) -> Any:
    project = {
        "expression": (
            "has(object.spec) && has(object.spec.project) && "
            "object.spec.project in variables.environments && " + _same_environment("object.spec.project")
        ),
        "message": "spec.project: an Application created by a root app (<env>-root) must use project <env>",
        "messageExpression": (
            "'spec.project: Application ' + object.metadata.name + ' (tracking id ' + variables.trackingId "
            "+ ') must use the project of the environment whose root app created it: "
            "<env>-root creates Applications in project <env> only'"
        ),
    }
    return _tracked_policy(
        APPLICATIONS, variables, [project, *_name_validations("Application"), *_unchanged_validations()]
    )


def generator_templates(generator: str, check: Callable[[str], str], depth: int = 0) -> str:
    """CEL: ``check`` holds for every template inside ``generator`` at any nesting Argo CD allows
    (leaf generators' ``template``, matrix/merge ``template`` and their children); a matrix or merge
    nested deeper than Argo CD supports is refused unread."""
    checks = [
        f"(!has({generator}.{kind}) || !has({generator}.{kind}.template) || "
        f"{check(f'{generator}.{kind}.template')})"
        for kind in _LEAF_GENERATORS
    ]
    if depth + 1 < len(_GENERATOR_NESTING):
        child = _GENERATOR_NESTING[depth + 1]
        for combined in ("matrix", "merge"):
            node = f"{generator}.{combined}"
            checks.append(
                f"(!has({node}) || ((!has({node}.template) || {check(f'{node}.template')})"
                f" && (!has({node}.generators) || {node}.generators.all({child}, "
                f"{generator_templates(child, check, depth + 1)}))))"
            )
    else:
        checks.append(f"!has({generator}.matrix) && !has({generator}.merge)")
    return " && ".join(checks)


#: Generators an ApplicationSet from Git may use. scmProvider and pullRequest call an API the
#: ApplicationSet author names, with a token from any Secret in argocd (tokenRef): a commit could
#: send the cluster Secrets or the write credential anywhere. plugin calls an author-named service
#: too, and clusterDecisionResource reads an arbitrary resource. Refused at every nesting level.
SAFE_GENERATORS = ("list", "clusters", "git", "matrix", "merge")
UNSAFE_GENERATORS = ("scmProvider", "pullRequest", "plugin", "clusterDecisionResource")


def generators_safe(generator: str, depth: int = 0) -> str:
    """CEL: ``generator``, and every generator nested in its matrix or merge, is a safe kind."""
    checks = [f"!has({generator}.{kind})" for kind in UNSAFE_GENERATORS]
    if depth + 1 < len(_GENERATOR_NESTING):
        child = _GENERATOR_NESTING[depth + 1]
        for combined in ("matrix", "merge"):
            node = f"{generator}.{combined}"
            checks.append(
                f"(!has({node}) || !has({node}.generators) || "
                f"{node}.generators.all({child}, {generators_safe(child, depth + 1)}))"
            )
    return " && ".join(checks)


def _template_name_allowed(template: str) -> str:
    name = f"{template}.metadata.name"
    return f"({_in_environment(name)} && !{_reserved(name)})"


def _template_keeps_name(template: str) -> str:
    """CEL: a generator's template either leaves ``metadata.name`` alone or obeys the name rules."""
    return (
        f"(!has({template}.metadata) || !has({template}.metadata.name) || {_template_name_allowed(template)})"
    )


def _application_set_validations() -> list[dict[str, str]]:
    return [
        {
            "expression": (
                "has(object.spec) && has(object.spec.template) && has(object.spec.template.spec) && "
                "has(object.spec.template.spec.project) && "
                "object.spec.template.spec.project in variables.environments && "
                + _same_environment("object.spec.template.spec.project")
            ),
            "message": (
                "spec.template.spec.project: an ApplicationSet created by a root app (<env>-root) must "
                "generate Applications in project <env>, written literally (no template)"
            ),
        },
        {
            "expression": "!has(object.spec.templatePatch)",
            "message": "spec.templatePatch: not allowed in an ApplicationSet created by a root app "
            "(it can rewrite the project and the name)",
        },
        {
            "expression": _every_generator(_template_keeps_project),
            "message": (
                "spec.generators[].template.spec.project: an ApplicationSet created by a root app may not "
                "set another project in a generator's template (nor nest matrix or merge generators "
                "deeper than Argo CD supports)"
            ),
        },
        {
            "expression": "!has(object.spec.generators) || object.spec.generators.all(g, "
            + generators_safe("g")
            + ")",
            "message": (
                "spec.generators: an ApplicationSet created by a root app may use only the "
                f"{', '.join(SAFE_GENERATORS)} generators ({', '.join(UNSAFE_GENERATORS)} call services "
                "the author chooses, with tokens from Secrets in argocd)"
            ),
        },
        *_name_validations("ApplicationSet"),
        {
            "expression": (
                "has(object.spec) && has(object.spec.template) && has(object.spec.template.metadata) && "
                "has(object.spec.template.metadata.name) && " + _template_name_allowed("object.spec.template")
            ),
            "message": (
                "spec.template.metadata.name: must start with <env>- literally (e.g. <env>-{{.name}}), "
                f"and may not be *{ROOT_SUFFIX} or a name of the platform's own Applications"
            ),
        },
        {
            "expression": _every_generator(_template_keeps_name),
            "message": (
                "spec.generators[].template.metadata.name: a generator's template that sets the name "
                f"must start with <env>- literally and may not be *{ROOT_SUFFIX} or a program-owned name"
            ),
        },
    ]


def _program_owned(reserved_names: str) -> Any:
    name = "object.metadata.name"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": _constraints("applications", ("CREATE", "UPDATE")),
        "matchConditions": [
            {
                "name": "a-program-owned-name",
                "expression": f"{name}.endsWith('{ROOT_SUFFIX}') || {name} in {reserved_names}",
            }
        ],
        "validations": [
            {
                "expression": f"!({_TRACKED})",
                "message": (
                    f"metadata.annotations: a program-owned Application (*{ROOT_SUFFIX} or declared by the "
                    f"platform) may not carry {TRACKING_ANNOTATION}: no root app creates or adopts it"
                ),
                "messageExpression": (
                    f"'metadata.annotations: ' + {name} + ' is owned by the platform program; "
                    f"{TRACKING_ANNOTATION} ' + object.metadata.annotations['{TRACKING_ANNOTATION}'] + "
                    "' would hand it to a root app'"
                ),
                "reason": "Forbidden",
            },
            {
                "expression": (
                    "!has(object.metadata.ownerReferences) || size(object.metadata.ownerReferences) == 0"
                ),
                "message": (
                    f"metadata.ownerReferences: a program-owned Application (*{ROOT_SUFFIX} or declared by "
                    "the platform) has no owner: no ApplicationSet may generate or adopt it"
                ),
                "reason": "Forbidden",
            },
        ],
    }


def _program_owned_delete(reserved_names: str) -> Any:
    name = "oldObject.metadata.name"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": _constraints("applications", ("DELETE",)),
        # DELETE only: `object` is null, the object being deleted is `oldObject` (never null here).
        "matchConditions": [
            {
                "name": "a-program-owned-name",
                "expression": f"{name}.endsWith('{ROOT_SUFFIX}') || {name} in {reserved_names}",
            }
        ],
        "validations": [
            {
                "expression": f"!request.userInfo.username.startsWith('{SERVICE_ACCOUNT_PREFIX}')",
                "message": (
                    f"metadata.name: a program-owned Application (*{ROOT_SUFFIX} or declared by the "
                    "platform) is deleted by the platform program only, never by a service account (Argo CD, "
                    "Git, controllers)"
                ),
                "messageExpression": (
                    f"'metadata.name: ' + {name} + ' is owned by the platform program; service account ' + "
                    "request.userInfo.username + ' may not delete it'"
                ),
                "reason": "Forbidden",
            }
        ],
    }


def application_policies(
    environments: Sequence[str], program_owned: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """ValidatingAdmissionPolicy specs by policy id (module docstring): what root apps create stays
    in its environment, under its environment's names, and never takes, adopts or deletes an
    Application of the program. ``environments``: every environment with a root app;
    ``program_owned``: the names of the Applications the program declares (``<env>-<app>``; the
    root apps are covered by their suffix). Bind each id as :func:`binding_specs` says, under
    :func:`policy_name`."""
    envs = _checked(environments, _DNS_LABEL, "environment name")
    owned = _checked(program_owned, _DNS_SUBDOMAIN, "Application name")
    variables = _tracked_variables(envs, owned)
    reserved_names = _cel_list(owned)
    return {
        APPLICATIONS: _applications(variables),
        APPLICATION_SETS: _tracked_policy(APPLICATION_SETS, variables, _application_set_validations()),
        PROGRAM_OWNED: _program_owned(reserved_names),
        PROGRAM_OWNED_DELETE: _program_owned_delete(reserved_names),
    }

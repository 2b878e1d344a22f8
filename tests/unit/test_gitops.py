"""GitOps (issue 5): Argo CD in tooling, cluster registration from prod, projects, root apps and
the image updater, checked on the committed stacks' recorded resources; plus the guards between
environments: the locked-down `default` project, the admission policies on what root apps create
(their CEL evaluated with cel-python when it is installed), argocd-manager's rules, the registrar
identities and the CI push key kept out of the exports."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pulumi.runtime import rpc

from offline import runner, schemas
from offline.mocks import PlatformMocks, Registration, fake_secret, unwrap_secrets
from program import config, environments, model
from program import environments as env_list
from program.config import ConfigError
from program.environments import Environments, EnvironmentsError
from program.references import ExportShapeError
from scw_platform import argocd_admission, ci, contract, gitops, kube
from scw_platform.contract import RegistrationError
from tests.harness import (
    EnvironmentChanges,
    environments_document,
    environments_with,
    serve_changed_registration,
    upstream,
)
from tests.unit.test_ingress import assert_spread

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
    # The UI is public, so single sign-on is on and the local admin is off.
    assert values["configs"]["cm"]["admin.enabled"] is False
    assert "argocdServerAdminPassword" not in json.dumps(values)


def test_argocd_ha_components_are_spread_with_budgets(tooling: runner.Plan) -> None:
    """Server, repo server and ApplicationSet controller: two replicas, a budget a drain can pass and
    the spread over zones and nodes (zone rule soft: tooling has one zone), each selecting its own
    pods (argo-cd.selectorLabels: argocd-<component>, the release)."""
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    components = {
        "server": "server",
        "repoServer": "repo-server",
        "applicationSet": "applicationset-controller",
    }
    for key, component in components.items():
        assert values[key]["replicas"] == 2
        assert values[key]["pdb"] == {"enabled": True, "minAvailable": 1}
        assert_spread(
            values[key]["topologySpreadConstraints"],
            {"app.kubernetes.io/name": f"argocd-{component}", "app.kubernetes.io/instance": "argocd"},
        )
    # redis-ha's own, one-constraint form: a soft zone spread (its pods already avoid sharing nodes),
    # and budgets that let a drain take one of its three pods at a time.
    redis = values["redis-ha"]
    assert redis["topologySpreadConstraints"] == {
        "enabled": True,
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
    }
    assert redis["podDisruptionBudget"] == redis["haproxy"]["podDisruptionBudget"] == {"maxUnavailable": 1}


def test_argocd_without_ha_runs_single_replicas_without_budgets(
    plan_with: Callable[..., runner.Plan],
) -> None:
    raw = runner.read_stack_config("tooling")["platform:gitops"]
    gitops_settings = {**raw, "argocd": {**raw["argocd"], "ha": False}}
    values = _plain(
        _named(plan_with("tooling", {"platform:gitops": gitops_settings}), "argocd-argocd").inputs["values"]
    )
    for key in ("server", "repoServer", "applicationSet"):
        assert values[key]["replicas"] == 1
        assert "pdb" not in values[key] and "topologySpreadConstraints" not in values[key]
    assert values["redis-ha"] == {"enabled": False}
    # The chart's single Redis runs instead: pinned, sized, probed, without an exporter.
    assert values["redis"]["image"] == {"repository": gitops.REDIS_IMAGE, "tag": gitops.REDIS_IMAGE_TAG}
    assert values["redis"]["resources"] == gitops.ARGOCD_RESOURCES["redis"]
    assert values["redis"]["livenessProbe"] == values["redis"]["readinessProbe"] == {"enabled": True}
    assert values["redis"]["exporter"] == {"enabled": False}
    assert_every_container_sized(values, ha=False)


#: Every container the argo-cd chart runs with the program's values, by the path of its
#: ``resources`` in the values (argo-helm charts/argo-cd, DandyDeveloper/charts redis-ha templates):
#: 8 without HA (controller, repo server and its copyutil init container, server, ApplicationSet
#: controller, notifications controller, Redis, the redis-secret-init hook), 13 with redis-ha
#: (its server pod's config-init, redis, sentinel and split-brain-fix, HAProxy and its init
#: container, instead of the single Redis).
_ARGOCD_CONTAINERS = (
    "controller",
    "repoServer",
    "repoServer.copyutil",
    "server",
    "applicationSet",
    "notifications",
    "redisSecretInit",
)
_SINGLE_REDIS = ("redis",)
_REDIS_HA_CONTAINERS = (
    "redis-ha.redis",
    "redis-ha.sentinel",
    "redis-ha.init",
    "redis-ha.splitBrainDetection",
    "redis-ha.haproxy",
    "redis-ha.haproxy.init",
)


def _at(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"{path}: no {part!r}"
        node = node[part]
    return node


def assert_every_container_sized(values: dict[str, Any], *, ha: bool) -> None:
    """CPU and memory requests and a memory limit at or above the request, on every container;
    no CPU limit (the platform's controllers set none: scw_platform.workload_admission)."""
    from scw_platform.apps import mebibytes, millicores

    paths = [*_ARGOCD_CONTAINERS, *(_REDIS_HA_CONTAINERS if ha else _SINGLE_REDIS)]
    if not values["notifications"].get("enabled"):
        paths.remove("notifications")
    for path in paths:
        sized = _at(values, f"{path}.resources")
        assert set(sized) == {"requests", "limits"}, path
        assert millicores(sized["requests"]["cpu"]) > 0, path
        assert set(sized["limits"]) == {"memory"}, path
        assert mebibytes(sized["limits"]["memory"]) >= mebibytes(sized["requests"]["memory"]) > 0, path


def test_every_argocd_container_has_requests_and_a_memory_limit(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    assert values["redis-ha"]["enabled"] is True
    assert_every_container_sized(values, ha=True)
    # The single Redis is not rendered with redis-ha, so the program does not pretend to size it.
    assert "redis" not in values
    updater = _plain(_named(tooling, "argocd-image-updater").inputs["values"])
    assert set(updater["resources"]["requests"]) == {"cpu", "memory"}
    assert set(updater["resources"]["limits"]) == {"memory"}


def test_the_sizing_check_catches_a_missing_limit(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    broken = json.loads(json.dumps(values))
    del broken["redis-ha"]["splitBrainDetection"]["resources"]["limits"]
    with pytest.raises(AssertionError, match="splitBrainDetection"):
        assert_every_container_sized(broken, ha=True)
    broken = json.loads(json.dumps(values))
    broken["repoServer"]["copyutil"]["resources"]["limits"]["memory"] = "16Mi"  # below its request
    with pytest.raises(AssertionError, match="copyutil"):
        assert_every_container_sized(broken, ha=True)


def test_probes_are_on_where_the_chart_leaves_them_off(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    for component in ("applicationSet", "notifications"):
        assert values[component]["livenessProbe"] == {"enabled": True}, component
        assert values[component]["readinessProbe"] == {"enabled": True}, component


def test_every_argocd_image_is_pinned_and_unused_parts_are_off(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])
    assert values["global"]["image"] == {"repository": "quay.io/argoproj/argocd", "tag": "v3.4.4"}
    redis = values["redis-ha"]
    assert redis["image"] == {"repository": gitops.REDIS_IMAGE, "tag": gitops.REDIS_IMAGE_TAG}
    assert redis["haproxy"]["image"] == {"repository": gitops.HAPROXY_IMAGE, "tag": gitops.HAPROXY_IMAGE_TAG}
    for tag in (gitops.ARGOCD_IMAGE_TAG, gitops.REDIS_IMAGE_TAG, gitops.HAPROXY_IMAGE_TAG):
        assert tag and tag != "latest"
    # No component without a user: Dex (Argo CD speaks OIDC itself), the hydrator's commit
    # server, Redis exporters (nothing scrapes them).
    assert values["dex"] == {"enabled": False}
    assert values["commitServer"] == {"enabled": False}
    assert redis["exporter"] == {"enabled": False}
    updater = _plain(_named(tooling, "argocd-image-updater").inputs["values"])
    assert updater["image"] == {
        "repository": "quay.io/argoprojlabs/argocd-image-updater",
        "tag": gitops.IMAGE_UPDATER_IMAGE_TAG,
    }


def test_the_status_account_may_only_get_applications(tooling: runner.Plan) -> None:
    """ops/status.py and ops/promote.py read Argo CD with this account's token (docs/releases.md)."""
    configs = _plain(_named(tooling, "argocd-argocd").inputs["values"])["configs"]
    assert configs["cm"]["accounts.platform-status"] == "apiKey"  # tokens only, no UI login
    rbac = configs["rbac"]
    assert rbac["policy.default"] == ""
    lines = [line for line in rbac["policy.csv"].splitlines() if "platform-status" in line]
    assert lines == [
        "p, role:platform-status, applications, get, */*, allow",
        "g, platform-status, role:platform-status",
    ]
    # The SSO groups keep their own roles beside it.
    assert "g, acme/platform-team, role:admin" in rbac["policy.csv"].splitlines()


def test_deployments_announce_themselves_through_the_vault(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-argocd").inputs["values"])["notifications"]
    assert values["enabled"] is True
    # The chart does not create the Secret: the ExternalSecret below owns it.
    assert values["secret"] == {"create": False}
    assert values["notifiers"] == {"service.telegram.deploys": "token: $telegram-deploys\n"}
    (subscription,) = values["subscriptions"]
    assert subscription["recipients"] == ["deploys:-1001234567890"]
    assert set(subscription["triggers"]) == {"on-deployed", "on-sync-failed", "on-health-degraded"}
    secret = _named(tooling, "argocd-notifications-secret")
    assert secret.inputs["metadata"] == {"name": "argocd-notifications-secret", "namespace": "argocd"}
    spec = secret.inputs["spec"]
    assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "platform-scaleway"}
    assert spec["data"] == [
        {"secretKey": "telegram-deploys", "remoteRef": {"key": "path:/platform/argocd-notifications/deploys"}}
    ]
    assert _named(tooling, "tooling-secrets-operator").urn in secret.dependencies


def test_notifications_belong_to_tooling(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("dev")
    raw["platform:gitops"]["notifications"] = {"contactPoints": [{"name": "x", "kind": "webhook"}]}
    assert "platform:gitops.notifications: not allowed for role development (the tooling stack sets it)" in (
        _problems(raw)
    )


def test_notifications_off_without_settings(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"].pop("notifications")
    plan = plan_with("tooling", raw)
    assert _plain(_named(plan, "argocd-argocd").inputs["values"])["notifications"] == {"enabled": False}
    assert not [r for r in plan.registrations if r.name == "argocd-notifications-secret"]


def test_sso_reads_the_client_secret_from_the_vault_and_keeps_the_values_plain(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    """With OIDC on, Argo CD's values hold no secret (so they are no secret output and the offline
    validators read them): argocd-cm names the client secret's own Secret, which an ExternalSecret
    writes from the vault with the label Argo CD needs to resolve the reference."""
    raw = stack_config("tooling")
    raw["platform:gitops"]["argocd"]["oidc"] = {
        "issuer": "https://sso.example.com",
        "clientId": "argocd",
        "adminGroups": ["platform-admins"],
    }
    plan = plan_with("tooling", raw)
    release = _named(plan, "argocd-argocd")
    assert not rpc.is_rpc_secret(release.inputs["values"])
    values = release.inputs["values"]
    # No secret anywhere inside either, nor the deploy-time secret's mock value.
    assert _plain(values) == values
    assert "MOCKSECRET" not in json.dumps(values)
    # argocd-secret gets references only (the Git webhook's), nothing of the OIDC client.
    assert all(v.startswith("$argocd-") for v in values["configs"].get("secret", {}).values())
    assert "oidc" not in json.dumps(values["configs"].get("secret", {}))
    assert values["configs"]["cm"]["admin.enabled"] is False
    oidc = json.loads(values["configs"]["cm"]["oidc.config"])
    assert oidc["issuer"] == "https://sso.example.com" and oidc["clientID"] == "argocd"
    assert oidc["clientSecret"] == "$argocd-oidc:clientSecret"
    assert "g, platform-admins, role:admin" in values["configs"]["rbac"]["policy.csv"]
    assert values["dex"]["enabled"] is False

    synced = _named(plan, "argocd-oidc-secret")
    assert synced.inputs["kind"] == "ExternalSecret"
    assert synced.inputs["metadata"] == {"name": "argocd-oidc", "namespace": "argocd"}
    spec = synced.inputs["spec"]
    secret_name, key = oidc["clientSecret"].removeprefix("$").split(":")
    assert spec["target"]["name"] == secret_name
    assert spec["target"]["template"] == {"metadata": {"labels": {"app.kubernetes.io/part-of": "argocd"}}}
    assert spec["data"] == [
        {"secretKey": key, "remoteRef": {"key": "path:/platform/argocd/oidc-client-secret"}}
    ]
    assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "platform-scaleway"}
    # It waits for the operator and its stores; the release does not wait for it (Argo CD watches
    # its Secrets and picks the client secret up when it appears).
    assert _named(plan, "tooling-secrets-operator").urn in synced.dependencies
    assert synced.urn not in release.dependencies


def test_the_committed_tooling_values_are_plain_with_sso_on(tooling: runner.Plan) -> None:
    """The committed tooling stack has single sign-on: its Argo CD values are not a secret output,
    so the plan's artifacts (build/tooling/helm) show them unmasked."""
    release = _named(tooling, "argocd-argocd")
    values = release.inputs["values"]
    assert "oidc.config" in values["configs"]["cm"]
    assert not rpc.is_rpc_secret(values) and _plain(values) == values
    assert not rpc.is_rpc_secret(_named(tooling, "argocd-image-updater").inputs["values"])


def test_no_oidc_no_client_secret_sync(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("tooling")
    argocd = raw["platform:gitops"]["argocd"]
    del argocd["oidc"], argocd["hostname"], argocd["webhook"]
    plan = plan_with("tooling", raw)
    assert not [r for r in plan.registrations if r.name == "argocd-oidc-secret"]
    assert "oidc.config" not in _named(plan, "argocd-argocd").inputs["values"]["configs"]["cm"]


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
    served = ["tooling", *environments.load_file().registered_by("tooling")]
    assert "prod" in served
    assert set(roots) == {f"{env}-root" for env in served}
    for env in served:
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
    # Beside Argo CD's release (it restarts until the Application CRD exists), after its namespace
    # and its own RBAC; the ImageUpdater resources wait for it (their CRD is its chart's).
    argocd = _named(tooling, "argocd-argocd")
    assert argocd.urn not in upstream(tooling, updater)
    assert _named(tooling, "argocd-namespace").urn in upstream(tooling, updater)
    assert _named(tooling, "argocd-image-updater-role").urn in upstream(tooling, updater)
    registries = _plain(updater.inputs["values"])["config"]["registries"]
    assert registries[0]["prefix"] == "rg.fr-par.scw.cloud"
    assert registries[0]["credentials"] == "pullsecret:argocd/registry-pull"
    pull = _named(tooling, "argocd-registry-pull")
    assert pull.inputs["type"] == "kubernetes.io/dockerconfigjson"
    assert rpc.is_rpc_secret(pull.inputs["stringData"])
    auth = json.loads(_plain(pull.inputs["stringData"])[".dockerconfigjson"])["auths"]["rg.fr-par.scw.cloud"]
    assert auth["password"].startswith("MOCKSECRET")


# --- The hub registers each environment from its exports (DESIGN.md §5) --------------------------


def _registration(prod: runner.Plan) -> dict[str, Any]:
    export = prod.exports[contract.REGISTRATION_KEY]
    assert export.secret  # it carries argocd-manager's token
    return dict(_plain(export.value))


def test_cluster_secret_is_built_by_tooling_from_prods_exports(
    tooling: runner.Plan, prod: runner.Plan
) -> None:
    secret = _named(tooling, "prod-cluster-secret")
    assert secret.provider_urn == _named(tooling, "tooling-k8s").urn
    assert secret.inputs["metadata"]["namespace"] == gitops.ARGOCD_NAMESPACE
    assert secret.inputs["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    assert rpc.is_rpc_secret(secret.inputs["stringData"]) or rpc.is_rpc_secret(
        secret.inputs["stringData"]["config"]
    )
    data = _plain(secret.inputs["stringData"])
    registration = _registration(prod)
    # Exactly these keys, and a config with exactly a bearer token and the CA: no exec provider.
    assert set(data) == {"name", "server", "namespaces", "clusterResources", "config"}
    config_json = json.loads(data["config"])
    assert config_json == {
        "bearerToken": registration["token"],
        "tlsClientConfig": {"insecure": False, "caData": registration["caData"]},
    }
    assert config_json["bearerToken"].startswith("MOCKSECRET")
    assert data["server"] == registration["server"] == prod.exports["apiServerUrl"].value
    assert data["name"] == "prod"
    assert data["namespaces"] == "newsletter,website" == ",".join(registration["namespaces"])
    assert data["clusterResources"] == "false"


def test_cluster_secret_carries_platform_facts(tooling: runner.Plan, prod: runner.Plan) -> None:
    annotations = _named(tooling, "prod-cluster-secret").inputs["metadata"]["annotations"]
    assert annotations["platform.scw/environment"] == "prod"
    assert annotations["platform.scw/database-host"] == prod.exports["databaseHost"].value
    assert annotations["platform.scw/ingress-ip"] == prod.exports["ingressIp"].value
    assert annotations["platform.scw/registry-endpoint"] == "rg.fr-par.scw.cloud/acme-platform"
    assert annotations["platform.scw/source-stack"] == "organization/platform/prod"


def test_prod_declares_nothing_in_tooling(prod: runner.Plan) -> None:
    providers = {r.urn for r in prod.by_type("pulumi:providers:kubernetes")}
    assert {p.rsplit("::", 1)[-1] for p in providers} == {"prod-k8s"}
    assert not [r for r in prod.registrations if r.inputs.get("metadata", {}).get("namespace") == "argocd"]
    assert not prod.by_type(APPLICATION) and not prod.by_type(APP_PROJECT) and not prod.by_type(IMAGE_UPDATER)


def test_environment_project_is_restricted_to_its_cluster_and_namespaces(tooling: runner.Plan) -> None:
    project = _named(tooling, "prod-gitops-project")
    assert project.provider_urn == _named(tooling, "tooling-k8s").urn
    spec = project.inputs["spec"]
    assert spec["sourceRepos"] == ["https://gitlab.com/acme/platform-gitops.git"]
    assert spec["destinations"] == [
        {"name": "prod", "namespace": "newsletter"},
        {"name": "prod", "namespace": "website"},
    ]
    assert spec["clusterResourceWhitelist"] == []
    assert {(k["group"], k["kind"]) for k in spec["namespaceResourceBlacklist"]} == {
        ("", "ResourceQuota"),
        ("", "LimitRange"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("external-secrets.io", "ExternalSecret"),
        # The platform's canary analysis: a commit cannot rewrite what judges its own release.
        ("argoproj.io", "AnalysisTemplate"),
        ("", "Secret"),
        ("rbac.authorization.k8s.io", "*"),
    }
    # Depending on the registered cluster component waits for its children, the cluster Secret.
    assert _named(tooling, "prod-cluster-secret").urn in project.dependencies


def test_tooling_project_allows_no_secrets_nor_rbac(tooling: runner.Plan) -> None:
    spec = _named(tooling, "tooling-gitops-project").inputs["spec"]
    assert spec["destinations"] == [{"name": "in-cluster", "namespace": "tools"}]
    blacklist = {(k["group"], k["kind"]) for k in spec["namespaceResourceBlacklist"]}
    assert {("", "Secret"), ("rbac.authorization.k8s.io", "*")} <= blacklist
    assert spec["clusterResourceWhitelist"] == []


def test_gitops_namespace_is_declared_with_the_platform_envelope(tooling: runner.Plan) -> None:
    namespace = _named(tooling, "tooling-namespace-tools-namespace")
    assert namespace.inputs["metadata"]["name"] == "tools"
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = _named(tooling, "tooling-namespace-tools-default-deny")
    assert deny.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    quota = _named(tooling, "tooling-namespace-tools-quota").inputs["spec"]["hard"]
    assert quota["services.loadbalancers"] == "0" and quota["services.nodeports"] == "0"
    project = _named(tooling, "tooling-gitops-project")
    # Argo CD may deploy into tools only once the envelope is there.
    for part in ("namespace", "quota", "limits", "default-deny"):
        assert (
            _named(tooling, f"tooling-namespace-tools-{part}").provider_urn
            == _named(tooling, "tooling-k8s").urn
        )
    assert project.inputs["spec"]["namespaceResourceBlacklist"]


def test_app_applications_are_declared_by_tooling(tooling: runner.Plan) -> None:
    apps = {a.inputs["metadata"]["name"]: a for a in tooling.by_type(APPLICATION)}
    for env in ("prod", "dev"):
        for app in ("website", "newsletter"):
            application = apps[f"{env}-{app}"]
            spec = application.inputs["spec"]
            assert spec["project"] == env
            assert spec["destination"] == {"name": env, "namespace": app}
            assert spec["source"]["path"] == f"apps/{app}/envs/{env}"
            assert "FailOnSharedResource=true" in spec["syncPolicy"]["syncOptions"]
            assert application.inputs["metadata"]["finalizers"] == [kube.ARGOCD_FINALIZER]
            assert _named(tooling, f"{env}-gitops-project").urn in application.dependencies
    for root in (r for r in tooling.by_type(APPLICATION) if r.name.startswith("argocd-root-")):
        assert "FailOnSharedResource=true" in root.inputs["spec"]["syncPolicy"]["syncOptions"]


def test_image_updater_lists_the_configured_apps_and_writes_to_a_branch(tooling: runner.Plan) -> None:
    spec = _named(tooling, "dev-gitops-image-updater").inputs["spec"]
    # Its own write credential, never Argo CD's read-only repository Secret.
    assert spec["writeBackConfig"]["method"] == "git:secret:argocd/gitops-write-credential"
    assert spec["writeBackConfig"]["gitConfig"]["branch"] == "main:image-updater-{{.SHA256}}"
    refs = {ref["namePattern"]: ref["images"][0] for ref in spec["applicationRefs"]}
    assert set(refs) == {"dev-website", "dev-newsletter"}
    assert refs["dev-website"]["imageName"] == "rg.fr-par.scw.cloud/acme-platform/website"
    assert refs["dev-website"]["commonUpdateSettings"]["updateStrategy"] == "semver"
    assert refs["dev-website"]["commonUpdateSettings"]["allowTags"] == r"regexp:^v\d+\.\d+\.\d+(-rc\.\d+)?$"
    assert refs["dev-newsletter"]["commonUpdateSettings"] == {"updateStrategy": "digest"}


def test_no_image_updater_writes_prods_paths(tooling: runner.Plan) -> None:
    """prod is fed by promotion (platform:gitops.promotedFrom): its apps have Applications but no
    ImageUpdater entry anywhere, and its registration says so."""
    updaters = [r for r in tooling.registrations if r.type.endswith(":ImageUpdater")]
    assert [u.name for u in updaters] == ["dev-gitops-image-updater"]
    for updater in updaters:
        patterns = [ref["namePattern"] for ref in updater.inputs["spec"]["applicationRefs"]]
        assert not [p for p in patterns if p.startswith("prod-")], patterns
    apps = {a.inputs["metadata"]["name"] for a in tooling.by_type(APPLICATION)}
    assert {"prod-website", "prod-newsletter"} <= apps


def test_git_credentials_are_split(tooling: runner.Plan) -> None:
    read = _plain(_named(tooling, "argocd-repository").inputs["stringData"])
    write_secret = _named(tooling, "argocd-write-credential")
    write = _plain(write_secret.inputs["stringData"])
    assert read["password"] == fake_secret("platform:gitopsRepoCredential")
    assert write == {"username": "oauth2", "password": fake_secret("platform:gitopsWriteCredential")}
    assert rpc.is_rpc_secret(write_secret.inputs["stringData"])
    # Argo CD never picks the write credential up as a repository credential.
    assert "labels" not in write_secret.inputs["metadata"]


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


def test_admission_policies_are_bound_before_the_root_apps(tooling: runner.Plan) -> None:
    policies = {p.inputs["metadata"]["name"]: p for p in tooling.by_type(POLICY)}
    bindings = {b.inputs["metadata"]["name"]: b for b in tooling.by_type(POLICY_BINDING)}
    expected = {
        f"platform-root-{pid}"
        for pid in (
            "applications",
            "applicationsets",
            "program-owned",
            "program-owned-delete",
            "image-updater-configmaps",
        )
    }
    # Besides Argo CD's, tooling has the CI namespace's (tests/unit/test_ci.py).
    assert set(policies) == set(bindings) == {*expected, ci.BUILD_POD_POLICY}
    policies.pop(ci.BUILD_POD_POLICY)
    bindings.pop(ci.BUILD_POD_POLICY)
    tooling_provider = _named(tooling, "tooling-k8s").urn
    operations = {
        "applications": ["CREATE", "UPDATE"],
        "applicationsets": ["CREATE", "UPDATE"],
        "program-owned": ["CREATE", "UPDATE"],
        "program-owned-delete": ["DELETE"],
        "image-updater-configmaps": ["CREATE", "UPDATE", "DELETE"],
    }
    for name, policy in policies.items():
        spec = policy.inputs["spec"]
        assert spec["failurePolicy"] == "Fail"
        constraints = spec["matchConstraints"]
        assert constraints["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": gitops.ARGOCD_NAMESPACE}
        }
        rules = constraints["resourceRules"]
        assert [r["resources"] for r in rules] == (
            [["configmaps"], ["leases"]]
            if name.endswith("image-updater-configmaps")
            else [[rules[0]["resources"][0]]]
        ), name
        for rule in rules:
            assert rule["operations"] == operations[name.removeprefix("platform-root-")], name
        binding = bindings[name]
        assert binding.inputs["spec"] == {"policyName": name, "validationActions": ["Deny"]}
        assert policy.urn in binding.dependencies
        assert policy.provider_urn == binding.provider_urn == tooling_provider
    # The program-owned names the policies protect are exactly the Applications tooling declares.
    owned = policies["platform-root-program-owned"].inputs["spec"]
    declared = {
        a.inputs["metadata"]["name"]
        for a in tooling.by_type(APPLICATION)
        if a.name.startswith("prod-gitops-app-")
    }
    assert declared == {"prod-website", "prod-newsletter"}
    assert all(name in json.dumps(owned) for name in declared)
    guards = {b.urn for b in bindings.values()} | {_named(tooling, "argocd-default-project").urn}
    for root in (r for r in tooling.by_type(APPLICATION) if r.name.startswith("argocd-root-")):
        # A root app starts creating Applications as soon as it exists: the guards come first.
        assert guards <= set(root.dependencies), root.name


def _policy_spec(resource: str) -> dict[str, Any]:
    spec: dict[str, Any] = argocd_admission.application_policies(["prod", "tooling"], ["prod-website"])[
        resource
    ]
    return spec


def _tracked(owner: str, kind: str = "Application", name: str = "child") -> dict[str, str]:
    return {gitops.TRACKING_ANNOTATION: f"{owner}:argoproj.io/{kind}:argocd/{name}"}


def _application(project: Any, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    # Named after the creating root app's environment, as the admission policies require.
    owner = (annotations or {}).get(gitops.TRACKING_ANNOTATION, "prod-root:").split(":", 1)[0]
    env = owner.removesuffix("-root").split("-", 1)[0]
    metadata: dict[str, Any] = {"name": f"{env}-child", "namespace": "argocd"}
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
            "metadata": {"name": "prod-{{.a}}"},
            "spec": {"project": project, "destination": {"name": "prod", "namespace": "website"}},
        },
        **extra,
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": "prod-set",
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

    request = {"operation": "CREATE", "userInfo": {"username": "system:serviceaccount:argocd:controller"}}
    activation: dict[str, Any] = {"object": celpy.json_to_cel(obj), "request": celpy.json_to_cel(request)}
    if not all(holds(c["expression"], activation) for c in spec["matchConditions"]):
        return True
    # Variables are evaluated in order; a later one may use an earlier one.
    variables = celpy.celtypes.MapType({})
    activation["variables"] = variables
    for v in spec["variables"]:
        variables[celpy.celtypes.StringType(v["name"])] = evaluate(v["expression"], activation)
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
        # A canary app's Rollout from Git; its analysis and the runs are read only.
        "argoproj.io": {"rollouts", "analysistemplates", "analysisruns"},
    }
    [external_secrets] = [r for r in rules if r["apiGroups"] == ["external-secrets.io"]]
    assert external_secrets["verbs"] == ["get", "list", "watch"]
    [analysis] = [
        r for r in rules if r["apiGroups"] == ["argoproj.io"] and "analysistemplates" in r["resources"]
    ]
    assert analysis["verbs"] == ["get", "list", "watch"]


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


_ROLE_KINDS = ("Role", "ClusterRole")
_BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def test_no_declared_identity_can_write_argo_cd_objects(tooling: runner.Plan) -> None:
    """Argo CD's admins are whoever can write Applications, AppProjects or cluster Secrets in its
    namespace: among the RBAC the program declares in tooling, nothing grants that (Argo CD's own
    roles come with its chart)."""
    rules = [
        rule
        for kind in _ROLE_KINDS
        for role in tooling.by_type(f"kubernetes:rbac.authorization.k8s.io/v1:{kind}")
        for rule in role.inputs["rules"]
    ]
    assert rules  # the image updater's own roles, at least
    for kind, (group, resource) in PLURALS.items():
        for verb in ("create", "update", "patch", "delete"):
            # The image updater updates its own ImageUpdater objects (status, finalizers), nothing else.
            allowed = kind == "ImageUpdater" and verb in ("update", "patch")
            assert _allows(rules, verb, group, resource, "cluster-prod") is allowed, (verb, resource)
    assert not _allows(rules, "list", "", "secrets", "")
    assert not _allows(rules, "get", "", "secrets", "cluster-prod")
    assert not _allows(rules, "get", "", "secrets", "gitops-repository")
    bound = {
        (s["kind"], s.get("namespace"), s["name"])
        for kind in _BINDING_KINDS
        for b in tooling.by_type(f"kubernetes:rbac.authorization.k8s.io/v1:{kind}")
        for s in b.inputs["subjects"]
    }
    assert not [s for s in bound if "registrar" in s[2]]


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda registration: registration.__setitem__(key, value)


def test_image_updater_reads_only_its_own_secrets(tooling: runner.Plan) -> None:
    values = _plain(_named(tooling, "argocd-image-updater").inputs["values"])
    # The chart's RBAC (get/list/watch on every Secret in argocd) is off; the program's replaces it.
    assert values["rbac"] == {"enabled": False} and values["createClusterRoles"] is False
    assert values["serviceAccount"] == {"create": True, "name": gitops.IMAGE_UPDATER_ACCOUNT}
    subject = {"kind": "ServiceAccount", "name": gitops.IMAGE_UPDATER_ACCOUNT, "namespace": "argocd"}
    rules = []
    for kind in _BINDING_KINDS:
        for binding in tooling.by_type(f"kubernetes:rbac.authorization.k8s.io/v1:{kind}"):
            if subject in binding.inputs["subjects"]:
                role_kind = binding.inputs["roleRef"]["kind"]
                [role] = [
                    r
                    for r in tooling.by_type(f"kubernetes:rbac.authorization.k8s.io/v1:{role_kind}")
                    if r.inputs["metadata"]["name"] == binding.inputs["roleRef"]["name"]
                ]
                rules += role.inputs["rules"]
    assert _allows(rules, "get", "", "secrets", "gitops-write-credential")
    assert _allows(rules, "get", "", "secrets", "registry-pull")
    for name in ("gitops-repository", "cluster-prod", "argocd-secret", "argocd-initial-admin-secret"):
        assert not _allows(rules, "get", "", "secrets", name), name
    assert not _allows(rules, "list", "", "secrets", "") and not _allows(rules, "watch", "", "secrets", "")
    assert not _allows(rules, "update", "argoproj.io", "applications", "prod-website")
    assert not _allows(rules, "update", "", "configmaps", "argocd-cm")
    release = _named(tooling, "argocd-image-updater")
    assert _named(tooling, "argocd-image-updater-rolebinding").urn in release.dependencies


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_set("server", "https://kubernetes.default.svc"), "argocdRegistration.server"),
        (_set("server", "https://10.10.0.1:6443"), "argocdRegistration.server"),
        (
            _set("server", "http://f139b375-575b-5b1e-b69e-3a542ce806b2.api.k8s.fr-par.scw.cloud:6443"),
            ".server",
        ),
        (
            _set("execProviderConfig", {"command": "sh", "args": ["-c", "id"]}),
            "argocdRegistration.execProviderConfig",
        ),
        (_set("config", {"execProviderConfig": {"command": "sh"}}), "argocdRegistration.config"),
        (_set("environment", "dev"), "argocdRegistration.environment"),
        (_set("namespaces", ["website", "argocd"]), "argocdRegistration.namespaces[1]"),
        (_set("namespaces", []), "argocdRegistration.namespaces"),
        (_set("caData", "bm90IGEgY2VydA=="), "argocdRegistration.caData"),
        (_set("token", "a b"), "argocdRegistration.token"),
        (lambda r: r.pop("token") and None, "argocdRegistration.token"),
        (lambda r: r["apps"][0].__setitem__("image", "docker.io/evil/website"), "apps[0].image"),
        (lambda r: r["apps"][0].__setitem__("path", "apps/../environments/tooling"), "apps[0].path"),
        (lambda r: r["apps"][0].__setitem__("name", "kube-system"), "apps[0].name"),
        (lambda r: r["facts"].__setitem__("x", "a b"), "argocdRegistration.facts.x"),
        (lambda r: "not a map", "argocdRegistration:"),
    ],
)
def test_a_malicious_registration_is_refused_and_nothing_is_created(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], Any], key: str
) -> None:
    serve_changed_registration(monkeypatch, change)
    with pytest.raises(RegistrationError) as caught:
        runner.run("tooling")
    message = str(caught.value)
    assert "stack 'organization/platform/prod'" in message and "nothing was created" in message
    assert key in message, message
    assert runner.last_monitor is not None
    assert not [r for r in runner.last_monitor.registrations.values() if not r.read]


def test_the_plan_exits_2_naming_the_stack_and_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from offline import plan as plan_cli

    serve_changed_registration(monkeypatch, _set("server", "https://kubernetes.default.svc"))
    assert plan_cli.main(["tooling"]) == 2
    captured = capsys.readouterr()
    assert (
        "organization/platform/prod:argocdRegistration.server: must be a Kapsule API server" in captured.err
    )
    assert "Traceback" not in captured.err + captured.out


def test_a_stack_without_a_registration_is_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    original = PlatformMocks._stack_reference

    def reference(self: PlatformMocks, name: str) -> dict[str, Any]:
        state = original(self, name)
        if name == "organization/platform/prod":
            return {**state, "outputs": {}, "secretOutputNames": []}
        return state

    monkeypatch.setattr(PlatformMocks, "_stack_reference", reference)
    plan = runner.run("tooling")
    [warning] = plan.warnings
    assert "organization/platform/prod" in warning and "exports no argocdRegistration" in warning
    assert "pulumi up --stack organization/platform/prod" in warning
    others = [env for env in environments.load_file().registered_by("tooling") if env != "prod"]
    assert plan.exports["registeredEnvironments"].value == others
    assert not [r for r in plan.registrations if r.name.startswith("prod-")]
    assert not [r for r in plan.registrations if r.name == "argocd-root-prod"]


def test_bootstrap_plan_registers_nothing_and_says_what_to_run(
    committed_plans: dict[str, runner.Plan],
) -> None:
    plan = runner.run("tooling", bootstrap=True)
    assert plan.bootstrap
    registered = environments.load_file().registered_by("tooling")
    # One warning per environment tooling manages, prod's among them.
    assert len(plan.warnings) == len(registered)
    assert any("stack 'organization/platform/prod' does not exist yet" in w for w in plan.warnings)
    assert "prod" in registered
    assert set(plan.exports["pendingEnvironments"].value) == set(registered)
    assert not [r for r in plan.registrations if r.name.startswith(("prod-", "organization/platform/prod"))]
    # The steady-state plan (prod deployed) registers it.
    steady = committed_plans["tooling"]
    assert steady.exports["registeredEnvironments"].value == registered
    assert _named(steady, "argocd-root-prod")


def test_prod_names_a_tooling_stack_that_exports_the_wrong_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    original = PlatformMocks._stack_reference

    def reference(self: PlatformMocks, name: str) -> dict[str, Any]:
        state = original(self, name)
        outputs = {k: v for k, v in state["outputs"].items() if k != "registryEndpoint"}
        return {**state, "outputs": outputs}

    monkeypatch.setattr(PlatformMocks, "_stack_reference", reference)
    with pytest.raises(ExportShapeError, match=r"organization/platform/tooling:registryEndpoint: missing"):
        runner.run("prod")


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
@pytest.mark.parametrize("stack", ["tooling"])
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


def _load(
    raw: dict[str, Any], *, secrets: dict[str, str] | None = None, environments: Environments | None = None
) -> model.PlatformConfig:
    platform = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("scaleway:")}
    default = {
        "gitopsRepoCredential": "token",
        "gitopsWriteCredential": "token",
        # The committed tooling stack's Git webhook into Argo CD (platform:gitops.argocd.webhook).
        "argocdWebhookSecret": "webhook-secret",
        # The committed tooling stack runs CI runners (platform:ci).
        "ciRunnerToken": "token",
        # The committed prod stack's alert contact points and heartbeat (platform:operations).
        "alertTelegramBotToken": "token",
        "alertHeartbeatUrl": "https://heartbeat.example.com/ping",
    }
    return config.load(
        platform,
        scaleway,
        stack="t",
        project="platform",
        secrets=default if secrets is None else secrets,
        environments=environments,
    )


def _problems(raw: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(raw, **kwargs)
    return str(caught.value)


def _problem_list(raw: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(raw, **kwargs)
    return caught.value.problems


def _environments_problems(changes: EnvironmentChanges) -> list[str]:
    """What ``program.environments.parse`` reports on the committed list with ``changes``."""
    env_list.parse(environments_document())  # the committed list is valid: the change is the problem
    with pytest.raises(EnvironmentsError) as caught:
        env_list.parse(environments_document(changes))
    return caught.value.problems


#: The committed environments.yaml, and how a message lists its environments of role tooling.
COMMITTED = env_list.load_file()
TOOLING = ", ".join(sorted(name for name, entry in COMMITTED.entries.items() if entry.role == "tooling"))
MOVED = "moved to environments.yaml: "


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
    """Tooling registers the environments whose managedBy names it (environments.yaml): one managed
    by an environment the list does not have is refused there; a stack file's list is not read."""
    assert _environments_problems({"prod": {"managedBy": "staging"}}) == [
        f"prod.managedBy: must name an environment of role tooling (here: {TOOLING})"
    ]
    raw = stack_config("tooling")
    raw["platform:gitops"]["environments"] = ["tooling", "staging"]
    assert _problem_list(raw) == [
        f"platform:gitops.environments: {MOVED}<environment>.managedBy of each environment tooling registers"
    ]


def test_missing_tooling_stack_reference_is_a_clear_error(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    """A workload stack with platform:gitops reads its tooling stack from its entry's managedBy."""
    unmanaged = environments_with({"prod": {"managedBy": None}})
    assert _problem_list(stack_config("prod"), environments=unmanaged) == [
        "environments.yaml: prod.managedBy: required with platform:gitops: the tooling environment whose "
        "Argo CD registers this one"
    ]


def test_production_plan_fails_without_the_tooling_reference(
    plan_with: Callable[..., runner.Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "last_monitor", None)
    with pytest.raises(
        ConfigError, match=r"environments\.yaml: prod\.managedBy: required with platform:gitops"
    ):
        plan_with("prod", environments=environments_with({"prod": {"managedBy": None}}))
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


def test_an_environment_registered_without_gitops_is_refused(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    """managedBy makes tooling read the environment's registration: its stack must export one."""
    raw = stack_config("dev")
    raw.pop("platform:gitops")
    raw.pop("platform:apps")
    managed = environments_with({"dev": {"managedBy": "tooling"}})
    assert "dev" in managed.registered_by("tooling")
    assert _problem_list(raw, environments=managed) == [
        "environments.yaml: dev.managedBy: set, but this stack has no platform:gitops: its tooling "
        "environment would wait for a registration it never exports"
    ]


def test_image_update_for_an_undeclared_app(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("dev")
    raw["platform:gitops"]["imageUpdates"].append({"app": "shop", "strategy": "semver"})
    message = _problems(raw)
    assert "platform:gitops.imageUpdates[2].app: app 'shop' is not declared in platform:apps" in message


def test_image_update_strategy_and_tag_pattern_are_checked(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("dev")
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


def test_oidc_needs_no_deploy_time_secret(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["argocd"]["oidc"] = {"issuer": "https://sso.example.com", "clientId": "argocd"}
    secrets = {"gitopsRepoCredential": "t", "gitopsWriteCredential": "t", "ciRunnerToken": "t"}
    loaded = _load(raw, secrets={**secrets, "argocdWebhookSecret": "t"})
    assert loaded.gitops is not None
    assert "argocdOidcClientSecret" not in model.SECRET_KEYS


def test_the_retired_oidc_client_secret_key_is_refused_with_what_to_do(
    stack_config: Callable[[str], dict[str, Any]],
) -> None:
    raw = stack_config("tooling")
    raw["platform:argocdOidcClientSecret"] = "left-over"
    problems = _problem_list(raw)
    [problem] = [p for p in problems if p.startswith("platform:argocdOidcClientSecret:")]
    assert "no longer read" in problem
    assert "/platform/argocd/oidc-client-secret" in problem
    assert "pulumi config rm platform:argocdOidcClientSecret" in problem
    assert "left-over" not in " ".join(problems)


def test_the_retired_key_set_as_a_secret_stops_the_plan_without_reading_it(
    plan_with: Callable[..., runner.Plan],
) -> None:
    """Through the engine's config, as a stack that still carries the old secure value: refused
    before anything is registered, and the value is never read (nor shown)."""
    with pytest.raises(ConfigError) as caught:
        plan_with("tooling", {"platform:argocdOidcClientSecret": {"secure": "v1:b2xkLXZhbHVl"}})
    message = str(caught.value)
    assert "platform:argocdOidcClientSecret: no longer read" in message
    assert "MOCKSECRET" not in message and "b2xkLXZhbHVl" not in message
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


def _tooling_gitops(stack_config: Callable[[str], dict[str, Any]], **changes: Any) -> dict[str, Any]:
    raw = stack_config("tooling")
    raw["platform:gitops"].update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"imageUpdater": {"writeBackBranch": "main"}},
            "platform:gitops.imageUpdater.writeBackBranch: must start with image-updater- ",
        ),
        ({"namespaces": ["tools", "argocd"]}, "platform:gitops.namespaces: argocd: platform namespaces"),
        (
            {"namespaces": ["tools", "kube-system"]},
            "platform:gitops.namespaces: kube-system: platform namespaces",
        ),
        ({"repoUrl": None}, "platform:gitops.repoUrl: required for role tooling"),
    ],
)
def test_tooling_gitops_rules(
    stack_config: Callable[[str], dict[str, Any]], changes: dict[str, Any], expected: str
) -> None:
    raw = _tooling_gitops(stack_config, **changes)
    if changes.get("repoUrl", "") is None:
        del raw["platform:gitops"]["repoUrl"]
    assert expected in _problems(raw)


@pytest.mark.parametrize(
    ("stack", "key", "value", "now"),
    [
        ("tooling", "toolingStack", "organization/platform/tooling", "<environment>.managedBy"),
        ("tooling", "stacks", {"prod": "organization/platform/prod"}, "<environment>.stack"),
        ("prod", "toolingStack", "organization/platform/tooling", "<environment>.managedBy"),
        ("prod", "stacks", {"dev": "organization/platform/dev"}, "<environment>.stack"),
        ("prod", "environments", ["prod"], "<environment>.managedBy of each environment tooling registers"),
    ],
)
def test_gitops_keys_that_moved_to_environments_yaml_are_refused(
    stack_config: Callable[[str], dict[str, Any]], stack: str, key: str, value: Any, now: str
) -> None:
    """Who registers whom, and from which stack, is environments.yaml's: the stack file's old keys
    are an error naming the new home, never silently ignored."""
    raw = stack_config(stack)
    raw["platform:gitops"][key] = value
    [problem] = _problem_list(raw)
    assert problem.startswith(f"platform:gitops.{key}: {MOVED}{now}"), problem


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # tooling reads each registered environment from its own stack, never from itself
        (
            {"prod": {"stack": COMMITTED.entries["tooling"].stack}},
            f"prod.stack: {COMMITTED.entries['tooling'].stack} is tooling's too (one stack each)",
        ),
        ({"prod": {"stack": None}}, "prod.stack: Field required"),
        (
            {"dev": {"projectId": COMMITTED.entries["prod"].project_id}},
            f"dev.projectId: {COMMITTED.entries['prod'].project_id} is prod's too "
            "(one Scaleway project per environment)",
        ),
        (
            {"tooling": {"managedBy": "tooling"}},
            "tooling.managedBy: an environment of role tooling registers others, not itself",
        ),
        (
            {"prod": {"managedBy": "dev"}},
            f"prod.managedBy: must name an environment of role tooling (here: {TOOLING})",
        ),
    ],
    ids=["stack-of-tooling", "stack-missing", "project-of-prod", "tooling-manages-itself", "managed-by-dev"],
)
def test_registration_rules_of_environments_yaml(changes: EnvironmentChanges, expected: str) -> None:
    assert _environments_problems(changes) == [expected]


def test_tooling_needs_its_write_credential(stack_config: Callable[[str], dict[str, Any]]) -> None:
    problems = _problems(stack_config("tooling"), secrets={"gitopsRepoCredential": "t"})
    assert "platform:gitopsWriteCredential: required with platform:gitops" in problems


def test_a_public_argocd_ui_needs_single_sign_on(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    del raw["platform:gitops"]["argocd"]["oidc"]
    assert "platform:gitops.argocd.oidc: required with argocd.hostname" in _problems(raw)
    # Without a hostname (port-forward only, no webhook route) the local admin is acceptable.
    del raw["platform:gitops"]["argocd"]["hostname"], raw["platform:gitops"]["argocd"]["webhook"]
    assert _load(raw).gitops is not None


def test_tooling_needs_an_api_acl(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:cluster"]["apiAllowedRanges"] = []
    assert "platform:cluster.apiAllowedRanges: required for role tooling" in _problems(raw)
    del raw["platform:cluster"]["apiAllowedRanges"]
    assert "platform:cluster.apiAllowedRanges: required for role tooling" in _problems(raw)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("repoUrl", "https://gitlab.com/acme/x.git"),
        ("targetRevision", "main"),
        ("repoUsername", "git"),
        ("imageUpdater", {"writeBackBranch": "x"}),
    ],
)
def test_workload_stacks_leave_the_repository_to_tooling(
    stack_config: Callable[[str], dict[str, Any]], key: str, value: Any
) -> None:
    raw = stack_config("prod")
    raw["platform:gitops"][key] = value
    assert f"platform:gitops.{key}: not allowed for role production (the tooling stack sets it)" in _problems(
        raw
    )


def test_a_registered_environment_names_its_namespaces(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("dev")
    raw["platform:apps"] = []
    raw["platform:gitops"].pop("imageUpdates")
    assert "platform:gitops: a registered environment needs platform:apps or platform:gitops.namespaces" in (
        _problems(raw)
    )
    raw["platform:gitops"]["namespaces"] = ["jobs"]
    assert _load(raw).delivery.gitops.namespaces == ["jobs"]


def test_a_workload_stack_cannot_name_itself_as_tooling() -> None:
    assert _environments_problems({"prod": {"managedBy": "prod"}}) == [
        f"prod.managedBy: must name an environment of role tooling (here: {TOOLING})"
    ]


def test_every_app_gets_an_image_updater_entry(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("dev")
    raw["platform:gitops"]["imageUpdates"] = [
        u for u in raw["platform:gitops"]["imageUpdates"] if u["app"] == "website"
    ]
    exported = _registration(plan_with("dev", raw))
    registration = contract.parse_registration(
        exported, stack="d", environment="dev", registry_endpoint="rg.fr-par.scw.cloud/acme-platform"
    )
    # What tooling's ImageUpdater for dev is built from.
    spec = gitops.image_updater_spec(
        "dev", registration.apps, repo_url="https://example.com/r.git", target_revision="main", branch="b"
    )
    refs = {ref["namePattern"]: ref["images"][0] for ref in spec["applicationRefs"]}
    assert set(refs) == {"dev-website", "dev-newsletter"}
    # Not listed in imageUpdates: the defaults (semver, any tag).
    assert refs["dev-newsletter"]["commonUpdateSettings"] == {"updateStrategy": "semver"}
    assert refs["dev-website"]["commonUpdateSettings"]["allowTags"] == r"regexp:^v\d+\.\d+\.\d+(-rc\.\d+)?$"


def test_a_promoted_environment_registers_its_apps_for_promotion_only(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    registration = contract.parse_registration(
        _registration(plan_with("prod", stack_config("prod"))),
        stack="p",
        environment="prod",
        registry_endpoint="rg.fr-par.scw.cloud/acme-platform",
    )
    assert {(a.name, a.strategy, a.allow_tags) for a in registration.apps} == {
        ("website", contract.PROMOTION, None),
        ("newsletter", contract.PROMOTION, None),
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda g: g.pop("promotedFrom"),
            "platform:gitops.promotedFrom: required for role production: images reach production only by "
            "promotion of a digest another environment ran",
        ),
        (lambda g: g.update(promotedFrom="prod"), "platform:gitops.promotedFrom: 'prod' is this environment"),
        (
            lambda g: g.update(promotedFrom="qa"),
            "platform:gitops.promotedFrom: unknown environment 'qa' (known: dev, prod, tooling)",
        ),
        (
            lambda g: g.update(promotedFrom="tooling"),
            "platform:gitops.promotedFrom: 'tooling' must be a workload environment registered by the same "
            "tooling environment as this one (tooling)",
        ),
        (
            lambda g: g.update(imageUpdates=[{"app": "website"}]),
            "platform:gitops.imageUpdates: not allowed with platform:gitops.promotedFrom: no image updater "
            "writes an environment fed by promotion (configure image updates in 'dev')",
        ),
    ],
)
def test_promotion_config_is_checked(
    stack_config: Callable[[str], dict[str, Any]], change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    raw = stack_config("prod")
    change(raw["platform:gitops"])
    assert expected in _problems(raw)


def test_promotion_source_must_share_the_hub(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("prod")
    unmanaged = environments_with({"dev": {"managedBy": None}})
    assert _problem_list(raw, environments=unmanaged) == [
        "platform:gitops.promotedFrom: 'dev' must be a workload environment registered by the same "
        "tooling environment as this one (tooling): promotion compares what both run in one Argo CD"
    ]


def test_tooling_takes_no_promotion_source(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["promotedFrom"] = "dev"
    assert "platform:gitops.promotedFrom: not allowed for role tooling" in _problems(raw)


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
    # Prod's own deploy-time secrets (its alerting), and no Git credential among them.
    alerting = {"alertTelegramBotToken": "t", "alertHeartbeatUrl": "https://heartbeat.example.com/ping"}
    assert _load(stack_config("prod"), secrets=alerting).delivery.tooling_stack.endswith("/tooling")


def test_one_image_update_entry_per_app(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("dev")
    raw["platform:gitops"]["imageUpdates"].append({"app": "website", "strategy": "digest"})
    assert "platform:gitops.imageUpdates: duplicate app 'website'" in _problems(raw)


def test_only_argocds_route_waits_for_the_front_door(tooling: runner.Plan) -> None:
    """Argo CD's release needs neither the Gateway API CRDs nor the Gateway: only its HTTPRoute
    does, so the release starts without waiting for the front door's chain (issue 19)."""
    gateway = _named(tooling, "tooling-front-door-gateway").urn
    route = _named(tooling, "argocd-route")
    assert gateway in route.dependencies
    for name in ("argocd-argocd", "argocd-image-updater"):
        assert gateway not in upstream(tooling, _named(tooling, name)), name


# --- Webhooks instead of polls (issue 19) --------------------------------------------------------


def test_the_git_webhook_secret_comes_from_the_vault_and_the_values_hold_a_reference(
    tooling: runner.Plan,
) -> None:
    """The committed tooling stack takes GitLab's push webhook: argocd-secret's
    ``webhook.gitlab.secret`` is a reference to a Secret External Secrets writes from the vault
    entry the program fills from the deploy-time secret; the Helm values hold no secret."""
    values = _named(tooling, "argocd-argocd").inputs["values"]
    assert values["configs"]["secret"] == {"gitlabSecret": "$argocd-webhook:secret"}
    assert not rpc.is_rpc_secret(values) and _plain(values) == values
    vault = _named(tooling, "tooling-argocd-webhook-secret")
    assert vault.inputs["path"] == "/platform/argocd" and vault.inputs["name"] == "webhook-secret"
    version = _named(tooling, "tooling-argocd-webhook-secret-version")
    assert rpc.is_rpc_secret(version.inputs["data"])  # the deploy-time secret, a secret end to end
    synced = _named(tooling, "argocd-webhook-secret")
    spec = synced.inputs["spec"]
    assert synced.inputs["metadata"] == {"name": "argocd-webhook", "namespace": "argocd"}
    assert spec["target"]["template"] == {"metadata": {"labels": {"app.kubernetes.io/part-of": "argocd"}}}
    assert spec["data"] == [
        {"secretKey": "secret", "remoteRef": {"key": "path:/platform/argocd/webhook-secret"}}
    ]
    # It reads the entry only once the program has written it.
    assert vault.urn in synced.dependencies
    # The UI's route (every path) serves /api/webhook; no second route.
    routes = [r for r in tooling.registrations if r.inputs.get("kind") == "HTTPRoute"]
    argocd_routes = [r for r in routes if r.inputs["metadata"]["namespace"] == "argocd"]
    assert [r.name for r in argocd_routes] == ["argocd-route"]


def test_the_polls_behind_the_events_are_set_and_read_from_config(tooling: runner.Plan) -> None:
    cm = _named(tooling, "argocd-argocd").inputs["values"]["configs"]["cm"]
    assert cm["timeout.reconciliation"] == "180s" and cm["timeout.reconciliation.jitter"] == "60s"
    updater = _named(tooling, "argocd-image-updater").inputs["values"]
    assert updater["extraArgs"] == ["--interval", "120s"]


def test_a_webhook_without_a_public_ui_routes_only_the_webhook_path(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("tooling")
    argocd = raw["platform:gitops"]["argocd"]
    del argocd["hostname"], argocd["oidc"]
    argocd["webhook"] = {"gitHost": "github", "hostname": "argocd.tooling.example.com"}
    plan = plan_with("tooling", raw)
    values = _named(plan, "argocd-argocd").inputs["values"]
    assert values["configs"]["secret"] == {"githubSecret": "$argocd-webhook:secret"}
    assert "url" not in values["configs"]["cm"]  # no UI URL: the UI stays port-forward only
    assert not [r for r in plan.registrations if r.name == "argocd-route"]
    route = _named(plan, "argocd-webhook-route")
    assert route.inputs["spec"]["hostnames"] == ["argocd.tooling.example.com"]
    assert route.inputs["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/api/webhook"}}],
            "backendRefs": [{"name": "argocd-server", "port": 80}],
        }
    ]
    assert _named(plan, "tooling-front-door-gateway").urn in upstream(plan, route)
    # The server admits the Gateway's namespace (only because something is routed to it).
    policies = {
        r.inputs["metadata"]["name"] for r in plan.registrations if r.inputs.get("kind") == "NetworkPolicy"
    }
    assert "argocd-server-gateway" in policies


def test_no_route_and_no_gateway_allow_without_a_hostname_or_webhook(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    raw = stack_config("tooling")
    argocd = raw["platform:gitops"]["argocd"]
    del argocd["hostname"], argocd["oidc"], argocd["webhook"]
    plan = plan_with("tooling", raw)
    assert not [r for r in plan.registrations if r.name in ("argocd-route", "argocd-webhook-route")]
    assert not [r for r in plan.registrations if r.name == "argocd-webhook-secret"]
    assert "secret" not in _named(plan, "argocd-argocd").inputs["values"]["configs"]
    policies = {
        r.inputs["metadata"]["name"] for r in plan.registrations if r.inputs.get("kind") == "NetworkPolicy"
    }
    assert "argocd-server-gateway" not in policies


@pytest.mark.parametrize(
    ("where", "value", "key", "expected"),
    [
        ("argocd", 0, "platform:gitops.argocd.reconciliationTimeoutSeconds", "0 would switch Argo CD's"),
        ("argocd", 30, "platform:gitops.argocd.reconciliationTimeoutSeconds", "must be at least 60"),
        ("argocd", -5, "platform:gitops.argocd.reconciliationTimeoutSeconds", "0 would switch"),
        (
            "imageUpdater",
            0,
            "platform:gitops.imageUpdater.intervalSeconds",
            "0 would switch the image updater",
        ),
        ("imageUpdater", 59, "platform:gitops.imageUpdater.intervalSeconds", "must be at least 60"),
    ],
    ids=[
        "reconciliation-zero",
        "reconciliation-below-min",
        "reconciliation-negative",
        "interval-zero",
        "interval-below",
    ],
)
def test_a_poll_of_zero_or_below_the_minimum_is_refused_naming_the_key(
    stack_config: Callable[[str], dict[str, Any]], where: str, value: int, key: str, expected: str
) -> None:
    raw = stack_config("tooling")
    section = raw["platform:gitops"].setdefault(where, {})
    section["reconciliationTimeoutSeconds" if where == "argocd" else "intervalSeconds"] = value
    [problem] = [p for p in _problem_list(raw) if p.startswith(f"{key}:")]
    assert expected in problem


def test_the_minimum_poll_is_accepted(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"]["argocd"]["reconciliationTimeoutSeconds"] = gitops.RECONCILIATION_MIN_SECONDS
    raw["platform:gitops"]["imageUpdater"]["intervalSeconds"] = gitops.IMAGE_UPDATER_INTERVAL_MIN_SECONDS
    loaded = _load(raw)
    assert loaded.gitops is not None and loaded.gitops.image_updater.interval_seconds == 60


def test_a_webhook_needs_its_secret(stack_config: Callable[[str], dict[str, Any]]) -> None:
    secrets = {"gitopsRepoCredential": "t", "gitopsWriteCredential": "t", "ciRunnerToken": "t"}
    problems = _problems(stack_config("tooling"), secrets=secrets)
    assert "platform:argocdWebhookSecret: required with platform:gitops.argocd.webhook" in problems


def test_the_webhook_secret_set_without_secret_is_refused(plan_with: Callable[..., runner.Plan]) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_with("tooling", {"platform:argocdWebhookSecret": "plaintext-webhook-secret"})
    assert "platform:argocdWebhookSecret: must be set as a secret" in str(caught.value)
    assert "plaintext-webhook-secret" not in str(caught.value)
    assert runner.last_monitor is not None and not runner.last_monitor.registrations


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda a: (a.pop("hostname"), a.pop("oidc")),
            "platform:gitops.argocd.webhook.hostname: required without platform:gitops.argocd.hostname",
        ),
        (
            lambda a: a["webhook"].__setitem__("hostname", "hooks.tooling.example.com"),
            "platform:gitops.argocd.webhook.hostname: not allowed with platform:gitops.argocd.hostname",
        ),
        (
            lambda a: a["webhook"].__setitem__("gitHost", "bitbucket"),
            "platform:gitops.argocd.webhook.gitHost",
        ),
    ],
    ids=["no-hostname-at-all", "two-hostnames", "unknown-git-host"],
)
def test_webhook_hostname_and_host_rules(
    stack_config: Callable[[str], dict[str, Any]], change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    raw = stack_config("tooling")
    change(raw["platform:gitops"]["argocd"])
    assert expected in _problems(raw)


def test_the_webhook_hostname_must_be_the_environments(stack_config: Callable[[str], dict[str, Any]]) -> None:
    raw = stack_config("tooling")
    argocd = raw["platform:gitops"]["argocd"]
    del argocd["hostname"], argocd["oidc"]
    argocd["webhook"]["hostname"] = "hooks.elsewhere.example.org"
    assert "platform:gitops.argocd.webhook.hostname: hooks.elsewhere.example.org is not one of" in _problems(
        raw
    )

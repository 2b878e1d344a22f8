"""One template for every app: each app of the stack file gets the whole envelope, and nothing
more than its config allows (network, secrets, route, delivery).

The envelope lives in the workload stack (prod); the delivery (the app's Argo CD Application and
image updater entry) is declared by the tooling stack from prod's registration export
(DESIGN.md §5), so delivery assertions read the tooling plan."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import artifacts, parity, runner, schemas, validate
from offline.mocks import Registration
from program import environments
from scw_platform import apps as apps_component
from scw_platform.apps import DATABASE_KEYS, AppResources, AppSettings
from scw_platform.contract import REGISTRATION_KEY
from tests.harness import is_secret, plaintext_secrets, unwrap

NS = "kubernetes:core/v1:Namespace"
QUOTA = "kubernetes:core/v1:ResourceQuota"
LIMITS = "kubernetes:core/v1:LimitRange"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SECRET = "kubernetes:core/v1:Secret"
SA_PATCH = "kubernetes:core/v1:ServiceAccountPatch"
EXTERNAL_SECRET = "kubernetes:external-secrets.io/v1:ExternalSecret"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
SM_SECRET = "scaleway:secrets/secret:Secret"
SM_VERSION = "scaleway:secrets/version:Version"
APP = "platform:apps:App"
#: Every app gets these in its own cluster; apps with a database also get the Secret Manager entry.
#: Its Argo CD Application is tooling's (see DELIVERY).
ENVELOPE = {
    NS: 1,
    QUOTA: 1,
    LIMITS: 1,
    NETPOL: 2,
    SECRET: 1,
    SA_PATCH: 1,
    EXTERNAL_SECRET: 1,
    ROUTE: 1,
}
DATABASE_ENTRY = {SM_SECRET: 1, SM_VERSION: 1}
#: With migrate: the migrator's own vault entry and its own ExternalSecret (the hook's Secret).
MIGRATOR_ENTRY = {SM_SECRET: 2, SM_VERSION: 2, EXTERNAL_SECRET: 2}
#: With delivery (a canary, scw_platform.delivery): the stable and canary Services, the analysis's
#: token Secret and its AnalysisTemplate.
CANARY_ENTRY = {
    SECRET: 2,
    "kubernetes:core/v1:Service": 2,
    "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate": 1,
    # What Git may deliver as its Rollout (scw_platform.delivery.rollout_policy_spec).
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy": 1,
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding": 1,
}
#: What tooling declares for prod's apps: the children of its ``prod-gitops`` component.
DELIVERY = "prod-gitops"
REGISTRY = "rg.fr-par.scw.cloud/acme-platform"

needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (a fresh clone has no ../shared/schemas)",
)


@pytest.fixture(scope="module")
def prod(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    return committed_plans["prod"]


@pytest.fixture(scope="module")
def tooling(committed_plans: dict[str, runner.Plan]) -> runner.Plan:
    """The hub: it declares prod's Applications, AppProject and ImageUpdater."""
    return committed_plans["tooling"]


@pytest.fixture(scope="module")
def raw_apps() -> list[dict[str, Any]]:
    return list(runner.read_stack_config("prod")["platform:apps"])


def _named(plan: runner.Plan, name: str) -> Registration:
    found = [r for r in plan.registrations if r.name == name]
    assert len(found) == 1, (name, len(found))
    return found[0]


def _children(plan: runner.Plan, parent: Registration) -> list[Registration]:
    return [r for r in plan.registrations if r.parent == parent.urn]


def _counts(regs: list[Registration]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in regs:
        counts[r.type] = counts.get(r.type, 0) + 1
    return counts


def _envelope(plan: runner.Plan, app: str) -> dict[str, Registration]:
    """The app's children by their role (the part of the name after ``app-<name>-``)."""
    component = _named(plan, f"app-{app}")
    return {r.name.removeprefix(f"app-{app}-"): r for r in _children(plan, component)}


def _applications(tooling: runner.Plan, environment: str = "prod") -> dict[str, Registration]:
    """Tooling's Applications for ``environment``'s apps, by app name."""
    component = _named(tooling, f"{environment}-gitops")
    prefix = f"{environment}-gitops-app-"
    return {
        r.name.removeprefix(prefix): r
        for r in _children(tooling, component)
        if r.type == APPLICATION and r.name.startswith(prefix)
    }


def _registered_apps(plan: runner.Plan) -> list[dict[str, Any]]:
    export = plan.exports[REGISTRATION_KEY]
    assert export.secret  # it carries argocd-manager's token
    return list(export.value["apps"])


# --- every app, every object -------------------------------------------------------------------


def test_prod_declares_two_apps_and_each_gets_the_whole_envelope(
    prod: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    assert len(raw_apps) >= 2, "onboarding a second app must be config only: two apps in Pulumi.prod.yaml"
    components = prod.by_type(APP)
    assert sorted(c.name for c in components) == sorted(f"app-{a['name']}" for a in raw_apps)
    for raw in raw_apps:
        component = _named(prod, f"app-{raw['name']}")
        expected = {
            **ENVELOPE,
            **(DATABASE_ENTRY if raw.get("database") else {}),
            **(MIGRATOR_ENTRY if raw.get("migrate") else {}),
            **(CANARY_ENTRY if raw.get("delivery") else {}),
        }
        assert _counts(_children(prod, component)) == expected, raw["name"]
    assert prod.exports["apps"].value == [a["name"] for a in raw_apps]


def test_each_app_gets_exactly_one_application_in_tooling(
    prod: runner.Plan, tooling: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    """Delivery is the last part of the envelope: one Application per app, declared by tooling
    from prod's registration, and none in prod itself."""
    assert prod.by_type(APPLICATION) == []
    assert [a["name"] for a in _registered_apps(prod)] == [a["name"] for a in raw_apps]
    applications = _applications(tooling)
    assert sorted(applications) == sorted(a["name"] for a in raw_apps)
    # Every Application tooling deploys into prod's cluster is one of these: no extra, none elsewhere.
    into_prod = [
        r.name for r in tooling.by_type(APPLICATION) if r.inputs["spec"]["destination"].get("name") == "prod"
    ]
    assert sorted(into_prod) == sorted(r.name for r in applications.values())


def test_envelope_objects_use_the_right_cluster_and_are_children_of_the_app(
    prod: runner.Plan, tooling: runner.Plan
) -> None:
    cluster = _named(prod, "prod-k8s").urn
    # Prod holds no way into tooling's cluster at all.
    assert [r.name for r in prod.registrations if r.name == "tooling-k8s"] == []
    for component in prod.by_type(APP):
        children = _children(prod, component)
        assert children, component.name
        for child in children:
            if child.type.startswith("scaleway:"):
                continue
            assert child.provider_urn == cluster, child.name
    # The Applications are tooling's, on tooling's cluster, children of prod's delivery component.
    tooling_cluster = _named(tooling, "tooling-k8s").urn
    delivery = _named(tooling, DELIVERY)
    for application in _applications(tooling).values():
        assert application.provider_urn == tooling_cluster, application.name
        assert application.parent == delivery.urn, application.name


def test_namespace_is_a_restricted_app_namespace(prod: runner.Plan) -> None:
    for app in ("website", "newsletter"):
        metadata = _envelope(prod, app)["namespace"].inputs["metadata"]
        assert metadata["name"] == app
        labels = metadata["labels"]
        assert labels["platform.scw/app-namespace"] == "true"
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_quota_and_limits_follow_the_app(prod: runner.Plan, raw_apps: list[dict[str, Any]]) -> None:
    website = next(a for a in raw_apps if a["name"] == "website")
    envelope = _envelope(prod, "website")
    hard = envelope["quota"].inputs["spec"]["hard"]
    pods = 2 * website["replicas"] + 2
    assert hard["pods"] == str(pods)
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"
    assert hard["requests.cpu"] == apps_component.cpu(pods * 100)
    limits = envelope["limits"].inputs["spec"]["limits"][0]
    assert limits["type"] == "Container"
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


# --- network -----------------------------------------------------------------------------------


def test_default_deny_covers_ingress_and_egress(prod: runner.Plan) -> None:
    for app in ("website", "newsletter"):
        spec = _envelope(prod, app)["default-deny"].inputs["spec"]
        assert spec["podSelector"] == {}
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        assert "ingress" not in spec and "egress" not in spec


def test_ingress_only_from_traefik_on_the_app_port(prod: runner.Plan, raw_apps: list[dict[str, Any]]) -> None:
    for raw in raw_apps:
        ingress = _envelope(prod, raw["name"])["allow"].inputs["spec"]["ingress"]
        assert ingress == [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
                "ports": [{"protocol": "TCP", "port": raw["port"]}],
            }
        ]


def test_egress_is_dns_and_the_database_32_only(prod: runner.Plan) -> None:
    host = prod.exports["databaseHost"].value
    for app in ("website", "newsletter"):
        egress = _envelope(prod, app)["allow"].inputs["spec"]["egress"]
        assert len(egress) == 2
        dns, database = egress
        assert dns["to"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
        assert sorted(p["protocol"] for p in dns["ports"]) == ["TCP", "UDP"]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert database == {
            "to": [{"ipBlock": {"cidr": f"{host}/32"}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
        assert ipaddress.ip_network(f"{host}/32").num_addresses == 1


def test_no_database_no_database_egress_and_configured_egress_only(
    plan_with: Callable[..., runner.Plan],
) -> None:
    apps = runner.read_stack_config("prod")["platform:apps"]
    apps[1].pop("database")
    apps[1]["egress"] = [{"cidr": "203.0.113.10/32", "ports": [443, 8443], "description": "payment provider"}]
    plan = plan_with("prod", {"platform:apps": apps})
    envelope = _envelope(plan, "newsletter")
    egress = envelope["allow"].inputs["spec"]["egress"]
    blocks = [peer["ipBlock"]["cidr"] for rule in egress for peer in rule["to"] if "ipBlock" in peer]
    assert blocks == ["203.0.113.10/32"]
    assert egress[-1]["ports"] == [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8443}]
    assert "database" not in envelope and "database-version" not in envelope
    keys = [d["secretKey"] for d in envelope["env"].inputs["spec"]["data"]]
    assert keys == apps[1]["requiredKeys"]


# --- secrets -----------------------------------------------------------------------------------


def test_external_secret_lists_exactly_the_declared_keys(
    prod: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    for raw in raw_apps:
        external = _envelope(prod, raw["name"])["env"]
        spec = external.inputs["spec"]
        assert "dataFrom" not in spec
        assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "platform-scaleway"}
        assert spec["target"]["name"] == f"{raw['name']}-env"
        data = spec["data"]
        keys = [d["secretKey"] for d in data]
        assert keys == [*raw["requiredKeys"], *DATABASE_KEYS]
        assert len(set(keys)) == len(keys)
        for entry in data[: len(raw["requiredKeys"])]:
            assert entry["remoteRef"] == {"key": f"path:/prod/{raw['name']}/{entry['secretKey']}"}


def test_external_secret_waits_for_the_store_and_the_database_entry(prod: runner.Plan) -> None:
    external = _envelope(prod, "website")["env"]
    store = _named(prod, "prod-secrets-store-scaleway")
    version = _envelope(prod, "website")["database-version"]
    assert {store.urn, version.urn} <= set(external.dependencies)


def test_database_credentials_are_written_to_the_vault_as_a_secret(prod: runner.Plan) -> None:
    envelope = _envelope(prod, "website")
    secret = envelope["database"]
    assert secret.inputs["name"] == apps_component.DATABASE_SECRET
    assert secret.inputs["path"] == "/prod/website"
    assert secret.inputs["projectId"] == "6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"
    version = envelope["database-version"]
    assert version.inputs["secretId"] == secret.id
    assert is_secret(version.inputs["data"])
    document = json.loads(unwrap(version.inputs["data"]))
    host = prod.exports["databaseHost"].value
    assert document["host"] == host and document["port"] == "5432"
    assert document["name"] == "website" and document["user"] == "website"
    password = unwrap(_named(prod, "prod-postgres-user-website-password").state["result"])
    assert document["password"] == password
    assert document["url"] == f"postgresql://website:{password}@{host}:5432/website?sslmode=require"
    by_key = {d["secretKey"]: d for d in envelope["env"].inputs["spec"]["data"]}
    for key, prop in apps_component.DATABASE_PROPERTIES.items():
        assert by_key[key]["remoteRef"] == {"key": "path:/prod/website/platform-database", "property": prop}


def test_pull_secret_carries_the_environments_own_read_only_registry_key(
    prod: runner.Plan, committed_plans: dict[str, runner.Plan]
) -> None:
    """prod's own pull identity (scw_platform.registry.pull_identity), never a key shared with dev."""
    key = unwrap(_named(prod, "prod-registry-pull-key").state["secretKey"])
    assert key != unwrap(_named(committed_plans["dev"], "dev-registry-pull-key").state["secretKey"])
    envelope = _envelope(prod, "website")
    pull = envelope["registry-pull"]
    assert pull.inputs["type"] == "kubernetes.io/dockerconfigjson"
    assert is_secret(pull.inputs["stringData"])
    config = json.loads(unwrap(pull.inputs["stringData"])[".dockerconfigjson"])
    assert config == {
        "auths": {
            "rg.fr-par.scw.cloud": {
                "username": "nologin",
                "password": key,
            }
        }
    }
    patch = envelope["default-account"]
    assert patch.inputs["imagePullSecrets"] == [{"name": "registry-pull"}]
    assert patch.inputs["automountServiceAccountToken"] is False


def test_no_plaintext_secret_in_any_app_object(prod: runner.Plan) -> None:
    for component in prod.by_type(APP):
        for child in _children(prod, component):
            assert plaintext_secrets(child.inputs) == [], child.name


# --- route and delivery ------------------------------------------------------------------------


def test_route_attaches_to_the_listener_of_its_hostname(
    prod: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    gateway = prod.one("kubernetes:gateway.networking.k8s.io/v1:Gateway")
    listeners = {listener["name"]: listener for listener in gateway.inputs["spec"]["listeners"]}
    for raw in raw_apps:
        # A canary's route is its Rollout's, named apart (scw_platform.delivery.route_name).
        route = _envelope(prod, raw["name"])["rollout-route" if raw.get("delivery") else "route"]
        spec = route.inputs["spec"]
        assert spec["hostnames"] == [raw["hostname"]]
        (parent,) = spec["parentRefs"]
        assert (parent["name"], parent["namespace"]) == (
            gateway.inputs["metadata"]["name"],
            gateway.inputs["metadata"]["namespace"],
        )
        listener = listeners[parent["sectionName"]]
        assert listener["hostname"] == raw["hostname"] and listener["protocol"] == "HTTPS"
        # Only this app's namespace may attach to its hostname's listener.
        assert listener["allowedRoutes"]["namespaces"]["selector"] == {
            "matchLabels": {"platform.scw/app-namespace": "true", "platform.scw/app": raw["name"]}
        }
        # A canary's route sends everything to its stable Service until its Rollout shifts weight.
        assert spec["rules"][0]["backendRefs"] == (
            [
                {"name": f"{raw['name']}-stable", "port": raw["port"], "weight": 100},
                {"name": f"{raw['name']}-canary", "port": raw["port"], "weight": 0},
            ]
            if raw.get("delivery")
            else [{"name": raw["name"], "port": raw["port"]}]
        )
        assert gateway.urn in route.dependencies


def test_argocd_application_delivers_the_gitops_path(
    prod: runner.Plan, tooling: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    project = _named(tooling, "prod-gitops-project")
    cluster_secret = _named(tooling, "prod-cluster-secret")
    applications = _applications(tooling)
    registered = {a["name"]: a for a in _registered_apps(prod)}
    # The project waits for prod's cluster Secret, which exists only once prod has exported its
    # registration (prod's envelope is deployed first: tooling -> prod -> tooling).
    assert cluster_secret.urn in project.dependencies
    for raw in raw_apps:
        application = applications[raw["name"]]
        metadata = application.inputs["metadata"]
        assert metadata["name"] == f"prod-{raw['name']}"
        assert metadata["namespace"] == "argocd"
        assert metadata["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
        spec = application.inputs["spec"]
        assert spec["project"] == "prod" == project.inputs["metadata"]["name"]
        assert spec["destination"] == {"name": "prod", "namespace": raw["name"]}
        assert spec["source"] == {
            "repoURL": "https://gitlab.com/acme/platform-gitops.git",
            "targetRevision": "main",
            "path": raw["gitopsPath"],
        }
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert project.urn in application.dependencies
        # Tooling delivers what prod registered: the path travels through prod's export.
        assert registered[raw["name"]]["path"] == raw["gitopsPath"]


def test_image_updater_matches_the_application_names(
    tooling: runner.Plan, raw_apps: list[dict[str, Any]]
) -> None:
    # New images land in dev (the same apps as prod); prod receives them by promotion only.
    updater = _named(tooling, "dev-gitops-image-updater")
    patterns = {ref["namePattern"] for ref in updater.inputs["spec"]["applicationRefs"]}
    names = {r.inputs["metadata"]["name"] for r in tooling.by_type(APPLICATION)}
    assert patterns <= names
    assert patterns == {f"dev-{raw['name']}" for raw in raw_apps}
    assert not [r for r in tooling.registrations if r.name == "prod-gitops-image-updater"]


def test_registration_waits_for_the_app_namespaces(prod: runner.Plan) -> None:
    for app in ("website", "newsletter"):
        binding = _named(prod, f"prod-registration-binding-{app}")
        assert _envelope(prod, app)["namespace"].urn in binding.dependencies


# --- onboarding is config only -----------------------------------------------------------------


MEMBERS = {
    "name": "members",
    "hostname": "members.example.com",
    "port": 3000,
    "image": f"{REGISTRY}/members",
    "gitopsPath": "apps/members",
    "requiredKeys": ["OIDC_CLIENT_SECRET"],
}


def test_a_third_app_is_only_config(tmp_path: Path) -> None:
    """One more entry in prod's stack file, nothing else: prod gets the envelope and registers the
    app, and tooling (reading that prod) delivers it."""
    for stack_file in runner.ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, tmp_path / stack_file.name)
    # The one list of environments every stack reads (roles, subnets, which stacks tooling registers).
    shutil.copy(runner.ROOT / environments.FILE_NAME, tmp_path / environments.FILE_NAME)
    document = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())
    document["config"]["platform:apps"].append(MEMBERS)
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))

    plan = runner.run("prod", root=tmp_path)
    component = _named(plan, "app-members")
    assert _counts(_children(plan, component)) == ENVELOPE
    listeners = plan.one("kubernetes:gateway.networking.k8s.io/v1:Gateway").inputs["spec"]["listeners"]
    assert "members.example.com" in {listener.get("hostname") for listener in listeners}
    binding = _named(plan, "prod-registration-binding-members")
    assert binding.inputs["metadata"]["namespace"] == "members"
    registered = {a["name"]: a for a in _registered_apps(plan)}
    assert registered["members"]["path"] == "apps/members"
    assert registered["members"]["image"] == MEMBERS["image"]
    assert "members" in plan.exports[REGISTRATION_KEY].value["namespaces"]

    tooling = runner.run("tooling", root=tmp_path)
    application = _applications(tooling)["members"]
    assert application.inputs["metadata"]["name"] == "prod-members"
    assert application.inputs["spec"]["destination"] == {"name": "prod", "namespace": "members"}
    assert application.inputs["spec"]["source"]["path"] == "apps/members"
    project = _named(tooling, "prod-gitops-project")
    assert {"name": "prod", "namespace": "members"} in project.inputs["spec"]["destinations"]
    # prod is fed by promotion: its new app has no image updater entry.
    assert not [r for r in tooling.registrations if r.name == "prod-gitops-image-updater"]
    assert registered["members"]["strategy"] == "promotion"


# --- pure helpers --------------------------------------------------------------------------------


def test_quantities_round_trip() -> None:
    assert apps_component.millicores("250m") == 250 and apps_component.millicores("2") == 2000
    assert apps_component.mebibytes("1Gi") == 1024 and apps_component.mebibytes("96Mi") == 96
    assert apps_component.cpu(2000) == "2" and apps_component.cpu(1250) == "1250m"
    assert apps_component.memory(2048) == "2Gi" and apps_component.memory(1000) == "1000Mi"
    app = AppSettings(
        name="x",
        hostname="x.example.com",
        port=80,
        image="rg.fr-par.scw.cloud/ns/x",
        gitops_path="apps/x",
        replicas=1,
        resources=AppResources(cpu_request="250m", memory_request="1Gi", cpu_limit="1", memory_limit="2Gi"),
    )
    assert apps_component.quota_hard(app)["requests.memory"] == "4Gi"
    assert apps_component.quota_hard(app)["limits.cpu"] == "4"


def test_remote_keys_per_backend() -> None:
    assert apps_component.remote_key("scaleway", "/prod/web", "A") == "path:/prod/web/A"
    assert apps_component.remote_key("onepassword", "prod-web", "A") == "prod-web/A"
    with pytest.raises(ValueError, match="unknown secrets backend"):
        apps_component.remote_key("vault", "x", "A")


# --- upstream validators on the app envelope -----------------------------------------------------


def _app_manifests(plan: runner.Plan, out: Path) -> list[validate.Manifest]:
    """Every Kubernetes object of the apps, plus each app's parity gate, as files under ``out``."""
    app_urns = {c.urn for c in plan.by_type(APP)}
    manifests = []
    for relative, (reg, obj) in artifacts.manifest_files(plan).items():
        if reg.parent in app_urns:
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(artifacts.dump_yaml(obj), encoding="utf-8")
            manifests.append(validate.Manifest(path, relative, obj))
    cfg = parity.load_stack(plan.stack)
    for relative, text in parity.hook_files(cfg).items():
        path = out / "manifests" / "gitops" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        manifests.append(validate.Manifest(path, str(path.relative_to(out)), yaml.safe_load(text)))
    return manifests


@pytest.fixture(scope="module")
def app_manifests(
    prod: runner.Plan, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[validate.Manifest]]:
    out = tmp_path_factory.mktemp("app-envelope")
    return out, _app_manifests(prod, out)


@pytest.fixture(scope="module")
def delivery_manifests(
    tooling: runner.Plan, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[validate.Manifest]]:
    """Every Kubernetes object tooling declares to deliver prod's and dev's apps, as files."""
    out = tmp_path_factory.mktemp("app-delivery")
    delivery = {_named(tooling, DELIVERY).urn, _named(tooling, "dev-gitops").urn}
    manifests = []
    for relative, (reg, obj) in artifacts.manifest_files(tooling).items():
        if reg.parent in delivery:
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(artifacts.dump_yaml(obj), encoding="utf-8")
            manifests.append(validate.Manifest(path, relative, obj))
    return out, manifests


def test_app_manifests_cover_every_kind(app_manifests: tuple[Path, list[validate.Manifest]]) -> None:
    kinds = {m.obj["kind"] for m in app_manifests[1]}
    assert kinds == {
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Secret",
        "ServiceAccount",
        "ExternalSecret",
        "HTTPRoute",
        "Job",
        # The website's canary (docs/delivery.md) and the admission of its Rollout.
        "Service",
        "AnalysisTemplate",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }


def test_delivery_manifests_cover_every_kind(
    delivery_manifests: tuple[Path, list[validate.Manifest]], raw_apps: list[dict[str, Any]]
) -> None:
    kinds = [m.obj["kind"] for m in delivery_manifests[1]]
    # Per environment a project and the apps' Applications; one ImageUpdater, dev's: nothing but a
    # promotion writes prod's paths.
    assert sorted(kinds) == sorted(
        ["AppProject", "AppProject", "ImageUpdater", *(["Application"] * 2 * len(raw_apps))]
    )


def test_core_objects_pass_kubernetes_validate_strict(
    app_manifests: tuple[Path, list[validate.Manifest]],
) -> None:
    _, manifests = app_manifests
    custom = {m.group for m in manifests if schemas.is_custom_group(m.group)}
    result = validate.check_core(manifests, "1.34", custom)
    assert result.objects >= 15
    assert result.failures == []


@needs_schemas
@pytest.mark.schemas
def test_custom_resources_pass_their_crd_schemas(app_manifests: tuple[Path, list[validate.Manifest]]) -> None:
    _, manifests = app_manifests
    custom = {m.group for m in manifests if schemas.is_custom_group(m.group)}
    assert custom == {"external-secrets.io", "gateway.networking.k8s.io", "argoproj.io"}
    result = validate.check_custom(manifests, custom, schemas.schemas_dir())
    # Two ExternalSecrets (<app>-env) and two HTTPRoutes, the website's migrator ExternalSecret and
    # its canary's AnalysisTemplate.
    assert result.objects == 6
    assert result.failures == []


@needs_schemas
@pytest.mark.schemas
def test_delivery_resources_pass_their_crd_schemas(
    delivery_manifests: tuple[Path, list[validate.Manifest]],
) -> None:
    _, manifests = delivery_manifests
    custom = {m.group for m in manifests if schemas.is_custom_group(m.group)}
    assert custom == {"argoproj.io", "argocd-image-updater.argoproj.io"}
    result = validate.check_custom(manifests, custom, schemas.schemas_dir())
    # Per environment two Applications and the AppProject; dev's ImageUpdater.
    assert result.objects == 7 == len(manifests)
    assert result.failures == []


@pytest.mark.skipif(
    not validate.checkov_available(),
    reason=f"checkov not found at {validate.CHECKOV} (run `make checkov-setup`)",
)
def test_checkov_reports_no_failure_on_the_app_envelope(
    app_manifests: tuple[Path, list[validate.Manifest]],
) -> None:
    root, manifests = app_manifests
    result = validate.check_checkov(root, len(manifests), validate.CHECKOV)
    assert result.failures == []
    assert result.objects == len(manifests)
    # The gates' inline skip each (two apps; the image is by digest now, so no CKV_K8S_43 skip) and
    # the website's migration hook's two carry their reasons (a skip without one is a failure).
    skipped = [n for n in result.notes if "skipped inline" in n]
    assert len(skipped) == 4
    assert not [n for n in skipped if "parity-gate" in n and "CKV_K8S_43" in n]
    assert len([n for n in skipped if "platform-migrate.yaml" in n]) == 2


def test_argocd_reads_but_never_writes_external_secrets(prod: runner.Plan, tooling: runner.Plan) -> None:
    """The stores can read every app's folder: only the platform says which keys an app gets."""
    role = prod.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    for rule in role.inputs["rules"]:
        if "externalsecrets" in rule["resources"]:
            assert rule["apiGroups"] == ["external-secrets.io"]
            assert sorted(rule["verbs"]) == ["get", "list", "watch"]
    project = _named(tooling, "prod-gitops-project")
    assert {"group": "external-secrets.io", "kind": "ExternalSecret"} in project.inputs["spec"][
        "namespaceResourceBlacklist"
    ]

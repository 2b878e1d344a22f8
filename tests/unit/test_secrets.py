"""External Secrets Operator and its stores, in every cluster, for both backends.

The store must read the vault through its own scoped identity (read-only Secret Manager on the one
project), with the key only in a Kubernetes Secret whose values are Pulumi secrets; both backends
must render stores the External Secrets CRD accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from offline import runner, schemas
from offline.mocks import Registration, fake_secret
from scw_platform import images
from scw_platform import secrets as secrets_component
from tests.harness import is_secret, unwrap
from tests.unit.test_ingress import assert_spread

RELEASE = "kubernetes:helm.sh/v3:Release"
STORE = "kubernetes:external-secrets.io/v1:ClusterSecretStore"
SECRET = "kubernetes:core/v1:Secret"
OPERATOR = "platform:secrets:SecretsOperator"
ONEPASSWORD = {
    "platform:secrets": {"backend": "onepassword", "onepassword": {"vault": "platform-prod"}},
}
needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (a fresh clone has no ../shared/schemas)",
)


def _named(plan: runner.Plan, name: str) -> Registration:
    found = [r for r in plan.registrations if r.name == name]
    assert len(found) == 1, (name, len(found))
    return found[0]


def _children(plan: runner.Plan, parent: Registration) -> list[Registration]:
    return [r for r in plan.registrations if r.parent == parent.urn]


@pytest.fixture(scope="module")
def onepassword_prod() -> runner.Plan:
    config = runner.read_stack_config("prod")
    config.update(ONEPASSWORD)
    return runner.run("prod", config=config)


@pytest.mark.parametrize("stack", ["tooling", "prod", "dev"])
def test_every_cluster_gets_the_operator_and_a_store(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    operator = plan.one(OPERATOR)
    assert operator.name == f"{plan.exports['environment'].value}-secrets"
    cluster_provider = _named(plan, f"{plan.exports['environment'].value}-k8s")
    release = next(r for r in _children(plan, operator) if r.type == RELEASE)
    assert release.provider_urn == cluster_provider.urn
    inputs = release.inputs
    assert inputs["chart"] == "external-secrets"
    assert inputs["version"] == secrets_component.EXTERNAL_SECRETS_CHART_VERSION == "2.9.0"
    assert inputs["repositoryOpts"] == {"repo": "https://charts.external-secrets.io"}
    values = inputs["values"]
    tags = {
        values["image"]["tag"],
        values["webhook"]["image"]["tag"],
        values["certController"]["image"]["tag"],
    }
    # One image for the three Deployments, by tag and digest (the chart has no digest key).
    assert tags == {f"v2.9.0@{images.digest('external-secrets')}"}
    # The digest cannot land after a flavour suffix ("<tag>-<flavour>"): none is set.
    assert not any(values[k]["image"].get("flavour") for k in ("webhook", "certController"))
    assert not values["image"].get("flavour")
    stores = list(plan.by_type(STORE))
    assert [s.inputs["metadata"]["name"] for s in stores] == ["platform-scaleway"]
    assert stores[0].provider_urn == cluster_provider.urn
    assert release.urn in stores[0].dependencies
    if "secretsBackend" in plan.exports:
        assert plan.exports["secretsBackend"].value == "scaleway"


@pytest.mark.parametrize("stack", ["tooling", "prod"])
def test_operator_is_highly_available_and_spread(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    """Two replicas of the controller, webhook and cert controller, a budget a drain can pass, and
    the spread over zones and nodes, each selecting its own pods (the chart's selector labels)."""
    values = unwrap(_named(committed_plans[stack], f"{stack}-secrets-operator").inputs["values"])
    components = {
        "external-secrets": values,
        "external-secrets-webhook": values["webhook"],
        "external-secrets-cert-controller": values["certController"],
    }
    for name, component in components.items():
        assert component["replicaCount"] == 2
        assert component["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
        assert_spread(
            component["topologySpreadConstraints"],
            {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "external-secrets"},
        )
    assert values["leaderElect"] is True, "two controllers must not both reconcile"


@pytest.mark.parametrize("stack", ["tooling", "prod"])
def test_operator_probes_and_sizes_every_deployment(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    """The chart leaves the controller's probes off: the values turn them on, on the health port
    the chart's --live-addr listens on, and keep the helpers' on; every deployment is sized."""
    values = unwrap(_named(committed_plans[stack], f"{stack}-secrets-operator").inputs["values"])
    port = secrets_component.CONTROLLER_HEALTH_PORT
    assert values["livenessProbe"] == {
        "enabled": True,
        "spec": {"port": port, "httpGet": {"path": "/healthz", "port": port}},
    }
    ready = {"httpGet": {"path": "/readyz", "port": port}}
    assert values["readinessProbe"] == {"enabled": True, "spec": ready}
    for helper in ("webhook", "certController"):
        assert values[helper]["livenessProbe"] == {"enabled": True}, helper
        assert values[helper]["readinessProbe"] == {"enabled": True}, helper
        # The probe switches join the helper's entry; they must not replace its HA settings.
        assert values[helper]["replicaCount"] == 2 and values[helper]["image"]["tag"].startswith(
            "v2.9.0@sha256:"
        )
    for component in (values, values["webhook"], values["certController"]):
        assert component["resources"]["requests"]["memory"] and component["resources"]["limits"]["memory"]


def test_development_runs_one_operator_without_budget_or_spread(
    committed_plans: dict[str, runner.Plan],
) -> None:
    values = unwrap(_named(committed_plans["dev"], "dev-secrets-operator").inputs["values"])
    for component in (values, values["webhook"], values["certController"]):
        assert component["replicaCount"] == 1
        assert component["podDisruptionBudget"]["enabled"] is False
        assert "topologySpreadConstraints" not in component


def test_operator_namespace_is_restricted(committed_plans: dict[str, runner.Plan]) -> None:
    namespace = _named(committed_plans["prod"], "prod-secrets-namespace")
    labels = namespace.inputs["metadata"]["labels"]
    assert namespace.inputs["metadata"]["name"] == "external-secrets"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["platform.scw/platform-namespace"] == "true"


def test_operator_serves_only_the_platforms_cluster_stores(committed_plans: dict[str, runner.Plan]) -> None:
    values = _named(committed_plans["prod"], "prod-secrets-operator").inputs["values"]
    assert values["processClusterStore"] is True
    # No namespaced SecretStore: a namespace cannot bring its own credentials.
    assert values["processSecretStore"] is False
    assert values["processPushSecret"] is False
    assert values["replicaCount"] == 2 and values["podDisruptionBudget"]["enabled"] is True


def test_store_reads_through_its_own_scoped_identity(committed_plans: dict[str, runner.Plan]) -> None:
    plan = committed_plans["prod"]
    identity = _named(plan, "prod-secrets-scaleway")
    assert identity.type == "platform:identity:ScopedIdentity"
    policy = _named(plan, "prod-secrets-scaleway-policy")
    rules = policy.inputs["rules"]
    assert rules == [
        {
            "permissionSetNames": ["SecretManagerReadOnly", "SecretManagerSecretAccess"],
            "projectIds": ["6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"],
        }
    ]
    key = _named(plan, "prod-secrets-scaleway-key")
    credentials = _named(plan, "prod-secrets-scaleway-credentials")
    assert is_secret(credentials.inputs["stringData"])
    data = unwrap(credentials.inputs["stringData"])
    assert data["access-key"] == key.state["accessKey"]
    assert data["secret-key"] == unwrap(key.state["secretKey"])
    assert key.urn in credentials.dependencies

    store = _named(plan, "prod-secrets-store-scaleway")
    scaleway = store.inputs["spec"]["provider"]["scaleway"]
    assert scaleway["projectId"] == "6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"
    assert scaleway["region"] == "fr-par"
    ref = {"name": credentials.inputs["metadata"]["name"], "namespace": "external-secrets"}
    assert scaleway["accessKey"] == {"secretRef": {**ref, "key": "access-key"}}
    assert scaleway["secretKey"] == {"secretRef": {**ref, "key": "secret-key"}}
    assert credentials.urn in store.dependencies


def test_store_admits_only_labelled_namespaces(committed_plans: dict[str, runner.Plan]) -> None:
    spec = _named(committed_plans["prod"], "prod-secrets-store-scaleway").inputs["spec"]
    assert spec["conditions"] == [
        {"namespaceSelector": {"matchLabels": {"platform.scw/app-namespace": "true"}}},
        {"namespaceSelector": {"matchLabels": {"platform.scw/platform-namespace": "true"}}},
    ]


def test_every_cluster_has_its_own_identity(committed_plans: dict[str, runner.Plan]) -> None:
    names = {
        stack: [
            r.name
            for r in plan.by_type("platform:identity:ScopedIdentity")
            if r.name.endswith("-secrets-scaleway")
        ]
        for stack, plan in committed_plans.items()
    }
    # Every committed stack with a cluster: one identity, named after its own environment.
    with_cluster = {s for s, p in committed_plans.items() if p.by_type("scaleway:kubernetes/cluster:Cluster")}
    assert {"tooling", "prod", "dev"} <= with_cluster
    assert names == {stack: [f"{stack}-secrets-scaleway"] for stack in with_cluster}


def test_onepassword_backend_adds_its_store(onepassword_prod: runner.Plan) -> None:
    plan = onepassword_prod
    stores = {s.inputs["metadata"]["name"]: s for s in plan.by_type(STORE)}
    assert set(stores) == {"platform-scaleway", "platform-onepassword"}
    provider = stores["platform-onepassword"].inputs["spec"]["provider"]["onepasswordSDK"]
    token = _named(plan, "prod-secrets-onepassword-token")
    assert provider == {
        "vault": "platform-prod",
        "auth": {
            "serviceAccountSecretRef": {
                "name": token.inputs["metadata"]["name"],
                "namespace": "external-secrets",
                "key": "token",
            }
        },
    }
    assert is_secret(token.inputs["stringData"])
    # The runner's stand-in for `pulumi config set --secret platform:onepasswordServiceAccountToken`.
    assert unwrap(token.inputs["stringData"])["token"] == fake_secret(
        "platform:onepasswordServiceAccountToken"
    )
    assert plan.exports["secretsBackend"].value == "onepassword"


def test_onepassword_apps_read_their_item_and_the_platforms_database_entry(
    onepassword_prod: runner.Plan,
) -> None:
    secret = _named(onepassword_prod, "app-website-env")
    spec = secret.inputs["spec"]
    assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "platform-onepassword"}
    by_key = {d["secretKey"]: d for d in spec["data"]}
    assert by_key["STRIPE_SECRET_KEY"]["remoteRef"] == {"key": "prod-website/STRIPE_SECRET_KEY"}
    assert "sourceRef" not in by_key["STRIPE_SECRET_KEY"]
    database = by_key["DATABASE_PASSWORD"]
    assert database["remoteRef"] == {"key": "path:/prod/website/platform-database", "property": "password"}
    assert database["sourceRef"] == {"storeRef": {"kind": "ClusterSecretStore", "name": "platform-scaleway"}}


@needs_schemas
@pytest.mark.schemas
def test_both_backends_render_stores_the_crd_accepts(
    committed_plans: dict[str, runner.Plan], onepassword_prod: runner.Plan
) -> None:
    from offline import artifacts

    checked = 0
    for plan in [*committed_plans.values(), onepassword_prod]:
        for store in plan.by_type(STORE):
            obj = artifacts.kubernetes_object(store)
            assert schemas.validate_custom_resource(obj) == [], (plan.stack, store.name)
            checked += 1
    clusters = sum(1 for p in committed_plans.values() if p.by_type("scaleway:kubernetes/cluster:Cluster"))
    assert checked == clusters + 2  # one per committed cluster, two with 1Password


@needs_schemas
@pytest.mark.schemas
def test_operator_values_match_the_charts_schema() -> None:
    for ha in (True, False):
        assert (
            schemas.validate_helm_values("external-secrets", secrets_component.operator_values(ha=ha)) == []
        )


@needs_schemas
@pytest.mark.schemas
def test_operator_probe_values_are_checked_by_the_schema() -> None:
    """Not vacuous: a probe switch of the wrong type is refused by the chart's schema."""
    values = secrets_component.operator_values(ha=True)
    values["readinessProbe"] = {"enabled": "yes"}
    assert schemas.validate_helm_values("external-secrets", values)
    values = secrets_component.operator_values(ha=True)
    values["webhook"]["livenessProbe"] = {"enabled": True, "initialDelaySeconds": "10s"}
    assert schemas.validate_helm_values("external-secrets", values)


def test_unknown_backend_is_refused_by_the_component() -> None:
    with pytest.raises(ValueError, match="unknown secrets backend 'vault'"):
        secrets_component.SecretsOperatorArgs(
            provider=None,  # type: ignore[arg-type]
            environment="prod",
            region="fr-par",
            project_id="p",
            backend="vault",
        )


def test_no_plaintext_secret_reaches_the_operator(plan_with: Callable[..., runner.Plan]) -> None:
    from tests.harness import plaintext_secrets

    plan = plan_with("prod", ONEPASSWORD)
    leaks: list[Any] = [
        (r.name, path)
        for r in plan.registrations
        if r.parent and "secrets" in r.name
        for path in plaintext_secrets(r.inputs)
    ]
    assert leaks == []

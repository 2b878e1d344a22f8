"""cert-manager and the Let's Encrypt issuers under mocks, with and without DNS-01."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from offline import runner, schemas
from offline.artifacts import plain
from offline.mocks import SECRET_MARKER, Registration
from scw_platform import images, tls
from tests.unit.test_ingress import assert_spread

RELEASE = "kubernetes:helm.sh/v3:Release"
CLUSTER_ISSUER = "kubernetes:cert-manager.io/v1:ClusterIssuer"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
SECRET = "kubernetes:core/v1:Secret"
POLICY = "scaleway:iam/policy:Policy"
PROJECT_ID = "6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"


def releases(plan: runner.Plan) -> dict[str, Registration]:
    return {r.inputs["chart"]: r for r in plan.by_type(RELEASE)}


def issuers(plan: runner.Plan) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: plain(r.inputs["spec"]) for r in plan.by_type(CLUSTER_ISSUER)}


@pytest.fixture(scope="module")
def prod_dns01() -> runner.Plan:
    config = runner.read_stack_config("prod")
    config["platform:tls"] = {**config["platform:tls"], "dns01": True}
    return runner.run("prod", config=config)


# --- cert-manager -----------------------------------------------------------------------------


def test_cert_manager_release_is_pinned_with_crds_and_gateway_api(
    committed_plans: dict[str, runner.Plan],
) -> None:
    release = releases(committed_plans["prod"])["cert-manager"]
    assert release.inputs["version"] == "v1.21.1"
    assert release.inputs["repositoryOpts"]["repo"] == "https://charts.jetstack.io"
    assert release.inputs["namespace"] == "cert-manager"
    values = plain(release.inputs["values"])
    assert values["crds"]["enabled"] is True
    assert values["config"]["gatewayAPI"] == {"enabled": True}
    components = {
        "controller": values,
        "webhook": values["webhook"],
        "cainjector": values["cainjector"],
        "startupapicheck": values["startupapicheck"],
        "acmesolver": values["acmesolver"],
    }
    for component, image in components.items():
        # Tag and digest: the chart renders image:tag@digest (values.schema.json at v1.21.1).
        assert image["image"] == {
            "tag": "v1.21.1",
            "digest": images.digest(f"cert-manager-{component}"),
        }, "every image pinned, no chart-default drift"
    assert len({image["image"]["digest"] for image in components.values()}) == 5


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_cert_manager_is_highly_available(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    """Two replicas of each deployment, a budget a drain can pass, and the spread over zones and
    nodes, each selecting its own deployment's pods (the chart's instance and component labels)."""
    values = plain(releases(committed_plans[stack])["cert-manager"].inputs["values"])
    components = {"controller": values, "webhook": values["webhook"], "cainjector": values["cainjector"]}
    for name, component in components.items():
        assert component["replicaCount"] == 2
        assert component["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
        assert_spread(
            component["topologySpreadConstraints"],
            {"app.kubernetes.io/instance": "cert-manager", "app.kubernetes.io/component": name},
        )


def test_a_single_cert_manager_has_no_budget_and_no_spread() -> None:
    values = tls.cert_manager_values(ha=False)
    for component in (values, values["webhook"], values["cainjector"]):
        assert component["replicaCount"] == 1
        assert component["podDisruptionBudget"]["enabled"] is False, "it would block every drain"
        assert "topologySpreadConstraints" not in component


# --- issuers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_staging_and_production_issuers_solve_http01_through_the_gateway(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    gateway = plan.one(GATEWAY)
    found = issuers(plan)
    assert set(found) == {"letsencrypt-staging", "letsencrypt-production"}
    assert found["letsencrypt-staging"]["acme"]["server"] == (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    assert (
        found["letsencrypt-production"]["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    )
    http_listener = gateway.inputs["spec"]["listeners"][0]
    for name, spec in found.items():
        acme = spec["acme"]
        assert acme["email"] == "platform@example.com"
        assert acme["privateKeySecretRef"]["name"] == f"{name}-account-key"
        [solver] = acme["solvers"]
        [parent] = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
        assert parent == {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": gateway.inputs["metadata"]["name"],
            "namespace": gateway.inputs["metadata"]["namespace"],
            "sectionName": http_listener["name"],
        }
        assert http_listener["protocol"] == "HTTP"


def test_no_dns01_machinery_unless_asked(committed_plans: dict[str, runner.Plan]) -> None:
    plan = committed_plans["prod"]
    assert tls.SCW_WEBHOOK_CHART not in releases(plan)
    assert not [r for r in plan.registrations if "dns01" in r.name]


# --- DNS-01 -----------------------------------------------------------------------------------


def test_dns01_webhook_release_is_pinned(prod_dns01: runner.Plan) -> None:
    webhook = releases(prod_dns01)[tls.SCW_WEBHOOK_CHART]
    assert webhook.inputs["version"] == "0.4.0"
    assert webhook.inputs["repositoryOpts"]["repo"] == "https://helm.scw.cloud/"
    values = plain(webhook.inputs["values"])
    assert values["image"]["tag"] == "v0.1.0"
    assert values["certManager"] == {"namespace": "cert-manager", "serviceAccountName": "cert-manager"}
    assert "secret" not in values, "the API key never goes into Helm values (release Secret, state)"


def test_dns01_identity_is_scoped_to_dns_in_one_project(prod_dns01: runner.Plan) -> None:
    policies = [r for r in prod_dns01.by_type(POLICY) if "dns01" in r.name]
    assert len(policies) == 1
    [rule] = plain(policies[0].inputs["rules"])
    assert rule == {"permissionSetNames": ["DomainsDNSFullAccess"], "projectIds": [PROJECT_ID]}


def test_dns01_credentials_stay_secret(prod_dns01: runner.Plan) -> None:
    [secret] = [r for r in prod_dns01.by_type(SECRET) if r.name.endswith("dns01-credentials")]
    assert secret.inputs["metadata"] == {"name": tls.DNS01_SECRET, "namespace": "cert-manager"}
    data = secret.inputs["stringData"]
    # Secret as a whole (the SDK wraps stringData) or value by value: never plaintext.
    if rpc.is_rpc_secret(data):
        data = data["value"]
        assert set(data) == {"SCW_ACCESS_KEY", "SCW_SECRET_KEY"}
    else:
        assert set(data) == {"SCW_ACCESS_KEY", "SCW_SECRET_KEY"}
        for key, value in data.items():
            assert rpc.is_rpc_secret(value), f"{key} must be a Pulumi secret"
    assert SECRET_MARKER not in repr(plain(secret.inputs))


def test_dns01_solver_covers_the_zone_and_issuers_wait_for_it(prod_dns01: runner.Plan) -> None:
    webhook = releases(prod_dns01)[tls.SCW_WEBHOOK_CHART]
    [secret] = [r for r in prod_dns01.by_type(SECRET) if r.name.endswith("dns01-credentials")]
    for issuer in prod_dns01.by_type(CLUSTER_ISSUER):
        http01, dns01 = plain(issuer.inputs["spec"])["acme"]["solvers"]
        assert "http01" in http01
        assert dns01["selector"] == {"dnsZones": ["example.com"]}
        webhook_config = dns01["dns01"]["webhook"]
        assert (webhook_config["groupName"], webhook_config["solverName"]) == (
            "acme.scaleway.com",
            "scaleway",
        )
        assert webhook_config["config"]["secretKeySecretRef"] == {
            "name": tls.DNS01_SECRET,
            "key": "SCW_SECRET_KEY",
        }
        assert webhook.urn in issuer.dependencies and secret.urn in issuer.dependencies


def test_dns01_webhook_has_its_own_restricted_namespace(prod_dns01: runner.Plan) -> None:
    namespaces = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
        for r in prod_dns01.by_type("kubernetes:core/v1:Namespace")
        if "front-door" in r.name
    }
    assert namespaces[tls.SCW_WEBHOOK_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespaces["cert-manager"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_dns01_webhook_runs_unprivileged(prod_dns01: runner.Plan) -> None:
    values = plain(releases(prod_dns01)[tls.SCW_WEBHOOK_CHART].inputs["values"])
    # The chart renders podSecurityContext on the container and securityContext on the pod.
    container, pod = values["podSecurityContext"], values["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["runAsNonRoot"] is True and container["runAsUser"] == tls.SCW_WEBHOOK_USER != 0
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    # Port 443 is fixed in the chart: only the port floor moves, and no further than it.
    assert pod["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "443"}]
    assert tls.SCW_WEBHOOK_PORT == 443
    assert values["resources"]["requests"]["memory"] and values["resources"]["limits"]["memory"]


def test_dns01_webhook_context_meets_pod_security_restricted() -> None:
    """The values against the restricted profile's container and pod checks, as the API server's
    Pod Security admission would run them on the rendered pod (the chart's swapped keys)."""
    values = tls.scaleway_webhook_values()
    assert restricted_problems(values["securityContext"], values["podSecurityContext"]) == []
    # Not vacuous: the chart's defaults (both contexts empty) and a root user each fail.
    assert restricted_problems({}, {})
    assert restricted_problems(values["securityContext"], {**values["podSecurityContext"], "runAsUser": 0})
    unsafe = {**values["securityContext"], "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}
    assert restricted_problems(unsafe, values["podSecurityContext"])


#: Pod Security's safe sysctls (baseline, "Sysctls";
#: https://kubernetes.io/docs/concepts/security/pod-security-standards/).
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_problems(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """What Pod Security ``restricted`` refuses in one pod/container pair (its controls as
    documented, a container value winning over the pod's)."""
    problems = []
    if container.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    if container.get("capabilities", {}).get("drop") != ["ALL"] or set(
        container.get("capabilities", {}).get("add", [])
    ) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities must drop ALL and add at most NET_BIND_SERVICE")
    if container.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot must be true")
    if container.get("runAsUser", pod.get("runAsUser")) == 0:
        problems.append("runAsUser must not be 0")
    seccomp = container.get("seccompProfile", pod.get("seccompProfile")) or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile must be RuntimeDefault or Localhost")
    if container.get("privileged"):
        problems.append("privileged")
    sysctls = [entry["name"] for entry in pod.get("sysctls", [])]
    problems += [f"unsafe sysctl {name}" for name in sysctls if name not in _SAFE_SYSCTLS]
    return problems


def test_startupapicheck_and_controllers_have_memory_limits_and_probes(
    committed_plans: dict[str, runner.Plan],
) -> None:
    values = plain(releases(committed_plans["prod"])["cert-manager"].inputs["values"])
    for component, resources in (
        ("controller", values["resources"]),
        ("webhook", values["webhook"]["resources"]),
        ("cainjector", values["cainjector"]["resources"]),
        ("startupapicheck", values["startupapicheck"]["resources"]),
    ):
        assert resources["requests"]["memory"], component
        assert resources["requests"]["cpu"], component
        assert resources["limits"]["memory"], component
    assert values["livenessProbe"] == {"enabled": True}
    # The webhook's probes are the chart's (rendered unconditionally): nothing may null them.
    assert "livenessProbe" not in values["webhook"] and "readinessProbe" not in values["webhook"]


def test_dns01_secret_reader_grant_is_one_secret(prod_dns01: runner.Plan) -> None:
    [role] = [
        r for r in prod_dns01.by_type("kubernetes:rbac.authorization.k8s.io/v1:Role") if "dns01" in r.name
    ]
    assert plain(role.inputs["rules"]) == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [tls.DNS01_SECRET], "verbs": ["get"]}
    ]


# --- upstream schemas -----------------------------------------------------------------------

needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (../shared/schemas is absent in a "
    "fresh clone; CI has it)",
)


@pytest.mark.schemas
@needs_schemas
def test_schemas_dns01_issuers_and_values(prod_dns01: runner.Plan) -> None:
    for issuer in prod_dns01.by_type(CLUSTER_ISSUER):
        obj = {
            k: plain(v) for k, v in issuer.inputs.items() if k in ("apiVersion", "kind", "metadata", "spec")
        }
        assert schemas.validate_custom_resource(obj) == [], issuer.name
    values = plain(releases(prod_dns01)["cert-manager"].inputs["values"])
    assert schemas.validate_helm_values("cert-manager", values) == []


@pytest.mark.schemas
@needs_schemas
def test_schemas_cert_manager_values_with_and_without_ha() -> None:
    for ha in (True, False):
        assert schemas.validate_helm_values("cert-manager", tls.cert_manager_values(ha=ha)) == [], ha
    # Not vacuous: the budget is a closed object in the schema.
    values = tls.cert_manager_values(ha=True)
    values["webhook"]["podDisruptionBudget"] = {"enabled": True, "minAvaliable": 1}
    assert schemas.validate_helm_values("cert-manager", values)

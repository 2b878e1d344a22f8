"""Every platform namespace is fenced: a default deny both ways, then exactly the allows each
component needs, each release after its namespace's policies (issue 18, item 1)."""

from __future__ import annotations

from typing import Any

import pytest

from offline import runner
from offline.artifacts import plain
from scw_platform import ci, gitops, ingress, kube, labels, observability, secrets, tls
from tests.harness import unwrap, upstream

POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"
DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
DNS = kube.dns_egress_rule()
API = {"ports": [{"protocol": "TCP", "port": 6443}]}
PUBLIC = {"cidr": "0.0.0.0/0", "except": list(kube.NOT_PUBLIC)}
HTTPS_OUT = {"to": [{"ipBlock": PUBLIC}], "ports": [{"protocol": "TCP", "port": 443}]}


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def from_monitoring(port: int) -> dict[str, Any]:
    return {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": tcp(port),
    }


def policies(plan: runner.Plan, namespace: str) -> dict[str, dict[str, Any]]:
    """The NetworkPolicies of one namespace, by name."""
    return {
        r.inputs["metadata"]["name"]: plain(r.inputs["spec"])
        for r in plan.by_type(POLICY)
        if r.inputs["metadata"]["namespace"] == namespace
    }


@pytest.fixture(scope="module")
def prod_dns01() -> runner.Plan:
    config = runner.read_stack_config("prod")
    config["platform:tls"] = {**config["platform:tls"], "dns01": True}
    return runner.run("prod", config=config)


# --- What each namespace gets ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod", "tooling"])
def test_traefik_namespace(stack: str, committed_plans: dict[str, runner.Plan]) -> None:
    found = policies(committed_plans[stack], "traefik")
    assert set(found) == {"default-deny", "traefik", "acme-http01-solver"}
    assert found["default-deny"] == DENY
    traefik_pods = {"matchLabels": ingress.TRAEFIK_POD_LABELS}
    assert found["traefik"] == {
        "podSelector": traefik_pods,
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            # The load balancer delivers the public's traffic: the entry points from anywhere.
            {"ports": tcp(8000, 8443)},
            from_monitoring(9100),
        ],
        "egress": [
            DNS,
            API,
            # The Gateway's backends: pods of app and platform namespaces, each on its own port.
            {
                "to": [
                    {"namespaceSelector": {"matchLabels": {labels.APP_NAMESPACE: "true"}}},
                    {"namespaceSelector": {"matchLabels": {labels.PLATFORM_NAMESPACE: "true"}}},
                ]
            },
            {
                "to": [{"podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}}],
                "ports": tcp(8089),
            },
        ],
    }
    assert found["acme-http01-solver"] == {
        "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": traefik_pods}], "ports": tcp(8089)}],
    }


def _cert_manager_controller_egress(*, dns01: bool) -> list[dict[str, Any]]:
    self_check_in_cluster = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
                "podSelector": {"matchLabels": ingress.TRAEFIK_POD_LABELS},
            }
        ],
        "ports": tcp(8000),
    }
    egress = [HTTPS_OUT, {"to": [{"ipBlock": PUBLIC}], "ports": tcp(80)}, self_check_in_cluster]
    if dns01:
        egress.append({"to": [{"ipBlock": PUBLIC}], "ports": [{"protocol": "UDP", "port": 53}, *tcp(53)]})
    return egress


@pytest.mark.parametrize("dns01", [False, True])
def test_cert_manager_namespace(
    dns01: bool, committed_plans: dict[str, runner.Plan], prod_dns01: runner.Plan
) -> None:
    found = policies(prod_dns01 if dns01 else committed_plans["prod"], "cert-manager")
    assert found == {
        "default-deny": DENY,
        "cert-manager-api": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS, API]},
        "cert-manager-controller": {
            "podSelector": {"matchLabels": tls.cert_manager_pods("controller")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [from_monitoring(9402)],
            "egress": _cert_manager_controller_egress(dns01=dns01),
        },
        # The API server calls the webhook: its securePort from anywhere.
        "cert-manager-webhook": {
            "podSelector": {"matchLabels": tls.cert_manager_pods("webhook")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": tcp(10250)}],
        },
    }


def test_scaleway_webhook_namespace(prod_dns01: runner.Plan, committed_plans: dict[str, runner.Plan]) -> None:
    assert policies(committed_plans["prod"], tls.SCW_WEBHOOK_NAMESPACE) == {}, "no DNS-01, no namespace"
    assert policies(prod_dns01, tls.SCW_WEBHOOK_NAMESPACE) == {
        "default-deny": DENY,
        "scaleway-webhook": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": tcp(443)}],
            "egress": [DNS, API, HTTPS_OUT],
        },
    }


@pytest.mark.parametrize("stack", ["dev", "prod", "tooling"])
def test_external_secrets_namespace(stack: str, committed_plans: dict[str, runner.Plan]) -> None:
    assert policies(committed_plans[stack], "external-secrets") == {
        "default-deny": DENY,
        "external-secrets-api": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS, API]},
        "external-secrets-controller": {
            "podSelector": {"matchLabels": secrets.operator_pods()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [from_monitoring(8080)],
            # Scaleway Secret Manager (api.scaleway.com) or 1Password: public HTTPS.
            "egress": [HTTPS_OUT],
        },
        "external-secrets-webhook": {
            "podSelector": {"matchLabels": secrets.operator_pods("-webhook")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": tcp(10250)}],
        },
    }


def test_argocd_namespace(committed_plans: dict[str, runner.Plan]) -> None:
    found = policies(committed_plans["tooling"], "argocd")
    assert found == {
        "default-deny": DENY,
        "argocd-internal": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        },
        "argocd-server-gateway": {
            "podSelector": {"matchLabels": gitops.argocd_pods("server")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}
                    ],
                    "ports": tcp(8080),
                }
            ],
        },
        "argocd-controller-metrics": {
            "podSelector": {"matchLabels": gitops.argocd_pods("application-controller")},
            "policyTypes": ["Ingress"],
            "ingress": [from_monitoring(8082)],
        },
        # The committed repository is on https: Git, the registry and the API servers are 443 and 6443.
        "argocd-egress": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS, API, HTTPS_OUT]},
    }
    (release,) = [r for r in committed_plans["tooling"].by_type(RELEASE) if r.inputs["chart"] == "argo-cd"]
    # The chart's own policies stay off: the program's are the namespace's only ones.
    assert unwrap(release.inputs["values"])["global"]["networkPolicy"] == {"create": False}


def test_argocd_over_ssh_opens_the_git_hosts_port(plan_with: Any) -> None:
    config = runner.read_stack_config("tooling")
    gitops_config = {**config["platform:gitops"], "repoUrl": "ssh://git@git.example.com:2222/acme/gitops.git"}
    plan = plan_with("tooling", {"platform:gitops": gitops_config})
    egress = policies(plan, "argocd")["argocd-egress"]["egress"]
    assert egress == [DNS, API, HTTPS_OUT, {"to": [{"ipBlock": PUBLIC}], "ports": tcp(2222)}]


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("https://gitlab.com/acme/gitops.git", 443),
        ("https://git.example.com:8443/acme/gitops.git", 8443),
        ("ssh://git@gitlab.com/acme/gitops.git", 22),
        ("ssh://git@git.example.com:2222/acme/gitops.git", 2222),
        ("git@github.com:acme/gitops.git", 22),
    ],
)
def test_git_port(url: str, port: int) -> None:
    assert gitops.git_port(url) == port


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_argocd_manager_namespace_is_deny_only(stack: str, committed_plans: dict[str, runner.Plan]) -> None:
    # A service account and its token, no pod: nothing to allow.
    assert policies(committed_plans[stack], gitops.MANAGER_NAMESPACE) == {"default-deny": DENY}


@pytest.mark.parametrize("stack", ["dev", "prod", "tooling"])
def test_every_namespace_the_plan_declares_has_a_default_deny(
    stack: str, committed_plans: dict[str, runner.Plan]
) -> None:
    plan = committed_plans[stack]
    declared = {r.inputs["metadata"]["name"] for r in plan.by_type("kubernetes:core/v1:Namespace")}
    assert declared, stack
    for namespace in declared:
        assert policies(plan, namespace).get("default-deny") == DENY, namespace


# --- Order: every release starts with its namespace's paths open -----------------------------------


#: The namespaces this change fences, where every release waits for every policy of its namespace.
FENCED = {"traefik", "cert-manager", "external-secrets", "argocd"}


@pytest.mark.parametrize("stack", ["dev", "prod", "tooling"])
def test_every_release_depends_on_its_namespaces_policies(
    stack: str, committed_plans: dict[str, runner.Plan]
) -> None:
    """Every release waits for its namespace's default deny (so nothing runs unfenced); in the
    namespaces fenced here, for every allow too (an allow for another workload, such as the
    monitoring namespace's rules-sync Job, need not come first elsewhere)."""
    plan = committed_plans[stack]
    checked = set()
    for release in plan.by_type(RELEASE):
        namespace = str(plain(release.inputs["namespace"]))
        own = {
            r.inputs["metadata"]["name"]: r.urn
            for r in plan.by_type(POLICY)
            if r.inputs["metadata"]["namespace"] == namespace and r.provider_urn == release.provider_urn
        }
        waits_for = upstream(plan, release)
        assert own.get("default-deny") in waits_for, f"{release.name} starts unfenced"
        if namespace in FENCED:
            missing = set(own.values()) - waits_for
            assert not missing, f"{release.name} starts before {sorted(missing)}"
            checked.add(namespace)
    assert checked >= {"traefik", "cert-manager", "external-secrets"}


def test_the_dns01_webhook_depends_on_its_policies(prod_dns01: runner.Plan) -> None:
    (webhook,) = [r for r in prod_dns01.by_type(RELEASE) if r.inputs["chart"] == tls.SCW_WEBHOOK_CHART]
    own = {
        r.urn
        for r in prod_dns01.by_type(POLICY)
        if r.inputs["metadata"]["namespace"] == tls.SCW_WEBHOOK_NAMESPACE
    }
    assert len(own) == 2 and own <= upstream(prod_dns01, webhook)


# --- The numbers the policies name are the charts' and the other components' -----------------------


def test_shared_constants_agree_with_the_components() -> None:
    assert kube.MONITORING_NAMESPACE == observability.MONITORING_NAMESPACE
    assert kube.KUBERNETES_API_PORT == observability.KUBERNETES_API_PORT == ci.KUBERNETES_API_PORT
    assert tls.CERT_MANAGER_WEBHOOK_PORT == 10250 and secrets.WEBHOOK_PORT == 10250
    # The front door's HTTP port the self-check may land on is Traefik's web entry point.
    assert ingress.FrontDoor._gateway_ref().http_port == ingress.WEB_PORT


def test_the_charts_keep_the_ports_the_policies_name(committed_plans: dict[str, runner.Plan]) -> None:
    """The policies name the charts' default ports: the values must not move them."""
    values = {
        r.inputs["chart"]: unwrap(r.inputs["values"])
        for r in committed_plans["tooling"].by_type(RELEASE)
        if r.inputs["chart"] in {"traefik", "cert-manager", "external-secrets", "argo-cd"}
    }
    ports = values["traefik"]["ports"]
    assert (ports["web"]["port"], ports["websecure"]["port"]) == (8000, 8443)
    assert ports["metrics"]["port"] == labels.TRAEFIK_METRICS_PORT
    assert "securePort" not in values["cert-manager"]["webhook"]
    assert "port" not in values["external-secrets"]["webhook"]
    assert "listen" not in values["external-secrets"]["metrics"]
    assert "containerPorts" not in values["argo-cd"].get("server", {})
    assert "containerPorts" not in values["argo-cd"]["controller"]


def test_every_metrics_port_monitoring_scrapes_is_admitted_from_monitoring(
    committed_plans: dict[str, runner.Plan],
) -> None:
    """observability's egress to the controllers' metrics ports meets an ingress on the other side,
    in the stack each controller runs in (Argo CD's in tooling, Argo Rollouts' in prod and dev)."""
    admitted = {
        port["port"]
        for plan in committed_plans.values()
        for r in plan.by_type(POLICY)
        for rule in plain(r.inputs["spec"]).get("ingress", [])
        if rule.get("from") == from_monitoring(0)["from"]
        for port in rule["ports"]
    }
    assert set(observability.CONTROLLER_METRICS_PORTS) <= admitted


def test_argocd_without_a_public_hostname_takes_nothing_from_the_gateway(plan_with: Any) -> None:
    config = runner.read_stack_config("tooling")
    gitops_config = {**config["platform:gitops"], "argocd": {"ha": True}}
    found = policies(plan_with("tooling", {"platform:gitops": gitops_config}), "argocd")
    assert set(found) == {"default-deny", "argocd-internal", "argocd-controller-metrics", "argocd-egress"}

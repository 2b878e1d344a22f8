"""The front door under mocks: reserved IP, Gateway API CRDs, Traefik, the platform Gateway, DNS.

What is asserted is what a real deployment depends on: the order in which things are applied
(recorded ``dependencies``), the cloud controller's annotation carrying the bare IP UUID, the
redirect with its ACME exception, one certificate-backed HTTPS listener per hostname, HA in
production, the address's protection, and the explicit Kubernetes provider on every object.
Schema validation of the rendered objects and values runs in ``test_schemas_front_door`` below.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner, schemas
from offline.artifacts import plain
from offline.mocks import Registration
from scw_platform import images, ingress, labels
from scw_platform.dns import record_name
from tests.harness import environments_document, environments_with, upstream

PlanWith = Callable[..., runner.Plan]

RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
GATEWAY_CLASS = "kubernetes:gateway.networking.k8s.io/v1:GatewayClass"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
CLUSTER_ISSUER = "kubernetes:cert-manager.io/v1:ClusterIssuer"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
IP = "scaleway:loadbalancers/ip:Ip"
RECORD = "scaleway:domain/record:Record"
NAMESPACE = "kubernetes:core/v1:Namespace"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ADOPTED = "fr-par-1/0b9c6a1e-5d4f-4e2a-9c3b-7a8d9e0f1a2b"

FRONT_DOOR_STACKS = ("prod", "tooling")


def release(plan: runner.Plan, chart: str) -> Registration:
    found = [r for r in plan.by_type(RELEASE) if r.inputs.get("chart") == chart]
    assert len(found) == 1, f"expected one {chart} release in {plan.stack}, found {len(found)}"
    return found[0]


def values(reg: Registration) -> dict[str, Any]:
    return plain(reg.inputs["values"])


def gateway_spec(plan: runner.Plan) -> dict[str, Any]:
    return plain(plan.one(GATEWAY).inputs["spec"])


def k8s_object(reg: Registration) -> dict[str, Any]:
    return {k: plain(v) for k, v in reg.inputs.items() if k in ("apiVersion", "kind", "metadata", "spec")}


def https_listeners(plan: runner.Plan) -> list[dict[str, Any]]:
    return [listener for listener in gateway_spec(plan)["listeners"] if listener["protocol"] == "HTTPS"]


def with_ingress(plan_with: PlanWith, stack: str, **changes: Any) -> runner.Plan:
    config = runner.read_stack_config(stack)
    ingress_settings = copy.deepcopy(config["platform:ingress"])
    ingress_settings.update(changes)
    return plan_with(stack, {"platform:ingress": ingress_settings})


# --- order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_crds_then_controllers_then_gateway_and_issuers(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    crds = plan.one(CONFIG_FILE)
    traefik, cert_manager = release(plan, "traefik"), release(plan, "cert-manager")
    for controller in (traefik, cert_manager):
        assert crds.urn in controller.dependencies, f"{controller.name} must wait for the Gateway API CRDs"

    gateway, gateway_class = plan.one(GATEWAY), plan.one(GATEWAY_CLASS)
    for resource in (gateway, gateway_class):
        assert crds.urn in resource.dependencies
        assert traefik.urn in resource.dependencies, f"{resource.name} must follow Traefik"
    issuers = plan.by_type(CLUSTER_ISSUER)
    assert {i.inputs["metadata"]["name"] for i in issuers} == {
        "letsencrypt-staging",
        "letsencrypt-production",
    }
    for issuer in issuers:
        assert crds.urn in issuer.dependencies
        assert cert_manager.urn in issuer.dependencies, "cert-manager's webhook validates ClusterIssuers"
        # The Gateway names an issuer: cert-manager should find it on its first attempt.
        assert issuer.urn in gateway.dependencies
    assert gateway_class.urn in gateway.dependencies


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_routes_of_other_components_wait_for_the_crds(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    crds = plan.one(CONFIG_FILE)
    for route in plan.by_type(HTTP_ROUTE):
        assert crds.urn in upstream(plan, route), f"{route.name} needs the HTTPRoute CRD first"


def test_crd_bundle_is_the_pinned_standard_channel_release(committed_plans: dict[str, runner.Plan]) -> None:
    bundle = committed_plans["prod"].one(CONFIG_FILE)
    assert bundle.inputs["file"] == (
        "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/standard-install.yaml"
    )


# --- reserved address --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_reserved_ip_is_protected_and_retained(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    ip = committed_plans[stack].one(IP)
    assert ip.protect and ip.retain_on_delete
    assert ip.inputs["zone"] == "fr-par-1"


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_service_annotation_is_the_bare_uuid_of_the_reserved_ip(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    ip = plan.one(IP)
    zone, _, uuid = ip.id.partition("/")
    annotations = values(release(plan, "traefik"))["service"]["annotations"]
    assert annotations[ingress.IP_IDS_ANNOTATION] == uuid
    assert "/" not in annotations[ingress.IP_IDS_ANNOTATION]
    assert annotations[ingress.ZONE_ANNOTATION] == zone == ip.inputs["zone"]
    # The annotation is derived from the IP resource, so Traefik's release follows it.
    assert ip.urn in release(plan, "traefik").dependencies


def test_exports_for_later_stacks(committed_plans: dict[str, runner.Plan]) -> None:
    plan = committed_plans["prod"]
    ip = plan.one(IP)
    assert plan.exports["ingressIpId"].value == ip.id
    assert plan.exports["ingressIp"].value == ip.state["ipAddress"]
    assert plan.exports["gatewayName"].value == "platform"
    assert plan.exports["gatewayNamespace"].value == "traefik"
    assert plan.exports["ingressHostnames"].value == [
        listener["hostname"] for listener in https_listeners(plan)
    ]


def test_adopting_an_existing_ip_imports_it_untouched(plan_with: PlanWith) -> None:
    plan = with_ingress(plan_with, "prod", adoptIpId=ADOPTED)
    ip = plan.one(IP)
    assert ip.id == ADOPTED, "the IP is imported by its ID, not created"
    # A distinct logical name: the reserved IP is never silently swapped for the adopted one.
    assert ip.name == "prod-front-door-ip-adopted"
    assert ip.protect and ip.retain_on_delete
    # Only the zone is declared: an import whose inputs differ from the live IP fails, it never
    # modifies it.
    assert set(plain(ip.inputs)) == {"zone"}
    assert set(ip.ignore_changes) >= {"tags", "reverse"}
    annotations = values(release(plan, "traefik"))["service"]["annotations"]
    assert annotations[ingress.IP_IDS_ANNOTATION] == ADOPTED.split("/")[1]
    assert plan.exports["ingressIpId"].value == ADOPTED


def test_adopting_by_bare_uuid_uses_the_front_door_zone(plan_with: PlanWith) -> None:
    plan = with_ingress(plan_with, "prod", adoptIpId=ADOPTED.split("/")[1], zone="fr-par-2")
    ip = plan.one(IP)
    assert ip.id == "fr-par-2/" + ADOPTED.split("/")[1]
    assert ip.inputs["zone"] == "fr-par-2"
    annotations = values(release(plan, "traefik"))["service"]["annotations"]
    assert annotations[ingress.ZONE_ANNOTATION] == "fr-par-2"


def test_development_front_door_is_not_protected(plan_with: PlanWith) -> None:
    plan = plan_with(
        "dev",
        {
            "platform:ingress": {
                "domain": "example.com",
                "hostnames": ["www.dev.example.com"],
                "replicas": 1,
            },
            "platform:tls": {"acmeEmail": "platform@example.com"},
        },
        remove=("platform:dns",),
        # The hostnames a stack serves are its environment's in environments.yaml.
        environments=environments_with(
            {"dev": {"dns": {"zone": "example.com", "hostnames": ["*.dev.example.com"]}}}
        ),
    )
    ip = plan.one(IP)
    assert not ip.protect and not ip.retain_on_delete, "dev is rebuilt at will"
    traefik = values(release(plan, "traefik"))
    assert traefik["deployment"]["replicas"] == 1
    # One replica: nothing to spread, so no constraint that could hold its rolling update back.
    assert "topologySpreadConstraints" not in traefik
    assert traefik["podDisruptionBudget"]["enabled"] is False, "a PDB on one replica blocks node drains"
    gateway = plan.one(GATEWAY)
    assert (
        gateway.inputs["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-staging"
    )
    assert not plan.by_type(RECORD), "no platform:dns: DNS is managed elsewhere"


# --- Traefik -----------------------------------------------------------------------------------


def test_traefik_release_is_pinned(committed_plans: dict[str, runner.Plan]) -> None:
    traefik = release(committed_plans["prod"], "traefik")
    assert traefik.inputs["version"] == "41.3.0"
    assert traefik.inputs["repositoryOpts"]["repo"] == "https://traefik.github.io/charts"
    # By tag and digest, the version stated for the chart's version checks.
    assert values(traefik)["image"] == {"tag": f"v3.7.11@{images.digest('traefik')}"}
    assert values(traefik)["versionOverride"] == "v3.7.11"


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_traefik_installs_no_crds_of_its_own(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    """Only the Gateway provider is on: the chart's traefik.io CRDs are skipped, nothing renders a
    traefik.io object, and the Gateway API CRDs come from the program's own bundle first."""
    plan = committed_plans[stack]
    traefik = release(plan, "traefik")
    assert traefik.inputs["skipCrds"] is True
    chart_values = values(traefik)
    assert chart_values["providers"]["kubernetesCRD"] == {"enabled": False}
    assert chart_values["providers"]["kubernetesGateway"] == {"enabled": True}
    off = {"enabled": False}
    assert chart_values["ingressRoute"] == {"dashboard": off, "healthcheck": off}
    assert not {"tlsOptions", "tlsStore"} & set(chart_values)
    [bundle] = [r for r in plan.registrations if r.type == "kubernetes:yaml/v2:ConfigFile"]
    assert bundle.urn in traefik.dependencies
    # Only Traefik skips its crds/ directory: cert-manager, External Secrets and the agent need theirs.
    others = [r for r in plan.by_type(RELEASE) if r.inputs.get("chart") != "traefik"]
    assert others and all("skipCrds" not in r.inputs for r in others)


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_http_redirects_permanently_to_https_except_acme(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    web = values(release(committed_plans[stack], "traefik"))["ports"]["web"]
    assert web["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert web["allowACMEByPass"] is True


def spread(constraints: list[dict[str, Any]]) -> dict[str, tuple[str, str, dict[str, str]]]:
    """topologyKey -> (whenUnsatisfiable, nodeTaintsPolicy, the selector's labels), maxSkew 1 each."""
    assert all(c["maxSkew"] == 1 for c in constraints), constraints
    return {
        c["topologyKey"]: (c["whenUnsatisfiable"], c["nodeTaintsPolicy"], c["labelSelector"]["matchLabels"])
        for c in constraints
    }


#: The spread every replicated platform controller carries (kube.spread_constraints): soft over
#: zones (never Pending for want of a zone), hard over nodes, tainted nodes not counted.
ZONE_AND_HOST = {
    "topology.kubernetes.io/zone": ("ScheduleAnyway", "Honor"),
    "kubernetes.io/hostname": ("DoNotSchedule", "Honor"),
}


def assert_spread(constraints: list[dict[str, Any]], pod_labels: dict[str, str]) -> None:
    found = spread(constraints)
    assert {key: (when, taints) for key, (when, taints, _) in found.items()} == ZONE_AND_HOST
    assert all(selector == pod_labels for *_, selector in found.values()), found


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_replicated_traefik_spreads_over_zones_and_nodes(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    """prod (two zones) and tooling (one) both run two replicas: the same spread, whose zone rule
    is a preference, so tooling's single zone cannot leave a replica Pending."""
    traefik = values(release(committed_plans[stack], "traefik"))
    assert traefik["deployment"]["replicas"] >= 2
    assert traefik["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    assert traefik["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The chart's selector labels on Traefik's pods (traefik.labelselector: <release>-<namespace>).
    assert_spread(
        traefik["topologySpreadConstraints"],
        {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-traefik"},
    )


def test_traefik_metrics_are_scraped_inside_the_cluster_only(committed_plans: dict[str, runner.Plan]) -> None:
    traefik = values(release(committed_plans["prod"], "traefik"))
    assert labels.TRAEFIK_METRICS_PORT == 9100
    metrics_port = traefik["ports"]["metrics"]
    assert metrics_port["port"] == labels.TRAEFIK_METRICS_PORT
    # Not on the LoadBalancer Service (the chart's default for this port, kept explicit here).
    assert metrics_port["expose"] == {"default": False}
    prometheus = traefik["metrics"]["prometheus"]
    # traefik_service_requests_total{code,service,...} and the latency histogram need service labels.
    assert (prometheus["entryPoint"], prometheus["addServicesLabels"]) == ("metrics", True)
    assert (prometheus["addEntryPointsLabels"], prometheus["addRoutersLabels"]) == (True, False)
    # The chart's ClusterIP metrics Service carries the agent's scrape annotations, for port 9100.
    assert prometheus["service"] == {"enabled": True, "annotations": labels.scrape(9100)}
    assert labels.scrape(9100)["k8s.grafana.com/metrics.portNumber"] == "9100"
    assert "k8s.grafana.com/scrape" not in traefik["service"]["annotations"], "not on the LoadBalancer"


def test_traefik_runs_restricted_and_logs_access(committed_plans: dict[str, runner.Plan]) -> None:
    traefik = values(release(committed_plans["prod"], "traefik"))
    assert traefik["resources"]["requests"] and traefik["resources"]["limits"]
    assert traefik["podSecurityContext"]["runAsNonRoot"] is True
    assert traefik["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert traefik["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert traefik["accessLog"]["enabled"] is True
    assert traefik["accessLog"]["fields"]["headers"]["defaultMode"] == "drop"


def test_routes_only_through_the_gateway_api(committed_plans: dict[str, runner.Plan]) -> None:
    traefik = values(release(committed_plans["prod"], "traefik"))
    assert traefik["providers"]["kubernetesGateway"]["enabled"] is True
    # IngressRoute / Ingress would let any namespace claim any hostname, bypassing allowedRoutes.
    assert traefik["providers"]["kubernetesCRD"]["enabled"] is False
    assert traefik["providers"]["kubernetesIngress"]["enabled"] is False
    # The program owns GatewayClass and Gateway.
    assert traefik["gateway"]["enabled"] is False
    assert traefik["gatewayClass"]["enabled"] is False


def test_production_rejects_a_single_traefik_replica(plan_with: PlanWith) -> None:
    from program.config import ConfigError

    with pytest.raises(ConfigError, match=r"platform:ingress\.replicas: must be >= 2 for role production"):
        with_ingress(plan_with, "prod", replicas=1)


# --- the platform Gateway ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_every_https_listener_has_a_hostname_and_a_certificate(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    listeners = https_listeners(plan)
    assert listeners, f"{stack} serves at least one hostname"
    secrets = set()
    for listener in listeners:
        assert listener["hostname"], listener
        assert listener["port"] == ingress.WEBSECURE_PORT
        assert listener["tls"]["mode"] == "Terminate"
        refs = listener["tls"]["certificateRefs"]
        assert len(refs) == 1 and refs[0]["kind"] == "Secret" and refs[0]["name"]
        secrets.add(refs[0]["name"])
    assert len(secrets) == len(listeners), "each hostname has its own certificate Secret"
    names = [listener["name"] for listener in gateway_spec(plan)["listeners"]]
    assert len(names) == len(set(names)), "listener names are unique (a CEL rule the offline validator skips)"


def test_gateway_serves_config_app_and_argocd_hostnames(committed_plans: dict[str, runner.Plan]) -> None:
    prod = {listener["hostname"] for listener in https_listeners(committed_plans["prod"])}
    assert prod == {"example.com", "www.example.com", "newsletter.example.com"}
    tooling = {listener["hostname"] for listener in https_listeners(committed_plans["tooling"])}
    assert tooling == {"argocd.tooling.example.com"}


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_routes_admitted_only_from_labelled_namespaces(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    spec = gateway_spec(committed_plans[stack])
    http = next(listener for listener in spec["listeners"] if listener["protocol"] == "HTTP")
    assert http["port"] == ingress.WEB_PORT
    assert http["allowedRoutes"]["namespaces"] == {"from": "Same"}, "only ACME challenge routes on HTTP"
    owners = {"www.example.com": "website", "newsletter.example.com": "newsletter"}
    # Argo CD's hostname, and the apex whose redirect route lives next to the Gateway.
    platform = {"argocd.tooling.example.com", "example.com"}
    for listener in https_listeners(committed_plans[stack]):
        namespaces = listener["allowedRoutes"]["namespaces"]
        assert namespaces["from"] == "Selector"
        match = namespaces["selector"]["matchLabels"]
        hostname = listener["hostname"]
        if hostname in owners:
            # Only the owning app's namespace: another app cannot claim this hostname.
            assert match == {labels.APP_NAMESPACE: "true", labels.APP: owners[hostname]}
        else:
            assert hostname in platform
            assert match == {labels.PLATFORM_NAMESPACE: "true"}


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_gateway_names_the_configured_issuer(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    gateway = committed_plans[stack].one(GATEWAY)
    metadata = gateway.inputs["metadata"]
    assert metadata["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-production"
    assert (metadata["name"], metadata["namespace"]) == ("platform", "traefik")
    assert (
        gateway.inputs["spec"]["gatewayClassName"]
        == committed_plans[stack].one(GATEWAY_CLASS).inputs["metadata"]["name"]
    )
    assert committed_plans[stack].one(GATEWAY_CLASS).inputs["spec"]["controllerName"] == (
        "traefik.io/gateway-controller"
    )


def test_wildcard_listener_names_are_valid(plan_with: PlanWith) -> None:
    config = runner.read_stack_config("prod")
    ingress_settings = {**config["platform:ingress"], "hostnames": ["*.apps.example.com"]}
    tls = {**config["platform:tls"], "dns01": True}
    # The wildcard is prod's in environments.yaml, next to the names prod already serves.
    dns = environments_document()["environments"]["prod"]["dns"]
    serving = environments_with(
        {"prod": {"dns": {**dns, "hostnames": [*dns["hostnames"], "*.apps.example.com"]}}}
    )
    plan = plan_with(
        "prod", {"platform:ingress": ingress_settings, "platform:tls": tls}, environments=serving
    )
    wildcard = next(item for item in https_listeners(plan) if item["hostname"] == "*.apps.example.com")
    assert wildcard["name"] == "https-wildcard.apps.example.com"
    assert wildcard["tls"]["certificateRefs"][0]["name"] == "wildcard.apps.example.com-tls"
    records = {r.inputs["name"] for r in plan.by_type(RECORD)}
    assert "*.apps" in records


# --- namespaces and providers ----------------------------------------------------------------


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_platform_namespaces_carry_pod_security_and_the_platform_label(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    namespaces = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
        for r in committed_plans[stack].by_type(NAMESPACE)
        if "front-door" in r.name
    }
    assert set(namespaces) == {"traefik", "cert-manager"}
    for namespace_labels in namespaces.values():
        assert namespace_labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert namespace_labels[labels.PLATFORM_NAMESPACE] == "true"


@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_every_kubernetes_resource_has_the_cluster_provider(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    plan = committed_plans[stack]
    # The cluster's own provider (KapsuleCluster names it "<environment>-k8s").
    cluster_provider = next(
        r for r in plan.by_type("pulumi:providers:kubernetes") if r.name == f"{stack}-k8s"
    )
    front_door = [
        r for r in plan.registrations if "-front-door" in r.name and r.type.startswith("kubernetes:")
    ]
    assert len(front_door) >= 8
    for reg in front_door:
        assert reg.provider_urn == cluster_provider.urn, f"{reg.type} {reg.name} has no explicit provider"


# --- DNS -----------------------------------------------------------------------------------------


def test_one_a_record_per_hostname_pointing_at_the_reserved_ip(
    committed_plans: dict[str, runner.Plan],
) -> None:
    plan = committed_plans["prod"]
    address = plan.one(IP).state["ipAddress"]
    records = {r.inputs["name"]: r for r in plan.by_type(RECORD)}
    assert set(records) == {"", "www", "newsletter"}
    for record in records.values():
        assert record.inputs["type"] == "A"
        assert record.inputs["dnsZone"] == "example.com"
        assert record.inputs["data"] == address
        assert plan.one(IP).urn in record.dependencies


def test_cutover_rehearsal_uses_dns01_without_touching_records(plan_with: PlanWith) -> None:
    config = runner.read_stack_config("prod")
    plan = plan_with(
        "prod",
        {
            "platform:tls": {**config["platform:tls"], "dns01": True},
            "platform:dns": {**config["platform:dns"], "records": False},
        },
    )
    assert not plan.by_type(RECORD), "the old site's records keep serving during the rehearsal"
    for issuer in plan.by_type(CLUSTER_ISSUER):
        assert any("dns01" in solver for solver in plain(issuer.inputs["spec"])["acme"]["solvers"])


def test_external_dns_means_no_records(plan_with: PlanWith) -> None:
    plan = plan_with("prod", {"platform:dns": {"provider": "external"}})
    assert not plan.by_type(RECORD)


def test_apex_redirects_permanently_to_www(committed_plans: dict[str, runner.Plan]) -> None:
    plan = committed_plans["prod"]
    [route] = [r for r in plan.by_type(HTTP_ROUTE) if "front-door" in r.name]
    spec = plain(route.inputs["spec"])
    listener = next(item for item in https_listeners(plan) if item["hostname"] == "example.com")
    assert route.inputs["metadata"]["namespace"] == "traefik"
    assert spec["hostnames"] == ["example.com"]
    assert spec["parentRefs"][0]["sectionName"] == listener["name"]
    [rule] = spec["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestRedirect",
            "requestRedirect": {"scheme": "https", "hostname": "www.example.com", "statusCode": 301},
        }
    ]
    assert {plan.one(CONFIG_FILE).urn, plan.one(GATEWAY).urn} <= set(route.dependencies)


def test_record_names_are_relative_to_the_zone() -> None:
    assert record_name("example.com", "example.com") == ""
    assert record_name("argocd.tooling.example.com", "example.com") == "argocd.tooling"
    assert record_name("*.apps.example.com", "example.com") == "*.apps"
    with pytest.raises(ValueError, match="not in the DNS zone"):
        record_name("example.org", "example.com")


def test_a_hostname_is_either_an_app_or_a_platform_hostname() -> None:
    with pytest.raises(ValueError, match="both an app and a platform hostname"):
        ingress.listeners(["a.example.com"], ["a.example.com"])
    assert [item.hostname for item in ingress.listeners(["a.example.com", "a.example.com"], [])] == [
        "a.example.com"
    ]


# --- upstream schemas ----------------------------------------------------------------------------

needs_schemas = pytest.mark.skipif(
    not schemas.schemas_available(),
    reason=f"upstream schemas not found at {schemas.schemas_dir()} (../shared/schemas is absent in a "
    "fresh clone; CI has it)",
)


@pytest.mark.schemas
@needs_schemas
@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_schemas_front_door_custom_resources(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    plan = committed_plans[stack]
    kinds = (GATEWAY, GATEWAY_CLASS, HTTP_ROUTE, CLUSTER_ISSUER, CERTIFICATE)
    checked = [r for r in plan.registrations if r.type in kinds]
    assert {r.type for r in checked} >= {GATEWAY, GATEWAY_CLASS, CLUSTER_ISSUER}
    for reg in checked:
        assert schemas.validate_custom_resource(k8s_object(reg)) == [], f"{reg.type} {reg.name}"


@pytest.mark.schemas
@needs_schemas
@pytest.mark.parametrize("stack", FRONT_DOOR_STACKS)
def test_schemas_front_door_helm_values(committed_plans: dict[str, runner.Plan], stack: str) -> None:
    plan = committed_plans[stack]
    for chart in ("traefik", "cert-manager"):
        assert schemas.validate_helm_values(chart, values(release(plan, chart))) == [], chart


@pytest.mark.schemas
@needs_schemas
def test_schemas_catch_what_the_front_door_must_not_send(committed_plans: dict[str, runner.Plan]) -> None:
    """The checks above are not vacuous: pre-v34 redirect syntax and a listener without a port fail."""
    traefik = values(release(committed_plans["prod"], "traefik"))
    traefik["ports"]["web"]["redirectTo"] = {"port": "websecure"}
    assert schemas.validate_helm_values("traefik", traefik)
    # expose is a map of Service names since the chart's v28 layout: a bare boolean is refused.
    traefik = values(release(committed_plans["prod"], "traefik"))
    traefik["ports"]["metrics"]["expose"] = False
    assert schemas.validate_helm_values("traefik", traefik)
    gateway = k8s_object(committed_plans["prod"].one(GATEWAY))
    del gateway["spec"]["listeners"][0]["port"]
    assert schemas.validate_custom_resource(gateway)


def test_app_hostnames_beyond_one_gateway_shard_onto_more_gateways(
    plan_with: Callable[..., runner.Plan], stack_config: Callable[[str], dict[str, Any]]
) -> None:
    """A Gateway holds at most 64 listeners (the CRD's maxItems): 100 apps need a second Gateway,
    and every app's route attaches to the Gateway that holds its hostname's listener."""
    raw = stack_config("prod")
    template = raw["platform:apps"][0]
    raw["platform:apps"] = [
        {**template, "name": f"app{i}", "hostname": f"app{i}.example.com", "database": None, "migrate": None}
        for i in range(100)
    ]
    raw["platform:gitops"]["imageUpdates"] = []
    plan = plan_with("prod", raw)
    gateways = {g.inputs["metadata"]["name"]: g.inputs["spec"]["listeners"] for g in plan.by_type(GATEWAY)}
    assert set(gateways) == {"platform", "platform-2"}
    assert all(len(listeners) <= ingress.MAX_LISTENERS for listeners in gateways.values())
    assert [item["protocol"] for item in gateways["platform"]].count("HTTP") == 1
    assert all(item["protocol"] == "HTTPS" for item in gateways["platform-2"])
    # 100 apps + the apex redirect, each once, over both Gateways.
    hostnames = [
        item["hostname"] for listeners in gateways.values() for item in listeners if "hostname" in item
    ]
    assert len(hostnames) == len(set(hostnames)) == 101
    where = {
        item["hostname"]: (name, item["name"])
        for name, items in gateways.items()
        for item in items
        if "hostname" in item
    }
    for route in plan.by_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"):
        for parent in route.inputs["spec"]["parentRefs"]:
            (hostname,) = route.inputs["spec"]["hostnames"]
            assert (parent["name"], parent["sectionName"]) == where[hostname], hostname

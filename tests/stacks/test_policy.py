"""policy/: every rule fails on a bad case and passes on a good one, offline and through the
CrossGuard adapters; the pack itself starts and answers the analyzer protocol."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyProviderResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from offline import runner
from policy import crossguard, rules
from policy.rules import ResourceView, StackView
from program import environments
from scw_platform import labels

ROOT = Path(__file__).resolve().parents[2]
P = "urn:pulumi:test::platform::"
K8S = P + "pulumi:providers:kubernetes::prod-k8s"
OTHER_K8S = P + "pulumi:providers:kubernetes::tooling-k8s"


def res(type_: str, name: str, inputs: dict[str, Any] | None = None, **options: Any) -> ResourceView:
    defaults: dict[str, Any] = {"retain_on_delete": False}
    if type_.startswith("kubernetes:"):
        defaults["provider"] = K8S
    return ResourceView(
        urn=P + f"{type_}::{name}", type=type_, name=name, inputs=inputs or {}, **(defaults | options)
    )


def stack(*resources: ResourceView, role: str | None = "production") -> StackView:
    return StackView(resources=tuple(resources), role=role)


def violations(rule: str, view: StackView) -> list[rules.Violation]:
    return rules.RULES_BY_NAME[rule].evaluate(view)


# --- Builders -------------------------------------------------------------------------------

RDB = "scaleway:databases/instance:Instance"


def rdb(**changes: Any) -> ResourceView:
    inputs = {
        "engine": "PostgreSQL-16",
        "privateNetwork": {"pnId": "fr-par/pn", "enableIpam": True},
        "disableBackup": False,
        "backupScheduleFrequency": 24,
        "backupScheduleRetention": 14,
        "encryptionAtRest": True,
        "password": "[secret]",
    }
    protect = changes.pop("protect", True)
    inputs.update(changes)
    return res(RDB, "db", {k: v for k, v in inputs.items() if v is not None}, protect=protect)


def cluster(**changes: Any) -> ResourceView:
    return res("scaleway:kubernetes/cluster:Cluster", "c", {"privateNetworkId": "fr-par/pn", **changes})


def acl(rules_: list[dict[str, str]], depends_on: ResourceView | None = None) -> ResourceView:
    deps = (depends_on.urn,) if depends_on else ()
    return res("scaleway:kubernetes/acl:Acl", "acl", {"aclRules": rules_}, dependencies=deps)


def k8s(kind: str, name: str, body: dict[str, Any], api: str = "v1", **options: Any) -> ResourceView:
    group, _, version = api.rpartition("/")
    token = f"kubernetes:{group or 'core'}/{version}:{kind}"
    return res(token, name, {"apiVersion": api, "kind": kind, **body}, **options)


def deployment(image: str, kind: str = "Deployment") -> ResourceView:
    pod = {
        "containers": [{"name": "app", "image": image}],
        "initContainers": [{"name": "init", "image": "busybox:1.37"}],
    }
    if kind == "CronJob":
        spec: dict[str, Any] = {"jobTemplate": {"spec": {"template": {"spec": pod}}}}
    elif kind == "Pod":
        spec = pod
    else:
        spec = {"template": {"spec": pod}}
    return k8s(kind, "web", {"metadata": {"name": "web", "namespace": "web"}, "spec": spec}, api="apps/v1")


def app_namespace(labels: dict[str, str] | None = None, provider: str = K8S) -> ResourceView:
    base = {rules.APP_NAMESPACE_LABEL: "true", rules.PSS_ENFORCE_LABEL: "restricted"}
    return k8s(
        "Namespace",
        "web-ns",
        {"metadata": {"name": "web", "labels": base | (labels or {})}},
        provider=provider,
    )


def network_policy(spec: dict[str, Any], provider: str = K8S) -> ResourceView:
    return k8s(
        "NetworkPolicy",
        "deny",
        {"metadata": {"name": "default-deny", "namespace": "web"}, "spec": spec},
        api="networking.k8s.io/v1",
        provider=provider,
    )


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def pod(namespace: str, *, privileged: bool = False, limits: dict[str, str] | None = None) -> ResourceView:
    container: dict[str, Any] = {
        "name": "c",
        "image": "busybox:1.37",
        "securityContext": {"privileged": privileged},
    }
    if limits is not None:
        container["resources"] = {"limits": limits}
    return k8s(
        "Pod", "p", {"metadata": {"name": "p", "namespace": namespace}, "spec": {"containers": [container]}}
    )


def ci_namespace() -> ResourceView:
    return k8s("Namespace", "ci-ns", {"metadata": {"name": "ci"}})


def ci_policy(spec: dict[str, Any]) -> ResourceView:
    return k8s(
        "NetworkPolicy",
        "ci-deny",
        {"metadata": {"name": "default-deny", "namespace": "ci"}, "spec": spec},
        api="networking.k8s.io/v1",
    )


def platform_namespace(name: str = "traefik", labels_: dict[str, str] | None = None) -> ResourceView:
    return k8s("Namespace", f"{name}-ns", {"metadata": {"name": name, "labels": labels_ or {}}})


def platform_policy(
    spec: dict[str, Any], namespace: str = "traefik", name: str = "default-deny"
) -> ResourceView:
    return k8s(
        "NetworkPolicy",
        f"{namespace}-{name}",
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec},
        api="networking.k8s.io/v1",
    )


#: An allow like the platform's (the webhook's port from anywhere): not a default deny.
WEBHOOK_ALLOW = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 10250}]}]}


def ci_release(values: dict[str, Any]) -> ResourceView:
    return res(
        "kubernetes:helm.sh/v3:Release",
        "runner",
        {"chart": "x", "version": "1.0.0", "namespace": "ci", "values": values},
    )


def canary_route(
    *, weights: tuple[int, int] = (100, 0), writer: str | None = "argoproj.io/Rollout/web"
) -> list[ResourceView]:
    """A canary app's HTTPRoute: two backends, the Rollout named as the writer of the weights."""
    metadata: dict[str, Any] = {"name": "web-rollout", "namespace": "web"}
    if writer is not None:
        metadata["annotations"] = {"platform.scw/traffic-writer": writer}
    refs = [
        {"name": "web-stable", "port": 8080, "weight": weights[0]},
        {"name": "web-canary", "port": 8080, "weight": weights[1]},
    ]
    spec = {"hostnames": ["web.example.com"], "rules": [{"backendRefs": refs}]}
    return [k8s("HTTPRoute", "route", {"metadata": metadata, "spec": spec}, "gateway.networking.k8s.io/v1")]


def canary_backends() -> list[ResourceView]:
    """The Services and the AnalysisTemplate the program declares beside a canary route."""
    return [
        *(
            k8s("Service", name, {"metadata": {"name": name, "namespace": "web"}})
            for name in ("web-stable", "web-canary")
        ),
        k8s(
            "AnalysisTemplate",
            "analysis",
            {"metadata": {"name": "web-canary", "namespace": "web"}},
            "argoproj.io/v1alpha1",
        ),
    ]


def helm(
    version: Any = "41.3.0", values: dict[str, Any] | None = None, chart: str = "traefik"
) -> ResourceView:
    inputs: dict[str, Any] = {"chart": chart, "values": values or {}}
    if version is not None:
        inputs["version"] = version
    return res("kubernetes:helm.sh/v3:Release", chart, inputs)


TRAEFIK_PORTS: dict[str, dict[str, Any]] = {
    "web": {
        "port": 8000,
        "exposedPort": 80,
        "http": {"redirections": {"entryPoint": {"to": "websecure", "scheme": "https"}}},
    },
    "websecure": {"port": 8443, "exposedPort": 443},
}


def gateway(listeners: list[dict[str, Any]]) -> ResourceView:
    return k8s(
        "Gateway",
        "gw",
        {"metadata": {"name": "public", "namespace": "traefik"}, "spec": {"listeners": listeners}},
        api="gateway.networking.k8s.io/v1",
    )


HTTPS = {"name": "a", "protocol": "HTTPS", "port": 8443, "tls": {"certificateRefs": [{"name": "a-tls"}]}}


# --- One failing and one passing case per rule ----------------------------------------------

UPDATER = k8s(
    "ImageUpdater", "u", {"metadata": {"name": "dev"}}, api="argocd-image-updater.argoproj.io/v1alpha1"
)

SHA = "sha256:" + "c" * 64


def images_ref(name: str) -> str:
    from scw_platform import images

    return images.ref(name)


def workload(*images_: str, kind: str = "Deployment") -> ResourceView:
    """A pod-spec object whose containers (the last one an init container) run ``images_``."""
    *main, init = images_
    pod_spec = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(main)],
        "initContainers": [{"name": "init", "image": init}],
    }
    spec = pod_spec if kind == "Pod" else {"template": {"spec": pod_spec}}
    return k8s(kind, "w", {"metadata": {"name": "w", "namespace": "web"}, "spec": spec}, api="apps/v1")


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}: Helm values from dotted paths."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def pinned_chart(chart: str, version: str, **extra: Any) -> ResourceView:
    """A release of ``chart`` whose values pin every image scw_platform/data/images.yaml lists for it
    at its recorded value (a gap's path left out: the rule admits it as recorded)."""
    from scw_platform import images

    flat: dict[str, Any] = {}
    for image in images.for_chart(chart):
        assert image.chart is not None
        for vp in image.chart.values:
            value = image.value_for(vp)
            if value is not None:
                flat[vp.path] = value
    flat.update(extra)
    return helm(version, nested(flat), chart=chart)


Case = tuple[StackView, StackView]

IAM_APP = "scaleway:iam/application:Application"
IAM_KEY = "scaleway:iam/apiKey:ApiKey"
IAM_POLICY = "scaleway:iam/policy:Policy"
TOOLING_REFERENCE = res("pulumi:pulumi:StackReference", "organization/platform/tooling")
#: Scaleway resources of the stack's own environment, which decide its environment.
PROD_VPC = res("scaleway:network/vpc:Vpc", "prod-vpc", {"tags": ["environment=prod", "role=production"]})
PROD_PN = res("scaleway:network/privateNetwork:PrivateNetwork", "prod-pn", {"tags": ["environment=prod"]})


def identity(name: str, environment: str, sets: list[str]) -> tuple[ResourceView, ...]:
    """An IAM application, its policy and its API key, as a ScopedIdentity declares them."""
    app = res(IAM_APP, f"{name}-app", {"name": name, "tags": [f"environment={environment}"]})
    policy = res(
        IAM_POLICY,
        f"{name}-policy",
        {"applicationId": "fr-par/app", "rules": [{"projectIds": ["p"], "permissionSetNames": sets}]},
        dependencies=(app.urn,),
    )
    key = res(IAM_KEY, f"{name}-key", {"applicationId": "fr-par/app"}, dependencies=(app.urn,))
    return app, policy, key


def pull_secret(*sources: ResourceView) -> ResourceView:
    return k8s(
        "Secret",
        "app-website-registry-pull",
        {
            "metadata": {"name": "registry-pull", "namespace": "website"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "[secret]"},
        },
        dependencies=tuple(source.urn for source in sources),
    )


PROD_PULL = identity("prod-registry-pull", "prod", ["ContainerRegistryReadOnly"])
DEV_PULL = identity("dev-registry-pull", "dev", ["ContainerRegistryReadOnly"])
PROD_PUSH = identity("prod-registry-push", "prod", ["ContainerRegistryFullAccess"])


def object_storage_policy(sets: list[str], *, application: bool = True) -> ResourceView:
    principal = {"applicationId": "fr-par/app"} if application else {"userId": "u"}
    return res(IAM_POLICY, "p", {**principal, "rules": [{"projectIds": ["p"], "permissionSetNames": sets}]})


# stack-budget: 3..9 PRO2-M nodes, at most 2935.21 EUR/month (prices: scw_platform/data/scaleway.yaml).
_APPS_POOL = res(
    "scaleway:kubernetes/pool:Pool",
    "apps",
    {"nodeType": "PRO2-M", "autoscaling": True, "minSize": 3, "maxSize": 9, "publicIpDisabled": True},
)

CASES: dict[str, list[Case]] = {
    "iam-no-object-storage-full-access": [
        (
            stack(object_storage_policy(["ObjectStorageFullAccess"])),
            stack(object_storage_policy(["ObjectStorageObjectsRead", "ObjectStorageObjectsWrite"])),
        ),
        (
            stack(object_storage_policy(["ObjectStorageObjectsRead", "ObjectStorageBucketPolicyFullAccess"])),
            stack(object_storage_policy(["ObjectStorageObjectsRead"])),
        ),
        # A person's policy is not the program's: only IAM applications (job identities) count.
        (
            stack(object_storage_policy(["ObjectStorageFullAccess"])),
            stack(object_storage_policy(["ObjectStorageFullAccess"], application=False)),
        ),
    ],
    "registry-pull-key-own-environment": [
        # The old shape: the key read from tooling's stack, shared by every environment.
        (
            stack(PROD_VPC, TOOLING_REFERENCE, pull_secret(TOOLING_REFERENCE)),
            stack(PROD_VPC, TOOLING_REFERENCE, *PROD_PULL, pull_secret(TOOLING_REFERENCE, PROD_PULL[2])),
        ),
        # Another environment's key in prod's pull Secret.
        (
            stack(PROD_VPC, PROD_PN, *DEV_PULL, pull_secret(DEV_PULL[2])),
            stack(PROD_VPC, PROD_PN, *PROD_PULL, pull_secret(PROD_PULL[2])),
        ),
        # A key that may write the registry is no pull key.
        (
            stack(PROD_VPC, *PROD_PUSH, pull_secret(PROD_PUSH[2])),
            stack(PROD_VPC, *PROD_PUSH, *PROD_PULL, pull_secret(PROD_PULL[2])),
        ),
    ],
    "rdb-private-endpoint-only": [
        (stack(rdb(loadBalancer={})), stack(rdb())),
        (stack(rdb(privateNetwork=None)), stack(rdb())),
    ],
    "rdb-backups-production": [
        (stack(rdb(backupScheduleRetention=3)), stack(rdb(backupScheduleRetention=7))),
        (stack(rdb(disableBackup=True)), stack(rdb(disableBackup=True), role="development")),
        (stack(rdb(backupScheduleRetention=None)), stack(rdb())),
    ],
    "rdb-encrypted-production": [(stack(rdb(encryptionAtRest=False)), stack(rdb()))],
    "kapsule-private-network": [(stack(cluster(privateNetworkId="")), stack(cluster()))],
    "kapsule-pool-no-public-ip-production": [
        (
            stack(res("scaleway:kubernetes/pool:Pool", "p", {"publicIpDisabled": False})),
            stack(res("scaleway:kubernetes/pool:Pool", "p", {"publicIpDisabled": True})),
        ),
        (
            stack(res("scaleway:kubernetes/pool:Pool", "p", {})),
            stack(res("scaleway:kubernetes/pool:Pool", "p", {}), role="development"),
        ),
    ],
    "kapsule-acl-not-world": [
        (stack(acl([{"ip": "0.0.0.0/0", "description": "x"}])), stack(acl([{"ip": "203.0.113.0/28"}]))),
        (stack(acl([])), stack(acl([{"ip": "198.51.100.7/32"}]))),
        (stack(acl([{"ip": "not-an-ip"}])), stack(acl([{"ip": "198.51.100.7/32"}]))),
    ],
    "kapsule-acl-required-production": [
        (stack(cluster()), stack(cluster(), acl([{"ip": "203.0.113.0/28"}], depends_on=cluster()))),
    ],
    "stateful-resources-protected": [
        (stack(rdb(protect=False)), stack(rdb())),
        (
            stack(res("scaleway:registry/namespace:Namespace", "r", {"isPublic": False}), role="tooling"),
            stack(res("scaleway:registry/namespace:Namespace", "r", {"isPublic": False}), role="development"),
        ),
        (
            stack(res("scaleway:loadbalancers/ip:Ip", "ip", {})),
            stack(res("scaleway:loadbalancers/ip:Ip", "ip", {}, protect=True)),
        ),
    ],
    "ingress-ip-retained-on-delete": [
        (
            stack(res("scaleway:loadbalancers/ip:Ip", "ip", {}, protect=True)),
            stack(res("scaleway:loadbalancers/ip:Ip", "ip", {}, protect=True, retain_on_delete=True)),
        ),
    ],
    "registry-namespace-private": [
        (
            stack(res("scaleway:registry/namespace:Namespace", "r", {"isPublic": True})),
            stack(res("scaleway:registry/namespace:Namespace", "r", {"isPublic": False})),
        ),
    ],
    "iam-policy-project-scoped": [
        (
            stack(
                res(
                    "scaleway:iam/policy:Policy",
                    "p",
                    {"rules": [{"organizationId": "o", "permissionSetNames": ["X"]}]},
                )
            ),
            stack(
                res(
                    "scaleway:iam/policy:Policy",
                    "p",
                    {"rules": [{"projectIds": ["p"], "permissionSetNames": ["X"]}]},
                )
            ),
        ),
        (
            stack(
                res(
                    "scaleway:iam/policy:Policy",
                    "p",
                    {"rules": [{"projectIds": ["p"], "permissionSetNames": ["AllProductsFullAccess"]}]},
                )
            ),
            stack(
                res(
                    "scaleway:iam/policy:Policy",
                    "p",
                    {"rules": [{"projectIds": ["p"], "permissionSetNames": ["ContainerRegistryReadOnly"]}]},
                )
            ),
        ),
    ],
    "kubernetes-provider-kubeconfig-secret": [
        (
            stack(res("pulumi:providers:kubernetes", "k", {"kubeconfig": "apiVersion: v1\nkind: Config"})),
            stack(res("pulumi:providers:kubernetes", "k", {"kubeconfig": "[secret]"})),
        ),
    ],
    "kubernetes-explicit-provider": [
        (
            stack(k8s("Namespace", "ns", {"metadata": {"name": "a"}}, provider="")),
            stack(k8s("Namespace", "ns", {"metadata": {"name": "a"}})),
        ),
        (
            stack(k8s("Namespace", "ns", {}, provider=P + "pulumi:providers:kubernetes::default_4_34_2")),
            stack(k8s("Namespace", "ns", {})),
        ),
    ],
    "helm-chart-version-pinned": [
        (stack(helm("^41.0.0")), stack(helm("41.3.0"))),
        (stack(helm(None)), stack(helm("v1.21.1"))),
        (stack(helm("41.x")), stack(helm("10.1.1"))),
        (stack(helm("")), stack(helm("1.2.4"))),
    ],
    "container-image-tag-pinned": [
        (
            stack(deployment("rg.fr-par.scw.cloud/acme/web:latest")),
            stack(deployment("rg.fr-par.scw.cloud/acme/web:1.4.2")),
        ),
        (stack(deployment("localhost:5000/web")), stack(deployment("localhost:5000/web:2"))),
        (
            stack(deployment("web", kind="CronJob")),
            stack(deployment("web@sha256:" + "a" * 64, kind="CronJob")),
        ),
        (stack(deployment("web:latest", kind="Pod")), stack(deployment("web:1", kind="Pod"))),
    ],
    "helm-values-image-not-latest": [
        (stack(helm(values={"image": {"tag": "latest"}})), stack(helm(values={"image": {"tag": "v3.7.11"}}))),
        (
            stack(helm(values={"server": {"sidecars": [{"image": "busybox:latest"}]}})),
            stack(helm(values={"server": {"sidecars": [{"image": "busybox:1.37"}]}})),
        ),
    ],
    "platform-images-by-digest-production": [
        # A tag alone, in a container and in an init container.
        (
            stack(workload("web:1", f"busybox:1.37@{SHA}")),
            stack(workload(f"web:1@{SHA}", f"busybox:1.37@{SHA}")),
        ),
        (
            stack(workload(f"web:1@{SHA}", "busybox:1.37", kind="Pod")),
            stack(workload(f"web:1@{SHA}", f"b:1@{SHA}")),
        ),
        # A digest without its tag, and a digest that is not sha256 + 64 hex.
        (
            stack(workload(f"docker.io/library/web@{SHA}", f"b:1@{SHA}")),
            stack(workload(f"web:1@{SHA}", f"b:1@{SHA}")),
        ),
        (stack(workload("web:1@sha256:abc", f"b:1@{SHA}")), stack(workload(f"web:1@{SHA}", f"b:1@{SHA}"))),
        # Development and tooling are not held to it.
        (
            stack(workload("web:1", "busybox:1.37")),
            stack(workload("web:1", "busybox:1.37"), role="development"),
        ),
        # Chart values: every path images.yaml lists for the chart, in the chart's form.
        (
            stack(helm("v1.21.1", {"image": {"tag": "v1.21.1"}}, chart="cert-manager")),
            stack(pinned_chart("cert-manager", "v1.21.1")),
        ),
        (
            stack(pinned_chart("cert-manager", "v1.21.1", **{"webhook.image.digest": "sha256:beef"})),
            stack(pinned_chart("cert-manager", "v1.21.1")),
        ),
        (
            # A well-formed digest that is not the recorded one (stale, or another image's).
            stack(pinned_chart("cert-manager", "v1.21.1", **{"webhook.image.digest": SHA})),
            stack(pinned_chart("cert-manager", "v1.21.1")),
        ),
        (
            # The same in a pod spec: an image images.yaml records, with another digest.
            stack(workload(f"web:1@{SHA}", f"docker.io/library/busybox:1.37.0@{SHA}")),
            stack(workload(f"web:1@{SHA}", images_ref("busybox"))),
        ),
        (
            # digest-appended paths take the bare digest, not tag@digest.
            stack(
                pinned_chart("prometheus-blackbox-exporter", "11.4.0", **{"image.digest": f"v0.27.0@{SHA}"})
            ),
            stack(pinned_chart("prometheus-blackbox-exporter", "11.4.0")),
        ),
        (
            # tag-suffix paths take "<tag>@sha256:<hex>", not the bare digest nor the tag alone.
            stack(
                pinned_chart(
                    "k8s-monitoring", "3.5.6", **{"clusterMetrics.kube-state-metrics.image.tag": SHA}
                )
            ),
            stack(pinned_chart("k8s-monitoring", "3.5.6")),
        ),
        (
            stack(
                pinned_chart("k8s-monitoring", "3.5.6", **{"alloy-logs.configReloader.image.tag": "v0.91.0"})
            ),
            stack(pinned_chart("k8s-monitoring", "3.5.6")),
        ),
        (
            # An image the values turn off is not asked for (startupapicheck.enabled: false).
            stack(helm("v1.21.1", nested({"startupapicheck.enabled": True}), chart="cert-manager")),
            stack(
                helm(
                    "v1.21.1",
                    nested(
                        {
                            path: value
                            for path, value in pinned_chart("cert-manager", "v1.21.1")
                            .inputs["values"]
                            .items()
                            if path != "startupapicheck"
                        }
                        | {"startupapicheck.enabled": False}
                    ),
                    chart="cert-manager",
                )
            ),
        ),
    ],
    "app-namespace-restricted-pod-security": [
        (stack(app_namespace({rules.PSS_ENFORCE_LABEL: "baseline"})), stack(app_namespace())),
    ],
    "app-namespace-default-deny": [
        (stack(app_namespace()), stack(app_namespace(), network_policy(DENY_ALL))),
        (
            stack(app_namespace(), network_policy({"podSelector": {}, "policyTypes": ["Ingress"]})),
            stack(app_namespace(), network_policy(DENY_ALL)),
        ),
        (
            stack(app_namespace(), network_policy({**DENY_ALL, "ingress": [{}]})),
            stack(app_namespace(), network_policy(DENY_ALL)),
        ),
        (
            stack(app_namespace(), network_policy({**DENY_ALL, "podSelector": {"matchLabels": {"a": "b"}}})),
            stack(app_namespace(), network_policy(DENY_ALL)),
        ),
        # The policy must be in the same cluster as the namespace.
        (
            stack(app_namespace(), network_policy(DENY_ALL, provider=OTHER_K8S)),
            stack(app_namespace(provider=OTHER_K8S), network_policy(DENY_ALL, provider=OTHER_K8S)),
        ),
    ],
    "kubernetes-secret-values-secret": [
        (
            stack(k8s("Secret", "s", {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})),
            stack(k8s("Secret", "s", {"metadata": {"name": "s"}, "stringData": {"password": "[secret]"}})),
        ),
        (
            stack(
                k8s(
                    "Secret", "s", {"metadata": {"name": "s"}, "data": {"a": "[secret]", "b": "aHVudGVyMg=="}}
                )
            ),
            stack(k8s("Secret", "s", {"metadata": {"name": "s"}, "data": "[secret]"})),
        ),
    ],
    "gateway-listeners-tls": [
        (stack(gateway([{"name": "a", "protocol": "HTTPS", "port": 8443}])), stack(gateway([HTTPS]))),
        (
            stack(gateway([{"name": "t", "protocol": "TLS", "port": 8443, "tls": {"mode": "Terminate"}}])),
            stack(gateway([{"name": "t", "protocol": "TLS", "port": 8443, "tls": {"mode": "Passthrough"}}])),
        ),
        (
            stack(gateway([{"name": "web", "protocol": "HTTP", "port": 8080}, HTTPS])),
            stack(gateway([{"name": "web", "protocol": "HTTP", "port": 80}, HTTPS])),
        ),
        # Traefik: listener 8000 is the entry point published on 80 that redirects to HTTPS.
        (
            stack(gateway([{"name": "web", "protocol": "HTTP", "port": 8000}, HTTPS])),
            stack(
                gateway([{"name": "web", "protocol": "HTTP", "port": 8000}, HTTPS]),
                helm(values={"ports": TRAEFIK_PORTS}),
            ),
        ),
        (
            stack(
                gateway([{"name": "web", "protocol": "HTTP", "port": 8000}]),
                helm(values={"ports": {"web": {**TRAEFIK_PORTS["web"], "http": {}}}}),
            ),
            stack(
                gateway([{"name": "web", "protocol": "HTTP", "port": 8000}]),
                helm(values={"ports": TRAEFIK_PORTS}),
            ),
        ),
    ],
    "traefik-gateway-listeners-tls": [
        (
            stack(
                helm(values={"gateway": {"listeners": {"websecure": {"port": 8443, "protocol": "HTTPS"}}}})
            ),
            stack(
                helm(
                    values={
                        "gateway": {
                            "listeners": {
                                "websecure": {
                                    "port": 8443,
                                    "protocol": "HTTPS",
                                    "certificateRefs": [{"name": "c"}],
                                }
                            }
                        }
                    }
                )
            ),
        ),
        (
            stack(
                helm(
                    values={
                        "gateway": {"listeners": {"web": {"port": 8000, "protocol": "HTTP"}}},
                        "ports": {"web": {"port": 8000, "exposedPort": 80}},
                    }
                )
            ),
            stack(
                helm(
                    values={
                        "gateway": {"listeners": {"web": {"port": 8000, "protocol": "HTTP"}}},
                        "ports": TRAEFIK_PORTS,
                    }
                )
            ),
        ),
    ],
    "workload-stack-declares-nothing-in-argocd": [
        (
            stack(k8s("Secret", "c", {"metadata": {"name": "cluster-prod", "namespace": "argocd"}})),
            stack(
                k8s("Secret", "c", {"metadata": {"name": "cluster-prod", "namespace": "argocd"}}),
                role="tooling",
            ),
        ),
        (
            stack(
                k8s(
                    "Application",
                    "a",
                    {"metadata": {"name": "prod-x", "namespace": "x"}},
                    api="argoproj.io/v1alpha1",
                )
            ),
            stack(k8s("ConfigMap", "a", {"metadata": {"name": "prod-x", "namespace": "x"}})),
        ),
        (stack(UPDATER, role="development"), stack(UPDATER, role="tooling")),
    ],
    "kubernetes-objects-unique": [
        (
            stack(
                k8s("ConfigMap", "a", {"metadata": {"name": "cm", "namespace": "web"}}),
                k8s("ConfigMap", "b", {"metadata": {"name": "cm", "namespace": "web"}}),
            ),
            stack(
                k8s("ConfigMap", "a", {"metadata": {"name": "cm", "namespace": "web"}}),
                k8s("ConfigMap", "b", {"metadata": {"name": "cm", "namespace": "web"}}, provider=OTHER_K8S),
            ),
        ),
    ],
    "canary-route-single-writer": [
        # A split the program itself declares would fight the Rollout; 100/0 is the state between
        # rollouts (scw_platform.delivery, docs/delivery.md).
        (
            stack(*canary_route(weights=(90, 10)), *canary_backends()),
            stack(*canary_route(), *canary_backends()),
        ),
        (
            stack(*canary_route(writer=None), *canary_backends()),
            stack(*canary_route(writer="argoproj.io/Rollout/web"), *canary_backends()),
        ),
        (stack(*canary_route()), stack(*canary_route(), *canary_backends())),
    ],
    "no-privileged-containers": [
        (stack(pod("web", privileged=True)), stack(pod("web", privileged=False))),
        (
            stack(helm(chart="gitlab-runner", values={"runners": {"privileged": True}})),
            stack(helm(chart="gitlab-runner", values={"runners": {"privileged": False}})),
        ),
        (
            stack(
                helm(
                    chart="gitlab-runner",
                    values={"runners": {"config": "[runners.kubernetes]\n  privileged = true"}},
                )
            ),
            stack(
                helm(
                    chart="gitlab-runner",
                    values={"runners": {"config": "[runners.kubernetes]\n  privileged = false"}},
                )
            ),
        ),
    ],
    "ci-namespace-default-deny": [
        (stack(ci_namespace()), stack(ci_namespace(), ci_policy(DENY_ALL))),
        (
            stack(ci_namespace(), ci_policy({**DENY_ALL, "egress": [{}]})),
            stack(ci_namespace(), ci_policy(DENY_ALL)),
        ),
    ],
    "platform-namespace-default-deny": [
        # Labelled a platform namespace, or not labelled at all (monitoring): both are covered.
        (
            stack(platform_namespace(labels_={labels.PLATFORM_NAMESPACE: "true"})),
            stack(platform_namespace(labels_={labels.PLATFORM_NAMESPACE: "true"}), platform_policy(DENY_ALL)),
        ),
        (
            stack(platform_namespace("monitoring")),
            stack(platform_namespace("monitoring"), platform_policy(DENY_ALL, "monitoring")),
        ),
        # Allows alone are no fence; a deny in one direction is half of one.
        (
            stack(platform_namespace(), platform_policy(WEBHOOK_ALLOW, name="webhook")),
            stack(
                platform_namespace(),
                platform_policy(WEBHOOK_ALLOW, name="webhook"),
                platform_policy(DENY_ALL),
            ),
        ),
        (
            stack(platform_namespace(), platform_policy({"podSelector": {}, "policyTypes": ["Egress"]})),
            stack(platform_namespace(), platform_policy(DENY_ALL)),
        ),
        # Another namespace's deny does not count.
        (
            stack(platform_namespace("cert-manager"), platform_policy(DENY_ALL)),
            stack(platform_namespace("cert-manager"), platform_policy(DENY_ALL, "cert-manager")),
        ),
    ],
    "ci-build-pods-ephemeral-storage-limited": [
        (stack(pod("ci", limits={"memory": "1Gi"})), stack(pod("ci", limits={"ephemeral-storage": "1Gi"}))),
        (
            stack(ci_release({"runners": {"config": '[runners.kubernetes]\n  memory_limit = "1Gi"'}})),
            stack(
                ci_release({"runners": {"config": '[runners.kubernetes]\n  ephemeral_storage_limit = "1Gi"'}})
            ),
        ),
        (
            stack(ci_release({"template": {"spec": {"containers": [{"name": "runner", "resources": {}}]}}})),
            stack(
                ci_release(
                    {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "runner", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}
                                ]
                            }
                        }
                    }
                )
            ),
        ),
    ],
    # --- stack-budget (policy/budget.py; its own tests: tests/unit/test_cost.py) ---
    "stack-budget": [
        (
            replace(stack(_APPS_POOL), budget={"monthlyEur": 1000}),
            replace(stack(_APPS_POOL), budget={"monthlyEur": 3000}),
        ),
        (replace(stack(_APPS_POOL), budget={"monthlyEur": -5}), stack(_APPS_POOL)),
    ],
    # --- end of stack-budget.
}


def test_there_are_at_least_twelve_rules_and_each_has_cases() -> None:
    assert len(rules.RULES) >= 12
    assert set(CASES) == set(rules.RULES_BY_NAME), "every rule needs a failing and a passing case"


@pytest.mark.parametrize(
    ("rule", "case"),
    [(rule, i) for rule, cases in CASES.items() for i in range(len(cases))],
)
def test_rule_fails_bad_and_passes_good(rule: str, case: int) -> None:
    bad, good = CASES[rule][case]
    found = violations(rule, bad)
    assert found, f"{rule}: the bad case passed"
    assert all(v.rule == rule and v.message for v in found)
    assert violations(rule, good) == [], f"{rule}: the good case failed"


def test_unknown_role_is_treated_as_production() -> None:
    unknown = stack(res("scaleway:kubernetes/pool:Pool", "p", {"publicIpDisabled": False}), role=None)
    assert violations("kapsule-pool-no-public-ip-production", unknown)
    assert stack(role=None).effective_role == "production"


def test_unknown_values_are_not_decided() -> None:
    assert violations("helm-chart-version-pinned", stack(helm(rules.UNKNOWN))) == []
    assert rules.image_problem(rules.UNKNOWN) is None


def test_rules_needing_secrets_are_skipped_without_that_capability() -> None:
    bad = CASES["kubernetes-secret-values-secret"][0][0]
    blind = StackView(resources=bad.resources, role="production", capabilities=frozenset())
    assert violations("kubernetes-secret-values-secret", blind) == []


def test_role_from_tags_and_inventory() -> None:
    tagged = res("scaleway:network/vpc:Vpc", "v", {"tags": ["platform=platform", "role=tooling"]})
    assert rules.role_from_tags([tagged]) == "tooling"
    inventory = {"exports": {"role": "development"}, "resources": []}
    assert rules.inventory_view(inventory).role == "development"
    assert rules.inventory_view(inventory, "production").role == "production"


def test_environment_from_tags_is_the_majority_and_undecided_on_a_tie() -> None:
    dev_app = DEV_PULL[0]
    assert rules.environment_from_tags([PROD_VPC, PROD_PN, dev_app]) == "prod"
    assert rules.environment_from_tags([PROD_VPC, dev_app]) is None, "a tie decides nothing"
    assert rules.environment_from_tags([]) is None
    # Kubernetes objects' labels are not the program's environment tags.
    assert rules.environment_from_tags([pull_secret(), PROD_VPC]) == "prod"
    # Undecided, the environment check is skipped, never guessed: only the other findings remain.
    undecided = stack(PROD_VPC, *DEV_PULL, pull_secret(DEV_PULL[2]))
    assert violations("registry-pull-key-own-environment", undecided) == []


@pytest.mark.parametrize("stack_name", runner.stack_names())
def test_committed_stacks_pass_every_rule(stack_name: str, committed_plans: dict[str, runner.Plan]) -> None:
    from offline import artifacts

    inventory = json.loads(json.dumps(artifacts.inventory(committed_plans[stack_name])))
    # The role is the stack's environment's, in environments.yaml.
    environment = runner.read_stack_config(stack_name)["platform:environment"]
    role = environments.load_file().entries[environment].role
    assert committed_plans[stack_name].exports["role"].value == role
    view = rules.inventory_view(inventory, role)
    assert view.role == role
    assert rules.evaluate(view) == []


def test_the_app_namespace_label_is_the_components_label() -> None:
    """rules.py keeps its own copy (the pack must import on its own); the copy must not drift."""
    assert rules.APP_NAMESPACE_LABEL == labels.APP_NAMESPACE


def test_app_namespace_rules_look_at_the_committed_app_namespaces(
    committed_plans: dict[str, runner.Plan],
) -> None:
    """Both app-namespace rules pass on prod because they checked its two app namespaces, not
    because they matched nothing: each fails once its namespaces lose what it checks."""
    from offline import artifacts

    inventory = json.loads(json.dumps(artifacts.inventory(committed_plans["prod"])))
    view = rules.inventory_view(inventory, "production")
    pss = rules.RULES_BY_NAME["app-namespace-restricted-pod-security"]
    matched = sorted(r.metadata["name"] for r in view.resources if pss.applies(r))
    assert matched == ["newsletter", "website"]

    def flagged(rule: str, changed: StackView) -> list[str]:
        by_urn = {r.urn: r for r in changed.resources}
        return sorted(by_urn[v.urn].metadata["name"] for v in rules.RULES_BY_NAME[rule].evaluate(changed))

    baseline = tuple(
        replace(
            r,
            inputs={
                **r.inputs,
                "metadata": {**r.metadata, "labels": {**r.labels, rules.PSS_ENFORCE_LABEL: "baseline"}},
            },
        )
        if pss.applies(r)
        else r
        for r in view.resources
    )
    assert flagged(pss.name, replace(view, resources=baseline)) == ["newsletter", "website"]
    undenied = tuple(
        r for r in view.resources if not (r.type == rules.NETWORK_POLICY and rules.is_default_deny(r))
    )
    assert flagged("app-namespace-default-deny", replace(view, resources=undenied)) == [
        "newsletter",
        "website",
    ]


def test_platform_namespace_rule_looks_at_every_committed_platform_namespace(
    committed_plans: dict[str, runner.Plan],
) -> None:
    """The rule passes the committed stacks because each of their platform namespaces has its
    default deny, not because it matched nothing: without the denies, every one is flagged."""
    from offline import artifacts

    rule = rules.RULES_BY_NAME["platform-namespace-default-deny"]
    common = {"cert-manager", "external-secrets", "traefik"}
    expected = {
        # argo-rollouts: every workload cluster's canary controller (scw_platform.delivery).
        "dev": common | {"argocd-manager", "argo-rollouts"},
        "prod": common | {"argocd-manager", "argo-rollouts", "monitoring", "restore-check"},
        # "tools": a GitOps namespace (platform:gitops.namespaces).
        "tooling": common | {"argocd", "monitoring", "tools"},
    }
    for stack_name, namespaces in expected.items():
        inventory = json.loads(json.dumps(artifacts.inventory(committed_plans[stack_name])))
        view = rules.inventory_view(inventory, "production")
        assert rule.evaluate(view) == [], stack_name
        undenied = tuple(
            r for r in view.resources if not (r.type == rules.NETWORK_POLICY and rules.is_default_deny(r))
        )
        by_urn = {r.urn: r for r in view.resources}
        flagged = {by_urn[v.urn].metadata["name"] for v in rule.evaluate(replace(view, resources=undenied))}
        # App and CI namespaces have rules of their own.
        assert flagged == namespaces, stack_name


# --- CrossGuard adapters --------------------------------------------------------------------


def _options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _resource_args(view: ResourceView) -> ResourceValidationArgs:
    provider = (
        PolicyProviderResource("pulumi:providers:kubernetes", {}, view.provider, "p")
        if view.provider
        else None
    )
    props = unknown_checking_proxy(copy.deepcopy(dict(view.inputs)))
    return ResourceValidationArgs(view.type, props, view.urn, view.name, _options(view.protect), provider)


def _stack_args(view: StackView, config: dict[str, Any] | None = None) -> StackValidationArgs:
    resources = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(copy.deepcopy(dict(r.inputs))),
            r.urn,
            r.name,
            _options(r.protect),
            PolicyProviderResource("pulumi:providers:kubernetes", {}, r.provider, "p")
            if r.provider
            else None,
            None,
            [],
            {},
        )
        for r in view.resources
    }
    for r in view.resources:
        resources[r.urn].dependencies = [resources[d] for d in r.dependencies if d in resources]
    return StackValidationArgs(list(resources.values()), config)


def run_policy(
    rule: str, view: StackView, config: dict[str, Any] | None = None
) -> tuple[list[str], str | None]:
    """Run a rule's CrossGuard policy on ``view``: (violation messages, not-applicable reason)."""
    policy = {p.name: p for p in crossguard.policies()}[rule]
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(f"{urn}: {message}")

    try:
        if isinstance(policy, ResourceValidationPolicy):
            for resource in view.resources:
                policy.validate(_resource_args(resource), report)
        else:
            assert isinstance(policy, StackValidationPolicy)
            policy.validate(_stack_args(view, config), report)
    except Exception as exc:
        if type(exc).__name__ == "_NotApplicableError":
            return found, str(getattr(exc, "reason", ""))
        raise
    return found, None


def test_crossguard_pack_has_every_rule_mandatory() -> None:
    from pulumi_policy import EnforcementLevel

    policies = crossguard.policies()
    assert [p.name for p in policies] == [r.name for r in rules.RULES]
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)
    kinds = {p.name: type(p).__name__ for p in policies}
    assert kinds["rdb-private-endpoint-only"] == "ResourceValidationPolicy"
    assert kinds["rdb-backups-production"] == "StackValidationPolicy"
    assert kinds["app-namespace-default-deny"] == "StackValidationPolicy"


CROSSGUARD_BLIND = {
    "kubernetes-provider-kubeconfig-secret",
    "kubernetes-secret-values-secret",
    "ingress-ip-retained-on-delete",
}


@pytest.mark.parametrize("rule", sorted(set(CASES) - CROSSGUARD_BLIND))
def test_crossguard_adapters_agree_with_the_offline_rules(rule: str) -> None:
    for bad, good in CASES[rule]:
        # The budget reaches CrossGuard as the policy config (policy/budget.py).
        found, reason = run_policy(
            rule, bad, {"role": bad.role, **({"budget": bad.budget} if bad.budget else {})}
        )
        assert reason is None, reason
        assert found, f"{rule}: CrossGuard passed the bad case"
        found_good, _ = run_policy(
            rule, good, {"role": good.role, **({"budget": good.budget} if good.budget else {})}
        )
        assert found_good == [], f"{rule}: CrossGuard failed the good case: {found_good}"


@pytest.mark.parametrize("rule", sorted(CROSSGUARD_BLIND))
def test_crossguard_says_why_it_cannot_check_secrets_or_retain(rule: str) -> None:
    bad, _ = CASES[rule][0]
    found, reason = run_policy(rule, bad)
    assert found == []
    assert reason and "make validate" in reason


def test_crossguard_role_from_config_then_tags() -> None:
    pool = res(
        "scaleway:kubernetes/pool:Pool", "p", {"publicIpDisabled": False, "tags": ["role=development"]}
    )
    found, reason = run_policy("kapsule-pool-no-public-ip-production", stack(pool, role=None))
    assert found == [] and reason is not None and "production" in reason
    found, _ = run_policy(
        "kapsule-pool-no-public-ip-production", stack(pool, role=None), {"role": "production"}
    )
    assert found


def test_crossguard_unknown_values_do_not_crash() -> None:
    found, _ = run_policy("helm-chart-version-pinned", stack(helm(UNKNOWN_STRING_VALUE)))
    assert found == []
    assert crossguard.plain(unknown_checking_proxy({"a": [UNKNOWN_STRING_VALUE, 2.0]})) == {
        "a": [rules.UNKNOWN, 2]
    }


def test_policy_pack_serves_the_analyzer_protocol() -> None:
    """Start the pack the way the Pulumi CLI does and call it over gRPC (no Pulumi CLI here)."""
    grpc = pytest.importorskip("grpc")
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(ROOT / "policy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "platform"
            assert {p.name for p in info.policies} == set(rules.RULES_BY_NAME)
            assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}

            properties = struct_pb2.Struct()
            properties.update(
                {"engine": "PostgreSQL-16", "loadBalancer": {}, "privateNetwork": {"pnId": "x"}}
            )
            response = stub.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=RDB,
                    properties=properties,
                    urn=P + RDB + "::db",
                    name="db",
                    options=analyzer_pb2.AnalyzerResourceOptions(protect=True),
                ),
                timeout=30,
            )
            messages = {d.policyName: d.message for d in response.diagnostics}
            assert "rdb-private-endpoint-only" in messages
            assert "load_balancer" in messages["rdb-private-endpoint-only"]

            pool = struct_pb2.Struct()
            pool.update({"publicIpDisabled": False, "tags": ["role=production"]})
            stack_response = stub.AnalyzeStack(
                analyzer_pb2.AnalyzeStackRequest(
                    resources=[
                        analyzer_pb2.AnalyzerResource(
                            type="scaleway:kubernetes/pool:Pool",
                            properties=pool,
                            urn=P + "pool::p",
                            name="p",
                            options=analyzer_pb2.AnalyzerResourceOptions(),
                        )
                    ]
                ),
                timeout=30,
            )
            assert "kapsule-pool-no-public-ip-production" in {
                d.policyName for d in stack_response.diagnostics
            }
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_policy_pack_files() -> None:
    import yaml

    manifest = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    # The project's virtualenv (make setup) has pulumi-policy; the path is relative to the pack.
    assert (ROOT / "policy" / manifest["runtime"]["options"]["virtualenv"]).resolve() == ROOT / ".venv"
    main = (ROOT / "policy" / "__main__.py").read_text()
    assert "EnforcementLevel.MANDATORY" in main and "PolicyPack(" in main

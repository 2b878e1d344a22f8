"""Admission of the workloads from Git (scw_platform/workload_admission.py): every policy's CEL
compiled and evaluated with cel-python against allow and deny requests, as the API server would
(match constraints, the binding's namespace selector, match conditions, variables, validations,
messages); the platform's own hook Jobs, rendered for the committed prod stack, pass every rule;
the specs pass kubernetes-validate; bad settings are refused naming the key. An evaluation error
fails the test: it is never counted as a denial."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest
import yaml
from pydantic import ValidationError

from offline import migrations, parity, validate
from scw_platform import apps, labels
from scw_platform import workload_admission as admission
from tests import cel
from tests.harness import record

REGISTRY = "rg.fr-par.scw.cloud/acme-platform"
DIGEST = "sha256:" + "a" * 64
IMAGE = f"{REGISTRY}/website@{DIGEST}"
#: The images the hooks run that are not the app's own (offline/parity.py, offline/migrations.py).
HOOK_IMAGES = apps.HOOK_IMAGES
APPS = {
    "website": admission.WorkloadAdmissionSettings(image_registries=["ghcr.io/acme"]),
    "newsletter": admission.WorkloadAdmissionSettings(),
    "operator": admission.WorkloadAdmissionSettings(automount_service_account_token=True),
}
PROD = admission.workload_policies(
    registry_endpoint=REGISTRY, apps=APPS, require_digest=True, platform_images=HOOK_IMAGES
)
DEV = admission.workload_policies(
    registry_endpoint=REGISTRY, apps=APPS, require_digest=False, platform_images=HOOK_IMAGES
)
BINDINGS = admission.binding_specs(PROD)
APP_NAMESPACE_LABELS = labels.app_namespace("website")


# --- A small admission evaluator ---------------------------------------------------------------


# The shared evaluator (tests/cel.py), under the names these tests use.
_celpy, _program, _evaluate, _holds = cel.celpy_module, cel.program, cel.evaluate, cel.holds


GROUPS = {
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "ReplicaSet": ("apps", "replicasets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "Service": ("", "services"),
}


@dataclass(frozen=True)
class Request:
    operation: str
    object: dict[str, Any]
    old: dict[str, Any] | None = None
    namespace: str = "website"
    namespace_labels: tuple[tuple[str, str], ...] = tuple(APP_NAMESPACE_LABELS.items())
    subresource: str = ""

    @property
    def group_resource(self) -> tuple[str, str]:
        group, resource = GROUPS[self.object["kind"]]
        return group, f"{resource}/{self.subresource}" if self.subresource else resource

    def cel(self) -> dict[str, Any]:
        group, resource = GROUPS[self.object["kind"]]
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "name": self.object["metadata"]["name"],
            "resource": {"group": group, "version": "v1", "resource": resource},
            "subResource": self.subresource,
        }


def _bound(pid: str, request: Request) -> bool:
    selector = BINDINGS[pid]["matchResources"]["namespaceSelector"]["matchLabels"]
    return selector.items() <= dict(request.namespace_labels).items()


def _constrained(spec: dict[str, Any], request: Request) -> bool:
    group, resource = request.group_resource
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and request.operation in rule["operations"]
        for rule in spec["matchConstraints"]["resourceRules"]
    )


def _decide(spec: dict[str, Any], request: Request, pid: str = "") -> list[str] | None:
    """None when the policy does not apply; else the messages of the validations that fail."""
    celpy = _celpy()
    if (pid and not _bound(pid, request)) or not _constrained(spec, request):
        return None
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(request.object),
        "oldObject": celpy.json_to_cel(request.old),
        "request": celpy.json_to_cel(request.cel()),
        "namespaceObject": celpy.json_to_cel(
            {"metadata": {"name": request.namespace, "labels": dict(request.namespace_labels)}}
        ),
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


def _denials(request: Request, policies: dict[str, dict[str, Any]] = PROD) -> dict[str, list[str]]:
    decisions = {pid: _decide(spec, request, pid) for pid, spec in policies.items()}
    return {pid: failures for pid, failures in decisions.items() if failures}


# --- Objects ---------------------------------------------------------------------------------


def container(
    name: str = "web", *, image: str | None = IMAGE, probe: bool = True, **changes: Any
) -> dict[str, Any]:
    """A container that passes every rule; ``changes`` replace (None: remove) its keys."""
    found: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "ports": [{"containerPort": 8080}],
    }
    if probe:
        found["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
    found.update(changes)
    return {k: v for k, v in found.items() if v is not None}


def pod_spec(*containers: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A long-running pod spec that passes every rule; ``changes`` replace (None: remove) keys."""
    spec: dict[str, Any] = {
        "restartPolicy": "Always",
        "automountServiceAccountToken": False,
        "containers": list(containers) or [container()],
        **changes,
    }
    return {k: v for k, v in spec.items() if v is not None}


def job_spec(*containers: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return pod_spec(
        *(containers or (container("run", probe=False),)), **{"restartPolicy": "Never", **changes}
    )


def _meta(name: str, namespace: str = "website", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, **extra}


def pod(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta("web-1", **meta), "spec": spec or pod_spec()}


def workload(kind: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    group = GROUPS[kind][0]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": spec or pod_spec()}
    body: dict[str, Any] = {"template": template}
    if kind != "Job":
        body["selector"] = {"matchLabels": {"app": "web"}}
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": _meta("web", **meta), "spec": body}


def deployment(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return workload("Deployment", spec, **meta)


def cronjob(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    template = {"spec": {"template": {"spec": spec or job_spec()}}}
    body = {"schedule": "0 3 * * *", "jobTemplate": template}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta("nightly"), "spec": body}


def service(**spec: Any) -> dict[str, Any]:
    body = {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta("website"), "spec": body}


def create(obj: dict[str, Any], **options: Any) -> Request:
    return Request("CREATE", obj, **options)


def host_path(name: str = "host") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": "/var/run"}}


TOKEN_VOLUME = {
    "name": "token",
    "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]},
}
PRIVILEGED = {"privileged": True}
ADDS_A_CAPABILITY = {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
D = "spec.template.spec"
C = "spec.jobTemplate.spec.template.spec"

# --- Decisions -------------------------------------------------------------------------------

#: (request, {denying policy id: text its message contains}); {} = admitted.
CASES: dict[str, tuple[Request, dict[str, str]]] = {
    # Allowed
    "a pod that follows every rule": (create(pod()), {}),
    "a deployment that follows every rule": (create(deployment()), {}),
    "a statefulset": (create(workload("StatefulSet")), {}),
    "a daemonset": (create(workload("DaemonSet")), {}),
    "a replicaset": (create(workload("ReplicaSet")), {}),
    "a job without readiness probe": (create(workload("Job", job_spec())), {}),
    "a cronjob without readiness probe (OnFailure)": (
        create(cronjob(job_spec(restartPolicy="OnFailure"))),
        {},
    ),
    "a pod of a job (restartPolicy Never) without readiness probe": (create(pod(job_spec())), {}),
    "a job (restartPolicy OnFailure) without readiness probe": (
        create(workload("Job", job_spec(restartPolicy="OnFailure"))),
        {},
    ),
    "an image from the app's allow-list": (
        create(deployment(pod_spec(container(image=f"ghcr.io/acme/worker@{DIGEST}")))),
        {},
    ),
    "an image under a nested path of the platform registry": (
        create(deployment(pod_spec(container(image=f"{REGISTRY}/team/website:1.2.3@{DIGEST}")))),
        {},
    ),
    "no CPU limit": (
        create(
            deployment(
                pod_spec(
                    container(
                        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
                    )
                )
            )
        ),
        {},
    ),
    "a token where the app's config asks for one": (
        create(
            deployment(
                pod_spec(automountServiceAccountToken=True, volumes=[TOKEN_VOLUME]), namespace="operator"
            ),
            namespace="operator",
        ),
        {},
    ),
    "a token (unset) where the app's config asks for one": (
        create(pod(pod_spec(automountServiceAccountToken=None), namespace="operator"), namespace="operator"),
        {},
    ),
    "a deployment outside the app namespaces (not bound)": (
        create(
            deployment(pod_spec(hostNetwork=True)),
            namespace="traefik",
            namespace_labels=tuple(labels.platform_namespace().items()),
        ),
        {},
    ),
    "a violating deployment being deleted (its finalizer goes)": (
        Request(
            "UPDATE",
            deployment(pod_spec(hostNetwork=True), deletionTimestamp="2026-01-01T00:00:00Z"),
            deployment(pod_spec(hostNetwork=True), deletionTimestamp="2026-01-01T00:00:00Z"),
        ),
        {},
    ),
    "a ClusterIP service": (create(service(type="ClusterIP")), {}),
    "a service without type (ClusterIP by default)": (create(service()), {}),
    "a headless service": (create(service(clusterIP="None")), {}),
    # Images
    "a Docker Hub image": (
        create(deployment(pod_spec(container(image=f"docker.io/library/nginx:1.27@{DIGEST}")))),
        {"workloads": f"{D}.containers[name=web].image: 'docker.io/library/nginx:1.27@{DIGEST}' is not from"},
    ),
    "a short image name": (
        create(pod(pod_spec(container(image=f"nginx@{DIGEST}")))),
        {"pods": "spec.containers[name=web].image: 'nginx@"},
    ),
    "another app's allow-list": (
        create(
            deployment(pod_spec(container(image=f"ghcr.io/acme/worker@{DIGEST}")), namespace="newsletter"),
            namespace="newsletter",
        ),
        {"workloads": f"{D}.containers[name=web].image: 'ghcr.io/acme/worker"},
    ),
    "a registry path that only starts like the platform's": (
        create(deployment(pod_spec(container(image=f"{REGISTRY}-evil/website@{DIGEST}")))),
        {"workloads": f"{D}.containers[name=web].image"},
    ),
    "an allow-list host that only starts like the entry": (
        create(deployment(pod_spec(container(image=f"ghcr.io/acmeevil/x@{DIGEST}")))),
        {"workloads": f"{D}.containers[name=web].image"},
    ),
    "an init container's image": (
        create(
            deployment(
                pod_spec(
                    container(),
                    initContainers=[container("init", image=f"quay.io/x/y@{DIGEST}", probe=False)],
                )
            )
        ),
        {"workloads": f"{D}.initContainers[name=init].image: 'quay.io/x/y@"},
    ),
    "a cronjob's image": (
        create(cronjob(job_spec(container("run", image=f"quay.io/x/y@{DIGEST}", probe=False)))),
        {"cronjobs": f"{C}.containers[name=run].image: 'quay.io/x/y@"},
    ),
    "an ephemeral container's image (kubectl debug)": (
        Request(
            "UPDATE",
            pod(pod_spec(ephemeralContainers=[{"name": "debug", "image": "docker.io/library/busybox:1.37"}])),
            pod(),
            subresource="ephemeralcontainers",
        ),
        {"pods": "spec.ephemeralContainers[name=debug].image: 'docker.io/library/busybox:1.37' is not from"},
    ),
    "an ephemeral container pinned by tag only": (
        Request(
            "UPDATE",
            pod(pod_spec(ephemeralContainers=[{"name": "debug", "image": f"{REGISTRY}/debug:1"}])),
            pod(),
            subresource="ephemeralcontainers",
        ),
        {"pods": f"spec.ephemeralContainers[name=debug].image: '{REGISTRY}/debug:1' is not pinned"},
    ),
    "a container without image": (
        create(deployment(pod_spec(container(image=None)))),
        {"workloads": f"{D}.containers[name=web].image: '' is not from"},
    ),
    # Digests
    "a tag in production": (
        create(deployment(pod_spec(container(image=f"{REGISTRY}/website:1.2.3")))),
        {"workloads": f"{D}.containers[name=web].image: '{REGISTRY}/website:1.2.3' is not pinned by digest"},
    ),
    "a digest that is not sha256 + 64 hex": (
        create(deployment(pod_spec(container(image=f"{REGISTRY}/website@sha256:abc")))),
        {"workloads": "is not pinned by digest"},
    ),
    "an upper-case digest": (
        create(deployment(pod_spec(container(image=f"{REGISTRY}/website@sha256:{'A' * 64}")))),
        {"workloads": "is not pinned by digest"},
    ),
    "a cronjob by tag": (
        create(cronjob(job_spec(container("run", image=f"{REGISTRY}/website:1", probe=False)))),
        {"cronjobs": f"{C}.containers[name=run].image: '{REGISTRY}/website:1' is not pinned by digest"},
    ),
    # Resources
    "no CPU request": (
        create(
            deployment(
                pod_spec(container(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}))
            )
        ),
        {"workloads": f"{D}.containers[name=web].resources.requests.cpu: required"},
    ),
    "no memory request": (
        create(pod(pod_spec(container(resources={"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}})))),
        {"pods": "spec.containers[name=web].resources.requests.memory: required"},
    ),
    "no memory limit": (
        create(deployment(pod_spec(container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})))),
        {"workloads": f"{D}.containers[name=web].resources.limits.memory: required"},
    ),
    "no resources at all": (
        create(cronjob(job_spec(container("run", probe=False, resources=None)))),
        {"cronjobs": f"{C}.containers[name=run].resources.requests.cpu: required"},
    ),
    "an init container without resources": (
        create(
            deployment(pod_spec(container(), initContainers=[container("init", probe=False, resources=None)]))
        ),
        {"workloads": f"{D}.initContainers[name=init].resources.requests.cpu: required"},
    ),
    # Readiness
    "a deployment without readiness probe": (
        create(deployment(pod_spec(container(probe=False)))),
        {"workloads": f"{D}.containers[name=web].readinessProbe: required"},
    ),
    "a statefulset without readiness probe": (
        create(workload("StatefulSet", pod_spec(container(probe=False)))),
        {"workloads": f"{D}.containers[name=web].readinessProbe: required"},
    ),
    "a daemonset's second container without readiness probe": (
        create(workload("DaemonSet", pod_spec(container(), container("sidecar", probe=False)))),
        {"workloads": f"{D}.containers[name=sidecar].readinessProbe: required"},
    ),
    "a long-running pod without readiness probe": (
        create(pod(pod_spec(container(probe=False), restartPolicy=None))),
        {"pods": "spec.containers[name=web].readinessProbe: required"},
    ),
    # Host
    "hostNetwork": (
        create(deployment(pod_spec(hostNetwork=True))),
        {"workloads": f"{D}.hostNetwork: not allowed"},
    ),
    "hostPID": (create(pod(pod_spec(hostPID=True))), {"pods": "spec.hostPID: not allowed"}),
    "hostIPC": (create(cronjob(job_spec(hostIPC=True))), {"cronjobs": f"{C}.hostIPC: not allowed"}),
    "a hostPath volume": (
        create(deployment(pod_spec(volumes=[{"name": "tmp", "emptyDir": {}}, host_path("docker")]))),
        {"workloads": f"{D}.volumes[name=docker].hostPath: not allowed"},
    ),
    "a hostPort": (
        create(deployment(pod_spec(container(ports=[{"containerPort": 8080, "hostPort": 8080}])))),
        {"workloads": f"{D}.containers[name=web].ports[].hostPort: not allowed"},
    ),
    "an init container's hostPort": (
        create(
            pod(
                pod_spec(
                    container(),
                    initContainers=[
                        container("init", probe=False, ports=[{"containerPort": 1, "hostPort": 1}])
                    ],
                )
            )
        ),
        {"pods": "spec.initContainers[name=init].ports[].hostPort: not allowed"},
    ),
    # Privilege
    "a privileged container": (
        create(deployment(pod_spec(container(securityContext=PRIVILEGED)))),
        {"workloads": f"{D}.containers[name=web].securityContext.privileged: not allowed"},
    ),
    "a privileged init container": (
        create(
            cronjob(
                job_spec(
                    container("run", probe=False),
                    initContainers=[container("init", probe=False, securityContext=PRIVILEGED)],
                )
            )
        ),
        {"cronjobs": f"{C}.initContainers[name=init].securityContext.privileged: not allowed"},
    ),
    "an added capability (even NET_BIND_SERVICE)": (
        create(deployment(pod_spec(container(securityContext=ADDS_A_CAPABILITY)))),
        {"workloads": f"{D}.containers[name=web].securityContext.capabilities.add: no capability"},
    ),
    "an ephemeral container adding a capability": (
        Request(
            "UPDATE",
            pod(
                pod_spec(
                    ephemeralContainers=[
                        {"name": "debug", "image": IMAGE, "securityContext": ADDS_A_CAPABILITY}
                    ]
                )
            ),
            pod(),
            subresource="ephemeralcontainers",
        ),
        {"pods": "spec.ephemeralContainers[name=debug].securityContext.capabilities.add"},
    ),
    # Token
    "automount unset": (
        create(deployment(pod_spec(automountServiceAccountToken=None))),
        {"workloads": f"{D}.automountServiceAccountToken: must be false"},
    ),
    "automount true": (
        create(pod(pod_spec(automountServiceAccountToken=True))),
        {"pods": "spec.automountServiceAccountToken: must be false"},
    ),
    "a cronjob with automount unset": (
        create(cronjob(job_spec(automountServiceAccountToken=None))),
        {"cronjobs": f"{C}.automountServiceAccountToken: must be false"},
    ),
    "a projected token volume": (
        create(deployment(pod_spec(volumes=[TOKEN_VOLUME]))),
        {"workloads": f"{D}.volumes[name=token].projected.sources[].serviceAccountToken: no Kubernetes API"},
    ),
    # Services
    "a NodePort service": (
        create(service(type="NodePort")),
        {"services": "spec.type: NodePort is not allowed"},
    ),
    "a LoadBalancer service": (
        create(service(type="LoadBalancer")),
        {"services": "spec.type: LoadBalancer is not allowed"},
    ),
    "an ExternalName service": (
        create(service(type="ExternalName", externalName="db.example.com")),
        {"services": "spec.type: ExternalName is not allowed"},
    ),
    "externalIPs": (
        create(service(externalIPs=["203.0.113.10"])),
        {"services": "spec.externalIPs: not allowed"},
    ),
    "an UPDATE to NodePort": (
        Request("UPDATE", service(type="NodePort"), service()),
        {"services": "spec.type: NodePort"},
    ),
    # Several at once: the first named, the rest counted
    "two bad images": (
        create(deployment(pod_spec(container(image="quay.io/a/b"), container("two", image="quay.io/c/d")))),
        {
            "workloads": f"{D}.containers[name=web].image: 'quay.io/a/b' is not from the platform registry "
            f"or the app's allow-list ({REGISTRY}/ and the app's imageRegistries) (and 1 more)"
        },
    ),
}


def _check(request: Request, expected: dict[str, str], policies: dict[str, dict[str, Any]] = PROD) -> None:
    denials = _denials(request, policies)
    assert set(denials) == set(expected), denials
    for pid, text in expected.items():
        assert any(text in message for message in denials[pid]), (pid, text, denials[pid])


@pytest.mark.parametrize(("request_", "expected"), CASES.values(), ids=CASES.keys())
def test_decisions(request_: Request, expected: dict[str, str]) -> None:
    _check(request_, expected)


def test_a_pod_of_a_denied_deployment_is_denied_too() -> None:
    """Both levels: what the controller's policy refuses at sync, the pods' policy refuses too."""
    spec = pod_spec(container(image="quay.io/a/b", probe=False), hostNetwork=True)
    workloads = _denials(create(deployment(spec)))["workloads"]
    pods = _denials(create(pod(spec)))["pods"]
    assert [m.removeprefix("spec.template.") for m in workloads] == pods


def test_dev_admits_tags_but_not_other_registries() -> None:
    tagged = create(deployment(pod_spec(container(image=f"{REGISTRY}/website:1.2.3"))))
    _check(tagged, {}, DEV)
    _check(tagged, {"workloads": "is not pinned by digest"}, PROD)
    elsewhere = create(deployment(pod_spec(container(image="docker.io/library/nginx:1.27"))))
    _check(elsewhere, {"workloads": f"{D}.containers[name=web].image"}, DEV)
    assert all(v["name"] != "digestViolations" for v in DEV["workloads"]["variables"])


def test_an_app_not_in_the_settings_gets_the_defaults() -> None:
    request = create(
        deployment(
            pod_spec(container(image=f"ghcr.io/acme/x@{DIGEST}"), automountServiceAccountToken=True),
            namespace="unknown",
        ),
        namespace="unknown",
    )
    denials = _denials(request)["workloads"]
    assert any(".image:" in m for m in denials) and any("automountServiceAccountToken" in m for m in denials)


def test_every_validation_is_exercised_by_a_denial() -> None:
    """Each validation of each policy fails in at least one case above (none is dead code)."""
    seen: set[tuple[str, int]] = set()
    for request, _ in CASES.values():
        for pid, spec in PROD.items():
            for index, validation in enumerate(spec["validations"]):
                if _decide({**spec, "validations": [validation]}, request, pid):
                    seen.add((pid, index))
    every = {(pid, i) for pid, spec in PROD.items() for i in range(len(spec["validations"]))}
    assert every - seen == set()


# --- The platform's own hooks --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks() -> list[dict[str, Any]]:
    """The parity gates and the migration of the committed prod stack, as rendered into Git."""
    cfg = parity.load_stack("prod")
    jobs = [yaml.safe_load(text) for text in parity.hook_files(cfg).values()]
    assert sorted(job["metadata"]["name"] for job in jobs) == sorted(
        [parity.GATE_JOB, parity.GATE_JOB, migrations.MIGRATE_JOB]
    )
    return jobs


def _pinned(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` as Argo CD applies it in prod: the GitOps path's kustomize ``images:`` entry (the
    promotion writes a digest) replaces the app's image placeholder."""
    pinned = copy.deepcopy(job)
    for entry in pinned["spec"]["template"]["spec"]["containers"]:
        if entry["image"].endswith(f":{migrations.PINNED_BY_GITOPS}"):
            entry["image"] = entry["image"].removesuffix(f":{migrations.PINNED_BY_GITOPS}") + f"@{DIGEST}"
    return pinned


def _job_pod(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod the Job controller creates from ``job``'s template."""
    return pod(job["spec"]["template"]["spec"], namespace=job["metadata"]["namespace"])


def test_the_hooks_pass_every_rule_in_prod(hooks: list[dict[str, Any]]) -> None:
    for job in map(_pinned, hooks):
        namespace = job["metadata"]["namespace"]
        labels_ = tuple(labels.app_namespace(namespace).items())
        for obj in (job, _job_pod(job)):
            request = create(obj, namespace=namespace, namespace_labels=labels_)
            assert _denials(request) == {}, (job["metadata"], obj["kind"])
            assert _denials(request, DEV) == {}, (job["metadata"], obj["kind"])


def test_without_the_platform_images_the_gate_and_grants_are_refused(hooks: list[dict[str, Any]]) -> None:
    """What the report says: busybox and postgres come from Docker Hub, by tag; only the exact
    references the program passes as platform_images let them through."""
    bare = admission.workload_policies(registry_endpoint=REGISTRY, apps=APPS, require_digest=True)
    refused = {}
    for job in map(_pinned, hooks):
        denials = _denials(create(job, namespace=job["metadata"]["namespace"]), bare)
        refused[job["metadata"]["name"]] = denials["workloads"]
    assert refused[parity.GATE_JOB][0].startswith(f"{D}.containers[name=gate].image: '{apps.GATE_IMAGE}'")
    assert any(
        m.startswith(f"{D}.initContainers[name=grants].image: '{apps.PSQL_IMAGE}'")
        for m in refused[migrations.MIGRATE_JOB]
    )


def test_the_migration_as_rendered_is_refused_by_digest_only(hooks: list[dict[str, Any]]) -> None:
    """The placeholder tag never runs: in prod only the digest the GitOps path pins is admitted."""
    [job] = [job for job in hooks if job["metadata"]["name"] == migrations.MIGRATE_JOB]
    denials = _denials(create(job))
    assert list(denials) == ["workloads"]
    assert denials["workloads"] == [
        f"{D}.containers[name=migrate].image: '{REGISTRY}/website:{migrations.PINNED_BY_GITOPS}' is not "
        "pinned by digest (<repository>@sha256:<64 hex>): this environment runs digests only"
    ]
    assert _denials(create(job), DEV) == {}


# --- Shape of the policies ---------------------------------------------------------------------


def _expressions(spec: dict[str, Any]) -> list[str]:
    found = [c["expression"] for c in spec.get("matchConditions", [])]
    found += [v["expression"] for v in spec.get("variables", [])]
    for validation in spec["validations"]:
        found.append(validation["expression"])
        if "messageExpression" in validation:
            found.append(validation["messageExpression"])
    return found


@pytest.mark.parametrize("pid", PROD)
def test_every_expression_compiles(pid: str) -> None:
    celpy = _celpy()
    env = celpy.Environment()
    for expression in _expressions(PROD[pid]):
        env.compile(expression)  # raises CELParseError


@pytest.mark.parametrize("pid", PROD)
def test_policies_fail_closed_deny_in_app_namespaces_and_name_the_field(pid: str) -> None:
    spec = PROD[pid]
    assert spec["failurePolicy"] == "Fail"
    for validation in spec["validations"]:
        assert validation["reason"] == "Forbidden"
        assert validation["message"].startswith(("spec.", "spec:")), validation["message"]
    assert BINDINGS[pid] == {
        "policyName": f"platform-workloads-{pid}",
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {labels.APP_NAMESPACE: "true"}}},
    }


def test_match_constraints() -> None:
    resources = {
        pid: sorted(
            (group, r)
            for rule in spec["matchConstraints"]["resourceRules"]
            for group in rule["apiGroups"]
            for r in rule["resources"]
        )
        for pid, spec in PROD.items()
    }
    assert resources == {
        "pods": [("", "pods"), ("", "pods/ephemeralcontainers")],
        "workloads": [
            ("apps", "daemonsets"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("argoproj.io", "rollouts"),
            ("batch", "jobs"),
        ],
        "cronjobs": [("batch", "cronjobs")],
        "services": [("", "services")],
    }


def test_old_object_is_read_on_update_only() -> None:
    for spec in PROD.values():
        for expression in _expressions(spec):
            if "oldObject." in expression:
                assert "request.operation != 'UPDATE' ||" in expression, expression


def test_the_policies_pass_kubernetes_validate_strict(tmp_path: Path) -> None:
    manifests = []
    for pid, spec in PROD.items():
        name = admission.policy_name(pid)
        for kind, body in (
            ("ValidatingAdmissionPolicy", spec),
            ("ValidatingAdmissionPolicyBinding", BINDINGS[pid]),
        ):
            obj = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "spec": body,
            }
            path = tmp_path / f"{kind}-{pid}.yaml"
            path.write_text(yaml.safe_dump(obj), encoding="utf-8")
            manifests.append(validate.Manifest(path, path.name, obj))
    result = validate.check_core(manifests, "1.34", set())
    assert result.objects == 8
    assert result.failures == []


def test_declare_registers_each_policy_before_its_binding() -> None:
    def program() -> None:
        provider = k8s.Provider("workload", kubeconfig="{}")
        admission.declare_workload_admission(
            "prod-admission",
            provider=provider,
            settings=APPS,
            registry_endpoint=REGISTRY,
            require_digest=True,
            platform_images=HOOK_IMAGES,
        )

    recording = record(program)
    for pid, spec in PROD.items():
        policy = recording.named(f"prod-admission-{pid}")
        binding = recording.named(f"prod-admission-{pid}-binding")
        assert policy.type == "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
        assert policy.inputs["metadata"]["name"] == admission.policy_name(pid)
        assert policy.inputs["spec"] == spec
        assert binding.inputs["spec"] == BINDINGS[pid]
        assert policy.urn in binding.dependencies
        assert policy.provider.startswith(recording.named("workload").urn)


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("https://ghcr.io/acme", "no scheme"),
        ("ghcr.io/acme/app:1.2", "no tag"),
        ("ghcr.io/acme/app@sha256:" + "a" * 64, "no digest"),
        ("ghcr.io/acme/", "no trailing '/'"),
        ("acme/app", "must start with a registry host"),
        ("nginx", "must start with a registry host"),
        ("ghcr.io/Acme", "lowercase repository components"),
        ("ghcr.io/ac'me", "lowercase repository components"),
        ("GHCR.io/acme", "must start with a registry host"),
    ],
)
def test_an_allow_list_entry_must_be_a_registry_host(entry: str, problem: str) -> None:
    with pytest.raises(ValidationError) as error:
        admission.WorkloadAdmissionSettings.model_validate({"imageRegistries": ["ghcr.io/ok", entry]})
    [found] = error.value.errors()
    assert found["loc"] == ("imageRegistries", 1)
    assert f"imageRegistries: {entry!r} is not a registry host" in found["msg"]
    assert problem in found["msg"]


@pytest.mark.parametrize(
    "entry", ["ghcr.io", "ghcr.io/acme", "registry.example.com:5000/team/sub", "localhost:5000"]
)
def test_registry_hosts_are_accepted(entry: str) -> None:
    settings = admission.WorkloadAdmissionSettings.model_validate({"imageRegistries": [entry]})
    assert settings.image_registries == [entry]


def test_duplicate_registries_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"duplicate registry 'ghcr\.io/acme'"):
        admission.WorkloadAdmissionSettings.model_validate(
            {"imageRegistries": ["ghcr.io/acme", "ghcr.io/acme"]}
        )
    with pytest.raises(ValidationError, match="automountServiceAccountTokens"):
        admission.WorkloadAdmissionSettings.model_validate({"automountServiceAccountTokens": True})


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "sha256:" + "A" * 64, "sha512:" + "a" * 64, "a" * 64, "sha256:" + "a" * 65]
)
def test_a_digest_must_be_sha256_and_64_hex(digest: str) -> None:
    with pytest.raises(ValueError, match=r"^gateImage: .* is not a digest: sha256: followed by 64"):
        admission.check_digest(digest, "gateImage")
    assert admission.check_digest(DIGEST, "gateImage") == DIGEST


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registry_endpoint": "https://rg.fr-par.scw.cloud/x"}, "registry_endpoint: .* no scheme"),
        ({"platform_images": ["busybox:1.37"]}, r"platform_images\[0\]: 'busybox:1.37' is not a full image"),
        (
            {"platform_images": [apps.GATE_IMAGE, "docker.io/library/busybox@sha256:abc"]},
            r"platform_images\[1\]: 'sha256:abc' is not a digest",
        ),
        ({"platform_images": ["docker.io/library/busybox:1' || true || '"]}, r"platform_images\[0\]"),
        ({"apps": {"Website": admission.WorkloadAdmissionSettings()}}, "apps: 'Website' is not a namespace"),
    ],
)
def test_bad_policy_input_names_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "registry_endpoint": REGISTRY,
        "apps": APPS,
        "require_digest": True,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        admission.workload_policies(**arguments)


def test_platform_images_by_digest_are_accepted() -> None:
    # The hook images are pinned by digest (scw_platform/data/images.yaml).
    pinned = apps.GATE_IMAGE
    assert re.search(r":1\.37\.0@sha256:[0-9a-f]{64}$", pinned)
    policies = admission.workload_policies(
        registry_endpoint=REGISTRY, apps={}, require_digest=True, platform_images=[pinned]
    )
    gate = container("gate", image=pinned, probe=False)
    _check(create(workload("Job", job_spec(gate))), {}, policies)

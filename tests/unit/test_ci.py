"""platform:ci: CI runners in tooling, on the builders pool, in a fenced namespace, their builds
bounded; the admission policy's CEL evaluated with cel-python; the config's bad input."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from offline import runner
from policy import rules as policy
from scw_platform import ci
from tests import cel
from tests.harness import StackConfig, new_problems, plaintext_secrets, unwrap, upstream

RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _named(plan: runner.Plan, name: str) -> Any:
    (found,) = [r for r in plan.registrations if r.name == name]
    return found


@pytest.fixture(scope="module")
def tooling() -> runner.Plan:
    return runner.run("tooling")


@pytest.fixture(scope="module")
def github_tooling() -> runner.Plan:
    config = runner.read_stack_config("tooling")
    settings = copy.deepcopy(config["platform:ci"])
    settings.pop("gitlab")
    settings.update(provider="github", github={"configUrl": "https://github.com/acme", "maxRunners": 3})
    config["platform:ci"] = settings
    return runner.run("tooling", config=config)


# --- what the plan declares --------------------------------------------------------------------


def test_the_ci_namespace_is_fenced_and_bounded(tooling: runner.Plan) -> None:
    namespace = _named(tooling, "tooling-ci-namespace").inputs["metadata"]
    labels = namespace["labels"]
    # Baseline's seccomp and AppArmor controls are what rootless BuildKit needs; the rest of
    # baseline is the admission policy's (below), and restricted is warned and audited.
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    quota = _named(tooling, "tooling-ci-quota").inputs["spec"]["hard"]
    assert quota == {"requests.ephemeral-storage": "176Gi", "limits.ephemeral-storage": "176Gi"}
    (limits,) = _named(tooling, "tooling-ci-limits").inputs["spec"]["limits"]
    assert limits["default"]["ephemeral-storage"] == "40Gi" == limits["max"]["ephemeral-storage"]
    assert limits["defaultRequest"]["ephemeral-storage"] == "10Gi"
    deny = [r for r in tooling.by_type(POLICY) if r.inputs["metadata"].get("namespace") == "ci"]
    assert any(r.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} for r in deny)


def test_ci_egress_is_dns_and_public_https_only(tooling: runner.Plan) -> None:
    egress = _named(tooling, "tooling-ci-egress").inputs["spec"]["egress"]
    public = [rule for rule in egress if any("ipBlock" in peer for peer in rule.get("to", []))]
    (https,) = public
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    excepted = set(https["to"][0]["ipBlock"]["except"])
    # The VPCs, the pods and the metadata service stay out of reach.
    assert {"10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16"} <= excepted
    api = _named(tooling, "tooling-ci-runner-api").inputs["spec"]
    assert api["podSelector"] == {"matchLabels": ci.RUNNER_MANAGER_LABELS}, "jobs never reach the API"


def test_the_runner_token_comes_from_the_vault_never_from_values(tooling: runner.Plan) -> None:
    external = _named(tooling, "tooling-ci-runner-token").inputs
    assert external["kind"] == "ExternalSecret"
    assert external["spec"]["data"] == [
        {"secretKey": "token", "remoteRef": {"key": "path:/platform/ci/runner-token"}}
    ]
    assert external["spec"]["target"]["template"]["data"]["runner-token"] == "{{ .token }}"
    version = _named(tooling, "tooling-ci-runner-token-secret-version")
    assert not plaintext_secrets(version.inputs), "the token is a Pulumi secret in state"
    values = _named(tooling, "tooling-ci-gitlab-runner").inputs["values"]
    assert values["runners"]["secret"] == ci.RUNNER_TOKEN_SECRET
    assert "placeholder-ciRunnerToken" not in str(unwrap(values)), "the token never reaches Helm values"


def test_the_runner_release_runs_beside_the_secrets_operator_not_after_it(tooling: runner.Plan) -> None:
    """Its pods wait for the token's Secret themselves (within the release's 600 s), so the two
    releases are not in series: tooling's longest chain (scripts/critical_path.py)."""
    release = _named(tooling, "tooling-ci-gitlab-runner")
    waits = upstream(tooling, release)
    assert _named(tooling, "tooling-secrets-operator").urn not in waits
    assert _named(tooling, "tooling-ci-runner-token").urn not in waits
    # Still after its namespace and the namespace's default deny.
    assert _named(tooling, "tooling-ci-namespace").urn in waits
    assert release.inputs["timeout"] == 600


def test_gitlab_job_pods_run_on_the_builders_pool_bounded_and_unprivileged(tooling: runner.Plan) -> None:
    release = _named(tooling, "tooling-ci-gitlab-runner").inputs
    assert release["version"] == ci.GITLAB_RUNNER_CHART.version and release["namespace"] == "ci"
    values = release["values"]
    config = tomllib.loads(values["runners"]["config"])
    (runner_config,) = config["runners"]
    kubernetes = runner_config["kubernetes"]
    assert kubernetes["namespace"] == "ci" and kubernetes["privileged"] is False
    assert kubernetes["node_selector"] == {ci.POOL_LABEL: "builders"}
    assert kubernetes["node_tolerations"] == {"platform.scw/dedicated=builders": "NoSchedule"}
    assert (
        kubernetes["ephemeral_storage_limit"]
        == "40Gi"
        == kubernetes["ephemeral_storage_limit_overwrite_max_allowed"]
    )
    assert "PLATFORM_SCAN_SEVERITY=CRITICAL" in runner_config["environment"]
    (patch,) = kubernetes["pod_spec"]
    assert "Unconfined" in patch["patch"]
    # The manager itself: restricted-level, on the builders pool too.
    assert values["nodeSelector"] == {ci.POOL_LABEL: "builders"}
    assert values["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert values["resources"]["limits"]["ephemeral-storage"]


def test_the_builders_pool_is_tainted(tooling: runner.Plan) -> None:
    pools = {r.inputs["name"]: r.inputs for r in tooling.by_type("scaleway:kubernetes/pool:Pool")}
    assert pools["builders"]["taints"] == [
        {"key": "platform.scw/dedicated", "value": "builders", "effect": "NoSchedule"}
    ]
    assert pools["builders"]["minSize"] == 0, "the builders pool sleeps at zero nodes"
    assert "taints" not in pools["system"]


def test_github_runs_the_controller_and_one_scale_set(github_tooling: runner.Plan) -> None:
    releases = {r.name: r.inputs for r in github_tooling.by_type(RELEASE)}
    controller = releases["tooling-ci-arc-controller"]
    scale_set = releases["tooling-ci-arc-scale-set"]
    assert (controller["chart"], controller["version"]) == ("gha-runner-scale-set-controller", "0.14.2")
    assert scale_set["namespace"] == "ci" and controller["namespace"] == ci.ARC_NAMESPACE
    values = scale_set["values"]
    assert values["githubConfigSecret"] == ci.RUNNER_TOKEN_SECRET
    assert (values["minRunners"], values["maxRunners"]) == (0, 3)
    assert "containerMode" not in values, "jobs run in the runner container: no Docker daemon, no job pods"
    spec = values["template"]["spec"]
    # Rootless BuildKit's two profile overrides, pod-wide; the runner container resets them.
    assert spec["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert spec["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    runner, buildkitd = spec["containers"]
    assert (runner["name"], runner["image"]) == ("runner", ci.ARC_RUNNER_IMAGE)
    assert runner["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert runner["securityContext"]["allowPrivilegeEscalation"] is False
    assert buildkitd["name"] == "buildkitd" and buildkitd["image"].endswith(":v0.34.0-rootless")
    assert buildkitd["args"] == ["--addr", ci.ARC_BUILDKIT_HOST, "--oci-worker-no-process-sandbox"]
    assert buildkitd["securityContext"]["runAsUser"] == 1000 == buildkitd["securityContext"]["runAsGroup"]
    # The build's resources go to BuildKit, a small share to the runner; both bounded on disk.
    assert buildkitd["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "10Gi"},
        "limits": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "40Gi"},
    }
    assert runner["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "10Gi"},
    }
    for container in (runner, buildkitd):
        assert container["securityContext"]["privileged"] is False
        assert container["resources"]["limits"]["ephemeral-storage"], container["name"]
    env = {e["name"]: e["value"] for e in runner["env"]}
    assert env == {
        "PLATFORM_SCAN_SEVERITY": "CRITICAL",
        "BUILDKIT_HOST": "unix:///run/buildkit/buildkitd.sock",
    }
    # The socket: one volume, mounted by both; BuildKit's state bounded like a build.
    socket = {"name": "buildkit-socket", "mountPath": "/run/buildkit"}
    state = {"name": "buildkit-state", "mountPath": "/home/user/.local/share/buildkit"}
    assert runner["volumeMounts"] == [socket] and buildkitd["volumeMounts"] == [socket, state]
    assert spec["volumes"] == [
        {"name": "buildkit-socket", "emptyDir": {}},
        {"name": "buildkit-state", "emptyDir": {"sizeLimit": "40Gi"}},
    ]
    assert spec["securityContext"]["supplementalGroups"] == [1000], "the socket is BuildKit's, mode 0660"
    assert "tooling-ci-gitlab-runner" not in releases
    external = _named(github_tooling, "tooling-ci-runner-token")
    assert external.inputs["spec"]["target"]["template"]["data"] == {"github_token": "{{ .token }}"}


def test_the_github_runner_pod_is_admitted_and_fits_the_namespace_limits(github_tooling: runner.Plan) -> None:
    """The scale set's template, as the pod ARC creates from it: admitted by the ci namespace's
    policy, each container within the LimitRange's max, and refused without either container's
    ephemeral-storage limit (the policy looks at both)."""
    from scw_platform.apps import mebibytes, millicores

    values = unwrap(_named(github_tooling, "tooling-ci-arc-scale-set").inputs["values"])
    pod = {"spec": copy.deepcopy(values["template"]["spec"])}
    assert _denials(pod) == []
    assert pod["spec"]["nodeSelector"] == {ci.POOL_LABEL: "builders"}
    assert pod["spec"]["tolerations"] == [
        {"key": "platform.scw/dedicated", "operator": "Equal", "value": "builders", "effect": "NoSchedule"}
    ]
    (limits,) = _named(github_tooling, "tooling-ci-limits").inputs["spec"]["limits"]
    parse = {"cpu": millicores, "memory": mebibytes, "ephemeral-storage": mebibytes}
    for container in pod["spec"]["containers"]:
        for resource, most in limits["max"].items():
            assert parse[resource](container["resources"]["limits"][resource]) <= parse[resource](most)
    for index in (0, 1):
        unbounded = copy.deepcopy(pod)
        del unbounded["spec"]["containers"][index]["resources"]["limits"]["ephemeral-storage"]
        assert any("ephemeral-storage limit" in message for message in _denials(unbounded)), index
    # A smaller build caps the runner's share at the build's own limits (the LimitRange's max).
    settings = ci.CiSettings.model_validate(
        {
            "provider": "github",
            "github": {"configUrl": "https://github.com/acme"},
            "build": {
                "cpuRequest": "100m",
                "cpuLimit": "500m",
                "memoryRequest": "256Mi",
                "memoryLimit": "1Gi",
                "ephemeralStorageRequestGb": 1,
                "ephemeralStorageLimitGb": 4,
            },
        }
    )
    small = ci.arc_scale_set_values(settings, [])["template"]["spec"]["containers"][0]["resources"]
    assert small == {
        "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "4Gi"},
    }


# --- the admission policy, evaluated -------------------------------------------------------------


# The shared evaluator (tests/cel.py), under the names these tests use.
_celpy, _program = cel.celpy_module, cel.program


def _denials(pod: dict[str, Any]) -> list[str]:
    celpy = _celpy()
    spec = ci.build_pod_policy("builders")
    activation: dict[str, Any] = {"object": celpy.json_to_cel(pod)}
    variables = {
        celpy.celtypes.StringType(v["name"]): _program(v["expression"]).evaluate(activation)
        for v in spec["variables"]
    }
    activation["variables"] = celpy.celtypes.MapType(variables)
    return [
        v["message"] for v in spec["validations"] if not bool(_program(v["expression"]).evaluate(activation))
    ]


def _build_pod() -> dict[str, Any]:
    """A rootless BuildKit job pod as the runner creates it (profiles Unconfined, bounded)."""
    return {
        "spec": {
            "nodeSelector": {ci.POOL_LABEL: "builders"},
            "securityContext": {
                "seccompProfile": {"type": "Unconfined"},
                "appArmorProfile": {"type": "Unconfined"},
            },
            "containers": [
                {
                    "name": "build",
                    "image": "moby/buildkit:v0.26.2-rootless",
                    "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": True},
                    "resources": {"limits": {"ephemeral-storage": "40Gi", "memory": "8Gi"}},
                },
                {
                    "name": "helper",
                    "image": "gitlab-runner-helper",
                    "resources": {"limits": {"ephemeral-storage": "1Gi"}},
                },
            ],
        }
    }


def test_a_rootless_build_pod_is_admitted() -> None:
    assert _denials(_build_pod()) == []


def _changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    pod = _build_pod()
    change(pod["spec"])
    return pod


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "privileged containers"),
        (lambda s: s.update(hostNetwork=True), "host namespaces"),
        (lambda s: s.update(hostPID=True), "host namespaces"),
        (lambda s: s.update(volumes=[{"name": "docker", "hostPath": {"path": "/var/run"}}]), "hostPath"),
        (lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "host ports"),
        (
            lambda s: s["containers"][0]["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]}),
            "capabilities beyond",
        ),
        (lambda s: s["containers"][0]["securityContext"].update(procMount="Unmasked"), "/proc mount"),
        (lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
        (lambda s: s["containers"][0]["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "SELinux"),
        (lambda s: s["containers"][1].pop("resources"), "ephemeral-storage limit"),
        (
            lambda s: s["containers"][0]["resources"]["limits"].pop("ephemeral-storage"),
            "ephemeral-storage limit",
        ),
        (lambda s: s.update(nodeSelector={ci.POOL_LABEL: "system"}), "builders pool only"),
        (lambda s: s.pop("nodeSelector"), "builders pool only"),
        (
            lambda s: s.update(initContainers=[{"name": "i", "securityContext": {"privileged": True}}]),
            "privileged",
        ),
    ],
)
def test_the_admission_policy_refuses_what_baseline_and_the_platform_refuse(
    change: Callable[[dict[str, Any]], None], refused: str
) -> None:
    denials = _denials(_changed(change))
    assert any(refused in message for message in denials), denials


def test_baselines_allowed_capabilities_pass() -> None:
    pod = _changed(
        lambda s: s["containers"][0]["securityContext"].update(capabilities={"add": ["SETUID", "SETGID"]})
    )
    assert _denials(pod) == []


# --- bad input -----------------------------------------------------------------------------------


def _ci(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw["platform:ci"].update(changes)

    return mutate


def _pool(name: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        pool = next(p for p in raw["platform:cluster"]["pools"] if p["name"] == name)
        pool.update(changes)

    return mutate


def test_an_unknown_provider_names_the_choices(stack_config: StackConfig) -> None:
    problems = new_problems(stack_config, "tooling", _ci(provider="jenkins"))
    assert "platform:ci.provider: unknown CI provider 'jenkins' (one of: gitlab, github)" in problems


def test_provider_settings_go_with_their_provider(stack_config: StackConfig) -> None:
    problems = new_problems(stack_config, "tooling", _ci(provider="github"))
    assert any(p.startswith("platform:ci.gitlab: only allowed with provider gitlab") for p in problems)
    assert any(p.startswith("platform:ci.github: required with provider github") for p in problems)


def test_the_runner_token_must_be_a_secret(stack_config: StackConfig) -> None:
    def plain(raw: dict[str, Any]) -> None:
        raw["platform:ciRunnerToken"] = "glrt-plaintext"

    problems = new_problems(stack_config, "tooling", plain)
    assert (
        "platform:ciRunnerToken: must be set as a secret: pulumi config set --secret platform:ciRunnerToken"
        in problems
    )
    missing = new_problems(
        stack_config,
        "tooling",
        lambda raw: None,
        secrets={"gitopsRepoCredential": "x", "gitopsWriteCredential": "y", "argocdWebhookSecret": "z"},
    )
    assert any(p.startswith("platform:ciRunnerToken: required with platform:ci") for p in missing)


def test_the_builders_pool_must_exist_and_be_tainted(stack_config: StackConfig) -> None:
    problems = new_problems(stack_config, "tooling", _ci(pool="runners"))
    assert (
        "platform:ci.pool: pool 'runners' is not in platform:cluster.pools (pools: system, builders)"
        in problems
    )
    untainted = new_problems(stack_config, "tooling", _pool("builders", taints=[]))
    assert any(p.startswith("platform:ci.pool: pool 'builders' has no NoSchedule taint") for p in untainted)


def test_a_scan_threshold_is_a_severity(stack_config: StackConfig) -> None:
    problems = new_problems(stack_config, "tooling", _ci(scanSeverities=["SEVERE"]))
    assert any(p.startswith("platform:ci.scanSeverities[0]: Input should be 'UNKNOWN'") for p in problems), (
        problems
    )


def test_a_build_may_not_fill_more_than_a_node(stack_config: StackConfig) -> None:
    def greedy(raw: dict[str, Any]) -> None:
        raw["platform:ci"]["build"].update(ephemeralStorageLimitGb=190, memoryLimit="128Gi", cpuLimit="32")
        raw["platform:ci"]["ephemeralStorageQuotaGb"] = 400

    problems = new_problems(stack_config, "tooling", greedy)
    assert any(
        p.startswith(
            "platform:ci.build.ephemeralStorageLimitGb: 190 GiB is more than a builders node's disk (200 GB"
        )
        for p in problems
    ), problems
    assert "platform:ci.build.memoryLimit: 128Gi is more than a PRO2-M node's memory (64 GiB)" in problems
    assert "platform:ci.build.cpuLimit: 32 is more than a PRO2-M node's 16 vCPUs" in problems
    crowded = new_problems(stack_config, "tooling", _ci(ephemeralStorageQuotaGb=100))
    assert (
        "platform:ci.ephemeralStorageQuotaGb: 100 GiB holds 2 job pod(s) of 44 GiB (the build's limit and "
        "its runner's), fewer than the 4 that may run at once: raise it to 176 or run fewer at once"
    ) in crowded
    small = new_problems(stack_config, "tooling", _ci(ephemeralStorageQuotaGb=20))
    assert any(
        p.startswith("platform:ci.ephemeralStorageQuotaGb: 20 GiB is less than one build's limit")
        for p in small
    )


def test_ci_is_tooling_only(stack_config: StackConfig) -> None:
    def in_prod(raw: dict[str, Any]) -> None:
        raw["platform:ci"] = {"provider": "gitlab", "gitlab": {}}

    problems = new_problems(stack_config, "prod", in_prod)
    assert "platform:ci: not allowed for role production (only: tooling)" in problems


# --- the policy pack's rules -----------------------------------------------------------------------


def test_the_policy_pack_passes_the_committed_ci(tooling: runner.Plan) -> None:
    views = policy.StackView(
        resources=tuple(
            policy.ResourceView(
                urn=r.urn,
                type=r.type,
                name=r.name,
                inputs=unwrap(r.inputs),
                provider=r.provider,
                retain_on_delete=False,
            )
            for r in tooling.registrations
        ),
        role="tooling",
    )
    for rule_id in (
        "no-privileged-containers",
        "ci-namespace-default-deny",
        "ci-build-pods-ephemeral-storage-limited",
    ):
        assert policy.RULES_BY_NAME[rule_id].evaluate(views) == [], rule_id
    # and they look: the ci namespace is selected, the runner release is checked.
    assert any(
        policy.RULES_BY_NAME["ci-build-pods-ephemeral-storage-limited"].applies(v) for v in views.resources
    )

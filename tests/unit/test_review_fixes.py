"""Holes an independent review found in the hub-pulls design and the environment list, each with
the case that would have passed before: ApplicationSet generators that send tokens away, two
environments claiming one API server, an app whose Application is a root app's name, a copied
stack file naming another environment, write-back branches the pipeline does not check, the image
updater's leases, the tooling project's kinds, a dropped production registration deleting apps."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from offline import runner
from offline.mocks import PlatformMocks, unwrap_secrets
from program.environments import EnvironmentsError, parse
from scw_platform import argocd_admission, contract, gitops
from scw_platform.contract import ProblemsError, RegistrationError
from tests.harness import environments_document, load_config, serve_changed_registration


def _named(plan: runner.Plan, name: str) -> Any:
    [found] = [r for r in plan.registrations if r.name == name]
    return found


def test_argocd_turns_the_scm_generators_off(committed_plans: dict[str, runner.Plan]) -> None:
    values = unwrap_secrets(_named(committed_plans["tooling"], "argocd-argocd").inputs["values"])
    assert values["configs"]["params"]["applicationsetcontroller.enable.scm.providers"] is False


def test_unsafe_generators_are_named_in_the_policy() -> None:
    spec = argocd_admission.application_policies(["prod", "tooling"], [])["applicationsets"]
    text = " ".join(v["expression"] for v in spec["validations"])
    for kind in argocd_admission.UNSAFE_GENERATORS:
        assert f"has(g.{kind})" in text and f"has(c.{kind})" in text and f"has(n.{kind})" in text, kind


def test_an_app_named_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def rename(registration: dict[str, Any]) -> None:
        registration["namespaces"] = [*registration["namespaces"], "root"]
        registration["apps"][0]["name"] = "root"

    serve_changed_registration(monkeypatch, rename)
    with pytest.raises(RegistrationError, match=r"apps\[0\]\.name: .*never root"):
        runner.run("tooling")


def test_two_environments_may_not_register_one_api_server(
    monkeypatch: pytest.MonkeyPatch, committed_plans: dict[str, runner.Plan]
) -> None:
    # dev registered by tooling, exporting prod's own server URL.
    document = environments_document(
        {"dev": {"managedBy": "tooling", "dns": {"zone": "example.com", "hostnames": ["*.dev.example.com"]}}}
    )
    listing = parse(document)
    prod_exports = committed_plans["prod"].exports
    registration = copy.deepcopy(unwrap_secrets(prod_exports[contract.REGISTRATION_KEY].value))
    registration["environment"] = "dev"
    registration["apps"] = []
    registration["namespaces"] = ["jobs"]
    original = PlatformMocks._stack_reference

    def reference(self: PlatformMocks, name: str) -> dict[str, Any]:
        if name == "organization/platform/dev":
            from pulumi.runtime import rpc

            return {
                "name": name,
                "outputs": {contract.REGISTRATION_KEY: rpc.wrap_rpc_secret(registration)},
                "secretOutputNames": [contract.REGISTRATION_KEY],
            }
        return original(self, name)

    monkeypatch.setattr(PlatformMocks, "_stack_reference", reference)
    monkeypatch.setattr(runner, "_referenced_exports", _with_dev(runner._referenced_exports, registration))
    with pytest.raises(ProblemsError, match=r"argocdRegistration\.server: .* is (prod|dev)'s API server too"):
        runner.run("tooling", environments=listing)


def _with_dev(original: Any, registration: dict[str, Any]) -> Any:
    def referenced(stack: str, root: Any, *, bootstrap: bool, visiting: Any) -> Any:
        if stack == "dev":
            return {contract.REGISTRATION_KEY: runner.Export(registration, True)}, frozenset()
        return original(stack, root, bootstrap=bootstrap, visiting=visiting)

    return referenced


def test_a_copied_stack_file_must_name_its_own_environment(stack_config: Any) -> None:
    raw = stack_config("prod")
    with pytest.raises(Exception, match=r"platform:environment: 'prod' is stack organization/platform/prod"):
        runner.run("staging-copy", config=raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"imageUpdater": {"writeBackBranch": "updates-{{.SHA256}}"}}, "must start with image-updater-"),
        ({"targetRevision": "HEAD"}, "platform:gitops.targetRevision: must name the protected branch"),
        (
            {"targetRevision": "refs/heads/main"},
            "platform:gitops.targetRevision: must name the protected branch",
        ),
    ],
)
def test_write_back_branches_the_pipeline_checks(
    stack_config: Any, changes: dict[str, Any], message: str
) -> None:
    raw = stack_config("tooling")
    raw["platform:gitops"].update(changes)
    with pytest.raises(Exception, match=message):
        load_config("tooling", raw)


@pytest.mark.parametrize("name", ["stg-", "platform", "default", "in-cluster"])
def test_reserved_or_malformed_environment_names(name: str) -> None:
    document = environments_document()
    document["environments"][name] = copy.deepcopy(document["environments"]["dev"])
    with pytest.raises(EnvironmentsError, match=rf"{name}: "):
        parse(document)


def test_the_image_updater_may_write_only_its_own_lease() -> None:
    celpy = pytest.importorskip("celpy")
    spec = gitops.image_updater_configmap_policy()
    [validation] = spec["validations"]
    env = celpy.Environment()
    program = env.program(env.compile(validation["expression"]))
    updater = f"system:serviceaccount:argocd:{gitops.IMAGE_UPDATER_ACCOUNT}"

    def allowed(user: str, resource: str, name: str) -> bool:
        request = {"userInfo": {"username": user}, "resource": {"resource": resource}, "name": name}
        return bool(program.evaluate({"request": celpy.json_to_cel(request)}))

    assert allowed(updater, "leases", gitops.IMAGE_UPDATER_LEASE)
    assert not allowed(updater, "leases", "58ac56fa.applicationset.argoproj.io")
    assert not allowed(updater, "configmaps", "argocd-cm")
    assert allowed("system:serviceaccount:argocd:argocd-server", "configmaps", "argocd-cm")


def test_tooling_project_is_an_allow_list(committed_plans: dict[str, runner.Plan]) -> None:
    spec = _named(committed_plans["tooling"], "tooling-gitops-project").inputs["spec"]
    kinds = {(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]}
    assert ("apps", "Deployment") in kinds
    assert not [
        k for k in kinds if "NetworkPolicy" in k[1] or k[1] in ("Secret", "PodDisruptionBudget", "Role")
    ]


def test_production_registration_is_kept_if_the_program_drops_it(
    committed_plans: dict[str, runner.Plan],
) -> None:
    tooling = committed_plans["tooling"]
    for name in ("prod-cluster-secret", "prod-gitops-project", "prod-gitops-app-website", "argocd-root-prod"):
        assert _named(tooling, name).retain_on_delete, name
    # Not tooling's own objects: tearing tooling down still removes them with the cluster.
    assert not _named(tooling, "tooling-gitops-project").retain_on_delete


def test_the_hub_overrides_facts_it_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    def lie(registration: dict[str, Any]) -> None:
        registration["facts"]["registry-endpoint"] = "evil.example.com"
        registration["facts"]["environment"] = "tooling"

    serve_changed_registration(monkeypatch, lie)
    annotations = _named(runner.run("tooling"), "prod-cluster-secret").inputs["metadata"]["annotations"]
    assert annotations["platform.scw/registry-endpoint"] == "rg.fr-par.scw.cloud/acme-platform"
    assert annotations["platform.scw/environment"] == "prod"


@pytest.mark.parametrize(
    "ca",
    [
        base64.b64encode(
            b"-----BEGIN CERTIFICATE-----\n" + b"A" * 20000 + b"\n-----END CERTIFICATE-----\n"
        ).decode(),
        base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n").decode(),
    ],
)
def test_a_ca_that_is_too_big_or_unterminated_is_refused(ca: str) -> None:
    value = {
        "version": 1,
        "environment": "prod",
        "server": "https://f139b375-575b-5b1e-b69e-3a542ce806b2.api.k8s.fr-par.scw.cloud:6443",
        "caData": ca,
        "token": "t",
        "namespaces": ["website"],
        "facts": {},
        "apps": [],
    }
    with pytest.raises(RegistrationError, match="caData"):
        contract.parse_registration(value, stack="s", environment="prod", registry_endpoint="rg.x/y")

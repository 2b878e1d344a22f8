"""The CI templates of ops/ci, the ops image recipe and its pins.

Three layers, each able to fail:

* schema: every GitLab file against ``check-jsonschema --builtin-schema vendor.gitlab-ci``, every
  GitHub workflow against ``vendor.github-workflows`` (the schemas ship inside check-jsonschema, no
  network), run as a subprocess of this interpreter's check-jsonschema; a copy with an unknown job
  key must fail, so the validator is proven to bite;
* structure: the build's invariants read from the parsed YAML (nothing privileged, no Docker daemon
  or socket, every image pinned, the push needs the scan and runs on the default branch only, the
  scan's Trivy flags, the registry cache, resource hints, the schedule selectors), each checker
  also shown to report a broken copy;
* behaviour: the jobs' shell scripts themselves, run with ``sh``/``bash`` against stub tools that
  record their arguments (GitLab: ``buildctl-daemonless.sh``, ``trivy``, ``skopeo``; GitHub:
  ``curl`` serving local release tarballs, ``buildctl``, ``trivy``, ``crane``), and the write-back
  gate job against real Git repositories, all in tmp_path.

check-jsonschema (0.39.0, for requirements-dev.txt) runs from this interpreter's environment;
without it the schema tests skip with the reason, and fail when CI is set, so CI cannot pass
without them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scw_platform import ci

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "ops" / "ci"
GITLAB_BUILD = CI / "gitlab" / "build-image.gitlab-ci.yml"
GITLAB_GITOPS = CI / "gitlab" / "gitops-repository.gitlab-ci.yml"
GITHUB_BUILD = CI / "github" / "build-image.yml"
GITHUB_MERGE = CI / "github" / "merge-when-green.yml"
GITLAB_FILES = (GITLAB_BUILD, GITLAB_GITOPS)
GITHUB_FILES = (GITHUB_BUILD, GITHUB_MERGE)
DOCKERFILE = ROOT / "ops" / "Dockerfile"
REQUIREMENTS = ROOT / "ops" / "requirements.txt"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

RUNNER_TAG = "platform-builders"
BUILD, SCAN, PUSH = "platform-image-build", "platform-image-scan", "platform-image-push"
GITLAB_RESERVED = {
    "stages",
    "variables",
    "workflow",
    "include",
    "default",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
    "spec",
}
#: Images given by a variable: the ops image, set per project to a reference pinned by digest.
VARIABLE_IMAGES = {"$PLATFORM_OPS_IMAGE", "${{ vars.PLATFORM_OPS_IMAGE }}"}
KUBERNETES_RESOURCES = (
    ("KUBERNETES_CPU_REQUEST", "KUBERNETES_CPU_LIMIT"),
    ("KUBERNETES_MEMORY_REQUEST", "KUBERNETES_MEMORY_LIMIT"),
    ("KUBERNETES_EPHEMERAL_STORAGE_REQUEST", "KUBERNETES_EPHEMERAL_STORAGE_LIMIT"),
)
DEFAULT_BRANCH_RULE = "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
SHA = "3f2a9c0d1e4b5a6978877665544332211a0b9c8d"
KEY = "11111111-2222-3333-4444-555555555555"
REPO = "rg.fr-par.scw.cloud/acme/website"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    """A workflow's ``on:``, which YAML 1.1 (PyYAML) reads as the key True."""
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict)
    return value


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """GitLab's ``extends``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(doc: dict[str, Any], name: str) -> dict[str, Any]:
    job = doc[name]
    parents = job.get("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    resolved: dict[str, Any] = {}
    for parent in parents:
        resolved = merge(resolved, resolve(doc, parent))
    return merge(resolved, {k: v for k, v in job.items() if k != "extends"})


def gitlab_jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resolve(doc, name) for name in doc if name not in GITLAB_RESERVED and not name.startswith(".")
    }


def gitlab_script(job: dict[str, Any]) -> str:
    return "\n".join([*job.get("before_script", []), *job["script"]])


def global_variables(doc: dict[str, Any]) -> dict[str, str]:
    raw = doc.get("variables", {})
    return {k: str(v["value"] if isinstance(v, dict) else v) for k, v in raw.items()}


def github_step(workflow: dict[Any, Any], job: str, name_prefix: str) -> dict[str, Any]:
    steps = workflow["jobs"][job]["steps"]
    return next(s for s in steps if str(s.get("name", "")).startswith(name_prefix))


def github_envs(workflow: dict[Any, Any]) -> Iterator[dict[str, Any]]:
    """Every ``env`` mapping of a workflow: its own, its jobs' and their steps'."""
    yield workflow.get("env", {})
    for job in workflow["jobs"].values():
        yield job.get("env", {})
        for step in job.get("steps", []):
            yield step.get("env", {})


# --------------------------------------------------------------------------------------------
# Checkers: each returns its problems, so a test can show it reports a broken copy
# --------------------------------------------------------------------------------------------


def image_problem(where: str, ref: str) -> str | None:
    """Pinned: a version tag (with a digit, never latest), optionally a digest; a variable only
    for the ops image, which its project sets by digest."""
    if ref.startswith("$"):
        return None if ref in VARIABLE_IMAGES else f"{where}: image from an unknown variable {ref}"
    name = ref.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{where}: {ref} has no tag"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or not re.search(r"\d", tag):
        return f"{where}: {ref} is not pinned to a version tag"
    return None


def gitlab_images(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for name, job in gitlab_jobs(doc).items():
        image = job.get("image")
        if image is not None:
            yield name, image["name"] if isinstance(image, dict) else image
        for service in job.get("services", []):
            yield f"{name} service", service["name"] if isinstance(service, dict) else service


def github_images(workflow: dict[Any, Any]) -> Iterator[tuple[str, str]]:
    for name, job in workflow["jobs"].items():
        container = job.get("container")
        if container is not None:
            yield name, container["image"] if isinstance(container, dict) else container
        for service_name, service in job.get("services", {}).items():
            yield f"{name} service {service_name}", service["image"]
        for step in job.get("steps", []):
            uses = step.get("uses", "")
            if uses.startswith("docker://"):
                yield f"{name} step", uses.removeprefix("docker://")


def action_problems(workflow: dict[Any, Any]) -> list[str]:
    """Actions pinned to a release (vX.Y.Z) or a commit SHA, never a branch or a major tag."""
    problems = []
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses is None or uses.startswith(("docker://", "./")):
                continue
            ref = uses.partition("@")[2]
            if not re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", ref):
                problems.append(f"{name}: {uses} is not pinned to a release or a commit")
    return problems


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) for every mapping entry, and (path, None, value) for list items."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield path, None, value
            yield from _walk(value, f"{path}[{index}]")


FORBIDDEN_TEXT = (
    (re.compile(r"--privileged\b"), "--privileged"),
    (re.compile(r"docker\.sock|/var/run/docker"), "a Docker socket"),
    (re.compile(r"(?<![a-z])dind(?![a-z])"), "Docker-in-Docker"),
    (re.compile(r"--cap-add|SYS_ADMIN"), "added capabilities"),
)


def privilege_problems(doc: dict[Any, Any]) -> list[str]:
    """No `privileged` key anywhere, no Docker daemon (dind, DOCKER_HOST) or socket, no
    --privileged or added capabilities in any value (scripts and container options included)."""
    problems = []
    for path, key, value in _walk(doc):
        if key == "privileged":
            problems.append(f"{path}: privileged")
        if key == "DOCKER_HOST":
            problems.append(f"{path}: DOCKER_HOST (a Docker daemon)")
        if isinstance(value, str):
            problems += [f"{path}.{key}: {what}" for pattern, what in FORBIDDEN_TEXT if pattern.search(value)]
    return problems


def _needs(job: dict[str, Any]) -> dict[str, Any]:
    needs = job.get("needs", [])
    needs = [needs] if isinstance(needs, str) else needs
    return {(n["job"] if isinstance(n, dict) else n): n for n in needs}


def gitlab_push_problems(doc: dict[str, Any]) -> list[str]:
    jobs, problems = gitlab_jobs(doc), []
    push, needs = jobs[PUSH], _needs(jobs[PUSH])
    if SCAN not in needs:
        problems.append(f"{PUSH} does not need {SCAN}")
    build_need = needs.get(BUILD)
    if not isinstance(build_need, dict) or build_need.get("artifacts") is not True:
        problems.append(f"{PUSH} must take {BUILD}'s artifact (the scanned tarball)")
    stages = doc.get("stages", [])
    order = [stages.index(jobs[name]["stage"]) for name in (BUILD, SCAN, PUSH)]
    if order != sorted(set(order)):
        problems.append(f"stages out of order: build, scan, push are {order}")
    problems += default_branch_only_problems(PUSH, push)
    return problems


def default_branch_only_problems(name: str, job: dict[str, Any]) -> list[str]:
    if "only" in job or "except" in job:
        return [f"{name}: only/except instead of rules"]
    rules = [r for r in job.get("rules", []) if r.get("when") != "never"]
    if not rules:
        return [f"{name}: no rules, so it runs in every pipeline"]
    problems = []
    for rule in rules:
        condition = rule.get("if", "")
        if DEFAULT_BRANCH_RULE not in condition or "merge_request_event" in condition:
            problems.append(f"{name}: rule {condition!r} is not limited to the default branch")
    return problems


GITHUB_DEFAULT_BRANCH_PUSH = (
    "github.event_name == 'push'",
    "format('refs/heads/{0}', github.event.repository.default_branch)",
)
STATUS_FUNCTIONS = re.compile(r"\b(always|failure|cancelled)\(\)")


def github_push_problems(workflow: dict[Any, Any]) -> list[str]:
    """One job: the push step comes after the build and scan steps, none of which may fail without
    stopping the job, and runs for pushes to the default branch only (steps stop at the first
    failure unless a status function or continue-on-error says otherwise)."""
    steps = workflow["jobs"]["build"]["steps"]
    names = [str(step.get("name", "")) for step in steps]
    where = {
        p: next((i for i, n in enumerate(names) if n.startswith(p)), -1) for p in ("Build", "Scan", "Push")
    }
    if -1 in where.values():
        return [f"no build, scan or push step: {names}"]
    problems = []
    if not where["Build"] < where["Scan"] < where["Push"]:
        problems.append(f"steps out of order: build, scan, push at {list(where.values())}")
    for step in steps[: where["Push"]]:
        if step.get("continue-on-error") or STATUS_FUNCTIONS.search(str(step.get("if", ""))):
            problems.append(f"{step.get('name')}: may fail without stopping the push")
    condition = str(steps[where["Push"]].get("if", ""))
    default_branch_only = all(part in condition for part in GITHUB_DEFAULT_BRANCH_PUSH)
    if not default_branch_only or STATUS_FUNCTIONS.search(condition):
        problems.append(f"push runs beyond default-branch pushes after a passed scan: if {condition!r}")
    return problems


def trivy_problems(script: str, severity_variable: str = "SCAN_SEVERITY") -> list[str]:
    calls = [line for line in script.splitlines() if re.match(r"\s*trivy\s+image\b", line)]
    if not calls:
        return ["no `trivy image` call"]
    problems = [
        f"trivy lacks {flag}: {call.strip()}"
        for call in calls
        for flag in ("--exit-code 1", "--ignore-unfixed", "--severity ")
        if flag not in call
    ]
    if severity_variable not in script:
        problems.append(f"the scan ignores {severity_variable}")
    return problems


CACHE_IMPORT = re.compile(r'--import-cache\s+"?type=registry,ref=\$\{IMAGE_REPO\}:buildcache"?(\s|$)')
CACHE_EXPORT = re.compile(r'--export-cache\s+"?type=registry,ref=\$\{IMAGE_REPO\}:buildcache,mode=max')


def cache_problems(script: str) -> list[str]:
    problems = []
    if not CACHE_IMPORT.search(script):
        problems.append("the build does not import the registry cache")
    if not CACHE_EXPORT.search(script):
        problems.append("the build does not export the registry cache (mode=max)")
    if re.search(r"type=local|type=inline|type=gha", script):
        problems.append("a build cache outside the registry")
    return problems


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match[1]) * units.get(match[2] or "", 1)


def resource_problems(name: str, job: dict[str, Any]) -> list[str]:
    variables, problems = job.get("variables", {}), []
    for request, limit in KUBERNETES_RESOURCES:
        missing = [v for v in (request, limit) if v not in variables]
        if missing:
            problems.append(f"{name}: no {', '.join(missing)}")
        elif quantity(variables[request]) > quantity(variables[limit]):
            problems.append(f"{name}: {request} above {limit}")
    return problems


def schedule_problems(name: str, job: dict[str, Any]) -> list[str]:
    rules = [r for r in job.get("rules", []) if r.get("when") != "never"]
    if not rules:
        return [f"{name}: no rules"]
    wanted = ('$CI_PIPELINE_SOURCE == "schedule"', f'$PLATFORM_JOB == "{name}"')
    return [
        f"{name}: rule {rule.get('if')!r} does not select schedules with PLATFORM_JOB={name}"
        for rule in rules
        if not all(part in rule.get("if", "") for part in wanted)
    ]


# --------------------------------------------------------------------------------------------
# Schema validation (check-jsonschema)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def check_jsonschema() -> Path:
    if not CHECK_JSONSCHEMA.is_file():
        reason = (
            f"check-jsonschema not installed at {CHECK_JSONSCHEMA} (pip install check-jsonschema==0.39.0)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHECK_JSONSCHEMA


def validate(tool: Path, schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), "--builtin-schema", schema, "--color", "never", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: p.name)
def test_gitlab_file_is_valid_gitlab_ci(check_jsonschema: Path, path: Path) -> None:
    done = validate(check_jsonschema, "vendor.gitlab-ci", path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", GITHUB_FILES, ids=lambda p: p.name)
def test_github_workflow_is_valid(check_jsonschema: Path, path: Path) -> None:
    done = validate(check_jsonschema, "vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr
    timeouts = validate(check_jsonschema, "custom.github-workflows-require-timeout", path)
    assert timeouts.returncode == 0, timeouts.stdout + timeouts.stderr


@pytest.mark.parametrize(
    ("path", "schema", "anchor", "unknown"),
    [
        (GITLAB_BUILD, "vendor.gitlab-ci", f"\n{BUILD}:\n", "  privileged: true\n"),
        (GITLAB_GITOPS, "vendor.gitlab-ci", "\nwriteback-check:\n", "  privileged: true\n"),
        (GITHUB_BUILD, "vendor.github-workflows", "\n  build:\n", "    privileged: true\n"),
        (GITHUB_MERGE, "vendor.github-workflows", "\n  merge-when-green:\n", "    privileged: true\n"),
    ],
    ids=["gitlab-build", "gitlab-gitops", "github-build", "github-merge-when-green"],
)
def test_validator_refuses_an_unknown_job_key(
    check_jsonschema: Path, tmp_path: Path, *, path: Path, schema: str, anchor: str, unknown: str
) -> None:
    """A text edit of the real file (the rest byte for byte): one unknown key in one job."""
    text = path.read_text()
    assert text.count(anchor) == 1
    broken = tmp_path / path.name
    broken.write_text(text.replace(anchor, anchor + unknown))
    done = validate(check_jsonschema, schema, broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'privileged' was unexpected" in done.stdout


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", (*GITLAB_FILES, *GITHUB_FILES), ids=lambda p: p.name)
def test_nothing_privileged_and_no_docker_daemon(path: Path) -> None:
    assert privilege_problems(load(path)) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[BUILD].update(services=["docker.io/library/docker:27-dind"]),
        lambda d: d[BUILD]["variables"].update(DOCKER_HOST="tcp://docker:2375"),
        lambda d: d[BUILD]["script"].append("ls /var/run/docker.sock"),
        lambda d: d[BUILD].update(privileged=True),
    ],
    ids=["dind-service", "docker-host", "docker-socket", "privileged-key"],
)
def test_privilege_checker_reports_a_broken_copy(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = load(GITLAB_BUILD)
    mutate(doc)
    assert privilege_problems(doc)


def container_problems(workflow: dict[Any, Any]) -> list[str]:
    """The scale set has no container mode (scw_platform/ci.py): a job container, a service or a
    `docker://` step would need a Docker daemon, and the job would never start."""
    problems = []
    for name, job in workflow["jobs"].items():
        problems += [f"{name}: {key}" for key in ("container", "services") if key in job]
        problems += [
            f"{name}: step {step.get('name')!r} uses {step['uses']}"
            for step in job.get("steps", [])
            if str(step.get("uses", "")).startswith("docker://")
        ]
    return problems


@pytest.mark.parametrize(
    "path",
    [
        GITHUB_BUILD,
        GITHUB_MERGE,
    ],
    ids=lambda p: p.name,
)
def test_github_jobs_run_in_the_runner_container(path: Path) -> None:
    assert container_problems(load(path)) == []


def test_container_checker_reports_a_broken_copy() -> None:
    workflow = load(GITHUB_BUILD)
    workflow["jobs"]["build"]["container"] = {"image": "docker.io/moby/buildkit:v0.34.0-rootless"}
    workflow["jobs"]["build"]["services"] = {"daemon": {"image": "docker.io/library/docker:29"}}
    workflow["jobs"]["build"]["steps"].append({"name": "x", "uses": "docker://alpine:3.22"})
    assert len(container_problems(workflow)) == 3


def test_rootless_buildkit_runs_without_the_process_sandbox() -> None:
    """Upstream: with --oci-worker-no-process-sandbox, seccomp and AppArmor unconfined, and
    nothing else (https://github.com/moby/buildkit/blob/master/docs/rootless.md). On GitHub that
    is the scale set's BuildKit container (scw_platform/ci.py), whose release buildctl matches."""
    workflow = load(GITHUB_BUILD)
    assert "--oci-worker-no-process-sandbox" in ci.ARC_BUILDKIT_ARGS
    assert ci.ARC_BUILDKIT_IMAGE.endswith(f":{workflow['env']['BUILDKIT_VERSION']}-rootless")
    assert not any("BUILDKITD_FLAGS" in env for env in github_envs(workflow))
    build = github_step(workflow, "build", "Build")["run"]
    assert "buildctl build" in build and "buildctl-daemonless" not in build
    gitlab_build = gitlab_jobs(load(GITLAB_BUILD))[BUILD]
    assert gitlab_build["variables"]["BUILDKITD_FLAGS"] == "--oci-worker-no-process-sandbox"
    assert gitlab_build["image"]["name"].endswith("-rootless")


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: p.name)
def test_gitlab_images_are_pinned(path: Path) -> None:
    images = list(gitlab_images(load(path)))
    assert images
    assert [p for p in (image_problem(w, r) for w, r in images) if p] == []


@pytest.mark.parametrize("path", GITHUB_FILES, ids=lambda p: p.name)
def test_github_images_and_actions_are_pinned(path: Path) -> None:
    workflow = load(path)
    images = list(github_images(workflow))
    assert [p for p in (image_problem(w, r) for w, r in images) if p] == []
    assert action_problems(workflow) == []
    # Both run in the runner container: no images; the build pins its clients, merge-when-green
    # takes the tools from the platform repository at a pinned release.
    assert images == []


CLIENT_PINS = (("BUILDKIT", r"v\d+\.\d+\.\d+"), ("TRIVY", r"\d+\.\d+\.\d+"), ("CRANE", r"v\d+\.\d+\.\d+"))


def test_github_clients_are_pinned_with_a_checksum_each() -> None:
    """A release version and, beside it, its sha256: empty until filled in from the release's
    checksums (the fetch step then fails, below), never anything but 64 hex digits."""
    env = load(GITHUB_BUILD)["env"]
    assert env["TRIVY_VERSION"] == "0.75.0" and env["BUILDKIT_VERSION"] == "v0.34.0"
    for tool, version in CLIENT_PINS:
        assert re.fullmatch(version, env[f"{tool}_VERSION"]), tool
        assert re.fullmatch(r"|[0-9a-f]{64}", env[f"{tool}_SHA256"]), tool
    fetch = github_step(load(GITHUB_BUILD), "build", "Fetch")["run"]
    urls = re.findall(r'"(https://[^"]+)"', fetch)
    assert len(urls) == 3 and all("/releases/download/" in url for url in urls)
    assert "--proto '=https'" in fetch and "sha256sum --check" in fetch


@pytest.mark.parametrize(
    "ref",
    [
        "docker.io/moby/buildkit:latest",
        "docker.io/moby/buildkit:rootless",
        "docker.io/aquasec/trivy",
        "registry.example:5000/trivy",
        "$SOME_IMAGE",
    ],
)
def test_image_checker_refuses_unpinned_references(ref: str) -> None:
    assert image_problem("job", ref) is not None


def test_image_checker_accepts_tags_and_digests() -> None:
    digest = "sha256:" + "a" * 64
    for ref in (
        "quay.io/skopeo/stable:v1.22.3",
        f"docker.io/aquasec/trivy:0.75.0@{digest}",
        "$PLATFORM_OPS_IMAGE",
    ):
        assert image_problem("job", ref) is None


def test_action_checker_refuses_moving_refs() -> None:
    workflow = {"jobs": {"j": {"steps": [{"uses": "actions/checkout@v7"}, {"uses": "actions/cache@main"}]}}}
    assert len(action_problems(workflow)) == 2


def test_ops_image_variable_has_no_unpinned_default() -> None:
    """The GitOps jobs' image comes from the project (by digest): the file sets no default."""
    assert "PLATFORM_OPS_IMAGE" not in global_variables(load(GITLAB_GITOPS))
    assert "PLATFORM_OPS_IMAGE" not in load(GITHUB_MERGE).get("env", {})


def test_gitlab_push_needs_the_scan_and_runs_on_the_default_branch_only() -> None:
    doc = load(GITLAB_BUILD)
    assert gitlab_push_problems(doc) == []
    jobs = gitlab_jobs(doc)
    for name in (BUILD, SCAN):
        conditions = [rule["if"] for rule in jobs[name]["rules"]]
        assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions
        assert any(DEFAULT_BRANCH_RULE in c for c in conditions)
    assert _needs(jobs[SCAN]) == {BUILD: {"job": BUILD, "artifacts": True}}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[PUSH].update(needs=[{"job": BUILD, "artifacts": True}]),
        lambda d: d[PUSH].update(needs=[BUILD, SCAN]),
        lambda d: d[PUSH]["rules"].append({"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}),
        lambda d: d[PUSH].update(rules=[{"when": "always"}]),
        lambda d: d[PUSH].pop("rules"),
        lambda d: d.update(stages=["build", "push", "scan"]),
    ],
    ids=["no-scan", "no-artifact", "merge-requests", "always", "no-rules", "stage-order"],
)
def test_gitlab_push_checker_reports_a_broken_copy(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = load(GITLAB_BUILD)
    mutate(doc)
    assert gitlab_push_problems(doc)


def test_github_push_needs_the_scan_and_runs_on_default_branch_pushes_only() -> None:
    workflow = load(GITHUB_BUILD)
    assert github_push_problems(workflow) == []
    assert list(workflow["jobs"]) == ["build"] and "if" not in workflow["jobs"]["build"]
    for prefix in ("Fetch", "Build", "Scan"):
        assert "if" not in github_step(workflow, "build", prefix), prefix
    record = github_step(workflow, "build", "Record")
    assert record["if"] == github_step(workflow, "build", "Push")["if"]
    broken = copy.deepcopy(workflow)
    steps = broken["jobs"]["build"]["steps"]
    steps[2], steps[3] = steps[3], steps[2]
    steps[2]["if"] = "always()"
    assert len(github_push_problems(broken)) == 2
    lenient = copy.deepcopy(workflow)
    lenient["jobs"]["build"]["steps"][2]["continue-on-error"] = True
    assert github_push_problems(lenient) == [
        "Scan (fails on fixable vulnerabilities of the chosen severities): may fail without stopping the push"
    ]


def test_trivy_fails_on_fixable_vulnerabilities_of_the_chosen_severity() -> None:
    gitlab = gitlab_jobs(load(GITLAB_BUILD))
    assert global_variables(load(GITLAB_BUILD))["SCAN_SEVERITY"] == "CRITICAL"
    assert trivy_problems(gitlab_script(gitlab[SCAN])) == []
    workflow = load(GITHUB_BUILD)
    scan = github_step(workflow, "build", "Scan")
    assert trivy_problems(scan["run"]) == []
    assert trivy_problems(scan["run"], "PLATFORM_SCAN_SEVERITY") == []
    assert workflow["jobs"]["build"]["env"]["SCAN_SEVERITY"] == "${{ inputs.scan-severity }}"
    assert triggers(workflow)["workflow_call"]["inputs"]["scan-severity"]["default"] == "CRITICAL"
    # The floor is the runner's (the scale set's env): the workflow never sets it.
    assert not any("PLATFORM_SCAN_SEVERITY" in env for env in github_envs(workflow))
    broken = gitlab_script(gitlab[SCAN]).replace("--exit-code 1", "--exit-code 0")
    assert trivy_problems(broken) == [f"trivy lacks --exit-code 1: {_trivy_line(broken)}"]
    assert trivy_problems(broken.replace("SCAN_SEVERITY", "X"))[-1] == "the scan ignores SCAN_SEVERITY"


def _trivy_line(script: str) -> str:
    return next(line.strip() for line in script.splitlines() if line.strip().startswith("trivy image"))


def test_the_build_cache_lives_in_the_registry() -> None:
    gitlab_build = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[BUILD])
    github_build = github_step(load(GITHUB_BUILD), "build", "Build")["run"]
    assert cache_problems(gitlab_build) == []
    assert cache_problems(github_build) == []
    assert cache_problems(gitlab_build.replace("--export-cache", "--no-cache")) == [
        "the build does not export the registry cache (mode=max)"
    ]
    assert "a build cache outside the registry" in cache_problems(
        gitlab_build + "\n--export-cache type=local,dest=/cache"
    )


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: p.name)
def test_gitlab_jobs_set_resource_requests_and_limits(path: Path) -> None:
    jobs = gitlab_jobs(load(path))
    assert jobs
    assert [p for name, job in jobs.items() for p in resource_problems(name, job)] == []


def test_resource_checker_reports_a_broken_copy() -> None:
    job = copy.deepcopy(gitlab_jobs(load(GITLAB_BUILD))[BUILD])
    del job["variables"]["KUBERNETES_EPHEMERAL_STORAGE_LIMIT"]
    job["variables"]["KUBERNETES_MEMORY_REQUEST"] = "64Gi"
    assert resource_problems(BUILD, job) == [
        f"{BUILD}: KUBERNETES_MEMORY_REQUEST above KUBERNETES_MEMORY_LIMIT",
        f"{BUILD}: no KUBERNETES_EPHEMERAL_STORAGE_LIMIT",
    ]


def test_gitlab_limits_fit_the_runners_maximum() -> None:
    """GitLab Runner refuses a job's resource overwrite above its *_overwrite_max_allowed, which
    the tooling stack sets to platform:ci.build's limits (scw_platform/ci.py)."""
    config = load(ROOT / "Pulumi.tooling.yaml").get("config", {})
    build = (config.get("platform:ci") or {}).get("build")
    if not build:
        pytest.skip("Pulumi.tooling.yaml sets no platform:ci.build")
    maximum = {
        "KUBERNETES_CPU_LIMIT": quantity(build["cpuLimit"]),
        "KUBERNETES_MEMORY_LIMIT": quantity(build["memoryLimit"]),
        "KUBERNETES_EPHEMERAL_STORAGE_LIMIT": quantity(f"{build['ephemeralStorageLimitGb']}Gi"),
    }
    for path in GITLAB_FILES:
        for name, job in gitlab_jobs(load(path)).items():
            for variable, most in maximum.items():
                assert quantity(job["variables"][variable]) <= most, f"{path.name} {name} {variable}"


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda p: p.name)
def test_gitlab_jobs_run_on_the_builders_runners(path: Path) -> None:
    for name, job in gitlab_jobs(load(path)).items():
        assert job.get("tags") == [RUNNER_TAG], name


@pytest.mark.parametrize("path", GITHUB_FILES, ids=lambda p: p.name)
def test_github_jobs_run_on_the_builders_scale_set(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        assert job.get("runs-on") == RUNNER_TAG, name


def _command(job: dict[str, Any]) -> str:
    return job["script"][-1].replace('"', "")


def test_gitops_jobs_run_the_ops_tools_as_specified() -> None:
    jobs = gitlab_jobs(load(GITLAB_GITOPS))
    assert set(jobs) == {"writeback-check", "merge-when-green", "registry-cleanup"}
    assert _command(jobs["writeback-check"]) == (
        "python -m ops.writeback_check --repo . --target $TARGET_BRANCH --branch HEAD"
    )
    assert jobs["writeback-check"]["script"][0] == (
        'TARGET_BRANCH="${CI_MERGE_REQUEST_TARGET_BRANCH_NAME:-$CI_DEFAULT_BRANCH}"'
    )
    assert _command(jobs["merge-when-green"]) == (
        "python -m ops.merge_when_green --provider gitlab --url $CI_SERVER_URL"
        " --project $CI_PROJECT_PATH --target $CI_DEFAULT_BRANCH"
    )
    assert _command(jobs["registry-cleanup"]) == (
        "python -m ops.registry_cleanup --region $SCW_REGION --namespace $REGISTRY_NAMESPACE"
        " --gitops . --keep $KEEP_TAGS --older-than-days $KEEP_DAYS"
    )
    for name, job in jobs.items():
        assert job["image"] == "$PLATFORM_OPS_IMAGE", name
        assert job["variables"]["PYTHONSAFEPATH"] == "1", name
    assert "GITOPS_API_TOKEN" not in gitlab_script(jobs["merge-when-green"])


_WRITE_BACK_PUSH = '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH =~ /^image-updater-/'


def test_gitops_writeback_gate_runs_on_image_updater_branches_only() -> None:
    """On their merge requests, and on the push of a new write-back branch."""
    rules = gitlab_jobs(load(GITLAB_GITOPS))["writeback-check"]["rules"]
    assert rules == [
        {
            "if": '$CI_PIPELINE_SOURCE == "merge_request_event"'
            " && $CI_MERGE_REQUEST_SOURCE_BRANCH_NAME =~ /^image-updater-/"
        },
        {"if": _WRITE_BACK_PUSH},
    ]


def push_gate_problems(doc: dict[str, Any]) -> list[str]:
    """A write-back branch's push pipeline must run the gate before merge-when-green: GitLab may
    count that pipeline for the merge request merge-when-green opens, and a green pipeline without
    the gate would merge at once. And only while no merge request is open (no duplicate pipeline)."""
    problems = []
    jobs = gitlab_jobs(doc)
    stages = doc["stages"]
    pushed = {name for name, job in jobs.items() if {"if": _WRITE_BACK_PUSH} in job.get("rules", [])}
    if pushed != {"writeback-check", "merge-when-green"}:
        problems.append(f"jobs on a write-back push: {sorted(pushed)}")
    elif stages.index(jobs["writeback-check"]["stage"]) >= stages.index(jobs["merge-when-green"]["stage"]):
        problems.append("merge-when-green does not wait for the gate's stage")
    if jobs.get("merge-when-green", {}).get("allow_failure") or jobs.get("writeback-check", {}).get(
        "allow_failure"
    ):
        problems.append("a job of the push pipeline may fail without failing it")
    workflow = [r.get("if", "") for r in doc["workflow"]["rules"]]
    if f"{_WRITE_BACK_PUSH} && $CI_OPEN_MERGE_REQUESTS == null" not in workflow:
        problems.append("workflow: push pipelines not limited to write-back branches without a merge request")
    if any(rule == '$CI_PIPELINE_SOURCE == "push"' for rule in workflow):
        problems.append("workflow: every push starts a pipeline")
    return problems


def test_a_write_back_push_opens_its_merge_request_after_the_gate() -> None:
    assert push_gate_problems(load(GITLAB_GITOPS)) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["writeback-check"]["rules"].pop(),  # the gate skips the push pipeline
        lambda d: d["merge-when-green"].__setitem__("stage", "gate"),  # no longer after the gate
        lambda d: d["writeback-check"].__setitem__("allow_failure", True),
        lambda d: d["workflow"]["rules"].__setitem__(2, {"if": '$CI_PIPELINE_SOURCE == "push"'}),
    ],
    ids=["gate-skipped", "same-stage", "gate-may-fail", "every-push"],
)
def test_push_gate_checker_reports_a_broken_copy(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(load(GITLAB_GITOPS))
    mutate(doc)
    assert push_gate_problems(doc)


def test_github_merge_when_green_never_runs_a_pushed_branchs_copy() -> None:
    """A push-triggered run would execute the write-back branch's copy of the workflow with the
    API token (an SSH deploy key may change .github/workflows): the default branch's schedule only."""
    on = triggers(load(GITHUB_MERGE))
    assert "push" not in on and "pull_request" not in on
    # The fallback stays, at GitHub's coarsest documented-safe period or finer.
    (schedule,) = on["schedule"]
    assert schedule["cron"] == "*/10 * * * *"


def test_gitops_schedule_jobs_select_on_platform_job() -> None:
    jobs = gitlab_jobs(load(GITLAB_GITOPS))
    for name in ("merge-when-green", "registry-cleanup"):
        job = copy.deepcopy(jobs[name])
        # merge-when-green's push rule is checked above (the write-back push pipeline).
        job["rules"] = [r for r in job["rules"] if r.get("if") != _WRITE_BACK_PUSH]
        assert schedule_problems(name, job) == []
    broken = copy.deepcopy(jobs["registry-cleanup"])
    broken["rules"] = [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert schedule_problems("registry-cleanup", broken)
    assert schedule_problems("merge-when-green", jobs["registry-cleanup"])


def test_template_flags_are_the_tools_own() -> None:
    """Each command's flags parse with the tool's own argument parser (placeholders for the CI
    variables), so a renamed flag fails here rather than in a scheduled pipeline."""
    from ops import writeback_check

    merge_when_green = pytest.importorskip("ops.merge_when_green")
    registry_cleanup = pytest.importorskip("ops.registry_cleanup")
    parsers = {
        "ops.writeback_check": writeback_check.build_parser(),
        "ops.merge_when_green": merge_when_green.build_parser(),
        "ops.registry_cleanup": registry_cleanup.build_parser(),
    }
    commands = [_command(job) for job in gitlab_jobs(load(GITLAB_GITOPS)).values()]
    github = github_step(load(GITHUB_MERGE), "merge-when-green", "Open")["run"]
    joined = github.replace("\\\n", " ").replace('"', "").splitlines()
    commands += [" ".join(line.split()) for line in joined if line.strip().startswith("python -m")]
    assert len(commands) == 4
    for command in commands:
        words = command.split()
        assert words[:2] == ["python", "-m"]
        # Numbers fit every flag's type; DRY_RUN holds the flag itself or nothing.
        values = [
            re.sub(r"\$\{?(\w+)\}?", lambda m: "--dry-run" if m[1] == "DRY_RUN" else "10", w)
            for w in words[3:]
        ]
        parsed = parsers[words[2]].parse_args(values)
        assert parsed is not None


def test_github_merge_when_green_is_scheduled_and_takes_the_token_from_a_secret() -> None:
    workflow = load(GITHUB_MERGE)
    on = triggers(workflow)
    assert on["schedule"] and "workflow_dispatch" in on
    job = workflow["jobs"]["merge-when-green"]
    assert "container" not in job, "the scale set starts no job containers"
    assert job["env"]["GITOPS_API_TOKEN"] == "${{ secrets.GITOPS_API_TOKEN }}"
    checkout, python, install, step = job["steps"]
    # The tools come from the platform repository at a pinned release; the GitOps repository (and
    # so a write-back branch) is never checked out.
    assert checkout["with"]["repository"] == "${{ vars.PLATFORM_REPOSITORY }}"
    assert checkout["with"]["ref"] == "${{ vars.PLATFORM_REF }}"
    assert checkout["with"]["persist-credentials"] is False
    assert python["uses"].startswith("actions/setup-python@v") and python["with"]["python-version"] == "3.11"
    assert "-r platform/ops/requirements.txt" in install["run"]
    assert step["working-directory"] == "platform"
    run = step["run"]
    assert "--provider github" in run and "GITOPS_API_TOKEN" not in run and "${{" not in run


def test_scripts_take_no_expression_straight_into_the_shell() -> None:
    """Inputs reach the GitHub scripts through env only (no `${{ }}` inside `run`): an input
    value cannot become shell code."""
    for path in GITHUB_FILES:
        for job in load(path)["jobs"].values():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), step.get("name")


# --------------------------------------------------------------------------------------------
# The ops image recipe and its pins
# --------------------------------------------------------------------------------------------


def test_ops_dockerfile() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert len(froms) == 1 and image_problem("FROM", froms[0]) is None
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim", froms[0])
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and all(re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user) for user in users), users
    assert "RUN pip install --no-cache-dir -r ops/requirements.txt" in instructions
    assert "COPY ops/ ops/" in instructions
    text = DOCKERFILE.read_text()
    assert "PYTHONSAFEPATH=1" in text and "PYTHONPATH=/opt/platform" in text
    assert not any(line.lower().startswith("# syntax=") for line in lines)


def test_ops_requirements_are_all_pinned() -> None:
    pins: dict[str, str] = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+-]*)", line)
        assert match, f"not an exact pin: {line!r}"
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match[2]
    assert {"python-gitlab", "pygithub", "scaleway", "pyyaml"} <= set(pins)


def test_safe_path_keeps_a_checkout_from_shadowing_the_tools(tmp_path: Path) -> None:
    """The GitOps jobs run `python -m ops.<tool>` inside a checkout that a write-back branch
    controls. Without PYTHONSAFEPATH an `ops/` there wins over the image's; with it, it cannot."""
    shadow = tmp_path / "ops"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "writeback_check.py").write_text("print('SHADOWED')\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONSAFEPATH", "PYTHONPATH"}}
    command = [sys.executable, "-m", "ops.writeback_check", "--help"]

    def run(**extra: str) -> str:
        done = subprocess.run(
            command, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, check=False
        )
        return done.stdout

    assert run(PYTHONPATH=str(ROOT)).strip() == "SHADOWED"
    assert "usage: python -m ops.writeback_check" in run(PYTHONPATH=str(ROOT), PYTHONSAFEPATH="1")


# --------------------------------------------------------------------------------------------
# Behaviour: the jobs' scripts against stub tools
# --------------------------------------------------------------------------------------------

BUILDCTL_STUB = """#!/bin/sh
{ echo "BUILDKITD_FLAGS=$BUILDKITD_FLAGS"; for a in "$@"; do echo "ARG=$a"; done; } > "$STUB_LOG"
if [ -n "${DOCKER_CONFIG:-}" ] && [ -f "$DOCKER_CONFIG/config.json" ]; then
  cp "$DOCKER_CONFIG/config.json" "$STUB_LOG.auth"
fi
for a in "$@"; do
  case "$a" in type=oci,dest=*) dest="${a#type=oci,dest=}"; dest="${dest%%,*}" ;; esac
done
work=$(mktemp -d)
printf '{"schemaVersion":2,"manifests":[]}' > "$work/index.json"
tar -cf "$dest" -C "$work" index.json
"""
TRIVY_STUB = """#!/bin/sh
{ [ -f oci-layout/index.json ] && echo LAYOUT; for a in "$@"; do echo "ARG=$a"; done; } > "$STUB_LOG"
exit "${STUB_EXIT:-0}"
"""
SKOPEO_STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
for a in "$@"; do last="$a"; done
case "$1" in
  inspect)
    case "$last" in
      oci-archive:*) echo "$STUB_SCANNED" ;;
      docker://*) [ -n "${STUB_EXISTING:-}" ] || exit 1; echo "$STUB_EXISTING" ;;
    esac ;;
  copy)
    prev=""
    for a in "$@"; do
      [ "$prev" = "--digestfile" ] && printf '%s' "${STUB_PUSHED:-$STUB_SCANNED}" > "$a"
      [ "$prev" = "--authfile" ] && cp "$a" "$STUB_LOG.auth"
      prev="$a"
    done ;;
esac
exit 0
"""
GITHUB_BUILDCTL_STUB = """#!/bin/sh
if [ "$1" = debug ]; then
  echo "$*" >> "$STUB_LOG.debug"
  exit "${STUB_WORKERS_EXIT:-0}"
fi
{ echo "BUILDKIT_HOST=$BUILDKIT_HOST"; for a in "$@"; do echo "ARG=$a"; done; } > "$STUB_LOG"
if [ -f "$DOCKER_CONFIG/config.json" ]; then
  cp "$DOCKER_CONFIG/config.json" "$STUB_LOG.auth"
fi
for a in "$@"; do
  case "$a" in type=oci,dest=*) dest="${a#type=oci,dest=}"; dest="${dest%%,*}" ;; esac
done
work=$(mktemp -d)
printf '{"schemaVersion":2,"manifests":[]}' > "$work/index.json"
tar -cf "$dest" -C "$work" index.json
"""
CRANE_STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
if [ -f "$DOCKER_CONFIG/config.json" ]; then
  cp "$DOCKER_CONFIG/config.json" "$STUB_LOG.auth"
fi
case "$1" in
  digest) [ -n "${STUB_EXISTING:-}" ] || exit 1; echo "$STUB_EXISTING" ;;
  push) echo "${3%@*}@${STUB_PUSHED:-${3##*@}}" ;;
esac
exit 0
"""
#: curl, serving release assets from $STUB_RELEASES by the URL's file name.
CURL_STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
prev=""
for a in "$@"; do
  [ "$prev" = "--output" ] && out="$a"
  prev="$a"
  url="$a"
done
cp "$STUB_RELEASES/${url##*/}" "$out"
"""
UNAME_STUB = """#!/bin/sh
echo "${STUB_MACHINE:-x86_64}"
"""
NOOP_STUB = "#!/bin/sh\nexit 0\n"
SCANNED = "sha256:" + "b" * 64


class Sandbox:
    """A working directory, a home, stub tools first on PATH and their logs."""

    def __init__(self, root: Path) -> None:
        self.root, self.work, self.home, self.bin = root, root / "work", root / "home", root / "bin"
        for directory in (self.work, self.home, self.bin):
            directory.mkdir()
        self.log = root / "stub.log"

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(body)
        path.chmod(0o755)

    def run(self, script: str, env: dict[str, str], shell: str = "sh") -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.home),
            "STUB_LOG": str(self.log),
            "TMPDIR": str(self.root),
        }
        return subprocess.run(
            [shell, "-c", script],
            cwd=self.work,
            env={**base, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def args(self) -> list[str]:
        return [line[4:] for line in self.log.read_text().splitlines() if line.startswith("ARG=")]

    def auth(self) -> dict[str, Any] | None:
        path = Path(f"{self.log}.auth")
        return json.loads(path.read_text()) if path.exists() else None

    def image_tar(self, relative: str) -> None:
        target = self.work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        index = self.root / "index.json"
        index.write_text('{"schemaVersion":2,"manifests":[]}')
        with tarfile.open(target, "w") as archive:
            archive.add(index, arcname="index.json")


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def expected_auth(host: str = "rg.fr-par.scw.cloud") -> dict[str, Any]:
    return {"auths": {host: {"auth": base64.b64encode(f"nologin:{KEY}".encode()).decode()}}}


def gitlab_env(job: str, **overrides: str) -> dict[str, str]:
    """The variables GitLab would give the job: the file's globals (one level of ${VAR}
    expansion, as the runner does), the job's own, the includer's and the predefined ones."""
    doc = load(GITLAB_BUILD)
    values = {
        **global_variables(doc),
        "REGISTRY_NAMESPACE": "acme",
        "IMAGE_NAME": "website",
        "CI_COMMIT_SHA": SHA,
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_REF_NAME": "main",
    }
    values.update({k: str(v) for k, v in gitlab_jobs(doc)[job].get("variables", {}).items()})
    values.update(overrides)
    return {k: re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], ""), v) for k, v in values.items()}


def _pair(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_gitlab_build_on_the_default_branch_exports_the_cache(sandbox: Sandbox) -> None:
    sandbox.stub("buildctl-daemonless.sh", BUILDCTL_STUB)
    (sandbox.work / "Dockerfile").write_text("FROM scratch\n")
    script = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[BUILD])
    env = gitlab_env(BUILD, CI_COMMIT_BRANCH="main", SCW_SECRET_KEY=KEY, CI_BUILDS_DIR=str(sandbox.root))
    done = sandbox.run(script, env)
    assert done.returncode == 0, done.stderr
    args = sandbox.args()
    assert _pair(args, "--import-cache") == [f"type=registry,ref={REPO}:buildcache"]
    assert _pair(args, "--export-cache") == [f"type=registry,ref={REPO}:buildcache,mode=max"]
    assert _pair(args, "--output") == [f"type=oci,dest=image.tar,name={REPO}:{SHA}"]
    assert "context=." in args and "dockerfile=." in args and "filename=Dockerfile" in args
    assert "--push" not in " ".join(args) and "push=true" not in " ".join(args)
    flags = sandbox.log.read_text().splitlines()[0]
    assert flags == f"BUILDKITD_FLAGS=--oci-worker-no-process-sandbox --root={sandbox.root}/buildkit-state"
    assert sandbox.auth() == expected_auth()
    assert (sandbox.work / "image.tar").is_file()
    assert KEY not in done.stdout + done.stderr


def test_gitlab_build_of_a_merge_request_only_reads_the_cache(sandbox: Sandbox) -> None:
    sandbox.stub("buildctl-daemonless.sh", BUILDCTL_STUB)
    (sandbox.work / "docker").mkdir()
    (sandbox.work / "docker" / "app.Dockerfile").write_text("FROM scratch\n")
    (sandbox.work / "app").mkdir()
    script = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[BUILD])
    env = gitlab_env(
        BUILD,
        CI_PIPELINE_SOURCE="merge_request_event",
        DOCKERFILE="docker/app.Dockerfile",
        CONTEXT="app",
        CI_BUILDS_DIR=str(sandbox.root),
    )
    done = sandbox.run(script, env)
    assert done.returncode == 0, done.stderr
    args = sandbox.args()
    assert _pair(args, "--import-cache") == [f"type=registry,ref={REPO}:buildcache"]
    assert "--export-cache" not in args
    assert "context=app" in args and "dockerfile=docker" in args and "filename=app.Dockerfile" in args
    assert sandbox.auth() is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"CI_COMMIT_BRANCH": "main"}, "SCW_SECRET_KEY"),
        ({"REGISTRY_NAMESPACE": ""}, "set REGISTRY_NAMESPACE"),
        ({"IMAGE_NAME": "Web Site"}, "set REGISTRY_NAMESPACE"),
        ({"DOCKERFILE": "missing/Dockerfile"}, "no Dockerfile"),
    ],
    ids=["default-branch-without-key", "no-namespace", "bad-image-name", "no-dockerfile"],
)
def test_gitlab_build_refuses_what_it_cannot_build(
    sandbox: Sandbox, overrides: dict[str, str], message: str
) -> None:
    sandbox.stub("buildctl-daemonless.sh", BUILDCTL_STUB)
    (sandbox.work / "Dockerfile").write_text("FROM scratch\n")
    script = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[BUILD])
    done = sandbox.run(script, gitlab_env(BUILD, CI_BUILDS_DIR=str(sandbox.root), **overrides))
    assert done.returncode != 0 and message in done.stderr
    assert not sandbox.log.exists()


def github_build_env(sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    """The step's environment: the workflow's and the job's env, the runner pod's BUILDKIT_HOST
    (scw_platform/ci.py) and the predefined variables."""
    return {
        "IMAGE_REPO": REPO,
        "DEFAULT_BRANCH_PUSH": "false",
        "BUILDKIT_HOST": ci.ARC_BUILDKIT_HOST,
        "CONTEXT": ".",
        "DOCKERFILE": "Dockerfile",
        "SCW_SECRET_KEY": "",
        "GIT_AUTH_TOKEN": "ghs_token",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/website",
        "GITHUB_SHA": SHA,
        **overrides,
    }


def no_registry_login_left(sandbox: Sandbox) -> bool:
    """The steps write the login to a directory of their own (mktemp, TMPDIR is the sandbox)."""
    return not [p for p in sandbox.root.rglob("config.json") if p != Path(f"{sandbox.log}.auth")]


def test_github_build_reads_the_commit_from_git_and_exports_on_default_branch_pushes(
    sandbox: Sandbox,
) -> None:
    sandbox.stub("buildctl", GITHUB_BUILDCTL_STUB)
    step = github_step(load(GITHUB_BUILD), "build", "Build")
    env = github_build_env(
        sandbox, DEFAULT_BRANCH_PUSH="true", SCW_SECRET_KEY=KEY, CONTEXT="./app/", DOCKERFILE="app/Dockerfile"
    )
    done = sandbox.run(step["run"], env, shell=step["shell"])
    assert done.returncode == 0, done.stderr
    # The runner pod's BuildKit container, asked first whether it listens.
    assert sandbox.log.read_text().splitlines()[0] == "BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock"
    assert Path(f"{sandbox.log}.debug").read_text().splitlines() == ["debug workers"]
    args = sandbox.args()
    assert args[0] == "build"
    assert f"context=https://github.com/acme/website.git#{SHA}:app" in args
    assert "filename=Dockerfile" in args
    assert _pair(args, "--secret") == ["id=GIT_AUTH_TOKEN,env=GIT_AUTH_TOKEN"]
    assert _pair(args, "--import-cache") == [f"type=registry,ref={REPO}:buildcache"]
    assert _pair(args, "--export-cache") == [f"type=registry,ref={REPO}:buildcache,mode=max"]
    assert _pair(args, "--output") == [f"type=oci,dest=image/image.tar,name={REPO}:{SHA}"]
    assert "--push" not in " ".join(args) and "push=true" not in " ".join(args)
    assert (sandbox.work / "image" / "image.tar").is_file()
    assert sandbox.auth() == expected_auth()
    assert no_registry_login_left(sandbox)
    assert KEY not in done.stdout + done.stderr


def test_github_build_of_a_pull_request_only_reads_the_cache(sandbox: Sandbox) -> None:
    sandbox.stub("buildctl", GITHUB_BUILDCTL_STUB)
    step = github_step(load(GITHUB_BUILD), "build", "Build")
    done = sandbox.run(step["run"], github_build_env(sandbox), shell=step["shell"])
    assert done.returncode == 0, done.stderr
    args = sandbox.args()
    assert f"context=https://github.com/acme/website.git#{SHA}" in args and "filename=Dockerfile" in args
    assert "--export-cache" not in args and sandbox.auth() is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEFAULT_BRANCH_PUSH": "true"}, "scw-secret-key"),
        ({"CONTEXT": "app", "DOCKERFILE": "docker/Dockerfile"}, "is not inside context"),
        ({"IMAGE_REPO": "rg.fr-par.scw.cloud/website"}, "is no <registry>/<namespace>/<image>"),
        ({"BUILDKIT_HOST": ""}, "BUILDKIT_HOST is not set"),
    ],
    ids=["default-branch-without-key", "dockerfile-outside-context", "no-namespace", "no-buildkit"],
)
def test_github_build_refuses_what_it_cannot_build(
    sandbox: Sandbox, overrides: dict[str, str], message: str
) -> None:
    sandbox.stub("buildctl", GITHUB_BUILDCTL_STUB)
    step = github_step(load(GITHUB_BUILD), "build", "Build")
    done = sandbox.run(step["run"], github_build_env(sandbox, **overrides), shell=step["shell"])
    assert done.returncode != 0 and message in done.stderr
    assert not sandbox.log.exists()


def test_github_build_waits_a_minute_for_buildkit_then_gives_up(sandbox: Sandbox) -> None:
    sandbox.stub("buildctl", GITHUB_BUILDCTL_STUB)
    sandbox.stub("sleep", NOOP_STUB)
    step = github_step(load(GITHUB_BUILD), "build", "Build")
    env = github_build_env(sandbox, DEFAULT_BRANCH_PUSH="true", SCW_SECRET_KEY=KEY, STUB_WORKERS_EXIT="1")
    done = sandbox.run(step["run"], env, shell=step["shell"])
    assert done.returncode != 0 and "BuildKit does not answer on unix:///run/buildkit" in done.stderr
    assert len(Path(f"{sandbox.log}.debug").read_text().splitlines()) == 30
    assert not sandbox.log.exists(), "no build without BuildKit"
    assert no_registry_login_left(sandbox)


# --- GitHub: the clients, fetched and verified ---------------------------------------------------

#: The release assets the fetch step downloads, by file name: what each holds (name: content).
RELEASE_ASSETS = {
    "buildkit-{BUILDKIT_VERSION}.linux-amd64.tar.gz": {"bin/buildctl": "buildctl", "bin/buildkitd": "x"},
    "trivy_{TRIVY_VERSION}_Linux-64bit.tar.gz": {"trivy": "trivy", "README.md": "x"},
    "go-containerregistry_Linux_x86_64.tar.gz": {"crane": "crane", "gcrane": "x"},
}


def release_assets(directory: Path, versions: dict[str, str]) -> dict[str, str]:
    """Tarballs as the releases ship them (their tools print their name), and their sha256s as
    the workflow's *_SHA256 variables."""
    directory.mkdir()
    sums = {}
    for (template, members), tool in zip(RELEASE_ASSETS.items(), ("BUILDKIT", "TRIVY", "CRANE"), strict=True):
        asset = directory / template.format(**versions)
        with tarfile.open(asset, "w:gz") as archive:
            for member, content in members.items():
                source = directory / "member"
                source.write_text(f"#!/bin/sh\necho {content} $*\n")
                source.chmod(0o755)
                archive.add(source, arcname=member)
        sums[f"{tool}_SHA256"] = hashlib.sha256(asset.read_bytes()).hexdigest()
    return sums


def fetch_env(sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    versions = {k: v for k, v in load(GITHUB_BUILD)["env"].items() if k.endswith("_VERSION")}
    sums = release_assets(sandbox.root / "releases", versions)
    for name, body in (("curl", CURL_STUB), ("uname", UNAME_STUB)):
        sandbox.stub(name, body)
    return {
        **versions,
        **sums,
        "STUB_RELEASES": str(sandbox.root / "releases"),
        "RUNNER_TEMP": str(sandbox.root / "runner-temp"),
        "GITHUB_PATH": str(sandbox.root / "github-path"),
        **overrides,
    }


def test_github_fetch_installs_the_pinned_clients_once_their_checksums_match(sandbox: Sandbox) -> None:
    step = github_step(load(GITHUB_BUILD), "build", "Fetch")
    env = fetch_env(sandbox)
    done = sandbox.run(step["run"], env, shell=step["shell"])
    assert done.returncode == 0, done.stderr
    tools = sandbox.root / "runner-temp" / "platform-tools"
    assert sorted(p.name for p in tools.iterdir()) == ["buildctl", "crane", "trivy"]
    assert (sandbox.root / "github-path").read_text().splitlines() == [str(tools)]
    assert done.stdout.splitlines() == ["buildctl --version", "trivy --version", "crane version"]
    calls = sandbox.log.read_text().splitlines()
    assert [call.split()[-1] for call in calls] == [
        f"https://github.com/moby/buildkit/releases/download/{env['BUILDKIT_VERSION']}/"
        f"buildkit-{env['BUILDKIT_VERSION']}.linux-amd64.tar.gz",
        f"https://github.com/aquasecurity/trivy/releases/download/v{env['TRIVY_VERSION']}/"
        f"trivy_{env['TRIVY_VERSION']}_Linux-64bit.tar.gz",
        f"https://github.com/google/go-containerregistry/releases/download/{env['CRANE_VERSION']}/"
        "go-containerregistry_Linux_x86_64.tar.gz",
    ]
    assert all("--proto =https" in call and "--fail" in call for call in calls)
    assert not list(sandbox.root.glob("tmp.*")), "the downloads are removed"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"BUILDKIT_SHA256": ""}, "BUILDKIT_SHA256 is empty"),
        ({"TRIVY_SHA256": ""}, "TRIVY_SHA256 is empty"),
        ({"CRANE_SHA256": ""}, "CRANE_SHA256 is empty"),
        ({"CRANE_SHA256": "A" * 64}, "CRANE_SHA256 is not a sha256"),
        ({"STUB_MACHINE": "aarch64"}, "this runner is aarch64"),
    ],
    ids=["no-buildkit-sum", "no-trivy-sum", "no-crane-sum", "malformed-sum", "arm"],
)
def test_github_fetch_never_skips_verification(
    sandbox: Sandbox, overrides: dict[str, str], message: str
) -> None:
    """The committed file's checksums are empty until filled in: the job stops before any download."""
    step = github_step(load(GITHUB_BUILD), "build", "Fetch")
    done = sandbox.run(step["run"], fetch_env(sandbox, **overrides), shell=step["shell"])
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not sandbox.log.exists(), "nothing downloaded"
    assert not (sandbox.root / "github-path").exists()


def test_github_fetch_refuses_a_download_that_is_not_the_pinned_release(sandbox: Sandbox) -> None:
    step = github_step(load(GITHUB_BUILD), "build", "Fetch")
    env = fetch_env(sandbox)
    env["TRIVY_SHA256"] = env["CRANE_SHA256"]
    done = sandbox.run(step["run"], env, shell=step["shell"])
    assert (
        done.returncode != 0 and "trivy.tar.gz" in done.stderr and "does not match its sha256" in done.stderr
    )
    assert len(sandbox.log.read_text().splitlines()) == 2, "stops at the first mismatch"
    assert not (sandbox.root / "runner-temp" / "platform-tools").exists()
    assert not (sandbox.root / "github-path").exists()


def scan_scripts() -> list[tuple[str, str, str]]:
    """(provider, script, tarball path) of both scan jobs."""
    gitlab = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[SCAN])
    github = github_step(load(GITHUB_BUILD), "build", "Scan")["run"]
    return [("gitlab", gitlab, "image.tar"), ("github", github, "image/image.tar")]


@pytest.mark.parametrize(("provider", "script", "tarball"), scan_scripts(), ids=["gitlab", "github"])
@pytest.mark.parametrize(
    ("severity", "floor", "expected"),
    [
        ("CRITICAL", "", "CRITICAL"),
        ("high", "CRITICAL,HIGH", "HIGH,CRITICAL"),
        ("", "", "CRITICAL"),
        ("MEDIUM", "CRITICAL", "MEDIUM,CRITICAL"),
    ],
    ids=["default", "union-deduplicated-uppercased", "empty", "app-stricter-than-platform"],
)
def test_scan_fails_on_the_union_of_app_and_platform_severities(
    sandbox: Sandbox, *, provider: str, script: str, tarball: str, severity: str, floor: str, expected: str
) -> None:
    sandbox.stub("trivy", TRIVY_STUB)
    sandbox.image_tar(tarball)
    done = sandbox.run(script, {"SCAN_SEVERITY": severity, "PLATFORM_SCAN_SEVERITY": floor})
    assert done.returncode == 0, f"{provider}: {done.stderr}"
    lines = sandbox.log.read_text().splitlines()
    assert lines[0] == "LAYOUT", "trivy must get the unpacked OCI layout"
    args = sandbox.args()
    assert args[:3] == ["image", "--input", "oci-layout"]
    assert _pair(args, "--severity") == [expected]
    assert _pair(args, "--exit-code") == ["1"] and "--ignore-unfixed" in args


@pytest.mark.parametrize(("provider", "script", "tarball"), scan_scripts(), ids=["gitlab", "github"])
def test_scan_job_fails_when_trivy_finds_or_the_severity_is_unknown(
    sandbox: Sandbox, provider: str, script: str, tarball: str
) -> None:
    sandbox.stub("trivy", TRIVY_STUB)
    sandbox.image_tar(tarball)
    found = sandbox.run(script, {"SCAN_SEVERITY": "CRITICAL", "STUB_EXIT": "1"})
    assert found.returncode == 1, provider
    sandbox.log.unlink()
    unknown = sandbox.run(script, {"SCAN_SEVERITY": "SEVERE"})
    assert unknown.returncode == 1 and "unknown severity 'SEVERE'" in unknown.stderr
    assert not sandbox.log.exists()


def push_cases() -> list[tuple[str, str, str, str]]:
    """(provider, script, shell, tarball) of the skopeo push jobs: GitLab's (GitHub's pushes with
    crane, below)."""
    gitlab = gitlab_script(gitlab_jobs(load(GITLAB_BUILD))[PUSH])
    return [("gitlab", gitlab, "sh", "image.tar")]


def push_env(sandbox: Sandbox, provider: str, **overrides: str) -> dict[str, str]:
    env = gitlab_env(PUSH, CI_COMMIT_BRANCH="main", SCW_SECRET_KEY=KEY)
    return {**env, "STUB_SCANNED": SCANNED, **overrides}


@pytest.mark.parametrize(("provider", "script", "shell", "tarball"), push_cases(), ids=["gitlab"])
def test_push_copies_the_scanned_tarball_and_records_its_digest(
    sandbox: Sandbox, provider: str, script: str, shell: str, tarball: str
) -> None:
    sandbox.stub("skopeo", SKOPEO_STUB)
    sandbox.image_tar(tarball)
    done = sandbox.run(script, push_env(sandbox, provider), shell=shell)
    assert done.returncode == 0, done.stderr
    calls = sandbox.log.read_text().splitlines()
    copies = [c for c in calls if c.startswith("copy ")]
    assert len(copies) == 1
    assert "--preserve-digests" in copies[0] and "--digestfile image.digest" in copies[0]
    assert copies[0].endswith(f"oci-archive:{tarball} docker://{REPO}:{SHA}")
    assert sandbox.auth() == expected_auth()
    image_env = (sandbox.work / "image.env").read_text().splitlines()
    assert image_env == [f"IMAGE_DIGEST={SCANNED}", f"IMAGE_TAG={SHA}", f"IMAGE_REF={REPO}@{SCANNED}"]
    assert f"IMAGE_DIGEST={SCANNED}" in done.stdout
    assert KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(("provider", "script", "shell", "tarball"), push_cases(), ids=["gitlab"])
@pytest.mark.parametrize(
    ("overrides", "message", "copied"),
    [
        ({"STUB_EXISTING": "sha256:" + "c" * 64}, "commit tags are never moved", False),
        ({"SCW_SECRET_KEY": ""}, "not set", False),
        ({"STUB_PUSHED": "sha256:" + "d" * 64}, "pushed sha256:dddd", True),
    ],
    ids=["tag-taken", "no-key", "digest-changed"],
)
def test_push_refuses_to_move_a_tag_or_push_blind(
    sandbox: Sandbox,
    *,
    provider: str,
    script: str,
    shell: str,
    tarball: str,
    overrides: dict[str, str],
    message: str,
    copied: bool,
) -> None:
    sandbox.stub("skopeo", SKOPEO_STUB)
    sandbox.image_tar(tarball)
    done = sandbox.run(script, push_env(sandbox, provider, **overrides), shell=shell)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    calls = sandbox.log.read_text().splitlines() if sandbox.log.exists() else []
    assert any(c.startswith("copy ") for c in calls) is copied
    assert not (sandbox.work / "image.env").exists()


@pytest.mark.parametrize(("provider", "script", "shell", "tarball"), push_cases(), ids=["gitlab"])
def test_push_of_the_same_image_again_is_a_no_op_retry(
    sandbox: Sandbox, provider: str, script: str, shell: str, tarball: str
) -> None:
    sandbox.stub("skopeo", SKOPEO_STUB)
    sandbox.image_tar(tarball)
    done = sandbox.run(script, push_env(sandbox, provider, STUB_EXISTING=SCANNED), shell=shell)
    assert done.returncode == 0, f"{provider}: {done.stderr}"


def test_github_scan_leaves_the_layout_it_scanned_for_the_push(sandbox: Sandbox) -> None:
    sandbox.stub("trivy", TRIVY_STUB)
    sandbox.image_tar("image/image.tar")
    step = github_step(load(GITHUB_BUILD), "build", "Scan")
    done = sandbox.run(step["run"], {"SCAN_SEVERITY": "CRITICAL"}, shell=step["shell"])
    assert done.returncode == 0, done.stderr
    assert (sandbox.work / "oci-layout" / "index.json").is_file()
    assert not (sandbox.work / "image" / "image.tar").exists(), "one copy of the image on the runner's disk"


def oci_layout(work: Path, *digests: str) -> None:
    """The layout the scan unpacked, its index naming these manifests."""
    manifests = [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1} for d in digests
    ]
    (work / "oci-layout").mkdir()
    (work / "oci-layout" / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def github_push_env(sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    return {
        "IMAGE_REPO": REPO,
        "GITHUB_SHA": SHA,
        "SCW_SECRET_KEY": KEY,
        "GITHUB_OUTPUT": str(sandbox.root / "output"),
        "GITHUB_STEP_SUMMARY": str(sandbox.root / "summary"),
        **overrides,
    }


@pytest.fixture
def github_push(sandbox: Sandbox) -> Callable[..., subprocess.CompletedProcess[str]]:
    if shutil.which("jq") is None:
        pytest.skip("jq not installed (the runner image has it)")
    sandbox.stub("crane", CRANE_STUB)
    step = github_step(load(GITHUB_BUILD), "build", "Push")

    def run(*digests: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        oci_layout(sandbox.work, *(digests or (SCANNED,)))
        return sandbox.run(step["run"], github_push_env(sandbox, **overrides), shell=step["shell"])

    return run


def test_github_push_sends_the_scanned_layout_by_digest_then_tags_it(
    sandbox: Sandbox, github_push: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = github_push()
    assert done.returncode == 0, done.stderr
    assert sandbox.log.read_text().splitlines() == [
        f"digest {REPO}:{SHA}",
        f"push oci-layout {REPO}@{SCANNED}",
        f"tag {REPO}@{SCANNED} {SHA}",
    ]
    assert sandbox.auth() == expected_auth()
    assert no_registry_login_left(sandbox)
    image_env = (sandbox.work / "image.env").read_text().splitlines()
    assert image_env == [f"IMAGE_DIGEST={SCANNED}", f"IMAGE_TAG={SHA}", f"IMAGE_REF={REPO}@{SCANNED}"]
    output = (sandbox.root / "output").read_text().splitlines()
    assert output == [f"image-digest={SCANNED}", f"image-ref={REPO}@{SCANNED}"]
    assert SCANNED in (sandbox.root / "summary").read_text()
    assert f"IMAGE_DIGEST={SCANNED}" in done.stdout
    assert KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("digests", "overrides", "message", "calls"),
    [
        ((), {"STUB_EXISTING": "sha256:" + "c" * 64}, "commit tags are never moved", ["digest"]),
        ((), {"SCW_SECRET_KEY": ""}, "not set", []),
        ((), {"STUB_PUSHED": "sha256:" + "d" * 64}, "pushed sha256:dddd", ["digest", "push"]),
        ((SCANNED, "sha256:" + "e" * 64), {}, "does not hold exactly one image", []),
        (("latest",), {}, "digest is 'latest'", []),
    ],
    ids=["tag-taken", "no-key", "digest-changed", "two-images", "no-digest"],
)
def test_github_push_refuses_to_move_a_tag_or_push_blind(
    sandbox: Sandbox,
    github_push: Callable[..., subprocess.CompletedProcess[str]],
    *,
    digests: tuple[str, ...],
    overrides: dict[str, str],
    message: str,
    calls: list[str],
) -> None:
    done = github_push(*digests, **overrides)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    made = sandbox.log.read_text().splitlines() if sandbox.log.exists() else []
    assert [call.split()[0] for call in made] == calls, "never tagged unless pushed as scanned"
    assert not (sandbox.work / "image.env").exists()
    assert no_registry_login_left(sandbox)


def test_github_push_of_the_same_image_again_is_a_no_op_retry(
    sandbox: Sandbox, github_push: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = github_push(STUB_EXISTING=SCANNED)
    assert done.returncode == 0, done.stderr
    assert [call.split()[0] for call in sandbox.log.read_text().splitlines()] == ["digest", "push", "tag"]


# --------------------------------------------------------------------------------------------
# Behaviour: the write-back gate job against real Git repositories
# --------------------------------------------------------------------------------------------

OVERRIDE = "apps/website/.argocd-source-prod-website.yaml"
KUSTOMIZE = "kustomize:\n  images:\n  - rg.fr-par.scw.cloud/acme/website:{tag}\n"
BRANCH = "image-updater-3f2a9c"


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def runner_clone(tmp_path: Path, env: dict[str, str], change: dict[str, str]) -> Path:
    """An origin with main and a write-back branch carrying `change`, cloned the way GitLab
    Runner clones a merge request: the branch's commit detached, no local target branch."""
    seed, origin, clone = tmp_path / "seed", tmp_path / "origin.git", tmp_path / "clone"
    seed.mkdir()
    _git(seed, "init", "-q", "-b", "main", env=env)
    for path, text in {
        OVERRIDE: KUSTOMIZE.format(tag="1.0.0"),
        "apps/website/kustomization.yaml": "{}\n",
    }.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(text)
    _git(seed, "add", "-A", env=env)
    _git(seed, "commit", "-q", "-m", "apps", env=env)
    _git(seed, "checkout", "-q", "-b", BRANCH, env=env)
    for path, text in change.items():
        (seed / path).write_text(text)
    _git(seed, "commit", "-q", "-am", "update", env=env)
    _git(tmp_path, "clone", "-q", "--bare", str(seed), str(origin), env=env)
    clone.mkdir()
    _git(clone, "init", "-q", env=env)
    _git(clone, "remote", "add", "origin", str(origin), env=env)
    _git(clone, "fetch", "-q", "origin", f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}", env=env)
    _git(clone, "checkout", "-q", "--detach", f"origin/{BRANCH}", env=env)
    return clone


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({OVERRIDE: KUSTOMIZE.format(tag="1.1.0")}, 0),
        ({"apps/website/kustomization.yaml": "resources: [evil.yaml]\n"}, 1),
    ],
    ids=["override-only", "manifest-changed"],
)
def test_writeback_gate_job_in_a_runner_style_clone(
    tmp_path: Path, change: dict[str, str], expected: int
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    clone = runner_clone(tmp_path, env, change)
    job = gitlab_jobs(load(GITLAB_GITOPS))["writeback-check"]
    job_env = {
        **env,
        **{k: str(v) for k, v in job["variables"].items()},
        "PYTHONPATH": str(ROOT),
        "CI_PROJECT_DIR": str(clone),
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
    }
    done = subprocess.run(
        ["sh", "-c", "set -e\n" + gitlab_script(job)],
        cwd=clone,
        env=job_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    if expected:
        assert "REFUSED apps/website/kustomization.yaml" in done.stdout

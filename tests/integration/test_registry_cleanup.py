"""The registry cleanup against a fake Scaleway registry API and a real GitOps Git checkout.

The fake serves, on 127.0.0.1 and a port of its own per test, only the four endpoints the SDK's
``RegistryV1API`` calls here (list namespaces, list images, list tags, delete tag), with the JSON
shapes the SDK's unmarshallers read (``scaleway/registry/v1/marshalling.py``) and the SDK's
pagination (``page``/``page_size``). It checks the ``X-Auth-Token`` header and records every
request, so a test can say which deletions were asked for. Its one invented behaviour: deleting a
tag whose digest another tag of the image shares fails without ``force`` and, with it, removes
every tag of that digest, the pessimistic reading of the SDK's ``force`` documentation.

The tool runs through :func:`ops.registry_cleanup.main` in-process, and once as
``python -m ops.registry_cleanup`` in a subprocess. Git runs without global or system config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ops import registry_cleanup as rc

ROOT = Path(__file__).resolve().parents[2]
REGION = "fr-par"
NAMESPACE = "acme-platform"
REGISTRY = f"rg.{REGION}.scw.cloud/{NAMESPACE}"
ACCESS_KEY = "SCWABCDEFGHIJKLMNOPQ"
SECRET_KEY = "11111111-2222-3333-4444-555555555555"
PROJECT_ID = "66666666-7777-8888-9999-000000000000"
NOW = datetime.now(UTC)


def digest(label: str) -> str:
    return "sha256:" + label.encode().hex().ljust(64, "0")[:64]


# --------------------------------------------------------------------------------------------
# The fake registry API
# --------------------------------------------------------------------------------------------


@dataclass
class FakeRegistry:
    """State of the fake API: namespaces, images and tags as the API returns them (JSON dicts)."""

    namespaces: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    #: call name ("list_namespaces", "list_images", "list_tags", "delete_tag") -> HTTP status to fail with
    fail: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add_namespace(self, name: str, project_id: str = PROJECT_ID) -> str:
        namespace_id = str(uuid.uuid4())
        stamp = (NOW - timedelta(days=400)).isoformat()
        self.namespaces.append(
            {
                "id": namespace_id,
                "name": name,
                "description": "",
                "organization_id": str(uuid.uuid4()),
                "project_id": project_id,
                "status": "ready",
                "status_message": "",
                "endpoint": f"rg.{REGION}.scw.cloud/{name}",
                "is_public": False,
                "size": 0,
                "image_count": 0,
                "region": REGION,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
        return namespace_id

    def add_image(self, namespace_id: str, name: str, tags: dict[str, tuple[int, str]]) -> str:
        """``tags``: name -> (age in days, digest)."""
        image_id = str(uuid.uuid4())
        self.images.append(
            {
                "id": image_id,
                "name": name,
                "namespace_id": namespace_id,
                "status": "ready",
                "visibility": "inherit",
                "size": 1024,
                "tags": list(tags),
                "status_message": "",
                "created_at": (NOW - timedelta(days=500)).isoformat(),
                "updated_at": NOW.isoformat(),
            }
        )
        for tag, (age, tag_digest) in tags.items():
            created = (NOW - timedelta(days=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.tags.append(
                {
                    "id": str(uuid.uuid4()),
                    "name": tag,
                    "image_id": image_id,
                    "status": "ready",
                    "digest": tag_digest,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        return image_id

    def tag_names(self, image: str) -> set[str]:
        image_ids = {i["id"] for i in self.images if i["name"] == image}
        return {t["name"] for t in self.tags if t["image_id"] in image_ids}

    def deletes(self) -> list[tuple[str, dict[str, list[str]]]]:
        return [(path, query) for method, path, query in self.requests if method == "DELETE"]


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
    page = int(query.get("page", ["1"])[0])
    size = int(query.get("page_size", ["20"])[0])
    return {key: items[(page - 1) * size : page * size], "total_count": len(items)}


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures anyway
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> tuple[int, dict[str, Any]]:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        with fake.lock:
            fake.requests.append((method, url.path, query))
        if self.headers.get("x-auth-token") != SECRET_KEY:
            return 401, {"message": "authentication is denied", "type": "denied_authentication"}
        parts = url.path.strip("/").split("/")
        if parts[:3] != ["registry", "v1", "regions"] or len(parts) < 5 or parts[3] != REGION:
            return 404, {"message": "no such route", "type": "not_found"}
        call = {
            ("GET", "namespaces", 5): "list_namespaces",
            ("GET", "images", 5): "list_images",
            ("GET", "images", 7): "list_tags",
            ("DELETE", "tags", 6): "delete_tag",
        }.get((method, parts[4], len(parts)))
        if call is None:
            return 404, {"message": "no such route", "type": "not_found"}
        if call in fake.fail:
            return fake.fail[call], {"message": f"internal error in {call}", "type": "internal"}
        with fake.lock:
            return getattr(self, f"_{call}")(fake, parts, query)

    def _list_namespaces(self, fake: FakeRegistry, parts: list[str], query: dict[str, list[str]]) -> Any:
        found = [
            ns
            for ns in fake.namespaces
            if ns["name"] in query.get("name", [ns["name"]])
            and ns["project_id"] in query.get("project_id", [ns["project_id"]])
        ]
        return 200, _page(found, query, "namespaces")

    def _list_images(self, fake: FakeRegistry, parts: list[str], query: dict[str, list[str]]) -> Any:
        wanted = query.get("namespace_id")
        found = [i for i in fake.images if wanted is None or i["namespace_id"] in wanted]
        return 200, _page(found, query, "images")

    def _list_tags(self, fake: FakeRegistry, parts: list[str], query: dict[str, list[str]]) -> Any:
        if not any(i["id"] == parts[5] for i in fake.images):
            return 404, {"message": "resource is not found", "type": "not_found", "resource": "image"}
        return 200, _page([t for t in fake.tags if t["image_id"] == parts[5]], query, "tags")

    def _delete_tag(self, fake: FakeRegistry, parts: list[str], query: dict[str, list[str]]) -> Any:
        tag = next((t for t in fake.tags if t["id"] == parts[5]), None)
        if tag is None:
            return 404, {"message": "resource is not found", "type": "not_found", "resource": "tag"}
        same = [t for t in fake.tags if t["image_id"] == tag["image_id"] and t["digest"] == tag["digest"]]
        force = query.get("force", ["false"])[0].lower() == "true"
        if len(same) > 1 and not force:
            return 412, {"message": "tag digest is shared with other tags", "type": "precondition_failed"}
        for gone in same:
            fake.tags.remove(gone)
        return 200, {**tag, "status": "deleting"}

    def do_GET(self) -> None:
        self._send(*self._route("GET"))

    def do_DELETE(self) -> None:
        self._send(*self._route("DELETE"))


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeRegistry) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fake = fake


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    server = FakeServer(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Environment and the GitOps checkout
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Scaleway credentials of the test only, no proxy for 127.0.0.1, Git without user config."""
    for name in list(os.environ):
        if name.startswith("SCW_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SCW_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCW_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def deployment(name: str, image: str) -> str:
    return (
        "apiVersion: apps/v1\nkind: Deployment\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        f"      - name: {name}\n        image: {image}\n"
    )


def make_gitops(root: Path, files: dict[str, str]) -> Path:
    """A committed Git checkout holding ``files`` (relative path -> content)."""
    root.mkdir()
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for args in (["init", "--quiet", "-b", "main"], ["add", "-A"], ["commit", "--quiet", "-m", "envs"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return root


#: The GitOps checkout of the main scenario: dev and prod, manifests and image updater overrides.
GITOPS_FILES = {
    # A plain manifest pins website:w10 by tag.
    "environments/prod/website/deployment.yaml": deployment("website", f"{REGISTRY}/website:w10"),
    "environments/prod/website/kustomization.yaml": "resources:\n- deployment.yaml\n",
    # The image updater's kustomize override pins website by digest only (w09's digest).
    "environments/dev/website/.argocd-source-dev-website.yaml": (
        f"kustomize:\n  images:\n  - {REGISTRY}/website@{digest('w09')}\n"
    ),
    # The same tags, but another namespace and another region: they keep nothing here.
    "environments/dev/website/deployment.yaml": (
        deployment("website", f"rg.{REGION}.scw.cloud/other-namespace/website:w07")
        + "---\n"
        + deployment("website-eu", f"rg.nl-ams.scw.cloud/{NAMESPACE}/website:w05")
    ),
    # A Helm override as the updater writes it: repository and tag as two parameters.
    "environments/prod/newsletter/.argocd-source-prod-newsletter.yaml": (
        "helm:\n  parameters:\n"
        "  - forceString: true\n    name: image.tag\n    value: n3\n"
        f"  - forceString: true\n    name: image.name\n    value: {REGISTRY}/newsletter\n"
    ),
    # An unrelated chart's tag, with its own repository: keeps no newsletter tag of that name.
    "environments/prod/newsletter/values.yaml": (
        "redis:\n  image:\n    repository: docker.io/redis\n    tag: n2\n"
    ),
}


def scenario(fake: FakeRegistry) -> None:
    """website: newest 2 (w12, w11), w10 by tag, w09 by digest, w08 young, w06 shares w12's digest,
    w07 and w05 old and unreferenced. newsletter: n5, n4 newest, n3 via Helm, n2 and n1 old."""
    namespace_id = fake.add_namespace(NAMESPACE)
    fake.add_namespace("other-namespace")
    fake.add_image(
        namespace_id,
        "website",
        {
            "w05": (80, digest("w05")),
            "w06": (70, digest("w12")),
            "w07": (60, digest("w07")),
            "w08": (10, digest("w08")),
            "w09": (45, digest("w09")),
            "w10": (40, digest("w10")),
            "w11": (2, digest("w11")),
            "w12": (1, digest("w12")),
        },
    )
    newsletter = {f"n{i}": (110 - 10 * i, digest(f"n{i}")) for i in range(1, 6)}
    fake.add_image(namespace_id, "newsletter", newsletter)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = rc.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def args(fake: FakeRegistry, gitops: Path, *extra: str) -> list[str]:
    return [
        *("--region", REGION, "--namespace", NAMESPACE, "--gitops", str(gitops)),
        *("--keep", "2", "--older-than-days", "30", "--api-url", fake.url),
        *extra,
    ]


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    return make_gitops(tmp_path / "gitops", GITOPS_FILES)


# --------------------------------------------------------------------------------------------
# What is kept, what is deleted
# --------------------------------------------------------------------------------------------


def test_keeps_newest_referenced_and_young_tags_and_deletes_the_rest(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(registry)
    code, out, err = run(args(registry, gitops), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:7] == [
        "KEEP newsletter:n5 (among the newest 2)",
        "KEEP newsletter:n4 (among the newest 2)",
        "KEEP newsletter:n3 (tag referenced in"
        " environments/prod/newsletter/.argocd-source-prod-newsletter.yaml)",
        "DELETE newsletter:n2 (unreferenced, not among the newest 2, 90 days old)",
        "DELETE newsletter:n1 (unreferenced, not among the newest 2, 100 days old)",
        "KEEP website:w12 (among the newest 2)",
        "KEEP website:w11 (among the newest 2)",
    ]
    assert lines[7].startswith("KEEP website:w08 (younger than 30 days, created ")
    assert lines[8] == "KEEP website:w10 (tag referenced in environments/prod/website/deployment.yaml)"
    assert lines[9] == (
        f"KEEP website:w09 (digest {digest('w09')[:19]} referenced in "
        "environments/dev/website/.argocd-source-dev-website.yaml)"
    )
    assert lines[10:] == [
        "DELETE website:w07 (unreferenced, not among the newest 2, 60 days old)",
        f"KEEP website:w06 (digest {digest('w12')[:19]} is also that of kept tag w12)",
        "DELETE website:w05 (unreferenced, not among the newest 2, 80 days old)",
        "registry-cleanup: OK, namespace acme-platform (fr-par): 2 image(s), 13 tag(s), 9 kept, 4 deleted",
    ]
    assert registry.tag_names("website") == {"w06", "w08", "w09", "w10", "w11", "w12"}
    assert registry.tag_names("newsletter") == {"n3", "n4", "n5"}
    # Unshared digests are deleted without force: it could take other tags' manifests with it.
    assert [query for _, query in registry.deletes()] == [{}] * 4


def test_dry_run_deletes_nothing_and_says_would_delete(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(registry)
    code, out, _ = run(args(registry, gitops, "--dry-run"), capsys)
    assert code == 0
    assert registry.deletes() == []
    would = [line for line in out.splitlines() if line.startswith("WOULD DELETE")]
    assert [line.split(" (")[0] for line in would] == [
        "WOULD DELETE newsletter:n2",
        "WOULD DELETE newsletter:n1",
        "WOULD DELETE website:w07",
        "WOULD DELETE website:w05",
    ]
    assert not any(line.startswith("DELETE") for line in out.splitlines())
    assert out.splitlines()[-1].endswith("9 kept, 4 would be deleted (dry run)")
    assert len(registry.tag_names("website")) == 8


def test_tag_only_override_keeps_that_tag_and_kustomize_entries_count(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Helm override that sets only ``image.tag`` (the repository is in the chart) and a
    kustomization ``images`` entry with ``newName``/``newTag`` both keep their tag."""
    gitops = make_gitops(
        tmp_path / "gitops",
        {
            "environments/dev/api/.argocd-source-dev-api.yaml": (
                "helm:\n  parameters:\n  - forceString: true\n    name: image.tag\n    value: a1\n"
            ),
            "environments/prod/api/kustomization.yaml": (
                f"images:\n- name: api\n  newName: {REGISTRY}/api\n  newTag: a2\n"
            ),
        },
    )
    namespace_id = registry.add_namespace(NAMESPACE)
    registry.add_image(namespace_id, "api", {f"a{i}": (100 + i, digest(f"a{i}")) for i in range(1, 4)})
    code, out, _ = run([*args(registry, gitops), "--keep", "0"], capsys)
    assert code == 0
    assert out.splitlines()[:3] == [
        "KEEP api:a1 (tag referenced in environments/dev/api/.argocd-source-dev-api.yaml"
        " (no repository named there))",
        "KEEP api:a2 (tag referenced in environments/prod/api/kustomization.yaml)",
        "DELETE api:a3 (unreferenced, not among the newest 0, 103 days old)",
    ]


def test_tags_sharing_a_digest_are_deleted_together_with_force(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace_id = registry.add_namespace(NAMESPACE)
    tags = {"new": (1, digest("new")), "old1": (90, digest("x")), "old2": (91, digest("x"))}
    registry.add_image(namespace_id, "worker", tags)
    code, out, err = run([*args(registry, gitops), "--keep", "1"], capsys)
    assert (code, err) == (0, "")
    assert [line.split(" (")[0] for line in out.splitlines()[:3]] == [
        "KEEP worker:new",
        "DELETE worker:old1",
        "DELETE worker:old2",
    ]
    assert registry.tag_names("worker") == {"new"}
    # The first forced delete took both tags; the second one's "not found" is success.
    assert [query for _, query in registry.deletes()] == [{"force": ["True"]}] * 2


def test_every_page_of_tags_is_read(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace_id = registry.add_namespace(NAMESPACE)
    registry.add_image(namespace_id, "batch", {f"b{i:03}": (200 - i, digest(f"b{i}")) for i in range(130)})
    code, out, _ = run([*args(registry, gitops), "--dry-run"], capsys)
    assert code == 0
    assert out.splitlines()[-1].endswith("130 tag(s), 2 kept, 128 would be deleted (dry run)")
    pages = [q.get("page") for m, p, q in registry.requests if p.endswith("/tags")]
    assert pages == [["1"], ["2"]]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["list_namespaces", "list_images", "list_tags", "delete_tag"])
def test_api_error_exits_1_naming_the_call(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str], call: str
) -> None:
    scenario(registry)
    registry.fail[call] = 500
    code, out, err = run(args(registry, gitops), capsys)
    assert code == 1
    assert f"registry-cleanup: error: {call} (" in err
    assert f"failed: HTTP 500: internal error in {call}" in err
    assert "Traceback" not in err
    assert "registry-cleanup: FAILED" in out
    if call != "delete_tag":  # every listing comes before the first deletion
        assert registry.deletes() == []


def test_wrong_secret_is_an_api_error(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario(registry)
    monkeypatch.setenv("SCW_SECRET_KEY", str(uuid.uuid4()))
    code, _, err = run(args(registry, gitops), capsys)
    assert code == 1
    assert "list_namespaces (name acme-platform) failed: HTTP 401: authentication is denied" in err


def test_unknown_namespace_is_a_clear_error(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(registry)
    argv = args(registry, gitops)
    argv[argv.index(NAMESPACE)] = "no-such-namespace"
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert err == (
        "registry-cleanup: error: namespace 'no-such-namespace' not found in region fr-par of project "
        f"{PROJECT_ID} (list_namespaces returned 0 namespace(s) of that name)\n"
    )
    assert registry.deletes() == []


@pytest.mark.parametrize("variable", ["SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID"])
def test_missing_credentials_exit_2_before_any_request(
    registry: FakeRegistry,
    gitops: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    scenario(registry)
    monkeypatch.delenv(variable)
    code, _, err = run(args(registry, gitops), capsys)
    assert code == 2
    assert err == f"registry-cleanup: error: missing credentials: set {variable}\n"
    assert registry.requests == []


def test_malformed_credentials_exit_2(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCW_SECRET_KEY", "not-a-uuid")
    code, _, err = run(args(registry, gitops), capsys)
    assert code == 2
    assert err.startswith("registry-cleanup: error: invalid Scaleway settings: Invalid secret key format")
    assert "not-a-uuid" not in err  # the SDK's message quotes the secret key: it is masked
    assert registry.requests == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "is not a directory"),
        ("not-git", "is not a Git checkout"),
        ("no-environments", "has no environments/ directory"),
    ],
)
def test_a_wrong_gitops_path_exits_2(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    """Scanning the wrong directory would find no reference and delete deployed tags."""
    path = tmp_path / "gitops"
    if setup == "not-git":
        (path / "environments").mkdir(parents=True)
    elif setup == "no-environments":
        make_gitops(path, {"apps/website/deployment.yaml": deployment("website", f"{REGISTRY}/website:w1")})
    code, _, err = run(args(registry, path), capsys)
    assert code == 2
    assert message in err
    assert registry.requests == []


@pytest.mark.parametrize(
    "extra", [["--keep", "-1"], ["--keep", "ten"], ["--region", "paris"], ["--namespace", "Bad_Name"]]
)
def test_bad_arguments_exit_2(
    registry: FakeRegistry, gitops: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code, _, err = run([*args(registry, gitops), *extra], capsys)
    assert code == 2
    assert "error" in err
    assert registry.requests == []


def test_module_entry_point_in_a_subprocess(registry: FakeRegistry, gitops: Path) -> None:
    """``python -m ops.registry_cleanup`` as CI runs it: exit codes, output, no traceback."""
    scenario(registry)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    done = subprocess.run(
        [sys.executable, "-m", "ops.registry_cleanup", *args(registry, gitops, "--dry-run")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "WOULD DELETE website:w07" in done.stdout
    env.pop("SCW_ACCESS_KEY")
    done = subprocess.run(
        [sys.executable, "-m", "ops.registry_cleanup", *args(registry, gitops)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "registry-cleanup: error: missing credentials: set SCW_ACCESS_KEY\n"
    assert registry.deletes() == []

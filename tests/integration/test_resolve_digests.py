"""scripts/resolve_digests.py against a fake OCI registry served on 127.0.0.1.

The fake speaks the part of the distribution API the script uses: ``HEAD``/``GET
/v2/<repository>/manifests/<tag>`` answering ``401`` with a ``WWW-Authenticate: Bearer`` challenge
until the request carries the token its ``/token`` endpoint hands out for that repository's pull
scope (the anonymous flow of Docker Hub, ghcr.io and quay.io). It records every request's Accept
header, so a test can check the index types are asked for. One repository sends no
``Docker-Content-Digest`` on HEAD (allowed by the spec), so the script must GET and hash the body.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from scripts import resolve_digests as rd
from scw_platform import images

INDEX = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
)
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX.encode()).hexdigest()
OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
TODAY = date(2026, 12, 1)


@dataclass
class FakeRegistry:
    #: (repository, tag) -> digest sent in Docker-Content-Digest (None: header left out).
    manifests: dict[tuple[str, str], str | None]
    require_token: bool = True
    accepts: list[str] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    base: str = ""


class Handler(BaseHTTPRequestHandler):
    """The fake's HTTP side; ``state`` is set per server (:func:`_handler`)."""

    state: FakeRegistry

    def log_message(self, *args: Any) -> None:
        pass

    def _challenge(self, scope: str) -> None:
        self.send_response(401)
        self.send_header(
            "WWW-Authenticate",
            f'Bearer realm="{self.state.base}/token",service="fake.registry",scope="{scope}"',
        )
        self.end_headers()

    def _manifest(self, body: bool) -> None:
        parts = urlsplit(self.path).path.split("/")
        # /v2/<repository...>/manifests/<tag>
        if parts[:2] != ["", "v2"] or "manifests" not in parts:
            self.send_error(404)
            return
        at = parts.index("manifests")
        repository, tag = "/".join(parts[2:at]), parts[at + 1]
        scope = f"repository:{repository}:pull"
        if self.state.require_token and self.headers.get("Authorization") != f"Bearer token-for-{scope}":
            self._challenge(scope)
            return
        self.state.accepts.append(self.headers.get("Accept", ""))
        if (repository, tag) not in self.state.manifests:
            self.send_error(404)
            return
        digest = self.state.manifests[(repository, tag)]
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Content-Length", str(len(INDEX)))
        if digest is not None:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if body:
            self.wfile.write(INDEX.encode())

    def do_HEAD(self) -> None:
        self._manifest(body=False)

    def _token(self, query: dict[str, list[str]]) -> None:
        assert query["service"] == ["fake.registry"]
        scope = query["scope"][0]
        self.state.tokens_issued.append(scope)
        payload = json.dumps({"token": f"token-for-{scope}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/token":
            self._token(parse_qs(url.query))
        else:
            self._manifest(body=True)


def _handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    return type("BoundHandler", (Handler,), {"state": state})


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    state = FakeRegistry(
        manifests={
            ("library/busybox", "1.37.0"): OLD,
            ("library/postgres", "16.9"): NEW,
            ("grafana/mimirtool", "3.0.1"): None,  # no header: the digest of the body
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def image_file(tmp_path: Path) -> Path:
    """A three-entry list: busybox recorded as OLD, postgres as OLD (the registry says NEW),
    mimirtool a gap; one tagless gap the script must skip."""
    document = {
        "checked": "2026-11-01",
        "images": {
            "busybox": {
                "registry": "docker.io",
                "repository": "library/busybox",
                "tag": "1.37.0",
                "digest": OLD,
                "source": "find_string id 1",
                "checked": "2026-11-01",
                "component": "apps",
            },
            "postgres": {
                "registry": "docker.io",
                "repository": "library/postgres",
                "tag": "16.9",
                "digest": OLD,
                "source": "find_string id 2",
                "checked": "2026-11-01",
                "component": "apps",
            },
            "mimirtool": {
                "registry": "docker.io",
                "repository": "grafana/mimirtool",
                "tag": "3.0.1",
                "gap": "none found",
                "component": "observability",
            },
            "alloy": {
                "registry": "docker.io",
                "repository": "grafana/alloy",
                "gap": "no tag",
                "component": "x",
            },
        },
    }
    path = tmp_path / "images.yaml"
    path.write_text("# kept comment\n" + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run(path: Path, registry: FakeRegistry, *extra: str) -> int:
    return rd.main(["--file", str(path), "--endpoint", f"docker.io={registry.base}", *extra], today=TODAY)


def test_it_reports_a_different_and_a_new_digest_and_exits_1(
    tmp_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    path = image_file(tmp_path)
    before = path.read_text(encoding="utf-8")
    assert run(path, registry) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"ok        busybox: {OLD}",
        f"DIFFERENT postgres: {OLD} -> {NEW}",
        f"NEW       mimirtool: {INDEX_DIGEST}",
        "skipped (no tag recorded): alloy",
    ]
    assert path.read_text(encoding="utf-8") == before  # nothing written without --write
    # The anonymous token flow ran once per repository, for its pull scope only.
    assert sorted(registry.tokens_issued) == [
        "repository:grafana/mimirtool:pull",
        "repository:library/busybox:pull",
        "repository:library/postgres:pull",
    ]
    # Index types are asked for first.
    assert registry.accepts and all(
        a.startswith(
            "application/vnd.oci.image.index.v1+json, "
            "application/vnd.docker.distribution.manifest.list.v2+json"
        )
        for a in registry.accepts
    )


def test_write_records_the_registry_digests_keeps_comments_and_validates(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    path = image_file(tmp_path)
    assert run(path, registry, "--write") == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# kept comment\n")
    catalogue = images.load(path)
    assert catalogue.digest("busybox") == OLD
    assert catalogue.get("busybox").source == "find_string id 1"  # unchanged entries stay as they were
    assert catalogue.digest("postgres") == NEW
    assert catalogue.digest("mimirtool") == INDEX_DIGEST
    assert catalogue.get("mimirtool").gap is None
    assert catalogue.get("postgres").checked == TODAY and catalogue.checked == TODAY
    assert catalogue.get("postgres").source == (
        f"{registry.base}/v2/library/postgres/manifests/16.9 (scripts/resolve_digests.py)"
    )
    # A second run finds nothing to do.
    assert run(path, registry) == 0


def test_only_checks_the_named_entries(tmp_path: Path, registry: FakeRegistry) -> None:
    path = image_file(tmp_path)
    assert run(path, registry, "--only", "busybox") == 0
    assert registry.tokens_issued == ["repository:library/busybox:pull"]
    with pytest.raises(SystemExit):
        run(path, registry, "--only", "busybux")


def test_a_missing_tag_is_an_error_naming_the_entry_and_writes_nothing(
    tmp_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    del registry.manifests[("library/postgres", "16.9")]
    path = image_file(tmp_path)
    before = path.read_text(encoding="utf-8")
    assert run(path, registry, "--write") == 2
    out = capsys.readouterr().out
    assert f"ERROR     postgres: HTTP 404 from {registry.base}/v2/library/postgres/manifests/16.9" in out
    assert path.read_text(encoding="utf-8") == before


def test_a_registry_answering_a_bad_digest_is_an_error(tmp_path: Path, registry: FakeRegistry) -> None:
    registry.manifests[("library/busybox", "1.37.0")] = "sha256:short"
    url = rd.manifest_url("docker.io", "library/busybox", "1.37.0", {"docker.io": registry.base})
    with pytest.raises(rd.RegistryError, match="Docker-Content-Digest: 'sha256:short' is not a digest"):
        rd.resolve(url)


def test_a_challenge_the_token_does_not_satisfy_is_an_error(
    registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{registry.base}/v2/library/busybox/manifests/1.37.0"
    # A token for another scope: the fake keeps answering 401, and the script gives up after one retry.
    monkeypatch.setattr(rd, "_bearer_token", lambda challenge, timeout: "token-for-nothing")
    with pytest.raises(rd.RegistryError, match="HTTP 401"):
        rd.resolve(url)


def test_docker_hub_is_reached_on_its_api_host_and_bad_endpoints_are_refused() -> None:
    assert rd.manifest_url("docker.io", "library/busybox", "1.37.0", {}) == (
        "https://registry-1.docker.io/v2/library/busybox/manifests/1.37.0"
    )
    assert rd.manifest_url("quay.io", "jetstack/cert-manager-controller", "v1.21.1", {}).startswith(
        "https://quay.io/v2/jetstack/cert-manager-controller/manifests/"
    )
    with pytest.raises(SystemExit):
        rd.main(["--endpoint", "docker.io"])

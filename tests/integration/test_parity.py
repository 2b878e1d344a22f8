"""The parity gate: a key forgotten in the vault fails the rollout, naming the key.

* deploy time: ``python -m offline.parity`` against a fake vault (a file), and its real Scaleway
  Secret Manager client (stdlib HTTP) against a local HTTP server speaking the API's shapes;
* in the cluster: the rendered Argo CD PreSync Job, checked structurally, with
  ``kubernetes-validate --strict``, and its script run by a real ``sh``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
import yaml

from offline import migrations, parity
from program.model import PlatformConfig
from scw_platform.apps import DATABASE_KEYS, AppResources

PROJECT = "6a0c2f3e-8d4b-4c1a-9e57-2b1f0d6c9a41"
TOKEN = "scw-test-token"
#: What Pulumi.prod.yaml declares, by vault folder.
DECLARED = {
    "/prod/website": ["STRIPE_SECRET_KEY", "SESSION_SECRET", "MAILER_DSN"],
    "/prod/newsletter": ["MAILER_DSN", "UNSUBSCRIBE_SIGNING_KEY"],
}


@pytest.fixture(scope="module")
def prod() -> PlatformConfig:
    return parity.load_stack("prod")


def test_declared_keys_are_what_the_stack_file_says(prod: PlatformConfig) -> None:
    assert {prod.app_secrets_path(a): list(a.required_keys) for a in prod.apps} == DECLARED


# --- deploy time, fake vault -----------------------------------------------------------------------


def test_a_missing_key_fails_naming_it_per_app(prod: PlatformConfig) -> None:
    vault = parity.FileVault({**DECLARED, "/prod/website": ["STRIPE_SECRET_KEY", "MAILER_DSN"]})
    report = parity.check(prod, vault)
    assert not report.ok
    assert report.missing == {"website": ("SESSION_SECRET",)}
    text = report.render()
    assert "MISSING  website (/prod/website): SESSION_SECRET" in text
    assert "ok       newsletter" in text
    assert "FAILED: 1 declared key(s) missing for 1 app(s)" in text


def test_all_keys_present_passes(prod: PlatformConfig) -> None:
    report = parity.check(prod, parity.FileVault(DECLARED))
    assert report.ok and report.missing == {}
    assert report.render().endswith("PASSED: every declared key is in the vault.")


def test_an_empty_value_is_a_missing_key(prod: PlatformConfig) -> None:
    vault = parity.FileVault(
        {
            "/prod/website": {"STRIPE_SECRET_KEY": "sk", "SESSION_SECRET": "", "MAILER_DSN": "smtp://"},
            "/prod/newsletter": {"MAILER_DSN": "smtp://", "UNSUBSCRIBE_SIGNING_KEY": "k"},
        }
    )
    assert parity.check(prod, vault).missing == {"website": ("SESSION_SECRET",)}


def test_keys_of_another_app_do_not_count(prod: PlatformConfig) -> None:
    vault = parity.FileVault({"/prod/website": DECLARED["/prod/website"] + DECLARED["/prod/newsletter"]})
    assert parity.check(prod, vault).missing == {"newsletter": ("MAILER_DSN", "UNSUBSCRIBE_SIGNING_KEY")}


def test_command_exit_codes_with_a_vault_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    complete = tmp_path / "vault.json"
    complete.write_text(json.dumps(DECLARED))
    assert parity.main(["prod", "--vault-file", str(complete)], env={}) == 0
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({**DECLARED, "/prod/newsletter": ["MAILER_DSN"]}))
    assert parity.main(["prod", "--vault-file", str(incomplete)], env={}) == 1
    out = capsys.readouterr().out
    assert "MISSING  newsletter (/prod/newsletter): UNSUBSCRIBE_SIGNING_KEY" in out


def test_no_credentials_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert parity.main(["prod"], env={}) == 2
    assert "SCW_SECRET_KEY is not set" in capsys.readouterr().err


def test_unknown_stack_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert parity.main(["no-such-stack"], env={}) == 2
    assert "no stack file Pulumi.no-such-stack.yaml" in capsys.readouterr().err


def test_unreadable_vault_file_is_not_a_pass(tmp_path: Path) -> None:
    broken = tmp_path / "vault.json"
    broken.write_text("{not json")
    assert parity.main(["prod", "--vault-file", str(broken)], env={}) == 2


# --- deploy time, the real Scaleway client against a local API -------------------------------------


class FakeSecretManager(BaseHTTPRequestHandler):
    """Scaleway Secret Manager's list endpoints, with deliberately small pages."""

    #: (id, project, path, name, enabled versions)
    secrets: ClassVar[list[tuple[str, str, str, str, int]]] = []
    page_size: ClassVar[int] = 2
    calls: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        type(self).calls.append(self.path)
        if self.headers.get("X-Auth-Token") != TOKEN:
            self._send(403, {"message": "insufficient permissions"})
            return
        prefix = "/secret-manager/v1beta1/regions/fr-par/secrets"
        if url.path == prefix:
            matching = [
                s for s in self.secrets if s[1] == query.get("project_id") and s[2] == query.get("path", s[2])
            ]
            page = int(query.get("page", "1"))
            chunk = matching[(page - 1) * self.page_size : page * self.page_size]
            self._send(
                200,
                {
                    "secrets": [
                        {"id": s[0], "project_id": s[1], "path": s[2], "name": s[3], "status": "ready"}
                        for s in chunk
                    ],
                    "total_count": len(matching),
                },
            )
            return
        if url.path.startswith(prefix + "/") and url.path.endswith("/versions"):
            secret_id = url.path[len(prefix) + 1 : -len("/versions")]
            found = [s for s in self.secrets if s[0] == secret_id]
            if not found:
                self._send(404, {"message": "secret not found"})
                return
            assert query.get("status") == "enabled"
            self._send(200, {"versions": [], "total_count": found[0][4]})
            return
        self._send(404, {"message": "not found"})


@pytest.fixture
def secret_manager() -> Iterator[str]:
    FakeSecretManager.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSecretManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _secrets(*missing: str, disabled: tuple[str, ...] = ()) -> list[tuple[str, str, str, str, int]]:
    rows = []
    for folder, keys in DECLARED.items():
        for key in keys:
            ref = f"{folder}/{key}"
            if ref in missing:
                continue
            rows.append((f"id-{len(rows)}", PROJECT, folder, key, 0 if ref in disabled else 1))
    # Same names elsewhere must not count: another project, another folder.
    rows.append(
        ("id-other-project", "00000000-0000-0000-0000-000000000000", "/prod/website", "SESSION_SECRET", 1)
    )
    rows.append(("id-other-folder", PROJECT, "/staging/website", "SESSION_SECRET", 1))
    return rows


def test_real_client_passes_when_every_key_has_an_enabled_version(
    secret_manager: str, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeSecretManager.secrets = _secrets()
    env = {"SCW_SECRET_KEY": TOKEN, "SCW_API_URL": secret_manager}
    assert parity.main(["prod"], env=env) == 0
    out = capsys.readouterr().out
    assert f"Scaleway Secret Manager fr-par, project {PROJECT}" in out
    # Pagination: three website secrets in pages of two.
    listed = [c for c in FakeSecretManager.calls if "path=%2Fprod%2Fwebsite" in c]
    assert len(listed) == 2 and "page=2" in listed[1]


def test_real_client_names_missing_and_disabled_keys(
    secret_manager: str, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeSecretManager.secrets = _secrets(
        "/prod/website/SESSION_SECRET", disabled=("/prod/newsletter/MAILER_DSN",)
    )
    env = {"SCW_SECRET_KEY": TOKEN, "SCW_API_URL": secret_manager}
    assert parity.main(["prod"], env=env) == 1
    out = capsys.readouterr().out
    assert "MISSING  website (/prod/website): SESSION_SECRET" in out
    assert "MISSING  newsletter (/prod/newsletter): MAILER_DSN" in out


def test_real_client_refused_is_not_a_pass(secret_manager: str, capsys: pytest.CaptureFixture[str]) -> None:
    FakeSecretManager.secrets = _secrets()
    env = {"SCW_SECRET_KEY": "wrong", "SCW_API_URL": secret_manager}
    assert parity.main(["prod"], env=env) == 2
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "SecretManagerReadOnly" in err


def test_real_client_unreachable_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SCW_SECRET_KEY": TOKEN, "SCW_API_URL": "http://127.0.0.1:9"}
    assert parity.main(["prod"], env=env) == 2
    assert "cannot reach Scaleway Secret Manager" in capsys.readouterr().err


def test_real_client_sends_the_token_only_as_a_header() -> None:
    seen: list[Any] = []

    def fetch(request: Any) -> bytes:
        seen.append(request)
        return json.dumps({"secrets": [], "total_count": 0}).encode()

    vault = parity.ScalewayVault(region="fr-par", project_id=PROJECT, secret_key=TOKEN, fetch=fetch)
    assert vault.present("/prod/website", ["A"]) == set()
    (request,) = seen
    assert request.get_header("X-auth-token") == TOKEN
    assert TOKEN not in request.full_url
    assert TOKEN not in repr(vault)


# --- deploy time, 1Password through its CLI ----------------------------------------------------------


def _fake_op(tmp_path: Path, items: dict[str, dict[str, str]]) -> Path:
    """An executable standing in for the op CLI: ``op item get <item> --vault <v> --format json``."""
    data = tmp_path / "items.json"
    data.write_text(json.dumps(items))
    script = tmp_path / "op"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"items = json.load(open({str(data)!r}))\n"
        "args = sys.argv[1:]\n"
        "assert args[:2] == ['item', 'get'] and args[3] == '--vault', args\n"
        "item = items.get(args[2])\n"
        "if item is None:\n"
        "    sys.stderr.write(f'[ERROR] \"{args[2]}\" isn\\'t an item in the vault\\n'); sys.exit(1)\n"
        "fields = [{'label': k, 'value': v} for k, v in item.items()]\n"
        "print(json.dumps({'title': args[2], 'fields': fields}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_onepassword_vault_through_the_cli(tmp_path: Path, prod: PlatformConfig) -> None:
    op = _fake_op(
        tmp_path, {"prod-website": {"STRIPE_SECRET_KEY": "sk", "SESSION_SECRET": "", "MAILER_DSN": "x"}}
    )
    vault = parity.OnePasswordVault(vault="platform-prod", op=str(op))
    onepassword = replace(prod, vault=prod.vault.model_copy(update={"backend": "onepassword"}))
    report = parity.check(onepassword, vault)
    assert report.missing == {
        "website": ("SESSION_SECRET",),
        "newsletter": ("MAILER_DSN", "UNSUBSCRIBE_SIGNING_KEY"),
    }
    assert "1Password vault 'platform-prod'" in report.render()


def test_onepassword_cli_failure_is_not_a_pass() -> None:
    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "[ERROR] authentication failed\n")

    with pytest.raises(parity.VaultError, match="authentication failed"):
        parity.OnePasswordVault(vault="v", run=run).present("item", ["A"])


# --- in the cluster: the PreSync gate ------------------------------------------------------------


def _job(prod: PlatformConfig, app: str) -> dict[str, Any]:
    settings = next(a for a in prod.apps if a.name == app)
    return parity.gate_job(settings, with_database=settings.database is not None)


def test_gate_references_every_key_with_optional_false(prod: PlatformConfig) -> None:
    for app in prod.apps:
        job = _job(prod, app.name)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"]]
        assert [r["key"] for r in refs] == [*app.required_keys, *DATABASE_KEYS]
        assert {r["name"] for r in refs} == {f"{app.name}-env"}
        assert all(r["optional"] is False for r in refs)


def test_gate_is_a_short_presync_hook_without_token_rbac_or_privilege(prod: PlatformConfig) -> None:
    job = _job(prod, "website")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert "BeforeHookCreation" in annotations["argocd.argoproj.io/hook-delete-policy"]
    assert job["metadata"]["namespace"] == "website"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert 0 < spec["activeDeadlineSeconds"] <= 300
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    image = container["image"]
    # Tag kept for readability, then the digest (scw_platform/data/images.yaml).
    reference, _, digest = image.partition("@")
    name, _, tag = reference.rpartition(":")
    assert name.endswith("busybox") and tag and tag != "latest"
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert container["resources"]["limits"] == {"cpu": "100m", "memory": "32Mi"}


def test_gate_stays_within_a_small_apps_limit_range(prod: PlatformConfig) -> None:
    app = prod.apps[0].model_copy(
        update={
            "resources": AppResources(
                cpu_request="20m", memory_request="16Mi", cpu_limit="50m", memory_limit="24Mi"
            )
        }
    )
    resources = parity.gate_resources(app)
    assert resources == {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "50m", "memory": "24Mi"},
    }


def test_gate_digest_pin_drops_the_digest_skip(prod: PlatformConfig) -> None:
    digest = "docker.io/library/busybox:1.37.0@sha256:" + "0" * 64
    job = parity.gate_job(prod.apps[0], with_database=True, image=digest)
    assert "checkov.io/skip2" not in job["metadata"]["annotations"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == digest


def test_rendered_gates_pass_kubernetes_validate_strict(tmp_path: Path, prod: PlatformConfig) -> None:
    assert parity.main(["prod", "--render-hooks", str(tmp_path)], env={}) == 0
    files = sorted(tmp_path.rglob(parity.GATE_FILE))
    assert [str(f.relative_to(tmp_path)) for f in files] == [
        f"apps/newsletter/envs/prod/{parity.GATE_FILE}",
        f"apps/website/envs/prod/{parity.GATE_FILE}",
    ]
    for path in files:
        (document,) = list(yaml.safe_load_all(path.read_text()))
        kubernetes_validate.validate(document, "1.34", strict=True)


def test_check_mode_reports_stale_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parity.main(["prod", "--render-hooks", str(tmp_path), "--check"], env={}) == 1
    assert parity.main(["prod", "--render-hooks", str(tmp_path)], env={}) == 0
    assert parity.main(["prod", "--render-hooks", str(tmp_path), "--check"], env={}) == 0
    gate = tmp_path / "apps" / "website" / "envs" / "prod" / parity.GATE_FILE
    gate.write_text(gate.read_text().replace("SESSION_SECRET", "SESSION_KEY"))
    capsys.readouterr()
    assert parity.main(["prod", "--render-hooks", str(tmp_path), "--check"], env={}) == 1
    assert f"stale: {gate}" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh here")
def test_gate_script_runs_in_a_real_shell(prod: PlatformConfig) -> None:
    keys = ["STRIPE_SECRET_KEY", "SESSION_SECRET"]
    script = parity.gate_script("website", keys)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    ok = subprocess.run(
        ["sh", "-c", script],
        env={**base, "STRIPE_SECRET_KEY": "sk", "SESSION_SECRET": "s"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "all 2 key(s) of Secret website-env present" in ok.stdout
    empty = subprocess.run(
        ["sh", "-c", script],
        env={**base, "STRIPE_SECRET_KEY": "sk", "SESSION_SECRET": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert empty.returncode == 1
    assert "SESSION_SECRET is empty in Secret website-env" in empty.stdout


def test_rendered_migration_hooks_pass_kubernetes_validate_strict(tmp_path: Path) -> None:
    assert parity.main(["prod", "--render-hooks", str(tmp_path)], env={}) == 0
    files = sorted(tmp_path.rglob(migrations.MIGRATE_FILE))
    assert [str(f.relative_to(tmp_path)) for f in files] == [
        f"apps/website/envs/prod/{migrations.MIGRATE_FILE}"
    ]
    (document,) = list(yaml.safe_load_all(files[0].read_text()))
    kubernetes_validate.validate(document, "1.34", strict=True)

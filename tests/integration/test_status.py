"""``ops/status.py`` against the fake Argo CD and a real GitOps repository with a history.

The platform directory has dev and prod (and tooling, without apps). Dev's override files get a
history on origin's main: the website goes 1.0.0 (digest 1) -> 2.0.0 (digest 2, through a merge
whose branch also held a discarded digest 9, which ``--first-parent`` must not count) -> 3.0.0
(digest 3), the newsletter 1.0.0 -> 2.0.0, the shop stays at 1.0.0. Prod runs website digest 1
(2 promotions behind), the newsletter's latest (the same), a shop digest dev never had (unknown),
and lists a ``blog`` whose Application does not exist. Dev's newsletter pins only a tag, so its
digest comes from its Pods. The report runs in-process through :func:`ops.status.main`, once as
``python -m ops.status``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops import status
from ops.argocd_api import TOKEN_ENV
from tests.integration.fake_argocd import (
    ARGOCD_TOKEN,
    REVISION,
    FakeArgoCD,
    FakePod,
    argocd_fixture,  # noqa: F401 - pytest fixture, registered as argocd
    digest_of,
    write_platform,
)
from tests.integration.fakes_githost import (
    Remote,
    Reply,
    hermetic_git_fixture,  # noqa: F401 - pytest fixture, registered as hermetic_git
)

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "rg.fr-par.scw.cloud/acme"
FINISHED = "2025-03-04T10:20:30Z"
DEPLOYED = ("2025-02-01T08:00:00Z", "2025-02-20T16:45:00Z")


def image(app: str) -> str:
    return f"{REGISTRY}/{app}"


def override(app: str, tag: str, digest: str | None = None) -> str:
    pinned = f"@{digest}" if digest else ""
    return f"kustomize:\n  images:\n  - {image(app)}:{tag}{pinned}\n"


def dev_file(app: str) -> str:
    return f"apps/{app}/envs/dev/.argocd-source-dev-{app}.yaml"


def entries(env: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"name": name, "gitopsPath": f"apps/{name}/envs/{env}", "image": image(name)} for name in names]


@pytest.fixture(autouse=True)
def argocd_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, ARGOCD_TOKEN)


@pytest.fixture(name="platform")
def platform_fixture(tmp_path: Path) -> Path:
    return write_platform(
        tmp_path / "platform",
        {
            "tooling": [],
            "dev": entries("dev", ("website", "newsletter", "shop")),
            "prod": entries("prod", ("website", "newsletter", "shop", "blog")),
        },
    )


@pytest.fixture(name="remote")
def gitops_fixture(tmp_path: Path) -> Remote:
    remote = Remote.create(
        tmp_path,
        {
            dev_file("website"): override("website", "1.0.0", digest_of("1")),
            dev_file("newsletter"): override("newsletter", "1.0.0"),
            dev_file("shop"): override("shop", "1.0.0", digest_of("5")),
        },
        "dev's first images",
    )
    remote.git("checkout", "--quiet", "-b", "image-updater-1")
    remote.commit({dev_file("website"): override("website", "1.9.0", digest_of("9"))}, "discarded build")
    remote.commit({dev_file("website"): override("website", "2.0.0", digest_of("2"))}, "2.0.0")
    remote.git("checkout", "--quiet", "main")
    remote.git("merge", "--quiet", "--no-ff", "-m", "merge the write-back branch", "image-updater-1")
    remote.commit(
        {
            dev_file("website"): override("website", "3.0.0", digest_of("3")),
            dev_file("newsletter"): override("newsletter", "2.0.0"),
        },
        "newest",
    )
    remote.git("fetch", "--quiet", "origin")
    return remote


@pytest.fixture(name="apps")
def apps_fixture(argocd: FakeArgoCD) -> FakeArgoCD:
    pods = [
        FakePod(
            "newsletter-6c8d-x1", f"{image('newsletter')}:2.0.0", f"{image('newsletter')}@{digest_of('e')}"
        )
    ]
    argocd.add("dev", "website", images=[f"{image('website')}:3.0.0@{digest_of('3')}"])
    argocd.add("dev", "newsletter", images=[f"{image('newsletter')}:2.0.0"], pods=pods)
    argocd.add("dev", "shop", images=[f"{image('shop')}:1.0.0@{digest_of('5')}"])
    argocd.add(
        "prod",
        "website",
        images=[f"{image('website')}:1.0.0@{digest_of('1')}"],
        phase="Failed",
        history=DEPLOYED,
    )
    argocd.add("prod", "newsletter", images=[f"{image('newsletter')}:2.0.0"], sync="OutOfSync")
    argocd.add("prod", "shop", images=[f"{image('shop')}:0.9.0@{digest_of('0')}"], health="Degraded")
    return argocd


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> Result:
    capsys.readouterr()
    code = status.main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and ARGOCD_TOKEN not in captured.out + captured.err
    return Result(code, captured.out, captured.err)


def base(platform: Path, argocd: FakeArgoCD | str, *extra: str) -> list[str]:
    url = argocd if isinstance(argocd, str) else argocd.url
    return ["--argocd-url", url, "--platform-dir", str(platform), *extra]


def cells(line: str) -> list[str]:
    return re.split(r" {2,}", line.rstrip())


def short(char: str) -> str:
    return "sha256:" + char * 12


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def test_table_with_drift(
    platform: Path, remote: Remote, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    # prod's newsletter pins only a tag and its Pods say which digest: the newest dev had.
    apps.add(
        "prod",
        "newsletter",
        images=[f"{image('newsletter')}:2.0.0"],
        sync="OutOfSync",
        pods=[
            FakePod(
                "newsletter-7f-y2", f"{image('newsletter')}:2.0.0", f"{image('newsletter')}@{digest_of('e')}"
            )
        ],
    )
    result = run(capsys, base(platform, apps, "--repo", str(remote.work)))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    rev = REVISION[:12]
    assert [cells(line) for line in lines] == [
        ["APP", "ENV", "IMAGE", "DIGEST", "REVISION", "SYNC", "HEALTH", "LAST SYNC", "DRIFT"],
        ["blog", "prod", "Application prod-blog not found", "-", "-", "-", "-", "-", "-"],
        [
            "newsletter",
            "dev",
            f"{image('newsletter')}:2.0.0",
            short("e"),
            rev,
            "Synced",
            "Healthy",
            FINISHED,
            "-",
        ],
        [
            "newsletter",
            "prod",
            f"{image('newsletter')}:2.0.0",
            short("e"),
            rev,
            "OutOfSync",
            "Healthy",
            FINISHED,
            "same as dev",
        ],
        ["shop", "dev", f"{image('shop')}:1.0.0", short("5"), rev, "Synced", "Healthy", FINISHED, "-"],
        [
            "shop",
            "prod",
            f"{image('shop')}:0.9.0",
            short("0"),
            rev,
            "Synced",
            "Degraded",
            FINISHED,
            f"unknown: prod's {short('0')} never appeared in dev's override history",
        ],
        ["website", "dev", f"{image('website')}:3.0.0", short("3"), rev, "Synced", "Healthy", FINISHED, "-"],
        [
            "website",
            "prod",
            f"{image('website')}:1.0.0",
            short("1"),
            rev,
            "Synced",
            "Healthy",
            DEPLOYED[-1],
            "2 behind dev",
        ],
    ]
    # Aligned: every cell starts where its column's header does.
    starts = [lines[0].index(header) for header in status.COLUMNS[1:]]
    for line in lines[1:]:
        assert all(line[start - 2 : start] == "  " and line[start] != " " for start in starts), line


def test_newsletter_without_a_digest_in_dev_history_drifts_by_tag(
    platform: Path, remote: Remote, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dev's newsletter history pins tags only: prod's 2.0.0 is matched by tag, 1.0.0 is 1 behind."""
    apps.add("prod", "newsletter", images=[f"{image('newsletter')}:1.0.0@{digest_of('f')}"])
    result = run(capsys, base(platform, apps, "--repo", str(remote.work), "--env", "prod", "--json"))
    assert result.code == 0, result.err
    rows = {row["app"]: row for row in json.loads(result.out)["rows"]}
    assert rows["newsletter"]["drift"] == {"from": "dev", "behind": 1, "reason": None}


def test_json_schema_for_prod(
    platform: Path, remote: Remote, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    apps.add("prod", "blog", images=[f"{image('blog')}:0.1.0@{digest_of('7')}"])
    result = run(capsys, base(platform, apps, "--repo", str(remote.work), "--env", "prod", "--json"))
    assert result.code == 0, result.err

    def row(app: str, **fields: Any) -> dict[str, Any]:
        return {
            "app": app,
            "environment": "prod",
            "application": f"prod-{app}",
            "found": True,
            "revision": REVISION,
            "sync": "Synced",
            "health": "Healthy",
            "lastSyncedAt": FINISHED,
            **fields,
        }

    assert json.loads(result.out) == {
        "schema": 1,
        "argocdUrl": apps.url,
        "ref": "origin/main",
        "driftFrom": "dev",
        "rows": [
            row(
                "blog",
                image=f"{image('blog')}:0.1.0",
                digest=digest_of("7"),
                digests=[digest_of("7")],
                digestSource="summary",
                drift={"from": "dev", "behind": None, "reason": "dev has no app blog"},
            ),
            row(
                "newsletter",
                image=f"{image('newsletter')}:2.0.0",
                digest=None,
                digests=[],
                digestSource="none",
                sync="OutOfSync",
                drift={"from": "dev", "behind": 0, "reason": None},
            ),
            row(
                "shop",
                image=f"{image('shop')}:0.9.0",
                digest=digest_of("0"),
                digests=[digest_of("0")],
                digestSource="summary",
                health="Degraded",
                drift={
                    "from": "dev",
                    "behind": None,
                    "reason": f"prod's {short('0')} never appeared in dev's override history",
                },
            ),
            row(
                "website",
                image=f"{image('website')}:1.0.0",
                digest=digest_of("1"),
                digests=[digest_of("1")],
                digestSource="summary",
                lastSyncedAt=DEPLOYED[-1],
                drift={"from": "dev", "behind": 2, "reason": None},
            ),
        ],
    }


def test_without_repo_there_is_no_drift_and_env_order_is_kept(
    platform: Path, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, base(platform, apps, "--env", "prod", "--env", "dev", "--json"))
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert (document["ref"], document["driftFrom"]) == (None, None)
    assert [(row["app"], row["environment"]) for row in document["rows"]] == [
        ("blog", "prod"),
        ("newsletter", "prod"),
        ("newsletter", "dev"),
        ("shop", "prod"),
        ("shop", "dev"),
        ("website", "prod"),
        ("website", "dev"),
    ]
    assert {json.dumps(row["drift"]) for row in document["rows"]} == {"null"}
    assert document["rows"][0] == {
        "app": "blog",
        "environment": "prod",
        "application": "prod-blog",
        "found": False,
        "image": None,
        "digest": None,
        "digests": [],
        "digestSource": None,
        "revision": None,
        "sync": None,
        "health": None,
        "lastSyncedAt": None,
        "drift": None,
    }
    dev_newsletter = document["rows"][2]
    assert (dev_newsletter["digest"], dev_newsletter["digestSource"]) == (digest_of("e"), "pods")
    table = run(capsys, base(platform, apps, "--env", "dev"))
    assert [cells(line)[-1] for line in table.out.splitlines()[1:]] == ["-", "-", "-"]


# --------------------------------------------------------------------------------------------
# Failures: one message, exit 1 (API) or 2 (usage), never a traceback
# --------------------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_argocd_names_the_url(platform: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    result = run(capsys, base(platform, url, "--env", "dev"))
    assert result.code == 1 and result.out == ""
    call = "GET /api/v1/applications/dev-newsletter"
    assert result.err.startswith(f"status: error: {call}: cannot reach Argo CD at {url} (ConnectionError: ")
    assert len(result.err.splitlines()) == 1


def test_expired_token_is_401(
    platform: Path, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "expired-token")
    result = run(capsys, base(platform, apps, "--env", "dev"))
    assert result.code == 1
    assert result.err == (
        "status: error: GET /api/v1/applications/dev-newsletter: 401 Unauthorized: invalid session: "
        f"token has invalid claims: token is expired: the token in ${TOKEN_ENV} is invalid or expired; "
        "generate one with `argocd account generate-token --account platform-status`\n"
    )
    assert "expired-token" not in result.err
    assert [seen.path for seen in apps.seen] == ["/api/v1/applications/dev-newsletter"]


def test_missing_right_is_403_naming_the_account(
    platform: Path, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    apps.denied.add("prod-website")
    result = run(capsys, base(platform, apps, "--env", "prod"))
    assert result.code == 1 and result.out == ""
    assert result.err == (
        "status: error: GET /api/v1/applications/prod-website: 403 permission denied: the token lacks "
        "`applications, get`: use the platform-status account's token (needed on prod/prod-website)\n"
    )


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (
            Reply(500, {"error": "rpc error", "code": 13, "message": "rpc error"}),
            "500 Internal Server Error: rpc error",
        ),
        (
            Reply(200, b"<html>login</html>", {"Content-Type": "text/html"}),
            "the answer is not JSON (text/html): is {url} Argo CD's API server?",
        ),
    ],
)
def test_server_error_and_non_json_answer(
    platform: Path, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str], reply: Reply, problem: str
) -> None:
    apps.failures["application"] = reply
    result = run(capsys, base(platform, apps, "--env", "dev"))
    assert result.code == 1
    expected = problem.format(url=apps.url)
    assert result.err == f"status: error: GET /api/v1/applications/dev-newsletter: {expected}\n"


def test_pods_tree_failure_names_its_call(
    platform: Path, apps: FakeArgoCD, capsys: pytest.CaptureFixture[str]
) -> None:
    apps.failures["tree"] = Reply(503, {"message": "unavailable"})
    result = run(capsys, base(platform, apps, "--env", "dev"))
    assert result.code == 1
    assert result.err == (
        "status: error: GET /api/v1/applications/dev-newsletter/resource-tree: "
        "503 Service Unavailable: unavailable\n"
    )


@pytest.mark.parametrize(
    ("extra", "unset", "message"),
    [
        (["--env", "dev"], TOKEN_ENV, f"${TOKEN_ENV} is not set"),
        (["--env", "stage"], None, "unknown environment 'stage': environments.yaml lists tooling, dev, prod"),
        (["--repo", "/nonexistent/gitops"], None, "/nonexistent/gitops is not a directory"),
        (["--ca-file", "/nonexistent/ca.pem"], None, "--ca-file /nonexistent/ca.pem: no such file"),
        (["--drift-from", "qa", "--repo", "/nonexistent/gitops"], None, "unknown environment 'qa'"),
    ],
)
def test_usage_errors_exit_2(
    platform: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    extra: list[str],
    unset: str | None,
    message: str,
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    result = run(capsys, base(platform, "https://argocd.example.com", *extra))
    assert result.code == 2
    assert result.err.startswith("status: error: ") and message in result.err


def test_url_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, ["--env", "dev"])
    assert result.code == 2 and "--argocd-url" in result.err


def test_subprocess_run(platform: Path, remote: Remote, apps: FakeArgoCD) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.status",
            *base(platform, apps, "--repo", str(remote.work), "--env", "prod"),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert cells(done.stdout.splitlines()[-1])[-1] == "2 behind dev"

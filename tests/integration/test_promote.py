"""``ops/promote.py`` end to end: a real GitOps repository, the fake Git host and the fake Argo CD.

Each test writes its own platform directory (``environments.yaml`` and stack files with dev's apps
at ``apps/<app>/envs/dev`` and prod's at ``apps/<app>/envs/prod``), builds a bare "origin" holding
the apps' override files and a clone of it (the ``--repo``), and serves a fake GitLab (or GitHub)
on the bare repository and a fake Argo CD (``fake_argocd.py``). The step runs in-process through
:func:`ops.promote.main`, once as ``python -m ops.promote``. What is asserted is what lands: the
branch on origin and its files byte for byte, the merge requests the host holds, the calls Argo CD
saw, the lines printed; and that the written files pass ``ops/writeback_check.py``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import merge_when_green as mwg
from ops import promote, writeback_check
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
    PROJECT,
    TOKEN,
    FakeGitHub,
    FakeGitLab,
    Remote,
    Reply,
    github_api_fixture,  # noqa: F401 - pytest fixtures, registered as github_api, gitlab_api, ...
    gitlab_api_fixture,  # noqa: F401
    hermetic_git_fixture,  # noqa: F401
)

ROOT = Path(__file__).resolve().parents[2]
WEBSITE = "rg.fr-par.scw.cloud/acme/website"
NEWSLETTER = "rg.fr-par.scw.cloud/acme/newsletter"
DEV_WEBSITE, PROD_WEBSITE = digest_of("b"), digest_of("a")
DEV_NEWSLETTER, PROD_NEWSLETTER = digest_of("d"), digest_of("c")
DEV_WEBSITE_FILE = "apps/website/envs/dev/.argocd-source-dev-website.yaml"
PROD_WEBSITE_FILE = "apps/website/envs/prod/.argocd-source-prod-website.yaml"
DEV_NEWSLETTER_FILE = "apps/newsletter/envs/dev/.argocd-source-dev-newsletter.yaml"
PROD_NEWSLETTER_FILE = "apps/newsletter/envs/prod/.argocd-source-prod-newsletter.yaml"
PROD_PATHS = "apps/website/envs/prod,apps/newsletter/envs/prod"
BRANCH = re.compile(r"promote/dev-to-prod/\d{8}T\d{6}")


def kustomize(*images: str) -> str:
    return "kustomize:\n  images:\n" + "".join(f"  - {image}\n" for image in images)


def apps(env: str, names: tuple[str, ...] = ("website", "newsletter")) -> list[dict[str, str]]:
    images = {"website": WEBSITE, "newsletter": NEWSLETTER}
    return [{"name": name, "gitopsPath": f"apps/{name}/envs/{env}", "image": images[name]} for name in names]


@pytest.fixture(autouse=True)
def argocd_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, ARGOCD_TOKEN)


@pytest.fixture(name="platform")
def platform_fixture(tmp_path: Path) -> Path:
    return write_platform(
        tmp_path / "platform",
        {"tooling": [], "prod": apps("prod"), "dev": apps("dev")},
        promoted_from={"prod": "dev"},
    )


@pytest.fixture(name="remote")
def gitops_fixture(tmp_path: Path) -> Remote:
    """Origin's main: dev's website at 1.4.2 (digest b), prod's at 1.4.1 (digest a); the
    newsletter by alias and digest only, dev's d, prod's c."""
    files = {
        f"apps/{app}/envs/{env}/kustomization.yaml": "resources:\n- ../../base\n"
        for app in ("website", "newsletter")
        for env in ("dev", "prod")
    }
    files[DEV_WEBSITE_FILE] = kustomize(f"{WEBSITE}:1.4.2@{DEV_WEBSITE}")
    files[PROD_WEBSITE_FILE] = kustomize(f"{WEBSITE}:1.4.1@{PROD_WEBSITE}")
    files[DEV_NEWSLETTER_FILE] = kustomize(f"newsletter={NEWSLETTER}@{DEV_NEWSLETTER}")
    files[PROD_NEWSLETTER_FILE] = kustomize(f"newsletter={NEWSLETTER}@{PROD_NEWSLETTER}")
    return Remote.create(tmp_path, files, "apps in dev and prod")


@pytest.fixture(name="argocd_apps")
def argocd_apps_fixture(argocd: FakeArgoCD) -> FakeArgoCD:
    """The four Applications, each Synced and Healthy, running what its override pins."""
    argocd.add("dev", "website", images=[f"{WEBSITE}:1.4.2@{DEV_WEBSITE}"])
    argocd.add("prod", "website", images=[f"{WEBSITE}:1.4.1@{PROD_WEBSITE}"])
    argocd.add("dev", "newsletter", images=[f"{NEWSLETTER}@{DEV_NEWSLETTER}"])
    argocd.add("prod", "newsletter", images=[f"{NEWSLETTER}@{PROD_NEWSLETTER}"])
    return argocd


def argv(platform: Path, remote: Remote, host: FakeGitLab | FakeGitHub, *extra: str) -> list[str]:
    provider = "github" if isinstance(host, FakeGitHub) else "gitlab"
    return [
        "dev",
        "prod",
        "--repo",
        str(remote.work),
        "--platform-dir",
        str(platform),
        "--provider",
        provider,
        "--url",
        host.url,
        "--project",
        PROJECT,
        *extra,
    ]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> Result:
    capsys.readouterr()
    code = promote.main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert TOKEN not in captured.out + captured.err and ARGOCD_TOKEN not in captured.out + captured.err
    return Result(code, captured.out, captured.err)


def promotion_branches(remote: Remote) -> list[str]:
    return [name for name in remote.refs() if name.startswith("promote/")]


def show(remote: Remote, ref: str, path: str) -> str:
    return remote.git("show", f"{ref}:{path}")


def changed(remote: Remote, ref: str) -> list[str]:
    return remote.git("diff", "--name-only", "origin/main", ref).split()


def nothing_sent(remote: Remote, host: FakeGitLab) -> None:
    assert promotion_branches(remote) == []
    assert host.requests == {}
    assert [seen.verb for seen in host.seen] == ["GET"] * len(host.seen)


# --------------------------------------------------------------------------------------------
# Promotion
# --------------------------------------------------------------------------------------------


def test_happy_path_pushes_the_digests_and_opens_one_merge_request(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main_before = remote.refs()["main"]
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    assert result.code == 0, result.err

    [branch] = promotion_branches(remote)
    assert BRANCH.fullmatch(branch)
    assert remote.refs()["main"] == main_before
    remote.git("fetch", "--quiet", "origin")
    tip = f"origin/{branch}"
    assert remote.git("rev-parse", f"{tip}^").strip() == main_before
    assert sorted(changed(remote, tip)) == sorted([PROD_WEBSITE_FILE, PROD_NEWSLETTER_FILE])
    assert show(remote, tip, PROD_WEBSITE_FILE) == kustomize(f"{WEBSITE}:1.4.2@{DEV_WEBSITE}")
    assert show(remote, tip, PROD_NEWSLETTER_FILE) == kustomize(f"newsletter={NEWSLETTER}@{DEV_NEWSLETTER}")

    [mr] = gitlab_api.open_requests()
    assert mr["source_branch"] == branch and mr["target_branch"] == "main"
    assert mr["title"] == f"promote dev to prod: website {'b' * 12}, newsletter {'d' * 12}"
    description = mr["description"]
    assert (
        f"| website | `{PROD_WEBSITE}` | `{DEV_WEBSITE}` | `{REVISION}` | Synced / Healthy |" in description
    )
    expected = f"| newsletter | `{PROD_NEWSLETTER}` | `{DEV_NEWSLETTER}` | `{REVISION}` | Synced / Healthy |"
    assert expected in description
    assert f"Verified against Argo CD at {argocd_apps.url} on " in description
    assert f"--paths {','.join(sorted(PROD_PATHS.split(',')))}" in description
    assert mr["merge_when_pipeline_succeeds"] is False
    assert not [seen for seen in gitlab_api.seen if seen.path.endswith("/merge")]

    lines = result.out.splitlines()
    assert lines[0] == f"promote: dev -> prod into main (origin/main at {main_before[:12]})"
    assert (
        lines[1]
        == f"website: sha256:{'a' * 12} -> sha256:{'b' * 12} (dev-website Synced/Healthy at {REVISION[:12]})"
    )
    assert lines[2] == (
        f"newsletter: sha256:{'c' * 12} -> sha256:{'d' * 12} "
        f"(dev-newsletter Synced/Healthy at {REVISION[:12]})"
    )
    assert lines[3].startswith(f"pushed {branch} (commit ")
    assert lines[4] == (
        f"opened !1 {branch} -> main ({mr['web_url']}): auto-merge off (--auto-merge asks for it)"
    )
    # Every Argo CD call names the project; no Pod was needed (the images pin digests).
    assert argocd_apps.calls() == [
        ("/api/v1/applications/dev-website", {"project": "dev"}),
        ("/api/v1/applications/prod-website", {"project": "prod"}),
        ("/api/v1/applications/dev-newsletter", {"project": "dev"}),
        ("/api/v1/applications/prod-newsletter", {"project": "prod"}),
    ]
    # The clone's own checkout is untouched: same branch, clean tree.
    assert remote.git("symbolic-ref", "--short", "HEAD").strip() == "main"
    assert remote.git("status", "--porcelain") == ""

    # The written files pass the write-back gate, restricted to prod's paths.
    capsys.readouterr()
    gate = ["--repo", str(remote.work), "--target", "origin/main", "--branch", tip, "--paths", PROD_PATHS]
    assert writeback_check.main(gate) == 0
    assert "writeback-check: OK, 2 changed path(s)" in capsys.readouterr().out

    again = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    assert again.code == 0, again.err
    assert (
        f"already open: !1 {branch} ({mr['web_url']}) promotes exactly this; not opening a second"
        in again.out
    )
    assert promotion_branches(remote) == [branch]
    assert len(gitlab_api.requests) == 1


def test_changed_content_opens_a_new_merge_request(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    assert run(capsys, args).code == 0
    newer = digest_of("e")
    remote.commit({DEV_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.3@{newer}")}, "dev gets 1.4.3")
    argocd_apps.add("dev", "website", images=[f"{WEBSITE}:1.4.3@{newer}"])
    result = run(capsys, args)
    assert result.code == 0, result.err
    assert len(gitlab_api.open_requests()) == 2
    assert gitlab_api.requests[2]["title"] == f"promote dev to prod: website {'e' * 12}"


def test_auto_merge_on_github(
    platform: Path,
    remote: Remote,
    github_api: FakeGitHub,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argv(platform, remote, github_api, "--argocd-url", argocd_apps.url, "--auto-merge")
    result = run(capsys, [*args, "--app", "newsletter"])
    assert result.code == 0, result.err
    [pull] = github_api.open_pulls()
    assert pull["title"] == f"promote dev to prod: newsletter {'d' * 12}"
    assert pull["auto_merge"] == {"merge_method": "merge", "enabled_by": {"login": "bot"}}
    assert f"opened #1 {pull['head']['ref']} -> main ({pull['html_url']}): auto-merge set" in result.out


def test_app_filter_promotes_only_the_named_app(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(
        capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    )
    assert result.code == 0, result.err
    [branch] = promotion_branches(remote)
    remote.git("fetch", "--quiet", "origin")
    assert changed(remote, f"origin/{branch}") == [PROD_WEBSITE_FILE]
    [mr] = gitlab_api.open_requests()
    assert mr["title"] == f"promote dev to prod: website {'b' * 12}"
    assert "newsletter" not in mr["description"] and "newsletter" not in result.out
    assert {path for path, _ in argocd_apps.calls()} == {
        "/api/v1/applications/dev-website",
        "/api/v1/applications/prod-website",
    }


def test_already_promoted_app_is_skipped_and_nothing_left_is_no_change(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote.commit({PROD_NEWSLETTER_FILE: kustomize(f"newsletter={NEWSLETTER}@{DEV_NEWSLETTER}")}, "promoted")
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    assert result.code == 0, result.err
    assert f"newsletter: skipped, prod already pins sha256:{'d' * 12}" in result.out.splitlines()
    [branch] = promotion_branches(remote)
    remote.git("fetch", "--quiet", "origin")
    assert changed(remote, f"origin/{branch}") == [PROD_WEBSITE_FILE]

    remote.commit({PROD_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.2@{DEV_WEBSITE}")}, "merged")
    done = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    assert done.code == 0, done.err
    assert done.out.splitlines()[1:] == [
        f"website: skipped, prod already pins sha256:{'b' * 12}",
        f"newsletter: skipped, prod already pins sha256:{'d' * 12}",
        "promote: nothing to promote, prod already pins what dev runs",
    ]
    assert promotion_branches(remote) == [branch] and len(gitlab_api.requests) == 1


def test_dry_run_changes_nothing(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argv(
        platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website", "--dry-run"
    )
    result = run(capsys, args)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert re.fullmatch(
        r"dry run: would push promote/dev-to-prod/\d{8}T\d{6} on origin/main \(\w{12}\) writing:", lines[2]
    )
    assert lines[3:7] == [
        f"  {PROD_WEBSITE_FILE}:",
        "    kustomize:",
        "      images:",
        f"      - {WEBSITE}:1.4.2@{DEV_WEBSITE}",
    ]
    assert lines[7] == (
        "dry run: would open a merge request into main: "
        f'"promote dev to prod: website {"b" * 12}" (auto-merge off)'
    )
    assert lines[8] == "dry run: nothing was changed"
    nothing_sent(remote, gitlab_api)
    assert remote.git("for-each-ref", "refs/heads/promote/") == ""


def test_tag_only_override_is_promoted_at_the_digest_the_pods_run(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote.commit({DEV_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.2")}, "semver updates: tags only")
    pods = [
        FakePod("website-7d9f-abcde", f"{WEBSITE}:1.4.2", f"{WEBSITE}@{DEV_WEBSITE}"),
        FakePod("website-7d9f-fghij", f"{WEBSITE}:1.4.2", f"docker-pullable://{WEBSITE}@{DEV_WEBSITE}"),
        FakePod("website-old-klmno", f"{WEBSITE}:1.4.1", f"{WEBSITE}@{PROD_WEBSITE}", phase="Succeeded"),
    ]
    argocd.add("dev", "website", images=[f"{WEBSITE}:1.4.2"], pods=pods)
    argocd.add("prod", "website", images=[f"{WEBSITE}:1.4.1@{PROD_WEBSITE}"])
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd.url, "--app", "website"))
    assert result.code == 0, result.err
    [branch] = promotion_branches(remote)
    remote.git("fetch", "--quiet", "origin")
    assert show(remote, f"origin/{branch}", PROD_WEBSITE_FILE) == kustomize(f"{WEBSITE}:1.4.2@{DEV_WEBSITE}")
    resources = [query for path, query in argocd.calls() if path.endswith("/resource")]
    assert resources[0] == {
        "namespace": "website",
        "resourceName": "website-7d9f-abcde",
        "version": "v1",
        "kind": "Pod",
        "group": "",
        "project": "dev",
    }
    assert len(resources) == 3


def test_helm_overrides_keep_their_parameters(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def helm(*parameters: tuple[str, str]) -> str:
        return "helm:\n  parameters:\n" + "".join(
            f"  - name: {name}\n    value: {value}\n    forceString: true\n" for name, value in parameters
        )

    remote.commit(
        {
            DEV_WEBSITE_FILE: helm(
                ("image.name", WEBSITE), ("image.tag", "1.4.2"), ("image.digest", DEV_WEBSITE)
            ),
            PROD_WEBSITE_FILE: helm(("replicas", "'3'"), ("image.name", WEBSITE), ("image.tag", "1.4.1")),
            DEV_NEWSLETTER_FILE: helm(("image.tag", f"2.0.0@{DEV_NEWSLETTER}")),
        },
        "helm apps",
    )
    remote.git("rm", "--quiet", PROD_NEWSLETTER_FILE)
    remote.git("commit", "--quiet", "-m", "prod newsletter without override")
    remote.git("push", "--quiet", "origin", "main")
    argocd.add("dev", "website", images=[f"{WEBSITE}@{DEV_WEBSITE}"])
    argocd.add("prod", "website", images=[f"{WEBSITE}:1.4.1"])
    argocd.add("dev", "newsletter", images=[f"{NEWSLETTER}:2.0.0@{DEV_NEWSLETTER}"])
    argocd.add("prod", "newsletter", images=[f"{NEWSLETTER}:1.0.0"])
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd.url))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    seen = f"Synced/Healthy at {REVISION[:12]}"
    assert lines[1] == f"website: tag 1.4.1 (no digest) -> sha256:{'b' * 12} (dev-website {seen})"
    assert lines[2] == f"newsletter: none -> sha256:{'d' * 12} (dev-newsletter {seen})"
    [branch] = promotion_branches(remote)
    remote.git("fetch", "--quiet", "origin")
    tip = f"origin/{branch}"
    assert show(remote, tip, PROD_WEBSITE_FILE) == (
        "helm:\n  parameters:\n"
        "  - name: replicas\n    value: '3'\n    forceString: true\n"
        f"  - name: image.name\n    value: {WEBSITE}\n    forceString: true\n"
        "  - name: image.tag\n    value: 1.4.2\n    forceString: true\n"
        f"  - name: image.digest\n    value: {DEV_WEBSITE}\n    forceString: true\n"
    )
    assert show(remote, tip, PROD_NEWSLETTER_FILE) == (
        "helm:\n  parameters:\n"
        f"  - name: image.tag\n    value: 2.0.0@{DEV_NEWSLETTER}\n    forceString: true\n"
    )
    [mr] = gitlab_api.open_requests()
    assert f"| website | tag `1.4.1` (no digest) | `{DEV_WEBSITE}` |" in mr["description"]
    assert f"| newsletter | none | `{DEV_NEWSLETTER}` |" in mr["description"]
    gate = ["--repo", str(remote.work), "--target", "origin/main", "--branch", tip, "--paths", PROD_PATHS]
    assert writeback_check.main(gate) == 0


def test_without_argocd_promotes_from_git_and_says_it_was_not_verified(
    platform: Path, remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, [*argv(platform, remote, gitlab_api, "--without-argocd"), "--app", "website"])
    assert result.code == 0, result.err
    warning = (
        "what dev runs was NOT verified (--without-argocd): the digests come from dev's override files "
        "in Git alone"
    )
    assert result.out.splitlines()[1] == f"WARNING: {warning}"
    assert result.out.splitlines()[2] == f"website: sha256:{'a' * 12} -> sha256:{'b' * 12} (not verified)"
    [mr] = gitlab_api.open_requests()
    assert f"**Warning: {warning}.**" in mr["description"]
    assert (
        f"| website | `{PROD_WEBSITE}` | `{DEV_WEBSITE}` | not verified | not verified |" in mr["description"]
    )
    [branch] = promotion_branches(remote)
    remote.git("fetch", "--quiet", "origin")
    assert show(remote, f"origin/{branch}", PROD_WEBSITE_FILE) == kustomize(f"{WEBSITE}:1.4.2@{DEV_WEBSITE}")


# --------------------------------------------------------------------------------------------
# Refusals: one line per app, exit 1, nothing pushed, no merge request
# --------------------------------------------------------------------------------------------


def refused(result: Result, *lines: str, of: int = 2) -> None:
    assert result.code == 1, result.out + result.err
    assert result.err.splitlines() == [
        *lines,
        f"promote: nothing pushed, no merge request: {len(lines)} of {of} app(s) refused",
    ]


def test_dev_not_synced_and_healthy_is_refused(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argocd_apps.add("dev", "website", images=[f"{WEBSITE}:1.4.2@{DEV_WEBSITE}"], sync="OutOfSync")
    argocd_apps.add("dev", "newsletter", images=[f"{NEWSLETTER}@{DEV_NEWSLETTER}"], health="Progressing")
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    refused(
        result,
        "promote: refused website: dev's Application dev-website is OutOfSync/Healthy, not Synced/Healthy",
        "promote: refused newsletter: dev's Application dev-newsletter is Synced/Progressing, "
        "not Synced/Healthy",
    )
    nothing_sent(remote, gitlab_api)


def test_digest_dev_never_ran_is_refused_and_blocks_the_other_app(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argocd_apps.add("dev", "website", images=[f"{WEBSITE}:1.4.1@{PROD_WEBSITE}"])
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    refused(
        result,
        f"promote: refused website: Git pins sha256:{'b' * 12} but dev's Application dev-website never "
        f"ran it (it runs sha256:{'a' * 12})",
    )
    assert f"newsletter: sha256:{'c' * 12} -> sha256:{'d' * 12}" in result.out  # fine, but not pushed
    nothing_sent(remote, gitlab_api)


def test_pods_running_two_digests_are_refused(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote.commit({DEV_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.2")}, "tag only")
    pods = [
        FakePod("website-a", f"{WEBSITE}:1.4.2", f"{WEBSITE}@{DEV_WEBSITE}"),
        FakePod("website-b", f"{WEBSITE}:1.4.2", f"{WEBSITE}@{PROD_WEBSITE}"),
    ]
    argocd_apps.add("dev", "website", images=[f"{WEBSITE}:1.4.2"], pods=pods)
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    result = run(capsys, args)
    refused(
        result,
        f"promote: refused website: dev's Application dev-website runs 2 digests (sha256:{'a' * 12}, "
        f"sha256:{'b' * 12}): a rollout?",
        of=1,
    )
    nothing_sent(remote, gitlab_api)


def test_app_missing_from_prod_is_refused(
    tmp_path: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    platform = write_platform(
        tmp_path / "other",
        {"prod": apps("prod", ("website",)), "dev": apps("dev")},
        promoted_from={"prod": "dev"},
    )
    del argocd_apps.apps["prod-website"]
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    refused(
        result,
        "promote: refused website: prod's Application prod-website does not exist in Argo CD (project prod)",
        "promote: refused newsletter: not in prod's stack file (Pulumi.prod.yaml platform:apps)",
    )
    nothing_sent(remote, gitlab_api)


def test_tag_only_without_argocd_is_refused(
    platform: Path, remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.commit({DEV_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.2")}, "tag only")
    result = run(capsys, argv(platform, remote, gitlab_api, "--without-argocd"))
    refused(
        result,
        "promote: refused website: no digest known: dev's override pins only the tag 1.4.2 and Argo CD is "
        "not asked what runs (--without-argocd)",
    )
    nothing_sent(remote, gitlab_api)


def test_missing_dev_override_is_refused(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote.git("rm", "--quiet", DEV_NEWSLETTER_FILE)
    remote.git("commit", "--quiet", "-m", "no override")
    remote.git("push", "--quiet", "origin", "main")
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "newsletter")
    result = run(capsys, args)
    refused(
        result,
        f"promote: refused newsletter: dev's override {DEV_NEWSLETTER_FILE} is not in origin/main",
        of=1,
    )
    nothing_sent(remote, gitlab_api)


# --------------------------------------------------------------------------------------------
# Failures of the APIs, usage errors
# --------------------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_argocd_denied_or_unreachable_exits_1_with_nothing_pushed(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argocd_apps.denied.add("dev-website")
    denied = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
    assert denied.code == 1
    assert denied.err == (
        "promote: error: GET /api/v1/applications/dev-website: 403 permission denied: the token lacks "
        "`applications, get`: use the platform-status account's token (needed on dev/dev-website)\n"
    )
    url = closed_port_url()
    unreachable = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", url))
    assert unreachable.code == 1
    assert (
        f"promote: error: GET /api/v1/applications/dev-website: cannot reach Argo CD at {url} ("
        in unreachable.err
    )
    nothing_sent(remote, gitlab_api)


def test_git_host_failure_after_the_push_takes_the_push_back(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A promotion branch without its merge request is not a promotion: each failed run would
    otherwise leave one more branch on origin."""
    gitlab_api.failures["create"] = Reply(500, {"message": "500 Internal Server Error"})
    for _ in range(2):
        result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url))
        assert result.code == 1
        (pushed,) = re.findall(r"^pushed (\S+) ", result.out, re.MULTILINE)
        assert result.err == (
            "promote: error: POST /projects/:id/merge_requests: 500 Internal Server Error; "
            f"{pushed} was pushed and deleted again; run again once the host accepts it\n"
        )
        assert promotion_branches(remote) == []


@pytest.fixture(name="usage")
def usage_fixture(platform: Path, remote: Remote) -> list[str]:
    return [
        "--repo",
        str(remote.work),
        "--platform-dir",
        str(platform),
        "--provider",
        "gitlab",
        "--url",
        "https://gitlab.example.com",
        "--project",
        PROJECT,
    ]


@pytest.mark.parametrize(
    ("extra", "unset", "message"),
    [
        (
            ["dev", "stage", "--without-argocd"],
            None,
            "unknown environment 'stage': environments.yaml lists tooling, prod, dev",
        ),
        (["dev", "dev", "--without-argocd"], None, "source and destination are both 'dev'"),
        (["dev", "prod", "--without-argocd"], mwg.TOKEN_ENV, f"${mwg.TOKEN_ENV} is not set"),
        (
            ["dev", "prod", "--argocd-url", "https://argocd.example.com"],
            TOKEN_ENV,
            f"${TOKEN_ENV} is not set",
        ),
        (["dev", "prod"], None, "--argocd-url is required (or --without-argocd"),
        (["dev", "prod", "--without-argocd", "--argocd-url", "https://a"], None, "exclude each other"),
        (
            ["dev", "prod", "--without-argocd", "--app", "shop"],
            None,
            "dev has no app shop (its apps: website, newsletter)",
        ),
        # The destination's stack file names its one source (platform:gitops.promotedFrom).
        (
            ["tooling", "prod", "--without-argocd"],
            None,
            "prod receives images from dev only (Pulumi.prod.yaml: platform:gitops.promotedFrom), "
            "not from tooling",
        ),
        (
            ["prod", "dev", "--without-argocd"],
            None,
            "dev is not fed by promotion (Pulumi.dev.yaml sets no platform:gitops.promotedFrom)",
        ),
        (["dev", "prod", "--argocd-url", "argocd.example.com"], None, "is not an http(s) URL"),
        (
            ["dev", "prod", "--without-argocd", "--platform-dir", "/nonexistent"],
            None,
            "environments.yaml does not exist: point --platform-dir at a checkout",
        ),
        (["dev", "prod", "--without-argocd", "--target", "promote/dev-to-prod/x"], None, "--target"),
    ],
)
def test_usage_errors_exit_2(
    usage: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    extra: list[str],
    unset: str | None,
    message: str,
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    result = run(capsys, [*usage, *extra])  # the last --platform-dir wins
    assert result.code == 2
    assert result.err.startswith("promote: error: ") and message in result.err


def test_subprocess_dry_run(
    platform: Path, remote: Remote, gitlab_api: FakeGitLab, argocd_apps: FakeArgoCD
) -> None:
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--dry-run")
    done = subprocess.run(
        [sys.executable, "-m", "ops.promote", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "dry run: nothing was changed"
    assert promotion_branches(remote) == []


# --- Refusals found in review ------------------------------------------------------------------


def test_a_tag_git_pins_is_not_matched_to_a_digest_only_summary(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Git pins the tag 1.4.3, Argo CD reports digests only: nothing says the digest is 1.4.3, and
    prod's file would carry a tag that is not what runs."""
    remote.commit({DEV_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.3")}, "tag only")
    argocd_apps.add("dev", "website", images=[f"{WEBSITE}@{DEV_WEBSITE}"])
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    refused(
        run(capsys, args),
        "promote: refused website: Git pins tag 1.4.3 but dev's Application dev-website reports no tag to "
        "match it with (digests only)",
        of=1,
    )
    nothing_sent(remote, gitlab_api)


def test_two_digests_are_refused_even_when_git_pins_one_of_them(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argocd_apps.add(
        "dev", "website", images=[f"{WEBSITE}:1.4.2@{DEV_WEBSITE}", f"{WEBSITE}:1.4.1@{PROD_WEBSITE}"]
    )
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    refused(
        run(capsys, args),
        f"promote: refused website: dev's Application dev-website runs 2 digests (sha256:{'a' * 12}, "
        f"sha256:{'b' * 12}): a rollout?",
        of=1,
    )
    nothing_sent(remote, gitlab_api)


def test_a_malformed_destination_override_is_refused_not_a_traceback(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    argocd_apps: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
) -> None:
    remote.commit({PROD_WEBSITE_FILE: kustomize(f"{WEBSITE}:1.4.1@sha256:abc")}, "a broken prod override")
    args = argv(platform, remote, gitlab_api, "--argocd-url", argocd_apps.url, "--app", "website")
    result = run(capsys, args)
    assert result.code == 1 and "Traceback" not in result.err
    assert "promote: refused website: prod's override apps/website/envs/prod/" in result.err + result.out
    nothing_sent(remote, gitlab_api)


def test_a_token_no_http_header_can_carry_is_a_usage_error(
    platform: Path,
    remote: Remote,
    gitlab_api: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "abc\u2026def")
    result = run(capsys, argv(platform, remote, gitlab_api, "--argocd-url", "http://127.0.0.1:9"))
    assert result.code == 2 and "Traceback" not in result.err
    assert f"${TOKEN_ENV} holds characters an HTTP header cannot carry" in result.err

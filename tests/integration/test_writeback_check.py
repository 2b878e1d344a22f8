"""The write-back branch gate, against real Git repositories built in tmp_path.

Each test builds a GitOps repository with a ``main`` branch (two apps, one of them with an image
updater override already), forks an ``image-updater-<sha>`` branch from it, commits what the test
needs and runs the check: through :func:`ops.writeback_check.main` in-process, and as
``python -m ops.writeback_check`` in a subprocess. Git runs without global or system config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import writeback_check as wc

ROOT = Path(__file__).resolve().parents[2]
BRANCH = "image-updater-3f2a9c"
OVERRIDE = "apps/website/.argocd-source-prod-website.yaml"
KUSTOMIZE_OVERRIDE = "kustomize:\n  images:\n  - rg.fr-par.scw.cloud/platform/website:1.4.2\n"
HELM_OVERRIDE = (
    "helm:\n  parameters:\n  - forceString: true\n    name: image.tag\n    value: 2.0.1\n"
    "  - forceString: true\n    name: image.name\n    value: rg.fr-par.scw.cloud/platform/newsletter\n"
)
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: website\n"


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No global or system Git config, a fixed identity, and no repository discovery above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Repo:
    path: Path

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    """``main`` with two apps, then the write-back branch checked out (nothing committed on it yet)."""
    gitops = Repo(tmp_path / "gitops")
    gitops.path.mkdir()
    gitops.git("init", "--quiet", "-b", "main")
    gitops.write("apps/website/deployment.yaml", DEPLOYMENT)
    gitops.write("apps/website/kustomization.yaml", "resources:\n- deployment.yaml\n")
    gitops.write(OVERRIDE, "kustomize:\n  images:\n  - rg.fr-par.scw.cloud/platform/website:1.4.1\n")
    gitops.write("apps/newsletter/Chart.yaml", "apiVersion: v2\nname: newsletter\nversion: 0.1.0\n")
    gitops.write("environments/prod/website.yaml", "kind: Application\n")
    gitops.commit("platform apps")
    gitops.git("checkout", "--quiet", "-b", BRANCH)
    yield gitops


def check(capsys: pytest.CaptureFixture[str], repo: Repo, *extra: str) -> tuple[int, str, str]:
    """Run main() in-process on the write-back branch against main: (exit code, stdout, stderr)."""
    code = wc.main(["--repo", str(repo.path), "--target", "main", "--branch", BRANCH, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def refused(out: str) -> set[str]:
    return {
        line.split(" ", 1)[1].split(":", 1)[0] for line in out.splitlines() if line.startswith("REFUSED ")
    }


APP_PATHS = ("--paths", "apps/website,apps/newsletter")


# --------------------------------------------------------------------------------------------
# What passes
# --------------------------------------------------------------------------------------------


def test_a_tag_bump_in_the_override_file_passes(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    repo.write(OVERRIDE, KUSTOMIZE_OVERRIDE)
    repo.commit("build: automatic update of prod-website")

    code, out, err = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_OK, out + err
    assert "REFUSED" not in out
    assert "writeback-check: OK, 1 changed path(s)" in out
    assert err == ""


def test_a_new_helm_override_passes_and_head_is_the_default_branch(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    repo.write("apps/newsletter/.argocd-source-prod-newsletter.yaml", HELM_OVERRIDE)
    repo.commit("build: automatic update of prod-newsletter")

    code = wc.main(["--repo", str(repo.path), "--target", "main", *APP_PATHS])  # --branch HEAD
    out, _ = capsys.readouterr()

    assert code == wc.EXIT_OK, out
    assert "between main and HEAD, 0 refused" in out


def test_a_branch_identical_to_main_passes_with_a_message(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    code, out, _ = check(capsys, repo)

    assert code == wc.EXIT_OK
    assert "nothing changed between main and image-updater-3f2a9c" in out


def test_the_diff_is_taken_from_the_merge_base_not_from_mains_tip(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    repo.write(OVERRIDE, KUSTOMIZE_OVERRIDE)
    repo.commit("build: automatic update of prod-website")
    repo.git("checkout", "--quiet", "main")
    repo.write("apps/website/deployment.yaml", DEPLOYMENT + "spec:\n  replicas: 3\n")
    repo.commit("scale the website (on main, after the fork)")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_OK, out
    assert refused(out) == set()


# --------------------------------------------------------------------------------------------
# What is refused: paths
# --------------------------------------------------------------------------------------------


def test_touching_a_manifest_as_well_fails_naming_it(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    repo.write(OVERRIDE, KUSTOMIZE_OVERRIDE)
    repo.write("apps/website/deployment.yaml", DEPLOYMENT + "spec:\n  replicas: 0\n")
    repo.commit("build: automatic update of prod-website")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {"apps/website/deployment.yaml"}
    assert "REFUSED apps/website/deployment.yaml: not an image updater override file" in out
    assert (
        "writeback-check: FAILED, 2 changed path(s) between main and image-updater-3f2a9c, 1 refused" in out
    )


@pytest.mark.parametrize(
    "path",
    [
        "environments/prod/.argocd-source-x.yaml",  # not an app path
        ".argocd-source-x.yaml",  # repository root
        "apps/website/base/.argocd-source-x.yaml",  # below an app path, not directly inside
    ],
)
def test_an_override_outside_the_allowed_paths_fails(
    capsys: pytest.CaptureFixture[str], repo: Repo, path: str
) -> None:
    repo.write(path, KUSTOMIZE_OVERRIDE)
    repo.commit("override elsewhere")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {path}
    assert "outside the allowed app paths (apps/newsletter, apps/website)" in out


def test_without_paths_an_override_in_any_directory_is_allowed(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    repo.write("environments/prod/.argocd-source-x.yaml", KUSTOMIZE_OVERRIDE)
    repo.commit("override elsewhere")

    code, out, _ = check(capsys, repo)

    assert code == wc.EXIT_OK, out


@pytest.mark.parametrize(
    "name",
    [
        "kustomization.yaml",  # the "kustomization" write-back target: not configured here
        "values.yaml",  # the "helmvalues" write-back target: not configured here
        ".argocd-source.yaml",  # Argo CD applies it to every app of the directory
        ".argocd-source-argocd_prod-website.yaml",  # namespaced variant: apps live in argocd here
        ".argocd-source-Prod-Website.yaml",  # not a Kubernetes object name
        ".argocd-source-prod-website.yml",  # the updater writes .yaml
    ],
)
def test_files_the_updater_does_not_write_here_are_refused(
    capsys: pytest.CaptureFixture[str], repo: Repo, name: str
) -> None:
    path = f"apps/website/{name}"
    repo.write(path, KUSTOMIZE_OVERRIDE)
    repo.commit("something else")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {path}


def test_renaming_the_override_fails_naming_the_old_path(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    renamed = "apps/website/.argocd-source-prod-web.yaml"
    repo.git("config", "diff.renames", "false")  # the check asks for rename detection itself
    repo.git("mv", OVERRIDE, renamed)
    repo.commit("rename")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {OVERRIDE}
    assert f"REFUSED {OVERRIDE}: renamed to {renamed}: the image updater never renames" in out
    assert "2 changed path(s)" in out


def test_renaming_a_manifest_into_an_override_name_fails_on_both_paths(
    capsys: pytest.CaptureFixture[str], repo: Repo
) -> None:
    disguised = "apps/website/.argocd-source-evil.yaml"
    repo.git("mv", "apps/website/deployment.yaml", disguised)
    repo.commit("rename")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {"apps/website/deployment.yaml", disguised}
    assert f"REFUSED {disguised}: must hold exactly one of 'helm' or 'kustomize'" in out


def test_deleting_the_override_fails(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    repo.git("rm", "--quiet", OVERRIDE)
    repo.commit("drop the pinned image")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {OVERRIDE}
    assert "override deleted: the updater never deletes" in out


def test_deleting_a_manifest_fails(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    repo.git("rm", "--quiet", "apps/website/deployment.yaml")
    repo.commit("delete")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {"apps/website/deployment.yaml"}


def test_an_override_that_is_a_symlink_fails(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    link = repo.path / "apps/newsletter/.argocd-source-prod-newsletter.yaml"
    link.symlink_to("../website/.argocd-source-prod-website.yaml")
    repo.commit("link")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert "REFUSED apps/newsletter/.argocd-source-prod-newsletter.yaml: mode 120000" in out


# --------------------------------------------------------------------------------------------
# What is refused: content of an override file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (KUSTOMIZE_OVERRIDE + "spec:\n  replicas: 0\n", "found ['kustomize', 'spec']"),
        (HELM_OVERRIDE + "kustomize:\n  images: []\n", "found ['helm', 'kustomize']"),
        (
            "kustomize:\n  images:\n  - website:1.4.2\n  namePrefix: evil-\n",
            "kustomize must hold only 'images'",
        ),
        (
            "helm:\n  parameters:\n  - name: image.tag\n    value: '2'\n  valueFiles:\n  - /etc/passwd\n",
            "helm must hold only 'parameters'",
        ),
        (
            "helm:\n  parameters:\n  - name: image.tag\n    value: '2'\n    path: x\n",
            "helm.parameters[0] has keys the image updater never writes: ['path']",
        ),
        (
            "helm:\n  parameters:\n  - name: image.tag\n    value: 2.5\n",
            "helm.parameters[0].value must be a str",
        ),
        ("helm:\n  parameters:\n  - value: '2'\n", "helm.parameters[0] has no name"),
        ("kustomize:\n  images:\n  - {name: website}\n", "kustomize.images[0] must be a non-empty image"),
        ("kustomize:\n  images: []\n", "kustomize.images must be a non-empty list"),
        (KUSTOMIZE_OVERRIDE + "kustomize:\n  images:\n  - other:1\n", "duplicate key 'kustomize'"),
        ("", "empty override"),
        ("- kustomize\n", "found list"),
    ],
)
def test_an_override_with_more_than_the_updater_writes_fails(
    capsys: pytest.CaptureFixture[str], repo: Repo, content: str, reason: str
) -> None:
    repo.write(OVERRIDE, content)
    repo.commit("more than an image")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert refused(out) == {OVERRIDE}
    assert reason in out


@pytest.mark.parametrize(
    "content",
    ["kustomize: [unclosed\n", "kustomize:\n  images:\n  - a\n---\nhelm: {}\n", "\tkustomize: x\n"],
)
def test_a_non_yaml_override_fails(capsys: pytest.CaptureFixture[str], repo: Repo, content: str) -> None:
    repo.write(OVERRIDE, content)
    repo.commit("broken")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert f"REFUSED {OVERRIDE}: not a single valid YAML document" in out


def test_a_non_utf8_override_fails(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    (repo.path / OVERRIDE).write_bytes(b"kustomize:\n  images:\n  - \xff\xfe\n")
    repo.commit("binary")

    code, out, _ = check(capsys, repo, *APP_PATHS)

    assert code == wc.EXIT_REFUSED
    assert f"REFUSED {OVERRIDE}: not a single valid YAML document" in out


# --------------------------------------------------------------------------------------------
# Usage errors: exit 2, a message, never a traceback
# --------------------------------------------------------------------------------------------


def test_an_unknown_branch_is_a_usage_error(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    code = wc.main(["--repo", str(repo.path), "--target", "main", "--branch", "image-updater-nope"])
    out, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert "unknown branch 'image-updater-nope'" in err
    assert "Traceback" not in out + err


def test_an_unknown_target_is_a_usage_error(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    code = wc.main(["--repo", str(repo.path), "--target", "trunk", "--branch", BRANCH])
    _, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert "unknown target 'trunk'" in err


def test_a_directory_that_is_not_a_repository_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()

    code = wc.main(["--repo", str(plain), "--target", "main"])
    out, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert f"writeback-check: error: {plain} is not a Git repository" in err
    assert "Traceback" not in out + err


def test_unrelated_histories_are_a_usage_error(capsys: pytest.CaptureFixture[str], repo: Repo) -> None:
    repo.git("checkout", "--quiet", "--orphan", "image-updater-orphan")
    repo.commit("no common history")

    code = wc.main(["--repo", str(repo.path), "--target", "main", "--branch", "image-updater-orphan"])
    _, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert "no merge base between main and image-updater-orphan" in err


def test_a_revision_that_looks_like_an_option_is_not_passed_to_git(
    capsys: pytest.CaptureFixture[str], repo: Repo, tmp_path: Path
) -> None:
    written = tmp_path / "written-by-git"

    code = wc.main(["--repo", str(repo.path), "--target", "main", f"--branch=--output={written}"])
    _, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert "invalid branch" in err
    assert not written.exists()


@pytest.mark.parametrize("paths", ["apps/website,", "../apps", "apps/./website"])
def test_bad_paths_are_a_usage_error(capsys: pytest.CaptureFixture[str], repo: Repo, paths: str) -> None:
    code, _, err = check(capsys, repo, "--paths", paths)

    assert code == wc.EXIT_USAGE
    assert "invalid --paths entry" in err


def test_missing_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = wc.main(["--target", "main"])
    _, err = capsys.readouterr()

    assert code == wc.EXIT_USAGE
    assert "--repo" in err


# --------------------------------------------------------------------------------------------
# As the pipeline runs it
# --------------------------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.writeback_check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_as_a_subprocess(repo: Repo, tmp_path: Path) -> None:
    repo.write(OVERRIDE, KUSTOMIZE_OVERRIDE)
    repo.commit("build: automatic update of prod-website")
    clean = run_module("--repo", str(repo.path), "--target", "main", "--branch", BRANCH, *APP_PATHS)
    repo.write("apps/website/kustomization.yaml", "resources:\n- deployment.yaml\n- evil.yaml\n")
    repo.commit("and a little more")
    dirty = run_module("--repo", str(repo.path), "--target", "main", "--branch", BRANCH, *APP_PATHS)
    (tmp_path / "plain").mkdir()
    broken = run_module("--repo", str(tmp_path / "plain"), "--target", "main")

    assert clean.returncode == wc.EXIT_OK, clean.stdout + clean.stderr
    assert dirty.returncode == wc.EXIT_REFUSED, dirty.stdout + dirty.stderr
    assert refused(dirty.stdout) == {"apps/website/kustomization.yaml"}
    assert broken.returncode == wc.EXIT_USAGE
    assert "is not a Git repository" in broken.stderr
    assert "Traceback" not in clean.stderr + dirty.stderr + broken.stderr

"""The merge-when-green step against fake Git host APIs backed by a real bare Git repository.

Each test builds a bare repository (``git init --bare``) with a ``main`` branch and pushes the
write-back branches it needs from a clone. A fake GitLab REST API (and, for the GitHub cases, a fake
GitHub REST and GraphQL API) runs in a thread on 127.0.0.1, on a port of its own, and lists the
branches from ``git for-each-ref`` of that bare repository: a ``git push --delete`` really removes a
branch. The fakes serve only the endpoints the clients call, check the token, paginate by two (so
any listing of three goes through python-gitlab's and PyGithub's pagination) and record every
request. The step runs through :func:`ops.merge_when_green.main` in-process, and once as
``python -m ops.merge_when_green`` in a subprocess. The fakes and their fixtures live in
``tests/integration/fakes_githost.py``.

What the fakes answer is the documented shape of the real APIs as far as the clients read it; the
hosts' own behaviour (which status GitLab gives while a pipeline has not started, GitHub's GraphQL
error types) is what the module docstring of ``ops/githost.py`` cites, not verified here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import merge_when_green as mwg
from tests.integration.fakes_githost import (
    PROJECT,
    PROJECT_ID,
    TOKEN,
    FakeApi,
    FakeGitHub,
    FakeGitLab,
    Remote,
    Reply,
    github_api_fixture,  # noqa: F401 - pytest fixtures, registered as github_api, gitlab_api, ...
    gitlab_api_fixture,  # noqa: F401
    hermetic_git_fixture,  # noqa: F401
    remote_fixture,  # noqa: F401
)

ROOT = Path(__file__).resolve().parents[2]
BRANCH = "image-updater-3f2a9c"
OTHER = "image-updater-8b41d0"


def gitlab_argv(api: FakeApi, *extra: str) -> list[str]:
    return ["--provider", "gitlab", "--url", api.url, "--project", PROJECT, "--target", "main", *extra]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Result:
    capsys.readouterr()
    code = mwg.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert TOKEN not in captured.out + captured.err
    return Result(code, captured.out, captured.err)


# --------------------------------------------------------------------------------------------
# GitLab cases
# --------------------------------------------------------------------------------------------


def test_new_branch_gets_exactly_one_merge_request_with_auto_merge(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    tip = remote.push_branch(BRANCH)
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 0, result.err
    [mr] = gitlab_api.open_requests()
    assert mr["source_branch"] == BRANCH and mr["target_branch"] == "main"
    assert mr["title"] == f"image updater: {BRANCH}"
    assert (
        BRANCH in mr["description"]
        and tip in mr["description"]
        and "ops/writeback_check.py" in mr["description"]
    )
    assert mr["merge_when_pipeline_succeeds"] is True
    assert mr["remove_source_branch"] is True
    merges = [seen for seen in gitlab_api.seen if seen.path.endswith(f"/merge_requests/{mr['iid']}/merge")]
    assert [(seen.verb, seen.body) for seen in merges] == [("PUT", {"merge_when_pipeline_succeeds": True})]
    assert f"opened !{mr['iid']} {BRANCH} -> main ({mr['web_url']}): auto-merge set" in result.out
    assert "1 opened" in result.out


def test_rerun_makes_no_duplicate_and_updates_the_merge_request(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    assert run_main(capsys, gitlab_argv(gitlab_api)).code == 0
    before = len(gitlab_api.seen)
    again = run_main(capsys, gitlab_argv(gitlab_api))
    assert again.code == 0, again.err
    assert len(gitlab_api.open_requests()) == 1
    assert [seen.verb for seen in gitlab_api.seen[before:]] == ["GET"] * len(gitlab_api.seen[before:])
    assert f"unchanged !1 {BRANCH}: auto-merge set" in again.out

    tip = remote.push_branch(BRANCH, "1.4.3")  # the updater pushes a newer tag to the same branch
    updated = run_main(capsys, gitlab_argv(gitlab_api))
    assert updated.code == 0, updated.err
    [mr] = gitlab_api.open_requests()
    assert tip in mr["description"]
    assert f"updated !1 {BRANCH}: description (branch at {tip[:12]})" in updated.out
    assert not [seen for seen in gitlab_api.seen if seen.verb == "POST"][1:]


def test_several_branches_across_pages_each_get_one(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"image-updater-{n:06x}" for n in (1, 2, 3)]
    for name in names:
        remote.push_branch(name)
    assert run_main(capsys, gitlab_argv(gitlab_api)).code == 0
    assert sorted(mr["source_branch"] for mr in gitlab_api.open_requests()) == names
    assert any(seen.query.get("page") == "2" for seen in gitlab_api.seen if seen.path.endswith("/branches"))
    again = run_main(capsys, gitlab_argv(gitlab_api))
    assert again.code == 0 and len(gitlab_api.open_requests()) == 3
    assert "3 unchanged" in again.out


def test_api_error_on_creation_exits_1_naming_the_call(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    gitlab_api.failures["create"] = Reply(500, {"message": "500 Internal Server Error"})
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 1
    expected = (
        f"error while opening {BRANCH} -> main: POST /projects/:id/merge_requests: 500 Internal Server Error"
    )
    assert expected in result.err
    assert gitlab_api.open_requests() == []
    assert len([seen for seen in gitlab_api.seen if seen.verb == "POST"]) == 1  # not retried


def test_wrong_token_exits_1_naming_the_call(
    remote: Remote,
    gitlab_api: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(mwg.TOKEN_ENV, "not-the-token")
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 1
    assert "GET /projects/:id: 401 Unauthorized" in result.err
    assert "not-the-token" not in result.err


def test_merge_request_of_a_deleted_branch_is_closed(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    remote.push_branch(OTHER)
    assert run_main(capsys, gitlab_argv(gitlab_api)).code == 0
    remote.delete_branch(BRANCH)
    assert BRANCH not in remote.refs()
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 0, result.err
    assert [mr["source_branch"] for mr in gitlab_api.open_requests()] == [OTHER]
    [closed] = [mr for mr in gitlab_api.requests.values() if mr["state"] == "closed"]
    assert closed["source_branch"] == BRANCH
    assert f"closed !{closed['iid']} {BRANCH}: its source branch is gone" in result.out


def test_branches_and_merge_requests_outside_the_prefix_are_ignored(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch("renovate-website-1.x")
    remote.push_branch("feature-image-updater-1")  # contains the prefix, does not start with it
    manual = gitlab_api.seed("hotfix-gone")  # its branch does not exist: still not ours to close
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 0, result.err
    assert gitlab_api.open_requests() == [manual]
    assert [seen.verb for seen in gitlab_api.seen] == ["GET"] * len(gitlab_api.seen)
    assert "0 opened" in result.out and "0 closed" in result.out


def test_merge_requests_from_forks_are_left_alone(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    fork = gitlab_api.seed(BRANCH, source_project_id=99)  # same branch name, someone else's content
    gone = gitlab_api.seed("image-updater-0fork0", source_project_id=99)
    assert run_main(capsys, gitlab_argv(gitlab_api)).code == 0
    ours = [mr for mr in gitlab_api.open_requests() if mr["source_project_id"] == PROJECT_ID]
    assert len(ours) == 1 and ours[0]["merge_when_pipeline_succeeds"] is True
    assert fork["state"] == gone["state"] == "opened"
    assert fork["merge_when_pipeline_succeeds"] is False


def test_dry_run_changes_nothing(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    stale = gitlab_api.seed("image-updater-000000")  # a prefixed branch that is gone
    result = run_main(capsys, gitlab_argv(gitlab_api, "--dry-run"))
    assert result.code == 0, result.err
    assert [seen.verb for seen in gitlab_api.seen] == ["GET"] * len(gitlab_api.seen)
    assert gitlab_api.open_requests() == [stale]
    assert f"would open {BRANCH} -> main with auto-merge" in result.out
    assert "would close !1 image-updater-000000: its source branch is gone" in result.out
    assert "dry run: nothing was changed" in result.out


def test_auto_merge_refused_before_the_pipeline_starts_is_asked_again_next_run(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    gitlab_api.pipeline_started = False
    first = run_main(capsys, gitlab_argv(gitlab_api))
    assert first.code == 0, first.err
    [mr] = gitlab_api.open_requests()
    assert mr["merge_when_pipeline_succeeds"] is False
    assert (
        "auto-merge not set yet (405 Method Not Allowed); it is requested again on the next run" in first.out
    )
    gitlab_api.pipeline_started = True
    second = run_main(capsys, gitlab_argv(gitlab_api))
    assert second.code == 0, second.err
    assert len(gitlab_api.open_requests()) == 1 and mr["merge_when_pipeline_succeeds"] is True
    assert f"auto-merge !1 {BRANCH}: auto-merge set, merges when the pipeline is green" in second.out


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pipelines_must_succeed": False}, "'Pipelines must succeed' is off"),
        ({"skipped_counts_as_success": True}, "'Skipped pipelines are considered successful'"),
    ],
)
def test_project_that_merges_without_a_green_pipeline_gets_no_merge_request(
    remote: Remote,
    gitlab_api: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, bool],
    message: str,
) -> None:
    remote.push_branch(BRANCH)
    vars(gitlab_api).update(settings)
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 1
    assert "POST /projects/:id/merge_requests: not sent" in result.err and message in result.err
    assert gitlab_api.requests == {}


def test_branch_already_merged_is_skipped(
    remote: Remote, gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_at_main(BRANCH)
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 0, result.err
    assert gitlab_api.requests == {}
    assert f"skipped {BRANCH}: {BRANCH} is already merged into main" in result.out


def test_missing_token_exits_2_without_calling_the_host(
    gitlab_api: FakeGitLab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(mwg.TOKEN_ENV)
    result = run_main(capsys, gitlab_argv(gitlab_api))
    assert result.code == 2
    assert f"${mwg.TOKEN_ENV} is not set" in result.err
    assert gitlab_api.seen == []


def args(*extra: str, provider: str = "gitlab", url: str = "https://x", project: str = "a/b") -> list[str]:
    return ["--provider", provider, "--url", url, "--project", project, *extra]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (args("--target", "main", provider="bitbucket"), "invalid choice"),
        (args("--target", "main", url="gitlab.example.com"), "--url"),
        (args("--target", "main", provider="github", project="a/b/c"), "owner/repo"),
        (args("--target", "main", project="/a"), "--project"),
        (args("--target", "main", "--prefix", ""), "--prefix"),
        (args("--target", "image-updater-1"), "--target"),
        (args("--target", "main", "--token", "t"), "--token"),  # there is no such flag, on purpose
        (args(), "--target"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    result = run_main(capsys, argv)
    assert result.code == 2
    assert message in result.err


def run_module(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ops.merge_when_green", *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60)


def test_subprocess_run(remote: Remote, gitlab_api: FakeGitLab) -> None:
    remote.push_branch(BRANCH)
    env = {**os.environ, mwg.TOKEN_ENV: TOKEN}
    done = run_module(gitlab_argv(gitlab_api), env)
    assert done.returncode == 0, done.stderr
    link = f"{gitlab_api.url}/{PROJECT}/-/merge_requests/1"
    assert f"opened !1 {BRANCH} -> main ({link}): auto-merge set" in done.stdout
    assert len(gitlab_api.open_requests()) == 1
    del env[mwg.TOKEN_ENV]
    missing = run_module(gitlab_argv(gitlab_api), env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"${mwg.TOKEN_ENV} is not set" in missing.stderr


def github_argv(api: FakeApi, *extra: str) -> list[str]:
    return ["--provider", "github", "--url", api.url, "--project", PROJECT, "--target", "main", *extra]


def test_github_new_branch_rerun_and_branch_gone(
    remote: Remote, github_api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    tip = remote.push_branch(BRANCH)
    remote.push_branch("renovate-website-1.x")
    first = run_main(capsys, github_argv(github_api))
    assert first.code == 0, first.err
    [pull] = github_api.open_pulls()
    assert pull["head"]["ref"] == BRANCH and pull["title"] == f"image updater: {BRANCH}"
    assert tip in pull["body"] and "ops/writeback_check.py" in pull["body"]
    assert pull["auto_merge"] == {"merge_method": "merge", "enabled_by": {"login": "bot"}}
    [mutation] = [seen for seen in github_api.seen if seen.path == "/graphql"]
    assert mutation.body["variables"]["input"] == {"pullRequestId": pull["node_id"], "mergeMethod": "MERGE"}
    assert f"opened #1 {BRANCH} -> main ({pull['html_url']}): auto-merge set" in first.out

    before = len(github_api.seen)
    again = run_main(capsys, github_argv(github_api))
    assert again.code == 0, again.err
    assert len(github_api.pulls) == 1
    assert {seen.verb for seen in github_api.seen[before:]} == {"GET"}
    assert f"unchanged #1 {BRANCH}: auto-merge set" in again.out

    remote.delete_branch(BRANCH)
    gone = run_main(capsys, github_argv(github_api))
    assert gone.code == 0, gone.err
    assert github_api.open_pulls() == [] and pull["state"] == "closed"
    assert f"closed #1 {BRANCH}: its source branch is gone" in gone.out


def test_github_forks_merged_branches_and_deferred_auto_merge(
    remote: Remote, github_api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    remote.push_at_main(OTHER)
    fork = github_api.seed("image-updater-0fork0", fork="someone/gitops")
    github_api.auto_merge_error = "Pull request Auto merge is not allowed for this repository"
    first = run_main(capsys, github_argv(github_api))
    assert first.code == 0, first.err
    assert fork["state"] == "open" and fork["auto_merge"] is None
    assert [pull["head"]["ref"] for pull in github_api.open_pulls()] == ["image-updater-0fork0", BRANCH]
    assert f"skipped {OTHER}: {OTHER} is already merged into main" in first.out
    expected = f"auto-merge not set yet (UNPROCESSABLE: {github_api.auto_merge_error}); it is requested again"
    assert expected in first.out

    github_api.auto_merge_error = None
    second = run_main(capsys, github_argv(github_api))
    assert second.code == 0, second.err
    assert github_api.pulls[2]["auto_merge"] is not None
    assert f"auto-merge #2 {BRANCH}: auto-merge set" in second.out


def test_github_api_error_names_the_call(
    remote: Remote, github_api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    remote.push_branch(BRANCH)
    github_api.failures["create"] = Reply(500, {"message": "Server Error"})
    result = run_main(capsys, github_argv(github_api))
    assert result.code == 1
    assert "POST /repos/:owner/:repo/pulls: 500 Internal Server Error: Server Error" in result.err
    assert len([seen for seen in github_api.seen if seen.verb == "POST"]) == 1  # PyGithub's retry is off

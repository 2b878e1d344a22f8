"""A small, typed layer over the Git hosts' merge request APIs, for the GitOps steps that open them.

Why a layer and not the client libraries directly: the steps (``ops/merge_when_green.py`` for the
image updater's write-back branches, later the promotion merge requests of issue 15) only need a
handful of calls, and need them with the same meaning on GitLab and GitHub: list branches by
prefix, list the open merge requests from a branch prefix into a target, open one and ask the host
to merge it once its pipeline is green, update it, close it. Everything host-specific (python-gitlab
or PyGithub objects, their exceptions, the 405 GitLab answers when a pipeline has not started yet)
stays in here; the steps see :class:`Branch`, :class:`MergeRequest`, :class:`AutoMerge` and one
error type, :class:`GitHostError`, whose message names the REST call that failed
(``POST /projects/:id/merge_requests: 500 Internal Server Error``).

What this relies on in the installed clients (python-gitlab 8.6.0, PyGithub 2.10.0; paths under
``site-packages``):

* ``gitlab/v4/objects/merge_requests.py``, ``ProjectMergeRequest.merge`` (around line 411): takes
  ``merge_when_pipeline_succeeds`` and sends ``PUT /projects/:id/merge_requests/:iid/merge``. That
  version has no ``auto_merge`` or ``merge_after`` argument (GitLab 17.11 deprecated the field in
  favour of ``auto_merge``, but still accepts it), so the documented field is what is sent.
  ``ProjectMergeRequestManager`` (line 448) lists ``source_branch``/``target_branch``/``state`` as
  list filters, ``remove_source_branch`` as a create option, ``title``/``description``/
  ``state_event`` as update attributes.
* ``gitlab/client.py``, ``Gitlab.http_request`` (line 636): a non-2xx answer raises
  ``GitlabHttpError`` (``GitlabAuthenticationError`` for 401) with ``response_code`` and the
  server's ``message``; ``exceptions.on_http_error`` re-raises it as the call's own subclass of
  ``GitlabError``. Transient 5xx are retried only with ``retry_transient_errors`` (left off).
* ``github/PullRequest.py``, ``PullRequest.enable_automerge`` (line 878): the GraphQL
  ``enablePullRequestAutoMerge`` mutation on the pull request's ``node_id``;
  ``github/Requester.py``, ``graphql_query`` (line 733): GraphQL ``errors`` in a 200 answer raise
  ``GithubException`` with status 400 and the whole answer as ``data`` (404 for one NOT_FOUND error).
  ``PullRequest.edit`` (line 615) sends ``PATCH /repos/:owner/:repo/pulls/:number``;
  ``Repository.create_pull`` (line 1840), ``get_pulls`` (line 3439), ``get_branches`` (line 2352).
* ``github/GithubRetry.py`` (line 56): PyGithub's default retry repeats POST on 5xx, which could
  open the same pull request twice; it is turned off (``retry=None``), the next scheduled run is
  the retry.

Behaviour on the hosts themselves that cannot be checked here (no Git host is reachable): GitLab
answers 405 (and, depending on the version, 406 or 422) to merge-when-pipeline-succeeds while the
merge request's pipeline has not been created yet (gitlab-org/gitlab#353984, #355455), and older
versions merged at once instead when the project did not require a green pipeline
(gitlab-org/gitlab#37292). GitHub answers an UNPROCESSABLE GraphQL error when auto-merge cannot be
enabled (repository setting off, or the pull request already mergeable).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import github
import gitlab
import requests
from github.GithubObject import NotSet
from github.PullRequest import PullRequest
from github.Repository import Repository
from gitlab.v4.objects import Project

#: Statuses with which GitLab refuses merge-when-pipeline-succeeds in a state a later run can find
#: changed: no pipeline yet, or a failed one (405 Method Not Allowed), a conflict until the branch
#: is rewritten (406), the merge request still being checked (422, on some versions). They are
#: reported on every run until they clear; anything else (401, 403, 404, 5xx) is an error.
GITLAB_NOT_YET = frozenset({405, 406, 422})
#: Longest part of a server's error body kept in a message (HTML error pages are long).
MAX_DETAIL = 200


class GitHostError(Exception):
    """A call to the Git host failed; ``call`` names it as the API documentation does."""

    def __init__(self, call: str, problem: str) -> None:
        super().__init__(f"{call}: {problem}")
        self.call = call
        self.problem = problem


class NothingToMergeError(GitHostError):
    """The source branch is already contained in the target: a merge request would be empty."""


@dataclass(frozen=True)
class Branch:
    name: str
    commit: str


@dataclass(frozen=True)
class MergeRequest:
    """A merge request (GitLab) or pull request (GitHub), as far as the steps need one."""

    number: int  # GitLab iid, GitHub pull request number
    reference: str  # how people write it on that host: !12 or #12
    source_branch: str
    target_branch: str
    title: str
    description: str
    auto_merge: bool  # the host will merge it once the pipeline is green
    url: str


class AutoMergeState(enum.Enum):
    SET = "set"  # the host merges once the pipeline is green
    MERGED = "merged"  # the pipeline was green already: the host merged at once
    DEFERRED = "deferred"  # refused for now (no pipeline yet): ask again on the next run


@dataclass(frozen=True)
class AutoMerge:
    state: AutoMergeState
    detail: str = ""


@dataclass(frozen=True)
class Opened:
    merge_request: MergeRequest
    auto_merge: AutoMerge | None  # None when it was not asked for


class GitHost(Protocol):
    """What the GitOps steps need from a Git host; every failure is a :class:`GitHostError`."""

    def list_branches(self, prefix: str) -> list[Branch]:
        """Branches whose name starts with ``prefix``, sorted by name."""
        ...

    def list_open_merge_requests(self, source_prefix: str, target: str) -> list[MergeRequest]:
        """Open merge requests into ``target`` from a branch of this repository starting with
        ``source_prefix``. Merge requests from forks are left out: their branches are not ours."""
        ...

    def open_merge_request(
        self, source: str, target: str, title: str, description: str, *, auto_merge: bool = True
    ) -> Opened:
        """Open a merge request and, with ``auto_merge``, ask the host to merge it when green.
        Raises :class:`NothingToMergeError` when the host knows ``source`` is already in ``target``."""
        ...

    def request_auto_merge(self, merge_request: MergeRequest) -> AutoMerge:
        """Ask the host to merge once the pipeline is green; DEFERRED when it cannot say yes yet."""
        ...

    def update_merge_request(
        self, merge_request: MergeRequest, *, title: str | None = None, description: str | None = None
    ) -> MergeRequest: ...

    def close_merge_request(self, merge_request: MergeRequest) -> MergeRequest: ...


def http_problem(status: int | None, message: object) -> str:
    """``500 Internal Server Error`` plus the server's message when it says more than the status."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    text = " ".join(str(message or "").split())[:MAX_DETAIL]
    if status is None:
        return text or "no answer"
    try:
        phrase = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = str(status)
    if not text or text in (phrase, str(status), phrase.split(" ", 1)[-1]):
        return phrase
    return f"{phrase}: {text}"


def _unreachable(url: str, exc: Exception) -> str:
    return f"no valid answer from {url} ({type(exc).__name__}: {' '.join(str(exc).split())[:MAX_DETAIL]})"


# --------------------------------------------------------------------------------------------
# GitLab
# --------------------------------------------------------------------------------------------


class GitLabHost:
    """GitLab through python-gitlab: merge requests with merge-when-pipeline-succeeds.

    The project must require a green pipeline ("Pipelines must succeed",
    ``only_allow_merge_if_pipeline_succeeds``) and not count skipped pipelines as green
    (``allow_merge_on_skipped_pipeline``): without that, GitLab versions have merged a merge request
    at once when auto-merge was asked before the pipeline existed, that is before the write-back
    gate ran. Opening and auto-merge are refused in that case rather than risk it.
    """

    MERGE_CALL = "PUT /projects/:id/merge_requests/:iid/merge"

    def __init__(self, url: str, project: str, token: str, *, timeout: float = 30.0) -> None:
        self._url = url
        self._project_path = project
        self._gl = gitlab.Gitlab(url, private_token=token, timeout=timeout, retry_transient_errors=False)
        self._project: Project | None = None
        self._merged: dict[str, bool] = {}

    @contextmanager
    def _call(self, call: str) -> Iterator[None]:
        try:
            yield
        except gitlab.exceptions.GitlabError as exc:
            raise GitHostError(call, http_problem(exc.response_code, exc.error_message)) from exc
        except (requests.RequestException, ValueError) as exc:
            raise GitHostError(call, _unreachable(self._url, exc)) from exc

    def _get_project(self) -> Project:
        if self._project is None:
            with self._call("GET /projects/:id"):
                self._project = self._gl.projects.get(self._project_path)
        return self._project

    def _to_merge_request(self, attrs: dict[str, Any]) -> MergeRequest:
        return MergeRequest(
            number=int(attrs["iid"]),
            reference=f"!{attrs['iid']}",
            source_branch=str(attrs["source_branch"]),
            target_branch=str(attrs["target_branch"]),
            title=str(attrs.get("title") or ""),
            description=str(attrs.get("description") or ""),
            auto_merge=bool(attrs.get("merge_when_pipeline_succeeds")),
            url=str(attrs.get("web_url") or ""),
        )

    def list_branches(self, prefix: str) -> list[Branch]:
        project = self._get_project()
        with self._call("GET /projects/:id/repository/branches"):
            # ``search=^prefix`` narrows on the server; the startswith below is what counts.
            found = project.branches.list(search=f"^{prefix}", get_all=True)
            branches = [Branch(b.name, b.commit["id"]) for b in found if b.name.startswith(prefix)]
            # GitLab's ``merged`` says whether the branch is in the default branch.
            self._merged.update({b.name: bool(b.attributes.get("merged")) for b in found})
        return sorted(branches, key=lambda branch: branch.name)

    def list_open_merge_requests(self, source_prefix: str, target: str) -> list[MergeRequest]:
        project = self._get_project()
        with self._call("GET /projects/:id/merge_requests"):
            found = project.mergerequests.list(state="opened", target_branch=target, get_all=True)
            return [
                self._to_merge_request(mr.attributes)
                for mr in found
                if mr.source_branch.startswith(source_prefix) and mr.source_project_id == project.id
            ]

    def open_merge_request(
        self, source: str, target: str, title: str, description: str, *, auto_merge: bool = True
    ) -> Opened:
        call = "POST /projects/:id/merge_requests"
        # Refused before opening anything: a merge request left without auto-merge is noise.
        project = self._check_pipeline_required(call, source) if auto_merge else self._get_project()
        if target == project.attributes.get("default_branch") and self._merged.get(source):
            raise NothingToMergeError(call, f"{source} is already merged into {target}")
        data = {
            "source_branch": source,
            "target_branch": target,
            "title": title,
            "description": description,
            # The write-back branches are single-use: GitLab deletes the branch once merged, so a
            # merged branch is not offered for a new merge request on the next run.
            "remove_source_branch": True,
        }
        with self._call(call):
            created = project.mergerequests.create(data)
        merge_request = self._to_merge_request(created.attributes)
        return Opened(merge_request, self.request_auto_merge(merge_request) if auto_merge else None)

    def _check_pipeline_required(self, call: str, what: str) -> Project:
        """The project, when only a green pipeline lets a merge through; else a refusal naming ``call``.

        Two project settings decide that: "Pipelines must succeed" has to be on, and "Skipped
        pipelines are considered successful" off (a ``[skip ci]`` commit would skip the gate).
        GitLab's REST project entity exposes both to anyone who can read the project.
        """
        project = self._get_project()
        settings = project.attributes
        problem = None
        if not settings.get("only_allow_merge_if_pipeline_succeeds"):
            problem = "does not require a successful pipeline ('Pipelines must succeed' is off)"
        elif settings.get("allow_merge_on_skipped_pipeline"):
            problem = (
                "counts a skipped pipeline as successful ('Skipped pipelines are considered successful')"
            )
        if problem:
            raise GitHostError(
                call,
                f"not sent: project {self._project_path} {problem}, so GitLab could merge {what} "
                "without its pipeline gate having passed",
            )
        return project

    def request_auto_merge(self, merge_request: MergeRequest) -> AutoMerge:
        project = self._check_pipeline_required(self.MERGE_CALL, merge_request.reference)
        lazy = project.mergerequests.get(merge_request.number, lazy=True)
        try:
            with self._call(self.MERGE_CALL):
                answer = lazy.merge(merge_when_pipeline_succeeds=True)
        except GitHostError as exc:
            cause = exc.__cause__
            if isinstance(cause, gitlab.exceptions.GitlabError) and cause.response_code in GITLAB_NOT_YET:
                return AutoMerge(AutoMergeState.DEFERRED, exc.problem)
            raise
        if answer.get("state") == "merged":
            return AutoMerge(AutoMergeState.MERGED)
        if answer.get("merge_when_pipeline_succeeds"):
            return AutoMerge(AutoMergeState.SET)
        return AutoMerge(AutoMergeState.DEFERRED, "GitLab accepted the call but did not set auto-merge")

    def _update(self, merge_request: MergeRequest, data: dict[str, str]) -> MergeRequest:
        project = self._get_project()
        with self._call("PUT /projects/:id/merge_requests/:iid"):
            answer = project.mergerequests.update(merge_request.number, data)
        return self._to_merge_request(answer)

    def update_merge_request(
        self, merge_request: MergeRequest, *, title: str | None = None, description: str | None = None
    ) -> MergeRequest:
        pairs = (("title", title), ("description", description))
        data = {key: value for key, value in pairs if value is not None}
        return self._update(merge_request, data) if data else merge_request

    def close_merge_request(self, merge_request: MergeRequest) -> MergeRequest:
        return self._update(merge_request, {"state_event": "close"})


# --------------------------------------------------------------------------------------------
# GitHub
# --------------------------------------------------------------------------------------------


class GitHubHost:
    """GitHub through PyGithub: pull requests with auto-merge (GraphQL ``enablePullRequestAutoMerge``).

    ``url`` is the REST root: ``https://api.github.com``, or ``https://HOST/api/v3`` for GitHub
    Enterprise Server (PyGithub derives the GraphQL endpoint from it). Auto-merge waits for the
    branch protection's required checks, which must include the write-back gate.
    """

    def __init__(
        self,
        url: str,
        project: str,
        token: str,
        *,
        timeout: int = 30,
        merge_method: str = "MERGE",
        seconds_between_requests: float | None = 0.25,
        seconds_between_writes: float | None = 1.0,
    ) -> None:
        self._url = url
        self._project_path = project
        self._merge_method = merge_method
        self._gh = github.Github(
            auth=github.Auth.Token(token),
            base_url=url,
            timeout=timeout,
            retry=None,
            per_page=100,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
        )
        self._repo: Repository | None = None
        self._pulls: dict[int, PullRequest] = {}

    @contextmanager
    def _call(self, call: str, *, graphql: bool = False) -> Iterator[None]:
        """Turn PyGithub's and requests' exceptions into a :class:`GitHostError` naming ``call``.

        GraphQL errors come in a 200 answer that PyGithub reports as status 400 (or 404 for
        NOT_FOUND); their types (UNPROCESSABLE, FORBIDDEN, ...) say more than that status.
        """
        try:
            yield
        except github.GithubException as exc:
            errors = _graphql_errors(exc) if graphql else []
            if errors:
                raise GitHostError(call, _graphql_problem(errors)) from exc
            raise GitHostError(call, http_problem(exc.status, _github_message(exc))) from exc
        except (requests.RequestException, ValueError, RuntimeError) as exc:
            raise GitHostError(call, _unreachable(self._url, exc)) from exc

    def _get_repo(self) -> Repository:
        if self._repo is None:
            with self._call("GET /repos/:owner/:repo"):
                self._repo = self._gh.get_repo(self._project_path)
        return self._repo

    def _to_merge_request(self, pull: PullRequest) -> MergeRequest:
        self._pulls[pull.number] = pull
        return MergeRequest(
            number=pull.number,
            reference=f"#{pull.number}",
            source_branch=pull.head.ref,
            target_branch=pull.base.ref,
            title=pull.title or "",
            description=pull.body or "",
            auto_merge=pull.auto_merge is not None,
            url=pull.html_url or "",
        )

    def list_branches(self, prefix: str) -> list[Branch]:
        repo = self._get_repo()
        with self._call("GET /repos/:owner/:repo/branches"):
            found = [Branch(b.name, b.commit.sha) for b in repo.get_branches() if b.name.startswith(prefix)]
        return sorted(found, key=lambda branch: branch.name)

    def list_open_merge_requests(self, source_prefix: str, target: str) -> list[MergeRequest]:
        repo = self._get_repo()
        with self._call("GET /repos/:owner/:repo/pulls"):
            return [
                self._to_merge_request(pull)
                for pull in repo.get_pulls(state="open", base=target)
                if pull.head.ref.startswith(source_prefix)
                and pull.head.repo is not None
                and pull.head.repo.id == repo.id
            ]

    def open_merge_request(
        self, source: str, target: str, title: str, description: str, *, auto_merge: bool = True
    ) -> Opened:
        repo = self._get_repo()
        call = "POST /repos/:owner/:repo/pulls"
        try:
            with self._call(call):
                pull = repo.create_pull(base=target, head=source, title=title, body=description)
        except GitHostError as exc:
            if "no commits between" in exc.problem.lower():
                raise NothingToMergeError(call, f"{source} is already merged into {target}") from exc
            raise
        merge_request = self._to_merge_request(pull)
        return Opened(merge_request, self.request_auto_merge(merge_request) if auto_merge else None)

    def _pull(self, merge_request: MergeRequest) -> PullRequest:
        pull = self._pulls.get(merge_request.number)
        if pull is None:
            with self._call("GET /repos/:owner/:repo/pulls/:number"):
                pull = self._get_repo().get_pull(merge_request.number)
                self._pulls[merge_request.number] = pull
        return pull

    def request_auto_merge(self, merge_request: MergeRequest) -> AutoMerge:
        pull = self._pull(merge_request)
        try:
            with self._call("POST /graphql enablePullRequestAutoMerge", graphql=True):
                pull.enable_automerge(merge_method=self._merge_method)
        except GitHostError as exc:
            cause = exc.__cause__
            if isinstance(cause, github.GithubException) and _graphql_types(cause) == {"UNPROCESSABLE"}:
                return AutoMerge(AutoMergeState.DEFERRED, exc.problem)
            raise
        return AutoMerge(AutoMergeState.SET)

    def update_merge_request(
        self, merge_request: MergeRequest, *, title: str | None = None, description: str | None = None
    ) -> MergeRequest:
        if title is None and description is None:
            return merge_request
        pull = self._pull(merge_request)
        with self._call("PATCH /repos/:owner/:repo/pulls/:number"):
            pull.edit(
                title=NotSet if title is None else title, body=NotSet if description is None else description
            )
        return self._to_merge_request(pull)

    def close_merge_request(self, merge_request: MergeRequest) -> MergeRequest:
        pull = self._pull(merge_request)
        with self._call("PATCH /repos/:owner/:repo/pulls/:number"):
            pull.edit(state="closed")
        return self._to_merge_request(pull)


def _graphql_errors(exc: github.GithubException) -> list[dict[str, Any]]:
    data = exc.data
    errors = data.get("errors") if isinstance(data, dict) else None
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def _graphql_types(exc: github.GithubException) -> set[str]:
    return {str(error.get("type")) for error in _graphql_errors(exc)}


def _graphql_problem(errors: list[dict[str, Any]]) -> str:
    """``UNPROCESSABLE: Pull request ...``, one part per GraphQL error."""
    parts = [f"{error.get('type') or 'ERROR'}: {error.get('message') or ''}".strip() for error in errors]
    return " ".join("; ".join(parts).split())[:MAX_DETAIL]


def _github_message(exc: github.GithubException) -> str:
    """The REST ``message`` with its validation ``errors``, or the GraphQL errors' messages."""
    errors = _graphql_errors(exc)
    details = [str(error.get("message") or error.get("code") or "") for error in errors]
    text = "; ".join(detail for detail in details if detail)
    message = exc.message or (exc.data.get("message") if isinstance(exc.data, dict) else None) or ""
    return f"{message}: {text}" if message and text else message or text

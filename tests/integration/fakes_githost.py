"""Fake Git host APIs (GitLab, GitHub) backed by a real bare Git repository, for the GitOps steps' tests.

``tests/integration/test_merge_when_green.py`` and ``tests/integration/test_promote.py`` run their
steps against these. A test builds a bare repository (``git init --bare``, :class:`Remote`) with a
``main`` branch and pushes what it needs from a clone. A fake GitLab REST API (:class:`FakeGitLab`)
or GitHub REST and GraphQL API (:class:`FakeGitHub`) runs in a thread on 127.0.0.1, on a port of
its own (:func:`serve`), and lists the branches from ``git for-each-ref`` of that bare repository:
a ``git push --delete`` really removes a branch. The fakes serve only the endpoints the clients
call, check the token, paginate by two (so any listing of three goes through python-gitlab's and
PyGithub's pagination) and record every request. :class:`FakeApi` is the HTTP machinery (routing,
token check, request log, injected failures), shared with ``fake_argocd.py``.

The fixtures are declared under the names tests ask for (``remote``, ``gitlab_api``, ``github_api``,
the autouse ``hermetic_git``) and defined as ``<name>_fixture``: a test module imports the
``*_fixture`` functions and pytest registers them by their declared names.

What the fakes answer is the documented shape of the real APIs as far as the clients read it; the
hosts' own behaviour (which status GitLab gives while a pipeline has not started, GitHub's GraphQL
error types) is what the module docstring of ``ops/githost.py`` cites, not verified here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest

from ops import githost
from ops import merge_when_green as mwg

TOKEN = "test-token-5f1c9a"
PROJECT = "platform/gitops"
PROJECT_ID = 7
GITHUB_REPO_ID = 4242
PAGE_SIZE = 2
OVERRIDE = "apps/website/.argocd-source-prod-website.yaml"


@pytest.fixture(name="hermetic_git", autouse=True)
def hermetic_git_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No global or system Git config, a fixed identity, and the token in the environment."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(mwg.TOKEN_ENV, TOKEN)


# --------------------------------------------------------------------------------------------
# The Git side: a bare repository, as the Git host would hold it
# --------------------------------------------------------------------------------------------


def run_git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    return done.stdout


@dataclass
class Remote:
    bare: Path
    work: Path

    def git(self, *args: str) -> str:
        return run_git("-C", str(self.work), *args)

    def push_branch(self, name: str, tag: str = "1.4.2", *, base: str = "main") -> str:
        """Create (or advance) ``name`` with an override commit and push it; returns the new tip."""
        exists = name in self.refs()
        self.git("checkout", "--quiet", "-B", name, f"origin/{name}" if exists else base)
        path = self.work / OVERRIDE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"kustomize:\n  images:\n  - rg.fr-par.scw.cloud/platform/website:{tag}\n")
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", f"build: automatic update of website to {tag}")
        self.git("push", "--quiet", "origin", name)
        self.git("checkout", "--quiet", "main")
        return self.refs()[name]

    def push_at_main(self, name: str) -> None:
        """A branch that adds nothing to main, like a write-back branch left behind after its merge."""
        self.git("push", "--quiet", "origin", f"main:refs/heads/{name}")

    def delete_branch(self, name: str) -> None:
        self.git("push", "--quiet", "origin", "--delete", name)

    def refs(self) -> dict[str, str]:
        out = run_git(
            "-C", str(self.bare), "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/"
        )
        return dict(line.split(" ", 1) for line in out.splitlines())

    def merged(self, branch: str, target: str = "main") -> bool:
        done = subprocess.run(
            ["git", "-C", str(self.bare), "merge-base", "--is-ancestor", branch, target], check=False
        )
        return done.returncode == 0

    def commit(self, files: dict[str, str], message: str) -> str:
        """Write ``files`` (path -> content) on main, commit, push; returns the new tip of main."""
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        self.git("push", "--quiet", "origin", "main")
        return self.refs()["main"]

    @classmethod
    def create(cls, tmp_path: Path, files: dict[str, str], message: str) -> Remote:
        """A bare ``gitops.git`` whose main holds ``files``, and a clone of it in ``work``."""
        bare, work = tmp_path / "gitops.git", tmp_path / "work"
        run_git("init", "--quiet", "--bare", "-b", "main", str(bare))
        run_git("init", "--quiet", "-b", "main", str(work))
        made = cls(bare, work)
        made.git("remote", "add", "origin", str(bare))
        made.commit(files, message)
        made.git("fetch", "--quiet", "origin")
        return made


@pytest.fixture(name="remote")
def remote_fixture(tmp_path: Path) -> Remote:
    return Remote.create(
        tmp_path, {"apps/website/kustomization.yaml": "resources:\n- deployment.yaml\n"}, "platform apps"
    )


# --------------------------------------------------------------------------------------------
# A fake HTTP API: routing, token check, pagination, request log, injected failures
# --------------------------------------------------------------------------------------------


@dataclass
class Seen:
    verb: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[re.Match[str], dict[str, str], Any], Reply]


class FakeApi:
    """Shared machinery; subclasses list their routes as (verb, path regex, label, handler)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.failures: dict[str, Reply] = {}
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _RequestHandler)
        self.server.api = self
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        raise NotImplementedError

    def authorised(self, headers: Any) -> bool:
        raise NotImplementedError

    def unauthorised(self) -> Reply:
        raise NotImplementedError

    def dispatch(self, verb: str, target: str, headers: Any, raw: bytes) -> Reply:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = json.loads(raw) if raw else None
        with self.lock:
            self.seen.append(Seen(verb, parts.path, query, body))
            if not self.authorised(headers):
                return self.unauthorised()
            for route_verb, pattern, label, handler in self.routes():
                match = re.fullmatch(pattern, parts.path)
                if match and route_verb == verb:
                    if label in self.failures:
                        return self.failures[label]
                    return handler(match, query, body)
        return Reply(404, {"message": "404 Not Found"})

    def page(self, path: str, query: dict[str, str], items: list[Any]) -> Reply:
        number = int(query.get("page", "1"))
        reply = Reply(200, items[(number - 1) * PAGE_SIZE : number * PAGE_SIZE])
        if number * PAGE_SIZE < len(items):
            reply.headers["Link"] = (
                f'<{self.url}{path}?{urlencode({**query, "page": number + 1})}>; rel="next"'
            )
        return reply


ApiT = TypeVar("ApiT", bound=FakeApi)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeApi


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        reply = self.server.api.dispatch(self.command, self.path, self.headers, self.rfile.read(length))
        raw = isinstance(reply.payload, bytes)  # a body that is not JSON, sent as it is
        data = reply.payload if raw else json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        for name, value in {"Content-Type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = _serve  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows the failures
        return


def serve(api: ApiT) -> Iterator[ApiT]:
    """Run ``api`` on its own port for one test, then stop it."""
    api.thread = threading.Thread(
        target=api.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    api.thread.start()
    try:
        yield api
    finally:
        api.server.shutdown()
        api.server.server_close()
        if api.thread is not None:
            api.thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Fake GitLab: the endpoints python-gitlab calls for the step
# --------------------------------------------------------------------------------------------


class FakeGitLab(FakeApi):
    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self.remote = remote
        self.requests: dict[int, dict[str, Any]] = {}
        self.pipeline_started = True
        self.pipelines_must_succeed = True
        self.skipped_counts_as_success = False

    def authorised(self, headers: Any) -> bool:
        return headers.get("PRIVATE-TOKEN") == TOKEN

    def unauthorised(self) -> Reply:
        return Reply(401, {"message": "401 Unauthorized"})

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        base = r"/api/v4/projects/(?P<project>[^/]+)"
        return [
            ("GET", base, "project", self.project),
            ("GET", base + "/repository/branches", "branches", self.branches),
            ("GET", base + "/merge_requests", "list", self.list_requests),
            ("POST", base + "/merge_requests", "create", self.create),
            ("PUT", base + r"/merge_requests/(?P<iid>\d+)", "update", self.update),
            ("PUT", base + r"/merge_requests/(?P<iid>\d+)/merge", "merge", self.merge),
        ]

    def known(self, match: re.Match[str]) -> bool:
        return unquote(match["project"]) in (PROJECT, str(PROJECT_ID))

    def project(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        if not self.known(match):
            return Reply(404, {"message": "404 Project Not Found"})
        return Reply(
            200,
            {
                "id": PROJECT_ID,
                "path_with_namespace": PROJECT,
                "default_branch": "main",
                "web_url": f"{self.url}/{PROJECT}",
                "only_allow_merge_if_pipeline_succeeds": self.pipelines_must_succeed,
                "allow_merge_on_skipped_pipeline": self.skipped_counts_as_success,
            },
        )

    def branches(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        search = query.get("search", "")
        names = sorted(self.remote.refs().items())
        if search.startswith("^"):
            names = [(name, sha) for name, sha in names if name.startswith(search[1:])]
        else:
            names = [(name, sha) for name, sha in names if search in name]
        items = [
            {
                "name": name,
                "commit": {"id": sha},
                "merged": self.remote.merged(name),
                "default": name == "main",
            }
            for name, sha in names
        ]
        return self.page(urlsplit(match.string).path, query, items)

    def list_requests(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        found = [
            mr
            for mr in self.requests.values()
            if all(
                mr.get(key) == query[key]
                for key in ("state", "target_branch", "source_branch")
                if key in query
            )
        ]
        return self.page(urlsplit(match.string).path, query, found)

    def seed(self, source: str, *, source_project_id: int = PROJECT_ID, **extra: Any) -> dict[str, Any]:
        """An open merge request that exists before the run (a fork's, or one from an unprefixed branch)."""
        iid = len(self.requests) + 1
        mr = {
            "id": 1000 + iid,
            "iid": iid,
            "project_id": PROJECT_ID,
            "title": f"manual: {source}",
            "description": "",
            "state": "opened",
            "source_branch": source,
            "target_branch": "main",
            "source_project_id": source_project_id,
            "target_project_id": PROJECT_ID,
            "merge_when_pipeline_succeeds": False,
            "web_url": f"{self.url}/{PROJECT}/-/merge_requests/{iid}",
            **extra,
        }
        self.requests[iid] = mr
        return mr

    def create(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        source = body["source_branch"]
        if source not in self.remote.refs():
            return Reply(422, {"message": ["Source branch does not exist"]})
        for mr in self.requests.values():
            same = (mr["source_branch"], mr["target_branch"]) == (source, body["target_branch"])
            if same and mr["state"] == "opened" and mr["source_project_id"] == PROJECT_ID:
                return Reply(409, {"message": [f"Another open merge request already exists: !{mr['iid']}"]})
        mr = self.seed(source, title=body["title"], description=body.get("description", ""))
        mr["remove_source_branch"] = body.get("remove_source_branch")
        return Reply(201, mr)

    def update(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        mr = self.requests.get(int(match["iid"]))
        if mr is None:
            return Reply(404, {"message": "404 Not found"})
        for key in ("title", "description"):
            if key in body:
                mr[key] = body[key]
        if body.get("state_event") == "close":
            mr["state"] = "closed"
            mr["merge_when_pipeline_succeeds"] = False
        return Reply(200, mr)

    def merge(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        mr = self.requests.get(int(match["iid"]))
        if mr is None:
            return Reply(404, {"message": "404 Not found"})
        if not self.pipeline_started:
            return Reply(405, {"message": "405 Method Not Allowed"})
        if body.get("merge_when_pipeline_succeeds") is True:
            mr["merge_when_pipeline_succeeds"] = True
        return Reply(200, mr)

    def open_requests(self) -> list[dict[str, Any]]:
        return [mr for mr in self.requests.values() if mr["state"] == "opened"]


@pytest.fixture(name="gitlab_api")
def gitlab_api_fixture(remote: Remote) -> Iterator[FakeGitLab]:
    yield from serve(FakeGitLab(remote))


# --------------------------------------------------------------------------------------------
# Fake GitHub: REST for repository, branches and pulls, GraphQL for auto-merge
# --------------------------------------------------------------------------------------------


class FakeGitHub(FakeApi):
    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self.remote = remote
        self.pulls: dict[int, dict[str, Any]] = {}
        self.auto_merge_error: str | None = None

    def authorised(self, headers: Any) -> bool:
        return headers.get("Authorization") in (f"token {TOKEN}", f"Bearer {TOKEN}")

    def unauthorised(self) -> Reply:
        return Reply(401, {"message": "Bad credentials"})

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        base = f"/repos/{PROJECT}"
        return [
            ("GET", base, "repo", lambda m, q, b: Reply(200, self.repo_json())),
            ("GET", base + "/branches", "branches", self.branches),
            ("GET", base + "/pulls", "list", self.list_pulls),
            ("POST", base + "/pulls", "create", self.create),
            ("GET", base + r"/pulls/(?P<number>\d+)", "get", self.get_pull),
            ("PATCH", base + r"/pulls/(?P<number>\d+)", "edit", self.edit),
            ("POST", "/graphql", "graphql", self.graphql),
        ]

    def repo_json(self, full_name: str = PROJECT, repo_id: int = GITHUB_REPO_ID) -> dict[str, Any]:
        owner, name = full_name.split("/")
        return {
            "id": repo_id,
            "node_id": f"R_{repo_id}",
            "name": name,
            "full_name": full_name,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "url": f"{self.url}/repos/{full_name}",
            "html_url": f"{self.url}/{full_name}",
            "default_branch": "main",
        }

    def branches(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        items = [{"name": name, "commit": {"sha": sha}} for name, sha in sorted(self.remote.refs().items())]
        return self.page(match.string, query, items)

    def list_pulls(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        state, target = query.get("state", "open"), query.get("base")
        found = [
            pull
            for pull in self.pulls.values()
            if pull["state"] == state and (target is None or pull["base"]["ref"] == target)
        ]
        return self.page(match.string, query, found)

    def seed(self, head: str, *, fork: str | None = None, **extra: Any) -> dict[str, Any]:
        number = len(self.pulls) + 1
        head_repo = self.repo_json(fork, 99) if fork else self.repo_json()
        pull = {
            "url": f"{self.url}/repos/{PROJECT}/pulls/{number}",
            "id": 5000 + number,
            "node_id": f"PR_node{number}",
            "number": number,
            "state": "open",
            "title": f"manual: {head}",
            "body": None,
            "html_url": f"{self.url}/{PROJECT}/pull/{number}",
            "head": {"ref": head, "label": f"{head_repo['owner']['login']}:{head}", "repo": head_repo},
            "base": {"ref": "main", "label": "platform:main", "repo": self.repo_json()},
            "auto_merge": None,
            "draft": False,
            "merged": False,
            **extra,
        }
        self.pulls[number] = pull
        return pull

    def create(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        head, target = body["head"], body["base"]
        if head not in self.remote.refs():
            return Reply(
                422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}
            )
        if self.remote.merged(head, target):
            errors = [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {target} and {head}",
                }
            ]
            return Reply(422, {"message": "Validation Failed", "errors": errors})
        for pull in self.pulls.values():
            if pull["state"] == "open" and (pull["head"]["ref"], pull["base"]["ref"]) == (head, target):
                message = f"A pull request already exists for platform:{head}."
                return Reply(422, {"message": "Validation Failed", "errors": [{"message": message}]})
        return Reply(201, self.seed(head, title=body["title"], body=body.get("body")))

    def get_pull(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        pull = self.pulls.get(int(match["number"]))
        return Reply(200, pull) if pull else Reply(404, {"message": "Not Found"})

    def edit(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        pull = self.pulls.get(int(match["number"]))
        if pull is None:
            return Reply(404, {"message": "Not Found"})
        pull.update({key: body[key] for key in ("title", "body", "state") if key in body})
        if pull["state"] == "closed":
            pull["auto_merge"] = None
        return Reply(200, pull)

    def graphql(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        if "enablePullRequestAutoMerge" not in body["query"]:
            return Reply(200, {"errors": [{"message": "unsupported by the fake"}]})
        given = body["variables"]["input"]
        pull = next((p for p in self.pulls.values() if p["node_id"] == given["pullRequestId"]), None)
        if pull is None:
            return Reply(
                200, {"data": None, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve"}]}
            )
        if self.auto_merge_error:
            error = {
                "type": "UNPROCESSABLE",
                "path": ["enablePullRequestAutoMerge"],
                "message": self.auto_merge_error,
            }
            return Reply(200, {"data": {"enablePullRequestAutoMerge": None}, "errors": [error]})
        pull["auto_merge"] = {"merge_method": given["mergeMethod"].lower(), "enabled_by": {"login": "bot"}}
        actor = {"avatarUrl": "", "login": "bot", "resourcePath": "/bot", "url": ""}
        return Reply(
            200, {"data": {"enablePullRequestAutoMerge": {"actor": actor, "clientMutationId": None}}}
        )

    def open_pulls(self) -> list[dict[str, Any]]:
        return [pull for pull in self.pulls.values() if pull["state"] == "open"]


@pytest.fixture(name="github_api")
def github_api_fixture(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The fake, and the step's GitHub host without PyGithub's pauses between calls (0.25 s, 1 s)."""
    fast = functools.partial(githost.GitHubHost, seconds_between_requests=None, seconds_between_writes=None)
    monkeypatch.setattr(mwg, "GitHubHost", fast)
    yield from serve(FakeGitHub(remote))

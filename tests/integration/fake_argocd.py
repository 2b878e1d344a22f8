"""A fake Argo CD API server for the promotion and status tests: 127.0.0.1, an ephemeral port, a thread.

It serves the three ``ApplicationService`` routes ``ops/argocd_api.py`` calls (``Get``,
``ResourceTree``, ``GetResource``) from Applications, resource trees and Pod manifests a test
configures (:meth:`FakeArgoCD.add`), checks the bearer token (401 otherwise), records every request
and answers what a test injects (``failures``, by route label: ``application``, ``tree``,
``resource``). Access follows the server's ``getAppEnforceRBAC`` as ``ops/argocd_api.py`` cites it:
an Application the token may not read (``denied``) is 403 "permission denied"; a missing one is 404
when the request names the project and 403 when it does not; one in another project is 404.

The bodies have the documented shape (swagger ``v1alpha1Application``, ``v1alpha1ApplicationTree``,
``applicationApplicationResourceResponse``) as far as the client reads them; Argo CD's own wording of
errors is not reproduced beyond the gRPC-gateway ``{"error", "code", "message"}`` form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.fakes_githost import FakeApi, Handler, Reply, serve

ARGOCD_TOKEN = "argocd-token-9d2e71"
REVISION = "4f1c2a9be07d3c55a1e8f0b2d6c4e9a7b3f5d8c1"


def write_platform(
    directory: Path,
    apps: Mapping[str, Sequence[Mapping[str, str]]],
    promoted_from: Mapping[str, str] | None = None,
) -> Path:
    """A platform directory: ``environments.yaml`` and a stack file per environment whose
    ``platform:apps`` are ``apps[env]`` (none for an empty list), as the tools read them, and
    ``platform:gitops.promotedFrom`` where ``promoted_from`` names the source."""
    directory.mkdir(parents=True, exist_ok=True)
    environments = {env: {"stack": f"organization/platform/{env}"} for env in apps}
    (directory / "environments.yaml").write_text(
        yaml.safe_dump({"environments": environments}, sort_keys=False)
    )
    for env, entries in apps.items():
        config: dict[str, Any] = {"platform:environment": env}
        if entries:
            config["platform:apps"] = [dict(entry) for entry in entries]
        if env in (promoted_from or {}):
            config["platform:gitops"] = {"promotedFrom": (promoted_from or {})[env]}
        (directory / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return directory


def digest_of(char: str) -> str:
    """A recognisable fake digest: ``sha256:`` and 64 times ``char``."""
    return "sha256:" + char * 64


@dataclass(frozen=True)
class FakePod:
    name: str
    image: str  # the spec's image
    image_id: str  # the status' imageID
    phase: str = "Running"


def _error(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"error": message, "code": code, "message": message})


class FakeArgoCD(FakeApi):
    def __init__(self, token: str = ARGOCD_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.apps: dict[str, dict[str, Any]] = {}
        self.trees: dict[str, list[dict[str, Any]]] = {}
        self.manifests: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.denied: set[str] = set()

    def authorised(self, headers: Any) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"

    def unauthorised(self) -> Reply:
        return _error(401, 16, "invalid session: token has invalid claims: token is expired")

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        base = r"/api/v1/applications/(?P<name>[a-z0-9.-]+)"
        return [
            ("GET", base, "application", self.application),
            ("GET", base + "/resource-tree", "tree", self.tree),
            ("GET", base + "/resource", "resource", self.resource),
        ]

    def add(
        self,
        env: str,
        app: str,
        *,
        images: Sequence[str],
        sync: str = "Synced",
        health: str = "Healthy",
        revision: str = REVISION,
        phase: str = "Succeeded",
        finished_at: str = "2025-03-04T10:20:30Z",
        history: Sequence[str] = ("2025-03-01T09:00:00Z", "2025-03-04T10:20:30Z"),
        pods: Sequence[FakePod] = (),
    ) -> dict[str, Any]:
        """An Application ``<env>-<app>`` in project ``<env>``, its Pods in namespace ``<app>``."""
        name = f"{env}-{app}"
        document = {
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {
                "project": env,
                "source": {"repoURL": "https://git.example.com/gitops.git", "targetRevision": "main"},
                "destination": {"name": env, "namespace": app},
            },
            "status": {
                "sync": {"status": sync, "revision": revision},
                "health": {"status": health},
                "summary": {"images": list(images)},
                "operationState": {"phase": phase, "finishedAt": finished_at},
                "history": [
                    {"id": index, "revision": revision, "deployedAt": at} for index, at in enumerate(history)
                ],
            },
        }
        self.apps[name] = document
        self.trees[name] = [
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": app, "name": app}
        ]
        for pod in pods:
            self.trees[name].append({"version": "v1", "kind": "Pod", "namespace": app, "name": pod.name})
            self.manifests[(name, app, pod.name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": app},
                "spec": {"containers": [{"name": app, "image": pod.image}]},
                "status": {
                    "phase": pod.phase,
                    "containerStatuses": [
                        {"name": app, "image": pod.image, "imageID": pod.image_id, "ready": True}
                    ],
                },
            }
        return document

    def enforce(self, name: str, query: dict[str, str]) -> Reply | None:
        project = query.get("project", "")
        app = self.apps.get(name)
        if name in self.denied:
            return _error(403, 7, "permission denied")
        if app is None:
            missing = f'applications.argoproj.io "{name}" not found'
            return _error(404, 5, missing) if project else _error(403, 7, "permission denied")
        if project and app["spec"]["project"] != project:
            return _error(404, 5, f'applications.argoproj.io "{name}" not found')
        return None

    def application(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        return self.enforce(match["name"], query) or Reply(200, self.apps[match["name"]])

    def tree(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        return self.enforce(match["name"], query) or Reply(200, {"nodes": self.trees[match["name"]]})

    def resource(self, match: re.Match[str], query: dict[str, str], body: Any) -> Reply:
        refused = self.enforce(match["name"], query)
        if refused:
            return refused
        wanted = (query.get("kind"), query.get("version"), query.get("group", ""))
        manifest = self.manifests.get(
            (match["name"], query.get("namespace", ""), query.get("resourceName", ""))
        )
        if manifest is None or wanted != ("Pod", "v1", ""):
            return _error(404, 5, "resource not found")
        return Reply(200, {"manifest": json.dumps(manifest)})

    def calls(self) -> list[tuple[str, dict[str, str]]]:
        return [(seen.path, seen.query) for seen in self.seen]


@pytest.fixture(name="argocd")
def argocd_fixture() -> Iterator[FakeArgoCD]:
    yield from serve(FakeArgoCD())

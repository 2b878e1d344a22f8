"""A small, typed, read-only client for Argo CD's REST API, for promotion and status.

Why this and not an SDK: Argo CD ships no maintained Python SDK (its clients are the Go
``apiclient`` package and the ``argocd`` CLI); the REST API is the gRPC-gateway face of its gRPC
services, described by the swagger document the server shows at ``/swagger-ui`` (source:
argoproj/argo-cd ``assets/swagger.json``; the routes are the ``google.api.http`` options in
``server/application/application.proto``). ``ops/promote.py`` and ``ops/status.py`` need three
calls of ``ApplicationService``, all ``GET`` and all covered by the RBAC right ``applications, get``:

* ``GET /api/v1/applications/{name}`` (``Get``): ``status.sync.status`` and ``.revision`` (multi-
  source apps: ``.revisions``), ``status.health.status``, ``status.summary.images`` (the images of
  the Application's live resources, as their specs name them), ``status.operationState.phase``
  and ``.finishedAt`` (the last sync operation), ``status.history[]`` (``id``, ``revision``,
  ``deployedAt``: one entry per successful sync). Field names as in ``pkg/apis/application/
  v1alpha1/types.go`` (``ApplicationStatus``, ``SyncStatus``, ``ApplicationSummary``,
  ``OperationState``, ``RevisionHistory``).
* ``GET /api/v1/applications/{applicationName}/resource-tree`` (``ResourceTree``): ``nodes[]`` with
  ``kind``, ``group``, ``version``, ``namespace``, ``name``; the Pods are the nodes of kind ``Pod``
  in the core group.
* ``GET /api/v1/applications/{name}/resource`` with ``namespace``, ``resourceName``, ``version``,
  ``group``, ``kind`` (``GetResource``; ``name`` is the path's Application): ``{"manifest":
  "<the live object as a JSON string>"}``; a Pod's ``status.containerStatuses[].imageID`` is the
  image the runtime pulled, by registry digest. That is how the digest is known when the specs
  (and so ``summary.images``) name a tag only.

Every call sends ``project=<AppProject>``. Argo CD's server (``server/application/application.go``,
``getAppEnforceRBAC``) answers 403 "permission denied" both for a missing right and for a missing
Application unless the project is given; with it, 403 means the right is missing and 404 that the
Application does not exist in that project (also ``docs/developer-guide/api-docs.md``, "How to Avoid
403 Errors for Missing Applications"). gRPC status codes map to HTTP statuses (PermissionDenied 403,
NotFound 404, Unauthenticated 401) and errors come as JSON ``{"error", "code", "message"}``.

Authentication: ``Authorization: Bearer <token>`` (``docs/developer-guide/api-docs.md``), the
token from ``$ARGOCD_AUTH_TOKEN`` only (the variable the ``argocd`` CLI reads too), never a flag.
The platform's read-only account ``platform-status`` has one right, ``applications, get``
(``docs/operator-manual/rbac.md``); its token comes from ``argocd account generate-token --account
platform-status`` (``docs/operator-manual/user-management/index.md``, local users and API keys).
TLS is verified; ``ca_file`` names the CA bundle when the server's certificate is not signed by a
public CA.

Every failure is one :class:`ArgoCDError` whose message names the call
(``GET /api/v1/applications/prod-website: 403 permission denied: ...``) and says what to do.
Not verified here (no Argo CD is reachable): the exact wording of the server's error messages
(only the status is relied on) and how a given runtime spells ``imageID`` (only a trailing
``@sha256:<hex>`` is read; containerd, Kapsule's runtime, reports the digest the image was pulled by).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from ops.githost import http_problem
from ops.releases import ImageRef, image_id_digest

TOKEN_ENV = "ARGOCD_AUTH_TOKEN"


def token_problem(token: str) -> str | None:
    """Why ``token`` (read from $ARGOCD_AUTH_TOKEN) cannot be used, or None. A bearer token goes in
    an HTTP header: visible ASCII only (http.client encodes headers as latin-1 and would raise on
    anything else, mid-request)."""
    if not token:
        return f"${TOKEN_ENV} is not set: export the platform-status account's Argo CD token"
    if not (token.isascii() and token.isprintable() and " " not in token):
        return f"${TOKEN_ENV} holds characters an HTTP header cannot carry"
    return None


STATUS_ACCOUNT = "platform-status"
RIGHT = "applications, get"
LACKS_RIGHT = f"the token lacks `{RIGHT}`: use the {STATUS_ACCOUNT} account's token"
MAX_DETAIL = 200


class ArgoCDError(Exception):
    """A call to Argo CD failed; ``call`` names it, ``status`` is the HTTP status when one came."""

    def __init__(self, call: str, problem: str, status: int | None = None) -> None:
        super().__init__(f"{call}: {problem}")
        self.call = call
        self.problem = problem
        self.status = status


@dataclass(frozen=True)
class Deployment:
    """One entry of ``status.history``: a successful sync."""

    id: int
    revision: str
    deployed_at: str


@dataclass(frozen=True)
class Application:
    name: str
    project: str
    sync_status: str  # Synced, OutOfSync, Unknown
    revision: str  # the Git revision the sync status compares to
    health_status: str  # Healthy, Progressing, Degraded, Suspended, Missing, Unknown
    images: tuple[str, ...]
    operation_phase: str | None
    operation_finished_at: str | None
    history: tuple[Deployment, ...]

    @property
    def synced_and_healthy(self) -> bool:
        return self.sync_status == "Synced" and self.health_status == "Healthy"

    @property
    def last_synced_at(self) -> str | None:
        """When the last successful sync finished: the last operation's end when it succeeded,
        else the newest history entry (history only records successful syncs)."""
        if self.operation_phase == "Succeeded" and self.operation_finished_at:
            return self.operation_finished_at
        return max((entry.deployed_at for entry in self.history if entry.deployed_at), default=None)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str


@dataclass(frozen=True)
class Running:
    """What an Application runs of one repository.

    ``refs`` are its ``summary.images`` of that repository; ``digests`` the distinct digests they
    pin or, when they pin none, the running Pods' image ids report; ``source`` says which."""

    refs: tuple[ImageRef, ...]
    digests: tuple[str, ...]
    source: str  # "summary", "pods" or "none"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    """An int64 field, which gRPC-gateway may render as a JSON number or a string."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_application(document: Mapping[str, Any]) -> Application:
    status = _mapping(document.get("status"))
    sync = _mapping(status.get("sync"))
    operation = _mapping(status.get("operationState"))
    revisions = [_text(revision) for revision in _list(sync.get("revisions"))]
    history = tuple(
        Deployment(
            _int(entry.get("id")),
            _text(entry.get("revision")) or next(iter(_list(entry.get("revisions"))), ""),
            _text(entry.get("deployedAt")),
        )
        for entry in map(_mapping, _list(status.get("history")))
    )
    return Application(
        name=_text(_mapping(document.get("metadata")).get("name")),
        project=_text(_mapping(document.get("spec")).get("project")),
        sync_status=_text(sync.get("status")) or "Unknown",
        revision=_text(sync.get("revision")) or next(filter(None, revisions), ""),
        health_status=_text(_mapping(status.get("health")).get("status")) or "Unknown",
        images=tuple(_text(image) for image in _list(_mapping(status.get("summary")).get("images"))),
        operation_phase=_text(operation.get("phase")) or None,
        operation_finished_at=_text(operation.get("finishedAt")) or None,
        history=history,
    )


def _refs_of(images: tuple[str, ...], repository: str | None) -> tuple[ImageRef, ...]:
    refs: list[ImageRef] = []
    for image in images:
        try:
            ref = ImageRef.parse(image)
        except ValueError:
            continue
        if repository is None or ref.repository == repository:
            refs.append(ref)
    return tuple(refs)


class ArgoCD:
    """Argo CD's server at ``url`` (``https://argocd.example.com``), with a bearer token."""

    def __init__(self, url: str, token: str, *, ca_file: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self._session.verify = ca_file or True

    def _get(
        self, path: str, params: Mapping[str, str], *, project: str, name: str, missing: str = ""
    ) -> Any:
        """The JSON answer; ``missing`` says what a 404 means (default: no such Application)."""
        call = f"GET {path}"
        try:
            answer = self._session.get(self.url + path, params=params, timeout=self._timeout)
        except requests.exceptions.SSLError as exc:
            problem = f"TLS verification failed for {self.url} ({_first_line(exc)}): pass --ca-file"
            raise ArgoCDError(call, problem) from exc
        except requests.RequestException as exc:
            raise ArgoCDError(call, f"cannot reach Argo CD at {self.url} ({_first_line(exc)})") from exc
        if answer.status_code >= 400:
            missing = missing or f"Application {name} does not exist in project {project}"
            raise ArgoCDError(call, _refusal(answer, project, name, missing), answer.status_code)
        try:
            return answer.json()
        except ValueError as exc:
            kind = answer.headers.get("Content-Type") or "no content type"
            problem = f"the answer is not JSON ({kind}): is {self.url} Argo CD's API server?"
            raise ArgoCDError(call, problem, answer.status_code) from exc

    def application(self, name: str, *, project: str) -> Application:
        path = f"/api/v1/applications/{quote(name, safe='')}"
        document = self._get(path, {"project": project}, project=project, name=name)
        if not isinstance(document, dict):
            raise ArgoCDError(f"GET {path}", "the answer is not an Application object")
        return parse_application(document)

    def pods(self, name: str, *, project: str) -> list[Pod]:
        """The Pods in the Application's resource tree, sorted by namespace and name."""
        path = f"/api/v1/applications/{quote(name, safe='')}/resource-tree"
        tree = _mapping(self._get(path, {"project": project}, project=project, name=name))
        nodes = map(_mapping, _list(tree.get("nodes")))
        found = {
            Pod(_text(node.get("namespace")), _text(node.get("name")))
            for node in nodes
            if node.get("kind") == "Pod" and not node.get("group")
        }
        return sorted(found, key=lambda pod: (pod.namespace, pod.name))

    def pod_manifest(self, name: str, pod: Pod, *, project: str) -> Mapping[str, Any]:
        path = f"/api/v1/applications/{quote(name, safe='')}/resource"
        params = {
            "namespace": pod.namespace,
            "resourceName": pod.name,
            "version": "v1",
            "kind": "Pod",
            "group": "",
            "project": project,
        }
        missing = f"Pod {pod.namespace}/{pod.name} is no longer in {name}'s resource tree"
        answer = _mapping(self._get(path, params, project=project, name=name, missing=missing))
        try:
            manifest = json.loads(_text(answer.get("manifest")))
        except ValueError as exc:
            problem = f"Pod {pod.namespace}/{pod.name}: the manifest is not a JSON object"
            raise ArgoCDError(f"GET {path}", problem) from exc
        return _mapping(manifest)

    def running(self, app: Application, repository: str | None) -> Running:
        """What ``app`` runs of ``repository`` (every image when None): the digests its
        ``summary.images`` pin, else those the running Pods' containers of it report."""
        refs = _refs_of(app.images, repository)
        pinned = sorted({ref.digest for ref in refs if ref.digest})
        if pinned:
            return Running(refs, tuple(pinned), "summary")
        digests: set[str] = set()
        for pod in self.pods(app.name, project=app.project):
            try:
                manifest = self.pod_manifest(app.name, pod, project=app.project)
            except ArgoCDError as exc:
                if exc.status == 404:  # replaced since the tree was read (a rollout): not running
                    continue
                raise
            digests.update(_pod_digests(manifest, repository))
        return Running(refs, tuple(sorted(digests)), "pods" if digests else "none")


def _pod_digests(manifest: Mapping[str, Any], repository: str | None) -> set[str]:
    """Digests of the containers of ``repository`` in a running Pod (by their spec's image)."""
    status = _mapping(manifest.get("status"))
    if status.get("phase") != "Running":
        return set()
    specs = {
        _text(container.get("name")): _text(container.get("image"))
        for container in map(_mapping, _list(_mapping(manifest.get("spec")).get("containers")))
    }
    digests: set[str] = set()
    for container in map(_mapping, _list(status.get("containerStatuses"))):
        image = specs.get(_text(container.get("name"))) or _text(container.get("image"))
        if not _refs_of((image,), repository):
            continue
        digest = image_id_digest(_text(container.get("imageID")))
        if digest:
            digests.add(digest)
    return digests


def _first_line(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_DETAIL]


def _refusal(answer: requests.Response, project: str, name: str, missing: str) -> str:
    """The problem of an error answer, with what it means for the platform's accounts."""
    try:
        body = answer.json()
        message = _text(_mapping(body).get("message")) or _text(_mapping(body).get("error"))
    except ValueError:
        message = answer.text
    if answer.status_code == 401:
        return (
            f"{http_problem(401, message)}: the token in ${TOKEN_ENV} is invalid or expired; generate one "
            f"with `argocd account generate-token --account {STATUS_ACCOUNT}`"
        )
    if answer.status_code == 403:
        return f"403 permission denied: {LACKS_RIGHT} (needed on {project}/{name})"
    if answer.status_code == 404:
        return f"404 Not Found: {missing}"
    return http_problem(answer.status_code, message)

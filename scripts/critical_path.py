"""How long a stack takes to build from nothing: the critical path of its dependency graph.

    .venv/bin/python scripts/critical_path.py prod                 # plan prod offline, print the path
    .venv/bin/python scripts/critical_path.py prod --json          # the same as JSON
    .venv/bin/python scripts/critical_path.py prod --svg prod.svg  # also draw the graph (Graphviz)
    .venv/bin/python scripts/critical_path.py prod --inventory build/prod/inventory.json

The graph is read from the offline plan (``offline.runner``), or from the inventory
``offline.artifacts`` wrote (``build/<stack>/inventory.json``), which records the same fields.
A resource waits for:

* its recorded ``dependencies``. The Python SDK sends one list that merges the explicit ones
  (``ResourceOptions.depends_on``) with the implicit ones (every resource whose outputs an input
  references); the mocks record that list only, not the per-input ``propertyDependencies``, so the
  two kinds cannot be told apart here. A dependency on a program component (``platform:*``) has
  already been expanded by the SDK into the component's children (``pulumi.runtime.rpc.
  _add_dependency``); a remote component such as ``kubernetes:yaml/v2:ConfigFile`` stays a node;
* its provider (``provider`` / ``provider_urn``): the Kubernetes provider in turn depends on the
  cluster and the pools its kubeconfig was built from (its own recorded dependencies).

Program components (``platform:*``, 0 s) only group their children (clusters in the SVG).

Durations come from one table, :data:`DURATIONS`, by resource type; the sources are in each
entry. The provider's timeouts are upper bounds, not durations: the figures are estimates unless
an entry says otherwise. The *critical path* is the longest chain (each resource starts when
everything it waits for is done, Pulumi's default unbounded parallelism). The *floor* is the same
computation restricted to the chain that is truly necessary before anything can run on the
cluster: network (VPC, private network) -> Public Gateway (IP, gateway, attachment) -> cluster ->
pools -> Kubernetes provider -> the first Helm release, keeping only the graph's edges between
those resources; floor = the earliest any Helm release could finish. The target (issue 19) is a
total within 10% of the floor; the verdict is printed, never enforced.

**Lead time** (issue 19, item 2): for a stack that runs Argo CD (tooling), the rollout chain's
configured worst-case waiting, hop by hop, read from the same records (nothing is measured):

1. registry -> image updater: the updater's registry poll (its release's ``--interval``); no
   event exists for it (Scaleway's registry sends none the updater reads).
2. write-back branch -> merge request: 0 when the GitOps repository's pipeline runs
   merge-when-green on the branch's push (``ops/ci/<host>/``), else its schedule's period.
3. merge request -> merge: the write-back gate's pipeline, CI time, excluded (as issue 19 asks).
4. Git host -> Argo CD (the merge reaching Argo CD): 0 with the Git webhook (argocd-secret's
   ``webhook.<host>.secret`` set, its Secret synced, ``/api/webhook`` routed), else the
   reconciliation timeout plus its jitter (argocd-cm).
5. Argo CD -> sync start: 0 when the Applications sync automatically.

*Merge to sync start* is hops 4 and 5; the target is at most :data:`LEAD_TARGET_SECONDS`. Each
event-driven hop also shows the poll behind it (the worst case when an event is lost).

Exit status: 0, or 2 on bad input (unknown stack, invalid stack file, unreadable inventory, no
``dot`` for ``--svg``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from offline import runner

#: The total may exceed the floor by this much (issue 19: "within 10%").
TARGET_RATIO = 1.10
#: Configured waiting from merge to sync start (issue 19: "2 minutes or less").
LEAD_TARGET_SECONDS = 120

_TF = "terraform-provider-scaleway v2, internal/services"
_HELM = "scw_platform/helm.py: atomic=True, so Helm waits for every Deployment/Job of the chart"


@dataclass(frozen=True)
class Duration:
    """An estimate in seconds and where it comes from."""

    seconds: int
    source: str


#: Estimated creation time by resource type. Types not listed take :data:`DEFAULT`; any other
#: ``kubernetes:`` type takes :data:`KUBERNETES_OBJECT`.
DURATIONS: dict[str, Duration] = {
    "scaleway:network/vpc:Vpc": Duration(5, "estimate: synchronous API call, no wait in the provider"),
    "scaleway:network/privateNetwork:PrivateNetwork": Duration(5, "estimate: synchronous API call"),
    "scaleway:network/publicGatewayIp:PublicGatewayIp": Duration(5, "estimate: an IP reservation"),
    "scaleway:network/publicGateway:PublicGateway": Duration(
        120,
        "issue 19 (~2 min); the provider waits for the gateway to be 'running'"
        f" (WaitForGateway; {_TF}/vpcgw: defaultVPCGatewayTimeout = 10 min, an upper bound)",
    ),
    "scaleway:network/gatewayNetwork:GatewayNetwork": Duration(
        30,
        "estimate; the provider waits for the attachment (WaitForGatewayNetwork;"
        f" {_TF}/vpcgw: defaultVPCGatewayTimeout = 10 min, an upper bound)",
    ),
    "scaleway:kubernetes/cluster:Cluster": Duration(
        240,
        "issue 19 (~4 min); 'under 5 min from button press to kubeconfig' (mricher.fr, Kapsule"
        f" overview); {_TF}/k8s defaultK8SClusterTimeout = 15 min (upper bound)",
    ),
    "scaleway:kubernetes/pool:Pool": Duration(
        420,
        "issue 19 (~7 min: instances booted, nodes Ready: scw_platform/cluster.py sets"
        " wait_for_pool_ready=True);"
        f" {_TF}/k8s defaultK8SPoolTimeout = 30 min (upper bound)",
    ),
    "scaleway:kubernetes/acl:Acl": Duration(10, "estimate: an API call on the running cluster"),
    "scaleway:databases/instance:Instance": Duration(
        600,
        "issue 19 (~10 min); the provider waits for the instance to be ready"
        f" ({_TF}/rdb: defaultRdbInstanceTimeout = 15 min, an upper bound)",
    ),
    "scaleway:databases/database:Database": Duration(10, "estimate: a call on the ready instance"),
    "scaleway:databases/user:User": Duration(10, "estimate: a call on the ready instance"),
    "scaleway:databases/privilege:Privilege": Duration(5, "estimate: a call on the ready instance"),
    "scaleway:loadbalancers/ip:Ip": Duration(5, "estimate: an IP reservation"),
    "scaleway:object/bucket:Bucket": Duration(5, "estimate: an S3 CreateBucket"),
    "scaleway:registry/namespace:Namespace": Duration(5, "estimate: synchronous API call"),
    "kubernetes:helm.sh/v3:Release": Duration(
        120,
        f"issue 19 (~2 min); {_HELM}; the program's timeouts (600-900 s) are upper bounds",
    ),
    "kubernetes:batch/v1:Job": Duration(30, "estimate: Pulumi's await logic waits for the Job to complete"),
    "kubernetes:yaml/v2:ConfigFile": Duration(10, "estimate: applying the Gateway API CRD bundle"),
    "kubernetes:core/v1:Namespace": Duration(2, "estimate: Pulumi waits for the namespace to be Active"),
    "pulumi:providers:kubernetes": Duration(0, "configuring a provider creates nothing"),
    "pulumi:pulumi:StackReference": Duration(1, "estimate: reading another stack's outputs"),
}
#: Any other ``kubernetes:`` type: one object applied server-side, no readiness wait.
KUBERNETES_OBJECT = Duration(2, "estimate: one object applied, no readiness wait")
#: Any type not listed (IAM, secrets, DNS records, random, observability...): one API call.
DEFAULT = Duration(3, "default: one synchronous API call, nothing to wait for")

#: The types of the truly necessary chain the floor is computed over.
FLOOR_TYPES = frozenset(
    {
        "scaleway:network/vpc:Vpc",
        "scaleway:network/privateNetwork:PrivateNetwork",
        "scaleway:network/publicGatewayIp:PublicGatewayIp",
        "scaleway:network/publicGateway:PublicGateway",
        "scaleway:network/gatewayNetwork:GatewayNetwork",
        "scaleway:kubernetes/cluster:Cluster",
        "scaleway:kubernetes/pool:Pool",
        "pulumi:providers:kubernetes",
        "kubernetes:helm.sh/v3:Release",
    }
)
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
#: What the graph reads from each inventory record.
_RECORD_KEYS = frozenset({"urn", "type", "name", "custom"})


class InputError(Exception):
    """Bad input: the message is printed and the script exits 2."""


def duration(type_token: str) -> Duration:
    """The estimate for one resource type (:data:`DURATIONS`, then the documented defaults)."""
    if type_token in DURATIONS:
        return DURATIONS[type_token]
    return KUBERNETES_OBJECT if type_token.startswith("kubernetes:") else DEFAULT


@dataclass(frozen=True)
class Node:
    urn: str
    type: str
    name: str
    parent: str
    seconds: int


@dataclass
class Graph:
    """Resources that take time (program components excluded) and what each waits for."""

    nodes: dict[str, Node]
    waits_for: dict[str, set[str]]
    #: Program component URN -> (type, name, parent), for grouping.
    components: dict[str, tuple[str, str, str]]


def build_graph(resources: Iterable[Mapping[str, Any]], project: str) -> Graph:
    """The graph of inventory records (``offline.artifacts.resource_record``'s shape)."""
    records = {str(r["urn"]): r for r in resources}
    components = {
        urn: (str(r["type"]), str(r["name"]), str(r.get("parent") or ""))
        for urn, r in records.items()
        if not r["custom"] and str(r["type"]).split(":", 1)[0] == project
    }
    nodes = {
        urn: Node(
            urn, str(r["type"]), str(r["name"]), str(r.get("parent") or ""), duration(str(r["type"])).seconds
        )
        for urn, r in records.items()
        if urn not in components
    }
    waits_for: dict[str, set[str]] = {}
    for urn in nodes:
        record = records[urn]
        edges = {str(d) for d in record.get("dependencies") or []}
        if record.get("provider"):
            edges.add(str(record["provider"]))  # already a URN (offline.artifacts.resource_record)
        waits_for[urn] = {d for d in edges if d in nodes and d != urn}
    return Graph(nodes, waits_for, components)


def _order(graph: Graph, within: set[str]) -> list[str]:
    """``within`` in dependency order (Kahn's algorithm, ties by URN); a cycle is bad input."""
    missing = {u: len(graph.waits_for[u] & within) for u in within}
    dependents: dict[str, list[str]] = {}
    for urn in sorted(within):
        for dep in graph.waits_for[urn] & within:
            dependents.setdefault(dep, []).append(urn)
    ready = sorted(u for u, n in missing.items() if n == 0)
    order: list[str] = []
    while ready:
        urn = ready.pop()
        order.append(urn)
        for other in dependents.get(urn, []):
            missing[other] -= 1
            if missing[other] == 0:
                ready.append(other)
    if len(order) != len(within):
        raise InputError(f"the dependency graph has a cycle among {len(within) - len(order)} resources")
    return order


def longest(graph: Graph, within: set[str]) -> dict[str, tuple[int, str]]:
    """For each resource in ``within``: its earliest finish (s) and the dependency that gates it
    (``""`` when none), counting only edges inside ``within``. Ties go to the smallest URN."""
    finish: dict[str, tuple[int, str]] = {}
    for urn in _order(graph, within):
        gate = ""
        for dep in sorted(d for d in graph.waits_for[urn] if d in within):
            if not gate or finish[dep][0] > finish[gate][0]:
                gate = dep
        start = finish[gate][0] if gate else 0
        finish[urn] = (start + graph.nodes[urn].seconds, gate)
    return finish


def _walk(finish: Mapping[str, tuple[int, str]], end: str) -> list[str]:
    path = [end]
    while finish[path[-1]][1]:
        path.append(finish[path[-1]][1])
    return path[::-1]


@dataclass
class Report:
    stack: str
    resources: int
    edges: int
    path: list[str]
    floor_path: list[str]
    graph: Graph
    #: The rollout chain's configured waiting (stacks running Argo CD), else None.
    lead: LeadTime | None = None

    @property
    def total(self) -> int:
        return sum(self.graph.nodes[u].seconds for u in self.path)

    @property
    def floor(self) -> int | None:
        return sum(self.graph.nodes[u].seconds for u in self.floor_path) if self.floor_path else None

    @property
    def ratio(self) -> float | None:
        return self.total / self.floor if self.floor else None

    def hops(self, path: Sequence[str]) -> list[dict[str, Any]]:
        cumulative = 0
        result = []
        for urn in path:
            node = self.graph.nodes[urn]
            cumulative += node.seconds
            result.append(
                {
                    "urn": urn,
                    "type": node.type,
                    "name": node.name,
                    "seconds": node.seconds,
                    "cumulative_seconds": cumulative,
                    "source": duration(node.type).source,
                }
            )
        return result

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "stack": self.stack,
            "resources": self.resources,
            "edges": self.edges,
            "total_seconds": self.total,
            "floor_seconds": self.floor,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "target_ratio": TARGET_RATIO,
            "pass": ratio is not None and ratio <= TARGET_RATIO,
            "path": self.hops(self.path),
            "floor_path": self.hops(self.floor_path),
            "lead_time": self.lead.as_json() if self.lead is not None else None,
        }


# --- Lead time: the rollout chain's configured waiting --------------------------------------------

HTTPROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
EXTERNAL_SECRET = "kubernetes:external-secrets.io/v1:ExternalSecret"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
#: Argo CD's defaults when argocd-cm leaves the keys unset (argo-cd docs/operator-manual/
#: argocd-cm.yaml: ``timeout.reconciliation`` 120 s, ``timeout.reconciliation.jitter`` 60 s).
ARGOCD_DEFAULT_TIMEOUT, ARGOCD_DEFAULT_JITTER = 120, 60
#: The image updater's default ``--interval`` (argocd-image-updater docs/install/cmd/run.md: 2m).
IMAGE_UPDATER_DEFAULT_INTERVAL = 120
#: The GitOps repository's pipelines, by Git host.
CI_FILES = {
    "gitlab": ROOT / "ops" / "ci" / "gitlab" / "gitops-repository.gitlab-ci.yml",
    "github": ROOT / "ops" / "ci" / "github" / "merge-when-green.yml",
}
WRITE_BACK_PREFIX = "image-updater-"
_DURATION = re.compile(r"^(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


@dataclass(frozen=True)
class Hop:
    """One hop of the rollout chain: its configured worst-case wait (None: never by itself) and,
    for an event-driven hop, the poll behind it."""

    name: str
    seconds: int | None
    how: str
    fallback_seconds: int | None = None
    #: Counted in "merge to sync start".
    after_merge: bool = False
    #: Excluded from the figures (CI build and gate time).
    excluded: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "hop": self.name,
            "seconds": self.seconds,
            "how": self.how,
            "fallback_seconds": self.fallback_seconds,
            "after_merge": self.after_merge,
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class LeadTime:
    hops: tuple[Hop, ...]

    @property
    def merge_to_sync(self) -> int | None:
        waits = [h.seconds for h in self.hops if h.after_merge]
        return None if any(w is None for w in waits) else sum(w for w in waits if w is not None)

    @property
    def total(self) -> int | None:
        waits = [h.seconds for h in self.hops if not h.excluded]
        return None if any(w is None for w in waits) else sum(w for w in waits if w is not None)

    @property
    def passes(self) -> bool:
        return self.merge_to_sync is not None and self.merge_to_sync <= LEAD_TARGET_SECONDS

    def as_json(self) -> dict[str, Any]:
        return {
            "hops": [h.as_json() for h in self.hops],
            "total_seconds": self.total,
            "merge_to_sync_seconds": self.merge_to_sync,
            "target_seconds": LEAD_TARGET_SECONDS,
            "pass": self.passes,
        }


def seconds_of(duration: Any, default: int) -> int:
    """A Go duration as the charts take it (``180s``, ``2m``, ``1m30s``; a bare number is seconds
    here) in seconds; ``default`` when unset."""
    if duration is None:
        return default
    text = str(duration).strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if match is None or not text:
        raise InputError(f"not a duration in seconds or minutes: {duration!r}")
    return int(match["m"] or 0) * 60 + int(match["s"] or 0)


def _release(resources: Sequence[Mapping[str, Any]], chart: str) -> Mapping[str, Any] | None:
    for record in resources:
        inputs = record.get("inputs") or {}
        if record["type"] == HELM_RELEASE and inputs.get("chart") == chart:
            values = inputs.get("values")
            return values if isinstance(values, Mapping) else {}
    return None


def _of_kind(resources: Sequence[Mapping[str, Any]], type_token: str) -> list[Mapping[str, Any]]:
    return [r.get("inputs") or {} for r in resources if r["type"] == type_token]


def _routes_webhook(route: Mapping[str, Any]) -> bool:
    """An HTTPRoute rule that sends /api/webhook to Argo CD's server: no match (every path) or a
    PathPrefix match that /api/webhook falls under."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        if not any(b.get("name") == "argocd-server" for b in rule.get("backendRefs") or []):
            continue
        matches = rule.get("matches") or [{}]
        for match in matches:
            path = match.get("path") or {"type": "PathPrefix", "value": "/"}
            value = str(path.get("value", "/"))
            if path.get("type", "PathPrefix") == "PathPrefix" and "/api/webhook".startswith(
                value.rstrip("/")
            ):
                return True
    return False


def _git_webhook(resources: Sequence[Mapping[str, Any]], values: Mapping[str, Any]) -> tuple[str | None, str]:
    """Which Git host's webhook Argo CD accepts, or None, and why not."""
    secret = (values.get("configs") or {}).get("secret") or {}
    hosts = [
        host for host, key in (("gitlab", "gitlabSecret"), ("github", "githubSecret")) if secret.get(key)
    ]
    if not hosts:
        return None, "no webhook secret in argocd-secret (configs.secret)"
    reference = str(secret[f"{hosts[0]}Secret"])
    if reference.startswith("$") and ":" in reference:
        name = reference[1:].split(":", 1)[0]
        synced = [
            e for e in _of_kind(resources, EXTERNAL_SECRET) if (e.get("metadata") or {}).get("name") == name
        ]
        if not synced:
            return None, f"the webhook secret's Secret {name} is not synced (no ExternalSecret)"
    routes = [
        r for r in _of_kind(resources, HTTPROUTE) if (r.get("metadata") or {}).get("namespace") == "argocd"
    ]
    if not any(_routes_webhook(r) for r in routes):
        return None, "/api/webhook is not routed through the Gateway"
    return hosts[0], "Git webhook"


def _git_host(resources: Sequence[Mapping[str, Any]], webhook_host: str | None) -> str:
    """The GitOps repository's host: the webhook's, else the root Applications' repository URL."""
    if webhook_host is not None:
        return webhook_host
    for app in _of_kind(resources, APPLICATION):
        url = str(((app.get("spec") or {}).get("source") or {}).get("repoURL", ""))
        if url:
            return "github" if "github" in url else "gitlab"
    return "gitlab"


def _merge_request_hop(host: str) -> Hop:
    """write-back branch -> merge request, from the GitOps repository's pipeline file."""
    path = CI_FILES[host]
    name = "write-back branch -> merge request"
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not readable ({type(exc).__name__}: {exc})") from None
    if host == "github":
        on = document.get("on", document.get(True)) or {}
        crons = [str(s.get("cron", "")) for s in on.get("schedule") or []]
        period = _cron_period(crons[0]) if crons else None
        branches = (on.get("push") or {}).get("branches") or []
        pushed = any(str(b).startswith(WRITE_BACK_PREFIX) for b in branches)
    else:
        rules = (document.get("merge-when-green") or {}).get("rules") or []
        pushed = any(
            '"push"' in str(r.get("if", "")) and WRITE_BACK_PREFIX in str(r.get("if", "")) for r in rules
        )
        # The schedule lives in GitLab's settings; the file's header says which period to set.
        found = re.search(r"merge-when-green every (\d+) minutes", text)
        period = int(found[1]) * 60 if found else None
    where = path.relative_to(ROOT)
    if pushed:
        return Hop(name, 0, f"on the branch's push ({where})", fallback_seconds=period)
    if period is None:
        return Hop(name, None, f"no push trigger and no schedule found ({where})")
    return Hop(name, period, f"schedule every {period // 60} min ({where})")


def _cron_period(cron: str) -> int | None:
    """The period of a ``*/N * * * *`` schedule (seconds), else None."""
    match = re.fullmatch(r"\*/(\d+) \* \* \* \*", cron.strip())
    return int(match[1]) * 60 if match else None


def lead_time(resources: Sequence[Mapping[str, Any]]) -> LeadTime | None:
    """The rollout chain's configured waiting, or None for a stack without Argo CD."""
    argocd = _release(resources, "argo-cd")
    if argocd is None:
        return None
    updater = _release(resources, "argocd-image-updater") or {}
    args = [str(a) for a in updater.get("extraArgs") or []]
    interval = (
        seconds_of(args[args.index("--interval") + 1], IMAGE_UPDATER_DEFAULT_INTERVAL)
        if "--interval" in args[:-1]
        else IMAGE_UPDATER_DEFAULT_INTERVAL
    )
    cm = (argocd.get("configs") or {}).get("cm") or {}
    timeout = seconds_of(cm.get("timeout.reconciliation"), ARGOCD_DEFAULT_TIMEOUT)
    jitter = seconds_of(cm.get("timeout.reconciliation.jitter"), ARGOCD_DEFAULT_JITTER)
    # timeout.reconciliation 0 switches the poll off (argocd-cm.yaml): then only events remain.
    poll = timeout + jitter if timeout > 0 else None
    webhook, why = _git_webhook(resources, argocd)
    apps = _of_kind(resources, APPLICATION)
    automated = bool(apps) and all(
        ((a.get("spec") or {}).get("syncPolicy") or {}).get("automated") for a in apps
    )
    hops = (
        Hop("registry -> image updater", interval, f"registry poll every {interval} s (--interval)"),
        _merge_request_hop(_git_host(resources, webhook)),
        Hop("merge request -> merge", 0, "the write-back gate's pipeline: CI time, excluded", excluded=True),
        Hop("merge -> Argo CD", 0, f"{webhook} push webhook", fallback_seconds=poll, after_merge=True)
        if webhook is not None
        else Hop(
            "merge -> Argo CD",
            poll,
            f"poll: timeout.reconciliation {timeout} s + jitter {jitter} s ({why})",
            after_merge=True,
        ),
        Hop("Argo CD -> sync start", 0, "automated sync of every Application", after_merge=True)
        if automated
        else Hop("Argo CD -> sync start", None, "some Applications sync by hand only", after_merge=True),
    )
    return LeadTime(hops)


def render_lead(lead: LeadTime) -> list[str]:
    lines = ["lead time (configured worst-case waiting, CI build time excluded):"]
    for hop in lead.hops:
        wait = "never" if hop.seconds is None else f"{hop.seconds:>4} s"
        fallback = f"; poll behind it: {hop.fallback_seconds} s" if hop.fallback_seconds is not None else ""
        mark = " (excluded)" if hop.excluded else ""
        lines.append(f"  {wait:>7}  {hop.name}: {hop.how}{fallback}{mark}")
    total = "unbounded" if lead.total is None else f"{lead.total} s"
    lines.append(f"total: {total}")
    merge = "unbounded" if lead.merge_to_sync is None else f"{lead.merge_to_sync} s"
    verdict = "PASS" if lead.passes else "FAIL"
    lines.append(
        f"merge to sync start: {merge} (target <= {LEAD_TARGET_SECONDS} s): {verdict} (not enforced)"
    )
    return lines


def analyse(stack: str, resources: Sequence[Mapping[str, Any]], project: str) -> Report:
    """The critical path and the floor of one stack's resources."""
    graph = build_graph(resources, project)
    everything = set(graph.nodes)
    finish = longest(graph, everything)
    end = max(sorted(finish), key=lambda u: finish[u][0]) if finish else ""
    path = _walk(finish, end) if end else []
    necessary = {u for u, n in graph.nodes.items() if n.type in FLOOR_TYPES}
    floor_finish = longest(graph, necessary)
    releases = sorted(u for u in necessary if graph.nodes[u].type == HELM_RELEASE)
    first = min(releases, key=lambda u: floor_finish[u][0], default="")
    floor_path = _walk(floor_finish, first) if first else []
    edges = sum(len(d) for d in graph.waits_for.values())
    return Report(stack, len(graph.nodes), edges, path, floor_path, graph, lead_time(resources))


def load(stack: str, inventory: Path | None) -> tuple[list[dict[str, Any]], str]:
    """The stack's resource records and project name: from ``inventory``, or planned offline."""
    if inventory is not None:
        try:
            document = json.loads(inventory.read_text(encoding="utf-8"))
            resources, project = list(document["resources"]), str(document["project"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{inventory}: not a readable inventory ({type(exc).__name__}: {exc})") from None
        for index, record in enumerate(resources):
            if not isinstance(record, dict) or not _RECORD_KEYS.issubset(record):
                raise InputError(
                    f"{inventory}: resources[{index}] lacks one of {', '.join(sorted(_RECORD_KEYS))}"
                )
        return resources, project
    from offline import runner
    from scw_platform.contract import ProblemsError

    try:
        plan = runner.run(stack)
    except (FileNotFoundError, ProblemsError) as exc:
        raise InputError(str(exc)) from None
    return records(plan), plan.project


def records(plan: runner.Plan) -> list[dict[str, Any]]:
    """A plan's registrations as the inventory records them (``offline.artifacts``)."""
    from offline import artifacts

    return [artifacts.resource_record(r) for r in artifacts.sorted_registrations(plan)]


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}m{seconds % 60:02d}s"


def render_text(report: Report) -> str:
    lines = [f"{report.stack}: {report.resources} resources, {report.edges} waits", "", "critical path:"]
    for hop in report.hops(report.path):
        lines.append(
            f"  {_minutes(hop['cumulative_seconds']):>8}  +{hop['seconds']:>4}s  {hop['type']}  {hop['name']}"
        )
    lines.append(f"total: {report.total} s ({_minutes(report.total)})")
    if report.floor is None:
        lines.append("floor: none (no Helm release behind a cluster in this stack)")
        return "\n".join(lines) + "\n"
    floor_names = " -> ".join(report.graph.nodes[u].name for u in report.floor_path)
    lines.append(f"floor: {report.floor} s ({_minutes(report.floor)}): {floor_names}")
    ratio = report.ratio
    assert ratio is not None
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    lines.append(f"ratio total/floor: {ratio:.2f} (target <= {TARGET_RATIO:.2f}): {verdict} (not enforced)")
    if report.lead is not None:
        lines += ["", *render_lead(report.lead)]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(report: Report) -> str:
    """The graph in Graphviz's language: program components as nested clusters, the critical
    path's nodes and edges red and bold (SVG class ``critical``)."""
    graph = report.graph
    critical = set(report.path)
    critical_edges = set(zip(report.path, report.path[1:], strict=False))
    children: dict[str, list[str]] = {}
    for urn, node in sorted(graph.nodes.items()):
        owner = node.parent
        while owner and owner not in graph.components and owner in graph.nodes:
            owner = graph.nodes[owner].parent
        children.setdefault(owner if owner in graph.components else "", []).append(urn)
    sub: dict[str, list[str]] = {}
    for urn, (_, _, parent) in sorted(graph.components.items()):
        sub.setdefault(parent if parent in graph.components else "", []).append(urn)

    lines = [
        "digraph critical_path {",
        "  rankdir=LR;",
        '  node [shape=box, fontsize=10, fontname="Helvetica"];',
    ]

    def emit(owner: str, indent: str) -> None:
        for urn in children.get(owner, []):
            node = graph.nodes[urn]
            style = ', color=red, penwidth=3, fontcolor=red, class="critical"' if urn in critical else ""
            label = f"{node.name}\\n{node.type.rsplit(':', 1)[-1]} {node.seconds}s"
            lines.append(f"{indent}{_quote(urn)} [label={_quote(label)}{style}];")
        for index, component in enumerate(sub.get(owner, [])):
            type_token, name, _ = graph.components[component]
            lines.append(f"{indent}subgraph cluster_{len(lines)}_{index} {{")
            lines.append(f"{indent}  label={_quote(f'{name} ({type_token})')}; style=rounded; color=grey;")
            emit(component, indent + "  ")
            lines.append(f"{indent}}}")

    emit("", "  ")
    for urn in sorted(graph.waits_for):
        for dep in sorted(graph.waits_for[urn]):
            style = ' [color=red, penwidth=3, class="critical"]' if (dep, urn) in critical_edges else ""
            lines.append(f"  {_quote(dep)} -> {_quote(urn)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_svg(report: Report, out: Path) -> None:
    """Render :func:`to_dot` with Graphviz's ``dot`` (Debian package ``graphviz``)."""
    dot = shutil.which("dot")
    if dot is None:
        raise InputError("--svg needs Graphviz's dot: apt-get install graphviz (Debian package 'graphviz')")
    done = subprocess.run(
        [dot, "-Tsvg", "-o", str(out)], input=to_dot(report), text=True, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise InputError(f"dot failed writing {out}: {done.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stack", help="a committed stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--svg", type=Path, metavar="FILE", help="also draw the graph into FILE (Graphviz)")
    parser.add_argument(
        "--inventory", type=Path, metavar="PATH", help="read this inventory.json, no planning"
    )
    args = parser.parse_args(argv)
    try:
        resources, project = load(args.stack, args.inventory)
        report = analyse(args.stack, resources, project)
        if args.svg is not None:
            write_svg(report, args.svg)
    except InputError as exc:
        print(f"critical-path: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(report.as_json(), indent=2) if args.json else render_text(report),
        end="\n" if args.json else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The critical-path report (``scripts/critical_path.py``, ``make critical-path``) on the committed
stacks: the path is a real chain of waits, its figures add up, the floor is the necessary chain,
the JSON keeps its schema, and Graphviz draws the graph with the path highlighted."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from offline import artifacts, runner
from scripts import critical_path as cp

STACKS = runner.stack_names()
CLUSTER = "scaleway:kubernetes/cluster:Cluster"
POOL = "scaleway:kubernetes/pool:Pool"
GATEWAY = "scaleway:network/publicGateway:PublicGateway"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def reports(committed_plans: dict[str, runner.Plan]) -> dict[str, cp.Report]:
    return {s: cp.analyse(s, cp.records(p), p.project) for s, p in committed_plans.items()}


@pytest.mark.parametrize("stack", STACKS)
def test_the_path_is_a_chain_of_waits(reports: dict[str, cp.Report], stack: str) -> None:
    """Each hop waits for the one before it; the first waits for nothing; nothing ends later."""
    report = reports[stack]
    waits = report.graph.waits_for
    assert report.path, "no critical path"
    assert not waits[report.path[0]], "the first hop waits for something: the path is cut short"
    for before, after in zip(report.path, report.path[1:], strict=False):
        assert before in waits[after], f"{after} does not wait for {before}"
    finish = cp.longest(report.graph, set(report.graph.nodes))
    assert report.total == max(f for f, _ in finish.values())


@pytest.mark.parametrize("stack", STACKS)
def test_every_committed_stack_builds_within_a_tenth_of_its_floor(
    reports: dict[str, cp.Report], stack: str
) -> None:
    """Issue 19's target, on the dependency graph (estimated durations, not a timing): a wait
    added that only ordering needs shows up here as a longer chain."""
    report = reports[stack]
    assert report.floor is not None
    assert report.total / report.floor <= cp.TARGET_RATIO, cp.render_text(report)


@pytest.mark.parametrize("stack", STACKS)
def test_the_total_is_the_sum_of_its_hops(reports: dict[str, cp.Report], stack: str) -> None:
    report = reports[stack]
    hops = report.hops(report.path)
    assert report.total == sum(h["seconds"] for h in hops) == hops[-1]["cumulative_seconds"]
    assert all(h["seconds"] == cp.duration(h["type"]).seconds for h in hops)


@pytest.mark.parametrize("stack", STACKS)
def test_the_floor_is_the_necessary_chain_and_no_longer_than_the_total(
    reports: dict[str, cp.Report], stack: str
) -> None:
    """network -> gateway -> cluster -> pool -> provider -> first Helm release, a chain of the
    graph's own edges, never longer than the critical path."""
    report = reports[stack]
    assert report.floor is not None
    assert report.floor <= report.total
    types = [report.graph.nodes[u].type for u in report.floor_path]
    assert set(types) <= cp.FLOOR_TYPES
    assert types[-1] == cp.HELM_RELEASE
    assert types.index(GATEWAY) < types.index(CLUSTER) < types.index(POOL)
    for before, after in zip(report.floor_path, report.floor_path[1:], strict=False):
        assert before in report.graph.waits_for[after], f"{after} does not wait for {before}"


def test_prod_waits_for_the_cluster_then_a_pool_then_a_release(reports: dict[str, cp.Report]) -> None:
    path_types = [reports["prod"].graph.nodes[u].type for u in reports["prod"].path]
    assert CLUSTER in path_types and POOL in path_types
    assert cp.HELM_RELEASE in path_types[path_types.index(POOL) :]


@pytest.mark.parametrize("stack", STACKS)
def test_kubernetes_resources_wait_for_the_provider_and_it_for_the_pools(
    reports: dict[str, cp.Report], stack: str
) -> None:
    """The provider edges: without them a Helm release would start at second 0."""
    graph = reports[stack].graph
    providers = {u for u, n in graph.nodes.items() if n.type == "pulumi:providers:kubernetes"}
    pools = {u for u, n in graph.nodes.items() if n.type == POOL}
    assert providers and pools
    for provider in providers:
        assert pools <= graph.waits_for[provider]
    for urn, node in graph.nodes.items():
        if node.type == cp.HELM_RELEASE:
            assert graph.waits_for[urn] & providers, f"{node.name} does not wait for its provider"


def test_the_longest_branch_wins_and_components_take_no_time() -> None:
    """A hand-made inventory: a slow and a fast branch into one release; a component groups."""

    def res(name: str, type_: str, deps: tuple[str, ...] = (), custom: bool = True) -> dict[str, object]:
        return {
            "urn": name,
            "type": type_,
            "name": name,
            "custom": custom,
            "parent": "comp",
            "provider": "",
            "dependencies": list(deps),
        }

    inventory = [
        res("comp", "platform:x:Component", custom=False),
        res("db", "scaleway:databases/instance:Instance"),
        res("ns", "kubernetes:core/v1:Namespace"),
        res("app", cp.HELM_RELEASE, ("db", "ns")),
    ]
    report = cp.analyse("t", inventory, "platform")
    assert report.path == ["db", "app"]
    assert report.total == 600 + 120
    assert "comp" not in report.graph.nodes and "comp" in report.graph.components
    assert report.floor == 120  # no network, gateway or cluster: only the release is necessary


def test_an_inventory_gives_the_same_report_as_the_plan(
    committed_plans: dict[str, runner.Plan], reports: dict[str, cp.Report], tmp_path: Path
) -> None:
    written = artifacts.write(committed_plans["prod"], tmp_path)
    resources, project = cp.load("prod", written.inventory)
    from_file = cp.analyse("prod", resources, project)
    assert from_file.path == reports["prod"].path
    assert (from_file.total, from_file.floor) == (reports["prod"].total, reports["prod"].floor)


def test_the_json_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, committed_plans: dict[str, runner.Plan]
) -> None:
    inventory = artifacts.write(committed_plans["dev"], tmp_path).inventory
    assert cp.main(["dev", "--json", "--inventory", str(inventory)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {
        "stack",
        "resources",
        "edges",
        "total_seconds",
        "floor_seconds",
        "ratio",
        "target_ratio",
        "pass",
        "path",
        "floor_path",
        "lead_time",
    }
    # dev runs no Argo CD: no rollout chain of its own (tooling's figure covers it).
    assert data["lead_time"] is None
    assert data["stack"] == "dev" and data["target_ratio"] == cp.TARGET_RATIO
    assert isinstance(data["total_seconds"], int) and isinstance(data["floor_seconds"], int)
    assert data["ratio"] == round(data["total_seconds"] / data["floor_seconds"], 3)
    assert data["pass"] is (data["ratio"] <= cp.TARGET_RATIO)
    hop_keys = {"urn", "type", "name", "seconds", "cumulative_seconds", "source"}
    for key in ("path", "floor_path"):
        assert data[key] and all(set(h) == hop_keys for h in data[key])
        assert all(isinstance(h["source"], str) and h["source"] for h in data[key])
    assert data["path"][-1]["cumulative_seconds"] == data["total_seconds"]


def test_the_text_report_says_total_floor_and_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, committed_plans: dict[str, runner.Plan]
) -> None:
    inventory = artifacts.write(committed_plans["prod"], tmp_path).inventory
    assert cp.main(["prod", "--inventory", str(inventory)]) == 0
    out = capsys.readouterr().out
    assert "critical path:" in out and "total: " in out and "floor: " in out
    assert "PASS" in out or "FAIL" in out
    assert "prod-cluster" in out


def test_an_unknown_stack_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cp.main(["no-such-stack"]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.no-such-stack.yaml" in err and "Traceback" not in err


def test_no_dot_exits_2_naming_the_debian_package(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    committed_plans: dict[str, runner.Plan],
) -> None:
    inventory = artifacts.write(committed_plans["dev"], tmp_path).inventory
    monkeypatch.setattr(cp.shutil, "which", lambda _: None)
    assert cp.main(["dev", "--inventory", str(inventory), "--svg", str(tmp_path / "g.svg")]) == 2
    assert "graphviz" in capsys.readouterr().err
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (Debian package graphviz)"
)
def test_the_svg_highlights_the_critical_path(reports: dict[str, cp.Report], tmp_path: Path) -> None:
    """Graphviz renders prod; the nodes and edges classed ``critical`` are exactly the path's,
    and every program component is a cluster."""
    report = reports["prod"]
    out = tmp_path / "prod.svg"
    cp.write_svg(report, out)
    root = ET.parse(out).getroot()
    groups = list(root.iter(f"{SVG}g"))

    def titles(kind: str, critical: bool) -> set[str]:
        return {
            (g.findtext(f"{SVG}title") or "")
            for g in groups
            if kind in (g.get("class") or "").split()
            and ("critical" in (g.get("class") or "").split()) is critical
        }

    assert titles("node", True) == set(report.path)
    assert len(titles("edge", True)) == len(report.path) - 1
    assert len(titles("node", False)) == len(report.graph.nodes) - len(report.path)
    assert len(titles("cluster", False)) == len(report.graph.components)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not a readable inventory"),
        ('{"project": "platform", "resources": [{"urn": "a"}]}', "resources[0] lacks one of"),
        (
            '{"project": "platform", "resources": ['
            '{"urn": "a", "type": "t", "name": "a", "custom": true, "dependencies": ["b"]},'
            '{"urn": "b", "type": "t", "name": "b", "custom": true, "dependencies": ["a"]}]}',
            "cycle among 2 resources",
        ),
    ],
)
def test_a_bad_inventory_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, document: str, message: str
) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(document)
    assert cp.main(["prod", "--inventory", str(inventory)]) == 2
    assert message in capsys.readouterr().err


# --- Lead time: the rollout chain's configured waiting (issue 19, item 2) -------------------------


def test_tooling_lead_time_from_merge_to_sync_is_event_driven(reports: dict[str, cp.Report]) -> None:
    """The committed tooling stack: GitLab's push webhook into Argo CD, merge-when-green on the
    write-back branch's push, automated sync; only the registry hop polls."""
    lead = reports["tooling"].lead
    assert lead is not None
    hops = {h.name: h for h in lead.hops}
    assert list(hops) == [
        "registry -> image updater",
        "write-back branch -> merge request",
        "merge request -> merge",
        "merge -> Argo CD",
        "Argo CD -> sync start",
    ]
    assert hops["registry -> image updater"].seconds == 120
    assert hops["write-back branch -> merge request"].seconds == 0
    assert hops["write-back branch -> merge request"].fallback_seconds == 600  # the schedule behind it
    assert hops["merge request -> merge"].excluded
    assert hops["merge -> Argo CD"].seconds == 0 and "gitlab push webhook" in hops["merge -> Argo CD"].how
    assert hops["merge -> Argo CD"].fallback_seconds == 180 + 60  # timeout + jitter, if a delivery is lost
    assert lead.merge_to_sync == 0 <= cp.LEAD_TARGET_SECONDS and lead.passes
    assert lead.total == 120


def test_workload_stacks_have_no_lead_time_of_their_own(reports: dict[str, cp.Report]) -> None:
    assert reports["prod"].lead is None and reports["dev"].lead is None


def test_the_text_report_prints_the_lead_time_hop_by_hop(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, committed_plans: dict[str, runner.Plan]
) -> None:
    inventory = artifacts.write(committed_plans["tooling"], tmp_path).inventory
    assert cp.main(["tooling", "--inventory", str(inventory)]) == 0
    out = capsys.readouterr().out
    assert "lead time (configured worst-case waiting, CI build time excluded):" in out
    assert "merge to sync start: 0 s (target <= 120 s): PASS" in out
    assert "registry -> image updater: registry poll every 120 s" in out


def _argocd(cm: dict[str, str], secret: dict[str, str] | None = None) -> dict[str, object]:
    configs: dict[str, object] = {"cm": cm, **({"secret": secret} if secret else {})}
    return {
        "urn": "argocd",
        "type": cp.HELM_RELEASE,
        "name": "argocd",
        "custom": True,
        "inputs": {"chart": "argo-cd", "values": {"configs": configs}},
    }


def _app(automated: bool, repo: str = "https://gitlab.com/acme/gitops.git") -> dict[str, object]:
    policy = {"automated": {"prune": True}} if automated else {}
    return {
        "urn": f"app-{automated}",
        "type": cp.APPLICATION,
        "name": "app",
        "custom": True,
        "inputs": {"spec": {"source": {"repoURL": repo}, "syncPolicy": policy}},
    }


def _route(rules: list[dict[str, object]]) -> dict[str, object]:
    return {
        "urn": "route",
        "type": cp.HTTPROUTE,
        "name": "route",
        "custom": True,
        "inputs": {"metadata": {"name": "r", "namespace": "argocd"}, "spec": {"rules": rules}},
    }


_SYNCED = {
    "urn": "es",
    "type": cp.EXTERNAL_SECRET,
    "name": "es",
    "custom": True,
    "inputs": {"metadata": {"name": "argocd-webhook", "namespace": "argocd"}},
}
_BACKEND = [{"name": "argocd-server", "port": 80}]


@pytest.mark.parametrize(
    ("timeout", "merge_to_sync", "passes"),
    [("180s", 240, False), ("60s", 120, True), ("2m", 180, False)],
)
def test_without_a_webhook_the_poll_is_the_wait(timeout: str, merge_to_sync: int, passes: bool) -> None:
    lead = cp.lead_time(
        [_argocd({"timeout.reconciliation": timeout, "timeout.reconciliation.jitter": "60s"}), _app(True)]
    )
    assert lead is not None
    assert lead.merge_to_sync == merge_to_sync and lead.passes is passes
    assert "poll: timeout.reconciliation" in lead.hops[3].how


def test_argocds_defaults_count_when_argocd_cm_leaves_the_keys_unset() -> None:
    lead = cp.lead_time([_argocd({}), _app(True)])
    assert lead is not None and lead.merge_to_sync == cp.ARGOCD_DEFAULT_TIMEOUT + cp.ARGOCD_DEFAULT_JITTER
    # And the image updater's default interval without a release or flag.
    assert lead.hops[0].seconds == cp.IMAGE_UPDATER_DEFAULT_INTERVAL


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ([_route([{"backendRefs": _BACKEND}])], "is not synced"),
        ([_SYNCED], "/api/webhook is not routed"),
        (
            [
                _SYNCED,
                _route(
                    [{"matches": [{"path": {"type": "PathPrefix", "value": "/ui"}}], "backendRefs": _BACKEND}]
                ),
            ],
            "/api/webhook is not routed",
        ),
    ],
    ids=["secret-not-synced", "no-route", "route-elsewhere"],
)
def test_a_webhook_counts_only_when_its_secret_syncs_and_its_path_is_routed(
    records: list[dict[str, object]], why: str
) -> None:
    argocd = _argocd({"timeout.reconciliation": "60s"}, {"gitlabSecret": "$argocd-webhook:secret"})
    lead = cp.lead_time([argocd, _app(True), *records])
    assert lead is not None and lead.hops[3].seconds == 60 + 60
    assert why in lead.hops[3].how


def test_a_webhook_path_only_route_counts() -> None:
    route = _route(
        [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/webhook"}}], "backendRefs": _BACKEND}]
    )
    argocd = _argocd({}, {"githubSecret": "$argocd-webhook:secret"})
    lead = cp.lead_time([argocd, _app(True, "https://github.com/acme/gitops.git"), _SYNCED, route])
    assert lead is not None and lead.merge_to_sync == 0 and lead.passes
    # GitHub's merge-when-green workflow runs on its */10 schedule only (never a pushed branch's
    # copy of itself): that hop waits up to 10 minutes; merge -> sync is still the webhook's 0 s.
    branch = lead.hops[1]
    assert branch.seconds == 600 and "merge-when-green.yml" in branch.how


def test_manual_sync_makes_the_wait_unbounded() -> None:
    lead = cp.lead_time([_argocd({}), _app(True), {**_app(False), "urn": "manual"}])
    assert lead is not None and lead.merge_to_sync is None and not lead.passes
    assert "merge to sync start: unbounded" in "\n".join(cp.render_lead(lead))


def test_a_pipeline_without_a_push_trigger_waits_for_its_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workflow = tmp_path / "merge-when-green.yml"
    workflow.write_text('on:\n  schedule:\n    - cron: "*/15 * * * *"\n', encoding="utf-8")
    monkeypatch.setitem(cp.CI_FILES, "github", workflow)
    monkeypatch.setattr(cp, "ROOT", tmp_path)
    hop = cp._merge_request_hop("github")
    assert hop.seconds == 15 * 60 and hop.fallback_seconds is None and "schedule every 15 min" in hop.how


@pytest.mark.parametrize(
    ("text", "seconds"), [("180s", 180), ("2m", 120), ("1m30s", 90), ("45", 45), (None, 7)]
)
def test_durations(text: str | None, seconds: int) -> None:
    assert cp.seconds_of(text, 7) == seconds


@pytest.mark.parametrize("text", ["", "3h", "soon", "1.5m"])
def test_a_bad_duration_is_bad_input(text: str) -> None:
    with pytest.raises(cp.InputError, match="not a duration"):
        cp.seconds_of(text, 7)

"""The documentation holds together: every relative link in README.md and docs/ resolves (the file
exists and, with a #anchor, a heading of that file has that anchor), every alert rule has a runbook
annotation that resolves the same way, the README stays short and docs/README.md indexes every page.
No network: links with a scheme (https:, mailto:) are not followed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from offline import runner


def _root() -> Path:
    """The repository root: the nearest folder above this file holding Pulumi.yaml."""
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "Pulumi.yaml").is_file())


ROOT = _root()
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
ALERTS = ROOT / "ops" / "alerts"
#: Generated from the settings models (scripts/config_reference.py), not written by hand: the index
#: need not link it (README and the pages do); its links are checked like any other page's.
GENERATED = DOCS / "configuration.md"
README_MAX_LINES = 150

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
#: [text](target) and ![alt](target); the text may hold brackets one level deep.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (link targets, tags and code marks dropped),
    lowercased, punctuation dropped except '-' and '_', each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose_lines(path):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in a Markdown file, code blocks and code spans aside."""
    found = []
    for number, line in _prose_lines(path):
        prose = _INLINE_CODE.sub("", line)
        for match in _LINK.finditer(prose):
            found.append((number, match.group(1).strip("<>")))
        reference = _REFERENCE.match(prose)
        if reference:
            found.append((number, reference.group(1).strip("<>")))
    return found


def resolve(target: str, base: Path, source: Path) -> str | None:
    """None if `target` (a path relative to `base`, with an optional #anchor) resolves, else why not.
    An empty path is `source` itself."""
    page, _, anchor = target.partition("#")
    file = (base / unquote(page)).resolve() if page else source
    if not file.exists():
        return f"{page}: no such file"
    if anchor:
        if file.suffix != ".md" or not file.is_file():
            return f"{target}: an anchor into something that is not a Markdown file"
        if unquote(anchor) not in anchors(file):
            return f"{target}: no heading in {_shown(file)} has the anchor #{anchor}"
    return None


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _local(target: str) -> bool:
    return not _SCHEME.match(target)


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = [
        f"{page.relative_to(ROOT)}:{number}: {why}"
        for number, target in links(page)
        if _local(target) and (why := resolve(target, page.parent, page)) is not None
    ]
    assert not problems, "\n".join(problems)


def _rule_files() -> list[Path]:
    return sorted(ALERTS.glob("*.yaml"))


def _runbooks(node: Any) -> list[str]:
    """Every value of a `runbook` key anywhere in a YAML document."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "runbook" and isinstance(v, str)]
        return found + [r for v in node.values() for r in _runbooks(v)]
    if isinstance(node, list):
        return [r for v in node for r in _runbooks(v)]
    return []


def test_every_alert_rule_has_a_runbook_that_resolves() -> None:
    rule_files = _rule_files()
    assert rule_files, f"no alert rule files in {ALERTS.relative_to(ROOT)}"
    alerts = 0
    problems = []
    for path in rule_files:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" not in rule:
                    continue  # a recording rule
                alerts += 1
                runbook = (rule.get("annotations") or {}).get("runbook")
                where = f"{path.relative_to(ROOT)}: {rule['alert']}"
                if not runbook:
                    problems.append(f"{where}: no runbook annotation")
                elif (why := resolve(runbook, ROOT, README)) is not None:
                    problems.append(f"{where}: {why}")
    assert alerts, "the rule files hold no alert"
    assert not problems, "\n".join(problems)


def test_runbooks_the_promtool_tests_expect_resolve_too() -> None:
    """The promtool unit tests repeat each alert's annotations: their runbooks must resolve too."""
    problems = [
        f"{path.relative_to(ROOT)}: {why}"
        for path in sorted((ALERTS / "tests").glob("*.yaml"))
        for runbook in _runbooks(yaml.safe_load(path.read_text(encoding="utf-8")))
        if (why := resolve(runbook, ROOT, README)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_readme_is_short() -> None:
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, (
        f"README.md has {count} lines (at most {README_MAX_LINES}): move the detail into docs/"
    )


def test_the_docs_index_links_every_page() -> None:
    """docs/README.md links every page of docs/ (runbooks included) but itself and the generated
    configuration reference."""
    linked = {
        (INDEX.parent / unquote(target.partition("#")[0])).resolve()
        for _, target in links(INDEX)
        if _local(target) and target.partition("#")[0]
    }
    pages = [p for p in sorted(DOCS.rglob("*.md")) if p not in (INDEX, GENERATED)]
    assert pages, "docs/ holds no page"
    missing = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not missing, f"not linked from docs/README.md: {missing}"


# The checker itself: it must see what it is meant to see.


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("AppEndpointDown", "appendpointdown"),
        ("Policy pack (`policy/`)", "policy-pack-policy"),
        ("The image updater's branches", "the-image-updaters-branches"),
        (
            "The front door: reserved IP, Traefik + Gateway API, Let's Encrypt, DNS",
            "the-front-door-reserved-ip-traefik--gateway-api-lets-encrypt-dns",
        ),
        (
            "Real deployments (Pulumi CLI and a Scaleway account)",
            "real-deployments-pulumi-cli-and-a-scaleway-account",
        ),
        ("snake_case and-dashes", "snake_case-and-dashes"),
    ],
)
def test_slug_follows_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checker_catches_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#other) [dup](other.md#twice-1) [self](#page) [web](https://example.com/x#y)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [bad self](#nowhere)\n"
        "`[code](missing.md)`\n\n```\n[fenced](missing.md)\n# not a heading\n```\n"
    )
    broken = [t for _, t in links(page) if _local(t) and resolve(t, tmp_path, page) is not None]
    assert broken == ["missing.md", "other.md#nowhere", "#nowhere"]
    assert "not-a-heading" not in anchors(page)


def _loaded_alerts(plan: runner.Plan) -> list[tuple[str, dict[str, Any]]]:
    """Every alert rule a stack ships (its rules ConfigMap: static and generated groups alike)."""
    found = []
    for reg in plan.by_type("kubernetes:core/v1:ConfigMap"):
        if reg.inputs["metadata"]["name"] != "platform-rules":
            continue
        for text in reg.inputs["data"].values():
            for group in yaml.safe_load(text)["groups"]:
                found += [(group["name"], rule) for rule in group["rules"] if "alert" in rule]
    return found


@pytest.mark.parametrize("stack", ["prod", "tooling"])
def test_every_alert_a_stack_loads_has_a_runbook_that_resolves(
    committed_plans: dict[str, runner.Plan], stack: str
) -> None:
    """Generated rules (per probe target, per SLO) included, not only the rule file's."""
    loaded = _loaded_alerts(committed_plans[stack])
    assert loaded, f"{stack} loads no alert"
    problems = []
    for group, rule in loaded:
        runbook = (rule.get("annotations") or {}).get("runbook")
        where = f"{stack}: {group}: {rule['alert']}"
        if not runbook:
            problems.append(f"{where}: no runbook annotation")
        elif (why := resolve(runbook, ROOT, README)) is not None:
            problems.append(f"{where}: {why}")
    assert not problems, "\n".join(problems)
    if stack == "prod":
        # The generated absence rules are among them, one per probed URL.
        absent = [rule for group, rule in loaded if group == "platform-probe-targets"]
        assert {rule["expr"] for rule in absent} == {
            'absent(probe_success{instance="https://www.example.com/"})',
            'absent(probe_success{instance="https://newsletter.example.com/"})',
            # Tooling's public name, probed from production (cross-cluster probes).
            'absent(probe_success{instance="https://argocd.tooling.example.com/"})',
        }


def test_every_policy_rule_is_in_the_validation_table() -> None:
    from policy.rules import RULES

    table = (DOCS / "validation.md").read_text(encoding="utf-8")
    missing = [rule.name for rule in RULES if f"| `{rule.name}` |" not in table]
    assert not missing, f"docs/validation.md does not list: {', '.join(missing)}"

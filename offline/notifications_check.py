"""The offline check of Argo CD's deployment notifications, as the plan records them.

It reads what the program really declared: the ``notifications`` block of the Argo CD release's
values and the spec of the ``argocd-notifications-secret`` ExternalSecret, from the plan's
recorded inputs (the artifacts mask the release's values, which carry the OIDC client secret; the
plan in memory still holds them, secret markers unwrapped here and never printed). On those it
runs :func:`notification_problems`: every trigger sends a defined template, every subscription
names defined triggers and configured services, every ``$key`` is one that ExternalSecret provides,
and every template parses with Go's own ``text/template`` and Sprig (``offline/gotemplate_check``,
built here against Debian's ``golang-go`` and ``golang-github-masterminds-sprig-dev``, nothing
downloaded). Without Go the template parse is skipped and says so; the structural checks still run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scw_platform.notifications import TemplateParser, notification_problems

GO_TOOL = Path(__file__).resolve().parent / "gotemplate_check"
#: Where Debian's Go library packages put their sources (GOPATH layout).
GOCODE = Path("/usr/share/gocode")
SPRIG = GOCODE / "src" / "github.com" / "Masterminds" / "sprig"


def go_unavailable() -> str | None:
    """Why the Go template parse cannot run here, or None."""
    if shutil.which("go") is None:
        return "go not found (Debian: apt-get install golang-go golang-github-masterminds-sprig-dev)"
    if not SPRIG.is_dir():
        return f"Sprig's source not found at {SPRIG} (Debian: golang-github-masterminds-sprig-dev)"
    return None


def build_checker(work: Path) -> Path:
    """Build the Go checker in ``work`` (GOPATH mode against Debian's sources, nothing downloaded)
    and return the binary; see :func:`go_unavailable` first."""
    go = shutil.which("go")
    assert go is not None
    binary = work / "gotemplate_check"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{work / 'gopath'}{os.pathsep}{GOCODE}",
        "GOCACHE": str(work / "cache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=GO_TOOL,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    return binary


#: Per template id: its ``parse`` error, and with variables its ``exec`` error and ``output``.
CheckerResults = dict[str, dict[str, str]]


def run_checker(
    binary: Path, templates: Mapping[str, str], variables: Mapping[str, Any] | None = None
) -> CheckerResults:
    """Parse (and, with ``variables``, render) ``templates`` with the built checker."""
    run = subprocess.run(
        [str(binary)],
        input=json.dumps({"templates": dict(templates), "vars": variables}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    results: CheckerResults = json.loads(run.stdout)
    return results


def build_parser(work: Path) -> TemplateParser:
    """Build the Go checker in ``work`` and return a parser calling it."""
    binary = build_checker(work)

    def parse(texts: Mapping[str, str]) -> dict[str, str]:
        return {where: r["parse"] for where, r in run_checker(binary, texts).items() if r["parse"]}

    return parse


def check(values: Mapping[str, Any], secret_spec: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """(problems, why the Go parse was skipped or None) for the recorded ``notifications`` values
    and the recorded ExternalSecret spec."""
    skipped = go_unavailable()
    if skipped is not None:
        return notification_problems(values, secret_spec), skipped
    with tempfile.TemporaryDirectory(prefix="gotemplate-") as work:
        try:
            parser = build_parser(Path(work))
        except (subprocess.SubprocessError, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            return [f"offline/gotemplate_check does not build: {stderr.decode(errors='replace')[:500]}"], None
        return notification_problems(values, secret_spec, parse_templates=parser), None

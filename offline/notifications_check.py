"""The offline check of Argo CD's deployment notifications, as the program renders them for a stack.

The chart's values reach the plan's artifacts masked (Argo CD's release carries the OIDC client
secret, so Pulumi keeps the whole values secret), so this check renders the notification config
from the stack's validated settings with the very functions the program uses
(``scw_platform.notifications``) and runs :func:`notification_problems` on it: every trigger sends
a defined template, every subscription names defined triggers and configured services, every
``$key`` is one the ExternalSecret provides, and every template parses with Go's own
``text/template`` and Sprig (``offline/gotemplate_check``, built here against Debian's
``golang-go`` and ``golang-github-masterminds-sprig-dev``, nothing downloaded). Without Go the
template parse is skipped and says so; the structural checks still run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from scw_platform.notifications import (
    NotificationSettings,
    TemplateParser,
    notification_problems,
    notifications_secret_spec,
    notifications_values,
    vault_references,
)

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


def build_parser(work: Path) -> TemplateParser:
    """Build the Go checker in ``work`` (GOPATH mode, offline) and return a parser calling it."""
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

    def parse(texts: Mapping[str, str]) -> dict[str, str]:
        run = subprocess.run(
            [str(binary)],
            input=json.dumps({"templates": dict(texts), "vars": None}),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        results = json.loads(run.stdout)
        return {where: r["parse"] for where, r in results.items() if r["parse"]}

    return parse


def check(settings: NotificationSettings, *, store: str) -> tuple[list[str], str | None]:
    """(problems, why the Go parse was skipped or None) for one stack's notification settings."""
    values = notifications_values(settings)
    spec = notifications_secret_spec(settings, store=store, remote_keys=vault_references(settings))
    skipped = go_unavailable()
    if skipped is not None:
        return notification_problems(values, spec), skipped
    with tempfile.TemporaryDirectory(prefix="gotemplate-") as work:
        try:
            parser = build_parser(Path(work))
        except (subprocess.SubprocessError, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            return [f"offline/gotemplate_check does not build: {stderr.decode(errors='replace')[:500]}"], None
        return notification_problems(values, spec, parse_templates=parser), None

"""Scale benchmark: plan the production stack with 1, 10, 100 and 300 generated apps.

    make bench-apps                                   (or: .venv/bin/python scripts/bench_apps.py)
    .venv/bin/python scripts/bench_apps.py 1 10 50    # other sizes

Each size runs the real program under the offline mocks (``offline.runner``) in a fresh
interpreter, so one size does not warm another's imports, with ``Pulumi.prod.yaml``'s config
where ``platform:apps`` is replaced by N generated apps, each with the full envelope: its own
database (added to the committed ones), three declared keys and one extra egress rule. The
tooling stack prod references comes from the plan cache (``build/plan-cache``, filled by an
untimed first run), as on a developer's second ``make plan``; figures are ``runner.run`` alone
(the SDK modules it loads included, the interpreter's start and the program's imports not).

Prints, per size: wall and CPU seconds, resources registered, and the cost of one more app:
resources and seconds per app from the previous size (flat when nothing grows faster than the
number of apps), then whether 100 apps plan within 5 s (the target on a quiet 2-core machine).
Figures only: nothing here fails a build. The CPU column tells a busy machine from a slow plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = (1, 10, 100, 300)
TARGET_S = 5.0
TARGET_APPS = 100


def generated_config(count: int) -> dict[str, Any]:
    """Pulumi.prod.yaml's config with ``count`` generated apps (and their databases)."""
    from offline import runner

    config = runner.read_stack_config("prod")
    names = [f"app{i:03d}" for i in range(1, count + 1)]
    database = dict(config["platform:database"])
    # Kept: other settings (backups, restore checks) may name the committed databases.
    database["databases"] = [*database.get("databases", []), *({"name": n, "user": n} for n in names)]
    # Each generated app pools one connection per replica, four with a rolling update's surge, and
    # each database costs the platform two more (program/rules.py, connection_budget): the limit
    # grows with the count so that rule still holds at 300 apps.
    needed = 6 * count + 2 * len(database["databases"]) + 100
    database["maxConnections"] = max(int(database.get("maxConnections", 100)), needed)
    config["platform:database"] = database
    config["platform:apps"] = [
        {
            "name": name,
            "hostname": f"{name}.example.com",
            "port": 8080,
            "image": f"rg.fr-par.scw.cloud/acme-platform/{name}",
            "gitopsPath": f"apps/{name}",
            "database": name,
            "requiredKeys": ["SESSION_SECRET", "MAILER_DSN", "PAYMENT_API_KEY"],
            "replicas": 2,
            "maxConnections": 1,
            "egress": [{"cidr": "203.0.113.10/32", "ports": [443], "description": "payment provider"}],
        }
        for name in names
    ]
    gitops = dict(config["platform:gitops"])
    # An environment fed by promotion has no image updater entries (the config rules refuse them).
    if "promotedFrom" not in gitops:
        gitops["imageUpdates"] = [{"app": name, "strategy": "semver"} for name in names]
    config["platform:gitops"] = gitops
    return config


def plan_once(count: int) -> dict[str, Any]:
    """Plan prod with ``count`` apps in this interpreter; returns the figures."""
    from offline import runner

    config = generated_config(count)
    start, cpu_start = time.perf_counter(), time.process_time()
    plan = runner.run("prod", config=config)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    gateways = [r for r in plan.registrations if r.type == "kubernetes:gateway.networking.k8s.io/v1:Gateway"]
    listeners = max((len(g.inputs["spec"]["listeners"]) for g in gateways), default=0)
    apps = [r for r in plan.registrations if r.type == "platform:apps:App"]
    return {
        "apps": count,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "resources": len(plan.registrations),
        "app_components": len(apps),
        "gateways": len(gateways),
        "max_listeners": listeners,
    }


def plan_in_subprocess(count: int) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--one", str(count)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"planning {count} app(s) failed:\n" + "\n".join(tail))
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(plan_once(int(argv[1]))))
        return 0
    sizes = tuple(int(a) for a in argv) or SIZES
    plan_in_subprocess(1)  # untimed: fills the plan cache with tooling's plan if it is stale
    rows = [plan_in_subprocess(n) for n in sizes]
    widths = (5, 8, 8, 9, 13, 11, 8, 13)
    header = (
        "apps",
        "wall s",
        "cpu s",
        "resources",
        "per app (res)",
        "per app (s)",
        "gateways",
        "max listeners",
    )
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    previous: dict[str, Any] | None = None
    for row in rows:
        extra = row["apps"] - previous["apps"] if previous else 0
        per_res = (row["resources"] - previous["resources"]) / extra if previous and extra else float("nan")
        per_s = (row["seconds"] - previous["seconds"]) / extra if previous and extra else float("nan")
        print(
            f"{row['apps']:>5}  {row['seconds']:>8.2f}  {row['cpu_seconds']:>8.2f}  {row['resources']:>9}  "
            f"{per_res:>13.1f}  {per_s:>11.4f}  {row['gateways']:>8}  {row['max_listeners']:>13}"
        )
        previous = row
    print("per app: the cost of each app added since the previous size")
    target = next((r for r in rows if r["apps"] == TARGET_APPS), None)
    if target is not None:
        verdict = "PASS" if target["seconds"] <= TARGET_S else "FAIL"
        print(
            f"{TARGET_APPS} apps planned in {target['seconds']:.2f} s (target <= {TARGET_S:g} s): {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

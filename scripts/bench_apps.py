"""Scale benchmark: plan the production stack with 1, 10 and 100 generated apps.

    .venv/bin/python scripts/bench_apps.py            # 1, 10, 100 apps
    .venv/bin/python scripts/bench_apps.py 1 10 50    # other sizes

Each size runs the real program under the offline mocks (``offline.runner``), in a fresh
interpreter so earlier runs do not warm caches for later ones, with ``Pulumi.prod.yaml``'s
config where ``platform:apps`` is replaced by N generated apps (each with its own database, added to
the committed ones, three declared keys and one extra egress rule: the full envelope). The
tooling stack it references is planned inside the same run, as the offline plan does.

Prints, per size: wall time, resources registered, and the cost of each app (resources and
seconds per app, from the difference with the smallest size), then whether 100 apps plan in
under 15 s (the target on the 2-core CI machine). Figures only: nothing here fails a build.
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

SIZES = (1, 10, 100)
TARGET_S = 15.0
TARGET_APPS = 100


def generated_config(count: int) -> dict[str, Any]:
    """Pulumi.prod.yaml's config with ``count`` generated apps (and their databases)."""
    from offline import runner

    config = runner.read_stack_config("prod")
    names = [f"app{i:03d}" for i in range(1, count + 1)]
    database = dict(config["platform:database"])
    # Kept: other settings (backups, restore checks) may name the committed databases.
    database["databases"] = [*database.get("databases", []), *({"name": n, "user": n} for n in names)]
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
            "egress": [{"cidr": "203.0.113.10/32", "ports": [443], "description": "payment provider"}],
        }
        for name in names
    ]
    gitops = dict(config["platform:gitops"])
    gitops["imageUpdates"] = [{"app": name, "strategy": "semver"} for name in names]
    config["platform:gitops"] = gitops
    return config


def plan_once(count: int) -> dict[str, Any]:
    """Plan prod with ``count`` apps in this interpreter; returns the figures."""
    from offline import runner

    config = generated_config(count)
    start = time.perf_counter()
    plan = runner.run("prod", config=config)
    seconds = time.perf_counter() - start
    gateways = [r for r in plan.registrations if r.type == "kubernetes:gateway.networking.k8s.io/v1:Gateway"]
    listeners = max((len(g.inputs["spec"]["listeners"]) for g in gateways), default=0)
    apps = [r for r in plan.registrations if r.type == "platform:apps:App"]
    return {
        "apps": count,
        "seconds": seconds,
        "resources": len(plan.registrations),
        "app_components": len(apps),
        "gateways": len(gateways),
        "listeners": listeners,
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
    rows = [plan_in_subprocess(n) for n in sizes]
    base = rows[0]
    header = ("apps", "seconds", "resources", "per app (res)", "per app (s)", "gateways", "max listeners")
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, (5, 8, 9, 13, 11, 8, 13), strict=True)))
    for row in rows:
        extra_apps = row["apps"] - base["apps"]
        per_res = (row["resources"] - base["resources"]) / extra_apps if extra_apps else float("nan")
        per_s = (row["seconds"] - base["seconds"]) / extra_apps if extra_apps else float("nan")
        print(
            f"{row['apps']:>5}  {row['seconds']:>8.2f}  {row['resources']:>9}  {per_res:>13.1f}  "
            f"{per_s:>11.3f}  {row['gateways']:>8}  {row['listeners']:>13}"
        )
    target = next((r for r in rows if r["apps"] == TARGET_APPS), None)
    if target is not None:
        verdict = "PASS" if target["seconds"] < TARGET_S else "FAIL"
        print(
            f"{TARGET_APPS} apps planned in {target['seconds']:.2f} s (target < {TARGET_S:.0f} s): {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

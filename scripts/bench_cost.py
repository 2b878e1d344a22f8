"""Cost benchmark: the cost estimate of the 100-app plan against the plan's own time.

    .venv/bin/python scripts/bench_cost.py          # 100 apps
    .venv/bin/python scripts/bench_cost.py 250      # another size

Plans prod with N generated apps (``scripts/bench_apps.py``'s configuration) once, in a fresh
interpreter, then prices that plan as ``make cost`` does (``offline.cost``: the estimate, the
table and the JSON), three times. Prints the plan's wall time, the cost's (the median of the
three), their ratio and whether the cost stays within 10% of the plan (the target). Figures only:
nothing here fails a build.
"""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APPS = 100
RUNS = 3
TARGET_RATIO = 0.10


def apps_config(count: int) -> dict[str, Any]:
    """``bench_apps``'s generated prod configuration, made to pass prod's own rules: prod is fed
    by promotion (no image updates of its own) and its connection budget must hold N apps."""
    # Imported by name: scripts/ is not a package, so mypy checks its files as top-level modules,
    # and a static `from scripts import bench_apps` would show it the same file twice.
    bench_apps = importlib.import_module("scripts.bench_apps")
    config: dict[str, Any] = bench_apps.generated_config(count)
    gitops = dict(config["platform:gitops"])
    if gitops.get("promotedFrom"):
        gitops.pop("imageUpdates", None)
    config["platform:gitops"] = gitops
    database = dict(config["platform:database"])
    # Each app: 10 connections x replicas x 2 during a rolling update, plus the platform's own.
    database["maxConnections"] = 10000
    config["platform:database"] = database
    return config


def measure(count: int) -> dict[str, Any]:
    """Plan prod with ``count`` apps in this interpreter, then price the plan ``RUNS`` times."""
    from offline import cost, runner

    config = apps_config(count)
    start = time.perf_counter()
    plan = runner.run("prod", config=config)
    plan_seconds = time.perf_counter() - start
    timings = []
    for _ in range(RUNS):
        start = time.perf_counter()
        priced = cost.cost_of(plan, config)
        cost.render(priced)
        json.dumps(cost.as_json(priced))
        timings.append(time.perf_counter() - start)
    return {
        "apps": count,
        "resources": len(plan.registrations),
        "lines": len(priced.estimate.lines),
        "plan_seconds": plan_seconds,
        "cost_seconds": statistics.median(timings),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(measure(int(argv[1]))))
        return 0
    count = int(argv[0]) if argv else APPS
    completed = subprocess.run(
        [sys.executable, __file__, "--one", str(count)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"planning {count} app(s) failed:\n" + "\n".join(tail))
    row = json.loads(completed.stdout.strip().splitlines()[-1])
    ratio = row["cost_seconds"] / row["plan_seconds"]
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(
        f"{row['apps']} apps: plan {row['plan_seconds']:.2f} s ({row['resources']} resources), "
        f"cost {row['cost_seconds']:.3f} s ({row['lines']} lines, median of {RUNS})"
    )
    print(f"cost / plan = {ratio:.1%} (target <= {TARGET_RATIO:.0%}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Wall-clock benchmark: the offline plan per committed stack, the unit tests and the whole suite.

    make bench          (or: .venv/bin/python scripts/benchmark.py)

Each plan runs in a fresh interpreter, as a user runs it, so import time counts; the figure is the
median of three runs. The unit tests (``make test-fast``) and the whole suite (``make test``) run
once each. Targets on the 2-core CI machine: under 3 s per stack, unit tests under 30 s, suite
under 60 s. This prints PASS/FAIL per figure; it does not fail the build.

Wall time is the figure judged. CPU time (user + system of the child processes) and the load
average are printed next to it, so a figure inflated by other work on the machine is recognisable.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS_PER_STACK = 3
PLAN_TARGET_S = 3.0
SUITE_TARGET_S = 60.0
UNIT_TARGET_S = 30.0


@dataclass
class Figure:
    label: str
    seconds: float
    cpu_seconds: float
    target: float
    note: str = ""

    @property
    def verdict(self) -> str:
        return "PASS" if self.seconds < self.target and not self.note else "FAIL"


@dataclass
class Timing:
    seconds: float
    cpu_seconds: float
    returncode: int
    last_line: str


def stack_names() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> Timing:
    cpu_before, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] if result.returncode else []
    return Timing(seconds, cpu, result.returncode, " ".join(tail))


def bench_plan(stack: str) -> Figure:
    runs = [timed([sys.executable, "-m", "offline.plan", stack]) for _ in range(RUNS_PER_STACK)]
    failed = [r for r in runs if r.returncode]
    note = f"exit {failed[0].returncode}: {failed[0].last_line}" if failed else ""
    return Figure(
        label=f"offline plan {stack} (median of {RUNS_PER_STACK})",
        seconds=statistics.median(r.seconds for r in runs),
        cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
        target=PLAN_TARGET_S,
        note=note,
    )


def bench_tests(label: str, paths: list[str], target: float) -> Figure:
    # As `make test` / `make test-fast` run them: on both cores.
    run = timed([sys.executable, "-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider", *paths])
    return Figure(
        label=f"{label} (pytest -q -n auto {' '.join(paths)}, once)".replace("  ", " "),
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        target=target,
        note=f"exit {run.returncode}: {run.last_line}" if run.returncode else "",
    )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_load()}; {ROOT}")
    figures = [bench_plan(stack) for stack in stack_names()]
    figures.append(bench_tests("unit tests", ["tests/unit"], UNIT_TARGET_S))
    figures.append(bench_tests("test suite", [], SUITE_TARGET_S))
    width = max(len(f.label) for f in figures)
    for f in figures:
        line = (
            f"{f.label:<{width}}  {f.seconds:6.2f} s wall  {f.cpu_seconds:6.2f} s cpu"
            f"  (target < {f.target:g} s)  {f.verdict}"
        )
        print(line + (f"  [{f.note}]" if f.note else ""))
    print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

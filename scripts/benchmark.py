"""Wall-clock benchmark: the import floor, the offline plan of each committed stack against it, and
the test suites.

    make bench          (or: .venv/bin/python scripts/benchmark.py [--no-tests])

Every figure runs in a fresh interpreter, as a user runs it, and is the median of several runs:

* the import floor: importing pulumi, pulumi_kubernetes, pulumiverse_scaleway, pulumi_random and
  the program (``program.stacks``, ``program.config``, ``offline.plan``), nothing planned;
* each committed stack's ``python -m offline.plan <stack>``, with the plan cache warm (the
  referenced stacks' plans read from ``build/plan-cache``, as on a second ``make plan``) and
  cold (``PLATFORM_PLAN_CACHE=off``: every referenced stack planned in the same process), each
  with its ratio to the floor. The warm figure is the one judged: at most 2.5 times the floor.

Then, unless ``--no-tests``, the unit tests (``make test-fast``) and the whole suite (``make
test``), once each: under 30 s and 60 s on the 2-core CI machine. This prints PASS/FAIL per
figure; it does not fail the build.

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
RUNS_FOR_FLOOR = 5
#: A plan may cost at most this many import floors (issue 19: the SDKs' import is the part no
#: change to the program can remove; the rest is planning).
PLAN_TARGET_RATIO = 2.5
SUITE_TARGET_S = 60.0
UNIT_TARGET_S = 30.0
FLOOR_IMPORTS = (
    "import pulumi, pulumi_kubernetes, pulumiverse_scaleway, pulumi_random; "
    "import program.stacks, program.config, offline.plan"
)


@dataclass
class Figure:
    label: str
    seconds: float
    cpu_seconds: float
    #: The limit on ``seconds`` (tests), or None when the figure is judged by its ratio.
    target: float | None = None
    #: ``seconds`` over the import floor, and the most it may be (plans).
    ratio: float | None = None
    ratio_target: float | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.note:
            return "FAIL"
        if self.ratio_target is not None:
            return "PASS" if self.ratio is not None and self.ratio <= self.ratio_target else "FAIL"
        if self.target is not None:
            return "PASS" if self.seconds < self.target else "FAIL"
        return ""

    @property
    def judged(self) -> str:
        if self.ratio is not None:
            bound = f" (target <= {self.ratio_target:g}x)  {self.verdict}" if self.ratio_target else ""
            return f"{self.ratio:5.2f}x floor{bound}"
        return f"(target < {self.target:g} s)  {self.verdict}" if self.target is not None else ""


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


def timed(command: list[str], env: dict[str, str] | None = None) -> Timing:
    cpu_before, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] if result.returncode else []
    return Timing(seconds, cpu, result.returncode, " ".join(tail))


def median_of(label: str, command: list[str], runs: int, env: dict[str, str] | None = None) -> Figure:
    timings = [timed(command, env) for _ in range(runs)]
    failed = [t for t in timings if t.returncode]
    return Figure(
        label=f"{label} (median of {runs})",
        seconds=statistics.median(t.seconds for t in timings),
        cpu_seconds=statistics.median(t.cpu_seconds for t in timings),
        note=f"exit {failed[0].returncode}: {failed[0].last_line}" if failed else "",
    )


def bench_floor() -> Figure:
    return median_of("import floor", [sys.executable, "-c", FLOOR_IMPORTS], RUNS_FOR_FLOOR)


def bench_plan(stack: str, floor: Figure, *, cached: bool) -> Figure:
    command = [sys.executable, "-m", "offline.plan", stack]
    if cached:
        timed(command)  # untimed: fills build/plan-cache if it is stale
        figure = median_of(f"offline plan {stack}, cache warm", command, RUNS_PER_STACK)
        figure.ratio_target = PLAN_TARGET_RATIO
    else:
        off = {"PLATFORM_PLAN_CACHE": "off"}
        figure = median_of(f"offline plan {stack}, no cache", command, RUNS_PER_STACK, off)
    figure.ratio = figure.seconds / floor.seconds
    return figure


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


def main(argv: list[str]) -> int:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_load()}; {ROOT}")
    floor = bench_floor()
    figures = [floor]
    for stack in stack_names():
        figures += [bench_plan(stack, floor, cached=True), bench_plan(stack, floor, cached=False)]
    if "--no-tests" not in argv:
        figures.append(bench_tests("unit tests", ["tests/unit"], UNIT_TARGET_S))
        figures.append(bench_tests("test suite", [], SUITE_TARGET_S))
    width = max(len(f.label) for f in figures)
    for f in figures:
        line = f"{f.label:<{width}}  {f.seconds:6.2f} s wall  {f.cpu_seconds:6.2f} s cpu  {f.judged}"
        print(line.rstrip() + (f"  [{f.note}]" if f.note else ""))
    print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Mutated stack files: every run either plans or fails with a clean configuration error.

Hypothesis takes each committed stack file's ``config:`` map and applies one to three mutations:
a key deleted (at any depth, in maps and lists), an unknown key added, a value of another type
(str, int, bool, list, map, null), an extreme number, an empty or a 5,000-character string, an odd
CIDR, a stack reference pointed at another (or no) stack, or a list entry duplicated. Then the real
program runs under the offline mocks. A run may succeed, or raise a ``pulumi.RunError`` (the
program's ConfigError and the cross-stack errors) whose message names a key path (``platform:...``,
``scaleway:...`` or ``<stack>:<export>``). Anything else (a KeyError, a TypeError, a leaked pydantic
ValidationError, a DuplicateUrnError from the mocks, an AssertionError in program code, an OSError
from the offline runner) is a traceback an operator would see, and fails the test.

Examples: ``CONFIG_MUTATION_EXAMPLES`` in total across the stacks (default 1,500 with CI=true, 60
otherwise; 300 proved too few to hit a one-in-a-few-hundred path reliably, and 1,500 plan in about
30 s); in CI the examples are derandomized, so a failure reproduces run after run.
"""

from __future__ import annotations

import copy
import math
import os
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from offline import runner
from scw_platform.contract import REGISTRATION_KEY, ToolingFacts

T = TypeVar("T")
KeyPath = tuple[str | int, ...]
#: Picks one of the options: a Hypothesis draw in the test, any chooser elsewhere.
Pick = Callable[[Sequence[T]], T]

STACKS = runner.stack_names()
CI = os.environ.get("CI") == "true"
TOTAL_EXAMPLES = int(os.environ.get("CONFIG_MUTATION_EXAMPLES", "1500" if CI else "60"))
EXAMPLES_PER_STACK = max(1, math.ceil(TOTAL_EXAMPLES / max(1, len(STACKS))))

#: A key path in an error message: a ``platform:``/``scaleway:`` key, or ``<stack>:<export>`` of
#: an export this stack reads from another one.
_EXPORTS = "|".join(re.escape(key) for key in (REGISTRATION_KEY, *ToolingFacts.KEYS))
KEY_PATH = re.compile(
    rf"(?<![\w/.-])(?:platform|scaleway):\S|(?<![\w.-])[\w.-]+(?:/[\w.-]+)*:(?:{_EXPORTS})\b"
)

# -- the values mutations put in ---------------------------------------------------------------

EXTREME_NUMBERS: tuple[Any, ...] = (0, -1, 2**63, -(2**63), 2**64, 1e308, -1e308, 0.5)
ODD_STRINGS: tuple[str, ...] = ("", "x" * 5000, " ")
ODD_CIDRS: tuple[str, ...] = ("10.0.0.0/33", "0.0.0.0/0", "::/0", "10.0.0.1/8", "not-a-cidr")
#: Stack references: every committed stack, one that has no stack file, and a very long name.
STACK_REFS: tuple[str, ...] = (
    *(f"organization/{runner.project_name()}/{name}" for name in STACKS),
    *STACKS,
    f"organization/{runner.project_name()}/missing",
    "x" * 5000,
)
UNKNOWN_KEYS: tuple[str, ...] = ("unknownKey", "", "Name", "snake_case", "ünïcode", "k" * 300)
#: One sample of each type; "retype" picks one of a type other than the value's.
SAMPLES: dict[type, tuple[Any, ...]] = {
    str: ("text", "1", "true"),
    int: (1, 0),
    bool: (True, False),
    list: ([], ["text"], [1], [{}]),
    dict: ({}, {"key": "text"}),
    type(None): (None,),
}
_CIDR = re.compile(r"^[0-9a-fA-F.:]+/\d+$")
_STACK_REF = re.compile(rf"^([\w.-]+/){{0,2}}({'|'.join(map(re.escape, STACKS))})$")


# -- paths in the config tree ------------------------------------------------------------------


def paths(node: Any, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """Every key and list index below ``node``, depth first."""
    items: Any
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path
        yield from paths(value, path)


def get(config: Any, path: KeyPath) -> Any:
    for part in path:
        config = config[part]
    return config


def show(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config>"


def brief(value: Any) -> str:
    """A value as a reproducer shows it (5,000 characters stay readable)."""
    if isinstance(value, str) and len(value) > 40 and len(set(value)) == 1:
        return f"{value[0]!r} * {len(value)}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# -- mutations ---------------------------------------------------------------------------------


def _leaf_paths(config: dict[str, Any], wanted: Callable[[Any], bool]) -> list[KeyPath]:
    return [p for p in paths(config) if wanted(get(config, p))]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_cidr(value: Any) -> bool:
    return isinstance(value, str) and bool(_CIDR.fullmatch(value))


def _is_stack_ref(value: Any) -> bool:
    return isinstance(value, str) and bool(_STACK_REF.fullmatch(value))


def _target(config: dict[str, Any], pick: Pick[Any], wanted: Callable[[Any], bool]) -> KeyPath:
    """Mostly a path whose value fits the mutation (a number for an extreme number...), else any."""
    fitting = _leaf_paths(config, wanted)
    if fitting and pick((True, False)):
        return tuple(pick(fitting))
    return tuple(pick(list(paths(config))))


def _set(config: dict[str, Any], path: KeyPath, value: Any) -> None:
    get(config, path[:-1])[path[-1]] = value


def mutate_once(config: dict[str, Any], pick: Pick[Any]) -> str:
    """Apply one mutation to ``config`` in place; returns what it did, as a reproducer line."""
    every = list(paths(config))
    lists = [p for p in every if isinstance(get(config, p), list) and get(config, p)]
    kinds = ["add-key"]
    if every:
        kinds += ["delete", "retype", "number", "string", "cidr", "stack-ref"]
    if lists:
        kinds.append("duplicate")
    kind = pick(kinds)
    if kind == "delete":
        return _delete(config, pick, every)
    if kind == "add-key":
        return _add_key(config, pick, every)
    if kind == "duplicate":
        return _duplicate(config, pick, lists)
    path, value = _retyped(config, pick, every) if kind == "retype" else _odd_value(config, pick, kind)
    old = get(config, path)
    _set(config, path, copy.deepcopy(value))
    return f"{kind} {show(path)}: {brief(old)} -> {brief(value)}"


def _delete(config: dict[str, Any], pick: Pick[Any], every: list[KeyPath]) -> str:
    """Delete a key or a list entry, at any depth."""
    path = tuple(pick(every))
    del get(config, path[:-1])[path[-1]]
    return f"delete {show(path)}"


def _add_key(config: dict[str, Any], pick: Pick[Any], every: list[KeyPath]) -> str:
    """Add an unknown key to any map (a namespaced one at the top)."""
    maps = [(), *(p for p in every if isinstance(get(config, p), dict))]
    where = tuple(pick(maps))
    name = pick(UNKNOWN_KEYS)
    key = f"{pick(('platform', 'scaleway'))}:{name}" if where == () else name
    value = pick([v for samples in SAMPLES.values() for v in samples])
    get(config, where)[key] = copy.deepcopy(value)
    return f"add {show((*where, key))} = {brief(value)}"


def _duplicate(config: dict[str, Any], pick: Pick[Any], lists: list[KeyPath]) -> str:
    """Duplicate an entry of a non-empty list, next to itself."""
    path = tuple(pick(lists))
    entries = get(config, path)
    i = pick(range(len(entries)))
    entries.insert(i + 1, copy.deepcopy(entries[i]))
    return f"duplicate {show((*path, i))}"


def _retyped(config: dict[str, Any], pick: Pick[Any], every: list[KeyPath]) -> tuple[KeyPath, Any]:
    """Any path, and a value of another type for it."""
    path = tuple(pick(every))
    old = get(config, path)
    options = [v for t, samples in SAMPLES.items() if t is not type(old) for v in samples]
    # The same value in another guise: "3" for 3, [x] and {"value": x} for x.
    if not isinstance(old, str | dict | list) and old is not None:
        options.append(str(old))
    options += [[old], {"value": old}]
    return path, pick(options)


#: For each kind of odd value: which values it mostly replaces, and the odd values.
_ODD_VALUES: dict[str, tuple[Callable[[Any], bool], Sequence[Any]]] = {
    "number": (_is_number, EXTREME_NUMBERS),
    "string": (lambda v: isinstance(v, str), ODD_STRINGS),
    "stack-ref": (_is_stack_ref, STACK_REFS),
    "cidr": (_is_cidr, ODD_CIDRS),
}


def _odd_value(config: dict[str, Any], pick: Pick[Any], kind: str) -> tuple[KeyPath, Any]:
    """A path (mostly one whose value fits ``kind``) and an odd value of that kind for it."""
    wanted, values = _ODD_VALUES[kind]
    path = _target(config, pick, wanted)
    return path, pick(values)


def mutate(config: dict[str, Any], pick: Pick[Any]) -> list[str]:
    """One to three mutations applied to ``config`` in place."""
    return [mutate_once(config, pick) for _ in range(pick((1, 2, 3)))]


class Mutated:
    """A mutated config; shown as its mutations (the whole config would bury them)."""

    def __init__(self, stack: str, config: dict[str, Any], mutations: list[str]) -> None:
        self.stack, self.config, self.mutations = stack, config, mutations

    def __repr__(self) -> str:
        return f"stack {self.stack}: " + "; ".join(self.mutations)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis' pretty printer
        printer.text(repr(self))


@st.composite
def mutated_configs(draw: st.DrawFn, stack: str) -> Mutated:
    config = copy.deepcopy(_committed(stack))

    def pick(options: Sequence[Any]) -> Any:
        return draw(st.sampled_from(options))

    return Mutated(stack, config, mutate(config, pick))


_COMMITTED: dict[str, dict[str, Any]] = {}


def _committed(stack: str) -> dict[str, Any]:
    if stack not in _COMMITTED:
        _COMMITTED[stack] = runner.read_stack_config(stack)
    return _COMMITTED[stack]


# -- the verdict -------------------------------------------------------------------------------


def raised_at(exc: BaseException) -> str:
    """The innermost frame of this repository's own code (program or offline tools) in the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [
        f
        for f in frames
        if Path(f.filename).is_relative_to(runner.ROOT)
        and not Path(f.filename).is_relative_to(runner.ROOT / ".venv")
        and Path(f.filename) != Path(__file__)
    ]
    frame = (own or frames)[-1] if frames else None
    if frame is None:
        return "?"
    where = Path(frame.filename)
    where = where.relative_to(runner.ROOT) if where.is_relative_to(runner.ROOT) else where
    return f"{where}:{frame.lineno}"


def _squeeze(text: str) -> str:
    """Long runs of one character (a 5,000-character value echoed back) shortened."""
    return re.sub(r"(.)\1{40,}", lambda run: f"{run.group(1) * 3}...({len(run.group(0))} times)", text)


def outcome(stack: str, config: dict[str, Any]) -> tuple[str, BaseException] | None:
    """None when the run planned or failed cleanly; else the kind of traceback and the exception."""
    try:
        runner.run(stack, config=config)
    except pulumi.RunError as exc:
        if KEY_PATH.search(str(exc)):
            return None
        return f"{type(exc).__name__} naming no key path, raised at {raised_at(exc)}", exc
    except Exception as exc:
        return f"{type(exc).__name__} raised at {raised_at(exc)}", exc
    return None


@pytest.mark.parametrize("stack", STACKS)
@settings(
    max_examples=EXAMPLES_PER_STACK,
    deadline=None,
    # Derandomized in CI (no example database then); locally, found failures replay from
    # .hypothesis/, which Hypothesis keeps out of git with its own .gitignore.
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutated_stack_file_plans_or_names_the_bad_key(stack: str, data: st.DataObject) -> None:
    mutated = data.draw(mutated_configs(stack), label="mutated config")
    note("mutations:\n  " + "\n  ".join(mutated.mutations))
    failed = outcome(stack, mutated.config)
    if failed is not None:
        kind, exc = failed
        raise AssertionError(f"{mutated!r}\n{kind}: {_squeeze(str(exc))[:2000]}") from exc

"""Run the real program for one stack file under recording mocks.

Config is injected exactly as the engine would hand it over: ``namespace:key`` -> string, with
structured values as JSON. Values stored encrypted in a stack file (``secure:``) cannot be
decrypted here, so they are replaced by marked fake secrets and flagged secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import PlatformMocks, RecordingMonitor, Registration, fake_secret
from program import paths
from program.environments import Environments, load_yaml, yaml_problem
from scw_platform.contract import ProblemsError

# The repository's layout is the program's (program/paths.py).
ROOT = paths.ROOT

#: The monitor of the latest run, kept even when the run fails, so tests can prove that an
#: invalid stack registered nothing.
last_monitor: RecordingMonitor | None = None


@dataclass
class Export:
    value: Any
    secret: bool


@dataclass
class Plan:
    stack: str
    project: str
    registrations: list[Registration]
    exports: dict[str, Export]
    #: Warnings the program logged (e.g. a registered environment skipped because its stack is
    #: not deployed yet).
    warnings: list[str] = field(default_factory=list)
    #: Planned as on an empty account: the stacks this one registers do not exist yet.
    bootstrap: bool = False
    #: IDs, addresses and URLs the mocks made up (the plan marks them in its output).
    mocked: frozenset[str] = frozenset()

    def by_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def one(self, type_token: str) -> Registration:
        found = self.by_type(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, found {len(found)}")
        return found[0]


def project_name(root: Path = ROOT) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def stack_names(root: Path = ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _is_file(path: Path) -> bool:
    """``path.exists()`` that says no, instead of raising, for a name the file system refuses
    (longer than 255 bytes, say)."""
    try:
        return path.is_file()
    except OSError:
        return False


class StackFileError(ProblemsError):
    """A stack file that is not valid YAML, or not a map with a ``config:`` map."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"{name}: {len(problems)} problem(s)", problems)


def read_stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    path = root / f"Pulumi.{stack}.yaml"
    if not _is_file(path):
        raise FileNotFoundError(f"no stack file {path.name} (stacks here: {', '.join(stack_names(root))})")
    try:
        document = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(path.name, [yaml_problem(exc)]) from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(config, dict | None):
        raise StackFileError(path.name, ["must be a map whose config: key holds a map of settings"])
    return dict(config or {})


def engine_config(raw: dict[str, Any], project: str) -> tuple[dict[str, str], list[str]]:
    """Flatten a stack file's ``config:`` map the way the engine passes it to the program."""
    flat: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            flat[full] = fake_secret(full)
            secret_keys.append(full)
        elif isinstance(value, str):
            flat[full] = value
        else:
            flat[full] = json.dumps(value)
    return flat, secret_keys


def run(
    stack: str,
    config: dict[str, Any] | None = None,
    root: Path = ROOT,
    *,
    placeholder_secrets: bool = True,
    bootstrap: bool = False,
    environments: Environments | None = None,
    _visiting: frozenset[str] = frozenset(),
) -> Plan:
    """Run the program for ``stack``; ``config`` replaces the stack file's config when given.

    With ``placeholder_secrets`` (the default), deploy-time secrets that are not set get marked
    fake values, as a real operator would have set them with ``pulumi config set --secret``.

    Referenced stacks are planned first and their exports served to the StackReferences: the
    tooling stack a workload stack reads (planned as on its first run, which exports the same
    facts), and the workload stacks tooling registers, unless ``bootstrap``: then they do not exist
    yet, as on an empty account (the order is tooling -> workload stacks -> tooling again).
    ``environments`` replaces ``root``'s environments.yaml when given (this stack only).
    """
    # Imported here so that importing this module never pulls in the program by accident.
    from program import config as platform_config
    from program import environments as env_list
    from program import stacks
    from program.references import KnownStacks

    environments = environments or env_list.load_file(root / env_list.FILE_NAME)
    project = project_name(root)
    raw = read_stack_config(stack, root) if config is None else config
    references, referenced_mocked = _plan_references(
        stack, _namespace(raw, "platform"), environments, root, bootstrap=bootstrap, visiting=_visiting
    )
    _set_engine_config(raw, project, placeholder_secrets=placeholder_secrets)

    def build() -> dict[str, Any]:
        cfg = platform_config.from_pulumi(environments)
        return stacks.build(cfg, KnownStacks(frozenset(references)))

    mocks = PlatformMocks(stack_outputs=references, mocked=referenced_mocked)
    monitor, exports, warnings = _run_program(stack, project, mocks, build)
    return Plan(
        stack=stack,
        project=project,
        registrations=list(monitor.registrations.values()),
        exports=exports,
        warnings=warnings,
        bootstrap=bootstrap,
        mocked=frozenset(mocks.mocked),
    )


def _plan_references(
    stack: str,
    platform_raw: dict[str, Any],
    environments: Environments,
    root: Path,
    *,
    bootstrap: bool,
    visiting: frozenset[str],
) -> tuple[dict[str, dict[str, Export]], set[str]]:
    """The exports of the stacks ``stack`` references (by reference name), planned first, and
    the values their mocks made up."""
    from program import config as platform_config

    references: dict[str, dict[str, Export]] = {}
    referenced_mocked: set[str] = set()
    registered_refs = platform_config.registered_stacks(platform_raw, environments)
    for ref in platform_config.referenced_stacks(platform_raw, environments):
        name = ref.rsplit("/", 1)[-1]
        registered = ref in registered_refs
        if name == stack or not _is_file(root / f"Pulumi.{name}.yaml"):
            continue  # not deployed: the program says what it does about that
        if registered and not bootstrap:
            # A registered environment, fully planned; its own tooling reference ends below.
            references[ref], mocked = _referenced_exports(name, root, bootstrap=False, visiting=frozenset())
            referenced_mocked |= mocked
        elif not registered and name not in visiting:
            # The tooling stack a workload reads: its first run exports the same facts, and
            # planning it so never plans this stack again (no cycle).
            references[ref], mocked = _referenced_exports(
                name, root, bootstrap=True, visiting=visiting | {stack}
            )
            referenced_mocked |= mocked
    return references, referenced_mocked


def _set_engine_config(raw: dict[str, Any], project: str, *, placeholder_secrets: bool) -> None:
    """Hand ``raw`` to the SDK as the engine would, with placeholders for unset deploy-time
    secrets when ``placeholder_secrets``."""
    from program.model import SECRET_KEYS

    flat, secret_keys = engine_config(raw, project)
    if placeholder_secrets:
        for key in SECRET_KEYS:
            full = f"platform:{key}"
            if full not in flat:
                flat[full] = fake_secret(full)
                secret_keys.append(full)
    pulumi.runtime.set_all_config(flat, secret_keys)


def _run_program(
    stack: str, project: str, mocks: PlatformMocks, build: Callable[[], dict[str, Any]]
) -> tuple[RecordingMonitor, dict[str, Export], list[str]]:
    """Run ``build`` as the Pulumi program of ``stack`` under ``mocks``: the monitor that
    recorded its registrations, its resolved exports and the warnings it logged."""
    # A fresh event loop per run, closed afterwards: runs stay independent, and the interpreter
    # does not trip over a loop the SDK left open at exit.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    global last_monitor  # noqa: PLW0603 - a test hook, see its declaration
    monitor = last_monitor = RecordingMonitor(mocks)
    pulumi_settings.ROOT.set(None)
    pulumi_mocks.set_mocks(
        monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor, logger=_WARNINGS
    )
    pulumi_settings.SETTINGS.rpc_manager.clear()

    exports: dict[str, Export] = {}
    warnings = _WARNINGS.capture()

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            exports[key] = Export(await output.future(), await output.is_secret())

    def program() -> None:
        _sync_await(resolve(build()))

    try:
        with _offline_runtime():
            _sync_await(run_pulumi_func(program))
    finally:
        monitor.close()
        loop.close()
    return monitor, exports, list(warnings)


@contextlib.contextmanager
def _offline_runtime() -> Iterator[None]:
    """The SDK with two costs a plan under mocks does not need, for the length of one run.

    * The cyclic garbage collector is paused. A plan allocates hundreds of thousands of
      short-lived asyncio handles, futures and Outputs while the set of live Outputs only grows
      until the program ends, and each collection walks that whole set again: with 100 apps the
      collector was more than half the plan's CPU and made the cost per app grow with the number
      of apps (measured with cProfile and py-spy; docs/testing.md, "Offline plan speed"). The run
      is bounded; the garbage cycles it leaves are freed by a later full collection (below).
    * The SDK's stack trace per resource (``pulumi.runtime.resource._get_stack_trace``, pulumi
      3.272.0, walks the Python stack and converts every frame to a file URI) is replaced by an
      empty one: it only feeds the engine's source positions, and the recording monitor keeps
      none. If a future SDK renames the helper, nothing is replaced and the plan is just slower.
    """
    from pulumi.runtime import resource as sdk_resource
    from pulumi.runtime.proto import source_pb2

    collecting = gc.isenabled()
    original = getattr(sdk_resource, "_get_stack_trace", None)
    gc.disable()
    if original is not None:
        sdk_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        if original is not None:
            sdk_resource._get_stack_trace = original
        if collecting:
            _resume_collection()


#: Objects the collector tracked after its last full collection here (or after the first run).
_HEAP_BASELINE: list[int] = []


def _resume_collection() -> None:
    """Re-enable the collector after a run without paying for the run's objects at once.

    What the run left alive goes straight to the oldest generation (freeze, then unfreeze: two
    list splices, no scan; nothing in this repository freezes objects of its own, which unfreeze
    would release). Re-enabled as is, the collector's first pass would walk every object the run
    allocated (1.7 s after 100 apps). The freeze also resets the counters the collector's own
    schedule uses, so the run's garbage cycles would stay forever (7 MB per prod plan in a test
    session): once the tracked objects reach twice what was left after the last full collection,
    one is made. That bounds memory to twice the live objects at a cost per object that does not
    grow (the collector's own rule for its oldest generation is alike), and a one-plan process
    such as ``make plan`` never pays for it.
    """
    gc.freeze()
    tracked = gc.get_freeze_count()
    gc.unfreeze()
    gc.enable()
    if not _HEAP_BASELINE:
        _HEAP_BASELINE.append(tracked)
    elif tracked > 2 * _HEAP_BASELINE[0]:
        gc.collect()
        gc.freeze()
        _HEAP_BASELINE[0] = gc.get_freeze_count()
        gc.unfreeze()


class _WarningLog(logging.Logger):
    """The mocks' engine logger: keeps the program's warnings for the plan to show."""

    def __init__(self) -> None:
        super().__init__("offline-plan", logging.WARNING)
        self._current: list[str] = []

    def capture(self) -> list[str]:
        self._current = []
        return self._current

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._current.append(str(msg))


_WARNINGS = _WarningLog()


#: Referenced plans already made in this process, by the key of their inputs (``_cache_key``).
_REFERENCE_CACHE: dict[str, tuple[dict[str, Export], frozenset[str]]] = {}

#: The on-disk cache of referenced plans: unset, ``build/plan-cache`` beside the stack files;
#: a path, that folder; ``off`` (or 0, no, false), none (every referenced stack planned again).
CACHE_ENV = "PLATFORM_PLAN_CACHE"
#: Bumped whenever what an entry holds, or how it is read, changes.
CACHE_FORMAT = 1
#: Entries kept per stack (the newest): tooling is read on its first run from dev and from prod.
CACHE_KEEP = 4
#: The program's sources and the files it reads, relative to the repository (program/paths.py
#: names the data under ops/). The offline mocks are inputs too: they make up what is exported.
_SOURCE_TREES = ("program", "scw_platform", "offline", "ops")
#: Installed distributions whose version changes a plan, beside requirements.txt's (the SDKs'
#: serialisation layer).
_RUNTIME_DISTRIBUTIONS = ("pydantic-core", "protobuf", "grpcio")


def reference_cache_dir(root: Path) -> Path | None:
    """Where referenced plans are kept between runs, or None when ``PLATFORM_PLAN_CACHE`` is off."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in {"off", "0", "no", "false"}:
        return None
    return Path(setting) if setting else root / "build" / "plan-cache"


def _referenced_exports(
    stack: str, root: Path, *, bootstrap: bool, visiting: frozenset[str]
) -> tuple[dict[str, Export], frozenset[str]]:
    """A referenced stack's exports and made-up values, planned once per content of its inputs.

    Planning prod or dev plans tooling first (its first run) to serve the StackReference, and
    planning tooling plans every registered environment: the same work on every run. It is kept
    in memory (a test session plans prod dozens of times) and in ``build/plan-cache/`` (each
    ``make plan`` is a new process), under a digest of everything the referenced plan depends on
    (``_cache_key``), so any change to a stack file, environments.yaml, the program or an SDK
    plans it again.
    """
    key = _cache_key(stack, root, bootstrap=bootstrap, visiting=visiting)
    if key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    folder = reference_cache_dir(root)
    found = _read_entry(folder, stack, key) if folder is not None else None
    if found is None:
        planned = run(stack, root=root, bootstrap=bootstrap, _visiting=visiting)
        found = (planned.exports, planned.mocked)
        if folder is not None:
            _write_entry(folder, stack, key, found)
    _REFERENCE_CACHE[key] = found
    return found


def _cache_key(stack: str, root: Path, *, bootstrap: bool, visiting: frozenset[str]) -> str:
    """A digest of a referenced plan's inputs: which plan it is, every stack file and the list of
    environments in ``root`` (a registered environment's plan reads tooling's in turn), and the
    program's sources and SDK versions (``_program_digest``)."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "stack": stack, "bootstrap": bootstrap, "visiting": sorted(visiting)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(_program_digest().encode())
    names = sorted({"Pulumi.yaml", "environments.yaml", *(p.name for p in root.glob("Pulumi.*.yaml"))})
    for name in names:
        path = root / name
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes() if _is_file(path) else b"\0absent")
    return digest.hexdigest()


_PROGRAM_DIGEST: list[str] = []


def _program_digest() -> str:
    """A digest of the program's source files and of the installed versions it runs on.

    Taken once per process, when the program is already imported: a file edited later is not the
    code this process runs, so it must not key what this process plans.
    """
    if not _PROGRAM_DIGEST:
        digest = hashlib.sha256(f"python {sys.version}\n".encode())
        for name in _distributions():
            digest.update(f"{name}=={_installed_version(name)}\n".encode())
        for tree in _SOURCE_TREES:
            for path in sorted((ROOT / tree).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    digest.update(f"\0{path.relative_to(ROOT).as_posix()}\0".encode())
                    digest.update(path.read_bytes())
        _PROGRAM_DIGEST.append(digest.hexdigest())
    return _PROGRAM_DIGEST[0]


def _distributions() -> list[str]:
    """requirements.txt's distributions (``name==version`` lines) and ``_RUNTIME_DISTRIBUTIONS``."""
    requirements = ROOT / "requirements.txt"
    lines = requirements.read_text().splitlines() if _is_file(requirements) else []
    names = {line.split("==", 1)[0].strip() for line in lines if "==" in line and not line.startswith("#")}
    return sorted(names | set(_RUNTIME_DISTRIBUTIONS))


def _installed_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _entry_path(folder: Path, stack: str, key: str) -> Path:
    return folder / f"{stack}.{key[:32]}.json"


def _read_entry(folder: Path, stack: str, key: str) -> tuple[dict[str, Export], frozenset[str]] | None:
    """The entry stored under ``key``, or None (absent, unreadable, or not this key's)."""
    try:
        document = json.loads(_entry_path(folder, stack, key).read_text())
        if document["format"] != CACHE_FORMAT or document["key"] != key:
            return None
        exports = {name: Export(e["value"], bool(e["secret"])) for name, e in document["exports"].items()}
        return exports, frozenset(document["mocked"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_entry(folder: Path, stack: str, key: str, found: tuple[dict[str, Export], frozenset[str]]) -> None:
    """Store ``found`` under ``key`` (atomically: parallel test workers plan the same stacks), and
    drop this stack's older entries beyond ``CACHE_KEEP``. Exports that do not survive JSON
    unchanged (a tuple, say) are not stored: a cached plan must serve exactly what planning serves.
    A folder that cannot be written only costs the next run the time it saves."""
    exports, mocked = found
    document = {
        "format": CACHE_FORMAT,
        "key": key,
        "stack": stack,
        "exports": {name: {"value": e.value, "secret": e.secret} for name, e in exports.items()},
        "mocked": sorted(mocked),
    }
    try:
        text = json.dumps(document, sort_keys=True, indent=1)
    except (TypeError, ValueError):
        return
    if json.loads(text) != document:
        return
    target = _entry_path(folder, stack, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        scratch.write_text(text)
        os.replace(scratch, target)
        entries = sorted(folder.glob(f"{stack}.*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError:
        return


def _namespace(raw: dict[str, Any], namespace: str) -> dict[str, Any]:
    prefix = f"{namespace}:"
    return {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

"""Run the real program for one stack file under recording mocks.

Config is injected exactly as the engine would hand it over: ``namespace:key`` -> string, with
structured values as JSON. Values stored encrypted in a stack file (``secure:``) cannot be
decrypted here, so they are replaced by marked fake secrets and flagged secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
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
        _sync_await(run_pulumi_func(program))
    finally:
        monitor.close()
        loop.close()
    return monitor, exports, list(warnings)


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


_REFERENCE_CACHE: dict[tuple[Path, str, str, bool], tuple[dict[str, Export], frozenset[str]]] = {}


def _referenced_exports(
    stack: str, root: Path, *, bootstrap: bool, visiting: frozenset[str]
) -> tuple[dict[str, Export], frozenset[str]]:
    """A referenced stack's exports, planned once per content of its stack file: a test session
    plans prod dozens of times, and each would otherwise plan tooling again."""
    path = root / f"Pulumi.{stack}.yaml"
    # The referenced plan depends on its stack file and the list of environments (and, through
    # them, on the files it references in turn: those are keyed when it is planned).
    listing = root / "environments.yaml"
    text = (path.read_text() if path.exists() else "") + (listing.read_text() if listing.exists() else "")
    key = (root, stack, text, bootstrap)
    if key not in _REFERENCE_CACHE:
        planned = run(stack, root=root, bootstrap=bootstrap, _visiting=visiting)
        _REFERENCE_CACHE[key] = (planned.exports, planned.mocked)
    return _REFERENCE_CACHE[key]


def _namespace(raw: dict[str, Any], namespace: str) -> dict[str, Any]:
    prefix = f"{namespace}:"
    return {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

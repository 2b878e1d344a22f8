"""Run the real program for one stack file under recording mocks.

Config is injected exactly as the engine would hand it over: ``namespace:key`` -> string, with
structured values as JSON. Values stored encrypted in a stack file (``secure:``) cannot be
decrypted here, so they are replaced by marked fake secrets and flagged secret.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import PlatformMocks, RecordingMonitor, Registration, fake_secret

ROOT = Path(__file__).resolve().parent.parent

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


def read_stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name} (stacks here: {', '.join(stack_names(root))})")
    document = yaml.safe_load(path.read_text()) or {}
    return dict(document.get("config") or {})


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
) -> Plan:
    """Run the program for ``stack``; ``config`` replaces the stack file's config when given.

    With ``placeholder_secrets`` (the default), deploy-time secrets that are not set get marked
    fake values, as a real operator would have set them with ``pulumi config set --secret``.
    Stacks referenced through a StackReference are planned first and their exports served to it.
    """
    # Imported here so that importing this module never pulls in the program by accident.
    from components import config as platform_config
    from components import stacks

    project = project_name(root)
    raw = read_stack_config(stack, root) if config is None else config
    references = {
        ref: _referenced_exports(ref.rsplit("/", 1)[-1], root)
        for ref in platform_config.referenced_stacks(_namespace(raw, "platform"))
    }
    flat, secret_keys = engine_config(raw, project)
    if placeholder_secrets:
        for key in platform_config.SECRET_KEYS:
            full = f"platform:{key}"
            if full not in flat:
                flat[full] = fake_secret(full)
                secret_keys.append(full)
    pulumi.runtime.set_all_config(flat, secret_keys)

    # A fresh event loop per run, closed afterwards: runs stay independent, and the interpreter
    # does not trip over a loop the SDK left open at exit.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    global last_monitor  # noqa: PLW0603 - a test hook, see its declaration
    monitor = last_monitor = RecordingMonitor(PlatformMocks(stack_outputs=references))
    pulumi_settings.ROOT.set(None)
    pulumi_mocks.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi_settings.SETTINGS.rpc_manager.clear()

    exports: dict[str, Export] = {}

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            exports[key] = Export(await output.future(), await output.is_secret())

    def program() -> None:
        _sync_await(resolve(stacks.build(platform_config.from_pulumi())))

    try:
        _sync_await(run_pulumi_func(program))
    finally:
        monitor.close()
        loop.close()
    return Plan(
        stack=stack, project=project, registrations=list(monitor.registrations.values()), exports=exports
    )


_REFERENCE_CACHE: dict[tuple[Path, str, str], dict[str, Export]] = {}


def _referenced_exports(stack: str, root: Path) -> dict[str, Export]:
    """A referenced stack's exports, planned once per content of its stack file: a test session
    plans prod dozens of times, and each would otherwise plan tooling again."""
    path = root / f"Pulumi.{stack}.yaml"
    key = (root, stack, path.read_text() if path.exists() else "")
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = run(stack, root=root).exports
    return _REFERENCE_CACHE[key]


def _namespace(raw: dict[str, Any], namespace: str) -> dict[str, Any]:
    prefix = f"{namespace}:"
    return {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

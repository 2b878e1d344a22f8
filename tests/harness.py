"""Run a fragment of the program (one component, or a deliberately broken snippet) under the same
recording mocks as ``offline.runner``, and hand back what was registered and what it resolved to.

The fragment runs inside ``@pulumi.runtime.test``, so every Output it returns is awaited (an
un-awaited ``apply`` asserts nothing); assertions then run on the complete recording.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings

from offline.mocks import SECRET_MARKER, PlatformMocks, RecordingMonitor, Registration, unwrap_secrets
from offline.runner import Export, Plan
from program import environments as env_list
from program.config import ConfigError, load
from program.environments import Environments
from program.model import SECRET_KEYS, PlatformConfig

PROJECT = "platform"
STACK = "unit"


@dataclass
class Recording:
    registrations: list[Registration]
    outputs: dict[str, Export]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name!r}, found {len(found)}")
        return found[0]

    def by_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


def record(
    build: Callable[[], Mapping[str, Any] | None], *, stack: str = STACK, project: str = PROJECT
) -> Recording:
    """Run ``build`` under recording mocks; it may return a map of Outputs to resolve."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    monitor = RecordingMonitor(PlatformMocks())
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
    outputs: dict[str, Export] = {}

    async def resolve(values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            output = pulumi.Output.from_input(value)
            outputs[key] = Export(await output.future(), bool(await output.is_secret()))

    @pulumi.runtime.test
    def program() -> Any:
        return resolve(build() or {})

    failed: list[BaseException] = []

    def quiet_after_failure(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # A failed run leaves futures holding its error; the test already got that error, so the
        # garbage collector's later "exception was never retrieved" would only be noise.
        if not failed:
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_after_failure)
    try:
        program()
    except BaseException as exc:
        failed.append(exc)
        raise
    finally:
        monitor.close()
        loop.close()
    return Recording(registrations=list(monitor.registrations.values()), outputs=outputs)


def plaintext_secrets(value: Any, path: str = "") -> list[str]:
    """Paths inside ``value`` where the fake-secret marker appears outside a secret wrapper."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, Mapping):
        return [hit for k, v in value.items() for hit in plaintext_secrets(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [hit for i, v in enumerate(value) for hit in plaintext_secrets(v, f"{path}[{i}]")]
    if isinstance(value, str) and SECRET_MARKER in value:
        return [path]
    return []


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


def unwrap(value: Any) -> Any:
    """A recorded input with its secret wrapper (if any) removed, for value assertions."""
    return value["value"] if rpc.is_rpc_secret(value) else value


# --- environments.yaml, changed for one test ----------------------------------------------------

#: Per environment: the fields to set (a field set to None is removed), or None to remove the
#: environment; a name not in the committed file is a new environment.
EnvironmentChanges = Mapping[str, Mapping[str, Any] | None]


@functools.cache
def _committed_environments_document() -> Any:
    return yaml.safe_load(env_list.DEFAULT_PATH.read_text())


def environments_document(changes: EnvironmentChanges | None = None) -> dict[str, Any]:
    """A deep copy of the committed environments.yaml document with ``changes`` applied (not parsed,
    so a test can hand a broken one to ``program.environments.parse``)."""
    document = copy.deepcopy(_committed_environments_document())
    entries = document["environments"]
    for name, fields in (changes or {}).items():
        if fields is None:
            entries.pop(name, None)
            continue
        entry = entries.setdefault(name, {})
        for key, value in copy.deepcopy(dict(fields)).items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
    return document


def environments_with(changes: EnvironmentChanges) -> Environments:
    """The committed environments.yaml with ``changes`` applied, parsed: every rule between
    environments holds for what is returned (``parse`` raises otherwise)."""
    return env_list.parse(environments_document(changes))


# --- Config cases: committed stack files, mutated, through the real loader ---------------------

StackConfig = Callable[[str], dict[str, Any]]
Mutation = Callable[[dict[str, Any]], None]


def load_config(
    stack: str,
    raw: dict[str, Any],
    secrets: Mapping[str, str] | None = None,
    environments: Environments | None = None,
) -> PlatformConfig:
    """``program.config.load`` on a stack file's ``config:`` map. Deploy-time secrets are never in
    a stack file (an operator sets them with --secret): placeholders stand in unless given.
    ``environments`` replaces the committed environments.yaml (see :func:`environments_with`)."""
    platform = {k.removeprefix("platform:"): v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.removeprefix("scaleway:"): v for k, v in raw.items() if k.startswith("scaleway:")}
    if secrets is None:
        secrets = {key: f"placeholder-{key}" for key in SECRET_KEYS}
    return load(platform, scaleway, stack=stack, project=PROJECT, secrets=secrets, environments=environments)


def config_problems(
    stack: str,
    raw: dict[str, Any],
    secrets: Mapping[str, str] | None = None,
    environments: Environments | None = None,
) -> list[str]:
    """Every problem ``load`` reports, or [] when the config is valid."""
    try:
        load_config(stack, raw, secrets, environments)
    except ConfigError as exc:
        return exc.problems
    return []


def new_problems(
    stack_config: StackConfig,
    stack: str,
    mutate: Mutation,
    secrets: Mapping[str, str] | None = None,
    environments: Environments | None = None,
) -> list[str]:
    """The problems a mutation of a committed stack file causes (with ``environments`` instead of
    the committed environments.yaml, when given). The committed file itself must be valid with the
    committed environments.yaml, so every problem returned comes from the changes."""
    committed = config_problems(stack, stack_config(stack))
    assert committed == [], f"the committed Pulumi.{stack}.yaml is invalid: {committed}"
    raw = stack_config(stack)
    mutate(raw)
    return config_problems(stack, raw, secrets, environments)


def upstream(plan: Any, reg: Registration) -> set[str]:
    """Every URN ``reg`` waits for, directly or through its dependencies (``plan``: an
    ``offline.runner.Plan``)."""
    by_urn = {r.urn: r for r in plan.registrations}
    seen: set[str] = set()
    todo = list(reg.dependencies)
    while todo:
        urn = todo.pop()
        if urn not in seen:
            seen.add(urn)
            todo.extend(by_urn[urn].dependencies if urn in by_urn else [])
    return seen


# --- No stack exports a kubeconfig (DESIGN.md §5) ----------------------------------------------
# Any stack allowed to read another's exports (a StackReference) would get that cluster's admin.


def _is_kubeconfig(document: Any) -> bool:
    return isinstance(document, Mapping) and (
        document.get("kind") == "Config"
        or {"clusters", "users"} <= set(document)
        or "current-context" in document
    )


def _parsed(text: str) -> list[Any]:
    """``text`` as YAML, and its base64 decoding as YAML, where they parse to a structure."""
    candidates = [text]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(text, validate=True).decode())
    documents = []
    for candidate in candidates:
        try:
            document = yaml.safe_load(candidate)
        except yaml.YAMLError:
            continue
        if isinstance(document, Mapping | list):
            documents.append(document)
    return documents


def kubeconfigs_in(value: Any, path: str) -> list[str]:
    """Paths in an export value that name or hold a kubeconfig."""
    if _is_kubeconfig(value):
        return [path]
    if isinstance(value, Mapping):
        hits = [f"{path}.{k}" for k in value if "kubeconfig" in str(k).lower()]
        return hits + [hit for k, v in value.items() for hit in kubeconfigs_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in kubeconfigs_in(v, f"{path}[{i}]")]
    if isinstance(value, str):
        return [hit for document in _parsed(value) for hit in kubeconfigs_in(document, path)]
    return []


def exported_kubeconfigs(plans: Mapping[str, Plan]) -> list[str]:
    """``<stack>:<export path>`` of every kubeconfig any of ``plans`` exports (by name or value)."""
    hits: list[str] = []
    for stack, plan in plans.items():
        for key, export in plan.exports.items():
            if "kubeconfig" in key.lower():
                hits.append(f"{stack}:{key}")
            hits.extend(f"{stack}:{hit}" for hit in kubeconfigs_in(export.value, key))
    return hits


def serve_changed_registration(
    monkeypatch: Any, change: Callable[[dict[str, Any]], Any], stack: str = "organization/platform/prod"
) -> None:
    """Serve the StackReference to ``stack`` a changed deep copy of its registration export
    (``change`` edits it in place, or returns a replacement): the cached plan stays untouched."""
    from scw_platform import contract

    original = PlatformMocks._stack_reference

    def reference(self: PlatformMocks, name: str) -> dict[str, Any]:
        state = original(self, name)
        if name != stack:
            return state
        outputs = dict(state["outputs"])
        registration = copy.deepcopy(unwrap_secrets(outputs[contract.REGISTRATION_KEY]))
        changed = change(registration)
        outputs[contract.REGISTRATION_KEY] = rpc.wrap_rpc_secret(registration if changed is None else changed)
        return {**state, "outputs": outputs}

    monkeypatch.setattr(PlatformMocks, "_stack_reference", reference)

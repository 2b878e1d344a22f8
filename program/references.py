"""Reading other stacks: the tooling stack's facts (workload side) and each registered environment's
registration (tooling side), through StackReferences.

The hub decides at composition time which environments to register, because a registered
environment gets resources (a cluster Secret, an AppProject, Applications) and resources may not be
created inside ``apply``. So the registration is awaited synchronously, the way the SDK itself awaits
invokes, and validated before the first resource of the stack is declared.

A StackReference to a stack that does not exist fails the whole update, and no ``try`` catches it
(pulumi/pulumi#16591, #19202). The hub therefore first asks a :class:`StackDirectory` whether the
stack exists; the real one asks the Pulumi CLI that runs the program (``pulumi stack ls --all
--json``), the offline plan passes the stacks it planned.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
from pulumi.runtime.sync_await import _sync_await

from program.environments import same_stack
from scw_platform.contract import (
    REGISTRATION_KEY,
    ProblemsError,
    Registration,
    ToolingFacts,
    parse_registration,
)


class StackDirectory(Protocol):
    def exists(self, stack: str) -> bool: ...


@dataclass(frozen=True)
class KnownStacks:
    """A fixed set of existing stacks (the offline plan's, and tests')."""

    names: frozenset[str]

    def exists(self, stack: str) -> bool:
        return any(same_stack(name, stack) for name in self.names)


class CliStackDirectory:
    """Existing stacks as the Pulumi CLI running this program lists them (same backend, same login).

    When the CLI cannot answer, every stack is taken to exist: a missing one then fails the update
    with the engine's own "unknown stack" error instead of being skipped silently.
    """

    def __init__(self) -> None:
        self._names: frozenset[str] | None = None

    def exists(self, stack: str) -> bool:
        names = self._listed()
        return names is None or any(same_stack(name, stack) for name in names)

    def _listed(self) -> frozenset[str] | None:
        if self._names is None:
            self._names = _cli_stacks()
        return self._names or None

    @staticmethod
    def names_from(listing: str) -> frozenset[str]:
        """Stack names in ``pulumi stack ls --json`` output."""
        entries = json.loads(listing)
        return frozenset(str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e)


def _cli_stacks() -> frozenset[str]:
    cli = shutil.which("pulumi")
    if cli is None:
        pulumi.log.warn("the pulumi CLI is not on PATH: cannot tell which registered stacks exist yet")
        return frozenset()
    try:
        done = subprocess.run(
            [cli, "stack", "ls", "--all", "--json"], capture_output=True, text=True, timeout=60, check=True
        )
        return CliStackDirectory.names_from(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
        pulumi.log.warn(
            f"`pulumi stack ls --all --json` failed ({exc}): taking every registered stack as deployed"
        )
        return frozenset()


def _details(reference: pulumi.StackReference, key: str) -> Any:
    details = _sync_await(reference.get_output_details(key))
    return details.secret_value if details.secret_value is not None else details.value


class ExportShapeError(ProblemsError):
    """A referenced stack exports the wrong shape."""

    def __init__(self, stack: str, problems: Iterable[str]) -> None:
        super().__init__(f"stack '{stack}' does not export what this stack reads", list(problems))


def read_tooling(name: str) -> ToolingFacts:
    """The tooling stack's facts, checked to be there (a stack that is not tooling's names the key)."""
    reference = pulumi.StackReference(name)
    missing = [key for key in ToolingFacts.KEYS if not isinstance(_details(reference, key), str)]
    if missing:
        raise ExportShapeError(
            name,
            [
                f"{name}:{key}: missing or not text (is it the stack of a tooling environment, and "
                "deployed? environments.yaml, managedBy)"
                for key in missing
            ],
        )
    # Outputs of the reference itself (one read), so what uses them depends on it as before.
    return ToolingFacts.read(reference)


@dataclass(frozen=True)
class Pending:
    """A registered environment the hub skipped this time, and why."""

    environment: str
    stack: str
    reason: str


def read_registration(
    environment: str,
    stack: str,
    *,
    directory: StackDirectory,
    registry_endpoint: str,
    hostname_allowed: Callable[[str], bool] | None = None,
) -> Registration | Pending:
    """Environment ``environment``'s registration from ``stack``, validated; or why it is pending
    (stack not deployed yet, or deployed without GitOps). Malformed exports raise
    :class:`scw_platform.contract.RegistrationError`."""
    if not directory.exists(stack):
        return _pending(environment, stack, "does not exist yet")
    value = _details(pulumi.StackReference(stack), REGISTRATION_KEY)
    if value is None:
        return _pending(environment, stack, f"exports no {REGISTRATION_KEY} yet")
    return parse_registration(
        value,
        stack=stack,
        environment=environment,
        registry_endpoint=registry_endpoint,
        hostname_allowed=hostname_allowed,
    )


def _pending(environment: str, stack: str, why: str) -> Pending:
    reason = (
        f"environment '{environment}' is not registered with Argo CD: stack '{stack}' {why}. "
        f"Run `pulumi up --stack {stack}`, then `pulumi up` on this stack again."
    )
    pulumi.log.warn(reason)
    return Pending(environment=environment, stack=stack, reason=reason)

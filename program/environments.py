"""The one list of environments (``environments.yaml``): name, role, private subnet, Scaleway
project, stack, DNS zone and hostnames, and which tooling environment registers each.

Every stack reads the whole list, so the rules that relate environments are checked by the plan
of any one stack, not only by tests: distinct Scaleway projects and stacks, non-overlapping private
subnets, a hostname served by one environment only, every registered environment managed by an
environment of role tooling. A stack file names its environment (``platform:environment``) and
holds only its own settings. Adding an environment is one entry here plus its stack file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from program import paths
from scw_platform.contract import ProblemsError
from scw_platform.settings import Hostname

#: The file, at the repository root (next to Pulumi.yaml).
FILE_NAME = "environments.yaml"
DEFAULT_PATH = paths.ENVIRONMENTS

Role = Literal["tooling", "production", "development"]
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
#: Names Argo CD or the platform already use: the root apps' project, Argo CD's built-in project
#: and in-cluster destination.
RESERVED_NAMES = frozenset({"platform", "default", "in-cluster"})
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

#: A hostname, or ``*.<domain>``: any name one label below the domain (as a DNS or TLS wildcard).
HostPattern = Annotated[
    str,
    StringConstraints(max_length=253, pattern=r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"),
]


def matches(pattern: str, hostname: str) -> bool:
    """``hostname`` is ``pattern``, or one label below a ``*.`` pattern's domain."""
    if not pattern.startswith("*."):
        return hostname == pattern
    label, _, rest = hostname.partition(".")
    return bool(label) and rest == pattern[2:]


def overlap(a: str, b: str) -> bool:
    """Some hostname matches both patterns."""
    if a.startswith("*.") and b.startswith("*."):
        return a == b
    return matches(a, b) or matches(b, a)


class EnvironmentsError(ProblemsError):
    """``environments.yaml`` is unreadable or breaks a rule; nothing is created."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)", problems)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Dns(_Model):
    #: The DNS zone the environment's hostnames live in (e.g. example.com).
    zone: Hostname
    #: Every hostname the environment's stack may serve (apps, redirects, Argo CD's UI), as names or
    #: ``*.<domain>`` patterns; no name may be another environment's.
    hostnames: list[HostPattern] = Field(default_factory=list)


class Entry(_Model):
    role: Role
    #: The environment's private network (RFC 1918, /16 to /28).
    subnet: str
    #: The Scaleway project every identity of the environment is scoped to.
    project_id: Annotated[str, StringConstraints(pattern=_UUID)]
    #: The Pulumi stack (``organization/project/stack``) other stacks reference it by.
    stack: Annotated[str, StringConstraints(max_length=200, pattern=r"^[\w.-]+(/[\w.-]+){0,2}$")]
    #: Workload environments: the environment of role tooling whose Argo CD registers this one.
    managed_by: str | None = None
    dns: Dns | None = None


@dataclass(frozen=True)
class Environments:
    entries: Mapping[str, Entry]
    #: Where the list came from, for messages.
    source: str = FILE_NAME

    def subnet(self, name: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.entries[name].subnet)

    def subnets(self) -> dict[str, ipaddress.IPv4Network]:
        return {name: self.subnet(name) for name in sorted(self.entries)}

    def registered_by(self, tooling: str) -> list[str]:
        """The environments ``tooling``'s Argo CD registers, by name."""
        return sorted(name for name, entry in self.entries.items() if entry.managed_by == tooling)

    def tooling_stack_of(self, name: str) -> str | None:
        """The stack of the tooling environment that registers ``name`` (None: not registered)."""
        managed_by = self.entries[name].managed_by
        return self.entries[managed_by].stack if managed_by is not None else None

    def registered_stacks_of(self, tooling: str) -> dict[str, str]:
        """The stack of each environment ``tooling`` registers, by environment."""
        return {env: self.entries[env].stack for env in self.registered_by(tooling)}

    def key(self, name: str, field: str) -> str:
        """A key path into the file, for messages: ``environments.yaml: prod.managedBy``."""
        return f"{self.source}: {name}.{field}"


def same_stack(listed: str, wanted: str) -> bool:
    """``org/project/stack`` names compared on the parts both spell out. A backend may list a stack
    as ``stack``, ``org/stack`` or ``org/project/stack``; a two-part name is taken as either
    ``org/stack`` or ``project/stack``, since the directory only decides whether to read a stack
    (a wrong yes ends in the engine's own "unknown stack" error, never in a skipped environment)."""
    a, b = listed.split("/"), wanted.split("/")
    if a[-1] != b[-1]:
        return False
    short, full = sorted((a, b), key=len)
    if len(short) == 1 or len(short) == len(full):
        return short == full[-len(short) :]
    return short[0] in full[:-1]


def load_file(path: Path = DEFAULT_PATH) -> Environments:
    """Read and check ``path``; every problem (YAML syntax with line and column included) raises
    :class:`EnvironmentsError`."""
    source = path.name
    try:
        document = load_yaml(path.read_text())
    except FileNotFoundError:
        raise EnvironmentsError(source, [f"missing: the list of environments is {path}"]) from None
    except yaml.YAMLError as exc:
        raise EnvironmentsError(source, [yaml_problem(exc)]) from None
    return parse(document, source)


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a duplicated environment or setting
    must be an error instead."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeys)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: <what>`` of a YAML syntax error (PyYAML counts from 0)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML ({what})"


def parse(document: Any, source: str = FILE_NAME) -> Environments:
    problems: list[str] = []
    raw = document.get("environments") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or set(document) != {"environments"}
        or not isinstance(raw, dict)
        or not raw
    ):
        raise EnvironmentsError(source, ["must be a map with one key, environments: {<name>: {...}, ...}"])
    entries: dict[str, Entry] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{name}: environment names are lowercase DNS labels of at most 20 characters")
            continue
        if name in RESERVED_NAMES:
            problems.append(
                f"{name}: reserved ({', '.join(sorted(RESERVED_NAMES))} are Argo CD's or the platform's)"
            )
            continue
        try:
            entries[name] = Entry.model_validate(value)
        except ValidationError as exc:
            problems.extend(_describe(name, error) for error in exc.errors())
    if not problems:
        problems.extend(_cross_rules(entries))
    if problems:
        raise EnvironmentsError(source, problems)
    return Environments(entries=entries, source=source)


def _describe(name: str, error: Any) -> str:
    loc = ".".join(to_camel(str(part)) if isinstance(part, str) else f"[{part}]" for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key (allowed: {', '.join(to_camel(f) for f in Entry.model_fields)})"
    return f"{name}.{loc}: {message}".replace(".[", "[")


def _cross_rules(entries: Mapping[str, Entry]) -> list[str]:
    problems = [*_subnet_rules(entries), *_unique("projectId", entries), *_unique("stack", entries)]
    for name, entry in sorted(entries.items()):
        managed_by = entry.managed_by
        if managed_by is None:
            continue
        if entry.role == "tooling":
            problems.append(f"{name}.managedBy: an environment of role tooling registers others, not itself")
        elif managed_by not in entries or entries[managed_by].role != "tooling":
            tooling = sorted(n for n, e in entries.items() if e.role == "tooling")
            problems.append(
                f"{name}.managedBy: must name an environment of role tooling "
                f"(here: {', '.join(tooling) or 'none'})"
            )
    return problems + _hostname_rules(entries)


def _subnet_rules(entries: Mapping[str, Entry]) -> list[str]:
    problems: list[str] = []
    subnets: dict[str, ipaddress.IPv4Network] = {}
    # In file order: an entry that clashes with one above it is the one named.
    for name, entry in entries.items():
        try:
            net = ipaddress.IPv4Network(entry.subnet, strict=True)
        except ValueError as exc:
            problems.append(f"{name}.subnet: must be an IPv4 network in CIDR notation ({exc})")
            continue
        # Not ``is_private``: that also admits loopback, link-local and documentation ranges.
        if not any(net.subnet_of(block) for block in _RFC1918):
            problems.append(f"{name}.subnet: must be a private (RFC 1918) range, got {net}")
        elif not 16 <= net.prefixlen <= 28:
            problems.append(f"{name}.subnet: prefix length must be between /16 and /28, got /{net.prefixlen}")
        for other, other_net in subnets.items():
            if net.overlaps(other_net):
                problems.append(
                    f"{name}.subnet: {net} overlaps {other}'s {other_net}; environments share no address"
                )
        subnets[name] = net
    return problems


def _unique(field: str, entries: Mapping[str, Entry]) -> list[str]:
    seen: dict[str, str] = {}
    problems: list[str] = []
    attribute = {"projectId": "project_id", "stack": "stack"}[field]
    for name, entry in entries.items():
        value = getattr(entry, attribute)
        if value in seen:
            why = "one Scaleway project per environment" if field == "projectId" else "one stack each"
            problems.append(f"{name}.{field}: {value} is {seen[value]}'s too ({why})")
        seen.setdefault(value, name)
    return problems


def _hostname_rules(entries: Mapping[str, Entry]) -> list[str]:
    problems: list[str] = []
    owners: list[tuple[str, str]] = []
    for name, entry in entries.items():
        if entry.dns is None:
            continue
        zone = entry.dns.zone
        for i, pattern in enumerate(entry.dns.hostnames):
            where = f"{name}.dns.hostnames[{i}]"
            domain = pattern.removeprefix("*.")
            if domain != zone and not domain.endswith(f".{zone}"):
                problems.append(f"{where}: {pattern} is not in the zone {zone}")
                continue
            taken = [f"{other}'s {theirs}" for other, theirs in owners if overlap(pattern, theirs)]
            if taken:
                problems.append(
                    f"{where}: {pattern} overlaps {', '.join(taken)} (one environment per hostname)"
                )
            owners.append((name, pattern))
    return problems

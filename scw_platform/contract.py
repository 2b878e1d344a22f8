"""The contracts between stacks (DESIGN.md §5: the hub pulls, spokes hold nothing in the hub).

Two directions, each defined once here and used on both sides:

* :class:`ToolingFacts`: what a workload stack reads from the tooling stack (the registry endpoint,
  tooling's egress address). Nothing in it acts in tooling: tooling exports no kubeconfig, no
  identity of its own cluster and no registry key (each environment declares its own pull
  identity: ``scw_platform.registry.pull_identity``).
* :class:`Registration`: what the tooling stack reads from each workload stack, as one secret
  export (:data:`REGISTRATION_KEY`): the API server URL, its CA, the ``argocd-manager`` token,
  the namespaces Argo CD may manage, the platform facts and the apps to deliver. Tooling builds
  the Argo CD cluster Secret itself, from these validated fields only, so a spoke can neither name
  an exec provider (Argo CD runs ``execProviderConfig`` commands inside its own pods) nor point
  ``server`` at tooling's in-cluster API.

:func:`parse_registration` is the hub's guard: anything a workload stack exports is untrusted
input, refused with every problem named by stack and key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

#: The one export a workload stack offers its hub; a secret, because it carries the token.
REGISTRATION_KEY = "argocdRegistration"
#: Bumped when the shape changes; the hub refuses shapes it does not know.
REGISTRATION_VERSION = 1
REGISTRATION_FIELDS = ("version", "environment", "server", "caData", "token", "namespaces", "facts", "apps")
APP_FIELDS = ("name", "path", "image", "strategy", "allowTags", "hostname")
#: The image updater's strategies, and ``promotion``: no image updater for the app, its images
#: arrive only by promotion from another environment (``ops/promote.py``).
PROMOTION = "promotion"
UPDATE_STRATEGIES = ("semver", "digest", "newest-build", "alphabetical", PROMOTION)

#: Namespaces that belong to the platform's own controllers: never a destination Argo CD may
#: deploy apps into (DESIGN.md §7: a commit reaches app namespaces only).
PLATFORM_NAMESPACES = frozenset(
    {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "argocd",
        "argocd-manager",
        "traefik",
        "cert-manager",
        "external-secrets",
        "monitoring",
        "restore-check",
        # The CI runners' (scw_platform.ci): the program declares them with their envelope.
        "ci",
        # Argo Rollouts' controller (scw_platform.delivery).
        "argo-rollouts",
        "arc-system",
    }
)

#: A Kapsule API server: ``https://<cluster uuid>.api.k8s.<region>.scw.cloud:6443``. Anything else
#: (``https://kubernetes.default.svc``, a loopback or private address, a plain-http URL) is refused:
#: Argo CD serves an in-cluster URL with its own controller's credentials.
_KAPSULE_SERVER = re.compile(
    r"^https://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"\.api\.k8s\.(fr-par|nl-ams|pl-waw)\.scw\.cloud:6443$"
)
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,8192}$")
_REPO_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_FACT_VALUE = re.compile(r"^[^\s]{0,253}$")
_PEM_HEADER = b"-----BEGIN CERTIFICATE-----"
_PEM_FOOTER = b"-----END CERTIFICATE-----"
#: Bounds on what a spoke may hand over: the cluster Secret must stay far below etcd's 1.5 MiB.
_MAX_CA = 16_384
_MAX_NAMESPACES = 200
_MAX_APPS = 500
_MAX_FACTS = 32
#: An image repository without tag: the image updater writes the tag (config's apps[].image too).
IMAGE_PATTERN = r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$"
_IMAGE = re.compile(IMAGE_PATTERN)


@dataclass(frozen=True, kw_only=True)
class ToolingFacts:
    """What workload stacks read from tooling. The keys are the tooling stack's export names."""

    registry_endpoint: pulumi.Input[str]
    egress_ip: pulumi.Input[str]

    KEYS = ("registryEndpoint", "egressIp")

    def exports(self) -> dict[str, pulumi.Input[str]]:
        return {"registryEndpoint": self.registry_endpoint, "egressIp": self.egress_ip}

    @classmethod
    def read(cls, reference: pulumi.StackReference) -> ToolingFacts:
        def text(key: str) -> pulumi.Output[str]:
            return pulumi.Output.from_input(reference.require_output(key)).apply(str)

        return cls(registry_endpoint=text("registryEndpoint"), egress_ip=text("egressIp"))


@dataclass(frozen=True, kw_only=True)
class RegisteredApp:
    """An app the hub delivers to a workload environment (its Application and image updates)."""

    name: str
    #: The app's directory in the GitOps repository.
    path: str
    image: str
    strategy: str = "semver"
    allow_tags: str | None = None
    #: The app's public hostname: the hub's cluster probes it (cross-cluster probes), so losing
    #: the environment's own cluster, probes included, is still seen.
    hostname: str | None = None

    def export(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "image": self.image,
            "strategy": self.strategy,
            "allowTags": self.allow_tags,
            **({"hostname": self.hostname} if self.hostname is not None else {}),
        }


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A workload environment as the hub sees it, validated (see :func:`parse_registration`)."""

    environment: str
    server: str
    #: Base64 PEM of the cluster's CA.
    ca_data: str
    #: Secret: the ``argocd-manager`` service account's token. Keep it in ``pulumi.Output.secret``.
    token: str
    namespaces: tuple[str, ...]
    facts: Mapping[str, str]
    apps: tuple[RegisteredApp, ...]


#: The registry the hub's image updater and the environment's nodes pull from (``rg.<region>...``).
FACT_REGISTRY_ENDPOINT = "registry-endpoint"


@dataclass(frozen=True, kw_only=True)
class PlatformFacts:
    """What a workload stack registers about itself: annotations ``platform.scw/<fact>`` on the
    hub's cluster Secret, for ApplicationSet cluster generators and for people. The one spelling
    of the fact names, used by the spoke that writes them and the hub that adds its own."""

    environment: str
    registry_endpoint: pulumi.Input[str]
    database_host: pulumi.Input[str] | None = None
    ingress_ip: pulumi.Input[str] | None = None

    def items(self) -> dict[str, pulumi.Input[str]]:
        facts: dict[str, pulumi.Input[str]] = {
            "environment": self.environment,
            FACT_REGISTRY_ENDPOINT: self.registry_endpoint,
        }
        if self.database_host is not None:
            facts["database-host"] = self.database_host
        if self.ingress_ip is not None:
            facts["ingress-ip"] = self.ingress_ip
        return facts


def registration_export(
    *,
    environment: str,
    server: pulumi.Input[str],
    ca_data: pulumi.Input[str],
    token: pulumi.Input[str],
    namespaces: Sequence[str],
    facts: Mapping[str, pulumi.Input[str]],
    apps: Sequence[RegisteredApp],
    ready: Sequence[pulumi.Input[Any]] = (),
) -> pulumi.Output[dict[str, Any]]:
    """The workload stack's side: the :data:`REGISTRATION_KEY` export (a secret). It resolves only
    once every value in ``ready`` has (e.g. the apps' ExternalSecrets: Argo CD's first sync needs
    the Secret its pods and the parity gate read), so the hub never delivers an app whose envelope
    is not there yet."""
    return pulumi.Output.secret(
        pulumi.Output.all(
            server=server,
            ca=ca_data,
            token=token,
            facts=pulumi.Output.all(**facts) if facts else {},
            ready=pulumi.Output.all(*ready),
        ).apply(
            lambda parts: {
                "version": REGISTRATION_VERSION,
                "environment": environment,
                "server": parts["server"],
                "caData": parts["ca"],
                "token": parts["token"],
                "namespaces": sorted(namespaces),
                "facts": dict(sorted(parts["facts"].items())),
                "apps": [app.export() for app in apps],
            }
        )
    )


class _Problems:
    """Collects ``<stack>:argocdRegistration.<key>: message`` lines."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.items: list[str] = []

    def __call__(self, key: str, message: str) -> None:
        self.items.append(f"{self.stack}:{REGISTRATION_KEY}{'.' + key if key else ''}: {message}")


class ProblemsError(pulumi.RunError):
    """Every problem of one input, listed under a headline. ``pulumi.RunError`` makes the engine
    print only the message (no traceback); the offline tools exit 2 on it."""

    def __init__(self, headline: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{headline}, nothing was created:\n{lines}")


class RegistrationError(ProblemsError):
    """A workload stack's registration export is malformed; the hub registers nothing from it."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        super().__init__(
            f"stack '{stack}' exports an invalid {REGISTRATION_KEY}: {len(problems)} problem(s)", problems
        )


def parse_registration(
    value: Any,
    *,
    stack: str,
    environment: str,
    registry_endpoint: str,
    hostname_allowed: Callable[[str], bool] | None = None,
) -> Registration:
    """Validate what ``stack`` exported under :data:`REGISTRATION_KEY` for ``environment``.

    Every problem is reported (``<stack>:argocdRegistration.<key>: ...``); any problem raises
    :class:`RegistrationError`. ``registry_endpoint`` (``rg.<region>.scw.cloud/<namespace>``) is
    the only registry an app's image may come from: the image updater logs in to it alone.
    ``hostname_allowed`` says whether an app's hostname is one the environment may serve (the hub
    knows the list of environments); without it, any hostname-shaped value passes.
    """
    problem = _Problems(stack)
    problems = problem.items
    if not isinstance(value, Mapping):
        problem("", f"must be a map with keys {', '.join(REGISTRATION_FIELDS)}, got {type(value).__name__}")
        raise RegistrationError(stack, problems)
    _exact_keys(value, REGISTRATION_FIELDS, "", problem)
    if value.get("version") != REGISTRATION_VERSION:
        problem("version", f"must be {REGISTRATION_VERSION}, got {value.get('version')!r}")
    if value.get("environment") != environment:
        problem("environment", f"must be {environment!r} (the environment this stack is registered as)")
    server = _server(value.get("server"), problem)
    ca_data = _ca_data(value.get("caData"), problem)
    token = value.get("token")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        problem("token", "must be a service account token (1-8192 characters of A-Z a-z 0-9 . _ -)")
    namespaces = _namespaces(value.get("namespaces"), problem)
    facts = _facts(value.get("facts"), problem)
    # The shape check always applies: the hostname becomes a probe target and an alert rule's
    # label matcher, so the environment's own predicate only narrows it.
    allowed = hostname_allowed or (lambda _: True)
    apps = _apps(
        value.get("apps"),
        set(namespaces),
        registry_endpoint,
        problem,
        lambda hostname: _is_hostname(hostname) and allowed(hostname),
    )
    if problems:
        raise RegistrationError(stack, problems)
    return Registration(
        environment=environment,
        server=server,
        ca_data=ca_data,
        token=str(token),
        namespaces=tuple(sorted(namespaces)),
        facts=facts,
        apps=tuple(apps),
    )


_HOSTNAME = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _is_hostname(value: str) -> bool:
    return len(value) <= 253 and _HOSTNAME.fullmatch(value) is not None


def _exact_keys(
    value: Mapping[str, Any],
    allowed: Sequence[str],
    path: str,
    problem: _Problems,
    optional: Sequence[str] = (),
) -> None:
    prefix = f"{path}." if path else ""
    for key in sorted(set(value) - set(allowed), key=str):
        problem(f"{prefix}{key}", f"unknown key (allowed: {', '.join(allowed)})")
    for key in allowed:
        if key not in value and key not in optional:
            problem(f"{prefix}{key}", "missing")


def _server(server: Any, problem: _Problems) -> str:
    if not isinstance(server, str) or not _KAPSULE_SERVER.fullmatch(server):
        problem(
            "server",
            "must be a Kapsule API server URL https://<cluster-id>.api.k8s.<region>.scw.cloud:6443 "
            f"(never an in-cluster, private or plain-http address), got {str(server)[:80]!r}",
        )
        return ""
    return server


def _ca_data(ca_data: Any, problem: _Problems) -> str:
    text = ca_data if isinstance(ca_data, str) and len(ca_data) <= _MAX_CA else ""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not (decoded.startswith(_PEM_HEADER) and decoded.rstrip().endswith(_PEM_FOOTER)):
        problem(
            "caData",
            "must be the base64 of PEM certificates (-----BEGIN CERTIFICATE----- ... "
            f"-----END CERTIFICATE-----), at most {_MAX_CA} characters",
        )
        return ""
    return text


def _namespaces(namespaces: Any, problem: _Problems) -> list[str]:
    if not isinstance(namespaces, list) or not 0 < len(namespaces) <= _MAX_NAMESPACES:
        problem("namespaces", f"must be a list of 1 to {_MAX_NAMESPACES} namespace names")
        return []
    valid: list[str] = []
    for i, ns in enumerate(namespaces):
        if not isinstance(ns, str) or not _DNS_LABEL.fullmatch(ns):
            problem(f"namespaces[{i}]", f"must be a DNS label (a-z, 0-9, -), got {str(ns)[:80]!r}")
        elif ns in PLATFORM_NAMESPACES:
            problem(f"namespaces[{i}]", f"'{ns}' is a platform namespace: Argo CD never deploys there")
        elif ns in valid:
            problem(f"namespaces[{i}]", f"'{ns}' is listed twice")
        else:
            valid.append(ns)
    return valid


def _facts(facts: Any, problem: _Problems) -> dict[str, str]:
    if not isinstance(facts, Mapping) or len(facts) > _MAX_FACTS:
        problem("facts", f"must be a map of at most {_MAX_FACTS} fact names to text")
        return {}
    valid: dict[str, str] = {}
    for key, fact in sorted(facts.items(), key=lambda item: str(item[0])):
        if not isinstance(key, str) or not _DNS_LABEL.fullmatch(key):
            problem(f"facts.{key}", "fact names are DNS labels (a-z, 0-9, -)")
        elif not isinstance(fact, str) or not _FACT_VALUE.fullmatch(fact):
            problem(f"facts.{key}", "must be text of at most 253 characters without white space")
        else:
            valid[key] = fact
    return valid


def _apps(
    apps: Any,
    namespaces: set[str],
    registry_endpoint: str,
    problem: _Problems,
    hostname_allowed: Callable[[str], bool],
) -> list[RegisteredApp]:
    if not isinstance(apps, list) or len(apps) > _MAX_APPS:
        problem("apps", f"must be a list of at most {_MAX_APPS} apps")
        return []
    valid: list[RegisteredApp] = []
    for i, app in enumerate(apps):
        parsed = _app(
            app, f"apps[{i}]", namespaces, registry_endpoint, problem, hostname_allowed=hostname_allowed
        )
        if parsed is not None and parsed.name in {a.name for a in valid}:
            problem(f"apps[{i}].name", f"app '{parsed.name}' is listed twice")
        elif parsed is not None:
            valid.append(parsed)
    return valid


def _app(
    app: Any,
    path: str,
    namespaces: set[str],
    registry_endpoint: str,
    problem: _Problems,
    *,
    hostname_allowed: Callable[[str], bool],
) -> RegisteredApp | None:
    if not isinstance(app, Mapping):
        problem(path, "must be a map")
        return None
    before = len(problem.items)
    # A null allowTags does not survive an export (Pulumi drops null map values): optional; a
    # registration from before cross-cluster probes has no hostname.
    _exact_keys(app, APP_FIELDS, path, problem, optional=("allowTags", "hostname"))
    name, repo_path, image = app.get("name"), app.get("path"), app.get("image")
    if not isinstance(name, str) or name not in namespaces or name == "root":
        problem(
            f"{path}.name", "must be one of the registered namespaces (an app runs in its own), never root"
        )
    if (
        not isinstance(repo_path, str)
        or len(repo_path) > 255
        or not _REPO_PATH.fullmatch(repo_path)
        or {".", ".."} & set(repo_path.split("/"))
    ):
        problem(f"{path}.path", "must be a relative path in the GitOps repository, without '.' or '..'")
    if (
        not isinstance(image, str)
        or not _IMAGE.fullmatch(image)
        or not image.startswith(f"{registry_endpoint}/")
    ):
        problem(f"{path}.image", f"must be an image of the platform registry {registry_endpoint}/")
    strategy, allow_tags = app.get("strategy"), app.get("allowTags")
    if strategy not in UPDATE_STRATEGIES:
        problem(f"{path}.strategy", f"must be one of {', '.join(UPDATE_STRATEGIES)}")
    if allow_tags is not None and not _compiles(allow_tags):
        problem(f"{path}.allowTags", "must be a regular expression (or null)")
    hostname = app.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not hostname_allowed(hostname)):
        problem(
            f"{path}.hostname",
            "must be one of the environment's hostnames (environments.yaml: <environment>.dns.hostnames)",
        )
    if len(problem.items) != before:
        return None
    return RegisteredApp(
        name=str(name),
        path=str(repo_path),
        image=str(image),
        strategy=str(strategy),
        allow_tags=allow_tags,
        hostname=hostname,
    )


#: What Python's re accepts and Go's regexp (RE2, which the image updater compiles the pattern
#: with) refuses: look-arounds and backreferences.
NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")


def tag_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a tag pattern both Python and the image updater (Go) accept."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"must be a valid regular expression ({exc})"
    if NOT_RE2.search(pattern):
        return (
            "must be an RE2 expression, as the image updater (Go) reads it: no look-arounds or backreferences"
        )
    return None


def _compiles(pattern: Any) -> bool:
    return isinstance(pattern, str) and bool(pattern) and tag_pattern_problem(pattern) is None

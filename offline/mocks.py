"""Recording mocks: run the real program with no engine, no cloud and no cluster.

``RecordingMonitor`` sees every ``RegisterResource`` request the program makes and keeps what a
reviewer needs (type, name, parent, provider, protect, retain-on-delete, dependencies, inputs with
secrets still marked). It also does two things the stock mock monitor does not:

* it applies ``additional_secret_outputs`` to mocked state, as the engine does, so a kubeconfig or
  an API secret key comes back secret exactly as in a real deployment;
* it refuses a second resource with an already registered URN (the stock monitor silently keeps
  the last one, hiding a real conflict).

``PlatformMocks`` returns plausible provider outputs (IDs, addresses, kubeconfigs) derived
deterministically from the URN, so two runs produce identical plans.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

#: Every fake secret value contains this marker, so a leak scanner can find plaintext copies.
SECRET_MARKER = "MOCKSECRET"
_NAMESPACE = uuid.UUID("6f1c3a52-25b8-4c1e-9d1e-9f6c1b7e5a10")


class DuplicateUrnError(Exception):
    pass


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    id: str
    parent: str
    provider: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    dependencies: list[str]
    #: Deserialized inputs; secret values are still wrapped (see ``rpc.is_rpc_secret``).
    inputs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    aliases: int = 0
    #: Read from elsewhere (StackReference, get) rather than managed by this stack.
    read: bool = False

    @property
    def provider_urn(self) -> str:
        """The provider reference is ``urn::id``; keep the URN."""
        return self.provider.rsplit("::", 1)[0] if self.provider else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fake_uuid(seed: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, seed))


def fake_secret(seed: str) -> str:
    return f"{SECRET_MARKER}-{_digest(seed)[:24]}"


def _fake_public_ip(seed: str) -> str:
    d = bytes.fromhex(_digest(seed)[:4])
    return f"51.158.{d[0]}.{max(d[1], 1)}"


def _fake_kubeconfig(seed: str, server: str) -> str:
    name = seed.rsplit("::", 1)[-1]
    token = fake_secret(f"{seed}/token")
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {fake_secret(seed + '/ca')}\n"
        f"users:\n- name: admin\n  user:\n    token: {token}\n"
        f"contexts:\n- name: admin@{name}\n  context:\n    cluster: {name}\n    user: admin\n"
        f"current-context: admin@{name}\n"
    )


def _fake_ca(seed: str) -> str:
    """Base64 of a PEM block, as Kapsule returns a cluster's CA (the body is a marked fake)."""
    body = base64.b64encode(fake_secret(seed + "/ca").encode()).decode()
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    return base64.b64encode(pem.encode()).decode()


def _cluster_outputs(seed: str, inputs: dict[str, Any]) -> dict[str, Any]:
    region = inputs.get("region", "fr-par")
    server = f"https://{fake_uuid(seed)}.api.k8s.{region}.scw.cloud:6443"
    return {
        "apiserverUrl": server,
        "wildcardDns": f"*.{fake_uuid(seed)}.nodes.k8s.{region}.scw.cloud",
        "kubeconfigs": [
            {
                "configFile": _fake_kubeconfig(seed, server),
                "host": server,
                "clusterCaCertificate": _fake_ca(seed),
                "token": fake_secret(seed + "/token"),
            }
        ],
    }


def _cockpit_source_outputs(seed: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A Cockpit data source's URLs: ``https://<id>.<type>.cockpit.<region>.scw.cloud``."""
    kind, region = inputs.get("type") or "metrics", inputs.get("region") or "fr-par"
    url = f"https://{fake_uuid(seed)}.{kind}.cockpit.{region}.scw.cloud"
    push = {"metrics": "/api/v1/push", "logs": "/loki/api/v1/push", "traces": "/otlp/v1/traces"}
    return {"id": f"{region}/{fake_uuid(seed)}", "url": url, "pushUrl": url + push.get(kind, "")}


def _token_secret_outputs(seed: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs.get("type") != "kubernetes.io/service-account-token":
        return {}
    token, ca = (base64.b64encode(fake_secret(seed + part).encode()).decode() for part in ("/token", "/ca"))
    return {"data": {"token": token, "ca.crt": ca}}


#: What a made-up value looks like: a UUID (IDs, cluster and Cockpit hosts) or an IPv4 address.
_MADE_UP = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|^\d{1,3}(\.\d{1,3}){3}$")


class PlatformMocks(pulumi_mocks.Mocks):
    """Plausible outputs for the resource types the platform declares."""

    def __init__(
        self, stack_outputs: dict[str, dict[str, Any]] | None = None, mocked: Iterable[str] = ()
    ) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}
        #: Exports of referenced stacks, by reference name: objects with ``value`` and ``secret``.
        self._stack_outputs = stack_outputs or {}
        #: Every ID, address and URL these mocks made up (the referenced stacks' included), so the
        #: plan can mark them: they read like live values and are not.
        self.mocked: set[str] = set(mocked)

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "scaleway:observability/getSource:getSource":
            # The project's own Cockpit data sources (e.g. origin scaleway, type metrics) exist
            # without the program; it reads them by origin and type.
            inputs = dict(args.args)
            seed = f"{args.token}::{inputs.get('origin')}/{inputs.get('type')}/{inputs.get('projectId')}"
            computed = _cockpit_source_outputs(seed, inputs)
            self._remember(computed)
            return {**inputs, **computed}, []
        raise NotImplementedError(
            f"the offline plan mocks one invoke (getSource); the program called {args.token}"
        )

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return args.name, self._stack_reference(args.name)
        seed = f"{args.typ}::{args.name}"
        inputs = dict(args.inputs)
        location = inputs.get("zone") or inputs.get("region") or "fr-par"
        resource_id = f"{location}/{fake_uuid(seed)}" if args.typ.startswith("scaleway:") else fake_uuid(seed)
        # An imported resource (`import_`) keeps the ID it is imported by, as with the engine.
        if not args.resource_id:
            self.mocked.add(resource_id)
        resource_id = args.resource_id or resource_id
        computed = self._computed(args.typ, seed, inputs)
        self._remember(computed)
        state = {**inputs, **computed}
        self._by_id[resource_id] = state
        return resource_id, state

    def _remember(self, computed: Any) -> None:
        """Made-up IDs, addresses and URLs (not names or zones the config chose)."""
        if isinstance(computed, dict):
            for value in computed.values():
                self._remember(value)
        elif isinstance(computed, list):
            for value in computed:
                self._remember(value)
        elif isinstance(computed, str) and _MADE_UP.search(computed) and SECRET_MARKER not in computed:
            self.mocked.add(computed)

    def _computed(self, typ: str, seed: str, inputs: dict[str, Any]) -> dict[str, Any]:
        compute = {
            "scaleway:network/publicGatewayIp:PublicGatewayIp": lambda: {"address": _fake_public_ip(seed)},
            "scaleway:loadbalancers/ip:Ip": lambda: {"ipAddress": _fake_public_ip(seed)},
            "scaleway:kubernetes/cluster:Cluster": lambda: _cluster_outputs(seed, inputs),
            "scaleway:databases/instance:Instance": lambda: self._instance_outputs(inputs),
            "scaleway:registry/namespace:Namespace": lambda: {
                "endpoint": f"rg.{inputs.get('region', 'fr-par')}.scw.cloud/{inputs.get('name')}"
            },
            "scaleway:observability/source:Source": lambda: _cockpit_source_outputs(seed, inputs),
            "scaleway:observability/token:Token": lambda: {"secretKey": fake_secret(seed)},
            "scaleway:observability/alertManager:AlertManager": lambda: {
                "alertManagerUrl": f"https://{fake_uuid(seed)}.alertmanager.cockpit."
                f"{inputs.get('region') or 'fr-par'}.scw.cloud"
            },
            "scaleway:iam/apiKey:ApiKey": lambda: {
                "accessKey": "SCW" + _digest(seed)[:17].upper(),
                "secretKey": fake_secret(seed),
            },
            # The token controller fills a service-account-token Secret's data after creation.
            "kubernetes:core/v1:Secret": lambda: _token_secret_outputs(seed, inputs),
            "random:index/randomPassword:RandomPassword": lambda: {
                "result": fake_secret(seed),
                "bcryptHash": fake_secret(seed + "/bcrypt"),
            },
        }.get(typ)
        return compute() if compute else {}

    def _stack_reference(self, name: str) -> dict[str, Any]:
        # A stack that was not planned (not deployed, as far as this plan knows) exports nothing;
        # the program reports what it misses.
        exports = self._stack_outputs.get(name, {})
        return {
            "name": name,
            "outputs": {k: rpc.wrap_rpc_secret(e.value) if e.secret else e.value for k, e in exports.items()},
            "secretOutputNames": sorted(k for k, e in exports.items() if e.secret),
        }

    def _instance_outputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        endpoint = dict(inputs.get("privateNetwork") or {})
        if endpoint:
            endpoint.update(ip=self._address_in(endpoint.get("pnId"), 5), port=5432)
        return {"privateNetwork": endpoint, "loadBalancer": None}

    def _address_in(self, private_network_id: Any, host: int) -> str:
        network = self._by_id.get(str(private_network_id), {})
        subnet = (network.get("ipv4Subnet") or {}).get("subnet", "10.0.0.0/24")
        return str(ipaddress.IPv4Network(subnet)[host])


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        # The SDK registers resources from several worker threads at once: claim each URN under a
        # lock, or two registrations of one URN both pass the check and the last silently wins.
        self._claimed: set[str] = set()
        self._claim_lock = threading.Lock()
        # The SDK calls the monitor from worker threads, each of which gets an event loop of its
        # own; they are kept so close() can release them instead of leaving them to the GC.
        self._loops: set[asyncio.AbstractEventLoop] = set()

    def close(self) -> None:
        for loop in self._loops:
            if not loop.is_running():
                loop.close()
        self._loops.clear()

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Reads (StackReference, ``get``) are recorded too: they are part of what a stack uses."""
        response = super().ReadResource(request)
        self.registrations[response.urn] = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            id=request.id,
            parent=request.parent,
            provider=request.provider,
            custom=True,
            protect=False,
            retain_on_delete=False,
            delete_before_replace=False,
            dependencies=sorted(request.dependencies),
            inputs=rpc.deserialize_properties(request.properties),
            read=True,
        )
        return response

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        with self._claim_lock:
            if urn in self._claimed:
                raise DuplicateUrnError(f"two resources share the URN {urn}")
            self._claimed.add(urn)
        self._loops.add(_ensure_event_loop())

        inputs = rpc.deserialize_properties(request.object)
        args = pulumi_mocks.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=unwrap_secrets(inputs),
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        resource_id, state = self.mocks.new_resource(args)
        # Apply additional_secret_outputs as the engine does (names are the wire's camelCase).
        secret_outputs = list(request.additionalSecretOutputs)
        state = {k: rpc.wrap_rpc_secret(v) if k in secret_outputs else v for k, v in state.items()}
        # Inputs that were secret stay secret in state.
        state.update({k: v for k, v in inputs.items() if rpc.is_rpc_secret(v)})

        self.registrations[urn] = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            id=resource_id or "",
            parent=request.parent,
            provider=request.provider,
            custom=request.custom,
            protect=request.protect,
            retain_on_delete=request.retainOnDelete,
            delete_before_replace=request.deleteBeforeReplace,
            dependencies=sorted(request.dependencies),
            inputs=inputs,
            state=state,
            additional_secret_outputs=secret_outputs,
            ignore_changes=list(request.ignoreChanges),
            aliases=len(request.aliases) + len(request.aliasURNs),
        )
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id or "", state)
        obj = _sync_await(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id or "", object=obj)


def unwrap_secrets(value: Any) -> Any:
    """``value`` with every secret wrapper removed: plain values for computations and assertions
    (never for recording or printing)."""
    if rpc.is_rpc_secret(value):
        return unwrap_secrets(value["value"])
    if isinstance(value, dict):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def mask_secrets(value: Any, mask: str = "[secret]") -> Any:
    """A JSON-friendly copy of ``value`` with every secret replaced by ``mask``."""
    if rpc.is_rpc_secret(value):
        return mask
    if isinstance(value, dict):
        return {k: mask_secrets(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, mask) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)

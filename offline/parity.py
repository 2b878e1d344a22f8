"""The parity gate: every key an app declares must be in the vault before its rollout starts.

A key forgotten in a migration must fail the rollout, naming the key, not a user's request
later. Three layers, each stopping the next one from ever seeing the problem:

1. **Deploy time** (this command, in CI before ``pulumi up``)::

       python -m offline.parity prod                      # the stack's vault (real API)
       python -m offline.parity prod --vault-file v.json  # a file instead (dry runs, tests)

   For each app of the stack file it lists what the vault holds at the app's location and prints
   every declared key that is missing, per app; exit 1 if any is missing, 2 if the stack file is
   invalid or the vault cannot be read (never a pass). Scaleway Secret Manager is read over its
   HTTP API with ``SCW_SECRET_KEY`` (metadata only: ``SecretManagerReadOnly`` on the project is
   enough, values are never read); 1Password through the ``op`` CLI with
   ``OP_SERVICE_ACCOUNT_TOKEN``.

2. **Sync**: each app's ExternalSecret maps every declared key explicitly (scw_platform/apps.py), so
   External Secrets refuses to sync a Secret with a key missing, naming it.

3. **Rollout**: an Argo CD PreSync hook Job per app, committed into the app's GitOps path::

       python -m offline.parity prod --render-hooks ../platform-gitops          # write them
       python -m offline.parity prod --render-hooks ../platform-gitops --check  # CI: stale?

   The Job references every key of the app's Secret through ``secretKeyRef`` with
   ``optional: false``: the kubelet refuses to start it while a key is absent (the pod's status
   names the key), the short deadline fails the Job, and Argo CD stops the sync before any new
   pod of the app is created. It runs a pinned minimal image, without a service-account token,
   RBAC or network, under the restricted security context.

A vault file is JSON: ``{"<location>": ["KEY", ...]}`` (or ``{"<location>": {"KEY": "..."}}``),
where a location is the app's Scaleway folder (``/prod/website``) or 1Password item.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from offline import hooks, migrations, runner
from program import config as platform_config
from program.config import ConfigError
from program.model import SECRET_KEYS, PlatformConfig
from scw_platform.apps import (
    GATE_IMAGE,
    GATE_RESOURCES,
    AppSettings,
    cpu,
    env_secret_name,
    mebibytes,
    memory,
    millicores,
    synced_keys,
)

GATE_JOB = "platform-parity-gate"
GATE_FILE = "platform-parity-gate.yaml"
#: Long enough for the kubelet to pull a 2 MB image, short enough to fail the sync quickly.
GATE_DEADLINE_SECONDS = 120
#: busybox's ``nobody``.
GATE_UID = 65534
SCALEWAY_API = "https://api.scaleway.com"
_PAGE_SIZE = 100


class VaultError(Exception):
    """The vault could not be read: the gate cannot say anything, so it fails."""


class Vault(Protocol):
    def describe(self) -> str: ...

    def present(self, location: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` hold a usable value at ``location``."""
        ...


# --------------------------------------------------------------------------------------------
# Vaults.
# --------------------------------------------------------------------------------------------


@dataclass
class FileVault:
    """A JSON file or a mapping standing in for the vault (tests, rehearsals)."""

    entries: Mapping[str, Iterable[str] | Mapping[str, str]]
    source: str = "in-memory vault"

    @classmethod
    def load(cls, path: Path) -> FileVault:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise VaultError(f"cannot read the vault file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise VaultError(f"the vault file {path} must hold an object of location -> keys")
        return cls(data, source=f"vault file {path}")

    def describe(self) -> str:
        return self.source

    def present(self, location: str, keys: Sequence[str]) -> set[str]:
        entry = self.entries.get(location) or []
        if isinstance(entry, Mapping):
            held = {k for k, v in entry.items() if v not in (None, "")}
        else:
            held = set(entry)
        return {k for k in keys if k in held}


Fetch = Callable[[urllib.request.Request], Any]


@dataclass
class ScalewayVault:
    """Scaleway Secret Manager over its HTTP API (stdlib only), metadata calls only.

    A key is present when a secret of that name exists in the folder and has an enabled version.
    """

    region: str
    project_id: str
    secret_key: str = field(repr=False)
    api_url: str = SCALEWAY_API
    timeout: float = 15.0
    fetch: Fetch | None = None

    def describe(self) -> str:
        return f"Scaleway Secret Manager {self.region}, project {self.project_id}"

    def _get(self, path: str, query: Mapping[str, str | int]) -> dict[str, Any]:
        url = f"{self.api_url.rstrip('/')}/secret-manager/v1beta1/regions/{self.region}{path}"
        url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(
            url, headers={"X-Auth-Token": self.secret_key, "Accept": "application/json"}
        )
        try:
            if self.fetch is not None:
                body = self.fetch(request)
            else:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
        except urllib.error.HTTPError as exc:
            hint = ""
            if exc.code in (401, 403):
                hint = ": SCW_SECRET_KEY needs SecretManagerReadOnly on the project"
            raise VaultError(f"Scaleway Secret Manager answered HTTP {exc.code} for {path}{hint}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise VaultError(f"cannot reach Scaleway Secret Manager at {self.api_url}: {exc}") from exc
        try:
            data = json.loads(body)
        except (TypeError, json.JSONDecodeError) as exc:
            raise VaultError(f"Scaleway Secret Manager sent something that is not JSON for {path}") from exc
        if not isinstance(data, dict):
            raise VaultError(f"Scaleway Secret Manager sent an unexpected answer for {path}")
        return data

    def secrets_in(self, location: str) -> list[dict[str, Any]]:
        """Every secret of the project in the folder ``location`` (all pages)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._get(
                "/secrets",
                {"project_id": self.project_id, "path": location, "page": page, "page_size": _PAGE_SIZE},
            )
            batch = data.get("secrets") or []
            found.extend(s for s in batch if isinstance(s, dict))
            total = int(data.get("total_count") or 0)
            if not batch or len(found) >= total:
                return found
            page += 1

    def has_enabled_version(self, secret_id: str) -> bool:
        data = self._get(f"/secrets/{secret_id}/versions", {"status": "enabled", "page_size": 1})
        return int(data.get("total_count") or 0) > 0

    def present(self, location: str, keys: Sequence[str]) -> set[str]:
        wanted = set(keys)
        present: set[str] = set()
        for secret in self.secrets_in(location):
            name = secret.get("name")
            # The folder filter is the API's; checking it again costs nothing.
            if name not in wanted or secret.get("path", location) != location:
                continue
            if secret.get("status", "ready") != "ready":
                continue
            if self.has_enabled_version(str(secret["id"])):
                present.add(str(name))
        return present


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


@dataclass
class OnePasswordVault:
    """1Password through the ``op`` CLI and a service-account token (``OP_SERVICE_ACCOUNT_TOKEN``).

    A key is present when the item has a field of that label with a non-empty value.
    """

    vault: str
    op: str = "op"
    run: Runner | None = None

    def describe(self) -> str:
        return f"1Password vault {self.vault!r}"

    def present(self, location: str, keys: Sequence[str]) -> set[str]:
        command = [self.op, "item", "get", location, "--vault", self.vault, "--format", "json"]
        runner_ = self.run or (
            lambda cmd: subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        )
        try:
            completed = runner_(command)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VaultError(f"cannot run the 1Password CLI ({self.op}): {exc}") from exc
        if completed.returncode != 0:
            message = (completed.stderr or "").strip()
            if "isn't an item" in message or "not found" in message.lower():
                return set()
            raise VaultError(f"the 1Password CLI failed for item {location!r}: {message.splitlines()[-1:]}")
        try:
            item = json.loads(completed.stdout)
        except json.JSONDecodeError as exc:
            raise VaultError(
                f"the 1Password CLI sent something that is not JSON for item {location!r}"
            ) from exc
        labels = {
            str(f.get("label"))
            for f in item.get("fields") or []
            if isinstance(f, dict) and f.get("value") not in (None, "")
        }
        return {k for k in keys if k in labels}


# --------------------------------------------------------------------------------------------
# The check.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppParity:
    app: str
    location: str
    declared: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class ParityReport:
    stack: str
    vault: str
    apps: tuple[AppParity, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.apps)

    @property
    def missing(self) -> dict[str, tuple[str, ...]]:
        return {a.app: a.missing for a in self.apps if a.missing}

    def render(self) -> str:
        lines = [f"parity gate, stack {self.stack} ({self.vault}):"]
        if not self.apps:
            lines.append("  no apps declared (platform:apps): nothing to check")
        for a in self.apps:
            if a.ok:
                lines.append(
                    f"  ok       {a.app} ({a.location}): all {len(a.declared)} declared key(s) present"
                )
            else:
                lines.append(f"  MISSING  {a.app} ({a.location}): {', '.join(a.missing)}")
        if self.ok:
            lines.append("PASSED: every declared key is in the vault.")
        else:
            count = sum(len(m) for m in self.missing.values())
            lines.append(
                f"FAILED: {count} declared key(s) missing for {len(self.missing)} app(s). Add them to the "
                "vault (or drop them from requiredKeys) before rolling out: their sync would fail."
            )
        return "\n".join(lines)


def check(cfg: PlatformConfig, vault: Vault) -> ParityReport:
    """Compare each app's declared keys with what ``vault`` holds at the app's location."""
    results = []
    for app in cfg.apps:
        location = cfg.app_secrets_path(app)
        declared = tuple(app.required_keys)
        present = vault.present(location, declared) if declared else set()
        results.append(
            AppParity(
                app=app.name,
                location=location,
                declared=declared,
                missing=tuple(k for k in declared if k not in present),
            )
        )
    return ParityReport(stack=cfg.stack, vault=vault.describe(), apps=tuple(results))


def load_stack(stack: str, root: Path = runner.ROOT) -> PlatformConfig:
    """The stack file's validated config (deploy-time secrets are only checked for presence)."""
    raw = runner.read_stack_config(stack, root)
    platform = {k.removeprefix("platform:"): v for k, v in raw.items() if k.startswith("platform:")}
    scaleway = {k.removeprefix("scaleway:"): v for k, v in raw.items() if k.startswith("scaleway:")}
    placeholders = dict.fromkeys(SECRET_KEYS, "parity-gate-placeholder")
    return platform_config.load(
        platform, scaleway, stack=stack, project=runner.project_name(root), secrets=placeholders
    )


def vault_for(cfg: PlatformConfig, env: Mapping[str, str]) -> Vault:
    """The stack's real vault, from the environment's credentials."""
    if cfg.vault.backend == "scaleway":
        secret_key = env.get("SCW_SECRET_KEY")
        if not secret_key:
            raise VaultError(
                "SCW_SECRET_KEY is not set: the gate needs a key with SecretManagerReadOnly on project "
                f"{cfg.project_id} (or --vault-file to check against a file)"
            )
        return ScalewayVault(
            region=cfg.region,
            project_id=cfg.project_id,
            secret_key=secret_key,
            api_url=env.get("SCW_API_URL") or SCALEWAY_API,
        )
    assert cfg.vault.onepassword is not None
    if not env.get("OP_SERVICE_ACCOUNT_TOKEN"):
        raise VaultError("OP_SERVICE_ACCOUNT_TOKEN is not set: the gate reads 1Password through the op CLI")
    op = shutil.which("op")
    if op is None:
        raise VaultError("the 1Password CLI (op) is not on PATH")
    return OnePasswordVault(vault=cfg.vault.onepassword.vault, op=op)


# --------------------------------------------------------------------------------------------
# The in-cluster gate: an Argo CD PreSync hook Job per app.
# --------------------------------------------------------------------------------------------


def gate_script(app: str, keys: Sequence[str]) -> str:
    """Fails on an empty value too (a present but blank key is a missing one). Key names are
    validated environment-variable names, safe to embed."""
    secret = env_secret_name(app)
    checks = [f'[ -n "${key}" ] || {{ echo "{key} is empty in Secret {secret}"; exit 1; }}' for key in keys]
    return "\n".join([*checks, f'echo "parity gate: all {len(keys)} key(s) of Secret {secret} present"'])


def gate_resources(app: AppSettings) -> dict[str, dict[str, str]]:
    """The gate's own small budget, never above the app's LimitRange maximum (its limits)."""
    cpu_limit = min(millicores(GATE_RESOURCES["limits"]["cpu"]), millicores(app.resources.cpu_limit))
    memory_limit = min(mebibytes(GATE_RESOURCES["limits"]["memory"]), mebibytes(app.resources.memory_limit))
    return {
        "requests": {
            "cpu": cpu(min(millicores(GATE_RESOURCES["requests"]["cpu"]), cpu_limit)),
            "memory": memory(min(mebibytes(GATE_RESOURCES["requests"]["memory"]), memory_limit)),
        },
        "limits": {"cpu": cpu(cpu_limit), "memory": memory(memory_limit)},
    }


def gate_job(app: AppSettings, *, with_database: bool, image: str = GATE_IMAGE) -> dict[str, Any]:
    """The PreSync hook Job for ``app`` (plain data, rendered to YAML by :func:`render_hooks`)."""
    keys = synced_keys(app, with_database=with_database)
    labels = {
        "app.kubernetes.io/name": GATE_JOB,
        "app.kubernetes.io/part-of": app.name,
        "platform.scw/gate": "parity",
    }
    return hooks.hook_job(
        name=GATE_JOB,
        namespace=app.name,
        labels=labels,
        annotations=_gate_annotations(image),
        deadline_seconds=GATE_DEADLINE_SECONDS,
        ttl_seconds=3600,
        uid=GATE_UID,
        pod={"containers": [_gate_container(app, keys, image)]},
    )


def _gate_annotations(image: str) -> dict[str, str]:
    """The gate Job's Argo CD hook annotations and its documented checkov skips."""
    return {
        # Before any of the app's resources are synced; a failure stops the sync.
        "argocd.argoproj.io/hook": "PreSync",
        # A failed gate stays for inspection until the next sync replaces it.
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation,HookSucceeded",
        "checkov.io/skip1": "CKV_K8S_35=the gate exists to have the kubelet resolve every key "
        "as secretKeyRef (optional: false): a missing key keeps the container from starting, "
        "naming the key; the container prints no value",
        **(
            {}
            if "@sha256:" in image
            else {
                "checkov.io/skip2": "CKV_K8S_43=pinned by tag: no digest could be verified where "
                "this was written; pin one with --gate-image <image>:<tag>@sha256:<digest>"
            }
        ),
    }


def _gate_container(app: AppSettings, keys: Sequence[str], image: str) -> dict[str, Any]:
    """The gate's one container: every key of the app's Secret as a required ``secretKeyRef``."""
    secret = env_secret_name(app.name)
    return {
        "name": "gate",
        "image": image,
        "imagePullPolicy": "Always",
        "command": ["sh", "-c", gate_script(app.name, keys)],
        "env": [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": False}},
            }
            for key in keys
        ],
        "resources": gate_resources(app),
        "securityContext": hooks.restricted_container(),
    }


class _GateDumper(yaml.SafeDumper):
    """Readable YAML: no anchors, multi-line strings (the gate's script) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GateDumper.add_representer(str, _str_representer)


def hook_files(cfg: PlatformConfig, image: str = GATE_IMAGE) -> dict[str, str]:
    """GitOps-repository path -> YAML of each app's gate."""
    files = {}
    for app in cfg.apps:
        job = gate_job(app, with_database=app.database is not None, image=image)
        header = (
            f"# Parity gate of app {app.name} (stack {cfg.stack}): generated by "
            f"`python -m offline.parity {cfg.stack} --render-hooks <checkout>`; do not edit.\n"
            f"# Argo CD runs it before each sync; it fails while Secret {env_secret_name(app.name)} lacks "
            "a declared key.\n"
        )
        body = yaml.dump(job, Dumper=_GateDumper, sort_keys=False, default_flow_style=False, width=100)
        files[f"{app.gitops_path}/{GATE_FILE}"] = header + body
    for relative, migration in migrations.migration_files(cfg).items():
        app_name = migration["metadata"]["namespace"]
        header = (
            f"# Migration hook of app {app_name} (stack {cfg.stack}): generated by "
            f"`python -m offline.parity {cfg.stack} --render-hooks <checkout>`; do not edit.\n"
            "# Argo CD runs it after the parity gate, before the app's resources; a failure stops the sync.\n"
        )
        body = yaml.dump(migration, Dumper=_GateDumper, sort_keys=False, default_flow_style=False, width=100)
        files[relative] = header + body
    return files


def render_hooks(
    cfg: PlatformConfig, out: Path, *, check_only: bool = False, image: str = GATE_IMAGE
) -> list[str]:
    """Write (or with ``check_only``, compare) each app's gate; returns the stale or written paths."""
    changed = []
    for relative, text in hook_files(cfg, image).items():
        path = out / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        changed.append(relative)
        if not check_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return changed


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offline.parity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help=f"stack name (files here: {', '.join(runner.stack_names())})")
    parser.add_argument(
        "--vault-file", type=Path, help="check against this JSON file instead of the real vault"
    )
    parser.add_argument(
        "--render-hooks",
        type=Path,
        metavar="CHECKOUT",
        help="write each app's PreSync gate into a GitOps checkout",
    )
    parser.add_argument(
        "--check", action="store_true", help="with --render-hooks: only report stale gates (exit 1)"
    )
    parser.add_argument("--gate-image", default=GATE_IMAGE, help=f"gate image (default {GATE_IMAGE})")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env

    try:
        cfg = load_stack(args.stack)
    except (ConfigError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2

    if args.render_hooks is not None:
        changed = render_hooks(cfg, args.render_hooks, check_only=args.check, image=args.gate_image)
        verb = "stale" if args.check else "written"
        for relative in changed:
            print(f"{verb}: {args.render_hooks / relative}")
        if args.check and changed:
            print(
                f"FAILED: {len(changed)} gate(s) differ from the stack file; re-render them", file=sys.stderr
            )
            return 1
        print(
            f"{len(cfg.apps)} app gate(s) up to date"
            if not changed or args.check
            else f"{len(changed)} written"
        )
        return 0

    try:
        vault = FileVault.load(args.vault_file) if args.vault_file else vault_for(cfg, env)
        report = check(cfg, vault)
    except VaultError as exc:
        print(f"parity gate, stack {args.stack}: cannot read the vault: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

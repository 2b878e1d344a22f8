#!/usr/bin/env python3
"""Daily logical backup and restore check for the platform's PostgreSQL databases.

For every database in the spec it

1. dumps the source with ``pg_dump -Fc`` (the connection comes from the spec, from ``PG*``
   environment variables, and a password from a mounted secret file or an environment variable;
   in the platform, each database's read-only user),
2. encrypts the dump with age (https://age-encryption.org) to the spec's ``encryption.recipient``
   (an X25519 public key) before it leaves the job, and stores the ciphertext through an
   :class:`UploadTarget` (S3-compatible Object Storage through boto3 in production; a local
   directory in tests),
3. reads back the very object version it stored, decrypts it with ``encryption.identityFile``
   (the private key, which only the restore job holds) and restores it into a scratch PostgreSQL
   started inside the job (``initdb`` + ``pg_ctl`` on a temporary directory, unix socket only,
   no TCP listener): the restore proves what the bucket holds, not a local copy,
4. runs the declared sanity checks against the RESTORED copy: tables that must exist, minimum row
   counts, and freshness (the newest value of a timestamp column must be recent),
5. puts a clock on recovery (``targets``): the restore's duration (download, decryption and
   ``pg_restore``) against ``rtoMinutes``, and the age of the newest restored row (the newest
   value over the database's freshness columns, when it was restored) against ``rpoHours``,
6. prints one ``PASS``/``FAIL <database>: <what>`` line per check, a single machine-readable
   ``RESTORE_CHECK_SUMMARY {json}`` line, optionally writes a Prometheus textfile and/or pushes
   the metrics to a Pushgateway, and exits non-zero when any check failed.

Exit codes: 0 every check passed; 1 at least one check failed (a failed decryption and a restore
over its targets included, each naming the check); 2 the spec, the command line or the tools are
invalid (nothing was dumped); 3 the scratch server could not be started.

It needs Python 3.11, the PostgreSQL client and server binaries (``pg_dump``, ``pg_restore``,
``psql``, ``initdb``, ``pg_ctl``), ``age`` when the spec encrypts, and boto3 for ``storage.type``
s3 only (imported then, so ``--validate`` and local runs need the standard library alone): the
image of ``ops/restore_check/Dockerfile``. docs/operations.md has the spec format,
docs/runbooks/restore-check.md how to run it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_SCRATCH = 3

SUMMARY_PREFIX = "RESTORE_CHECK_SUMMARY "
METRIC_PREFIX = "platform_restore_check"
SPEC_ENV = "RESTORE_CHECK_SPEC"  # path of the spec file
SPEC_JSON_ENV = "RESTORE_CHECK_SPEC_JSON"  # the spec itself, inline
BINDIR_ENV = "PG_BINDIR"
AGE_ENV = "AGE_BIN"  # the age binary, default: age on PATH
#: Suffix of an encrypted dump (age's own convention).
AGE_SUFFIX = ".age"
#: Scaleway Object Storage takes 1 to 1000 parts of 5 MB to 5 GB per multipart upload
#: (https://www.scaleway.com/en/docs/object-storage/api-cli/multipart-uploads/): parts grow with the
#: dump, so that any dump the job's scratch volume holds (500 GiB at most) fits in 1000 parts.
MAX_PARTS = 1000
MIN_PART_BYTES = 64 * 1024**2

# --------------------------------------------------------------------------------------------
# Spec: parsed strictly, every problem reported at once with its key path.
# --------------------------------------------------------------------------------------------

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE = re.compile(rf"(?:({_IDENT})\.)?({_IDENT})")
_COLUMN = re.compile(_IDENT)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class SpecError(Exception):
    """The spec is invalid; ``problems`` holds one ``key.path: message`` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid restore-check spec:\n" + "\n".join(f"  {p}" for p in self.problems))


def parse_duration(value: object, key: str) -> int:
    """``30m``, ``26h``, ``7d`` -> seconds. Anything else is a :class:`SpecError` naming ``key``."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise SpecError(
        [
            f"{key}: {value!r} is not a duration; use a whole number followed by one unit "
            "(s, m, h, d or w), e.g. 30m, 26h, 7d"
        ]
    )


@dataclasses.dataclass(frozen=True)
class TableName:
    schema: str
    table: str
    given: str  # as written in the spec, used in messages

    @property
    def sql(self) -> str:
        return f"{_quote_ident(self.schema)}.{_quote_ident(self.table)}"

    @property
    def regclass_literal(self) -> str:
        # The identifiers are validated against _IDENT, so they contain no quote characters.
        return f"'{self.sql}'"


@dataclasses.dataclass(frozen=True)
class Freshness:
    table: TableName
    column: str
    max_age_seconds: int
    max_age: str  # as written, e.g. "26h"


@dataclasses.dataclass(frozen=True)
class Connection:
    dbname: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    sslmode: str | None = None
    password_file: str | None = None
    password_env: str | None = None


@dataclasses.dataclass(frozen=True)
class DatabaseSpec:
    name: str
    connection: Connection
    tables: tuple[TableName, ...] = ()
    min_rows: tuple[tuple[TableName, int], ...] = ()
    freshness: tuple[Freshness, ...] = ()


@dataclasses.dataclass(frozen=True)
class StorageSpec:
    type: str  # "s3" | "local" | "none"
    prefix: str = ""
    path: str | None = None
    endpoint: str | None = None
    region: str | None = None
    bucket: str | None = None
    addressing: str = "virtual"
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"  # the NAME of a variable
    storage_class: str | None = None


@dataclasses.dataclass(frozen=True)
class Encryption:
    """age: dumps are encrypted to ``recipient`` before upload, decrypted with ``identity_file``."""

    recipient: str
    identity_file: str


@dataclasses.dataclass(frozen=True)
class Targets:
    """The recovery objectives a restore is measured against (None: not measured against)."""

    rto_minutes: int | None = None
    rpo_hours: int | None = None

    @property
    def rto_seconds(self) -> int | None:
        return None if self.rto_minutes is None else self.rto_minutes * 60

    @property
    def rpo_seconds(self) -> int | None:
        return None if self.rpo_hours is None else self.rpo_hours * 3600


@dataclasses.dataclass(frozen=True)
class Spec:
    databases: tuple[DatabaseSpec, ...]
    storage: StorageSpec
    encryption: Encryption | None = None
    targets: Targets = Targets()


_TOP_KEYS = ("databases", "storage", "encryption", "targets")
_DB_KEYS = ("name", "connection", "checks")
_CONN_KEYS = ("dbname", "host", "port", "user", "sslmode", "passwordFile", "passwordEnv")
_CHECK_KEYS = ("tables", "minRows", "freshness")
_FRESH_KEYS = ("table", "column", "maxAge")
_ENCRYPTION_KEYS = ("recipient", "identityFile")
_TARGET_KEYS = ("rtoMinutes", "rpoHours")
_STORAGE_KEYS = {
    "s3": (
        "type",
        "prefix",
        "endpoint",
        "region",
        "bucket",
        "addressing",
        "accessKeyEnv",
        "secretKeyEnv",
        "storageClass",
    ),
    "local": ("type", "prefix", "path"),
    "none": ("type",),
}


def load_spec(raw: object) -> Spec:
    """Validate a parsed spec (JSON object). Raises :class:`SpecError` listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise SpecError([f"spec: must be a JSON object with keys {', '.join(_TOP_KEYS)}"])
    _unknown_keys(raw, _TOP_KEYS, "spec", problems)
    targets = _targets(raw.get("targets", {}), problems)
    databases = _spec_databases(raw.get("databases"), targets, problems)
    storage = _storage(raw.get("storage", {"type": "none"}), problems)
    encryption = _encryption(raw.get("encryption"), problems)
    if storage is not None and storage.type == "s3" and "encryption" not in raw:
        problems.append(
            "encryption: required with storage type s3 ({recipient, identityFile}): the object "
            "store only ever gets ciphertext"
        )
    if problems:
        raise SpecError(problems)
    assert storage is not None
    return Spec(databases=databases, storage=storage, encryption=encryption, targets=targets)


def _spec_databases(raw_dbs: object, targets: Targets, problems: list[str]) -> tuple[DatabaseSpec, ...]:
    """``databases``: each entry parsed; a name used twice and, with an RPO target, a database
    without a timestamp column to measure it on are problems too."""
    if not isinstance(raw_dbs, list) or not raw_dbs:
        problems.append("databases: required, a non-empty list of databases to back up and check")
        return ()
    databases: list[DatabaseSpec] = []
    seen: set[str] = set()
    for i, raw_db in enumerate(raw_dbs):
        name = raw_db.get("name") if isinstance(raw_db, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(f"databases[{i}].name: {name!r} is declared twice")
            seen.add(name)
        db = _database(raw_db, f"databases[{i}]", problems)
        if db is None:
            continue
        databases.append(db)
        if targets.rpo_hours is not None and not db.freshness:
            problems.append(
                f"databases[{i}].checks.freshness: at least one timestamp column is required with "
                "targets.rpoHours (the newest restored row's age is measured on these columns)"
            )
    return tuple(databases)


def _targets(raw: object, problems: list[str]) -> Targets:
    """``targets``: ``rtoMinutes`` and ``rpoHours``, each optional, a whole number above 0."""
    if not isinstance(raw, dict):
        problems.append(f"targets: must be an object with keys {', '.join(_TARGET_KEYS)}")
        return Targets()
    _unknown_keys(raw, _TARGET_KEYS, "targets", problems)
    found: dict[str, int | None] = {}
    for key, unit in (("rtoMinutes", "minutes"), ("rpoHours", "hours")):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append(f"targets.{key}: must be a whole number of {unit} above 0, got {value!r}")
            value = None
        found[key] = value
    return Targets(rto_minutes=found["rtoMinutes"], rpo_hours=found["rpoHours"])


def _encryption(raw: object, problems: list[str]) -> Encryption | None:
    """``encryption``: the age recipient (public key) and the identity file (private key)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"encryption: must be an object with keys {', '.join(_ENCRYPTION_KEYS)}")
        return None
    _unknown_keys(raw, _ENCRYPTION_KEYS, "encryption", problems)
    recipient, identity = raw.get("recipient"), raw.get("identityFile")
    problem = age_recipient_problem(recipient)
    if problem is not None:
        problems.append(f"encryption.recipient: {problem}")
    if not isinstance(identity, str) or not identity:
        problems.append(
            "encryption.identityFile: required, the file holding the age identity (private key) "
            f"that decrypts the dumps, got {identity!r}"
        )
    if problem is not None or not isinstance(identity, str) or not identity:
        return None
    assert isinstance(recipient, str)
    return Encryption(recipient=recipient, identity_file=identity)


# age's X25519 recipients are Bech32 (BIP 173) with the human-readable part "age": "age1", 52 data
# characters (the 32-byte key in 5-bit groups, 4 padding bits) and a 6-character checksum
# (https://github.com/C2SP/C2SP/blob/main/age.md, "The X25519 recipient type").
# scw_platform/backup.py validates config with the same rules (tested to agree).
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE_RECIPIENT = re.compile(rf"age1[{_BECH32}]{{58}}")
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: Sequence[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def age_recipient_problem(value: object) -> str | None:
    """Why ``value`` is not an age X25519 public key (``age1...``, as age-keygen prints), or None."""
    if isinstance(value, str) and value.upper().startswith("AGE-SECRET-KEY-"):
        # Never echo it: this is a private key where a public one belongs.
        return (
            "this is an age identity (a private key), not a recipient: remove it from here, "
            "treat it as leaked, and give its public key instead (age-keygen -y)"
        )
    if not isinstance(value, str) or not _AGE_RECIPIENT.fullmatch(value):
        return (
            "must be an age X25519 public key, age1 followed by 58 lowercase Bech32 characters "
            f"as age-keygen prints it, got {value!r}"
        )
    data = [_BECH32.index(c) for c in value[4:]]
    if _bech32_polymod([3, 3, 3, 0, 1, 7, 5, *data]) != 1:  # the expanded "age", then the data
        return f"{value!r} is not a valid age public key (its Bech32 checksum does not match: a typo?)"
    if data[-7] & 0b1111:  # the last data character carries 1 key bit and 4 padding bits
        return f"{value!r} is not a valid age public key (non-zero padding bits)"
    return None


def _unknown_keys(raw: Mapping[str, Any], allowed: Sequence[str], path: str, problems: list[str]) -> None:
    for key in sorted(set(raw) - set(allowed)):
        problems.append(f"{path}.{key}: unknown key (allowed: {', '.join(allowed)})")


def _database(raw: object, path: str, problems: list[str]) -> DatabaseSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be an object with keys {', '.join(_DB_KEYS)}")
        return None
    _unknown_keys(raw, _DB_KEYS, path, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(
            f"{path}.name: required, lowercase letters, digits, '_' or '-' (used in object keys), "
            f"got {name!r}"
        )
        name = None
    conn = _connection(raw.get("connection", {}), name, f"{path}.connection", problems)
    checks = raw.get("checks", {})
    cpath = f"{path}.checks"
    if not isinstance(checks, dict):
        problems.append(f"{cpath}: must be an object with keys {', '.join(_CHECK_KEYS)}")
        checks = {}
    _unknown_keys(checks, _CHECK_KEYS, cpath, problems)
    tables = _spec_tables(checks.get("tables", []), f"{cpath}.tables", problems)
    min_rows = _spec_min_rows(checks.get("minRows", {}), f"{cpath}.minRows", problems)
    freshness = _spec_freshness(checks.get("freshness", []), f"{cpath}.freshness", problems)
    if name is None or conn is None:
        return None
    return DatabaseSpec(name, conn, tables, min_rows, freshness)


def _spec_tables(raw: object, path: str, problems: list[str]) -> tuple[TableName, ...]:
    """``checks.tables``: the tables that must exist."""
    if not isinstance(raw, list):
        problems.append(f"{path}: must be a list of table names such as orders or public.orders")
        raw = []
    tables = (_table(item, f"{path}[{j}]", problems) for j, item in enumerate(raw))
    return tuple(table for table in tables if table is not None)


def _spec_min_rows(raw: object, path: str, problems: list[str]) -> tuple[tuple[TableName, int], ...]:
    """``checks.minRows``: table name -> minimum row count."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be a map of table name -> minimum row count")
        raw = {}
    min_rows: list[tuple[TableName, int]] = []
    for key, count in raw.items():
        table = _table(key, f"{path}.{key}", problems)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(f"{path}.{key}: must be a whole number >= 0, got {count!r}")
        elif table is not None:
            min_rows.append((table, count))
    return tuple(min_rows)


def _spec_freshness(raw: object, path: str, problems: list[str]) -> tuple[Freshness, ...]:
    """``checks.freshness``: a list of ``{table, column, maxAge}`` objects."""
    if not isinstance(raw, list):
        problems.append(f"{path}: must be a list of {{table, column, maxAge}} objects")
        raw = []
    freshness = (_spec_freshness_entry(item, f"{path}[{j}]", problems) for j, item in enumerate(raw))
    return tuple(fresh for fresh in freshness if fresh is not None)


def _spec_freshness_entry(item: object, path: str, problems: list[str]) -> Freshness | None:
    """One ``checks.freshness`` entry."""
    if not isinstance(item, dict):
        problems.append(f"{path}: must be an object with keys {', '.join(_FRESH_KEYS)}")
        return None
    _unknown_keys(item, _FRESH_KEYS, path, problems)
    table = _table(item.get("table"), f"{path}.table", problems)
    column = item.get("column")
    if not isinstance(column, str) or not _COLUMN.fullmatch(column):
        problems.append(f"{path}.column: required, a column name, got {column!r}")
        column = None
    try:
        seconds = parse_duration(item.get("maxAge"), f"{path}.maxAge")
    except SpecError as exc:
        problems.extend(exc.problems)
        return None
    if table is None or column is None:
        return None
    return Freshness(table, column, seconds, str(item["maxAge"]))


def _connection(raw: object, name: str | None, path: str, problems: list[str]) -> Connection | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be an object with keys {', '.join(_CONN_KEYS)}")
        return None
    _unknown_keys(raw, _CONN_KEYS, path, problems)
    ok = True
    strings: dict[str, str | None] = {}
    for key in ("dbname", "host", "user", "passwordFile", "passwordEnv"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{path}.{key}: must be a non-empty string, got {value!r}")
            ok = False
            value = None
        strings[key] = value
    port = raw.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        problems.append(f"{path}.port: must be a TCP port number, got {port!r}")
        ok = False
    sslmode = raw.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        problems.append(f"{path}.sslmode: must be one of {', '.join(_SSLMODES)}, got {sslmode!r}")
        ok = False
    if strings["passwordFile"] and strings["passwordEnv"]:
        problems.append(f"{path}: set passwordFile or passwordEnv, not both")
        ok = False
    if not ok or name is None:
        return None
    return Connection(
        dbname=strings["dbname"] or name,
        host=strings["host"],
        port=port,
        user=strings["user"],
        sslmode=sslmode,
        password_file=strings["passwordFile"],
        password_env=strings["passwordEnv"],
    )


def _table(raw: object, path: str, problems: list[str]) -> TableName | None:
    match = _TABLE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        problems.append(f"{path}: {raw!r} is not a table name (use orders or schema.orders)")
        return None
    return TableName(schema=match.group(1) or "public", table=match.group(2), given=str(raw))


def _storage(raw: object, problems: list[str]) -> StorageSpec | None:
    path = "storage"
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be an object with a type (s3, local or none)")
        return None
    kind = raw.get("type")
    if kind not in _STORAGE_KEYS:
        problems.append(f"{path}.type: must be one of s3, local, none, got {kind!r}")
        return None
    _unknown_keys(raw, _STORAGE_KEYS[kind], path, problems)
    prefix = raw.get("prefix", "")
    if not isinstance(prefix, str) or prefix.startswith("/") or ".." in prefix.split("/"):
        problems.append(
            f"{path}.prefix: must be a relative key prefix such as restore-check/, got {prefix!r}"
        )
        prefix = ""
    if kind == "none":
        return StorageSpec(type="none")
    if kind == "local":
        return _local_storage(raw, prefix, path, problems)
    return _s3_storage(raw, prefix, path, problems)


def _local_storage(raw: dict[str, Any], prefix: str, path: str, problems: list[str]) -> StorageSpec | None:
    """The rest of a ``type: local`` storage: its directory."""
    target = raw.get("path")
    if not isinstance(target, str) or not target:
        problems.append(f"{path}.path: required for type local (a directory)")
        return None
    return StorageSpec(type="local", prefix=prefix, path=target)


def _s3_storage(raw: dict[str, Any], prefix: str, path: str, problems: list[str]) -> StorageSpec | None:
    """The rest of a ``type: s3`` storage: endpoint, region, bucket and the optional keys."""
    missing = [k for k in ("endpoint", "region", "bucket") if not isinstance(raw.get(k), str) or not raw[k]]
    for key in missing:
        problems.append(f"{path}.{key}: required for type s3")
    endpoint = raw.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("https", "http") or not parsed.hostname or parsed.path not in ("", "/"):
            problems.append(
                f"{path}.endpoint: must be a URL like https://s3.fr-par.scw.cloud, got {endpoint!r}"
            )
            missing.append("endpoint")
    addressing = raw.get("addressing", "virtual")
    if addressing not in ("virtual", "path"):
        problems.append(f"{path}.addressing: must be virtual or path, got {addressing!r}")
        missing.append("addressing")
    for key in ("accessKeyEnv", "secretKeyEnv", "storageClass"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{path}.{key}: must be a non-empty string, got {value!r}")
            missing.append(key)
    if missing:
        return None
    return StorageSpec(
        type="s3",
        prefix=prefix,
        endpoint=str(raw["endpoint"]).rstrip("/"),
        region=raw["region"],
        bucket=raw["bucket"],
        addressing=addressing,
        access_key_env=raw.get("accessKeyEnv", "AWS_ACCESS_KEY_ID"),
        secret_key_env=raw.get("secretKeyEnv", "AWS_SECRET_ACCESS_KEY"),
        storage_class=raw.get("storageClass"),
    )


def read_spec_source(path: str | None, env: Mapping[str, str]) -> object:
    """The raw spec from ``--spec PATH``, else ``$RESTORE_CHECK_SPEC`` (a path), else
    ``$RESTORE_CHECK_SPEC_JSON`` (inline JSON). JSON only: it is also valid YAML, so a
    ConfigMap can carry it as ``spec.json`` or ``spec.yaml``."""
    if path is None:
        path = env.get(SPEC_ENV)
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError([f"spec: cannot read {path}: {exc.strerror}"]) from exc
        origin = path
    elif env.get(SPEC_JSON_ENV):
        text, origin = env[SPEC_JSON_ENV], f"${SPEC_JSON_ENV}"
    else:
        raise SpecError([f"spec: none given (use --spec PATH, ${SPEC_ENV} or ${SPEC_JSON_ENV})"])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError([f"spec: {origin} is not valid JSON: {exc}"]) from exc


# --------------------------------------------------------------------------------------------
# Upload targets.
# --------------------------------------------------------------------------------------------


class StorageError(Exception):
    pass


class UploadError(StorageError):
    pass


class DownloadError(StorageError):
    pass


@dataclasses.dataclass(frozen=True)
class Stored:
    """Where a dump went: ``uri`` for the logs, ``key`` and ``version_id`` to read it back."""

    uri: str
    key: str
    version_id: str | None = None


class UploadTarget(Protocol):
    def put(self, key: str, source: Path) -> Stored | None:
        """Store ``source`` under ``key``; None when the target keeps nothing (type none)."""
        ...

    def fetch(self, stored: Stored, dest: Path) -> None:
        """Read back exactly what :meth:`put` stored (its version) into ``dest``."""
        ...


def dump_key(prefix: str, database: str, when: dt.datetime, *, encrypted: bool = False) -> str:
    """``<prefix><database>/<database>-<UTC timestamp>.dump[.age]``: one object per run, so a
    versioned bucket with a lifecycle rule is the retention policy."""
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}{database}/{database}-{stamp}.dump" + (AGE_SUFFIX if encrypted else "")


class NullTarget:
    def put(self, key: str, source: Path) -> Stored | None:
        return None

    def fetch(self, stored: Stored, dest: Path) -> None:
        raise DownloadError("storage type none keeps nothing to read back")


class LocalDirTarget:
    """Writes ``<root>/<key>``; used in tests and for a run by hand."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise UploadError(f"key {key!r} escapes {self.root}")
        return target

    def put(self, key: str, source: Path) -> Stored | None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(source, partial)
            partial.replace(target)  # atomic: a reader never sees half a dump
        except OSError as exc:
            raise UploadError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return Stored(uri=f"file://{target}", key=key)

    def fetch(self, stored: Stored, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(stored.key), dest)
        except OSError as exc:
            raise DownloadError(f"cannot read {stored.uri}: {exc.strerror or exc}") from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def part_size(size: int) -> int:
    """Multipart part size for a ``size``-byte dump: at least 64 MiB, and few enough parts for
    Scaleway's limit of 1000 (rounded up to whole MiB)."""
    mib = 1024**2
    needed = -(-size // MAX_PARTS)  # ceil(size / MAX_PARTS)
    return max(MIN_PART_BYTES, -(-needed // mib) * mib)


def s3_client(
    *,
    endpoint: str,
    region: str,
    access_key: str,
    secret_key: str,
    addressing: str,
    timeout: float,
    max_attempts: int = 5,
) -> Any:
    """A boto3 S3 client for an S3-compatible endpoint (imported here: only type s3 needs boto3)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        s3={"addressing_style": addressing},
        signature_version="s3v4",
        connect_timeout=15,
        read_timeout=timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        # Since 1.36 boto3 adds CRC32 checksum headers and trailers by default, which S3-compatible
        # services other than AWS have refused: send and check them only where the API requires
        # them. Integrity does not rest on them: age authenticates every chunk of the ciphertext,
        # and the restore compares the decrypted dump's SHA-256 with the dump taken.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _s3_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (Boto3Error, BotoCoreError, ClientError)


def _s3_failure(verb: str, uri: str, exc: BaseException) -> str:
    """``PUT s3://b/k answered HTTP 403 (AccessDenied)`` from boto3's error (or the one it wraps)."""
    cause: BaseException | None = exc
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            code = response["Error"].get("Code")
            # An error without a body (a bare 403) gets its status as its code from botocore.
            detail = f" ({code})" if code and code != str(status) else ""
            return f"{verb} {uri} answered HTTP {status}{detail}"
        cause = cause.__cause__ or cause.__context__
    return f"{verb} {uri} failed: {exc}"


class S3Target:
    """Scaleway Object Storage (any S3 API) through boto3: multipart upload when the dump is large,
    then the stored version is read back by its version ID. Never lists, deletes or reconfigures."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        addressing: str = "virtual",
        storage_class: str | None = None,
        timeout: float = 300.0,
        max_attempts: int = 5,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
        self.storage_class = storage_class
        self._credentials = (access_key, secret_key)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (``--validate`` never imports boto3)."""
        if self._client is None:
            access_key, secret_key = self._credentials
            self._client = s3_client(
                endpoint=self.endpoint,
                region=self.region,
                access_key=access_key,
                secret_key=secret_key,
                addressing=self.addressing,
                timeout=self.timeout,
                max_attempts=self.max_attempts,
            )
        return self._client

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _transfer(self, size: int) -> Any:
        from boto3.s3.transfer import TransferConfig

        chunk = part_size(size)
        return TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4)

    def put(self, key: str, source: Path) -> Stored | None:
        size = source.stat().st_size
        extra = {"ContentType": "application/octet-stream"}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        try:
            self.client.upload_file(
                str(source), self.bucket, key, ExtraArgs=extra, Config=self._transfer(size)
            )
            # The upload's own answer is not handed back by the transfer manager: HEAD gives the
            # version just written (the key is this run's, concurrency is Forbid) and its size.
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except _s3_errors() as exc:
            raise UploadError(_s3_failure("PUT", self._uri(key), exc)) from exc
        if head.get("ContentLength") != size:
            raise UploadError(f"{self._uri(key)} holds {head.get('ContentLength')} bytes, {size} were sent")
        version = head.get("VersionId")
        return Stored(
            uri=self._uri(key) + (f"?versionId={version}" if version else ""), key=key, version_id=version
        )

    def fetch(self, stored: Stored, dest: Path) -> None:
        extra = {"VersionId": stored.version_id} if stored.version_id else {}
        try:
            self.client.download_file(
                self.bucket, stored.key, str(dest), ExtraArgs=extra, Config=self._transfer(0)
            )
        except _s3_errors() as exc:
            raise DownloadError(_s3_failure("GET", stored.uri, exc)) from exc


def make_target(storage: StorageSpec, env: Mapping[str, str]) -> UploadTarget:
    if storage.type == "local":
        assert storage.path is not None
        return LocalDirTarget(Path(storage.path))
    if storage.type == "s3":
        missing = [name for name in (storage.access_key_env, storage.secret_key_env) if not env.get(name)]
        if missing:
            raise SpecError([f"storage: environment variable {name} is not set" for name in missing])
        assert storage.endpoint and storage.region and storage.bucket
        return S3Target(
            endpoint=storage.endpoint,
            region=storage.region,
            bucket=storage.bucket,
            access_key=env[storage.access_key_env],
            secret_key=env[storage.secret_key_env],
            addressing=storage.addressing,
            storage_class=storage.storage_class,
        )
    return NullTarget()


# --------------------------------------------------------------------------------------------
# Encryption: age, a subprocess (the age binary from Debian's package in the image).
# --------------------------------------------------------------------------------------------


class CryptoError(Exception):
    pass


def find_age(explicit: str | None = None) -> Path:
    """The age binary: ``$AGE_BIN`` or ``age`` on ``PATH``."""
    found = explicit or shutil.which("age")
    if not found or not os.access(found, os.X_OK):
        raise FileNotFoundError(
            f"age not found ({explicit or 'PATH'}): the spec encrypts dumps; install age "
            "(Debian's package age, which the image has) or set $" + AGE_ENV
        )
    return Path(found)


def _age(argv: Sequence[str]) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
        raise CryptoError(re.sub(r"^age: (error: )?", "", detail) or f"age exited {proc.returncode}")


def age_encrypt(age: Path, recipient: str, source: Path, dest: Path) -> None:
    _age([str(age), "--encrypt", "--recipient", recipient, "--output", str(dest), str(source)])


def age_decrypt(age: Path, identity_file: str, source: Path, dest: Path) -> None:
    if not os.access(identity_file, os.R_OK):
        raise CryptoError(f"cannot read the age identity {identity_file}")
    _age([str(age), "--decrypt", "--identity", identity_file, "--output", str(dest), str(source)])


# --------------------------------------------------------------------------------------------
# PostgreSQL tools, the source connection and the scratch server.
# --------------------------------------------------------------------------------------------

_TOOLS = ("pg_dump", "pg_restore", "psql", "initdb", "pg_ctl")


def find_bindir(explicit: str | None = None) -> Path:
    """Where the PostgreSQL binaries live: ``--pg-bindir``/``$PG_BINDIR``, else the directory of
    ``initdb`` on ``PATH`` (the postgres image), else the newest ``/usr/lib/postgresql/*/bin``
    (Debian, where ``/usr/bin`` only has client wrappers)."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    else:
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
            reverse=True,
        )
        candidates.extend(versions)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in _TOOLS):
            return directory
    searched = ", ".join(str(c) for c in candidates) or "PATH and /usr/lib/postgresql/*/bin"
    raise FileNotFoundError(f"PostgreSQL binaries ({', '.join(_TOOLS)}) not found in {searched}")


class SourceError(Exception):
    """The source database cannot be dumped (unreachable, missing, bad credentials)."""


def _clean_env(base: Mapping[str, str]) -> dict[str, str]:
    # Fixed session settings make text output (checksums) independent of server defaults.
    env = {k: v for k, v in base.items() if not k.startswith("PG")}
    env.update(PGTZ="UTC", PGDATESTYLE="ISO, MDY", PGAPPNAME="platform-restore-check")
    return env


def source_env(conn: Connection, base: Mapping[str, str]) -> dict[str, str]:
    """libpq environment for the source: spec values override inherited ``PG*`` variables."""
    env = dict(base)
    env["PGDATABASE"] = conn.dbname
    for var, value in (
        ("PGHOST", conn.host),
        ("PGPORT", conn.port),
        ("PGUSER", conn.user),
        ("PGSSLMODE", conn.sslmode),
    ):
        if value is not None:
            env[var] = str(value)
    if conn.password_file:
        try:
            env["PGPASSWORD"] = Path(conn.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SourceError(f"cannot read password file {conn.password_file}: {exc.strerror}") from exc
    elif conn.password_env:
        if conn.password_env not in base:
            raise SourceError(f"environment variable {conn.password_env} (the password) is not set")
        env["PGPASSWORD"] = base[conn.password_env]
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env.setdefault("PGAPPNAME", "platform-restore-check")
    return env


def _first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return re.sub(r"^(pg_dump|pg_restore|psql): (error: )?", "", line)
    return lines[0] if lines else "no error output"


def probe_source(bindir: Path, env: Mapping[str, str]) -> None:
    """Connect once so an unreachable host, a missing database and a bad password get
    distinct messages instead of pg_dump's generic failure."""
    proc = subprocess.run(
        [str(bindir / "psql"), "-X", "-w", "-A", "-t", "-c", "select 1"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return
    detail = _first_error_line(proc.stderr)
    where = env.get("PGHOST", "the default socket")
    if re.search(r'database "[^"]*" does not exist', proc.stderr):
        raise SourceError(f'source database "{env["PGDATABASE"]}" does not exist on {where}')
    if "password authentication failed" in proc.stderr or "no password supplied" in proc.stderr:
        raise SourceError(f"authentication to the source on {where} failed: {detail}")
    raise SourceError(f"source unreachable ({where}): {detail}")


@dataclasses.dataclass
class ScratchServer:
    """A throwaway PostgreSQL on a unix socket in a fresh temporary directory."""

    bindir: Path
    workdir: Path
    superuser: str = "restore_check"
    socket_dir: Path = dataclasses.field(init=False)
    data_dir: Path = dataclasses.field(init=False)
    _base: Path = dataclasses.field(init=False)

    def start(self) -> None:
        # Unix socket paths are limited to ~107 bytes: keep the socket in a short directory.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="rc-"))
        self._base = Path(tempfile.mkdtemp(prefix="restore-check-", dir=self.workdir))
        self.data_dir = self._base / "data"
        env = _clean_env(os.environ)
        # trust is safe here: no TCP listener, and the socket directory is private (0700).
        self._run(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "-N",
            ],
            env,
        )
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_wal_size": "'2GB'",
            "TimeZone": "'UTC'",
            # Containers often have a 64 MB /dev/shm: no parallel workers, no big DSM segments.
            "max_parallel_workers_per_gather": "0",
            "max_parallel_maintenance_workers": "0",
        }
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# restore-check scratch server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self._base / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            env,
        )

    def stop(self) -> None:
        base = getattr(self, "_base", None)
        if base is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)
        socket_dir = getattr(self, "socket_dir", None)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _run(self, argv: list[str], env: Mapping[str, str]) -> None:
        proc = subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            log = self._base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip()}\n{tail}".strip())

    def env(self, dbname: str = "postgres") -> dict[str, str]:
        env = _clean_env(os.environ)
        env.update(PGHOST=str(self.socket_dir), PGUSER=self.superuser, PGDATABASE=dbname)
        return env

    def psql(self, sql: str, dbname: str = "postgres") -> list[list[str]]:
        """Run ``sql``; rows as lists of fields (unaligned, tab-separated)."""
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-F",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            env=self.env(dbname),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(_first_error_line(proc.stderr))
        # Every line is a row: a row holding one NULL prints as an empty line.
        return [line.split("\t") for line in proc.stdout.splitlines()]

    def __enter__(self) -> ScratchServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# One database: dump, encrypt, store, read back, decrypt, restore, check, time.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DatabaseResult:
    name: str
    passed: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    dump_bytes: int | None = None
    dump_sha256: str | None = None
    encrypted: bool = False
    stored: str | None = None
    inventory: dict[str, dict[str, Any]] | None = None
    #: Seconds from reading the stored dump back to a restored copy (the RTO figure).
    restore_seconds: float | None = None
    #: The newest restored row (over the freshness columns) and its age when restored (the RPO figure).
    newest_row: str | None = None
    newest_row_age: float | None = None
    #: Each freshness column's newest value (unix seconds), as the checks found them.
    newest_values: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def ok(self, message: str) -> None:
        self.passed.append(message)
        print(f"PASS {self.name}: {message}", flush=True)

    def fail(self, message: str) -> None:
        self.failed.append(message)
        print(f"FAIL {self.name}: {message}", flush=True)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": "failed" if self.failed else "ok",
            "passed": len(self.passed),
            "failures": self.failed,
            "dumpBytes": self.dump_bytes,
            "dumpSha256": self.dump_sha256,
            "encrypted": self.encrypted,
            "stored": self.stored,
            "restoreSeconds": None if self.restore_seconds is None else round(self.restore_seconds, 3),
            "newestRow": self.newest_row,
            "newestRowAgeSeconds": None if self.newest_row_age is None else round(self.newest_row_age, 3),
        }
        if self.inventory is not None:
            out["inventory"] = self.inventory
        return out


def _log(message: str) -> None:
    print(f"restore-check: {message}", file=sys.stderr, flush=True)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _human_age(seconds: float) -> str:
    """``93784`` -> ``1d 2h``: the two most significant units."""
    whole = int(seconds)
    if whole < 0:
        return f"{-whole}s in the future"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


_EPOCH_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision")
_TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


@dataclasses.dataclass
class _RestoredCopy:
    """The restored copy in ``dbname``, with each table's existence looked up once."""

    server: ScratchServer
    dbname: str
    _exists: dict[TableName, bool] = dataclasses.field(default_factory=dict)

    def psql(self, sql: str) -> list[list[str]]:
        return self.server.psql(sql, self.dbname)

    def table_exists(self, table: TableName) -> bool:
        if table not in self._exists:
            rows = self.psql(f"select to_regclass({table.regclass_literal}) is not null")
            self._exists[table] = rows == [["t"]]
        return self._exists[table]


def _missing(table: TableName) -> str:
    return f'table "{table.given}" does not exist in the restored copy'


def run_checks(
    db: DatabaseSpec, server: ScratchServer, scratch_db: str, reference: float, res: DatabaseResult
) -> None:
    """Every declared check, against the restored copy in ``scratch_db``."""
    restored = _RestoredCopy(server, scratch_db)
    for table in db.tables:
        if restored.table_exists(table):
            res.ok(f'table "{table.given}" exists')
        else:
            res.fail(_missing(table))
    for table, minimum in db.min_rows:
        _check_min_rows(restored, table, minimum, res)
    for fresh in db.freshness:
        _check_freshness(restored, fresh, reference, res)


def _check_min_rows(restored: _RestoredCopy, table: TableName, minimum: int, res: DatabaseResult) -> None:
    """``table`` has at least ``minimum`` rows."""
    if not restored.table_exists(table):
        res.fail(_missing(table) + f" (expected >= {minimum} rows)")
        return
    count = int(restored.psql(f"select count(*) from {table.sql}")[0][0])
    if count >= minimum:
        res.ok(f'table "{table.given}" has {count} rows (>= {minimum})')
    else:
        res.fail(f'table "{table.given}" has {count} rows, expected >= {minimum}')


def _check_freshness(
    restored: _RestoredCopy, fresh: Freshness, reference: float, res: DatabaseResult
) -> None:
    """The newest value of ``fresh.column`` is at most ``fresh.max_age`` older than ``reference``;
    the value is kept for the RPO figure."""
    label = f'"{fresh.table.given}.{fresh.column}"'
    if not restored.table_exists(fresh.table):
        res.fail(_missing(fresh.table) + f" (freshness of {label})")
        return
    expr = _newest_expr(restored, fresh.table, fresh.column, label, res)
    if expr is None:
        return
    newest = restored.psql(f"select {expr} from {fresh.table.sql}")[0][0]
    if newest == "":
        res.fail(
            f"freshness of {label}: the table has no rows, so no newest value "
            f"(expected within {fresh.max_age})"
        )
        return
    res.newest_values.append((label, float(newest)))
    age = reference - float(newest)
    newest_iso = dt.datetime.fromtimestamp(float(newest), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if age <= fresh.max_age_seconds:
        res.ok(f"newest {label} is {_human_age(age)} old (within {fresh.max_age})")
    else:
        res.fail(
            f"stale data: newest {label} is {newest_iso}, {_human_age(age)} old, "
            f"expected within {fresh.max_age}"
        )


def _newest_expr(
    restored: _RestoredCopy, table: TableName, column: str, label: str, res: DatabaseResult
) -> str | None:
    """SQL for the newest value of ``table.column`` as unix seconds; None (the failure reported)
    when the column is missing or of a type that holds no time."""
    type_rows = restored.psql(
        "select format_type(atttypid, atttypmod) from pg_attribute "
        f"where attrelid = to_regclass({table.regclass_literal}) "
        f"and attname = '{column}' and attnum > 0 and not attisdropped",
    )
    if not type_rows:
        res.fail(f"freshness column {label} does not exist in the restored copy")
        return None
    col_type = type_rows[0][0]
    quoted = _quote_ident(column)
    if col_type in _EPOCH_TYPES:
        return f"max({quoted})::float8"  # unix seconds
    if col_type.split("(")[0] in _TIME_TYPES:
        # timestamp without time zone is read as UTC (the session time zone is UTC).
        return f"extract(epoch from max({quoted}))::float8"
    res.fail(f"freshness column {label} has type {col_type}, expected a timestamp, date or unix seconds")
    return None


_INVENTORY_TABLES = (
    "select schemaname || '.' || tablename from pg_tables "
    "where schemaname not in ('pg_catalog', 'information_schema') order by 1"
)


def inventory(server: ScratchServer, scratch_db: str) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent md5 of every user table (rows as text, sorted
    byte-wise), so a caller can compare the restored copy with its source."""
    out: dict[str, dict[str, Any]] = {}
    for (qualified,) in server.psql(_INVENTORY_TABLES, scratch_db):
        schema, table = qualified.split(".", 1)
        sql_name = f"{_quote_ident(schema)}.{_quote_ident(table)}"
        rows, digest = server.psql(
            "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text collate \"C\"), '')) "
            f"from {sql_name} t",
            scratch_db,
        )[0]
        out[qualified] = {"rows": int(rows), "md5": digest}
    return out


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every database's check shares in one run."""

    bindir: Path
    server: ScratchServer
    target: UploadTarget
    prefix: str
    #: This run's private scratch directory (removed when the run ends).
    workdir: Path
    #: ``--from-dumps``: check ``<dir>/<name>.dump`` (or ``.dump.age``) instead of dumping.
    from_dumps: Path | None
    want_inventory: bool
    started: dt.datetime
    encryption: Encryption | None = None
    age: Path | None = None
    targets: Targets = Targets()


@dataclasses.dataclass
class _Dump:
    """A dump on its way through the check."""

    #: The local file: the restore's fallback when nothing was stored or it cannot be read back.
    path: Path
    encrypted: bool
    #: The freshness checks' reference time: the dump's start, or the file's modification time.
    reference: float
    #: SHA-256 of the plaintext dump, when known before the restore.
    sha256: str | None
    stored: Stored | None = None


def check_one(db: DatabaseSpec, ctx: RunContext) -> DatabaseResult:
    res = DatabaseResult(db.name)
    scratch = Path(tempfile.mkdtemp(prefix=f"{db.name}-", dir=ctx.workdir))
    try:
        dump = _take_dump(db, ctx, scratch, res)
        if dump is None:
            return res
        scratch_db = _recover(db, ctx, dump, scratch, res)
        if scratch_db is None:
            return res
        run_checks(db, ctx.server, scratch_db, dump.reference, res)
        _check_rpo(ctx.targets, res)
        if ctx.want_inventory:
            res.inventory = inventory(ctx.server, scratch_db)
        ctx.server.psql(f"drop database {_quote_ident(scratch_db)}")
    except RuntimeError as exc:  # a psql call against the scratch server failed unexpectedly
        res.fail(f"check error: {exc}")
    except Exception as exc:  # one database's surprise must not hide the others' results
        res.fail(f"internal error: {exc!r}")
    finally:
        # The plaintext and the ciphertext alike: nothing of this database stays in the job.
        shutil.rmtree(scratch, ignore_errors=True)
    return res


def _take_dump(db: DatabaseSpec, ctx: RunContext, scratch: Path, res: DatabaseResult) -> _Dump | None:
    """Dump the source (or take ``--from-dumps``' file), encrypt it and store it; None (the
    failure reported) when there is no dump to restore."""
    if ctx.from_dumps is not None:
        return _existing_dump(db, ctx.from_dumps, res, encryption=ctx.encryption)
    plain = scratch / f"{db.name}.dump"
    reference = _dump_source(db, ctx.bindir, plain, res)
    if reference is None:
        return None
    res.dump_bytes = plain.stat().st_size
    res.dump_sha256 = file_sha256(plain)
    dump = _Dump(path=plain, encrypted=False, reference=reference, sha256=res.dump_sha256)
    if ctx.encryption is not None and not _encrypt_dump(ctx, dump, res):
        return None
    key = dump_key(ctx.prefix, db.name, ctx.started, encrypted=dump.encrypted)
    # An upload failure is reported, but the restore below still proves the dump.
    dump.stored = _store(ctx.target, key, dump.path, res)
    return dump


def _existing_dump(
    db: DatabaseSpec, directory: Path, res: DatabaseResult, *, encryption: Encryption | None
) -> _Dump | None:
    """``--from-dumps``: ``<name>.dump``, else ``<name>.dump.age`` (decrypted with the spec's
    identity); the file's modification time is the freshness reference. None (the failure
    reported) when there is no such file."""
    plain = directory / f"{db.name}.dump"
    sealed = plain.with_name(plain.name + AGE_SUFFIX)
    if plain.is_file():
        path, encrypted = plain, False
    elif sealed.is_file():
        if encryption is None:
            res.fail(f"decryption failed: {sealed} is encrypted and the spec has no encryption")
            return None
        path, encrypted = sealed, True
    else:
        res.fail(f"no dump file {plain} (nor {sealed.name})")
        return None
    _log(f"{db.name}: using existing dump {path}")
    res.encrypted = encrypted
    digest = None
    if not encrypted:
        res.dump_bytes, res.dump_sha256 = path.stat().st_size, file_sha256(path)
        digest = res.dump_sha256
    return _Dump(path=path, encrypted=encrypted, reference=path.stat().st_mtime, sha256=digest)


def _dump_source(db: DatabaseSpec, bindir: Path, dump_path: Path, res: DatabaseResult) -> float | None:
    """``pg_dump -Fc`` the source into ``dump_path``; the time it started (the freshness
    reference), or None (the failure reported)."""
    try:
        env = source_env(db.connection, os.environ)
        probe_source(bindir, env)
    except SourceError as exc:
        res.fail(str(exc))
        return None
    reference = time.time()
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(bindir / "pg_dump"), "-Fc", "-w", "--file", str(dump_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        res.fail(f"pg_dump failed: {_first_error_line(proc.stderr)}")
        return None
    _log(f"{db.name}: dumped {dump_path.stat().st_size} bytes in {time.monotonic() - t0:.1f}s")
    return reference


def _encrypt_dump(ctx: RunContext, dump: _Dump, res: DatabaseResult) -> bool:
    """Replace the plaintext dump by its age ciphertext; False (the failure reported) if age failed."""
    assert ctx.age is not None and ctx.encryption is not None
    sealed = dump.path.with_name(dump.path.name + AGE_SUFFIX)
    try:
        age_encrypt(ctx.age, ctx.encryption.recipient, dump.path, sealed)
    except CryptoError as exc:
        res.fail(f"encryption failed: {exc}")
        return False
    dump.path.unlink()  # the plaintext never leaves the job, and does not wait in it either
    dump.path, dump.encrypted, res.encrypted = sealed, True, True
    res.ok(f"dump encrypted with age ({sealed.stat().st_size} bytes)")
    return True


def _store(target: UploadTarget, key: str, path: Path, res: DatabaseResult) -> Stored | None:
    """Upload the dump; a failure is reported as a failed check (None: nothing to read back)."""
    try:
        stored = target.put(key, path)
    except StorageError as exc:
        res.fail(f"upload failed: {exc}")
        return None
    if stored is not None:
        res.stored = stored.uri
        res.ok(f"dump stored: {stored.uri}")
    return stored


def _recover(
    db: DatabaseSpec, ctx: RunContext, dump: _Dump, scratch: Path, res: DatabaseResult
) -> str | None:
    """What a recovery does, timed: read the stored version back, decrypt it, check it is the
    dump taken, restore it. The scratch database's name, or None (the failure reported)."""
    t0 = time.monotonic()
    source = _fetch(ctx.target, dump, scratch, res)
    if dump.encrypted:
        what = dump.stored.uri if dump.stored is not None and source != dump.path else str(source)
        decrypted = _decrypt(ctx, source, what, scratch / f"{db.name}.restored.dump", res)
        if decrypted is None:
            return None
        source = decrypted
    if not _same_dump(dump, source, res):
        return None
    scratch_db = _restore(db, ctx.bindir, ctx.server, source, res)
    if scratch_db is None:
        return None
    res.restore_seconds = time.monotonic() - t0
    _check_rto(ctx.targets, res)
    return scratch_db


def _fetch(target: UploadTarget, dump: _Dump, scratch: Path, res: DatabaseResult) -> Path:
    """The stored version, read back; the local file when nothing was stored or the download
    failed (reported: the local copy still proves the dump itself)."""
    if dump.stored is None:
        return dump.path
    fetched = scratch / f"fetched-{Path(dump.stored.key).name}"
    try:
        target.fetch(dump.stored, fetched)
    except StorageError as exc:
        res.fail(f"download failed: {exc}")
        return dump.path
    res.ok(f"dump read back: {dump.stored.uri}")
    dump.path.unlink(missing_ok=True)
    return fetched


def _decrypt(ctx: RunContext, source: Path, what: str, dest: Path, res: DatabaseResult) -> Path | None:
    """age-decrypt ``source`` (``what``: the stored object, for the message) with the restore job's
    identity; None (the failure reported)."""
    assert ctx.age is not None and ctx.encryption is not None
    try:
        age_decrypt(ctx.age, ctx.encryption.identity_file, source, dest)
    except CryptoError as exc:
        res.fail(
            f"decryption failed: {what} did not decrypt with the identity "
            f"{ctx.encryption.identity_file} ({exc})"
        )
        return None
    return dest


def _same_dump(dump: _Dump, source: Path, res: DatabaseResult) -> bool:
    """What is restored is the dump taken (the decrypted read-back has the dump's SHA-256)."""
    if source == dump.path:
        return True
    digest = file_sha256(source)
    if dump.sha256 is None:  # an encrypted --from-dumps file: known only now
        res.dump_bytes, res.dump_sha256 = source.stat().st_size, digest
        return True
    if digest != dump.sha256:
        res.fail(f"the stored dump is not the dump taken (sha256 {digest}, expected {dump.sha256})")
        return False
    return True


def _restore(
    db: DatabaseSpec, bindir: Path, server: ScratchServer, dump_path: Path, res: DatabaseResult
) -> str | None:
    """Restore the dump into a new scratch database; its name, or None (the failure reported)
    when the dump is not a readable archive or does not restore."""
    listing = subprocess.run(
        [str(bindir / "pg_restore"), "--list", str(dump_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        res.fail(f"corrupt dump: not a readable pg_dump archive ({_first_error_line(listing.stderr)})")
        return None
    scratch_db = f"check_{db.name}"
    server.psql(f"create database {_quote_ident(scratch_db)}")
    t0 = time.monotonic()
    restore = subprocess.run(
        [
            str(bindir / "pg_restore"),
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            scratch_db,
            str(dump_path),
        ],
        env=server.env(scratch_db),
        capture_output=True,
        text=True,
        check=False,
    )
    if restore.returncode != 0:
        res.fail(f"corrupt dump: restore failed ({_first_error_line(restore.stderr)})")
        return None
    res.ok(f"restored into scratch database in {time.monotonic() - t0:.1f}s")
    return scratch_db


def _check_rto(targets: Targets, res: DatabaseResult) -> None:
    """The restore (read back, decryption, pg_restore) took at most ``rtoMinutes``."""
    if targets.rto_seconds is None or res.restore_seconds is None:
        return
    took = _human_age(res.restore_seconds)
    if res.restore_seconds <= targets.rto_seconds:
        res.ok(f"restore took {took}, within the RTO of {targets.rto_minutes}m")
    else:
        res.fail(
            f"RTO exceeded: the restore (read back, decryption, pg_restore) took {took}, "
            f"over the target of {targets.rto_minutes}m (rtoMinutes)"
        )


def _check_rpo(targets: Targets, res: DatabaseResult) -> None:
    """The newest restored row (over the freshness columns) is at most ``rpoHours`` old, now."""
    if not res.newest_values:
        if targets.rpo_seconds is not None:
            res.fail(
                "RPO not measured: no freshness column holds a row in the restored copy, so the "
                f"newest row's age is unknown (target {targets.rpo_hours}h, rpoHours)"
            )
        return
    label, newest = max(res.newest_values, key=lambda item: item[1])
    res.newest_row, res.newest_row_age = label.strip('"'), time.time() - newest
    if targets.rpo_seconds is None:
        return
    age = _human_age(res.newest_row_age)
    if res.newest_row_age <= targets.rpo_seconds:
        res.ok(f"newest restored row ({label}) is {age} old, within the RPO of {targets.rpo_hours}h")
    else:
        res.fail(
            f"RPO exceeded: the newest restored row ({label}) is {age} old, "
            f"over the target of {targets.rpo_hours}h (rpoHours)"
        )


# --------------------------------------------------------------------------------------------
# Metrics for alerting.
# --------------------------------------------------------------------------------------------

_LAST_SUCCESS = f"{METRIC_PREFIX}_last_success_timestamp_seconds"
#: Per database: the figures of the last run (a database whose restore failed has none).
_PER_DATABASE = (
    (
        f"{METRIC_PREFIX}_restore_duration_seconds",
        "Seconds from reading the stored dump back to a restored copy (download, decryption, "
        "pg_restore) in the last run.",
        "restore_seconds",
    ),
    (
        f"{METRIC_PREFIX}_newest_row_age_seconds",
        "Age of the newest restored row (over the freshness columns) when it was restored in the last run.",
        "newest_row_age",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    *,
    now: float,
    failed_checks: int,
    databases: int,
    duration: float,
    last_success: float | None,
    results: Sequence[DatabaseResult] = (),
    targets: Targets = Targets(),
) -> str:
    metrics: list[tuple[str, str, list[tuple[str, float]]]] = [
        (
            f"{METRIC_PREFIX}_last_run_timestamp_seconds",
            "Unix time the last restore check finished.",
            [("", now)],
        ),
        (
            f"{METRIC_PREFIX}_failed_checks",
            "Checks that failed in the last restore check run.",
            [("", failed_checks)],
        ),
        (f"{METRIC_PREFIX}_databases", "Databases covered by the last restore check run.", [("", databases)]),
        (
            f"{METRIC_PREFIX}_duration_seconds",
            "Wall time of the last restore check run.",
            [("", round(duration, 3))],
        ),
    ]
    if last_success is not None:
        metrics.append(
            (_LAST_SUCCESS, "Unix time of the last run in which every check passed.", [("", last_success)])
        )
    for name, help_text, attribute in _PER_DATABASE:
        samples = [
            (f'{{database="{_label(r.name)}"}}', round(value, 3))
            for r in results
            if (value := getattr(r, attribute)) is not None
        ]
        if samples:
            metrics.append((name, help_text, samples))
    for name, help_text, seconds in (
        (
            f"{METRIC_PREFIX}_rto_target_seconds",
            "The restore's target duration (rtoMinutes).",
            targets.rto_seconds,
        ),
        (
            f"{METRIC_PREFIX}_rpo_target_seconds",
            "The newest restored row's target age (rpoHours).",
            targets.rpo_seconds,
        ),
    ):
        if seconds is not None:
            metrics.append((name, help_text, [("", seconds)]))
    lines: list[str] = []
    for name, help_text, values in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {value}" for labels, value in values]
    return "\n".join(lines) + "\n"


def previous_last_success(textfile: Path) -> float | None:
    try:
        text = textfile.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf"^{_LAST_SUCCESS} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def write_textfile(path: Path, body: str) -> None:
    """Atomic, as the node exporter's textfile collector expects."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(body, encoding="utf-8")
    partial.replace(path)


def push_metrics(url: str, body: str, timeout: float = 15.0) -> None:
    """POST to a Pushgateway group: POST replaces only the metrics sent, so a failed run (which
    sends no last-success metric) keeps the previous success time visible to alerting."""
    target = url.rstrip("/") + "/metrics/job/platform_restore_check"
    request = urllib.request.Request(
        target,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="restore_check.py",
        description="Dump each database, store the dump, restore it into a scratch server and check it.",
    )
    p.add_argument(
        "--spec", help=f"spec file (JSON); default ${SPEC_ENV}, or inline JSON in ${SPEC_JSON_ENV}"
    )
    p.add_argument(
        "--database",
        action="append",
        default=[],
        metavar="NAME",
        help="only this database from the spec (repeatable)",
    )
    p.add_argument("--validate", action="store_true", help="only validate the spec, then exit")
    p.add_argument("--storage-dir", help="store dumps in this directory instead of the spec's storage")
    p.add_argument(
        "--from-dumps",
        metavar="DIR",
        help="check existing dumps DIR/<name>.dump (or <name>.dump.age, decrypted with the spec's "
        "identity) instead of dumping the sources (nothing is stored)",
    )
    p.add_argument(
        "--work-dir", default=None, help="where dumps and the scratch cluster live (default: $TMPDIR)"
    )
    p.add_argument(
        "--pg-bindir", default=os.environ.get(BINDIR_ENV), help=f"PostgreSQL binaries (${BINDIR_ENV})"
    )
    p.add_argument(
        "--age", default=os.environ.get(AGE_ENV), help=f"the age binary (${AGE_ENV}; default: PATH)"
    )
    p.add_argument("--metrics-file", help="write Prometheus metrics to this textfile (atomically)")
    p.add_argument("--pushgateway", help="push metrics to this Pushgateway URL")
    p.add_argument(
        "--inventory", action="store_true", help="add every restored table's row count and md5 to the summary"
    )
    return p


def _select(spec: Spec, names: Sequence[str]) -> tuple[DatabaseSpec, ...]:
    if not names:
        return spec.databases
    known = {db.name: db for db in spec.databases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SpecError(
            [
                f"--database {n}: unknown database (the spec declares: {', '.join(sorted(known))})"
                for n in unknown
            ]
        )
    return tuple(known[n] for n in names)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A validated command line: the spec, what to check, where dumps go."""

    spec: Spec
    selected: tuple[DatabaseSpec, ...]
    storage: StorageSpec
    target: UploadTarget


def _plan(args: argparse.Namespace) -> _Plan:
    """The spec and the command line, validated (:class:`SpecError` lists the problems)."""
    spec = load_spec(read_spec_source(args.spec, os.environ))
    selected = _select(spec, args.database)
    storage = spec.storage
    if args.storage_dir:
        storage = StorageSpec(type="local", prefix=spec.storage.prefix, path=args.storage_dir)
    return _Plan(spec, selected, storage, make_target(storage, os.environ))


def _tools(args: argparse.Namespace, spec: Spec) -> tuple[Path, Path | None]:
    """The PostgreSQL binaries and, when the spec encrypts, age (FileNotFoundError naming them)."""
    bindir = find_bindir(args.pg_bindir)
    age = find_age(args.age) if spec.encryption is not None else None
    return bindir, age


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plan = _plan(args)
    except SpecError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return EXIT_USAGE
    spec = plan.spec
    if args.validate:
        print(f"spec ok: {len(spec.databases)} database(s): {', '.join(db.name for db in spec.databases)}")
        return EXIT_OK
    try:
        bindir, age = _tools(args, spec)
    except FileNotFoundError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    results: list[DatabaseResult] = []
    workdir = Path(args.work_dir or tempfile.gettempdir())
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(ScratchServer(bindir, workdir))
        except (RuntimeError, OSError) as exc:
            print(f"ERROR scratch PostgreSQL did not start: {exc}", file=sys.stderr)
            return EXIT_SCRATCH
        _log(f"scratch server up on {server.socket_dir} ({bindir})")
        run_dir = Path(tempfile.mkdtemp(prefix="dumps-", dir=workdir))
        stack.callback(shutil.rmtree, run_dir, True)
        ctx = RunContext(
            bindir=bindir,
            server=server,
            target=plan.target,
            prefix=plan.storage.prefix,
            workdir=run_dir,
            from_dumps=Path(args.from_dumps) if args.from_dumps else None,
            want_inventory=args.inventory,
            started=started,
            encryption=spec.encryption,
            age=age,
            targets=spec.targets,
        )
        results.extend(check_one(db, ctx) for db in plan.selected)
    return _report(results, started, time.monotonic() - t0, args, spec.targets)


def _report(
    results: list[DatabaseResult],
    started: dt.datetime,
    duration: float,
    args: argparse.Namespace,
    targets: Targets = Targets(),
) -> int:
    failures = [f"{r.name}: {msg}" for r in results for msg in r.failed]
    now = time.time()
    summary = {
        "status": "failed" if failures else "ok",
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "durationSeconds": round(duration, 3),
        "failedChecks": len(failures),
        "failures": failures,
        "targets": {"rtoMinutes": targets.rto_minutes, "rpoHours": targets.rpo_hours},
        "databases": [r.as_json() for r in results],
    }
    print(SUMMARY_PREFIX + json.dumps(summary, sort_keys=True), flush=True)

    textfile = Path(args.metrics_file) if args.metrics_file else None
    last_success = now if not failures else (previous_last_success(textfile) if textfile else None)
    body = render_metrics(
        now=now,
        failed_checks=len(failures),
        databases=len(results),
        duration=duration,
        last_success=last_success,
        results=results,
        targets=targets,
    )
    if textfile:
        write_textfile(textfile, body)
    if args.pushgateway:
        try:
            push_metrics(args.pushgateway, body)
        except (urllib.error.URLError, OSError) as exc:
            # Not a failed check: the job's own status already says whether the backup is good;
            # a missing push shows up as RestoreCheckNotRun after 26h.
            _log(f"WARN could not push metrics to {args.pushgateway}: {getattr(exc, 'reason', exc)}")
    if failures:
        _log(f"{len(failures)} check(s) failed")
        return EXIT_CHECK_FAILED
    _log(f"all checks passed for {len(results)} database(s) in {duration:.1f}s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

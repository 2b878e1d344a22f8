"""Managed-backup drill: restore Scaleway's newest managed backup of the production Database
Instance into a scratch instance, check it, and always delete the scratch instance (issue 14,
item 6).

    python -m ops.backup_drill --region fr-par --instance-id UUID --private-network-id UUID \\
        --database NAME [--database NAME ...] [--source snapshot|backup] [--node-type DB-DEV-S] \\
        [--timeout-minutes 60] [--check-command CMD] [--poll-seconds 15] [--api-url URL]

An opt-in monthly job: the daily restore check (``ops/restore_check``) proves that our own logical
dumps restore; this proves that Scaleway's managed backups of the production instance do.

What "Scaleway's managed backup" is depends on the instance's volume (docs-content
``macros/databases/autobackups.mdx``): "Backups are used when your Database Instance's storage
option is a Local volume. Snapshots are available for Database Instances that use Block Storage
volumes", and on Block Storage "it is only possible to use automated snapshots as autobackup". The
platform's default ``volumeType`` is ``sbs_15k`` (``scw_platform/database.py:104``). So the drill
restores the newest *instance snapshot* of an ``sbs_*`` source (Block Storage, 5k and 15k IOPS:
docs-content ``pages/managed-databases-for-postgresql-and-mysql/concepts.mdx``), and the newest
*database backup* of each database of an ``lssd`` or ``bssd`` source; ``--source snapshot`` or
``--source backup`` overrides that (e.g. to drill manual database backups of a Block Storage
instance). Each step prints one ``backup-drill: <step>: OK|FAILED <detail>`` line.

Both paths begin with:

1. ``source``: ``get_instance`` of ``--instance-id``: it must be in ``SCW_DEFAULT_PROJECT_ID``
   (which scopes the backup and snapshot listings) and run PostgreSQL; its volume type chooses the
   path (the line says which, and why).
2. ``node-type``: ``list_node_types``: ``--node-type`` must exist, be enabled, in stock and not
   HA-only; on the snapshot path it must also take the source's volume type and size ("the Block
   volume size will be the same as the size of the restored snapshot", ``api.py:3100``).

Database backups (``--source backup``; ``lssd`` and ``bssd`` by default):

3. ``find-backup <db>``: ``list_database_backups`` of the source instance: the newest backup of each
   ``--database`` in status ``ready`` and not expired. A database without one fails the drill here,
   before anything is created (on an ``sbs_*`` source the message says its autobackups are
   snapshots).
4. ``create-instance``: a scratch instance ``backup-drill-<UTC time>-<hex>`` tagged ``backup-drill``
   in ``SCW_DEFAULT_PROJECT_ID``: same engine, the node type, no HA, backups disabled, the admin
   ``drill_admin`` with the generated password, a volume the node type offers (the first of
   ``sbs_5k``, ``sbs_15k``, ``bssd``, ``lssd``, encryptable if the source is encrypted, sized as the
   source's within the type's bounds), one endpoint on ``--private-network-id`` (IPAM) and no
   other. Since the RDB API change of December 2023, an instance created with a private network
   endpoint gets no public endpoint (scaleway-cli issue #3529, terraform-provider-scaleway PR
   #2308); the SDK's docstring still says a load balancer endpoint is "systematically created"
   (``scaleway/rdb/v1/api.py:1020``), so step 5 checks.
5. ``wait-ready``: ``get_instance`` until the instance leaves the SDK's transient statuses; it must
   be ``ready``, have an endpoint on the private network and no public (load balancer or direct
   access) endpoint: a public endpoint fails the drill before any production data is restored.
6. ``restore <db>``: ``restore_database_backup`` of each chosen backup into the scratch instance,
   ``database_name`` set to the database's name, one at a time; then ``get_database_backup`` and
   ``get_instance`` until both leave their transient statuses. The restore succeeded when the backup
   is ``ready`` again and the instance ``ready``. Restoring a *database backup* into *another*
   instance is this call: ``instance_id`` is the destination (``api.py:650``) and the console
   documents "restoring to a new database" (docs-content ``how-to/manage-backups.mdx``), so the
   database is not created beforehand. ``clone_instance`` (``api.py:1173``) copies the live
   instance: it exercises no backup.
7. ``check <db>``: as below.

Instance snapshots (``--source snapshot``; ``sbs_5k`` and ``sbs_15k`` by default):

3. ``find-snapshot``: ``list_snapshots`` of the source instance in the project: the newest snapshot
   in status ``ready`` and not expired; none fails the drill before anything is created. A
   snapshot is the whole volume: every database of the instance is restored at once, and
   ``--database`` selects which are checked.
4. ``create-instance``: ``create_instance_from_snapshot(snapshot_id, instance_name, is_ha_cluster=
   False, node_type)`` with the scratch name. That call takes nothing else (``api.py:3088``,
   ``marshalling.py:2050``): no project (the snapshot's), no tags, no volume, no user and no
   endpoint specification, so the instance is made private after it is ready, below. Its volume
   and its users come from the snapshot.
5. ``wait-ready``: ``get_instance`` until it is ``ready``. Nothing connects to it before the check
   command of step 9.
6. ``acl``: ``set_instance_acl_rules(rules=[])``; the answer must hold no rule; then wait ready.
   Why empty, not a rule for the private subnet: Scaleway's allowed IPs filter the public
   endpoint only ("Allowed IP configuration is only available for public networks", docs-content
   ``how-to/manage-allowed-ip-addresses.mdx``; "Access control is handled directly at
   network-level by Load Balancers", ``concepts.mdx``), and their initial setup "allows full
   network access from anywhere (``0.0.0.0/0``)" (``concepts.mdx``). Traffic from the private
   network never passes that filter, so a subnet rule would admit nothing the drill needs, would
   read as if the subnet were let in through the ACL, and would still admit anything with a
   source address in that range that reaches the public endpoint; an empty list admits nobody
   there ("When no IP is specified, your cluster cannot be reached by any host", the same page for
   Redis; Terraform's ``scaleway_rdb_acl`` deletion also leaves an instance with none,
   ``internal/services/rdb/acl.go``). This closes the window between the instance becoming ready
   and step 7 removing its public endpoint, during which it serves production's data and users.
7. ``endpoints``: ``delete_endpoint`` of every endpoint that is not on ``--private-network-id`` (a
   load balancer or direct access endpoint, or a private one on another network), each followed
   by a wait; then, unless one is already on the network, ``create_endpoint`` with
   ``EndpointSpec(private_network=EndpointSpecPrivateNetwork(private_network_id, ipam_config=
   EndpointSpecPrivateNetworkIpamConfig()))`` and a wait. It must end with no public endpoint and
   one on the private network, as in step 5 of the backup path. Why: an instance created from a
   snapshot of a private-only instance gets a public endpoint and no private one
   (terraform-provider-scaleway issue #3714 "Unexpected public endpoint created when using
   snapshot_id with private_network", PR #4134 "remove inherited load balancer on snapshot
   restore", PR #3239 creating the private endpoint with ``CreateEndpoint`` after the restore);
   removing a public endpoint re-initializes the instance (docs-content
   ``how-to/remove-public-endpoint.mdx``), hence the waits.
8. ``create-user``: ``create_user(name=drill_admin, password, is_admin=True)``; the answer must be
   that admin; then wait ready. The snapshot carries production's users and their passwords: the
   drill never reads nor needs them, the checks run as ``drill_admin`` as on the backup path.
9. ``check <db>`` as below, then ``grant <db>`` before its check command:
   ``set_privilege(database_name, user_name=drill_admin, permission=readonly)`` (the answer must
   say ``readonly``), then wait ready. Admin rights "do not override the permissions configured for
   the logical databases" and "newly created users have no permissions by default" (docs-content
   ``how-to/manage-users.mdx``): without it ``drill_admin`` could not read the snapshot's tables.
   ``readonly`` because the checks only read (the copy stays what the snapshot holds), and it is
   what the daily restore check's reader dumps with (``scw_platform/db_grants.py``); Scaleway
   applies it to the objects that exist when it is set, which here is all of them.

Then, on either path:

``check <db>``: ``list_databases`` of the scratch instance lists the database (restored by step 6,
or present in the snapshot). With ``--check-command``, ``check-command <db>`` then runs the
command for that database (below).

``delete-instance``: ``delete_instance`` of the scratch instance, ALWAYS: after a failed step, an
API error, a timeout, Ctrl-C (``KeyboardInterrupt``) or ``SIGTERM`` (turned into an exception so
``finally`` runs); further SIGINT/SIGTERM are held back while it runs. When the creating call
failed or was interrupted before answering, ``list_instances`` looks for an instance of the
scratch name (and, for ``create_instance``, its tag: ``create_instance_from_snapshot`` cannot tag)
that it may have created anyway and deletes that. A refused deletion is retried until
``--timeout-minutes``; a 404 means already gone. If it still fails, the drill exits 1 saying the
instance was NOT deleted and how to delete it.

Then a summary: verdict, the restore durations (per database, or the instance from the snapshot),
total duration, what became of the scratch instance. Exit codes: 0 every step passed and the
scratch instance was deleted; 1 a step, check or API call failed (the message names the step, the
SDK call, the HTTP method, path and status, e.g. ``set_instance_acl_rules failed: PUT
/rdb/v1/regions/fr-par/instances/<id>/acls: 500 ...``), the drill was interrupted, or the scratch
instance could not be deleted; 2 usage error (arguments, credentials). Never a traceback.

``--timeout-minutes`` (default 60; fractions allowed) bounds each wait (instance ready, each
restore, the wait after each change), each run of the check command and the deletion retries;
``--poll-seconds`` (default 15) is the polling interval. In Kubernetes, give the job a
``terminationGracePeriodSeconds`` of at least a minute so the deletion after SIGTERM can finish.

The check command. ``--check-command CMD`` is split like a shell would (``shlex``, no shell runs)
and executed once per database, after the restores, with ``{database}`` in any argument replaced
by the database name. Its environment is the drill's without ``SCW_*`` and ``PG*`` variables, plus
libpq's: ``PGHOST`` (the private endpoint's IP), ``PGPORT``, ``PGUSER`` (the scratch admin
``drill_admin``), ``PGPASSWORD``, ``PGDATABASE`` (the database), ``PGSSLMODE=require``, and
``DRILL_INSTANCE_ID`` with ``DRILL_BACKUP_ID`` or ``DRILL_SNAPSHOT_ID`` (what the copy was
restored from). A non-zero exit fails the drill. Its output is relayed, indented, with the password
masked. The job must run where the private network is reachable (a pod of the production cluster,
on that network). The scheduled job (``scw_platform/drill.py``) runs the daily restore check's
checks this way, in the restore check's image: ``restore_check.py`` with a spec per database whose
``connection`` sets neither ``host``, ``port`` nor ``user`` (it then takes them from ``PG*``,
``source_env``) and ``"passwordEnv": "PGPASSWORD"``, and that stores nothing::

    --check-command '/opt/restore-check/venv/bin/python3 /opt/restore-check/restore_check.py
                     --spec /etc/backup-drill/{database}.json --work-dir /work'

The scratch admin password: 32 characters from ``secrets`` (lower, upper, digit and special, as
``create_instance`` and ``create_user`` require, ``api.py:1004``, ``:2323``), sent only in the
``create_instance`` or ``create_user`` body and to the check command as ``PGPASSWORD``; never
printed, and masked in everything relayed. The ``scaleway`` logger is held at WARNING: the SDK
logs request bodies, password included, at DEBUG (``scaleway_core/api.py:24-59``).

Credentials come from the environment as the SDK reads them (``Client.from_env``):
``SCW_ACCESS_KEY``, ``SCW_SECRET_KEY`` and ``SCW_DEFAULT_PROJECT_ID`` are required (the project
scopes the listings and holds the scratch instance); ``SCW_API_URL`` or ``--api-url`` changes the
endpoint (tests). The key needs RDB read/write permission in that project.

What cannot be verified here (tests/integration/test_backup_drill.py plays the API from the SDK's
shapes and these documents):

* which endpoints Scaleway really gives an instance created from a snapshot (the Terraform
  threads above say one public and no private endpoint; the drill handles any mix);
* whether that instance inherits the source's allowed IPs or starts at ``0.0.0.0/0``, whether the
  API accepts an empty rule list (if it refuses, or answers with rules, the drill fails), and
  whether ACL rules leave private-network traffic alone as documented (if not, the check command
  cannot connect);
* whether each change leaves the instance ``ready`` at once or passes through a transient status
  first (the drill waits either way), and real timings;
* whether the instance made from an encrypted instance's snapshot is encrypted at rest too (the
  data is "encrypted at volume level", ``concepts.mdx``, and the volume is the snapshot's; the
  drill does not check it);
* whether ``readonly`` covers every schema the production databases use (the platform's
  emulation, ``scw_platform/db_grants.py``, assumes schema ``public`` only; another schema would
  make the check's ``pg_dump`` fail), and whether a database backup restored into a
  ``create_instance`` instance is readable by its initial user ``drill_admin`` (the initial user
  "is attributed" the permissions, ``manage-users.mdx``; nothing is said of databases restored
  later);
* whether an instance created from a snapshot has autobackups scheduled: a snapshot it took would
  outlive it ("When you delete an Instance, its associated snapshots are not deleted",
  docs-content ``how-to/manage-snapshots.mdx``); a new instance's first autobackup is due a backup
  period, a day by default, after its creation (``autobackups.mdx``), longer than the scheduled
  job's deadline with the default timeout, but whether a restored instance keeps the source's
  schedule is not documented, and the drill does not disable it.

SDK calls this relies on (scaleway 2.12.0 / scaleway-core 2.12.0, read in the installed source;
``api.py`` is ``scaleway/rdb/v1/api.py``):

* ``api.py:906`` ``get_instance(instance_id, region)``: ``GET /rdb/v1/regions/{region}/instances/{id}``;
  ``marshalling.py:686`` ``unmarshal_Instance`` (``endpoints`` and the deprecated ``endpoint``).
* ``api.py:291`` ``list_node_types_all(include_disabled_types, region, page_size)``:
  ``GET .../node-types``; ``types.py:989`` ``NodeType``, ``types.py:634`` ``NodeTypeVolumeType``
  (``min_size``, ``max_size``, ``chunk_size`` in bytes).
* ``api.py:381`` ``list_database_backups_all(region, instance_id, order_by, project_id, page_size)``:
  ``GET .../backups`` (no database filter: done here); ``types.py:703`` ``DatabaseBackup``.
* ``api.py:977`` ``create_instance(engine, user_name, password, node_type, region, project_id, name,
  is_ha_cluster, disable_backup, volume_size, backup_same_region, tags, volume_type, init_endpoints,
  encryption)``: ``POST .../instances``; ``types.py:689`` ``EndpointSpec``, ``:416``
  ``EndpointSpecPrivateNetwork``, ``:315`` ``EndpointSpecPrivateNetworkIpamConfig`` (marshalled as
  ``{"private_network": {"private_network_id": ..., "ipam_config": {}}}``, ``marshalling.py:1987``,
  ``:2013``), ``:511`` ``EncryptionAtRest``.
* ``api.py:638`` ``restore_database_backup(database_backup_id, instance_id, region, database_name)``:
  ``POST .../backups/{id}/restore`` with ``{"instance_id", "database_name"}`` (``marshalling.py:2360``).
* ``api.py:478`` ``get_database_backup(database_backup_id, region)``: ``GET .../backups/{id}``.
* ``api.py:2842`` ``list_snapshots_all(region, instance_id, project_id, order_by, page_size)``:
  ``GET .../snapshots`` (``organization_id`` defaults to the profile's); ``types.py:1080``
  ``Snapshot``, ``types.py:248`` ``SnapshotStatus``, ``marshalling.py:909`` ``unmarshal_Snapshot``.
* ``api.py:3088`` ``create_instance_from_snapshot(snapshot_id, instance_name, region, is_ha_cluster,
  high_availability_mode, node_type)``: ``POST .../snapshots/{id}/create-instance`` with
  ``{"instance_name", "is_ha_cluster", "node_type"}`` (``marshalling.py:2050``); answers an Instance.
* ``api.py:2128`` ``set_instance_acl_rules(instance_id, rules, region)``: ``PUT
  .../instances/{id}/acls`` with ``{"rules": []}`` (``marshalling.py:2375``), "Replace all the ACL
  rules"; ``marshalling.py:1825`` ``unmarshal_SetInstanceACLRulesResponse`` (``rules``).
* ``api.py:3186`` ``delete_endpoint(endpoint_id, region)``: ``DELETE .../endpoints/{id}`` (no body,
  no answer); ``api.py:3142`` ``create_endpoint(instance_id, region, endpoint_spec)``: ``POST
  .../instances/{id}/endpoints`` with ``{"endpoint_spec": ...}`` (``marshalling.py:2038``);
  ``types.py:383`` ``Endpoint``, ``marshalling.py:176`` ``unmarshal_Endpoint``.
* ``api.py:2309`` ``create_user(instance_id, name, password, is_admin, region)``: ``POST
  .../instances/{id}/users`` with ``{"name", "password", "is_admin"}`` (``marshalling.py:2279``);
  ``types.py:1143`` ``User``.
* ``api.py:2737`` ``set_privilege(instance_id, database_name, user_name, region, permission)``:
  ``PUT .../instances/{id}/privileges`` with ``{"database_name", "user_name", "permission"}``
  (``marshalling.py:2403``); ``types.py:222`` ``Permission``, ``marshalling.py:857``
  ``unmarshal_Privilege``.
* ``api.py:2507`` ``list_databases_all(instance_id, region, name, page_size)``:
  ``GET .../instances/{id}/databases``.
* ``api.py:856`` ``list_instances_all(region, name, tags, project_id, page_size)``: ``GET .../instances``
  (``name`` is a substring match: the exact name is checked here).
* ``api.py:1139`` ``delete_instance(instance_id, region)``: ``DELETE .../instances/{id}``.
* ``content.py:13`` ``DATABASE_BACKUP_TRANSIENT_STATUSES`` and ``content.py:28``
  ``INSTANCE_TRANSIENT_STATUSES``: what "still in progress" means. The SDK's own waiters
  (``api.py:940`` ``wait_for_instance``, ``scaleway_core/utils/waiter.py``) are not used: they
  cannot poll faster than once a second nor stop early on a final bad status.
* ``marshalling.py:337`` ``unmarshal_DatabaseBackup``: statuses and volume types come through as
  the API's strings.
* ``scaleway_core/profile/profile.py:98`` ``Profile.from_env``; ``scaleway_core/api.py:105``
  ``API.__init__`` runs ``Client.validate`` (``client.py:28``), whose ValueError quotes a malformed
  secret key (``client.py:44``): masked here. ``scaleway_core/api.py:187`` ``_throw_on_error``
  raises ``ScalewayException`` (``:88``, holds the response) for HTTP >= 400 after decoding the
  body as JSON (a non-JSON body raises ``requests.JSONDecodeError``); ``api.py:166`` sends with no
  timeout. ``scaleway_core/utils/fetch_all_pages.py:19``: the ``*_all`` helpers page until a short page.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import secrets
import shlex
import signal
import string
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic, sleep
from types import FrameType
from typing import Any, TypeVar

import requests
from scaleway.rdb.v1 import (
    DATABASE_BACKUP_TRANSIENT_STATUSES,
    INSTANCE_TRANSIENT_STATUSES,
    EncryptionAtRest,
    EndpointSpec,
    EndpointSpecPrivateNetwork,
    EndpointSpecPrivateNetworkIpamConfig,
    ListDatabaseBackupsRequestOrderBy,
    ListSnapshotsRequestOrderBy,
    Permission,
    RdbV1API,
)
from scaleway_core.api import ScalewayException

from ops import scaleway_api

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PROG = "backup-drill"
PAGE_SIZE = 100  # the API's maximum page size: fewest requests
REGION = re.compile(r"[a-z]{2}-[a-z]{3}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Database names as the platform declares them (a PostgreSQL identifier; Scaleway allows dashes).
DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
NODE_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,40}")
ADMIN_USER = "drill_admin"
SCRATCH_TAG = "backup-drill"
#: What the drill restores: instance snapshots or database backups (``--source``).
SNAPSHOT = "snapshot"
BACKUP = "backup"
#: Volume types whose autobackups are snapshots: Block Storage (docs-content concepts.mdx).
SNAPSHOT_VOLUMES = ("sbs_5k", "sbs_15k")
#: Volume types for a scratch instance made by create_instance, cheapest first; sbs_* can be
#: encrypted at rest.
VOLUME_PREFERENCE = ("sbs_5k", "sbs_15k", "bssd", "lssd")
PASSWORD_LENGTH = 32
#: create_instance and create_user: 8 to 128 characters with a digit, an upper and a lower case
#: letter and a special character (api.py:1004, :2323); these specials need no quoting in libpq or
#: a shell.
PASSWORD_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_.!#+=")
MASK = "<redacted>"
INSTANCE_BUSY = frozenset(str(s) for s in INSTANCE_TRANSIENT_STATUSES)
BACKUP_BUSY = frozenset(str(s) for s in DATABASE_BACKUP_TRANSIENT_STATUSES)
T = TypeVar("T")


class UsageError(Exception):
    """The drill cannot start as asked: exit 2 with this message."""


class StepError(Exception):
    """A step failed: exit 1. ``status`` is the HTTP status when an API call was answered."""

    def __init__(self, step: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.status = status
        #: Its FAILED line is already printed.
        self.reported = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that every ``finally`` runs."""


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    engine: str
    volume_type: str
    volume_size: int
    encrypted: bool
    #: SNAPSHOT or BACKUP: what is restored.
    restore_from: str


@dataclass(frozen=True)
class Backup:
    id: str
    name: str
    database: str
    created_at: datetime
    size: int


@dataclass(frozen=True)
class Snapshot:
    id: str
    name: str
    created_at: datetime
    size: int


@dataclass(frozen=True)
class Shape:
    """What a scratch instance made by create_instance is made of."""

    node_type: str
    volume_type: str
    volume_size: int
    encrypted: bool


@dataclass(frozen=True)
class Plan:
    source: Source
    shape: Shape
    backups: tuple[Backup, ...]


@dataclass(frozen=True)
class Origin:
    """A database to check on the scratch instance and what it was restored from."""

    database: str
    #: SNAPSHOT or BACKUP.
    kind: str
    id: str


@dataclass
class Report:
    """What happened, for the step lines and the summary; ``secrets`` are masked in all output."""

    secrets: list[str] = field(default_factory=list)
    started: float = field(default_factory=monotonic)
    step: str = "arguments"
    #: Databases restored (a backup restored, or found in the instance made from the snapshot).
    restored: list[str] = field(default_factory=list)
    #: What each restore took: per database, or for the instance made from the snapshot.
    durations: dict[str, float] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    instance_name: str = ""
    instance_id: str | None = None
    #: The SDK call that creates the scratch instance, and the tags it sets (the orphan lookup's).
    create_call: str = "create_instance"
    create_tags: tuple[str, ...] = ()
    create_attempted: bool = False
    #: "deleted", "not created", or why it was NOT deleted; None before the cleanup ran.
    cleanup: str | None = None
    cleanup_failed: bool = False

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, MASK)
        return text

    def begin(self, step: str) -> float:
        self.step = step
        return monotonic()

    def line(self, step: str, verdict: str, detail: str) -> None:
        print(self.mask(f"{PROG}: {step}: {verdict} {detail}"), flush=True)

    def ok(self, step: str, detail: str, since: float) -> None:
        self.line(step, "OK", f"{detail} ({monotonic() - since:.1f}s)")


# --------------------------------------------------------------------------------------------
# The RDB API: the SDK calls, each failure a StepError naming the step, the call and the request
# --------------------------------------------------------------------------------------------


def _describe(exc: Exception) -> tuple[str, int | None]:
    """``<status> (<API message>)`` and the status, or why there was no usable answer."""
    answer = scaleway_api.api_answer(exc)
    if answer is not None:
        status, detail = answer
        return (f"{status} ({detail})" if status is not None else detail), status
    if isinstance(exc, requests.RequestException):
        return f"no answer ({type(exc).__name__})", None
    return f"unexpected answer ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", None


class Rdb:
    """The RDB API of one region and project, with failures turned into :class:`StepError`."""

    def __init__(self, api: Any, region: str, project_id: str) -> None:
        self.api = api
        self.region = region
        self.project_id = project_id
        self.base = f"/rdb/v1/regions/{region}"

    def _call(self, step: str, call: str, request: str, fetch: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fetch(region=self.region, **kwargs)
        except (ScalewayException, requests.RequestException, ValueError, TypeError, KeyError) as exc:
            reason, status = _describe(exc)
            raise StepError(step, f"{call} failed: {request}: {reason}", status) from exc

    def get_instance(self, step: str, instance_id: str) -> Any:
        # scaleway/rdb/v1/api.py:906
        request = f"GET {self.base}/instances/{instance_id}"
        return self._call(step, "get_instance", request, self.api.get_instance, instance_id=instance_id)

    def node_types(self, step: str) -> list[Any]:
        # scaleway/rdb/v1/api.py:291 (pages: scaleway_core/utils/fetch_all_pages.py:19)
        fetch = self.api.list_node_types_all
        request = f"GET {self.base}/node-types"
        return self._call(
            step, "list_node_types", request, fetch, include_disabled_types=False, page_size=PAGE_SIZE
        )

    def backups(self, step: str, instance_id: str) -> list[Any]:
        # scaleway/rdb/v1/api.py:381; order_by: types.py:116
        return self._call(
            step,
            "list_database_backups",
            f"GET {self.base}/backups",
            self.api.list_database_backups_all,
            instance_id=instance_id,
            project_id=self.project_id,
            order_by=ListDatabaseBackupsRequestOrderBy.CREATED_AT_DESC,
            page_size=PAGE_SIZE,
        )

    def snapshots(self, step: str, instance_id: str) -> list[Any]:
        # scaleway/rdb/v1/api.py:2842; order_by: types.py:169
        return self._call(
            step,
            "list_snapshots",
            f"GET {self.base}/snapshots",
            self.api.list_snapshots_all,
            instance_id=instance_id,
            project_id=self.project_id,
            order_by=ListSnapshotsRequestOrderBy.CREATED_AT_DESC,
            page_size=PAGE_SIZE,
        )

    def create(self, step: str, **kwargs: Any) -> Any:
        # scaleway/rdb/v1/api.py:977, body: marshalling.py:2083
        request = f"POST {self.base}/instances"
        return self._call(step, "create_instance", request, self.api.create_instance, **kwargs)

    def create_from_snapshot(self, step: str, snapshot_id: str, name: str, node_type: str) -> Any:
        # scaleway/rdb/v1/api.py:3088, body: marshalling.py:2050
        return self._call(
            step,
            "create_instance_from_snapshot",
            f"POST {self.base}/snapshots/{snapshot_id}/create-instance",
            self.api.create_instance_from_snapshot,
            snapshot_id=snapshot_id,
            instance_name=name,
            is_ha_cluster=False,
            node_type=node_type,
        )

    def set_acl(self, step: str, instance_id: str) -> Any:
        # scaleway/rdb/v1/api.py:2128, body: marshalling.py:2375 ({"rules": []})
        return self._call(
            step,
            "set_instance_acl_rules",
            f"PUT {self.base}/instances/{instance_id}/acls",
            self.api.set_instance_acl_rules,
            instance_id=instance_id,
            rules=[],
        )

    def delete_endpoint(self, step: str, endpoint_id: str) -> None:
        # scaleway/rdb/v1/api.py:3186
        request = f"DELETE {self.base}/endpoints/{endpoint_id}"
        self._call(step, "delete_endpoint", request, self.api.delete_endpoint, endpoint_id=endpoint_id)

    def create_endpoint(self, step: str, instance_id: str, spec: EndpointSpec) -> Any:
        # scaleway/rdb/v1/api.py:3142, body: marshalling.py:2038
        return self._call(
            step,
            "create_endpoint",
            f"POST {self.base}/instances/{instance_id}/endpoints",
            self.api.create_endpoint,
            instance_id=instance_id,
            endpoint_spec=spec,
        )

    def create_user(self, step: str, instance_id: str, name: str, password: str) -> Any:
        # scaleway/rdb/v1/api.py:2309, body: marshalling.py:2279
        return self._call(
            step,
            "create_user",
            f"POST {self.base}/instances/{instance_id}/users",
            self.api.create_user,
            instance_id=instance_id,
            name=name,
            password=password,
            is_admin=True,
        )

    def set_privilege(self, step: str, instance_id: str, database: str, user: str) -> Any:
        # scaleway/rdb/v1/api.py:2737, body: marshalling.py:2403; types.py:222 Permission
        return self._call(
            step,
            "set_privilege",
            f"PUT {self.base}/instances/{instance_id}/privileges",
            self.api.set_privilege,
            instance_id=instance_id,
            database_name=database,
            user_name=user,
            permission=Permission.READONLY,
        )

    def restore(self, step: str, backup_id: str, instance_id: str, database: str) -> Any:
        # scaleway/rdb/v1/api.py:638, body: marshalling.py:2360
        return self._call(
            step,
            "restore_database_backup",
            f"POST {self.base}/backups/{backup_id}/restore",
            self.api.restore_database_backup,
            database_backup_id=backup_id,
            instance_id=instance_id,
            database_name=database,
        )

    def backup(self, step: str, backup_id: str) -> Any:
        # scaleway/rdb/v1/api.py:478
        request = f"GET {self.base}/backups/{backup_id}"
        fetch = self.api.get_database_backup
        return self._call(step, "get_database_backup", request, fetch, database_backup_id=backup_id)

    def databases(self, step: str, instance_id: str, name: str) -> list[Any]:
        # scaleway/rdb/v1/api.py:2507
        return self._call(
            step,
            "list_databases",
            f"GET {self.base}/instances/{instance_id}/databases",
            self.api.list_databases_all,
            instance_id=instance_id,
            name=name,
            page_size=PAGE_SIZE,
        )

    def instances_named(self, step: str, name: str, tags: Sequence[str]) -> list[Any]:
        # scaleway/rdb/v1/api.py:856 (name is a pattern: the exact match is checked by the caller)
        return self._call(
            step,
            "list_instances",
            f"GET {self.base}/instances",
            self.api.list_instances_all,
            name=name,
            tags=list(tags) or None,
            project_id=self.project_id,
            page_size=PAGE_SIZE,
        )

    def delete(self, step: str, instance_id: str) -> None:
        # scaleway/rdb/v1/api.py:1139
        request = f"DELETE {self.base}/instances/{instance_id}"
        self._call(step, "delete_instance", request, self.api.delete_instance, instance_id=instance_id)


def _status(resource: Any) -> str:
    """The status as the API's string (the unmarshallers pass it through; enums print as values)."""
    return str(getattr(resource, "status", "") or "unknown")


def poll(step: str, what: str, deadline: float, every: float, probe: Callable[[], str | None]) -> None:
    """Run ``probe`` until it returns None (done), at most until ``deadline``; it returns the
    status still waited on, or raises StepError for a final bad one."""
    while True:
        waiting = probe()
        if waiting is None:
            return
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise StepError(step, f"{what} did not finish within the timeout (last status {waiting})")
        sleep(min(every, remaining))


def await_ready(rdb: Rdb, args: argparse.Namespace, step: str, instance_id: str) -> Any:
    """``get_instance`` until the instance leaves the transient statuses (at most one timeout); it
    must then be ``ready``. Returns what the last call answered."""
    latest: list[Any] = []

    def probe() -> str | None:
        latest[:] = [rdb.get_instance(step, instance_id)]
        status = _status(latest[0])
        if status in INSTANCE_BUSY:
            return status
        if status != "ready":
            raise StepError(step, f"scratch instance {instance_id} is {status}, not ready")
        return None

    poll(step, f"scratch instance {instance_id}", monotonic() + args.timeout, args.poll_seconds, probe)
    return latest[0]


# --------------------------------------------------------------------------------------------
# Before anything is created: the source, the node type, the newest backups or snapshot
# --------------------------------------------------------------------------------------------


def restore_kind(volume_type: str, forced: str | None) -> str:
    """``--source``, else snapshots for Block Storage volumes, database backups for the others."""
    if forced is not None:
        return forced
    return SNAPSHOT if volume_type in SNAPSHOT_VOLUMES else BACKUP


def source_of(rdb: Rdb, args: argparse.Namespace, report: Report) -> Source:
    since = report.begin("source")
    instance_id = args.instance_id
    instance = rdb.get_instance("source", instance_id)
    engine = str(instance.engine or "")
    if not engine.lower().startswith("postgresql"):
        raise StepError(
            "source", f"instance {instance_id} runs {engine or 'an unknown engine'}, not PostgreSQL"
        )
    if str(instance.project_id) != rdb.project_id:  # the listings are scoped to that project
        raise StepError(
            "source",
            f"instance {instance_id} is in project {instance.project_id}, not in SCW_DEFAULT_PROJECT_ID "
            f"{rdb.project_id}, where its backups are listed and the scratch instance is created",
        )
    volume = instance.volume
    encryption = instance.encryption
    volume_type = str(volume.type_) if volume is not None else "unknown"
    source = Source(
        id=instance_id,
        name=str(instance.name),
        engine=engine,
        volume_type=volume_type,
        volume_size=int(volume.size or 0) if volume is not None else 0,
        encrypted=bool(encryption is not None and encryption.enabled),
        restore_from=restore_kind(volume_type, args.source),
    )
    detail = f"{source.name} ({engine}, {source.volume_type} {_size(source.volume_size)}"
    detail += ", encrypted at rest)" if source.encrypted else ")"
    what = "instance snapshots" if source.restore_from == SNAPSHOT else "database backups"
    why = "as --source asks" if args.source else f"the default for {source.volume_type} volumes"
    report.ok("source", f"{detail}; restoring its {what}, {why}", since)
    return source


def _size(octets: int) -> str:
    return f"{octets / 1e9:.1f} GB" if octets >= 1e9 else f"{octets / 1e6:.1f} MB"


def volume_size(offer: Any, wanted: int) -> int:
    """``wanted`` bytes rounded up to the offer's chunk and clamped to its bounds."""
    low, high = int(offer.min_size or 0), int(offer.max_size or 0)
    chunk = int(offer.chunk_size or 0)
    size = max(wanted, low)
    if chunk > 0:
        size = math.ceil(size / chunk) * chunk
    return min(size, high) if high else size


def usable_node(rdb: Rdb, wanted: str) -> Any:
    """The node type as the API names it: enabled, in stock, not HA-only."""
    types = {str(t.name).lower(): t for t in rdb.node_types("node-type")}
    node = types.get(wanted.lower())
    if node is None:
        raise StepError("node-type", f"node type {wanted} does not exist in {rdb.region} (or is disabled)")
    if node.disabled or node.is_ha_required or str(node.stock_status) == "out_of_stock":
        raise StepError(
            "node-type", f"node type {node.name} cannot be used: disabled, HA-only or out of stock"
        )
    return node


def _offers(node: Any) -> dict[str, Any]:
    return {str(v.type_): v for v in node.available_volume_types or []}


def shape_for(rdb: Rdb, wanted: str, source: Source, report: Report) -> Shape:
    """The node type, and a volume it offers (encryptable if the source is)."""
    since = report.begin("node-type")
    node = usable_node(rdb, wanted)
    offers = _offers(node)
    usable = [t for t in VOLUME_PREFERENCE if t in offers and (t.startswith("sbs") or not source.encrypted)]
    if not usable:
        need = "encryptable (sbs) volume" if source.encrypted else "known volume type"
        raise StepError("node-type", f"node type {node.name} offers no {need}: {', '.join(offers) or 'none'}")
    offer = offers[usable[0]]
    shape = Shape(str(node.name), usable[0], volume_size(offer, source.volume_size), source.encrypted)
    report.ok("node-type", f"{shape.node_type}, volume {shape.volume_type} {_size(shape.volume_size)}", since)
    return shape


def node_for_snapshot(rdb: Rdb, wanted: str, source: Source, report: Report) -> str:
    """The node type, which must take the snapshot's volume as it is: the source's type and size
    ("the Block volume size will be the same as the size of the restored snapshot", api.py:3100)."""
    since = report.begin("node-type")
    node = usable_node(rdb, wanted)
    offers = _offers(node)
    offer = offers.get(source.volume_type)
    if offer is None:
        raise StepError(
            "node-type",
            f"node type {node.name} offers no {source.volume_type} volume (the snapshot's): "
            f"{', '.join(offers) or 'none'}",
        )
    if offer.max_size and source.volume_size > int(offer.max_size):
        raise StepError(
            "node-type",
            f"node type {node.name} takes {source.volume_type} volumes up to {_size(int(offer.max_size))}, "
            f"the snapshot's is {_size(source.volume_size)}",
        )
    detail = f"{node.name}, volume {source.volume_type} {_size(source.volume_size)} as the snapshot's"
    report.ok("node-type", detail, since)
    return str(node.name)


def _usable(resource: Any, now: datetime) -> bool:
    """Ready, dated and not expired."""
    expires = resource.expires_at
    return (
        _status(resource) == "ready"
        and isinstance(resource.created_at, datetime)
        and not (isinstance(expires, datetime) and _aware(expires) <= now)
    )


def newest_backups(rdb: Rdb, source: Source, databases: Sequence[str], report: Report) -> tuple[Backup, ...]:
    """The newest ready, unexpired backup of each database; every database is looked at before a
    missing one fails the drill, so the message names them all."""
    since = report.begin(f"find-backup {databases[0]}")
    found = rdb.backups(report.step, source.id)
    now = datetime.now(UTC)
    chosen: list[Backup] = []
    missing: list[str] = []
    for database in databases:
        step = f"find-backup {database}"
        candidates = [
            Backup(str(b.id), str(b.name), database, _aware(b.created_at), int(b.size or 0))
            for b in found
            if b.instance_id == source.id and b.database_name == database and _usable(b, now)
        ]
        if not candidates:
            missing.append(database)
            report.line(step, "FAILED", f"no ready backup of database {database} on instance {source.id}")
            continue
        best = max(candidates, key=lambda b: b.created_at)
        chosen.append(best)
        detail = f"backup {best.name} ({best.id}) of {_age(best.created_at, now)}"
        report.ok(step, f"{detail}, {_size(best.size)}", since)
    if missing:
        failure = StepError(f"find-backup {missing[0]}", _no_backup_message(missing, source))
        failure.reported = True
        raise failure
    return tuple(chosen)


def _age(created_at: datetime, now: datetime) -> str:
    return f"{created_at:%Y-%m-%dT%H:%M:%SZ}, {(now - created_at).total_seconds() / 3600:.1f} h old"


def _no_backup_message(missing: Sequence[str], source: Source) -> str:
    message = (
        f"no ready backup of database(s) {', '.join(missing)} on instance {source.name} ({source.id}): "
        "nothing was created"
    )
    if source.volume_type in SNAPSHOT_VOLUMES:
        message += (
            f"; the instance uses Block Storage ({source.volume_type}), whose autobackups are "
            "instance snapshots, not database backups: drop --source backup to restore its snapshots"
        )
    return message


def newest_snapshot(rdb: Rdb, source: Source, report: Report) -> Snapshot:
    """The newest ready, unexpired snapshot of the source instance."""
    since = report.begin("find-snapshot")
    found = rdb.snapshots("find-snapshot", source.id)
    now = datetime.now(UTC)
    candidates = [
        Snapshot(str(s.id), str(s.name), _aware(s.created_at), int(s.size or 0))
        for s in found
        if s.instance_id == source.id and _usable(s, now)
    ]
    if not candidates:
        raise StepError(
            "find-snapshot",
            f"no ready snapshot of instance {source.name} ({source.id}): nothing was created; on Block "
            "Storage its autobackups are snapshots: are they enabled (platform:database.backups)?",
        )
    best = max(candidates, key=lambda s: s.created_at)
    detail = f"snapshot {best.name} ({best.id}) of {_age(best.created_at, now)}, {_size(best.size)}"
    report.ok("find-snapshot", f"{detail}, every database of the instance", since)
    return best


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# The scratch instance
# --------------------------------------------------------------------------------------------


def generate_password() -> str:
    """A random admin password meeting the API's rules: one of each class, then random."""
    alphabet = "".join(PASSWORD_CLASSES)
    chars = [secrets.choice(chars) for chars in PASSWORD_CLASSES]
    chars += [secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def scratch_name() -> str:
    return f"{SCRATCH_TAG}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def private_spec(network_id: str) -> EndpointSpec:
    """One endpoint on the private network, its address from IPAM (types.py:689, :416, :315;
    marshalled at marshalling.py:2013, :1987)."""
    return EndpointSpec(
        private_network=EndpointSpecPrivateNetwork(
            private_network_id=network_id, ipam_config=EndpointSpecPrivateNetworkIpamConfig()
        )
    )


def endpoints_of(instance: Any) -> list[Any]:
    """The instance's endpoints, the deprecated single ``endpoint`` included, each once."""
    found: dict[str, Any] = {}
    for endpoint in [*(instance.endpoints or []), instance.endpoint]:
        if endpoint is not None:
            found.setdefault(str(endpoint.id), endpoint)
    return list(found.values())


def _on_network(endpoint: Any, network_id: str) -> bool:
    network = endpoint.private_network
    return network is not None and network.private_network_id == network_id


def _public(endpoint: Any) -> bool:
    return endpoint.load_balancer is not None or endpoint.direct_access is not None


def private_endpoint(instance: Any, network_id: str, step: str) -> tuple[str, int]:
    """The endpoint on the private network; a public endpoint fails ``step``."""
    endpoints = endpoints_of(instance)
    public = [e for e in endpoints if _public(e)]
    if public:
        where = ", ".join(f"{e.ip or e.hostname}:{e.port}" for e in public)
        raise StepError(
            step, f"the scratch instance has a public endpoint ({where}): no production data goes there"
        )
    for endpoint in endpoints:
        if _on_network(endpoint, network_id):
            network = endpoint.private_network
            host = endpoint.ip or str(network.service_ip or "").split("/")[0] or endpoint.hostname
            if host and endpoint.port:
                return str(host), int(endpoint.port)
    raise StepError(step, f"the scratch instance has no endpoint on private network {network_id}")


# --- Database backups: create_instance, wait, restore -----------------------------------------


def create_scratch(rdb: Rdb, args: argparse.Namespace, plan: Plan, password: str, report: Report) -> None:
    since = report.begin("create-instance")
    report.create_call, report.create_tags = "create_instance", (SCRATCH_TAG,)
    report.create_attempted = True  # from here on the POST may have created it, answer or not
    instance = rdb.create(
        "create-instance",
        engine=plan.source.engine,
        user_name=ADMIN_USER,
        password=password,
        node_type=plan.shape.node_type,
        project_id=rdb.project_id,
        name=report.instance_name,
        is_ha_cluster=False,
        disable_backup=True,
        volume_size=plan.shape.volume_size,
        volume_type=plan.shape.volume_type,
        backup_same_region=False,
        tags=[SCRATCH_TAG, f"source-{plan.source.id}"],
        init_endpoints=[private_spec(args.private_network_id)],
        encryption=EncryptionAtRest(enabled=True) if plan.shape.encrypted else None,  # types.py:511
    )
    report.instance_id = str(instance.id)
    detail = (
        f"{report.instance_name} ({report.instance_id}), {plan.shape.node_type}, no HA, backups off, "
        f"private network {args.private_network_id} only"
    )
    report.ok("create-instance", detail, since)


def wait_ready(rdb: Rdb, args: argparse.Namespace, report: Report) -> tuple[str, int]:
    """Wait until the scratch instance is ready; its private endpoint, refusing a public one."""
    since = report.begin("wait-ready")
    instance = await_ready(rdb, args, "wait-ready", str(report.instance_id))
    host, port = private_endpoint(instance, args.private_network_id, "wait-ready")
    report.ok("wait-ready", f"ready, endpoint {host}:{port} on the private network only", since)
    return host, port


def restore_all(rdb: Rdb, args: argparse.Namespace, plan: Plan, report: Report) -> None:
    """One restore at a time: each waits for the backup and the instance to settle."""
    instance_id = str(report.instance_id)
    for backup in plan.backups:
        step = f"restore {backup.database}"
        since = report.begin(step)
        started = rdb.restore(step, backup.id, instance_id, backup.database)

        def probe(step: str = step, backup: Backup = backup) -> str | None:
            status = _status(rdb.backup(step, backup.id))
            if status in BACKUP_BUSY:
                return f"backup {status}"
            if status != "ready":
                raise StepError(step, f"restore of backup {backup.id} ended in status {status}")
            instance = _status(rdb.get_instance(step, instance_id))
            if instance in INSTANCE_BUSY:
                return f"instance {instance}"
            if instance != "ready":
                raise StepError(step, f"scratch instance {instance_id} is {instance} after the restore")
            return None

        poll(step, f"restore of backup {backup.id}", since + args.timeout, args.poll_seconds, probe)
        report.durations[backup.database] = monotonic() - since
        report.restored.append(backup.database)
        detail = (
            f"backup {backup.id} restored into database {backup.database} (started as {_status(started)})"
        )
        report.ok(step, detail, since)


def drill_backups(rdb: Rdb, args: argparse.Namespace, source: Source, report: Report) -> None:
    """Plan (nothing created yet), then create, wait, restore, check."""
    shape = shape_for(rdb, args.node_type, source, report)
    plan = Plan(source, shape, newest_backups(rdb, source, args.database, report))
    password = generate_password()
    report.secrets.append(password)
    report.instance_name = scratch_name()
    create_scratch(rdb, args, plan, password, report)
    conn = wait_ready(rdb, args, report)
    restore_all(rdb, args, plan, report)
    check_all(rdb, args, [Origin(b.database, BACKUP, b.id) for b in plan.backups], conn, report)


# --- Instance snapshots: create_instance_from_snapshot, wait, close, make private, admin -------


def create_from_snapshot(
    rdb: Rdb, args: argparse.Namespace, node_type: str, snapshot: Snapshot, report: Report
) -> float:
    """The scratch instance from the snapshot, ready; returns when its creation was asked for."""
    since = report.begin("create-instance")
    report.create_call, report.create_tags = "create_instance_from_snapshot", ()
    report.create_attempted = True
    instance = rdb.create_from_snapshot("create-instance", snapshot.id, report.instance_name, node_type)
    report.instance_id = str(instance.id)
    detail = f"{report.instance_name} ({report.instance_id}) from snapshot {snapshot.id}, {node_type}, no HA"
    report.ok("create-instance", detail, since)
    return since


def wait_created(rdb: Rdb, args: argparse.Namespace, snapshot: Snapshot, asked: float, report: Report) -> Any:
    since = report.begin("wait-ready")
    instance = await_ready(rdb, args, "wait-ready", str(report.instance_id))
    report.durations[f"snapshot {snapshot.id}"] = monotonic() - asked
    kinds = ", ".join(_kind(e) for e in endpoints_of(instance)) or "none"
    report.ok("wait-ready", f"ready (endpoints: {kinds}); nothing connects before its admin exists", since)
    return instance


def _kind(endpoint: Any) -> str:
    if endpoint.load_balancer is not None:
        return "load balancer"
    if endpoint.direct_access is not None:
        return "direct access"
    network = endpoint.private_network
    return f"private network {network.private_network_id}" if network is not None else "unknown"


def close_acl(rdb: Rdb, args: argparse.Namespace, report: Report) -> None:
    """No address admitted on a public endpoint (why empty: the module docstring, step 6)."""
    since = report.begin("acl")
    instance_id = str(report.instance_id)
    answer = rdb.set_acl("acl", instance_id)
    kept = [str(rule.ip) for rule in answer.rules or []]
    if kept:
        raise StepError(
            "acl", f"set_instance_acl_rules left rules {', '.join(kept)}: a public endpoint would admit them"
        )
    await_ready(rdb, args, "acl", instance_id)
    report.ok("acl", "allowed IPs emptied: no address is admitted on a public endpoint", since)


def make_private(rdb: Rdb, args: argparse.Namespace, instance: Any, report: Report) -> tuple[str, int]:
    """Every endpoint but one on the private network deleted, that one created if need be."""
    step = "endpoints"
    since = report.begin(step)
    instance_id, network_id = str(report.instance_id), args.private_network_id
    endpoints = endpoints_of(instance)
    dropped = [e for e in endpoints if not _on_network(e, network_id)]
    for endpoint in dropped:
        rdb.delete_endpoint(step, str(endpoint.id))
        instance = await_ready(rdb, args, step, instance_id)
    kept = any(_on_network(e, network_id) for e in endpoints)
    if not kept:
        rdb.create_endpoint(step, instance_id, private_spec(network_id))
        instance = await_ready(rdb, args, step, instance_id)
    host, port = private_endpoint(instance, network_id, step)
    gone = f"deleted {', '.join(_kind(e) for e in dropped)}" if dropped else "nothing to delete"
    made = "kept" if kept else "created"
    report.ok(step, f"{gone}; {made} {host}:{port} on the private network, no public endpoint", since)
    return host, port


def create_admin(rdb: Rdb, args: argparse.Namespace, password: str, report: Report) -> None:
    """The drill's own admin: production's users and passwords (in the snapshot) are never needed."""
    step = "create-user"
    since = report.begin(step)
    instance_id = str(report.instance_id)
    user = rdb.create_user(step, instance_id, ADMIN_USER, password)
    if str(user.name) != ADMIN_USER or not user.is_admin:
        raise StepError(
            step, f"create_user answered user {user.name} (admin: {user.is_admin}), not {ADMIN_USER}"
        )
    await_ready(rdb, args, step, instance_id)
    report.ok(step, f"{ADMIN_USER} (admin), the only user the drill knows", since)


def drill_snapshot(rdb: Rdb, args: argparse.Namespace, source: Source, report: Report) -> None:
    """Plan (nothing created yet), then create, wait, close, make private, add the admin, check."""
    node_type = node_for_snapshot(rdb, args.node_type, source, report)
    snapshot = newest_snapshot(rdb, source, report)
    password = generate_password()
    report.secrets.append(password)
    report.instance_name = scratch_name()
    asked = create_from_snapshot(rdb, args, node_type, snapshot, report)
    instance = wait_created(rdb, args, snapshot, asked, report)
    close_acl(rdb, args, report)
    conn = make_private(rdb, args, instance, report)
    create_admin(rdb, args, password, report)
    check_all(rdb, args, [Origin(db, SNAPSHOT, snapshot.id) for db in args.database], conn, report)


# --- Checks --------------------------------------------------------------------------------------


def check_all(
    rdb: Rdb, args: argparse.Namespace, origins: Sequence[Origin], conn: tuple[str, int], report: Report
) -> None:
    instance_id = str(report.instance_id)
    for origin in origins:
        step = f"check {origin.database}"
        since = report.begin(step)
        found = [d for d in rdb.databases(step, instance_id, origin.database) if d.name == origin.database]
        if not found:
            raise StepError(step, f"database {origin.database} does not exist on the scratch instance")
        snapshot = origin.kind == SNAPSHOT
        how = f"restored from snapshot {origin.id}" if snapshot else "restore ended ready"
        report.ok(step, f"database {origin.database} exists (owner {found[0].owner}), {how}", since)
        if snapshot:
            report.restored.append(origin.database)
            grant(rdb, args, origin.database, report)
        if args.check_argv:
            run_check_command(args, origin, conn, report)
        report.checked.append(origin.database)


def grant(rdb: Rdb, args: argparse.Namespace, database: str, report: Report) -> None:
    """``readonly`` on the database for the drill's admin, which otherwise has no permission on
    the snapshot's databases (the module docstring, step 9)."""
    step = f"grant {database}"
    since = report.begin(step)
    instance_id = str(report.instance_id)
    privilege = rdb.set_privilege(step, instance_id, database, ADMIN_USER)
    if str(privilege.permission) != str(Permission.READONLY):
        raise StepError(step, f"set_privilege answered permission {privilege.permission}, not readonly")
    await_ready(rdb, args, step, instance_id)
    report.ok(step, f"{ADMIN_USER} may read database {database} (readonly)", since)


def check_env(origin: Origin, conn: tuple[str, int], password: str, instance_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCW_", "PG"))}
    env.update(
        PGHOST=conn[0],
        PGPORT=str(conn[1]),
        PGUSER=ADMIN_USER,
        PGPASSWORD=password,
        PGDATABASE=origin.database,
        PGSSLMODE="require",
        DRILL_INSTANCE_ID=instance_id,
    )
    env[f"DRILL_{origin.kind.upper()}_ID"] = origin.id
    return env


def run_check_command(
    args: argparse.Namespace, origin: Origin, conn: tuple[str, int], report: Report
) -> None:
    step = f"check-command {origin.database}"
    since = report.begin(step)
    argv = [part.replace("{database}", origin.database) for part in args.check_argv]
    env = check_env(origin, conn, report.secrets[0], str(report.instance_id))
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, errors="replace", timeout=args.timeout, check=False
        )
    except OSError as exc:
        raise StepError(step, f"cannot run {argv[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StepError(step, f"{argv[0]} did not finish within {args.timeout_minutes:g} minute(s)") from exc
    for text in (done.stdout, done.stderr):
        for line in text.splitlines():
            print(report.mask(f"    | {line}"))
    if done.returncode != 0:
        raise StepError(step, f"{argv[0]} exited {done.returncode}")
    report.ok(step, f"{argv[0]} exited 0", since)


# --------------------------------------------------------------------------------------------
# Cleanup: always, signals held back
# --------------------------------------------------------------------------------------------


@contextmanager
def signals_held() -> Iterator[list[str]]:
    """SIGINT and SIGTERM only noted (in the list) while the scratch instance is being deleted."""
    noted: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the duration of the drill."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def delete_with_retries(rdb: Rdb, instance_id: str, deadline: float, every: float) -> None:
    """Delete; 404 is success (already gone); anything else is retried until ``deadline``."""
    while True:
        try:
            rdb.delete("delete-instance", instance_id)
            return
        except StepError as exc:
            if exc.status == 404:
                return
            if exc.status in (401, 403) or monotonic() >= deadline:
                raise
        sleep(max(0.0, min(every, deadline - monotonic())))


def cleanup(rdb: Rdb, args: argparse.Namespace, report: Report) -> None:
    """Delete the scratch instance, or whatever instance of its name the creating call left
    behind. Never raises a StepError: the outcome goes to the report."""
    since = monotonic()
    with signals_held() as noted:
        try:
            targets = [report.instance_id] if report.instance_id else _orphans(rdb, report)
            for instance_id in targets:
                delete_with_retries(rdb, instance_id, since + args.timeout, args.poll_seconds)
        except StepError as exc:
            report.cleanup_failed = True
            who = report.instance_id or f"named {report.instance_name}"
            report.cleanup = f"NOT deleted ({exc.message})"
            report.line("delete-instance", "FAILED", exc.message)
            print(
                report.mask(
                    f"{PROG}: error: scratch instance {who} was NOT deleted: {exc.message}; delete it by "
                    f"hand: scw rdb instance delete {report.instance_id or '<id>'} region={rdb.region}"
                ),
                file=sys.stderr,
            )
            return
        report.cleanup = "deleted" if targets else "not created"
        detail = (
            f"deletion of {', '.join(targets)} accepted"
            if targets
            else f"{report.create_call} created nothing"
        )
        held = f"; held back {', '.join(noted)} meanwhile" if noted else ""
        report.ok("delete-instance", detail + held, since)


def _orphans(rdb: Rdb, report: Report) -> list[str]:
    """The creating call failed or was interrupted: an instance of the scratch name may exist anyway."""
    found = rdb.instances_named("delete-instance", report.instance_name, report.create_tags)
    return [str(i.id) for i in found if i.name == report.instance_name]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.backup_drill",
        description="Restore the newest managed backup into a scratch instance, check it, delete it.",
    )
    parser.add_argument("--region", required=True, help="region of the instance, e.g. fr-par")
    parser.add_argument("--instance-id", required=True, help="UUID of the production Database Instance")
    parser.add_argument("--private-network-id", required=True, help="UUID of the private network to use")
    parser.add_argument(
        "--database", action="append", required=True, metavar="NAME", help="database to check (repeatable)"
    )
    parser.add_argument(
        "--source",
        choices=(SNAPSHOT, BACKUP),
        help="restore the newest instance snapshot or database backups (default: snapshot for "
        f"{' and '.join(SNAPSHOT_VOLUMES)} volumes, backup for the others)",
    )
    parser.add_argument("--node-type", default="DB-DEV-S", help="scratch node type (default DB-DEV-S)")
    parser.add_argument(
        "--timeout-minutes",
        type=float,
        default=60.0,
        help="limit of each wait, check and cleanup (default 60)",
    )
    parser.add_argument("--check-command", help="command run per database with PG* set to the scratch copy")
    parser.add_argument("--poll-seconds", type=float, default=15.0, help="polling interval (default 15)")
    parser.add_argument("--api-url", help="Scaleway API URL (default: SCW_API_URL, else the SDK's)")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Usage errors before any request; sets ``args.timeout`` (seconds) and ``args.check_argv``."""
    if not REGION.fullmatch(args.region):
        raise UsageError(f"invalid --region {args.region!r}: expected a region such as fr-par")
    for option in ("instance_id", "private_network_id"):
        value = getattr(args, option)
        if not UUID.fullmatch(value):
            raise UsageError(f"invalid --{option.replace('_', '-')} {value!r}: expected a UUID")
    bad = [name for name in args.database if not DATABASE.fullmatch(name)]
    if bad:
        raise UsageError(f"invalid --database {bad[0]!r}: expected a database name")
    if len(set(args.database)) != len(args.database):
        raise UsageError("a --database is given twice")
    if not NODE_TYPE.fullmatch(args.node_type):
        raise UsageError(f"invalid --node-type {args.node_type!r}")
    for option in ("timeout_minutes", "poll_seconds"):
        value = getattr(args, option)
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"--{option.replace('_', '-')} must be more than 0")
    args.timeout = args.timeout_minutes * 60
    args.check_argv = check_command_argv(args.check_command)


def check_command_argv(command: str | None) -> list[str]:
    if command is None:
        return []
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"invalid --check-command: {exc}") from exc
    if not argv:
        raise UsageError("--check-command is empty")
    return argv


def connect(args: argparse.Namespace) -> Rdb:
    """The RDB API from the environment's credentials; usage errors for missing or malformed
    settings (the SDK validates them before any request)."""
    try:
        api, project_id = scaleway_api.from_env(RdbV1API, args.api_url)
    except scaleway_api.CredentialsError as exc:
        raise UsageError(str(exc)) from exc
    return Rdb(api, args.region, project_id)


def interruption(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"


def exercise(rdb: Rdb, args: argparse.Namespace, report: Report) -> None:
    """The source decides the path: its snapshots, or its databases' backups."""
    source = source_of(rdb, args, report)
    if source.restore_from == SNAPSHOT:
        drill_snapshot(rdb, args, source, report)
    else:
        drill_backups(rdb, args, source, report)


def drill(args: argparse.Namespace, report: Report) -> None:
    """The steps, a failed one's line printed before the cleanup, which always runs once the
    creating call was attempted."""
    check_arguments(args)
    rdb = connect(args)
    try:
        exercise(rdb, args, report)
    except StepError as exc:
        if not exc.reported:
            report.line(exc.step, "FAILED", exc.message)
        raise
    except KeyboardInterrupt as exc:
        report.line(report.step, "FAILED", f"interrupted by {interruption(exc)}")
        raise
    finally:
        if report.create_attempted:
            cleanup(rdb, args, report)


def summary(args: argparse.Namespace, report: Report, failed: bool) -> str:
    verdict = "FAILED" if failed else "OK"
    durations = ", ".join(f"{what} {seconds:.1f}s" for what, seconds in report.durations.items()) or "none"
    scratch = report.cleanup or "not created"
    name = f" {report.instance_name}" if report.create_attempted else ""
    return (
        f"{PROG}: {verdict}, instance {args.instance_id} ({args.region}): "
        f"{len(report.restored)}/{len(args.database)} database(s) restored, {len(report.checked)} checked; "
        f"restore durations: {durations}; total {monotonic() - report.started:.1f}s; "
        f"scratch instance{name}: {scratch}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.getLogger("scaleway").setLevel(logging.WARNING)  # DEBUG would log the password
    report = Report()
    failure: str | None = None
    try:
        with sigterm_raises():
            drill(args, report)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StepError as exc:
        failure = f"step {exc.step}: {exc.message}"
    except KeyboardInterrupt as exc:
        failure = f"step {report.step}: interrupted by {interruption(exc)}"
    if failure is not None:
        print(report.mask(f"{PROG}: error: {failure}"), file=sys.stderr)
    failed = failure is not None or report.cleanup_failed
    print(report.mask(summary(args, report, failed)))
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""The managed-backup drill against a fake Scaleway RDB API on loopback, through the real SDK.

The fake serves, on 127.0.0.1 and a port of its own per test, only the endpoints the SDK's
``RdbV1API`` calls in the drill (get/list/create/delete instance, list node types, list and get
database backups, restore a backup, list snapshots, create an instance from a snapshot, set the
ACL, delete and create endpoints, create a user, set a privilege, list databases), with the JSON
shapes the SDK's unmarshallers read (``scaleway/rdb/v1/marshalling.py``: ``unmarshal_Instance``,
``unmarshal_DatabaseBackup``, ``unmarshal_Snapshot``, ``unmarshal_Endpoint``, ``unmarshal_User``,
``unmarshal_Privilege``, ``unmarshal_SetInstanceACLRulesResponse``, ``unmarshal_NodeType``,
``unmarshal_Database`` and the list responses) and its pagination. It checks the
``X-Auth-Token`` header, records every request with its JSON body, and plays the lifecycle the
drill waits on: a created instance is ``provisioning`` for a few polls, then ``ready`` with its
endpoints (a private network endpoint for ``create_instance``; for an instance made from a
snapshot, by default one public load balancer endpoint and no private one, as
terraform-provider-scaleway issue #3714 reports); each change (ACL, endpoint, user, privilege)
puts the instance in ``configuring`` for a poll; a restore puts the backup in ``restoring`` for a
few polls, then back to ``ready`` with the database created on the target instance. What the real
API does beyond that (timings, the exact intermediate statuses, endpoints and ACL defaults) is not
known here: see the module docstring of ``ops/backup_drill.py``.

The drill runs through :func:`ops.backup_drill.main` in-process (``--poll-seconds`` small), and as
``python -m ops.backup_drill`` in a subprocess for the entry point and SIGTERM. The last section
runs it with its real check command (``scw_platform.drill``: the restore check on the drill's
spec) against a real PostgreSQL standing in for the scratch instance (Debian's, via ``tests.pg``;
skipped when absent, failed under CI).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ops import backup_drill as bd
from scw_platform import db_grants, drill
from scw_platform.backup import RestoreCheckSettings
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
REGION = "fr-par"
ACCESS_KEY = "SCWABCDEFGHIJKLMNOPQ"
SECRET_KEY = "11111111-2222-3333-4444-555555555555"
PROJECT_ID = "66666666-7777-8888-9999-000000000000"
ORGANIZATION_ID = "99999999-8888-7777-6666-555555555555"
SOURCE_ID = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER_INSTANCE_ID = "aaaaaaaa-0000-4000-8000-000000000002"
NETWORK_ID = "bbbbbbbb-0000-4000-8000-000000000001"
OTHER_NETWORK_ID = "bbbbbbbb-0000-4000-8000-000000000002"
SCRATCH_IP = "172.16.4.7"
NOW = datetime.now(UTC)
GB = 1_000_000_000
UUID_RE = r"[0-9a-f-]{36}"


def stamp(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------
# The fake RDB API
# --------------------------------------------------------------------------------------------


def instance_json(instance_id: str, name: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "id": instance_id,
        "name": name,
        "organization_id": ORGANIZATION_ID,
        "project_id": PROJECT_ID,
        "status": status,
        "engine": "PostgreSQL-16",
        "upgradable_version": [],
        "tags": [],
        "settings": [{"name": "max_connections", "value": "200"}],
        "is_ha_cluster": False,
        "high_availability_mode": "disabled",
        "read_replicas": [],
        "node_type": "db-pro2-xs",
        "init_settings": [],
        "endpoints": [],
        "backup_same_region": False,
        "maintenances": [],
        "created_at": stamp(24 * 300),
        "volume": {"type": "sbs_15k", "size": 42 * GB, "class": "sbs"},
        "backup_schedule": {"frequency": 24, "retention": 7, "disabled": False, "next_run_at": stamp(-3)},
        "logs_policy": {"max_age_retention": 30, "total_disk_retention": None},
        "encryption": {"enabled": True},
        **extra,
    }


def private_endpoint(network_id: str = NETWORK_ID, ip: str = SCRATCH_IP) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "ip": ip,
        "port": 5432,
        "name": None,
        "private_network": {
            "private_network_id": network_id,
            "service_ip": f"{ip}/22",
            "zone": "fr-par-1",
            "provisioning_mode": "ipam",
        },
        "hostname": None,
    }


def public_endpoint() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "ip": "51.159.0.9", "port": 20123, "name": None, "load_balancer": {}}


def direct_access_endpoint() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "ip": "51.159.0.10", "port": 5432, "name": None, "direct_access": {}}


def node_type_json(name: str, volumes: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stock_status": "available",
        "description": name,
        "vcpus": 2,
        "memory": 2 * 1024**3,
        "disabled": False,
        "beta": False,
        "volume_constraint": None,
        "is_bssd_compatible": True,
        "available_volume_types": [
            {
                "type": volume,
                "description": volume,
                "min_size": 5 * GB,
                "max_size": 10_000 * GB,
                "chunk_size": 5 * GB,
                "class": "lssd" if volume == "lssd" else "sbs",
            }
            for volume in volumes
        ],
        "is_ha_required": False,
        "generation": "generation_v2",
        "instance_range": "dev",
        "region": REGION,
        **extra,
    }


@dataclass
class FakeRdb:
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    backups: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    node_types: list[dict[str, Any]] = field(default_factory=list)
    databases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    acls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: call name -> HTTP status to fail with ("create_instance", "set_instance_acl_rules", ...)
    fail: dict[str, int] = field(default_factory=dict)
    #: call name -> the body it answers with instead of its own (after doing what it does)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: polls of a new instance while provisioning before it is ready; None: never ready
    ready_after: int | None = 2
    #: status a new instance reaches instead of "ready"
    ready_status: str = "ready"
    public_endpoint: bool = False
    #: the endpoints an instance made from a snapshot has once ready (Terraform #3714: public only)
    snapshot_endpoints: Callable[[], list[dict[str, Any]]] = lambda: [public_endpoint()]
    #: the databases (and owners) a snapshot holds
    snapshot_databases: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"name": name, "owner": name, "managed": True, "size": 9_000_000}
            for name in ("rdb", "website", "members", "shop")
        ]
    )
    #: polls in "configuring" after each change (None: never again ready); the status it ends in
    settle_polls: int | None = 1
    settle_status: str = "ready"
    #: the rules set_instance_acl_rules answers with (None: those it was sent)
    acl_answer: list[dict[str, Any]] | None = None
    #: delete_endpoint answers 204 but the endpoint stays
    sticky_endpoints: bool = False
    #: address of the endpoints create_endpoint makes (tests: a PostgreSQL socket directory)
    endpoint_ip: str = SCRATCH_IP
    #: what a created user and a set privilege also do (tests: the same on a real PostgreSQL)
    on_user: Callable[[str, str], object] | None = None
    on_privilege: Callable[[str, str, str], object] | None = None
    #: polls of a backup while restoring; its final status; whether the database appears
    restore_polls: int = 2
    restore_outcome: str = "ready"
    restore_creates_database: bool = True
    #: the listings honour their instance_id filter (False: every instance's, the drill must sort)
    filter_by_instance: bool = True
    #: the creating call creates the instance, then answers 500
    create_then_fail: bool = False
    requests: list[tuple[str, str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    #: instances deleted, as they were when deleted
    gone: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_endpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settling: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add_backup(
        self, database: str, hours_ago: float, status: str = "ready", instance_id: str = SOURCE_ID
    ) -> str:
        backup_id = str(uuid.uuid4())
        self.backups.append(
            {
                "id": backup_id,
                "instance_id": instance_id,
                "database_name": database,
                "name": f"autobackup-{database}-{hours_ago:g}h",
                "status": status,
                "size": 12_345_678,
                "expires_at": stamp(hours_ago - 24 * 7),
                "created_at": stamp(hours_ago),
                "updated_at": stamp(hours_ago),
                "instance_name": "prod-db",
                "region": REGION,
                "same_region": False,
                "download_url": None,
                "download_url_expires_at": None,
            }
        )
        return backup_id

    def add_snapshot(
        self,
        hours_ago: float,
        status: str = "ready",
        instance_id: str = SOURCE_ID,
        expires_in_hours: float = 24 * 7,
    ) -> str:
        snapshot_id = str(uuid.uuid4())
        self.snapshots.append(
            {
                "id": snapshot_id,
                "instance_id": instance_id,
                "name": f"autosnapshot-{hours_ago:g}h",
                "status": status,
                "instance_name": "prod-db",
                "node_type": "db-pro2-xs",
                "region": REGION,
                "size": 42 * GB,
                "expires_at": stamp(-expires_in_hours),
                "created_at": stamp(hours_ago),
                "updated_at": stamp(hours_ago),
                "volume_type": {"type": "sbs_15k", "class": "sbs"},
            }
        )
        return snapshot_id

    def calls(self) -> list[str]:
        return [call for call, *_ in self.requests]

    def bodies(self, call: str) -> list[Any]:
        return [body for name, _, _, _, body in self.requests if name == call]

    def paths(self, call: str) -> list[str]:
        return [path for name, _, path, _, _ in self.requests if name == call]

    def created(self) -> dict[str, Any]:
        (body,) = self.bodies("create_instance")
        return body

    def deleted(self) -> list[str]:
        return [path.rsplit("/", 1)[1] for path in self.paths("delete_instance")]

    def sequence(self) -> list[str]:
        """Call names in order, the polling of the scratch instance and backups as one ``wait``."""
        names = []
        for call, _, path, _, _ in self.requests:
            polled = call == "get_database_backup" or (call == "get_instance" and SOURCE_ID not in path)
            names.append("wait" if polled else call)
        return [name for i, name in enumerate(names) if not (name == "wait" and names[i - 1 : i] == ["wait"])]


def standard(fake: FakeRdb) -> dict[str, str]:
    """Production instance with two databases' backups (and decoys); returns the expected picks."""
    fake.instances[SOURCE_ID] = instance_json(SOURCE_ID, "prod-db", "ready", endpoints=[private_endpoint()])
    fake.node_types += [
        node_type_json("db-pro2-xs", ["lssd", "sbs_5k", "sbs_15k"]),
        node_type_json("db-dev-s", ["lssd", "sbs_5k"]),
    ]
    fake.add_backup("website", 72)
    website = fake.add_backup("website", 5)
    fake.add_backup("website", 1, status="creating")  # not finished: not a candidate
    fake.add_backup("website", 2, status="error")
    fake.add_backup("website", 0.5, instance_id=OTHER_INSTANCE_ID)  # another instance's
    members = fake.add_backup("members", 6)
    fake.add_backup("members", 30)
    fake.add_backup("shop", 4)  # a database not asked for
    return {"website": website, "members": members}


def snapshots(fake: FakeRdb) -> str:
    """The production instance (sbs_15k, the platform's default) with its snapshots (and decoys);
    returns the expected pick."""
    fake.instances[SOURCE_ID] = instance_json(SOURCE_ID, "prod-db", "ready", endpoints=[private_endpoint()])
    fake.node_types += [
        node_type_json("db-pro2-xs", ["lssd", "sbs_5k", "sbs_15k"]),
        node_type_json("db-dev-s", ["sbs_5k", "sbs_15k"]),
    ]
    fake.add_snapshot(29)
    newest = fake.add_snapshot(5)
    fake.add_snapshot(1, status="creating")  # not finished: not a candidate
    fake.add_snapshot(2, status="error")
    fake.add_snapshot(3, expires_in_hours=-1)  # expired
    fake.add_snapshot(0.5, instance_id=OTHER_INSTANCE_ID)  # another instance's
    return newest


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
    page = int(query.get("page", ["1"])[0])
    size = int(query.get("page_size", ["20"])[0])
    return {key: items[(page - 1) * size : page * size], "total_count": len(items)}


#: (method, path below /rdb/v1/regions/fr-par/ with each id as *) -> the SDK call
ROUTES = {
    ("GET", "instances"): "list_instances",
    ("POST", "instances"): "create_instance",
    ("GET", "instances/*"): "get_instance",
    ("DELETE", "instances/*"): "delete_instance",
    ("GET", "instances/*/databases"): "list_databases",
    ("PUT", "instances/*/acls"): "set_instance_acl_rules",
    ("POST", "instances/*/endpoints"): "create_endpoint",
    ("POST", "instances/*/users"): "create_user",
    ("PUT", "instances/*/privileges"): "set_privilege",
    ("DELETE", "endpoints/*"): "delete_endpoint",
    ("GET", "node-types"): "list_node_types",
    ("GET", "backups"): "list_database_backups",
    ("GET", "backups/*"): "get_database_backup",
    ("POST", "backups/*/restore"): "restore_database_backup",
    ("GET", "snapshots"): "list_snapshots",
    ("POST", "snapshots/*/create-instance"): "create_instance_from_snapshot",
}

Answer = tuple[int, dict[str, Any] | None]


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        parts = url.path.strip("/").split("/")
        rest = parts[4:] if parts[:4] == ["rdb", "v1", "regions", REGION] else []
        pattern = "/".join("*" if i % 2 else part for i, part in enumerate(rest))
        call = ROUTES.get((method, pattern), "unknown")
        with fake.lock:
            fake.requests.append((call, method, url.path, query, body))
        if self.headers.get("x-auth-token") != SECRET_KEY:
            self._send(401, {"message": "authentication is denied", "type": "denied_authentication"})
        elif call == "unknown":
            self._send(404, {"message": "no such route", "type": "not_found"})
        elif call in fake.fail:
            self._send(fake.fail[call], {"message": f"internal error in {call}", "type": "internal"})
        else:
            with fake.lock:
                status, answer = getattr(self, f"_{call}")(fake, rest, query, body)
                self._send(status, fake.answers.get(call, answer))

    @staticmethod
    def _not_found(resource: str) -> Answer:
        return 404, {"message": "resource is not found", "type": "not_found", "resource": resource}

    @staticmethod
    def _changed(fake: FakeRdb, instance_id: str) -> None:
        """A change puts the instance in configuring for a while."""
        fake.instances[instance_id]["status"] = "configuring"
        fake.settling[instance_id] = -1 if fake.settle_polls is None else fake.settle_polls

    # -- instances --------------------------------------------------------------------------

    def _list_instances(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        name = query.get("name", [""])[0]
        tags = set(query.get("tags", []))
        found = [i for i in fake.instances.values() if name in i["name"] and tags <= set(i["tags"])]
        return 200, _page(found, query, "instances")

    def _create_instance(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        instance_id = str(uuid.uuid4())
        fake.instances[instance_id] = instance_json(
            instance_id,
            body["name"],
            "provisioning",
            engine=body["engine"],
            node_type=body["node_type"],
            tags=body["tags"],
            volume={"type": body["volume_type"], "size": body["volume_size"], "class": "sbs"},
            encryption=body.get("encryption"),
            backup_schedule={"frequency": 24, "retention": 7, "disabled": True},
        )
        fake.databases[instance_id] = [
            {"name": "rdb", "owner": "_rdb_superadmin", "managed": True, "size": 0}
        ]
        fake.users[instance_id] = [{"name": body["user_name"], "is_admin": True}]
        fake.pending_endpoints[instance_id] = [private_endpoint()] + (
            [public_endpoint()] if fake.public_endpoint else []
        )
        if fake.create_then_fail:
            return 500, {"message": "internal error in create_instance", "type": "internal"}
        return 200, fake.instances[instance_id]

    def _create_instance_from_snapshot(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        snapshot = next((s for s in fake.snapshots if s["id"] == rest[1]), None)
        if snapshot is None:
            return self._not_found("snapshot")
        source = fake.instances[snapshot["instance_id"]]
        instance_id = str(uuid.uuid4())
        fake.instances[instance_id] = instance_json(
            instance_id,
            body["instance_name"],
            "provisioning",
            engine=source["engine"],
            node_type=body["node_type"],
            volume=dict(source["volume"]),
            encryption=source["encryption"],
            is_ha_cluster=body["is_ha_cluster"],
        )
        fake.databases[instance_id] = [dict(d) for d in fake.snapshot_databases]
        fake.users[instance_id] = [
            {"name": "website", "is_admin": False},
            {"name": "prod_admin", "is_admin": True},
        ]
        fake.acls[instance_id] = [{"ip": "0.0.0.0/0", "description": "initial"}]
        fake.pending_endpoints[instance_id] = fake.snapshot_endpoints()
        if fake.create_then_fail:
            return 500, {"message": "internal error in create_instance_from_snapshot", "type": "internal"}
        return 200, fake.instances[instance_id]

    def _get_instance(self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any) -> Answer:
        instance = fake.instances.get(rest[1])
        if instance is None:
            return self._not_found("instance")
        if instance["status"] == "provisioning":
            fake.polls[rest[1]] = fake.polls.get(rest[1], 0) + 1
            if fake.ready_after is not None and fake.polls[rest[1]] >= fake.ready_after:
                instance["status"] = fake.ready_status
                instance["endpoints"] = fake.pending_endpoints.pop(rest[1], [])
        elif instance["status"] == "configuring":
            left = fake.settling.get(rest[1], 0)
            if left > 0:
                fake.settling[rest[1]] = left - 1
            elif left == 0:
                instance["status"] = fake.settle_status
        return 200, instance

    def _delete_instance(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        instance = fake.instances.pop(rest[1], None)
        if instance is None:
            return self._not_found("instance")
        fake.gone[rest[1]] = instance
        return 200, {**instance, "status": "deleting"}

    def _list_databases(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        if rest[1] not in fake.instances:
            return self._not_found("instance")
        name = query.get("name", [""])[0]
        return 200, _page(
            [d for d in fake.databases.get(rest[1], []) if name in d["name"]], query, "databases"
        )

    # -- making the instance private and usable --------------------------------------------

    def _set_instance_acl_rules(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        if rest[1] not in fake.instances:
            return self._not_found("instance")
        fake.acls[rest[1]] = body["rules"]
        self._changed(fake, rest[1])
        rules = fake.acl_answer if fake.acl_answer is not None else body["rules"]
        return 200, {
            "rules": [{"protocol": "tcp", "direction": "inbound", "action": "allow", **r} for r in rules]
        }

    def _delete_endpoint(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        for instance_id, instance in fake.instances.items():
            kept = [e for e in instance["endpoints"] if e["id"] != rest[1]]
            if len(kept) < len(instance["endpoints"]):
                if not fake.sticky_endpoints:
                    instance["endpoints"] = kept
                self._changed(fake, instance_id)
                return 204, None
        return self._not_found("endpoint")

    def _create_endpoint(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        instance = fake.instances.get(rest[1])
        if instance is None:
            return self._not_found("instance")
        network_id = body["endpoint_spec"]["private_network"]["private_network_id"]
        if any(e.get("private_network") for e in instance["endpoints"]):
            return 409, {"message": "a private network endpoint already exists", "type": "conflict"}
        endpoint = private_endpoint(network_id, fake.endpoint_ip)
        instance["endpoints"].append(endpoint)
        self._changed(fake, rest[1])
        return 200, endpoint

    def _create_user(self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any) -> Answer:
        if rest[1] not in fake.instances:
            return self._not_found("instance")
        users = fake.users.setdefault(rest[1], [])
        if any(u["name"] == body["name"] for u in users):
            return 409, {"message": "user already exists", "type": "conflict"}
        users.append({"name": body["name"], "is_admin": body["is_admin"]})
        if fake.on_user is not None:
            fake.on_user(body["name"], body["password"])
        self._changed(fake, rest[1])
        return 200, {"name": body["name"], "is_admin": body["is_admin"]}

    def _set_privilege(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        if rest[1] not in fake.instances:
            return self._not_found("instance")
        if not any(d["name"] == body["database_name"] for d in fake.databases.get(rest[1], [])):
            return self._not_found("database")
        if fake.on_privilege is not None:
            fake.on_privilege(body["permission"], body["database_name"], body["user_name"])
        self._changed(fake, rest[1])
        return 200, body

    # -- node types, backups, snapshots -----------------------------------------------------

    def _list_node_types(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        return 200, _page(fake.node_types, query, "node_types")

    def _list_database_backups(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        wanted = query.get("instance_id") if fake.filter_by_instance else None
        found = [b for b in fake.backups if wanted is None or b["instance_id"] in wanted]
        if query.get("order_by") == ["created_at_desc"]:
            found.sort(key=lambda b: b["created_at"], reverse=True)
        return 200, _page(found, query, "database_backups")

    def _list_snapshots(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        wanted = query.get("instance_id") if fake.filter_by_instance else None
        found = [s for s in fake.snapshots if wanted is None or s["instance_id"] in wanted]
        if query.get("order_by") == ["created_at_desc"]:
            found.sort(key=lambda s: s["created_at"], reverse=True)
        return 200, _page(found, query, "snapshots")

    def _get_database_backup(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        backup = next((b for b in fake.backups if b["id"] == rest[1]), None)
        if backup is None:
            return self._not_found("database_backup")
        if backup["status"] == "restoring":
            fake.polls[backup["id"]] = fake.polls.get(backup["id"], 0) + 1
            if fake.polls[backup["id"]] >= fake.restore_polls:
                backup["status"] = fake.restore_outcome
                target, database = backup.pop("_target")
                if fake.restore_outcome == "ready" and fake.restore_creates_database:
                    owner = {"name": database, "owner": "drill_admin", "managed": True, "size": 9_000_000}
                    fake.databases.setdefault(target, []).append(owner)
        return 200, {k: v for k, v in backup.items() if not k.startswith("_")}

    def _restore_database_backup(
        self, fake: FakeRdb, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        backup = next((b for b in fake.backups if b["id"] == rest[1]), None)
        if backup is None:
            return self._not_found("database_backup")
        if body["instance_id"] not in fake.instances:
            return self._not_found("instance")
        backup["status"] = "restoring"
        backup["_target"] = (body["instance_id"], body.get("database_name") or backup["database_name"])
        return 200, {k: v for k, v in backup.items() if not k.startswith("_")}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeRdb) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fake = fake


@pytest.fixture
def rdb() -> Iterator[FakeRdb]:
    fake = FakeRdb()
    server = FakeServer(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scaleway credentials of the test only, no proxy for 127.0.0.1, no inherited PG* settings."""
    for name in list(os.environ):
        if name.startswith(("SCW_", "PG")) or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SCW_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCW_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", PROJECT_ID)


def args(
    fake: FakeRdb,
    *extra: str,
    databases: tuple[str, ...] = ("website", "members"),
    source: str | None = "backup",
) -> list[str]:
    """The drill's arguments; ``source`` None: the source's volume type chooses."""
    return [
        *("--region", REGION, "--instance-id", SOURCE_ID, "--private-network-id", NETWORK_ID),
        *itertools.chain.from_iterable(("--database", name) for name in databases),
        *("--timeout-minutes", "0.05", "--poll-seconds", "0.01", "--api-url", fake.url),
        *(("--source", source) if source else ()),
        *extra,
    ]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = bd.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def password_of(fake: FakeRdb) -> str | None:
    """The scratch admin's password, from whichever call carried it (None: not sent yet)."""
    bodies = fake.bodies("create_instance") + fake.bodies("create_user")
    assert len(bodies) <= 1
    return str(bodies[0]["password"]) if bodies else None


def assert_secret_kept(fake: FakeRdb, *outputs: str) -> None:
    password = password_of(fake)
    assert password is None or len(password) == 32
    for output in outputs:
        assert password is None or password not in output
        assert SECRET_KEY not in output
        assert "Traceback" not in output


# --------------------------------------------------------------------------------------------
# The drill as it should go
# --------------------------------------------------------------------------------------------


def test_restores_newest_backups_into_a_private_scratch_instance_and_deletes_it(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    picks = standard(rdb)
    code, out, err = run(args(rdb), capsys)
    assert (code, err) == (0, "")
    assert rdb.sequence() == [
        "get_instance",
        "list_node_types",
        "list_database_backups",
        "create_instance",
        "wait",
        "restore_database_backup",
        "wait",
        "restore_database_backup",
        "wait",
        "list_databases",
        "list_databases",
        "delete_instance",
    ]
    # The newest ready backup of each database, restored in the order given, into the scratch
    # instance under the same database name.
    (scratch_id,) = rdb.deleted()
    restores = [
        (path.split("/")[6], body) for c, _, path, _, body in rdb.requests if c == "restore_database_backup"
    ]
    assert restores == [
        (picks["website"], {"instance_id": scratch_id, "database_name": "website"}),
        (picks["members"], {"instance_id": scratch_id, "database_name": "members"}),
    ]
    listing = next(q for c, _, _, q, _ in rdb.requests if c == "list_database_backups")
    assert listing["instance_id"] == [SOURCE_ID]
    assert listing["project_id"] == [PROJECT_ID]
    assert SOURCE_ID in rdb.instances  # the production instance is never touched
    assert_secret_kept(rdb, out, err)


def test_the_scratch_instance_is_small_private_unreplicated_and_like_the_source(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    code, _, _ = run(args(rdb), capsys)
    assert code == 0
    body = rdb.created()
    assert body["name"].startswith("backup-drill-")
    assert {k: body[k] for k in ("engine", "user_name", "node_type", "is_ha_cluster", "disable_backup")} == {
        "engine": "PostgreSQL-16",
        "user_name": "drill_admin",
        "node_type": "db-dev-s",
        "is_ha_cluster": False,
        "disable_backup": True,
    }
    assert body["init_endpoints"] == [
        {"private_network": {"private_network_id": NETWORK_ID, "ipam_config": {}}}
    ]
    assert (body["volume_type"], body["volume_size"]) == ("sbs_5k", 45 * GB)  # 42 GB in 5 GB chunks
    assert body["encryption"] == {"enabled": True}  # as the source
    assert body["project_id"] == PROJECT_ID
    assert "backup-drill" in body["tags"]


def test_one_line_per_step_and_a_summary_with_durations(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    picks = standard(rdb)
    rdb.filter_by_instance = False  # another instance's newer backup is listed too: not taken
    code, out, err = run(args(rdb), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == [
        "source",
        "node-type",
        "find-backup website",
        "find-backup members",
        "create-instance",
        "wait-ready",
        "restore website",
        "restore members",
        "check website",
        "check members",
        "delete-instance",
    ]
    assert all(": OK " in line for line in lines[:-1])
    assert f"backup {picks['website']} restored into database website" in out
    assert f"endpoint {SCRATCH_IP}:5432 on the private network only" in out
    assert re.fullmatch(
        rf"backup-drill: OK, instance {SOURCE_ID} \(fr-par\): 2/2 database\(s\) restored, 2 checked; "
        r"restore durations: website \d+\.\ds, members \d+\.\ds; total \d+\.\ds; "
        r"scratch instance backup-drill-\S+: deleted",
        lines[-1],
    )
    assert_secret_kept(rdb, out, err)


def test_check_command_gets_the_scratch_endpoint_and_credentials(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    standard(rdb)
    script = tmp_path / "check.py"
    script.write_text(
        "import json, os, sys\n"
        "keys = [k for k in os.environ if k.startswith(('PG', 'DRILL_', 'SCW_'))]\n"
        "json.dump({k: os.environ[k] for k in keys}, open(sys.argv[1], 'w'))\n"
        "print('connected to', os.environ['PGDATABASE'], 'with', os.environ['PGPASSWORD'])\n"
    )
    command = f"{sys.executable} {script} {tmp_path}/env-{{database}}.json"
    code, out, err = run(args(rdb, "--check-command", command), capsys)
    assert (code, err) == (0, "")
    password = password_of(rdb)
    (scratch_id,) = rdb.deleted()
    for database in ("website", "members"):
        env = json.loads((tmp_path / f"env-{database}.json").read_text())
        assert env == {
            "PGHOST": SCRATCH_IP,
            "PGPORT": "5432",
            "PGUSER": "drill_admin",
            "PGPASSWORD": password,
            "PGDATABASE": database,
            "PGSSLMODE": "require",
            "DRILL_INSTANCE_ID": scratch_id,
            "DRILL_BACKUP_ID": env["DRILL_BACKUP_ID"],
        }  # and no SCW_* credentials
        assert f"    | connected to {database} with <redacted>" in out
        assert f"backup-drill: check-command {database}: OK" in out
    assert out.index("check-command members") < out.index("delete-instance")
    assert_secret_kept(rdb, out, err)


def test_generated_passwords_meet_the_api_rules_and_differ() -> None:
    passwords = {bd.generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 32
        for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_.!#+="):
            assert any(c in chars for c in password)


# --------------------------------------------------------------------------------------------
# Failures: the scratch instance is deleted all the same
# --------------------------------------------------------------------------------------------


def assert_failed_and_deleted(fake: FakeRdb, code: int, out: str, err: str, step: str) -> None:
    assert code == 1
    assert f"backup-drill: error: step {step}: " in err
    assert f"backup-drill: {step}: FAILED " in out
    assert len(fake.deleted()) == 1
    assert set(fake.instances) == {SOURCE_ID}
    assert fake.calls()[-1] == "delete_instance"
    lines = out.splitlines()
    assert lines[-2].startswith("backup-drill: delete-instance: OK deletion of ")
    assert lines[-1].startswith("backup-drill: FAILED, instance ")
    assert lines[-1].endswith(": deleted")
    # The failed step's line comes before the cleanup's.
    assert out.index(f"{step}: FAILED") < out.index("delete-instance: OK")
    assert_secret_kept(fake, out, err)


def test_a_failed_restore_still_deletes_the_scratch_instance(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    picks = standard(rdb)
    rdb.restore_outcome = "error"
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "restore website")
    assert f"restore of backup {picks['website']} ended in status error" in err
    assert rdb.calls().count("restore_database_backup") == 1  # the drill stops at the first failure


def test_a_failed_check_still_deletes_the_scratch_instance(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.restore_creates_database = False
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "check website")
    assert "database website does not exist on the scratch instance" in err


def test_a_failed_check_command_still_deletes_the_scratch_instance(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    command = f"{sys.executable} -c \"import sys; print('row count too low'); sys.exit(3)\""
    code, out, err = run(args(rdb, "--check-command", command), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "check-command website")
    assert "    | row count too low" in out
    assert "exited 3" in err


def test_a_check_command_that_hangs_is_stopped_at_the_timeout(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    command = f'{sys.executable} -c "import time; time.sleep(60)"'
    started = time.monotonic()
    code, out, err = run(args(rdb, "--check-command", command), capsys)
    assert time.monotonic() - started < 30
    assert_failed_and_deleted(rdb, code, out, err, "check-command website")
    assert "did not finish within 0.05 minute(s)" in err


def test_an_instance_never_ready_within_the_timeout_is_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.ready_after = None
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "wait-ready")
    assert "did not finish within the timeout (last status provisioning)" in err
    assert "restore_database_backup" not in rdb.calls()


def test_an_instance_in_error_fails_at_once_and_is_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.ready_status = "error"
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "wait-ready")
    assert "is error, not ready" in err


def test_a_public_endpoint_is_refused_before_any_restore(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.public_endpoint = True
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "wait-ready")
    assert "has a public endpoint (51.159.0.9:20123): no production data goes there" in err
    assert "restore_database_backup" not in rdb.calls()


def test_ctrl_c_during_the_wait_still_deletes_the_scratch_instance(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    standard(rdb)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bd, "sleep", interrupt)
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "wait-ready")
    assert "interrupted by SIGINT (Ctrl-C)" in err


def test_sigterm_deletes_the_scratch_instance(rdb: FakeRdb) -> None:
    """As Kubernetes stops a job: SIGTERM while waiting for the instance."""
    standard(rdb)
    rdb.ready_after = None
    argv = args(rdb)
    argv[argv.index("--timeout-minutes") + 1] = "5"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    with subprocess.Popen(
        [sys.executable, "-m", "ops.backup_drill", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 30
        while not rdb.polls and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert rdb.polls, "the drill never polled the scratch instance"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert_failed_and_deleted(rdb, proc.returncode, out, err, "wait-ready")
    assert "interrupted by SIGTERM" in err


# --------------------------------------------------------------------------------------------
# API errors name the call, the request and the step
# --------------------------------------------------------------------------------------------

BEFORE_CREATION = [
    ("get_instance", "source", f"GET /rdb/v1/regions/fr-par/instances/{SOURCE_ID}"),
    ("list_node_types", "node-type", "GET /rdb/v1/regions/fr-par/node-types"),
    ("list_database_backups", "find-backup website", "GET /rdb/v1/regions/fr-par/backups"),
]


@pytest.mark.parametrize(("call", "step", "request_line"), BEFORE_CREATION)
def test_api_errors_before_creation_create_nothing(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], call: str, step: str, request_line: str
) -> None:
    standard(rdb)
    rdb.fail[call] = 500
    code, out, err = run(args(rdb), capsys)
    assert code == 1
    assert err == (
        f"backup-drill: error: step {step}: {call} failed: {request_line}: 500 (internal error in {call})\n"
    )
    assert "create_instance" not in rdb.calls()
    assert rdb.deleted() == []
    assert out.splitlines()[-1].endswith("scratch instance: not created")


def test_create_instance_error_names_the_call(rdb: FakeRdb, capsys: pytest.CaptureFixture[str]) -> None:
    standard(rdb)
    rdb.fail["create_instance"] = 500
    code, out, err = run(args(rdb), capsys)
    assert code == 1
    assert (
        "step create-instance: create_instance failed: POST /rdb/v1/regions/fr-par/instances: 500 "
        "(internal error in create_instance)"
    ) in err
    # It may have created the instance anyway: the cleanup looks for one of its name.
    assert rdb.sequence()[-2:] == ["create_instance", "list_instances"]
    lookup = next(q for c, _, _, q, _ in rdb.requests if c == "list_instances")
    assert lookup["name"] == [rdb.created()["name"]]
    assert lookup["tags"] == ["backup-drill"]
    assert "delete-instance: OK create_instance created nothing" in out


def test_an_instance_created_despite_an_error_answer_is_found_and_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.create_then_fail = True
    code, out, err = run(args(rdb), capsys)
    assert code == 1
    assert "POST /rdb/v1/regions/fr-par/instances: 500" in err
    assert rdb.sequence()[-3:] == ["create_instance", "list_instances", "delete_instance"]
    assert set(rdb.instances) == {SOURCE_ID}
    assert out.splitlines()[-1].endswith(": deleted")


@pytest.mark.parametrize(
    ("call", "step", "request_pattern"),
    [
        (
            "restore_database_backup",
            "restore website",
            r"POST /rdb/v1/regions/fr-par/backups/[0-9a-f-]{36}/restore",
        ),
        ("get_database_backup", "restore website", r"GET /rdb/v1/regions/fr-par/backups/[0-9a-f-]{36}"),
        ("list_databases", "check website", r"GET /rdb/v1/regions/fr-par/instances/[0-9a-f-]{36}/databases"),
    ],
)
def test_api_errors_after_creation_name_the_call_and_still_delete(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], call: str, step: str, request_pattern: str
) -> None:
    standard(rdb)
    rdb.fail[call] = 500
    code, out, err = run(args(rdb), capsys)
    assert_failed_and_deleted(rdb, code, out, err, step)
    assert re.search(rf"step {step}: {call} failed: {request_pattern}: 500 \(internal error in {call}\)", err)


def test_a_failed_deletion_is_retried_then_reported_with_the_instance(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    rdb.fail["delete_instance"] = 500
    code, out, err = run(args(rdb), capsys)
    assert code == 1  # every other step passed
    scratch_id = next(i for i in rdb.instances if i != SOURCE_ID)
    assert rdb.calls().count("delete_instance") > 1  # retried until the timeout
    assert f"delete_instance failed: DELETE /rdb/v1/regions/fr-par/instances/{scratch_id}: 500" in err
    assert f"scratch instance {scratch_id} was NOT deleted" in err
    assert f"scw rdb instance delete {scratch_id} region=fr-par" in err
    assert "backup-drill: delete-instance: FAILED " in out
    assert out.splitlines()[-1].startswith("backup-drill: FAILED, ")
    assert "NOT deleted" in out.splitlines()[-1]
    assert_secret_kept(rdb, out, err)


def test_an_instance_already_gone_counts_as_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    standard(rdb)
    real = bd.Rdb.delete

    def delete_twice(self: bd.Rdb, step: str, instance_id: str) -> None:
        real(self, step, instance_id)
        real(self, step, instance_id)  # the second one answers 404

    monkeypatch.setattr(bd.Rdb, "delete", delete_twice)
    code, _, err = run(args(rdb), capsys)
    assert (code, err) == (0, "")
    assert rdb.calls().count("delete_instance") == 2


# --------------------------------------------------------------------------------------------
# Refusals before anything is created
# --------------------------------------------------------------------------------------------


def test_no_backup_for_a_database_fails_before_creating_anything(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    standard(rdb)
    code, out, err = run(args(rdb, databases=("website", "payments", "archive")), capsys)
    assert code == 1
    assert rdb.calls() == ["get_instance", "list_node_types", "list_database_backups"]
    assert "backup-drill: find-backup website: OK " in out
    assert (
        "backup-drill: find-backup payments: FAILED no ready backup of database payments "
        f"on instance {SOURCE_ID}"
    ) in out
    assert "backup-drill: find-backup archive: FAILED " in out
    assert err == (
        f"backup-drill: error: step find-backup payments: no ready backup of database(s) payments, archive "
        f"on instance prod-db ({SOURCE_ID}): nothing was created; the instance uses Block Storage "
        "(sbs_15k), whose autobackups are instance snapshots, not database backups: drop --source backup "
        "to restore its snapshots\n"
    )
    assert out.splitlines()[-1].endswith("scratch instance: not created")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "node type DB-DEV-S does not exist in fr-par"),
        ("ha-only", "node type db-dev-s cannot be used: disabled, HA-only or out of stock"),
        ("lssd-only", "node type db-dev-s offers no encryptable (sbs) volume: lssd"),
        ("mysql", "runs MySQL-8, not PostgreSQL"),
        ("other-project", f"is in project {ORGANIZATION_ID}, not in SCW_DEFAULT_PROJECT_ID {PROJECT_ID}"),
    ],
)
def test_an_unusable_node_type_or_engine_fails_before_creating_anything(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    standard(rdb)
    if setup == "unknown":
        rdb.node_types.pop()
    elif setup == "ha-only":
        rdb.node_types[-1]["is_ha_required"] = True
    elif setup == "lssd-only":
        rdb.node_types[-1] = node_type_json("db-dev-s", ["lssd"])
    elif setup == "mysql":
        rdb.instances[SOURCE_ID]["engine"] = "MySQL-8"
    else:
        rdb.instances[SOURCE_ID]["project_id"] = ORGANIZATION_ID  # any other UUID
    code, _, err = run(args(rdb), capsys)
    assert code == 1
    assert message in err
    assert "create_instance" not in rdb.calls()


# --------------------------------------------------------------------------------------------
# Usage errors: exit 2, no request
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID"])
def test_missing_credentials_exit_2_before_any_request(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    standard(rdb)
    monkeypatch.delenv(variable)
    code, out, err = run(args(rdb), capsys)
    assert (code, out) == (2, "")
    assert err == f"backup-drill: error: missing credentials: set {variable}\n"
    assert rdb.requests == []


def test_malformed_credentials_exit_2_and_the_secret_is_masked(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCW_SECRET_KEY", "not-a-uuid")
    code, _, err = run(args(rdb), capsys)
    assert code == 2
    assert err.startswith("backup-drill: error: invalid Scaleway settings: Invalid secret key format")
    assert "not-a-uuid" not in err
    assert rdb.requests == []


def test_a_wrong_secret_is_an_api_error_naming_the_call(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    standard(rdb)
    monkeypatch.setenv("SCW_SECRET_KEY", str(uuid.uuid4()))
    code, _, err = run(args(rdb), capsys)
    assert code == 1
    assert (
        f"get_instance failed: GET /rdb/v1/regions/fr-par/instances/{SOURCE_ID}: "
        "401 (authentication is denied)"
    ) in err


@pytest.mark.parametrize(
    "change",
    [
        ("--region", "paris"),
        ("--instance-id", "prod"),
        ("--private-network-id", "not-a-uuid"),
        ("--node-type", "db dev s"),
        ("--timeout-minutes", "0"),
        ("--timeout-minutes", "soon"),
        ("--poll-seconds", "-1"),
        ("--database", "bad name"),
        ("--database", "website"),  # given twice
        ("--check-command", "check 'unbalanced"),
        ("--check-command", "   "),
        ("--source", "tape"),
    ],
)
def test_bad_arguments_exit_2_before_any_request(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], change: tuple[str, str]
) -> None:
    argv = args(rdb)
    option, value = change
    if option in argv and option not in ("--database", "--source"):
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "error" in err
    assert "Traceback" not in err
    assert rdb.requests == []


def test_no_database_is_a_usage_error(rdb: FakeRdb, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in args(rdb) if a not in ("--database", "website", "members")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "--database" in err
    assert rdb.requests == []


def test_module_entry_point_in_a_subprocess(rdb: FakeRdb) -> None:
    """``python -m ops.backup_drill`` as the monthly job runs it: exit codes, output, no traceback."""
    standard(rdb)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    done = subprocess.run(
        [sys.executable, "-m", "ops.backup_drill", *args(rdb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1].startswith("backup-drill: OK, ")
    assert_secret_kept(rdb, done.stdout, done.stderr)
    env.pop("SCW_SECRET_KEY")
    done = subprocess.run(
        [sys.executable, "-m", "ops.backup_drill", *args(rdb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "backup-drill: error: missing credentials: set SCW_SECRET_KEY\n",
    )


# --------------------------------------------------------------------------------------------
# Instance snapshots: the path for Block Storage sources, the platform's default
# --------------------------------------------------------------------------------------------

SNAPSHOT_SEQUENCE = [
    "get_instance",
    "list_node_types",
    "list_snapshots",
    "create_instance_from_snapshot",
    "wait",
    "set_instance_acl_rules",
    "wait",
    "delete_endpoint",
    "wait",
    "create_endpoint",
    "wait",
    "create_user",
    "wait",
    "list_databases",
    "set_privilege",
    "wait",
    "list_databases",
    "set_privilege",
    "wait",
    "delete_instance",
]


def scratch_of(fake: FakeRdb) -> str:
    (scratch_id,) = fake.deleted()
    return scratch_id


def test_the_snapshot_path_closes_the_instance_before_anything_connects(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    newest = snapshots(rdb)
    (public,) = endpoints = [public_endpoint()]
    rdb.snapshot_endpoints = lambda: [dict(e) for e in endpoints]
    script = tmp_path / "check.py"
    script.write_text(
        "import json, os, sys\n"
        "keys = [k for k in os.environ if k.startswith(('PG', 'DRILL_', 'SCW_'))]\n"
        "json.dump({k: os.environ[k] for k in keys}, open(sys.argv[1], 'w'))\n"
    )
    command = f"{sys.executable} {script} {tmp_path}/env-{{database}}.json"
    code, out, err = run(args(rdb, "--check-command", command, source=None), capsys)
    assert (code, err) == (0, "")
    assert rdb.sequence() == SNAPSHOT_SEQUENCE
    scratch_id = scratch_of(rdb)
    base = f"/rdb/v1/regions/fr-par/instances/{scratch_id}"
    # The newest ready, unexpired snapshot of the source, into a scratch instance of its own name.
    listing = next(q for c, _, _, q, _ in rdb.requests if c == "list_snapshots")
    assert (listing["instance_id"], listing["project_id"], listing["order_by"]) == (
        [SOURCE_ID],
        [PROJECT_ID],
        ["created_at_desc"],
    )
    assert rdb.paths("create_instance_from_snapshot") == [
        f"/rdb/v1/regions/fr-par/snapshots/{newest}/create-instance"
    ]
    (created,) = rdb.bodies("create_instance_from_snapshot")
    assert created == {
        "instance_name": created["instance_name"],
        "is_ha_cluster": False,
        "node_type": "db-dev-s",
    }
    assert re.fullmatch(r"backup-drill-\d{8}-\d{6}-[0-9a-f]{6}", created["instance_name"])
    # Closed: no address admitted, then the public endpoint deleted, then one private endpoint.
    assert (rdb.paths("set_instance_acl_rules"), rdb.bodies("set_instance_acl_rules")) == (
        [f"{base}/acls"],
        [{"rules": []}],
    )
    assert rdb.paths("delete_endpoint") == [f"/rdb/v1/regions/fr-par/endpoints/{public['id']}"]
    assert rdb.bodies("create_endpoint") == [
        {"endpoint_spec": {"private_network": {"private_network_id": NETWORK_ID, "ipam_config": {}}}}
    ]
    (final,) = rdb.gone[scratch_id]["endpoints"]
    assert final["private_network"]["private_network_id"] == NETWORK_ID and "load_balancer" not in final
    # The drill's own admin, readonly on each database checked; production's users never used.
    password = password_of(rdb)
    assert rdb.bodies("create_user") == [{"name": "drill_admin", "password": password, "is_admin": True}]
    assert rdb.bodies("set_privilege") == [
        {"database_name": db, "user_name": "drill_admin", "permission": "readonly"}
        for db in ("website", "members")
    ]
    for database in ("website", "members"):
        env = json.loads((tmp_path / f"env-{database}.json").read_text())
        assert env == {
            "PGHOST": SCRATCH_IP,
            "PGPORT": "5432",
            "PGUSER": "drill_admin",
            "PGPASSWORD": password,
            "PGDATABASE": database,
            "PGSSLMODE": "require",
            "DRILL_INSTANCE_ID": scratch_id,
            "DRILL_SNAPSHOT_ID": newest,
        }
    assert (
        out.index("create-user: OK") < out.index("grant website: OK") < out.index("check-command website: OK")
    )
    assert SOURCE_ID in rdb.instances  # the production instance is never touched
    assert_secret_kept(rdb, out, err)


def test_the_snapshot_path_reports_each_step_and_the_restore_duration(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = snapshots(rdb)
    rdb.filter_by_instance = False  # another instance's newer snapshot is listed too: not taken
    code, out, err = run(args(rdb, source=None), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == [
        "source",
        "node-type",
        "find-snapshot",
        "create-instance",
        "wait-ready",
        "acl",
        "endpoints",
        "create-user",
        "check website",
        "grant website",
        "check members",
        "grant members",
        "delete-instance",
    ]
    assert all(": OK " in line for line in lines[:-1])
    assert "restoring its instance snapshots, the default for sbs_15k volumes (" in lines[0]
    assert f"snapshot autosnapshot-5h ({newest}) of " in out
    assert "endpoints: OK deleted load balancer; created 172.16.4.7:5432 on the private network" in out
    assert re.fullmatch(
        rf"backup-drill: OK, instance {SOURCE_ID} \(fr-par\): 2/2 database\(s\) restored, 2 checked; "
        rf"restore durations: snapshot {newest} \d+\.\ds; total \d+\.\ds; "
        r"scratch instance backup-drill-\S+: deleted",
        lines[-1],
    )


@pytest.mark.parametrize(
    ("volume", "forced", "listing"),
    [
        ("sbs_15k", None, "list_snapshots"),
        ("sbs_5k", None, "list_snapshots"),
        ("lssd", None, "list_database_backups"),
        ("bssd", None, "list_database_backups"),
        ("sbs_15k", "backup", "list_database_backups"),
        ("lssd", "snapshot", "list_snapshots"),
    ],
)
def test_the_source_volume_type_chooses_snapshots_or_backups(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], volume: str, forced: str | None, listing: str
) -> None:
    standard(rdb)
    snapshots(rdb)  # both kinds exist: the choice alone decides
    rdb.instances[SOURCE_ID]["volume"]["type"] = volume
    rdb.node_types[:] = [node_type_json("db-dev-s", ["lssd", "bssd", "sbs_5k", "sbs_15k"])]
    code, out, err = run(args(rdb, source=forced), capsys)
    assert (code, err) == (0, "")
    assert listing in rdb.calls()
    other = {"list_snapshots", "list_database_backups"} - {listing}
    assert not other & set(rdb.calls())
    creating = "create_instance_from_snapshot" if listing == "list_snapshots" else "create_instance"
    assert rdb.calls().count(creating) == 1
    why = "as --source asks" if forced else f"the default for {volume} volumes"
    kind = "instance snapshots" if listing == "list_snapshots" else "database backups"
    assert f"restoring its {kind}, {why} (" in out.splitlines()[0]


def test_no_ready_snapshot_fails_before_creating_anything(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(rdb)
    rdb.snapshots[:] = [s for s in rdb.snapshots if s["status"] != "ready" or s["instance_id"] != SOURCE_ID]
    rdb.add_snapshot(40, expires_in_hours=-2)  # ready but expired
    code, out, err = run(args(rdb, source=None), capsys)
    assert code == 1
    assert rdb.calls() == ["get_instance", "list_node_types", "list_snapshots"]
    assert err == (
        f"backup-drill: error: step find-snapshot: no ready snapshot of instance prod-db ({SOURCE_ID}): "
        "nothing was created; on Block Storage its autobackups are snapshots: are they enabled "
        "(platform:database.backups)?\n"
    )
    assert out.splitlines()[-1].endswith("scratch instance: not created")


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        (["lssd", "sbs_5k"], "node type db-dev-s offers no sbs_15k volume (the snapshot's): lssd, sbs_5k"),
        (["too-small"], "node type db-dev-s takes sbs_15k volumes up to 10.0 GB, the snapshot's is 42.0 GB"),
    ],
)
def test_a_node_type_that_cannot_take_the_snapshot_fails_before_creating_anything(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], volumes: list[str], message: str
) -> None:
    snapshots(rdb)
    node = node_type_json("db-dev-s", ["sbs_15k"] if volumes == ["too-small"] else volumes)
    if volumes == ["too-small"]:
        node["available_volume_types"][0]["max_size"] = 10 * GB
    rdb.node_types[-1] = node
    code, _, err = run(args(rdb, source=None), capsys)
    assert code == 1
    assert message in err
    assert rdb.calls() == ["get_instance", "list_node_types"]


@pytest.mark.parametrize(
    ("restored", "deleted", "created"),
    [
        (["load balancer"], ["load balancer"], True),
        (["load balancer", "ours"], ["load balancer"], False),
        (["other network", "direct access"], ["other network", "direct access"], True),
        ([], [], True),
    ],
)
def test_every_endpoint_but_one_on_the_private_network_is_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], restored: list[str], deleted: list[str], created: bool
) -> None:
    snapshots(rdb)
    makers = {
        "load balancer": public_endpoint,
        "direct access": direct_access_endpoint,
        "ours": private_endpoint,
        "other network": lambda: private_endpoint(OTHER_NETWORK_ID, "172.16.9.9"),
    }
    endpoints = {kind: makers[kind]() for kind in restored}
    rdb.snapshot_endpoints = lambda: [dict(e) for e in endpoints.values()]
    code, out, err = run(args(rdb, source=None), capsys)
    assert (code, err) == (0, "")
    assert rdb.paths("delete_endpoint") == [
        f"/rdb/v1/regions/fr-par/endpoints/{endpoints[k]['id']}" for k in deleted
    ]
    assert ("create_endpoint" in rdb.calls()) is created
    (final,) = rdb.gone[scratch_of(rdb)]["endpoints"]
    assert final["private_network"]["private_network_id"] == NETWORK_ID
    assert ("kept" if not created else "created") + f" {SCRATCH_IP}:5432 on the private network" in out


SNAPSHOT_STEPS = [
    ("set_instance_acl_rules", 400, "acl", rf"PUT /rdb/v1/regions/fr-par/instances/{UUID_RE}/acls"),
    ("delete_endpoint", 403, "endpoints", rf"DELETE /rdb/v1/regions/fr-par/endpoints/{UUID_RE}"),
    ("create_endpoint", 500, "endpoints", rf"POST /rdb/v1/regions/fr-par/instances/{UUID_RE}/endpoints"),
    ("create_user", 409, "create-user", rf"POST /rdb/v1/regions/fr-par/instances/{UUID_RE}/users"),
    ("set_privilege", 500, "grant website", rf"PUT /rdb/v1/regions/fr-par/instances/{UUID_RE}/privileges"),
]


@pytest.mark.parametrize(("call", "status", "step", "request_pattern"), SNAPSHOT_STEPS)
def test_a_refused_step_of_the_snapshot_path_names_the_call_and_still_deletes(
    rdb: FakeRdb,
    capsys: pytest.CaptureFixture[str],
    *,
    call: str,
    status: int,
    step: str,
    request_pattern: str,
) -> None:
    snapshots(rdb)
    rdb.fail[call] = status
    code, out, err = run(args(rdb, "--check-command", "false", source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, step)
    assert re.search(
        rf"step {step}: {call} failed: {request_pattern}: {status} \(internal error in {call}\)", err
    )
    assert "check-command" not in out, "nothing connects to an instance that is not closed and private"
    # The drill stops at the refused step: nothing after it was asked for.
    sequence = rdb.sequence()
    assert sequence[: sequence.index(call) + 1] == SNAPSHOT_SEQUENCE[: SNAPSHOT_SEQUENCE.index(call) + 1]
    assert sequence[sequence.index(call) + 1 :] == ["delete_instance"]


def test_an_acl_answer_that_keeps_a_rule_fails_and_deletes(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(rdb)
    rdb.acl_answer = [{"ip": "0.0.0.0/0", "description": "initial"}]
    code, out, err = run(args(rdb, source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "acl")
    assert "set_instance_acl_rules left rules 0.0.0.0/0: a public endpoint would admit them" in err
    assert "delete_endpoint" not in rdb.calls()


@pytest.mark.parametrize(
    ("call", "answer", "step", "message"),
    [
        ("create_user", {"name": "drill_admin", "is_admin": False}, "create-user", "(admin: False)"),
        ("create_user", {"name": "someone", "is_admin": True}, "create-user", "answered user someone"),
        ("set_privilege", {"permission": "none"}, "grant website", "answered permission none, not readonly"),
    ],
)
def test_an_answer_that_is_not_what_was_asked_fails_and_deletes(
    rdb: FakeRdb,
    capsys: pytest.CaptureFixture[str],
    *,
    call: str,
    answer: dict[str, Any],
    step: str,
    message: str,
) -> None:
    snapshots(rdb)
    rdb.answers[call] = answer
    code, out, err = run(args(rdb, "--check-command", "false", source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, step)
    assert message in err
    assert "check-command" not in out


def test_a_public_endpoint_that_survives_its_deletion_fails_and_deletes(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(rdb)
    rdb.sticky_endpoints = True
    code, out, err = run(args(rdb, source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "endpoints")
    assert "has a public endpoint (51.159.0.9:20123): no production data goes there" in err
    assert "create_user" not in rdb.calls()


@pytest.mark.parametrize(
    ("settle_polls", "settle_status", "message"),
    [
        (None, "ready", "did not finish within the timeout (last status configuring)"),
        (1, "error", "is error, not ready"),
    ],
)
def test_an_instance_that_does_not_settle_after_a_change_fails_and_is_deleted(
    rdb: FakeRdb,
    capsys: pytest.CaptureFixture[str],
    settle_polls: int | None,
    settle_status: str,
    message: str,
) -> None:
    snapshots(rdb)
    rdb.settle_polls, rdb.settle_status = settle_polls, settle_status
    code, out, err = run(args(rdb, source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "acl")
    assert message in err


def test_ctrl_c_while_making_the_instance_private_still_deletes_it(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots(rdb)
    real_sleep = bd.sleep

    def interrupt_once_an_endpoint_is_deleted(seconds: float) -> None:
        if "delete_endpoint" in rdb.calls():
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(bd, "sleep", interrupt_once_an_endpoint_is_deleted)
    code, out, err = run(args(rdb, source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "endpoints")
    assert "interrupted by SIGINT (Ctrl-C)" in err


def test_a_failed_create_instance_from_snapshot_looks_for_an_untagged_orphan(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = snapshots(rdb)
    rdb.fail["create_instance_from_snapshot"] = 500
    code, out, err = run(args(rdb, source=None), capsys)
    assert code == 1
    assert (
        "step create-instance: create_instance_from_snapshot failed: "
        f"POST /rdb/v1/regions/fr-par/snapshots/{newest}/create-instance: 500 "
        "(internal error in create_instance_from_snapshot)"
    ) in err
    assert rdb.sequence()[-2:] == ["create_instance_from_snapshot", "list_instances"]
    lookup = next(q for c, _, _, q, _ in rdb.requests if c == "list_instances")
    (body,) = rdb.bodies("create_instance_from_snapshot")
    assert lookup["name"] == [body["instance_name"]]
    assert "tags" not in lookup, "create_instance_from_snapshot cannot tag: the name alone finds it"
    assert "delete-instance: OK create_instance_from_snapshot created nothing" in out


def test_an_instance_made_from_a_snapshot_despite_an_error_is_found_and_deleted(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(rdb)
    rdb.create_then_fail = True
    code, out, err = run(args(rdb, source=None), capsys)
    assert code == 1
    assert "/create-instance: 500 (internal error in create_instance_from_snapshot)" in err
    assert rdb.sequence()[-3:] == ["create_instance_from_snapshot", "list_instances", "delete_instance"]
    assert set(rdb.instances) == {SOURCE_ID}
    assert out.splitlines()[-1].endswith(": deleted")


def test_a_database_missing_from_the_snapshot_fails_its_check_and_deletes(
    rdb: FakeRdb, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(rdb)
    code, out, err = run(args(rdb, databases=("website", "payments"), source=None), capsys)
    assert_failed_and_deleted(rdb, code, out, err, "check payments")
    assert "database payments does not exist on the scratch instance" in err
    assert rdb.bodies("set_privilege") == [
        {"database_name": "website", "user_name": "drill_admin", "permission": "readonly"}
    ]


# --------------------------------------------------------------------------------------------
# The real check command (scw_platform.drill: the restore check on the drill's spec) against a
# real PostgreSQL standing in for the scratch instance made from a snapshot
# --------------------------------------------------------------------------------------------

_PG_SKIP = pg.skip_reason()
_CI = bool(os.environ.get("CI"))
#: An age public key (its private key thrown away): the daily check's settings need one.
RECIPIENT = "age1ujqga9uak877kuhxdzz9yvft52fwcfm6pj7yp5y42xnxcu8n0ansnt44wp"
SNAPSHOT_SQL = """
set role website_app;
create table members (id serial primary key, email text not null unique, joined_at timestamptz not null);
create table orders (
    id bigserial primary key,
    member_id int not null references members(id),
    total numeric(12, 2) not null,
    created_at timestamptz not null
);
insert into members (email, joined_at)
select 'member' || g || '@example.org', now() - g * interval '1 day' from generate_series(1, 30) g;
insert into orders (member_id, total, created_at)
select 1 + g % 30, g * 2.5, now() - interval '1 hour' - (g - 1) * interval '3 hours'
from generate_series(1, 120) g;
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[pg.PgServer]:
    if _PG_SKIP is not None:
        if _CI:
            pytest.fail(_PG_SKIP)
        pytest.skip(_PG_SKIP)
    bindir = pg.find_bindir()
    assert bindir is not None
    server = pg.PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def copy_of_production(pg_server: pg.PgServer) -> Iterator[pg.PgServer]:
    """What the snapshot holds: database website, owned by production's app user."""
    pg_server.create_role("website_app", "production-secret")
    pg_server.create_database("website", "website_app")
    pg_server.psql(SNAPSHOT_SQL, "website")
    yield pg_server
    pg_server.drop_database("website")
    pg_server.psql('drop role if exists "drill_admin"; drop role if exists "website_app"')


def daily_settings(min_orders: int) -> RestoreCheckSettings:
    return RestoreCheckSettings.model_validate(
        {
            "image": "rg.fr-par.scw.cloud/acme-platform/restore-check:16.9-3",
            "encryptionRecipient": RECIPIENT,
            "rtoMinutes": 60,
            "rpoHours": 26,
            # Required by the settings (the restore check's bucket policy); unused by the drill.
            "bucketAdmins": ["user_id:5e2f8a1c-3b7d-4c9e-8f6a-2d1b0c9e7f34"],
            "databases": [
                {
                    "database": "website",
                    "tables": ["members", "orders"],
                    "minRows": {"orders": min_orders, "members": 10},
                    "freshness": [{"table": "orders", "column": "created_at", "maxAge": "26h"}],
                }
            ],
        }
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("min_orders", "granted", "expected"),
    [
        (100, True, r'PASS website: table "orders" has 120 rows \(>= 100\)'),
        (500, True, r'FAIL website: table "orders" has 120 rows, expected >= 500'),
        # Without the grant, the drill's admin cannot read production's tables (manage-users.mdx).
        (100, False, r"FAIL website: pg_dump failed: .*permission denied for table"),
    ],
)
def test_the_restore_checks_run_on_the_drills_copy(
    rdb: FakeRdb,
    capsys: pytest.CaptureFixture[str],
    copy_of_production: pg.PgServer,
    *,
    min_orders: int,
    granted: bool,
    expected: str,
) -> None:
    server = copy_of_production
    python = pg.python_for_server_user()
    if python is None:
        pytest.skip("no Python >= 3.11 that the unprivileged 'postgres' user can run")
    workspace = pg.private_tempdir("backup-drill-test-")
    try:
        # The drill's ConfigMap and the image's script, where the unprivileged user reads them.
        for name, text in drill.check_specs(
            daily_settings(min_orders), ["website"], allowance_hours=24
        ).items():
            (workspace / name).write_text(text)
        script = workspace / "restore_check.py"
        shutil.copyfile(ROOT / "ops" / "restore_check" / "restore_check.py", script)
        (workspace / "work").mkdir()
        pg.hand_over(workspace)
        command = drill.check_command(
            python=python,
            script=str(script),
            spec_dir=str(workspace),
            work_dir=str(workspace / "work"),
            runner=pg.as_server_user([]),
        )

        # The scratch instance: its private endpoint is the server's socket; its admin and the
        # readonly grant are made on the server as Scaleway would (scw_platform/db_grants.py).
        snapshots(rdb)
        rdb.snapshot_databases = [{"name": "website", "owner": "website_app", "managed": True, "size": 1}]
        rdb.endpoint_ip = str(server.socket_dir)
        rdb.on_user = lambda name, password: server.psql(
            f"create role {db_grants.quote_ident(name)} login createdb createrole "
            f"password {db_grants.quote_literal(password)}"
        )
        if granted:
            rdb.on_privilege = lambda level, database, user: server.psql(
                db_grants.scaleway_permission_sql(level, database, user), database
            )
        argv = args(rdb, "--check-command", command, databases=("website",), source=None)
        argv[argv.index("--timeout-minutes") + 1] = "2"
        code, out, err = run(argv, capsys)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    assert re.search(expected, out), out
    assert "    | RESTORE_CHECK_SUMMARY " in out
    if min_orders == 100 and granted:
        assert (code, err) == (0, "")
        assert 'PASS website: newest "orders.created_at" is 1h 0m old (within 50h)' in out.replace(
            "    | ", ""
        )
        assert "backup-drill: check-command website: OK " in out
    else:
        assert_failed_and_deleted(rdb, code, out, err, "check-command website")
        assert "exited 1" in err
    assert rdb.deleted() == [scratch_of(rdb)]
    assert_secret_kept(rdb, out, err)

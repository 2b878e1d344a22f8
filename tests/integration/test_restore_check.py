"""The restore check, for real: a PostgreSQL server from Debian's packages, the script run as a
subprocess exactly as the CronJob runs it (Python's standard library only, as an unprivileged
user), dumps stored in a local directory instead of Object Storage.

Unit tests (spec parsing, upload targets, SigV4, metrics) need nothing but Python; the tests
marked ``postgres`` skip with a reason when the server binaries are absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.restore_check import restore_check as rc
from tests import pg

SCRIPT = Path(__file__).resolve().parents[2] / "ops" / "restore_check" / "restore_check.py"

# --------------------------------------------------------------------------------------------
# Spec parsing: strict durations, every problem with its key path.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("26h", 93600), ("7d", 604800), ("45s", 45), ("2w", 1209600)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert rc.parse_duration(text, "k") == seconds


@pytest.mark.parametrize(
    "bad", ["26", "26 h", "1.5h", "-1h", "0h", "26H", "1h30m", "", "h", None, 26, "26hours"]
)
def test_bad_durations_are_errors_naming_the_key(bad: object) -> None:
    with pytest.raises(rc.SpecError) as err:
        rc.parse_duration(bad, "databases[0].checks.freshness[0].maxAge")
    (problem,) = err.value.problems
    assert problem.startswith("databases[0].checks.freshness[0].maxAge: ")
    assert "is not a duration" in problem and "26h" in problem


def _good_spec() -> dict[str, Any]:
    return {
        "databases": [
            {
                "name": "website",
                "connection": {"host": "10.20.0.5", "port": 5432, "user": "website", "passwordEnv": "PW"},
                "checks": {
                    "tables": ["members", "public.orders"],
                    "minRows": {"orders": 100},
                    "freshness": [{"table": "orders", "column": "created_at", "maxAge": "26h"}],
                },
            }
        ],
        "storage": {
            "type": "s3",
            "endpoint": "https://s3.fr-par.scw.cloud",
            "region": "fr-par",
            "bucket": "dumps",
        },
    }


def test_good_spec_loads() -> None:
    spec = rc.load_spec(_good_spec())
    (db,) = spec.databases
    assert db.connection.dbname == "website"  # defaults to the name
    assert [t.sql for t in db.tables] == ['"public"."members"', '"public"."orders"']
    assert db.min_rows[0][1] == 100
    assert db.freshness[0].max_age_seconds == 26 * 3600
    assert spec.storage.addressing == "virtual"


def test_every_spec_problem_is_reported_at_once_with_its_path() -> None:
    raw = _good_spec()
    db = raw["databases"][0]
    db["colour"] = "blue"
    db["connection"]["passwordFile"] = "/secret"
    db["checks"]["minRows"]["orders"] = -1
    db["checks"]["tables"].append("bad name; drop table x")
    db["checks"]["freshness"][0]["maxAge"] = "26 hours"
    raw["databases"].append({"name": "website"})
    del raw["storage"]["bucket"]
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    problems = "\n".join(err.value.problems)
    for expected in (
        "databases[0].colour: unknown key",
        "databases[0].connection: set passwordFile or passwordEnv, not both",
        "databases[0].checks.minRows.orders: must be a whole number >= 0, got -1",
        "databases[0].checks.tables[2]: 'bad name; drop table x' is not a table name",
        "databases[0].checks.freshness[0].maxAge: '26 hours' is not a duration",
        "databases[1].name: 'website' is declared twice",
        "storage.bucket: required for type s3",
    ):
        assert expected in problems, problems


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"type": "ftp"}, "storage.type: must be one of s3, local, none"),
        ({"type": "local"}, "storage.path: required for type local"),
        ({"type": "local", "path": "/x", "prefix": "../up"}, "storage.prefix: must be a relative key prefix"),
        (
            {"type": "s3", "endpoint": "s3.fr-par.scw.cloud", "region": "fr-par", "bucket": "b"},
            "storage.endpoint: must be a URL",
        ),
    ],
)
def test_bad_storage_is_named(storage: dict[str, Any], message: str) -> None:
    raw = _good_spec()
    raw["storage"] = storage
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def _write_spec(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_unknown_database_on_the_command_line_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    code = rc.main(["--spec", _write_spec(tmp_path, _good_spec()), "--database", "shop", "--validate"])
    assert code == rc.EXIT_USAGE
    assert "--database shop: unknown database (the spec declares: website)" in capsys.readouterr().err


def test_spec_from_environment_and_validate_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(rc.SPEC_JSON_ENV, json.dumps(_good_spec()))
    monkeypatch.delenv(rc.SPEC_ENV, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert rc.main(["--validate"]) == rc.EXIT_OK
    assert "spec ok: 1 database(s): website" in capsys.readouterr().out


def test_missing_object_storage_credentials_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert rc.main(["--spec", _write_spec(tmp_path, _good_spec()), "--validate"]) == rc.EXIT_USAGE
    err = capsys.readouterr().err
    assert "AWS_ACCESS_KEY_ID is not set" in err and "AWS_SECRET_ACCESS_KEY is not set" in err


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("{not json", "is not valid JSON")])
def test_unreadable_spec_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    assert rc.main(["--spec", str(path)]) == rc.EXIT_USAGE
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Upload targets: local directory layout, SigV4 against AWS's published vectors, a real PUT.
# --------------------------------------------------------------------------------------------

WHEN = dt.datetime(2026, 3, 4, 2, 5, 6, tzinfo=dt.UTC)


def test_dump_key_layout() -> None:
    assert (
        rc.dump_key("restore-check/", "website", WHEN)
        == "restore-check/website/website-20260304T020506Z.dump"
    )
    assert rc.dump_key("", "newsletter", WHEN) == "newsletter/newsletter-20260304T020506Z.dump"


def test_local_target_writes_the_dump_under_its_key(tmp_path: Path) -> None:
    source = tmp_path / "x.dump"
    source.write_bytes(b"PGDMP" + bytes(range(256)))
    root = tmp_path / "store"
    key = rc.dump_key("restore-check/", "website", WHEN)
    where = rc.LocalDirTarget(root).put(key, source)
    stored = root / "restore-check" / "website" / "website-20260304T020506Z.dump"
    assert where == f"file://{stored.resolve()}"
    assert stored.read_bytes() == source.read_bytes()
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no .partial left behind


def test_local_target_refuses_a_key_outside_its_root(tmp_path: Path) -> None:
    source = tmp_path / "x.dump"
    source.write_bytes(b"x")
    with pytest.raises(rc.UploadError, match="escapes"):
        rc.LocalDirTarget(tmp_path / "store").put("../outside.dump", source)


# AWS's worked examples ("Signature Calculations for the Authorization Header: Transferring
# Payload in a Single Chunk", Amazon S3 API Reference, sig-v4-header-based-auth).
AWS_ACCESS = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def test_sigv4_matches_aws_put_object_example() -> None:
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    assert payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = rc.sign_v4(
        method="PUT",
        host="examplebucket.s3.amazonaws.com",
        path="/" + rc._uri_encode("test$file.text", keep_slash=True),
        headers={"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        payload_sha256=payload,
        access_key=AWS_ACCESS,
        secret_key=AWS_SECRET,
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_sigv4_matches_aws_get_object_example() -> None:
    headers = rc.sign_v4(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        headers={"Range": "bytes=0-9"},
        payload_sha256=EMPTY_SHA256,
        access_key=AWS_ACCESS,
        secret_key=AWS_SECRET,
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert headers["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_matches_aws_list_objects_example_with_a_query() -> None:
    headers = rc.sign_v4(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/",
        query={"prefix": "J", "max-keys": "2"},
        payload_sha256=EMPTY_SHA256,
        access_key=AWS_ACCESS,
        secret_key=AWS_SECRET,
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert headers["authorization"].endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def _s3(endpoint: str, addressing: str = "virtual") -> rc.S3Target:
    return rc.S3Target(
        endpoint=endpoint,
        region="fr-par",
        bucket="platform-prod-dumps",
        access_key="SCWEXAMPLE",
        secret_key="secret",
        addressing=addressing,
        storage_class="ONEZONE_IA",
    )


def test_s3_request_is_deterministic_and_virtual_hosted() -> None:
    key = rc.dump_key("restore-check/", "website", WHEN)
    first = _s3("https://s3.fr-par.scw.cloud").request_for(key, EMPTY_SHA256, 42, WHEN)
    again = _s3("https://s3.fr-par.scw.cloud").request_for(key, EMPTY_SHA256, 42, WHEN)
    assert first.full_url == (
        "https://platform-prod-dumps.s3.fr-par.scw.cloud/restore-check/website/website-20260304T020506Z.dump"
    )
    assert first.get_method() == "PUT"
    sent = {k.lower(): v for k, v in first.header_items()}
    assert sent == {k.lower(): v for k, v in again.header_items()}
    assert sent["host"] == "platform-prod-dumps.s3.fr-par.scw.cloud"
    assert sent["x-amz-date"] == "20260304T020506Z"
    assert sent["content-length"] == "42"
    assert sent["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=SCWEXAMPLE/20260304/fr-par/s3/aws4_request,"
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature="
    )


def test_s3_path_style_request() -> None:
    req = _s3("http://127.0.0.1:9000", "path").request_for("a b/c.dump", EMPTY_SHA256, 1, WHEN)
    assert req.full_url == "http://127.0.0.1:9000/platform-prod-dumps/a%20b/c.dump"
    assert dict(req.header_items())["Host"] == "127.0.0.1:9000"


@dataclass
class _Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def http_sink() -> Iterator[tuple[str, list[_Received], dict[str, int]]]:
    """A local HTTP server that records requests; ``control["status"]`` sets its answer."""
    received: list[_Received] = []
    control = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(
                _Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            status = control["status"]
            body = b"" if status < 300 else b"<Error><Code>AccessDenied</Code></Error>"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_POST = _record  # noqa: N815 - http.server's naming

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received, control
    finally:
        server.shutdown()
        server.server_close()


def test_s3_put_sends_the_file_and_a_signature_the_server_can_verify(
    tmp_path: Path, http_sink: tuple[str, list[_Received], dict[str, int]]
) -> None:
    url, received, _ = http_sink
    source = tmp_path / "w.dump"
    source.write_bytes(os.urandom(300_000))
    key = rc.dump_key("restore-check/", "website", WHEN)
    target = _s3(url, "path")
    assert target.put(key, source) == f"s3://platform-prod-dumps/{key}"

    (req,) = received
    assert req.method == "PUT"
    assert req.path == f"/platform-prod-dumps/{key}"
    assert req.body == source.read_bytes()
    assert req.headers["x-amz-content-sha256"] == hashlib.sha256(req.body).hexdigest()
    # The server side of SigV4: recompute from what arrived, with the shared secret.
    signed = req.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    expected = rc.sign_v4(
        method=req.method,
        host=req.headers["host"],
        path=req.path,
        headers={
            h: req.headers[h] for h in signed if h not in ("host", "x-amz-date", "x-amz-content-sha256")
        },
        payload_sha256=hashlib.sha256(req.body).hexdigest(),
        access_key="SCWEXAMPLE",
        secret_key="secret",
        region="fr-par",
        amz_date=req.headers["x-amz-date"],
    )
    assert req.headers["authorization"] == expected["authorization"]


def test_s3_put_error_names_the_status_and_code(
    tmp_path: Path, http_sink: tuple[str, list[_Received], dict[str, int]]
) -> None:
    url, _, control = http_sink
    control["status"] = 403
    source = tmp_path / "w.dump"
    source.write_bytes(b"x")
    with pytest.raises(rc.UploadError, match=r"answered HTTP 403 \(AccessDenied\)"):
        _s3(url, "path").put("k.dump", source)


def test_s3_put_to_a_closed_port_is_an_upload_error(tmp_path: Path) -> None:
    source = tmp_path / "w.dump"
    source.write_bytes(b"x")
    with pytest.raises(rc.UploadError, match="failed"):
        _s3("http://127.0.0.1:9", "path").put("k.dump", source)


# --------------------------------------------------------------------------------------------
# Metrics for alerting.
# --------------------------------------------------------------------------------------------


def test_metrics_text(tmp_path: Path) -> None:
    body = rc.render_metrics(
        now=1700000000.0, failed_checks=0, databases=2, duration=12.5, last_success=1700000000.0
    )
    assert "platform_restore_check_last_success_timestamp_seconds 1700000000.0\n" in body
    assert "platform_restore_check_failed_checks 0\n" in body
    assert "# TYPE platform_restore_check_failed_checks gauge" in body
    path = tmp_path / "m" / "restore_check.prom"
    rc.write_textfile(path, body)
    assert rc.previous_last_success(path) == 1700000000.0
    failed = rc.render_metrics(now=1.0, failed_checks=3, databases=2, duration=1.0, last_success=None)
    assert "last_success" not in failed


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_metrics_text_passes_promtool_check_metrics() -> None:
    body = rc.render_metrics(now=1700000000.0, failed_checks=1, databases=2, duration=3.0, last_success=1.0)
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metrics_are_pushed_to_a_pushgateway_group(
    http_sink: tuple[str, list[_Received], dict[str, int]],
) -> None:
    url, received, _ = http_sink
    rc.push_metrics(url, "platform_restore_check_failed_checks 0\n")
    (req,) = received
    assert (req.method, req.path) == ("POST", "/metrics/job/platform_restore_check")
    assert req.body == b"platform_restore_check_failed_checks 0\n"


# --------------------------------------------------------------------------------------------
# End to end against a real PostgreSQL server.
# --------------------------------------------------------------------------------------------

_SKIP = pg.skip_reason()
postgres = pytest.mark.postgres
needs_pg = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    if _SKIP is not None:
        pytest.skip(_SKIP)
    bindir = pg.find_bindir()
    assert bindir is not None
    server = pg.PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


_ids = itertools.count(1)

SOURCE_SQL = """
set role {owner};
create table members (
    id serial primary key,
    email text not null unique,
    nickname text,
    joined_at timestamptz not null,
    balance numeric(10, 2) not null default 0
);
create table orders (
    id bigserial primary key,
    member_id int not null references members(id),
    total numeric(12, 2) not null,
    items jsonb not null,
    created_at timestamptz not null
);
create table empty_log (id int, logged_at timestamp);
create schema newsletter;
create table newsletter.subscriptions (
    id int primary key,
    email text not null,
    confirmed boolean not null,
    token bytea not null,
    subscribed_on date not null
);
insert into members (email, nickname, joined_at, balance)
select 'member' || g || '@example.org',
       case when g % 5 = 0 then null else E'nick\\t' || g || E' \\u00e9\\n"quoted"' end,
       now() - interval '3 days' - g * interval '1 hour',
       g * 1.25
from generate_series(1, 50) g;
insert into orders (member_id, total, items, created_at)
select 1 + g % 50, g * 3.5, jsonb_build_object('sku', 'A' || g, 'qty', g % 7),
       now() - interval '1 hour' - g * interval '6 hours'
from generate_series(1, 120) g;
insert into newsletter.subscriptions
select g, 'reader' || g || '@example.org', g % 2 = 0, decode(md5(g::text), 'hex'), date '2026-01-01' + g
from generate_series(1, 30) g;
"""


@dataclass
class Source:
    name: str  # database name and spec name
    owner: str
    password: str

    def connection(self, server: pg.PgServer, password_file: Path) -> dict[str, Any]:
        return {"host": str(server.socket_dir), "user": self.owner, "passwordFile": str(password_file)}


@pytest.fixture
def source(pg_server: pg.PgServer) -> Iterator[Source]:
    """A fresh source database owned by an application role with a password."""
    n = next(_ids)
    src = Source(name=f"shop{n}", owner=f"shop{n}_app", password=f"pw-{n}-secret")
    pg_server.create_role(src.owner, src.password)
    pg_server.create_database(src.name, src.owner)
    pg_server.psql(SOURCE_SQL.format(owner=src.owner), src.name)
    yield src
    pg_server.drop_database(src.name)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    workspace: Path

    @property
    def summary(self) -> dict[str, Any]:
        (line,) = [x for x in self.stdout.splitlines() if x.startswith(rc.SUMMARY_PREFIX)]
        result: dict[str, Any] = json.loads(line[len(rc.SUMMARY_PREFIX) :])
        return result

    @property
    def fails(self) -> list[str]:
        return [x for x in self.stdout.splitlines() if x.startswith("FAIL ")]

    @property
    def store(self) -> Path:
        return self.workspace / "store"


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = pg.private_tempdir("restore-check-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run_check(pg_server: pg.PgServer, workspace: Path) -> Callable[..., Run]:
    """Run the script as the CronJob does: a copy of the file, Python's standard library only
    (``-I``), as an unprivileged user, with a spec file and a password file."""
    python = pg.python_for_server_user()
    if python is None:
        pytest.skip("no Python >= 3.11 that the unprivileged 'postgres' user can run")
    script = workspace / "restore_check.py"
    shutil.copyfile(SCRIPT, script)

    def run(spec: dict[str, Any], *args: str, passwords: dict[str, str] | None = None) -> Run:
        for name, password in (passwords or {}).items():
            (workspace / f"{name}.password").write_text(password + "\n")
        spec_path = workspace / "spec.json"
        spec_path.write_text(json.dumps(spec))
        (workspace / "work").mkdir(exist_ok=True)
        pg.hand_over(workspace)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PG_BINDIR"] = str(pg_server.bindir)
        argv = [
            python,
            "-I",
            str(script),
            "--spec",
            str(spec_path),
            "--work-dir",
            str(workspace / "work"),
            *args,
        ]
        proc = pg.run_as_server_user(argv, env)
        return Run(proc.returncode, proc.stdout, proc.stderr, workspace)

    return run


def _spec_for(src: Source, server: pg.PgServer, workspace: Path, **checks: Any) -> dict[str, Any]:
    return {
        "databases": [
            {
                "name": src.name,
                "connection": src.connection(server, workspace / f"{src.name}.password"),
                "checks": checks
                or {
                    "tables": ["members", "orders", "newsletter.subscriptions"],
                    "minRows": {"orders": 100, "members": 10, "newsletter.subscriptions": 30},
                    "freshness": [{"table": "orders", "column": "created_at", "maxAge": "26h"}],
                },
            }
        ],
        "storage": {"type": "local", "path": str(workspace / "store"), "prefix": "restore-check/"},
    }


@postgres
@needs_pg
def test_round_trip_loses_nothing(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    started = time.time()
    metrics = workspace / "metrics" / "restore_check.prom"
    run = run_check(
        _spec_for(source, pg_server, workspace),
        "--inventory",
        "--metrics-file",
        str(metrics),
        passwords={source.name: source.password},
    )
    assert run.code == 0, run.stdout + run.stderr
    assert run.fails == []
    summary = run.summary
    assert summary["status"] == "ok" and summary["failedChecks"] == 0
    assert f'PASS {source.name}: table "orders" has 120 rows (>= 100)' in run.stdout
    # The newest order was created 7 hours before the dump.
    assert re.search(
        rf'PASS {source.name}: newest "orders.created_at" is 7h 0m old \(within 26h\)', run.stdout
    )

    # The stored object sits under the documented key, and is the dump that was checked.
    (stored,) = (run.store / "restore-check" / source.name).iterdir()
    assert re.fullmatch(rf"{source.name}-\d{{8}}T\d{{6}}Z\.dump", stored.name)
    (db_summary,) = summary["databases"]
    assert db_summary["stored"] == f"file://{stored}"
    assert db_summary["dumpSha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()

    # Nothing is lost: every table's row count and checksum match the source, both in the
    # script's own restored copy and in an independent restore of the stored object.
    expected = pg_server.fingerprints(source.name)
    assert set(expected) == {
        "public.members",
        "public.orders",
        "public.empty_log",
        "newsletter.subscriptions",
    }
    assert expected["public.orders"]["rows"] == 120
    assert db_summary["inventory"] == expected
    copy = f"{source.name}_copy"
    try:
        pg_server.restore(stored, copy)
        assert pg_server.fingerprints(copy) == expected
    finally:
        pg_server.drop_database(copy)

    text = metrics.read_text()
    assert "platform_restore_check_failed_checks 0\n" in text
    last_success = rc.previous_last_success(metrics)
    assert last_success is not None and started <= last_success <= time.time()


@postgres
@needs_pg
def test_missing_table_fails_naming_it(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    spec = _spec_for(source, pg_server, workspace, tables=["members", "invoices"], minRows={"refunds": 1})
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    assert run.fails == [
        f'FAIL {source.name}: table "invoices" does not exist in the restored copy',
        f'FAIL {source.name}: table "refunds" does not exist in the restored copy (expected >= 1 rows)',
    ]
    assert run.summary["failedChecks"] == 2
    # The dump is still stored: a failed check does not throw a good backup away.
    assert len(list((run.store / "restore-check" / source.name).iterdir())) == 1


@postgres
@needs_pg
def test_too_few_rows_fails_with_the_count(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    pg_server.psql("delete from orders where id > 3", source.name)
    spec = _spec_for(source, pg_server, workspace, minRows={"orders": 100, "members": 50})
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    assert run.fails == [f'FAIL {source.name}: table "orders" has 3 rows, expected >= 100']
    assert f'PASS {source.name}: table "members" has 50 rows (>= 50)' in run.stdout
    assert run.summary["failures"] == [f'{source.name}: table "orders" has 3 rows, expected >= 100']


@postgres
@needs_pg
def test_stale_data_fails_with_age_and_threshold(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    spec = _spec_for(
        source,
        pg_server,
        workspace,
        freshness=[
            {"table": "orders", "column": "created_at", "maxAge": "26h"},  # newest 1h old: passes
            {"table": "members", "column": "joined_at", "maxAge": "26h"},  # newest 3d 1h old
            {"table": "newsletter.subscriptions", "column": "subscribed_on", "maxAge": "7d"},
            {"table": "empty_log", "column": "logged_at", "maxAge": "30m"},
            {"table": "orders", "column": "shipped_at", "maxAge": "1d"},
        ],
    )
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    fails = "\n".join(run.fails)
    assert re.search(
        rf'FAIL {source.name}: stale data: newest "members.joined_at" is \S+Z, 3d 1h old, '
        r"expected within 26h",
        fails,
    ), fails
    assert (
        f'FAIL {source.name}: stale data: newest "newsletter.subscriptions.subscribed_on" is 2026-01-31'
        in fails
    )
    assert f'FAIL {source.name}: freshness of "empty_log.logged_at": the table has no rows' in fails
    assert (
        f'FAIL {source.name}: freshness column "orders.shipped_at" does not exist in the restored copy'
        in fails
    )
    assert len(run.fails) == 4
    assert f'PASS {source.name}: newest "orders.created_at"' in run.stdout


@postgres
@needs_pg
def test_unreachable_source_fails_and_other_databases_still_run(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    gone = dict(spec["databases"][0], name="gone")
    gone["connection"] = dict(gone["connection"], host=str(workspace / "no-server-here"), dbname=source.name)
    spec["databases"].append(gone)
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    (fail,) = run.fails
    assert fail.startswith(f"FAIL gone: source unreachable ({workspace / 'no-server-here'}): ")
    assert f'PASS {source.name}: table "orders" exists' in run.stdout
    statuses = {d["name"]: d["status"] for d in run.summary["databases"]}
    assert statuses == {source.name: "ok", "gone": "failed"}


@postgres
@needs_pg
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dbname": "no_such_db"}, 'source database "no_such_db" does not exist on '),
        ({"password": "wrong"}, "authentication to the source on "),
    ],
)
def test_bad_source_database_or_password_is_named(
    pg_server: pg.PgServer,
    source: Source,
    *,
    workspace: Path,
    run_check: Callable[..., Run],
    change: dict[str, str],
    message: str,
) -> None:
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    if "dbname" in change:
        spec["databases"][0]["connection"]["dbname"] = change["dbname"]
    password = change.get("password", source.password)
    run = run_check(spec, passwords={source.name: password})
    assert run.code == rc.EXIT_CHECK_FAILED
    (fail,) = run.fails
    assert fail.startswith(f"FAIL {source.name}: {message}"), fail
    assert password not in run.stdout + run.stderr  # the password never reaches the logs


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "bit-flipped":
        middle = len(data) * 2 // 3
        for i in range(middle, middle + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"this is not a pg_dump archive\n" * 100)


@postgres
@needs_pg
@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("garbage", "corrupt dump: not a readable pg_dump archive"),
        ("truncated", "corrupt dump: restore failed"),
        ("bit-flipped", "corrupt dump: restore failed"),
    ],
)
def test_corrupt_dump_fails(
    pg_server: pg.PgServer,
    source: Source,
    *,
    workspace: Path,
    run_check: Callable[..., Run],
    how: str,
    message: str,
) -> None:
    # Bulk up one table so the corruption lands in table data, not in the table of contents.
    pg_server.psql(
        "insert into newsletter.subscriptions select g, md5(g::text) || '@example.org', true, "
        "decode(md5(g::text), 'hex'), date '2026-01-01' from generate_series(100, 5000) g",
        source.name,
    )
    dumps = workspace / "dumps"
    dumps.mkdir()
    intact = dumps / "intact.dump"
    pg_server.dump(source.name, intact)
    shutil.copyfile(intact, dumps / f"{source.name}.dump")
    _corrupt(dumps / f"{source.name}.dump", how)
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    spec["databases"].append(dict(spec["databases"][0], name="intact"))

    run = run_check(spec, "--from-dumps", str(dumps))
    assert run.code == rc.EXIT_CHECK_FAILED
    (fail,) = run.fails
    assert fail.startswith(f"FAIL {source.name}: {message}"), fail
    assert 'PASS intact: table "orders" exists' in run.stdout  # the same dump, uncorrupted, passes


@postgres
@needs_pg
def test_failed_run_keeps_the_last_success_time(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    metrics = workspace / "restore_check.prom"
    earlier = time.time() - 86400
    rc.write_textfile(
        metrics,
        rc.render_metrics(now=earlier, failed_checks=0, databases=1, duration=1.0, last_success=earlier),
    )
    failing = run_check(
        _spec_for(source, pg_server, workspace, tables=["invoices"]),
        "--metrics-file",
        str(metrics),
        passwords={source.name: source.password},
    )
    assert failing.code == rc.EXIT_CHECK_FAILED
    text = metrics.read_text()
    assert "platform_restore_check_failed_checks 1\n" in text
    assert rc.previous_last_success(metrics) == earlier  # alerting still sees the last GOOD run

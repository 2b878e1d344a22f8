"""The restore check, for real: a PostgreSQL server from Debian's packages, age from Debian's
package, and moto's S3 server on loopback; the script run as a subprocess exactly as the CronJob
runs it, as an unprivileged user (Python's standard library only when the dumps stay in a local
directory; with the pinned boto3 beside it for Object Storage).

Unit tests (spec parsing, upload targets, metrics) need nothing but Python; the S3 tests need
moto[server] and boto3 (requirements-dev.txt), the encryption tests the age binary, the tests
marked ``postgres`` the server binaries: each skips with a reason when its tool is absent.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import http.server
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.restore_check import restore_check as rc
from tests import pg

SCRIPT = Path(__file__).resolve().parents[2] / "ops" / "restore_check" / "restore_check.py"
AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="age not found: install Debian's age package (.ci/run does)"
)
#: age public keys from age-keygen (their private keys were thrown away): for specs never run.
RECIPIENT = "age1ujqga9uak877kuhxdzz9yvft52fwcfm6pj7yp5y42xnxcu8n0ansnt44wp"

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
        "encryption": {"recipient": RECIPIENT, "identityFile": "/var/run/secrets/restore-check-age/identity"},
        "targets": {"rtoMinutes": 60, "rpoHours": 26},
    }


def test_good_spec_loads() -> None:
    spec = rc.load_spec(_good_spec())
    (db,) = spec.databases
    assert db.connection.dbname == "website"  # defaults to the name
    assert [t.sql for t in db.tables] == ['"public"."members"', '"public"."orders"']
    assert db.min_rows[0][1] == 100
    assert db.freshness[0].max_age_seconds == 26 * 3600
    assert spec.storage.addressing == "virtual"
    assert spec.encryption == rc.Encryption(RECIPIENT, "/var/run/secrets/restore-check-age/identity")
    assert (spec.targets.rto_seconds, spec.targets.rpo_seconds) == (3600, 26 * 3600)


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


def test_object_storage_only_ever_gets_ciphertext() -> None:
    raw = _good_spec()
    del raw["encryption"]
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    assert err.value.problems == [
        "encryption: required with storage type s3 ({recipient, identityFile}): the object store only "
        "ever gets ciphertext"
    ]
    raw["storage"] = {"type": "local", "path": "/tmp/dumps"}
    assert rc.load_spec(raw).encryption is None, "a local run by hand may keep plaintext dumps"


@pytest.mark.parametrize(
    ("encryption", "message"),
    [
        (
            {"recipient": "age1nope", "identityFile": "/i"},
            "encryption.recipient: must be an age X25519 public key",
        ),
        (
            {"recipient": RECIPIENT[:-1] + "q", "identityFile": "/i"},
            "encryption.recipient: " + repr(RECIPIENT[:-1] + "q") + " is not a valid age public key",
        ),
        (
            {"recipient": "AGE-SECRET-KEY-1" + "Q" * 58, "identityFile": "/i"},
            "encryption.recipient: this is an age identity",
        ),
        ({"recipient": RECIPIENT}, "encryption.identityFile: required"),
        (
            {"recipient": RECIPIENT, "identityFile": "/i", "passphrase": "x"},
            "encryption.passphrase: unknown key",
        ),
        ("age1...", "encryption: must be an object"),
    ],
)
def test_bad_encryption_is_named(encryption: object, message: str) -> None:
    raw = _good_spec()
    raw["encryption"] = encryption
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems
    assert not any("AGE-SECRET-KEY-1Q" in p for p in err.value.problems), "a private key is never echoed"


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"rtoMinutes": 0}, "targets.rtoMinutes: must be a whole number of minutes above 0, got 0"),
        ({"rpoHours": -2}, "targets.rpoHours: must be a whole number of hours above 0, got -2"),
        ({"rpoHours": True}, "targets.rpoHours: must be a whole number of hours above 0, got True"),
        ({"rtoMinutes": "1h"}, "targets.rtoMinutes: must be a whole number of minutes above 0, got '1h'"),
        ({"rto": 5}, "targets.rto: unknown key (allowed: rtoMinutes, rpoHours)"),
    ],
)
def test_bad_targets_are_named(targets: dict[str, Any], message: str) -> None:
    raw = _good_spec()
    raw["targets"] = targets
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    assert message in err.value.problems, err.value.problems


def test_an_rpo_needs_a_timestamp_column_in_every_database() -> None:
    raw = _good_spec()
    del raw["databases"][0]["checks"]["freshness"]
    with pytest.raises(rc.SpecError) as err:
        rc.load_spec(raw)
    (problem,) = err.value.problems
    assert problem.startswith("databases[0].checks.freshness: at least one timestamp column is required")
    del raw["targets"]["rpoHours"]
    assert rc.load_spec(raw).targets.rpo_hours is None


# --------------------------------------------------------------------------------------------
# Upload targets: the local directory layout, and boto3 against moto's S3 server on loopback.
# --------------------------------------------------------------------------------------------

WHEN = dt.datetime(2026, 3, 4, 2, 5, 6, tzinfo=dt.UTC)


def test_dump_key_layout() -> None:
    assert (
        rc.dump_key("restore-check/", "website", WHEN)
        == "restore-check/website/website-20260304T020506Z.dump"
    )
    assert rc.dump_key("", "newsletter", WHEN) == "newsletter/newsletter-20260304T020506Z.dump"
    assert rc.dump_key("p/", "website", WHEN, encrypted=True) == "p/website/website-20260304T020506Z.dump.age"


def test_local_target_writes_the_dump_under_its_key_and_reads_it_back(tmp_path: Path) -> None:
    source = tmp_path / "x.dump"
    source.write_bytes(b"PGDMP" + bytes(range(256)))
    root = tmp_path / "store"
    key = rc.dump_key("restore-check/", "website", WHEN)
    target = rc.LocalDirTarget(root)
    stored = target.put(key, source)
    path = root / "restore-check" / "website" / "website-20260304T020506Z.dump"
    assert stored == rc.Stored(uri=f"file://{path.resolve()}", key=key)
    assert path.read_bytes() == source.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .partial left behind
    target.fetch(stored, tmp_path / "back.dump")
    assert (tmp_path / "back.dump").read_bytes() == source.read_bytes()


def test_local_target_refuses_a_key_outside_its_root(tmp_path: Path) -> None:
    source = tmp_path / "x.dump"
    source.write_bytes(b"x")
    with pytest.raises(rc.UploadError, match="escapes"):
        rc.LocalDirTarget(tmp_path / "store").put("../outside.dump", source)


def test_nothing_is_kept_with_storage_none(tmp_path: Path) -> None:
    source = tmp_path / "x.dump"
    source.write_bytes(b"x")
    assert rc.NullTarget().put("k", source) is None


@pytest.mark.parametrize(
    ("size", "part"),
    [
        (0, 64 * 1024**2),
        (10 * 1024**3, 64 * 1024**2),
        (100 * 1024**3, 103 * 1024**2),
        (500 * 1024**3, 512 * 1024**2),
    ],
)
def test_parts_stay_within_scaleways_1000(size: int, part: int) -> None:
    assert rc.part_size(size) == part
    assert -(-size // part) <= rc.MAX_PARTS


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 API in server mode (a real HTTP server, on 127.0.0.1, a free port)."""
    server_module = pytest.importorskip(
        "moto.server", reason="moto[server] not installed (requirements-dev.txt)"
    )
    pytest.importorskip("boto3", reason="boto3 not installed (requirements-dev.txt)")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _admin(endpoint: str) -> Any:
    """The test's own client (the bucket's owner): creates buckets, lists versions, sets policies."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="fr-par",
        aws_access_key_id="admin",
        aws_secret_access_key="x",
    )


def _bucket(endpoint: str) -> str:
    """A new bucket, versioned like the one scw_platform/backup.py declares."""
    name = f"dumps-{uuid.uuid4().hex[:12]}"
    admin = _admin(endpoint)
    admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "fr-par"})
    admin.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _target(endpoint: str, bucket: str, **overrides: Any) -> rc.S3Target:
    settings: dict[str, Any] = {
        "endpoint": endpoint,
        "region": "fr-par",
        "bucket": bucket,
        "access_key": "SCWEXAMPLE",
        "secret_key": "secret",
        "addressing": "path",
        **overrides,
    }
    return rc.S3Target(**settings)


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_s3_upload_then_read_back_the_version_written(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(moto_endpoint)
    key = rc.dump_key("restore-check/", "website", WHEN, encrypted=True)
    data = os.urandom(300_000)
    stored = _target(moto_endpoint, bucket).put(key, _file(tmp_path, "w.dump.age", data))
    assert stored is not None and stored.key == key and stored.version_id
    assert stored.uri == f"s3://{bucket}/{key}?versionId={stored.version_id}"
    head = _admin(moto_endpoint).head_object(Bucket=bucket, Key=key)
    assert head["VersionId"] == stored.version_id and head["ContentLength"] == len(data)
    _target(moto_endpoint, bucket).fetch(stored, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data


def test_two_dumps_under_one_key_are_two_versions_each_readable(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(moto_endpoint)
    target = _target(moto_endpoint, bucket)
    key = rc.dump_key("restore-check/", "website", WHEN, encrypted=True)
    first = target.put(key, _file(tmp_path, "1", b"first dump"))
    second = target.put(key, _file(tmp_path, "2", b"second dump, replacing the first"))
    assert first is not None and second is not None and first.version_id != second.version_id
    versions = _admin(moto_endpoint).list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert {(v["VersionId"], v["IsLatest"]) for v in versions} == {
        (first.version_id, False),
        (second.version_id, True),
    }
    for stored, data in ((first, b"first dump"), (second, b"second dump, replacing the first")):
        target.fetch(stored, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == data, "each version reads back as written"


def test_a_large_dump_goes_up_in_parts(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rc, "MIN_PART_BYTES", 5 * 1024**2)  # S3's smallest part, to keep this quick
    bucket = _bucket(moto_endpoint)
    target = _target(moto_endpoint, bucket)
    calls: list[str] = []
    target.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    data = os.urandom(11 * 1024**2)
    stored = target.put("restore-check/big/big.dump.age", _file(tmp_path, "big", data))
    assert calls.count("UploadPart") == 3 and "CompleteMultipartUpload" in calls
    assert stored is not None and stored.version_id
    target.fetch(stored, tmp_path / "back")
    assert hashlib.sha256((tmp_path / "back").read_bytes()).digest() == hashlib.sha256(data).digest()


#: What the S3 client of the job may call: upload (single or multipart), HEAD, GET. No listing, no
#: deletion, no bucket configuration (the bucket policy allows nothing else: tests/unit/test_backup.py).
JOB_OPERATIONS = {
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "HeadObject",
    "GetObject",
}


def test_the_job_only_writes_and_reads_back(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request a put and a read-back make, recorded by botocore's own event hook."""
    monkeypatch.setattr(rc, "MIN_PART_BYTES", 5 * 1024**2)
    bucket = _bucket(moto_endpoint)
    target = _target(moto_endpoint, bucket)
    calls: list[str] = []
    target.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    for name, size in (("small", 1000), ("large", 6 * 1024**2)):
        stored = target.put(f"restore-check/{name}.dump.age", _file(tmp_path, name, os.urandom(size)))
        assert stored is not None
        target.fetch(stored, tmp_path / "back")
    assert set(calls) <= JOB_OPERATIONS, sorted(set(calls) - JOB_OPERATIONS)
    assert {"PutObject", "UploadPart", "HeadObject", "GetObject"} <= set(calls)


def test_the_script_calls_no_other_s3_operation() -> None:
    """Statically: of every S3 operation botocore knows (and the transfer helpers), the script's
    source calls only upload_file, head_object and download_file, so no code path deletes."""
    boto3 = pytest.importorskip("boto3", reason="boto3 not installed (requirements-dev.txt)")
    from botocore import xform_name

    client = boto3.client("s3", region_name="fr-par", aws_access_key_id="x", aws_secret_access_key="x")
    s3_methods = {xform_name(op) for op in client.meta.service_model.operation_names}
    s3_methods |= {
        "upload_file",
        "upload_fileobj",
        "download_file",
        "download_fileobj",
        "copy",
        "delete_objects",
    }
    assert "delete_object" in s3_methods and "delete_object_version" not in s3_methods  # sanity: real names
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert called & s3_methods == {"upload_file", "head_object", "download_file"}
    # Nor a generic call around the named ones.
    assert not called & {"_make_api_call", "generate_presigned_url", "generate_presigned_post"}


def _deny_deletion(endpoint: str, bucket: str) -> None:
    """A bucket policy refusing deletion of any object version, in the AWS dialect moto reads."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DumpsAreNeverDeleted",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    _admin(endpoint).put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_a_bucket_policy_refusing_deletion_keeps_every_dump_version(
    moto_endpoint: str, tmp_path: Path
) -> None:
    """moto does enforce bucket policies, partly: on object requests it evaluates the policy as an
    IAM policy and answers 403 to an explicit Deny (moto/s3/responses.py, ``_key_response``; a
    DELETE is checked as s3:DeleteObject, with or without a version ID). It ignores ``Principal``
    and has no allow-list semantics, so the component's own Scaleway-dialect document (Allow-only,
    SCW principals) cannot be enforced here: tests/unit/test_backup.py evaluates that one under
    Scaleway's documented rules. What this shows on a real S3 API: with deletion refused, neither
    the current dump nor an older version can be deleted by the job's client, and both stay
    readable; without the policy the same call deletes (so the policy is what refused)."""
    import botocore.exceptions

    refused, control = _bucket(moto_endpoint), _bucket(moto_endpoint)
    _deny_deletion(moto_endpoint, refused)
    key = rc.dump_key("restore-check/", "website", WHEN, encrypted=True)
    for bucket in (refused, control):
        target = _target(moto_endpoint, bucket)
        first = target.put(key, _file(tmp_path, "1", b"monday"))
        second = target.put(key, _file(tmp_path, "2", b"tuesday"))
        assert first is not None and second is not None
        attempts = ({"Key": key}, {"Key": key, "VersionId": first.version_id})
        if bucket == control:
            target.client.delete_object(Bucket=bucket, **attempts[0])  # a delete marker
            continue
        for attempt in attempts:
            with pytest.raises(botocore.exceptions.ClientError) as err:
                target.client.delete_object(Bucket=bucket, **attempt)
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        listing = _admin(moto_endpoint).list_object_versions(Bucket=bucket, Prefix=key)
        assert len(listing["Versions"]) == 2 and "DeleteMarkers" not in listing
        for stored, data in ((first, b"monday"), (second, b"tuesday")):
            target.fetch(stored, tmp_path / "back")
            assert (tmp_path / "back").read_bytes() == data
    markers = _admin(moto_endpoint).list_object_versions(Bucket=control, Prefix=key).get("DeleteMarkers", [])
    assert len(markers) == 1, "without the policy, the same delete goes through"


def test_s3_errors_name_the_call_the_status_and_the_code(moto_endpoint: str, tmp_path: Path) -> None:
    source = _file(tmp_path, "w.dump.age", b"x")
    with pytest.raises(
        rc.UploadError, match=r"^PUT s3://no-such-bucket-here/k answered HTTP 404 \(NoSuchBucket\)"
    ):
        _target(moto_endpoint, "no-such-bucket-here").put("k", source)
    bucket = _bucket(moto_endpoint)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    _admin(moto_endpoint).put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with pytest.raises(rc.UploadError, match=rf"^PUT s3://{bucket}/k answered HTTP 403$"):
        _target(moto_endpoint, bucket).put("k", source)
    missing = rc.Stored(uri=f"s3://{bucket}/gone?versionId=nope", key="gone", version_id="nope")
    with pytest.raises(
        rc.DownloadError, match=rf"^GET s3://{bucket}/gone\?versionId=nope answered HTTP 4\d\d"
    ):
        _target(moto_endpoint, bucket).fetch(missing, tmp_path / "back")


def test_s3_put_to_a_closed_port_is_an_upload_error(tmp_path: Path) -> None:
    pytest.importorskip("boto3", reason="boto3 not installed (requirements-dev.txt)")
    source = _file(tmp_path, "w.dump", b"x")
    with pytest.raises(rc.UploadError, match=r"^PUT s3://b/k failed: Could not connect"):
        _target("http://127.0.0.1:9", "b", max_attempts=1).put("k", source)


# --------------------------------------------------------------------------------------------
# Encryption: age.
# --------------------------------------------------------------------------------------------


def _identity(directory: Path, name: str = "identity") -> tuple[Path, str]:
    """A fresh age identity file (as age-keygen writes it) and its public key."""
    assert AGE is not None
    path = directory / name
    subprocess.run([str(Path(AGE).with_name("age-keygen")), "-o", str(path)], capture_output=True, check=True)
    match = re.search(r"^# public key: (age1\S+)$", path.read_text(), re.MULTILINE)
    assert match
    return path, match.group(1)


@needs_age
def test_age_round_trip_and_a_wrong_identity(tmp_path: Path) -> None:
    assert AGE is not None
    identity, recipient = _identity(tmp_path)
    other, _ = _identity(tmp_path, "other")
    assert rc.age_recipient_problem(recipient) is None, "age-keygen's keys pass the script's check"
    plain = _file(tmp_path, "d.dump", b"PGDMP" + os.urandom(5000))
    sealed = tmp_path / "d.dump.age"
    rc.age_encrypt(Path(AGE), recipient, plain, sealed)
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n") and b"PGDMP" not in sealed.read_bytes()
    rc.age_decrypt(Path(AGE), str(identity), sealed, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == plain.read_bytes()
    with pytest.raises(rc.CryptoError, match="no identity matched"):
        rc.age_decrypt(Path(AGE), str(other), sealed, tmp_path / "again")
    with pytest.raises(rc.CryptoError, match="cannot read the age identity"):
        rc.age_decrypt(Path(AGE), str(tmp_path / "missing"), sealed, tmp_path / "again")
    sealed.write_bytes(sealed.read_bytes()[:-10])  # a truncated download
    with pytest.raises(rc.CryptoError):
        rc.age_decrypt(Path(AGE), str(identity), sealed, tmp_path / "again")


def test_missing_age_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"age not found \(.*/nowhere/age\)"):
        rc.find_age(str(tmp_path / "nowhere" / "age"))


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


def _results() -> list[rc.DatabaseResult]:
    website = rc.DatabaseResult(
        "website", restore_seconds=12.3456, newest_row="orders.created_at", newest_row_age=600.0
    )
    failed = rc.DatabaseResult("newsletter", failed=["corrupt dump: restore failed"])  # no figures
    return [website, failed]


def test_the_recovery_figures_and_targets_are_metrics() -> None:
    body = rc.render_metrics(
        now=1700000000.0,
        failed_checks=1,
        databases=2,
        duration=20.0,
        last_success=None,
        results=_results(),
        targets=rc.Targets(rto_minutes=60, rpo_hours=26),
    )
    assert 'platform_restore_check_restore_duration_seconds{database="website"} 12.346\n' in body
    assert 'platform_restore_check_newest_row_age_seconds{database="website"} 600.0\n' in body
    assert 'database="newsletter"' not in body, "a failed restore has no figures to report"
    assert "platform_restore_check_rto_target_seconds 3600\n" in body
    assert "platform_restore_check_rpo_target_seconds 93600\n" in body
    untimed = rc.render_metrics(now=1.0, failed_checks=0, databases=0, duration=1.0, last_success=1.0)
    assert "target_seconds" not in untimed and "restore_duration" not in untimed


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_metrics_with_figures_pass_promtool_check_metrics() -> None:
    body = rc.render_metrics(
        now=1700000000.0,
        failed_checks=0,
        databases=2,
        duration=3.0,
        last_success=1.0,
        results=_results(),
        targets=rc.Targets(rto_minutes=60, rpo_hours=26),
    )
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("targets", "seconds", "expected"),
    [
        (
            rc.Targets(rto_minutes=1),
            75.0,
            "FAIL x: RTO exceeded: the restore (read back, decryption, pg_restore) "
            "took 1m 15s, over the target of 1m (rtoMinutes)",
        ),
        (rc.Targets(rto_minutes=2), 75.0, "PASS x: restore took 1m 15s, within the RTO of 2m"),
        (rc.Targets(), 75.0, None),
    ],
)
def test_the_rto_check(
    capsys: pytest.CaptureFixture[str], targets: rc.Targets, seconds: float, expected: str | None
) -> None:
    res = rc.DatabaseResult("x", restore_seconds=seconds)
    rc._check_rto(targets, res)
    out = capsys.readouterr().out.strip()
    assert out == (expected or "")


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
    """Run the script as the CronJob does: a copy of the file, as an unprivileged user, with a spec
    file and a password file; Python's standard library only (``-I``), unless ``pythonpath`` gives
    it more (the pinned boto3 for Object Storage, a test's clock)."""
    python = pg.python_for_server_user()
    if python is None:
        pytest.skip("no Python >= 3.11 that the unprivileged 'postgres' user can run")
    script = workspace / "restore_check.py"
    shutil.copyfile(SCRIPT, script)

    def run(
        spec: dict[str, Any],
        *args: str,
        passwords: dict[str, str] | None = None,
        pythonpath: list[Path] | None = None,
        env_extra: dict[str, str] | None = None,
    ) -> Run:
        for name, password in (passwords or {}).items():
            (workspace / f"{name}.password").write_text(password + "\n")
        spec_path = workspace / "spec.json"
        spec_path.write_text(json.dumps(spec))
        (workspace / "work").mkdir(exist_ok=True)
        pg.hand_over(workspace)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYTHON"))}
        env["PG_BINDIR"] = str(pg_server.bindir)
        env.update(env_extra or {})
        isolation = ["-I"]
        if pythonpath:
            # -s: no user site-packages; PYTHONPATH (which -I would ignore) brings in the rest.
            isolation = ["-s"]
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
        argv = [
            python,
            *isolation,
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


# --------------------------------------------------------------------------------------------
# End to end: the read-only user, age, Object Storage (moto), the clock.
# --------------------------------------------------------------------------------------------

#: The image's virtualenv holds these (ops/restore_check/requirements.txt).
S3_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


@pytest.fixture(scope="session")
def s3_site() -> Iterator[Path]:
    """boto3 and its dependencies from this interpreter, copied where the unprivileged user can
    import them (this interpreter's site-packages may sit under a private directory)."""
    pytest.importorskip("boto3", reason="boto3 not installed (requirements-dev.txt)")
    site = pg.private_tempdir("restore-check-site-")
    for name in S3_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, site / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, site / origin.name)
    pg.hand_over(site)
    yield site
    shutil.rmtree(site, ignore_errors=True)


def _to_bucket(spec: dict[str, Any], endpoint: str, bucket: str) -> dict[str, str]:
    """Point ``spec`` at a moto bucket; the environment the run needs for it."""
    spec["storage"] = {
        "type": "s3",
        "endpoint": endpoint,
        "region": "fr-par",
        "bucket": bucket,
        "prefix": "restore-check/",
        "addressing": "path",
    }
    return {"AWS_ACCESS_KEY_ID": "SCWEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def _decrypts_and_restores_independently(
    pg_server: pg.PgServer, source: Source, identity: Path, ciphertext: bytes, sha256: str
) -> None:
    """Independently of the script: the object decrypts with the identity (age's own CLI) to the
    dump that was checked, and that dump restores without losing a row."""
    assert AGE is not None
    plain = identity.with_name("independent.dump")
    subprocess.run(
        [AGE, "--decrypt", "--identity", str(identity), "--output", str(plain)], input=ciphertext, check=True
    )
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == sha256
    copy = f"{source.name}_copy"
    try:
        pg_server.restore(plain, copy)
        assert pg_server.fingerprints(copy) == pg_server.fingerprints(source.name)
    finally:
        pg_server.drop_database(copy)


@postgres
@needs_pg
@needs_age
def test_an_encrypted_dump_goes_through_object_storage_and_restores_on_the_clock(
    pg_server: pg.PgServer,
    source: Source,
    *,
    workspace: Path,
    run_check: Callable[..., Run],
    moto_endpoint: str,
    s3_site: Path,
) -> None:
    identity, recipient = _identity(workspace)
    bucket = _bucket(moto_endpoint)
    spec = _spec_for(source, pg_server, workspace)
    env = _to_bucket(spec, moto_endpoint, bucket)
    spec["encryption"] = {"recipient": recipient, "identityFile": str(identity)}
    spec["targets"] = {"rtoMinutes": 60, "rpoHours": 8}
    metrics = workspace / "restore_check.prom"
    run = run_check(
        spec,
        "--metrics-file",
        str(metrics),
        passwords={source.name: source.password},
        pythonpath=[s3_site],
        env_extra=env,
    )
    assert run.code == 0, run.stdout + run.stderr
    (db,) = run.summary["databases"]

    # One object version, ciphertext only, under the documented key; the summary names that version.
    admin = _admin(moto_endpoint)
    (version,) = admin.list_object_versions(Bucket=bucket)["Versions"]
    key = version["Key"]
    assert re.fullmatch(rf"restore-check/{source.name}/{source.name}-\d{{8}}T\d{{6}}Z\.dump\.age", key)
    assert db["stored"] == f"s3://{bucket}/{key}?versionId={version['VersionId']}" and db["encrypted"] is True
    body = admin.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body.startswith(b"age-encryption.org/v1\n") and b"PGDMP" not in body
    # What was restored is that version, read back.
    assert f"PASS {source.name}: dump read back: {db['stored']}" in run.stdout
    # The clock: both figures, within their targets.
    assert re.search(rf"PASS {source.name}: restore took \d+s, within the RTO of 60m", run.stdout), run.stdout
    assert (
        f'PASS {source.name}: newest restored row ("orders.created_at") is 7h 0m old, within the RPO of 8h'
        in run.stdout
    )
    assert 0 < db["restoreSeconds"] < 600
    assert db["newestRow"] == "orders.created_at" and 7 * 3600 <= db["newestRowAgeSeconds"] < 7 * 3600 + 600
    text = metrics.read_text()
    assert re.search(
        rf'^platform_restore_check_restore_duration_seconds{{database="{source.name}"}} \S+$', text, re.M
    )
    assert re.search(
        rf'^platform_restore_check_newest_row_age_seconds{{database="{source.name}"}} \S+$', text, re.M
    )
    assert "platform_restore_check_rto_target_seconds 3600\n" in text
    assert "platform_restore_check_rpo_target_seconds 28800\n" in text

    _decrypts_and_restores_independently(pg_server, source, identity, body, db["dumpSha256"])


@postgres
@needs_pg
@needs_age
def test_a_dump_that_does_not_decrypt_fails_naming_the_check(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    _, recipient = _identity(workspace, "the-configured-key")
    wrong, _ = _identity(workspace, "some-other-identity")
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    spec["encryption"] = {"recipient": recipient, "identityFile": str(wrong)}
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    (fail,) = run.fails
    (stored,) = (run.store / "restore-check" / source.name).iterdir()
    assert fail == (
        f"FAIL {source.name}: decryption failed: file://{stored} did not decrypt with the identity "
        f"{wrong} (no identity matched any of the recipients)"
    )
    assert run.summary["failures"] == [fail.removeprefix("FAIL ")]
    # The store only ever got ciphertext, and a failed decryption does not throw it away.
    assert stored.name.endswith(".dump.age") and stored.read_bytes().startswith(b"age-encryption.org/v1\n")


@postgres
@needs_pg
@needs_age
def test_an_encrypted_dump_checks_by_hand_with_from_dumps(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    """The runbook's path: download a .dump.age, check it with --from-dumps and the identity."""
    assert AGE is not None
    identity, recipient = _identity(workspace)
    dumps = workspace / "dumps"
    dumps.mkdir()
    plain = dumps / "plain.dump"
    pg_server.dump(source.name, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    subprocess.run(
        [AGE, "-r", recipient, "-o", str(dumps / f"{source.name}.dump.age"), str(plain)], check=True
    )
    plain.unlink()
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    spec["encryption"] = {"recipient": recipient, "identityFile": str(identity)}
    run = run_check(spec, "--from-dumps", str(dumps))
    assert run.code == 0, run.stdout + run.stderr
    assert f'PASS {source.name}: table "orders" exists' in run.stdout
    (db,) = run.summary["databases"]
    assert db["encrypted"] is True and db["dumpSha256"] == digest


@postgres
@needs_pg
def test_the_dump_runs_as_a_read_only_user(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    """What the platform's reader gets (SELECT, schema usage): enough for pg_dump, nothing more."""
    reader, password = f"{source.name}_reader", f"{source.password}-reader"
    pg_server.create_role(reader, password)
    pg_server.psql(
        f'grant usage on schema public, newsletter to "{reader}";'
        f'grant select on all tables in schema public, newsletter to "{reader}";'
        f'grant select on all sequences in schema public, newsletter to "{reader}";',
        source.name,
    )
    refused = subprocess.run(
        [str(pg_server.bindir / "psql"), "-X", "-c", "insert into empty_log values (1, now())"],
        env=pg_server.env(source.name, user=reader, password=password),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "permission denied for table empty_log" in refused.stderr
    spec = _spec_for(source, pg_server, workspace)
    spec["databases"][0]["connection"]["user"] = reader
    run = run_check(spec, passwords={source.name: password})
    assert run.code == 0, run.stdout + run.stderr
    assert f'PASS {source.name}: table "orders" has 120 rows (>= 100)' in run.stdout

    # A table the reader may not read is a failed dump naming it, not a silently partial backup.
    pg_server.psql(f'set role "{source.owner}"; create table payouts (id int)', source.name)
    run = run_check(spec, passwords={source.name: password})
    assert run.code == rc.EXIT_CHECK_FAILED
    (fail,) = run.fails
    assert (
        fail.startswith(f"FAIL {source.name}: pg_dump failed: ")
        and "permission denied for table payouts" in fail
    )


@postgres
@needs_pg
def test_a_newest_row_older_than_the_rpo_fails_naming_the_check(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    freshness = [
        {"table": "orders", "column": "created_at", "maxAge": "26h"},  # newest 7h old
        {"table": "members", "column": "joined_at", "maxAge": "7d"},  # newest 3d 1h old
    ]
    spec = _spec_for(source, pg_server, workspace, freshness=freshness)
    spec["targets"] = {"rpoHours": 6}
    run = run_check(spec, passwords={source.name: source.password})
    assert run.code == rc.EXIT_CHECK_FAILED
    # The newest over the database's freshness columns counts: orders, not members.
    assert run.fails == [
        f'FAIL {source.name}: RPO exceeded: the newest restored row ("orders.created_at") is 7h 0m old, '
        "over the target of 6h (rpoHours)"
    ]
    (db,) = run.summary["databases"]
    assert db["newestRow"] == "orders.created_at"


#: A test clock for the script: ``time.monotonic`` (what durations are measured with) runs 3600
#: times fast, one real second an hour; wall-clock time (``time.time``) is untouched.
FAST_CLOCK = '''"""A test's clock (tests/integration/test_restore_check.py)."""
import time

_real = time.monotonic
_origin = _real()
time.monotonic = lambda: _origin + (_real() - _origin) * 3600
'''


@postgres
@needs_pg
def test_a_restore_slower_than_the_rto_fails_naming_the_check(
    pg_server: pg.PgServer, source: Source, workspace: Path, run_check: Callable[..., Run]
) -> None:
    clock = workspace / "clock"
    clock.mkdir()
    (clock / "sitecustomize.py").write_text(FAST_CLOCK)
    spec = _spec_for(source, pg_server, workspace, tables=["orders"])
    spec["targets"] = {"rtoMinutes": 1}
    run = run_check(spec, passwords={source.name: source.password}, pythonpath=[clock])
    assert run.code == rc.EXIT_CHECK_FAILED, run.stdout + run.stderr
    (fail,) = run.fails
    assert re.fullmatch(
        rf"FAIL {source.name}: RTO exceeded: the restore \(read back, decryption, pg_restore\) took "
        r"\S+( \S+)?, over the target of 1m \(rtoMinutes\)",
        fail,
    ), fail
    (db,) = run.summary["databases"]
    assert db["restoreSeconds"] > 60
    assert f'PASS {source.name}: table "orders" exists' in run.stdout, "the other checks still run"

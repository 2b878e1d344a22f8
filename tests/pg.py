"""A throwaway PostgreSQL server for tests, from Debian's ``postgresql`` package.

The server runs as an unprivileged user (``initdb`` refuses root: under root the commands run as
the ``postgres`` system user the package creates), listens on a unix socket in a private
temporary directory and nowhere else, and requires a password (SCRAM) from every client, so
the tests exercise the same password handling as production.

``.ci/run`` installs the package; without it :func:`skip_reason` says why the tests skip.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore")
RUN_AS = "postgres"  # the system user Debian's postgresql-common creates

# The same fingerprint as ops/restore_check's inventory, written out independently: rows as
# text, sorted byte-wise (COLLATE "C") so the servers' locales cannot change the order.
_FINGERPRINT = (
    "select count(*), "
    "md5(coalesce(string_agg(t::text, E'\\n' order by t::text collate \"C\"), '')) "
    "from {table} t"
)


def find_bindir() -> Path | None:
    """``$PG_BINDIR`` or the newest ``/usr/lib/postgresql/<ver>/bin`` holding the server."""
    candidates = [Path(os.environ["PG_BINDIR"])] if os.environ.get("PG_BINDIR") else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in SERVER_TOOLS):
            return directory
    return None


def running_as_root() -> bool:
    return os.geteuid() == 0


def skip_reason() -> str | None:
    """Why PostgreSQL-backed tests cannot run here, or None."""
    if find_bindir() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
            "/usr/lib/postgresql/*/bin or $PG_BINDIR: install Debian's postgresql package "
            "(.ci/run does)"
        )
    if running_as_root():
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no '{RUN_AS}' system user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser (util-linux) is missing"
    return None


def as_server_user(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as the unprivileged user when we are root."""
    return ["runuser", "-u", RUN_AS, "--", *argv] if running_as_root() else list(argv)


def hand_over(path: Path) -> None:
    """Give ``path`` (recursively) to the unprivileged user so it can read and write there."""
    if not running_as_root():
        return
    entry = pwd.getpwnam(RUN_AS)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def private_tempdir(prefix: str) -> Path:
    """A directory the unprivileged user owns (pytest's tmp_path is 0700 root under root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    hand_over(path)
    return path


@cache
def python_for_server_user() -> str | None:
    """A Python >= 3.11 the unprivileged user can run (root's pyenv under /root is not
    reachable by others): Debian's /usr/bin/python3 first, then this interpreter."""
    if not running_as_root():
        return sys.executable
    for candidate in ("/usr/bin/python3.11", "/usr/bin/python3", os.path.realpath(sys.executable)):
        if not os.access(candidate, os.X_OK):
            continue
        probe = subprocess.run(
            as_server_user([candidate, "-I", "-c", "import sys; assert sys.version_info >= (3, 11)"]),
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


class PgServer:
    """One PostgreSQL cluster; databases and roles are created per test."""

    superuser = "postgres"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = private_tempdir("pgtest-")
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.password = secrets.token_urlsafe(16)
        self.log = self.base / "server.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        hand_over(self.base)
        self._server_cmd(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        )
        pwfile.unlink()
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        self._server_cmd("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._server_cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _server_cmd(self, tool: str, *args: str, check: bool = True) -> None:
        proc = subprocess.run(
            as_server_user([str(self.bindir / tool), *args]), capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr or proc.stdout}\n{log}")

    # -- clients -----------------------------------------------------------------------------

    def env(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=str(self.socket_dir),
            PGDATABASE=dbname,
            PGUSER=user or self.superuser,
            PGPASSWORD=password if password is not None else self.password,
            PGTZ="UTC",
            PGDATESTYLE="ISO, MDY",
        )
        return env

    def psql(self, sql: str, dbname: str = "postgres") -> list[list[str]]:
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"],
            input=sql,
            env=self.env(dbname),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr}")
        return [line.split("\t") for line in proc.stdout.splitlines() if line]

    def create_role(self, name: str, password: str) -> None:
        self.psql(f"create role \"{name}\" login password '{password}'")

    def create_database(self, name: str, owner: str | None = None) -> None:
        self.psql(f'create database "{name}"' + (f' owner "{owner}"' if owner else ""))

    def drop_database(self, name: str) -> None:
        self.psql(f'drop database if exists "{name}" with (force)')

    def fingerprints(self, dbname: str) -> dict[str, dict[str, object]]:
        """``schema.table`` -> row count and md5 of the sorted rows, for every user table."""
        tables = self.psql(
            "select schemaname || '.' || tablename from pg_tables "
            "where schemaname not in ('pg_catalog', 'information_schema') order by 1",
            dbname,
        )
        out: dict[str, dict[str, object]] = {}
        for (qualified,) in tables:
            schema, table = qualified.split(".", 1)
            rows, digest = self.psql(_FINGERPRINT.format(table=f'"{schema}"."{table}"'), dbname)[0]
            out[qualified] = {"rows": int(rows), "md5": digest}
        return out

    def dump(self, dbname: str, path: Path) -> None:
        proc = subprocess.run(
            [str(self.bindir / "pg_dump"), "-Fc", "--file", str(path)],
            env=self.env(dbname),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {proc.stderr}")

    def restore(self, dump: Path, dbname: str) -> None:
        """Restore ``dump`` into a new database, independently of the script under test."""
        self.create_database(dbname)
        proc = subprocess.run(
            [str(self.bindir / "pg_restore"), "--exit-on-error", "--no-owner", "--dbname", dbname, str(dump)],
            env=self.env(dbname),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_restore failed: {proc.stderr}")


def run_as_server_user(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_server_user(argv), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )

"""The privilege model of an app database, proved on a real PostgreSQL (Debian's, via tests.pg).

Each app database gets its three users as scw_platform.db_grants emulates Scaleway's permission
levels: the runtime user ``readwrite``, the migrator ``all``, the reader ``readonly`` (the module
docstring there says what Scaleway documents and what is assumed). Every client below connects
as that user with its password over the server's socket, as the pods, the migration hook and the
restore check do; the server's superuser stands in only for Scaleway's control plane.

Denials are asserted with PostgreSQL's own message, so a statement failing for another reason (a
typo, a missing table) fails the test instead of passing it; each positive check reads back what
it wrote. The tests marked ``postgres`` skip with a reason when the server binaries are absent,
and fail instead under CI (CI set), where they must run.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scw_platform import db_grants
from tests import pg

_SKIP = pg.skip_reason()
_CI = bool(os.environ.get("CI"))
postgres = pytest.mark.postgres
# Under CI the test runs and the server fixture fails with the reason instead (as check-jsonschema's
# and checkov's tests do): a CI job without PostgreSQL must not pass by skipping the proof.
needs_pg = pytest.mark.skipif(_SKIP is not None and not _CI, reason=_SKIP or "")


@pytest.fixture(scope="module")
def pg_server() -> Iterator[pg.PgServer]:
    if _SKIP is not None:
        if _CI:
            pytest.fail(_SKIP)
        pytest.skip(_SKIP)
    bindir = pg.find_bindir()
    assert bindir is not None
    server = pg.PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Clients: psql as a given user, with its password.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    ok: bool
    rows: list[list[str]]
    stderr: str


@dataclass(frozen=True)
class User:
    name: str
    password: str


def run_sql(server: pg.PgServer, user: User | None, dbname: str, sql: str) -> Result:
    """Run ``sql`` as ``user`` (None: the superuser) in ``dbname``; stop at the first error."""
    env = server.env(dbname, user.name, user.password) if user else server.env(dbname)
    proc = subprocess.run(
        [str(server.bindir / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"],
        input=sql,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line]
    return Result(proc.returncode == 0, rows, proc.stderr)


@dataclass
class App:
    """One app database and its three users, as scw_platform.database declares them."""

    server: pg.PgServer
    database: str
    runtime: User
    migrator: User
    reader: User
    users: dict[str, User] = field(init=False)

    def __post_init__(self) -> None:
        self.users = {"runtime": self.runtime, "migrator": self.migrator, "reader": self.reader}

    def sql(self, who: str, sql: str, dbname: str | None = None) -> Result:
        return run_sql(self.server, self.users[who], dbname or self.database, sql)

    def ok(self, who: str, sql: str, dbname: str | None = None) -> list[list[str]]:
        result = self.sql(who, sql, dbname)
        assert result.ok, f"{who} ({self.users[who].name}) failed: {result.stderr}"
        return result.rows

    def denied(self, who: str, sql: str, message: str, dbname: str | None = None) -> None:
        """``sql`` fails for ``who`` with exactly the PostgreSQL error ``message``."""
        result = self.sql(who, sql, dbname)
        assert not result.ok, f"{who} ({self.users[who].name}) was allowed: {sql}"
        assert message in result.stderr, result.stderr

    def admin(self, sql: str) -> list[list[str]]:
        result = run_sql(self.server, None, self.database, sql)
        assert result.ok, result.stderr
        return result.rows

    def grants_sql(self) -> str:
        return db_grants.migrator_grants_sql(
            self.database, self.runtime.name, self.migrator.name, self.reader.name
        )

    def run_grants(self) -> None:
        self.ok("migrator", self.grants_sql())


_ids = itertools.count(1)
LEVELS = {"runtime": "readwrite", "migrator": "all", "reader": "readonly"}


def _create_app(server: pg.PgServer, prefix: str) -> App:
    n = next(_ids)
    user = f"{prefix}{n}"
    app = App(
        server,
        database=f"{prefix}{n}_db",
        runtime=User(user, f"rt-{n}-{prefix}"),
        migrator=User(f"{user}_migrator", f"mig-{n}-{prefix}"),
        reader=User(f"{user}_reader", f"rd-{n}-{prefix}"),
    )
    for role in app.users.values():
        server.create_role(role.name, role.password)
    server.create_database(app.database)
    for who, level in LEVELS.items():
        app.admin(db_grants.scaleway_permission_sql(level, app.database, app.users[who].name))
    return app


@pytest.fixture
def make_app(pg_server: pg.PgServer) -> Iterator[Callable[[str], App]]:
    made: list[App] = []

    def make(prefix: str) -> App:
        made.append(_create_app(pg_server, prefix))
        return made[-1]

    yield make
    for app in made:
        pg_server.drop_database(app.database)


@pytest.fixture
def shop(make_app: Callable[[str], App]) -> App:
    return make_app("shop")


@pytest.fixture
def blog(make_app: Callable[[str], App]) -> App:
    return make_app("blog")


#: PostgreSQL's denials on the migration's objects.
NO_MEMBERS = "permission denied for table members"
NO_MEMBERS_SEQ = "permission denied for sequence members_id_seq"

MIGRATION = """
create table members (id serial primary key, email text not null unique, nickname text);
create table orders (id bigint generated always as identity primary key,
                     member_id int not null references members(id), total numeric(10, 2) not null);
"""


def _table_exists(app: App, table: str) -> bool:
    return app.admin(f"select to_regclass('public.{table}') is not null")[0] == ["t"]


# --------------------------------------------------------------------------------------------
# The runtime user reads and writes rows, never the schema.
# --------------------------------------------------------------------------------------------


@postgres
@needs_pg
def test_runtime_cannot_create_alter_or_drop_tables(shop: App) -> None:
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    shop.ok("runtime", "select count(*) from members")  # it may use the table: denials below are DDL's

    shop.denied("runtime", "create table public.mine (id int)", "permission denied for schema public")
    shop.denied("runtime", "create table mine (id int)", "permission denied for schema public")
    shop.denied("runtime", "create schema mine", "permission denied for database " + shop.database)
    shop.denied("runtime", "alter table members add column age int", "must be owner of table members")
    shop.denied("runtime", "alter table members rename to people", "must be owner of table members")
    shop.denied("runtime", "create index on members (nickname)", "must be owner of table members")
    shop.denied("runtime", "drop table orders", "must be owner of table orders")
    shop.denied("runtime", "truncate members cascade", NO_MEMBERS)


@postgres
@needs_pg
def test_migrator_can_create_alter_and_drop(shop: App) -> None:
    shop.ok("migrator", MIGRATION)
    shop.ok("migrator", "alter table members add column age int; create index on members (nickname);")
    shop.ok("migrator", "alter table orders rename to purchases; drop table purchases;")
    shop.ok("migrator", "create schema reporting; create table reporting.daily (day date primary key);")

    assert _table_exists(shop, "members") and not _table_exists(shop, "purchases")
    assert shop.admin(
        "select attname from pg_attribute where attrelid = 'members'::regclass and attname = 'age'"
    ) == [["age"]]
    owners = shop.admin(
        "select c.relname, pg_get_userbyid(c.relowner) from pg_class c "
        "where c.relname in ('members', 'daily') order by 1"
    )
    assert owners == [["daily", shop.migrator.name], ["members", shop.migrator.name]]


# --------------------------------------------------------------------------------------------
# After the migrator's grants, its new tables work for the runtime user and the reader.
# --------------------------------------------------------------------------------------------


@postgres
@needs_pg
def test_without_the_grants_new_tables_are_unusable(shop: App) -> None:
    """The control: Scaleway's levels set no default privileges (the documented switch to Custom),
    so without migrator_grants_sql the runtime user and the reader cannot touch a new table."""
    shop.ok("migrator", MIGRATION)
    shop.denied("runtime", "select count(*) from members", NO_MEMBERS)
    shop.denied("runtime", "insert into members (email) values ('a@x')", NO_MEMBERS)
    shop.denied("reader", "select count(*) from members", NO_MEMBERS)
    shop.denied("runtime", "select nextval('members_id_seq')", NO_MEMBERS_SEQ)


@postgres
@needs_pg
def test_runtime_reads_and_writes_the_new_tables_and_their_sequences(shop: App) -> None:
    shop.run_grants()
    shop.ok("migrator", MIGRATION)

    ids = shop.ok("runtime", "insert into members (email) values ('a@x'), ('b@x') returning id")
    assert ids == [["1"], ["2"]]  # the serial column's sequence: USAGE on members_id_seq
    shop.ok("runtime", "insert into orders (member_id, total) values (1, 9.50), (2, 3.25)")  # identity
    shop.ok("runtime", "update members set nickname = 'bee' where email = 'b@x'")
    shop.ok("runtime", "delete from orders where member_id = 1")
    assert shop.ok(
        "runtime", "select m.email, m.nickname, o.total from members m join orders o on o.member_id = m.id"
    ) == [["b@x", "bee", "3.25"]]
    assert shop.ok("runtime", "select nextval('members_id_seq'), setval('members_id_seq', 10)") == [
        ["3", "10"]
    ]


@postgres
@needs_pg
def test_reader_reads_everything_and_writes_nothing(shop: App, tmp_path: Path) -> None:
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    shop.ok(
        "runtime",
        "insert into members (email) values ('a@x'); insert into orders (member_id, total) values (1, 2.00)",
    )

    assert shop.ok("reader", "select email from members") == [["a@x"]]
    assert shop.ok("reader", "select count(*) from orders") == [["1"]]
    assert shop.ok("reader", "select last_value from members_id_seq") == [["1"]]
    for sql, table in [
        ("insert into members (id, email) values (100, 'r@x')", "members"),  # no sequence involved
        ("update members set nickname = 'r'", "members"),
        ("delete from orders", "orders"),
        ("truncate orders", "orders"),
    ]:
        shop.denied("reader", sql, f"permission denied for table {table}")
    shop.denied("reader", "select nextval('members_id_seq')", NO_MEMBERS_SEQ)
    shop.denied("reader", "create table mine (id int)", "permission denied for schema public")
    shop.denied("reader", "drop table orders", "must be owner of table orders")

    # What the restore check does with it: a full dump, sequences included.
    dump = tmp_path / "shop.dump"
    reader_env = shop.server.env(shop.database, shop.reader.name, shop.reader.password)
    proc = subprocess.run(
        [str(shop.server.bindir / "pg_dump"), "-Fc", "--file", str(dump)],
        env=reader_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# The grants are idempotent and repair drift.
# --------------------------------------------------------------------------------------------

_ACLS = """
select c.relname, c.relacl::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'S') order by 1;
"""
_DEFAULT_ACLS = """
select pg_get_userbyid(defaclrole), defaclnamespace::regnamespace, defaclobjtype, defaclacl::text
from pg_default_acl order by 1, 2, 3;
"""


@postgres
@needs_pg
def test_rerunning_the_grants_changes_nothing(shop: App) -> None:
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    m, rt, rd = shop.migrator.name, shop.runtime.name, shop.reader.name
    assert shop.admin(_DEFAULT_ACLS) == [
        [m, "public", "S", f"{{{rt}=rwU/{m},{rd}=r/{m}}}"],  # on top of the owner's own
        [m, "public", "r", f"{{{rt}=arwd/{m},{rd}=r/{m}}}"],
    ]
    before = shop.admin(_ACLS + _DEFAULT_ACLS)
    for _ in range(2):
        shop.run_grants()
    assert shop.ok("runtime", "insert into members (email) values ('a@x') returning id") == [["1"]]
    assert shop.admin(_ACLS + _DEFAULT_ACLS) == before


@postgres
@needs_pg
def test_rerunning_the_grants_repairs_drift(shop: App) -> None:
    # A table from before the hook existed, and a grant someone revoked by hand.
    shop.ok("migrator", "create table legacy (id serial primary key, note text)")
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    shop.ok("migrator", f"revoke insert on members from {shop.runtime.name}")
    shop.denied("runtime", "insert into members (email) values ('a@x')", NO_MEMBERS)

    shop.run_grants()
    shop.ok("runtime", "insert into members (email) values ('a@x'); insert into legacy (note) values ('n')")
    assert shop.ok("reader", "select note from legacy") == [["n"]]
    assert shop.ok("reader", "select last_value from legacy_id_seq") == [["1"]]  # what pg_dump reads


@postgres
@needs_pg
def test_the_grants_refuse_another_database_and_apply_nothing(shop: App) -> None:
    result = run_sql(shop.server, None, "postgres", shop.grants_sql())
    assert not result.ok
    assert f"connected to database postgres, expected {shop.database}" in result.stderr
    assert run_sql(shop.server, None, "postgres", "select count(*) from pg_default_acl").rows == [["0"]]


# --------------------------------------------------------------------------------------------
# One app's users reach nothing of another app's database.
# --------------------------------------------------------------------------------------------


@postgres
@needs_pg
@pytest.mark.parametrize("who", ["runtime", "migrator", "reader"])
def test_another_apps_users_cannot_connect(shop: App, blog: App, who: str) -> None:
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    assert shop.ok(who, "select current_user") == [[shop.users[who].name]]  # each connects to its own
    blog.denied(who, "select 1", f'permission denied for database "{shop.database}"', dbname=shop.database)


@postgres
@needs_pg
@pytest.mark.parametrize("who", ["runtime", "migrator", "reader"])
def test_another_apps_users_cannot_read_even_if_public_keeps_connect(shop: App, blog: App, who: str) -> None:
    """Should Scaleway leave PUBLIC its CONNECT (undocumented), table privileges still isolate."""
    shop.run_grants()
    shop.ok("migrator", MIGRATION)
    shop.ok("runtime", "insert into members (email) values ('secret@x')")
    shop.admin(f"grant connect on database {shop.database} to public")

    db = shop.database
    assert blog.ok(who, "select current_database()", dbname=db) == [[db]]  # connected, now:
    blog.denied(who, "select email from members", NO_MEMBERS, dbname=db)
    blog.denied(who, "select last_value from members_id_seq", NO_MEMBERS_SEQ, dbname=db)
    blog.denied(who, "create table planted (id int)", "permission denied for schema public", dbname=db)
    blog.denied(who, "create schema planted", f"permission denied for database {db}", dbname=db)


# --------------------------------------------------------------------------------------------
# The SQL text itself: names, quoting, levels.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", "Shop", "1shop", "shop-db", "shop db", 'shop"; drop table x; --', "a" * 64, "é", None, 3]
)
def test_names_that_are_not_identifiers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^migrator user: .* is not a PostgreSQL identifier"):
        db_grants.migrator_grants_sql("shop", "shop", bad, "shop_reader")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^database: .* is not a PostgreSQL identifier"):
        db_grants.scaleway_permission_sql("readwrite", bad, "shop")  # type: ignore[arg-type]


def test_the_three_users_must_differ() -> None:
    with pytest.raises(ValueError, match="must differ"):
        db_grants.migrator_grants_sql("shop", "shop", "shop", "shop_reader")


@pytest.mark.parametrize("level", ["custom", "none", "READWRITE", "write", ""])
def test_unknown_levels_are_refused(level: str) -> None:
    with pytest.raises(ValueError, match=r"^level: .* is not one of readonly, readwrite, all$"):
        db_grants.scaleway_permission_sql(level, "shop", "shop")


def test_quote_ident_refuses_what_postgresql_would_change() -> None:
    assert db_grants.quote_ident('we"ird') == '"we""ird"'
    for bad, reason in [("", "empty"), ("a\x00b", "NUL"), ("é" * 32, "63 bytes")]:
        with pytest.raises(ValueError, match=reason):
            db_grants.quote_ident(bad)


@postgres
@needs_pg
def test_quoting_round_trips_through_the_server(pg_server: pg.PgServer) -> None:
    for text in ["plain", "it's", "back\\slash", "both '\\' \"", "üñí"]:
        rows = run_sql(pg_server, None, "postgres", f"select {db_grants.quote_literal(text)}").rows
        assert rows == [[text]], text
    name = 'Odd "Name"; drop'
    sql = (
        f"create table {db_grants.quote_ident(name)} (); "
        f"select relname from pg_class where relname = {db_grants.quote_literal(name)}; "
        f"drop table {db_grants.quote_ident(name)};"
    )
    assert run_sql(pg_server, None, "postgres", sql).rows == [[name]]


def test_every_level_revokes_public_connect_and_only_all_creates() -> None:
    for level in db_grants.PERMISSION_LEVELS:
        sql = db_grants.scaleway_permission_sql(level, "shop", "shop")
        assert 'REVOKE CONNECT ON DATABASE "shop" FROM PUBLIC;' in sql
        privileges = " ".join(re.findall(r"^GRANT (.*?) ON ", sql, re.MULTILINE))
        assert bool(re.search(r"\b(ALL|CREATE)\b", privileges)) is (level == "all"), sql

"""SQL for an app database's privilege model: the migrator's grants, and Scaleway's permission levels.

Each app database has three users (scw_platform.database): the runtime ``<user>`` (Scaleway
permission ``readwrite``, the app's pods), the migrator ``<user>_migrator`` (``all`` on that
database only, the migration hook) and the reader ``<user>_reader`` (``readonly``, the restore
check's dumps). Everything here is a pure function returning SQL text; nothing connects anywhere.

:func:`migrator_grants_sql` is what the migration hook runs, as the migrator and connected to the
app's database, before the app's own migrate command: default privileges so that every table and
sequence the migrator creates in schema ``public`` is usable by the runtime user and readable by
the reader, plus the same grants on what already exists so that a re-run repairs drift. Every
statement is idempotent (granting a privilege twice is a no-op; ``ALTER DEFAULT PRIVILEGES``
replaces the same ``pg_default_acl`` row).

:func:`scaleway_permission_sql` emulates Scaleway's permission levels on a plain PostgreSQL, for
the tests (tests/integration/test_db_privileges.py); production never runs it.

What Scaleway documents
-----------------------
"Advanced user permissions",
https://www.scaleway.com/en/docs/managed-databases-for-postgresql-and-mysql/api-cli/advanced-user-permissions/
lists the per-database permission types: *None* (no access to the database), *Read* ("read tables
and fields"), *Read/Write* ("read/write content") and *All* ("create schemas and tables in
addition to Read/Write rights"); and says that Scaleway does **not** apply a user's permission to
objects created afterwards (new tables, an installed extension): the permission switches to
*Custom*, the user keeps the rights it had on the old objects and has none on the new ones. The
how-to page says the same ("Permissions are applied on existing items at the moment the
configuration is set, and not applied to any items created afterward"):
https://www.scaleway.com/en/docs/managed-databases-for-postgresql-and-mysql/how-to/manage-permissions/
The API names the levels ``none``, ``readonly``, ``readwrite``, ``all`` and ``custom``
(https://www.scaleway.com/en/developers/api/managed-database-postgre-mysql/ , "Privileges").

What is assumed here (not documented by Scaleway; Scaleway does not publish its GRANT statements)
---------------------------------------------------------------------------------------------------
* Every level is applied to schema ``public`` only, and to the tables and sequences existing at
  the time. **No level sets default privileges**: that is the documented "switches to Custom"
  behaviour, and it is why :func:`migrator_grants_sql` exists.
* ``readonly`` = CONNECT on the database, USAGE on schema public, SELECT on all tables and SELECT
  on all sequences (the sequences: assumed, pg_dump needs SELECT to read their values).
* ``readwrite`` = ``readonly`` + INSERT, UPDATE, DELETE on all tables + USAGE, UPDATE on all
  sequences. No TRUNCATE, REFERENCES or TRIGGER, and no CREATE on the database or the schema: it
  cannot create tables, and cannot ALTER or DROP tables it does not own (which is all of them).
* ``all`` = ALL PRIVILEGES on the database (CREATE, i.e. schemas, CONNECT, TEMPORARY), ALL on
  schema public (USAGE, CREATE) and ALL on the existing tables and sequences. It is **not** made
  the owner of the database or of schema public: it can ALTER and DROP the objects it creates
  (it owns them) but not objects another role created. Whether Scaleway makes such a user an
  owner, or grants WITH GRANT OPTION, is unknown; nothing here relies on either.
* PUBLIC's CONNECT on the database: Scaleway's documentation does not say whether it is revoked.
  "None: No access to the database" suggests a user without a permission cannot connect, but not
  how (REVOKE CONNECT ... FROM PUBLIC, or pg_hba.conf). The platform **assumes** it is revoked
  and the emulation does ``REVOKE CONNECT ON DATABASE <db> FROM PUBLIC``; the tests also show
  that, should PUBLIC keep CONNECT, another app's users still cannot read any table.
  PUBLIC's TEMPORARY on the database is left as PostgreSQL creates it (granted).
* CREATE on schema public: PostgreSQL 15 and later no longer grant it to PUBLIC (schema public is
  owned by ``pg_database_owner``). On PostgreSQL 14 PUBLIC still has it unless revoked, and
  whether Scaleway revokes it there is unknown: if not, a ``readwrite`` user could create tables
  on a 14 instance. The emulation revokes it explicitly (a no-op on 15+).
"""

from __future__ import annotations

import re
from typing import Literal

#: The names scw_platform.settings.PgIdentifier accepts (lower case, unquoted PostgreSQL names of
#: at most 63 bytes): anything the config accepts is accepted here, nothing else.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: PostgreSQL silently truncates longer names (NAMEDATALEN - 1), which would name another role.
_MAX_IDENTIFIER_BYTES = 63

SCHEMA = "public"

PermissionLevel = Literal["readonly", "readwrite", "all"]
PERMISSION_LEVELS: tuple[PermissionLevel, ...] = ("readonly", "readwrite", "all")

#: What the runtime user gets on tables and sequences (Scaleway's ``readwrite``).
RUNTIME_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
RUNTIME_SEQUENCE_PRIVILEGES = "USAGE, SELECT, UPDATE"
#: What the reader gets (Scaleway's ``readonly``).
READER_TABLE_PRIVILEGES = "SELECT"
READER_SEQUENCE_PRIVILEGES = "SELECT"


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL quoted identifier: always double-quoted, inner quotes doubled.

    Refuses what PostgreSQL would not keep as given: the empty name, NUL, and names over 63 bytes
    (the server would truncate them silently and so address a different object)."""
    if not name:
        raise ValueError("an identifier cannot be empty")
    if "\x00" in name:
        raise ValueError(f"{name!r}: an identifier cannot contain NUL")
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{name!r}: longer than {_MAX_IDENTIFIER_BYTES} bytes, PostgreSQL would truncate it")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a PostgreSQL string constant, whatever standard_conforming_strings says."""
    if "\x00" in text:
        raise ValueError(f"{text!r}: a string constant cannot contain NUL")
    body = text.replace("'", "''")
    if "\\" in body:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def validate_identifier(name: object, what: str) -> str:
    """``name`` if it is a PostgreSQL name the platform allows (scw_platform.settings.PgIdentifier),
    else ValueError naming ``what``."""
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise ValueError(
            f"{what}: {name!r} is not a PostgreSQL identifier (lower-case letters, digits and "
            "underscores, not starting with a digit, 63 characters at most)"
        )
    return name


def _database_guard(database: str) -> str:
    """Stop (error, nothing applied) unless connected to ``database``: grants in the wrong database
    (e.g. Scaleway's default ``rdb``) would succeed silently and fix nothing."""
    expected = quote_literal(database)
    return (
        "DO $guard$ BEGIN\n"
        f"  IF current_database() <> {expected} THEN\n"
        f"    RAISE EXCEPTION 'connected to database %, expected %', current_database(), {expected};\n"
        "  END IF;\n"
        "END $guard$;"
    )


def migrator_grants_sql(database: str, runtime: str, migrator: str, reader: str) -> str:
    """The statements the migration hook runs as ``migrator``, connected to ``database``.

    Tables and sequences ``migrator`` creates in schema public from now on are usable by
    ``runtime`` (SELECT, INSERT, UPDATE, DELETE; sequences USAGE, SELECT, UPDATE) and readable by
    ``reader`` (SELECT, sequences too, for pg_dump); the same grants on the existing tables and
    sequences repair drift. Idempotent: run it before every migration. One transaction: all or
    nothing. Existing objects that ``migrator`` neither owns nor holds with grant option are
    skipped with a WARNING by PostgreSQL (only their owner can grant on them)."""
    for value, what in (
        (database, "database"),
        (runtime, "runtime user"),
        (migrator, "migrator user"),
        (reader, "reader user"),
    ):
        validate_identifier(value, what)
    roles = [runtime, migrator, reader]
    if len(set(roles)) != len(roles):
        raise ValueError(f"the runtime, migrator and reader users must differ, got {roles}")
    schema, owner = quote_ident(SCHEMA), quote_ident(migrator)
    rt, rd = quote_ident(runtime), quote_ident(reader)
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT"
    statements = [
        "BEGIN;",
        _database_guard(database),
        f"{defaults} {RUNTIME_TABLE_PRIVILEGES} ON TABLES TO {rt};",
        f"{defaults} {RUNTIME_SEQUENCE_PRIVILEGES} ON SEQUENCES TO {rt};",
        f"{defaults} {READER_TABLE_PRIVILEGES} ON TABLES TO {rd};",
        f"{defaults} {READER_SEQUENCE_PRIVILEGES} ON SEQUENCES TO {rd};",
        f"GRANT {RUNTIME_TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {schema} TO {rt};",
        f"GRANT {RUNTIME_SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {schema} TO {rt};",
        f"GRANT {READER_TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {schema} TO {rd};",
        f"GRANT {READER_SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {schema} TO {rd};",
        "COMMIT;",
    ]
    return "\n".join(statements) + "\n"


def scaleway_permission_sql(level: str, database: str, user: str) -> str:
    """The emulation of Scaleway giving ``user`` permission ``level`` on ``database``: run by a
    superuser connected to ``database`` (it stands in for Scaleway's control plane). See the
    module docstring for what is documented and what is assumed. Idempotent."""
    if level not in PERMISSION_LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(PERMISSION_LEVELS)}")
    db = quote_ident(validate_identifier(database, "database"))
    role = quote_ident(validate_identifier(user, "user"))
    schema = quote_ident(SCHEMA)
    statements = [
        "BEGIN;",
        _database_guard(database),
        # Assumed platform behaviour (module docstring): only granted users connect, nobody
        # but the owner creates in public (already so on PostgreSQL 15+).
        f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC;",
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC;",
    ]
    if level == "all":
        statements += [
            f"GRANT ALL PRIVILEGES ON DATABASE {db} TO {role};",
            f"GRANT ALL PRIVILEGES ON SCHEMA {schema} TO {role};",
            f"GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} TO {role};",
            f"GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {schema} TO {role};",
        ]
    else:
        tables, sequences = (
            (RUNTIME_TABLE_PRIVILEGES, RUNTIME_SEQUENCE_PRIVILEGES)
            if level == "readwrite"
            else (READER_TABLE_PRIVILEGES, READER_SEQUENCE_PRIVILEGES)
        )
        statements += [
            f"GRANT CONNECT ON DATABASE {db} TO {role};",
            f"GRANT USAGE ON SCHEMA {schema} TO {role};",
            f"GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {role};",
            f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA {schema} TO {role};",
        ]
    statements.append("COMMIT;")
    return "\n".join(statements) + "\n"

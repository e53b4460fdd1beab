"""The application user: created or updated by the migrator with exactly the grants the request path uses.

The request function logs in as this user, never as the master: SELECT, INSERT and UPDATE on its two tables,
SELECT on the schema-version table (the cold-start check), EXECUTE on the request procedure. Nothing else: no DDL,
no DELETE, no GRANT OPTION, nothing on other schemas. ``sync_app_user`` is idempotent and also repairs drift:
it reads ``SHOW GRANTS``, and when it finds anything broader (a grant on the whole schema, ALL, GRANT OPTION, a
role, a global privilege) it revokes it, then grants the exact set. Every statement is one that RDS for MySQL
8.4's master may run (``CREATE USER``, plus ``GRANT OPTION`` and the privileges it grants; no SUPER) and that
MariaDB accepts too.

``SHOW GRANTS`` is printed by the server in one of a few shapes (``GRANT <privileges> ON <target> TO <account>
[... WITH GRANT OPTION]``, ``GRANT <role> TO <account>``); ``parse_grant`` reads them with quoting in mind
(backquoted names may hold anything, column lists hold commas).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from handler import app_contract as contract
from handler.app_names import TableNames

APP_USER_HOST = "%"  # the proxy connects from addresses of its own subnets
USER_NAME = re.compile(contract.APP_USER_NAME_PATTERN)
_ROW_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE"})
_ROUTINE_KINDS = ("PROCEDURE", "FUNCTION", "PACKAGE BODY", "PACKAGE")


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Target:
    """What a grant applies to: ``kind`` is GLOBAL, DATABASE, TABLE, PROCEDURE, FUNCTION, ... or PROXY."""

    kind: str
    database: str = "*"
    name: str = "*"
    raw: str = ""
    """The target as the server printed it (kept for PROXY grants, whose target is an account)."""

    def sql(self) -> str:
        if self.kind == "PROXY":
            return self.raw
        if self.kind == "GLOBAL":
            return "*.*"
        if self.kind == "DATABASE":
            return f"{quote_identifier(self.database)}.*"
        prefix = "" if self.kind == "TABLE" else f"{self.kind} "
        return f"{prefix}{quote_identifier(self.database)}.{quote_identifier(self.name)}"

    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.database, self.name if self.kind != "PROXY" else self.raw)


@dataclass(frozen=True)
class Grant:
    """One line of ``SHOW GRANTS``: privileges on a target, or (``target`` None) roles."""

    privileges: tuple[str, ...]
    """Upper-case privilege names; a column privilege keeps its list, e.g. ``SELECT (`id`)``. Roles for a role grant."""
    target: Target | None
    grant_option: bool = False


def expected_grants(names: TableNames) -> dict[tuple[str, str, str], tuple[Target, frozenset[str]]]:
    """The application user's exact grants, by target."""
    tables = (
        (names.table, _ROW_PRIVILEGES),
        (names.counter_name, _ROW_PRIVILEGES),
        (names.versions_name, frozenset({"SELECT"})),
    )
    targets = [(Target("TABLE", names.database, table), privileges) for table, privileges in tables]
    targets.append((Target("PROCEDURE", names.database, names.store_procedure_name), frozenset({"EXECUTE"})))
    return {target.key(): (target, privileges) for target, privileges in targets}


@dataclass(frozen=True)
class Drift:
    """What the application user has beyond its exact grants."""

    privileges: tuple[str, ...] = ()
    """``<privileges> ON <target>`` and ``GRANT OPTION ON <target>`` clauses, as a REVOKE would name them."""
    separate: tuple[str, ...] = ()
    """Roles and PROXY grants: MySQL's ``REVOKE ALL PRIVILEGES, GRANT OPTION`` leaves them, so each is revoked
    by itself."""

    def clauses(self) -> list[str]:
        return [*self.privileges, *self.separate]


def find_drift(grants: list[Grant], names: TableNames) -> Drift:
    """Everything in ``grants`` beyond ``expected_grants``."""
    expected = expected_grants(names)
    privileges: list[str] = []
    separate: list[str] = []
    for grant in grants:
        if grant.target is None:
            separate += list(grant.privileges)  # roles: "REVOKE `role` FROM ..."
            continue
        if grant.target.kind == "PROXY":
            separate.append(f"PROXY ON {grant.target.sql()}")
            continue
        allowed = expected.get(grant.target.key(), (grant.target, frozenset()))[1]
        extra = [privilege for privilege in grant.privileges if privilege not in allowed and privilege != "USAGE"]
        if extra:
            privileges.append(f"{', '.join(extra)} ON {grant.target.sql()}")
        if grant.grant_option:
            privileges.append(f"GRANT OPTION ON {grant.target.sql()}")
    return Drift(tuple(privileges), tuple(separate))


def sync_app_user(cursor: Any, names: TableNames, user: str, password: str) -> list[str]:
    """Create or update ``user``: password, exact grants. Returns what was revoked (empty when nothing was broader).

    Run under the migration lock, after the migrations (a GRANT needs its table and procedure to exist). Broader
    privileges are removed with ``REVOKE ALL PRIVILEGES, GRANT OPTION``, which needs only ``CREATE USER`` (revoking
    one by one would need the revoker to hold each of them, e.g. MariaDB's DELETE HISTORY inside ALL), and the
    exact set is granted again right after: only a user found with more than it should have misses its grants for
    those few statements. Errors from the password statements are re-raised without the server's text, which may
    quote the statement.
    """
    if not USER_NAME.match(user):
        raise ValueError(f"user={user!r}: allowed {contract.APP_USER_NAME_ALLOWED}")
    account = f"'{user}'@'{APP_USER_HOST}'"  # safe to splice: the name was checked just above
    _set_password(cursor, f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY %s", password, "CREATE USER")
    _set_password(cursor, f"ALTER USER {account} IDENTIFIED BY %s", password, "ALTER USER")  # a rotated secret
    cursor.execute(f"SHOW GRANTS FOR {account}")
    drift = find_drift([grant for (line,) in cursor.fetchall() if (grant := parse_grant(_text(line)))], names)
    for clause in drift.separate:  # first: MariaDB's REVOKE ALL takes roles too, MySQL's leaves them
        cursor.execute(f"REVOKE {clause} FROM {account}")
    if drift.privileges:
        cursor.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}")
    for target, privileges in expected_grants(names).values():
        cursor.execute(f"GRANT {', '.join(sorted(privileges))} ON {target.sql()} TO {account}")
    return drift.clauses()


class PasswordStatementError(RuntimeError):
    """Setting the application user's password failed; the message never contains the password."""

    def __init__(self, statement: str, errno: int | None) -> None:
        super().__init__(f"{statement} for the application user failed (MySQL error {errno})")
        self.errno = errno


def _set_password(cursor: Any, sql: str, password: str, label: str) -> None:
    try:
        cursor.execute(sql, (password,))
    except Exception as exc:  # noqa: BLE001 - the server's message may echo the statement, password included
        raise PasswordStatementError(label, getattr(exc, "errno", None)) from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


# -- parsing SHOW GRANTS ------------------------------------------------------------------------------------
def parse_grant(line: str) -> Grant | None:
    """One ``SHOW GRANTS`` line; None for lines that grant nothing (``REVOKE`` of partial revokes, ``SET``)."""
    text = line.strip().rstrip(";")
    if text[:6].upper() != "GRANT ":
        return None
    body = text[6:]
    to_at = _find_keyword(body, " TO ")
    if to_at is None:
        raise ValueError(f"unexpected SHOW GRANTS line (no TO): {line!r}")
    head, tail = body[:to_at], body[to_at + 4 :]
    grant_option = _find_keyword(tail, " WITH GRANT OPTION") is not None
    on_at = _find_keyword(head, " ON ")
    if on_at is None:  # a role grant
        return Grant(tuple(_split_top_level(head)), None, grant_option)
    privileges = tuple(_normalize_privilege(p) for p in _split_top_level(head[:on_at]))
    return Grant(privileges, _parse_target(head[on_at + 4 :].strip(), privileges), grant_option)


def _parse_target(text: str, privileges: tuple[str, ...]) -> Target:
    if privileges == ("PROXY",):
        return Target("PROXY", raw=text)
    kind = "TABLE"
    for routine_kind in (*_ROUTINE_KINDS, "TABLE"):
        if text[: len(routine_kind) + 1].upper() == routine_kind + " ":
            kind, text = routine_kind, text[len(routine_kind) + 1 :].lstrip()
            break
    parts = list(_split_top_level(text, "."))
    if len(parts) != 2:
        raise ValueError(f"unexpected grant target {text!r}")
    database, name = (_unquote(part) for part in parts)
    if database == "*":
        return Target("GLOBAL")
    if name == "*" and kind == "TABLE":
        return Target("DATABASE", database)
    return Target(kind, database, name)


def _normalize_privilege(text: str) -> str:
    name, paren, columns = text.strip().partition("(")
    name = " ".join(name.split()).upper()
    return f"{name} ({columns}" if paren else name


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`'\"":
        return text[1:-1].replace(text[0] * 2, text[0])
    return text


def _scan(text: str) -> Iterator[tuple[int, bool]]:
    """Each index of ``text`` and whether it is at top level (outside quotes and parentheses)."""
    quote: str | None = None
    depth = 0
    index = 0
    while index < len(text):
        char = text[index]
        if quote is not None:
            yield index, False
            if char == quote:
                if index + 1 < len(text) and text[index + 1] == quote:  # a doubled quote stays inside
                    index += 1
                    yield index, False
                else:
                    quote = None
        elif char in "`'\"":
            quote = char
            yield index, False
        elif char == "(":
            depth += 1
            yield index, False
        elif char == ")":
            depth = max(0, depth - 1)
            yield index, False
        else:
            yield index, depth == 0
        index += 1


def _find_keyword(text: str, keyword: str) -> int | None:
    """Index of the first top-level, case-insensitive occurrence of ``keyword`` (spaces included), else None."""
    top = {index for index, top_level in _scan(text) if top_level}
    size = len(keyword)
    for start in range(len(text) - size + 1):  # slices, not text.upper(): upper-casing can change the length
        if text[start : start + size].upper() == keyword and all(i in top for i in range(start, start + size)):
            return start
    return None


def _split_top_level(text: str, separator: str = ",") -> Iterator[str]:
    start = 0
    for index, top_level in _scan(text):
        if top_level and text[index] == separator:
            yield text[start:index].strip()
            start = index + 1
    yield text[start:].strip()

"""Decides, from a COM_QUERY's text, whether a statement can be multiplexed.

RDS Proxy pins a client to its database connection when a statement leaves session state behind
that other clients must not see. This module mirrors that with a cheap lexical look at the
statement (no SQL parser on the hot path): the leading keyword, a few pin-worthy patterns, and a
small tokenizer for SET statements and multi-statement text. Anything it cannot classify safely
pins, which is always correct, only less efficient.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class StatementKind(enum.Enum):
    """How the session runs a statement."""

    PLAIN = "plain"  # multiplexable (may still hold the backend while a transaction is open)
    PIN = "pin"  # keep the backend for the rest of the client session
    TRACK = "track"  # SET of variables the proxy tracks and replays on other backends
    USE = "use"  # change of default database (tracked)


#: Session variables RDS Proxy tracks for MySQL/MariaDB instead of pinning (subset).
TRACKED_VARIABLES = frozenset(
    {
        "autocommit",
        "auto_increment_increment",
        "auto_increment_offset",
        "sql_mode",
        "time_zone",
        "tx_isolation",
        "tx_read_only",
        "transaction_isolation",
        "transaction_read_only",
        "wait_timeout",
        "interactive_timeout",
        "net_write_timeout",
        "net_read_timeout",
        "sql_select_limit",
        "max_execution_time",
        "max_statement_time",
        "session_track_schema",
    }
)
#: These interact (SET NAMES overrides several), so they are replayed together, in order.
CHARSET_VARIABLES = frozenset(
    {
        "character_set_client",
        "character_set_connection",
        "character_set_results",
        "collation_connection",
        "character_set_database",
        "collation_database",
        "character_set_server",
        "collation_server",
    }
)
CHARSET_KEY = "charset"
_CHARSET_RESETS = (b"names", b"charset", b"character")

_PLAIN_KEYWORDS = frozenset(
    b"select insert update delete replace with show desc describe explain begin start commit "
    b"rollback savepoint release values table do kill analyze check checksum optimize repair "
    b"alter drop truncate rename grant revoke help unlock install uninstall binlog purge reset "
    b"change load".split()
)
_PIN_KEYWORDS = {
    b"prepare": "prepared statement",
    b"execute": "prepared statement",
    b"deallocate": "prepared statement",
    b"lock": "lock tables",
    b"handler": "handler",
    b"xa": "xa transaction",
    b"backup": "backup lock",
}

_LEAD = re.compile(rb"\s*([A-Za-z]+)")
# Patterns that leave per-session state behind when they appear anywhere in a statement.
_PIN_PATTERNS = [
    (re.compile(rb"(?i)\b(?:get_lock|release_lock|release_all_locks|is_used_lock|is_free_lock)\s*\("), "advisory lock"),
    (re.compile(rb":="), "user variable"),
    (re.compile(rb"(?i)\binto\s+@"), "user variable"),
    (re.compile(rb"(?i)\bsql_calc_found_rows\b"), "sql_calc_found_rows"),
]
_CREATE_TEMPORARY = re.compile(rb"(?i)\s*create\s+(?:or\s+replace\s+)?temporary\b")
_READ_LOCK = re.compile(rb"(?i)\bwith\s+read\s+lock\b")

_TOKEN = re.compile(
    rb"""
    (?P<ws>\s+)
  | (?P<exec>/\*M?!)
  | (?P<comment>/\*.*?\*/|--(?:[ \t][^\n]*)?(?=\n|$)|\#[^\n]*)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<ident>`(?:[^`]|``)*`)
  | (?P<word>@{0,2}(?:[\w$]+|`(?:[^`]|``)*`)(?:\.(?:[\w$]+|`(?:[^`]|``)*`))*)
  | (?P<op>:=|[=,;()])
  | (?P<other>.)
""",
    re.X | re.S,
)


@dataclass(frozen=True)
class Statement:
    """What the session must do for one COM_QUERY."""

    action: StatementKind
    reason: str = ""
    #: TRACK: (key, SET item text) in statement order; USE: ((db name, b""),)
    items: tuple[tuple[str, bytes], ...] = ()


PLAIN_STATEMENT = Statement(StatementKind.PLAIN)


def classify(query: bytes, exclude_variable_sets: bool = False) -> Statement:
    """Classify one COM_QUERY payload (without the command byte)."""
    lead = _LEAD.match(query)
    if lead is None:
        return _classify_tokens(query, exclude_variable_sets)
    keyword = lead.group(1).lower()
    if b";" in query and _is_multi_statement(query):
        return Statement(StatementKind.PIN, "multiple statements")
    if keyword in _PLAIN_KEYWORDS:
        return _check_patterns(query)
    if keyword == b"set":
        return _classify_set(query, exclude_variable_sets)
    if keyword == b"use":
        return _classify_use(query)
    if keyword == b"create":
        if _CREATE_TEMPORARY.match(query):
            return Statement(StatementKind.PIN, "temporary table")
        return _check_patterns(query)
    if keyword == b"call":
        return _classify_call(query)
    if keyword == b"flush":
        return Statement(StatementKind.PIN, "read lock") if _READ_LOCK.search(query) else PLAIN_STATEMENT
    reason = _PIN_KEYWORDS.get(keyword)
    return Statement(StatementKind.PIN, reason or f"unclassified statement {keyword.decode()!r}")


def _classify_call(query: bytes) -> Statement:
    """RDS Proxy does not pin for calling a stored routine (it does not see what the routine does), but an
    OUT/INOUT argument bound to ``@var`` leaves a user variable in the session. (Tokenizing costs ~10 us, so a
    CALL without any ``@``, such as the handler's, skips it.)"""
    if b"@" in query and any(kind == "word" and text.startswith(b"@") for kind, text, _, _ in _tokens(query)):
        return Statement(StatementKind.PIN, "user variable")
    return _check_patterns(query)


def _check_patterns(query: bytes) -> Statement:
    for pattern, reason in _PIN_PATTERNS:
        if pattern.search(query):
            return Statement(StatementKind.PIN, reason)
    return PLAIN_STATEMENT


def _tokens(query: bytes):
    """Significant tokens as (kind, bytes, start, end); comments and whitespace dropped."""
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup
        if kind in ("ws", "comment"):
            continue
        yield kind, match.group(), match.start(), match.end()


def _is_multi_statement(query: bytes) -> bool:
    seen_semicolon = False
    for _kind, text, _, _ in _tokens(query):
        if seen_semicolon and text != b";":
            return True
        if text == b";":
            seen_semicolon = True
    return False


def split_statements(sql: bytes) -> list[bytes]:
    """Split ``a; b`` at top-level semicolons (init_query may hold several statements)."""
    parts, start = [], 0
    for _kind, text, begin, end in _tokens(sql):
        if text == b";":
            parts.append(sql[start:begin])
            start = end
    parts.append(sql[start:])
    return [part.strip() for part in parts if part.strip()]


def _classify_tokens(query: bytes, exclude_variable_sets: bool) -> Statement:
    """Slow path for statements that start with a comment, parenthesis or executable comment."""
    for kind, text, start, _ in _tokens(query):
        if kind == "exec":
            return Statement(StatementKind.PIN, "executable comment")
        if text == b"(":
            continue
        if kind == "word" and text[:1].isalpha():
            return classify(query[start:], exclude_variable_sets)
        break
    return Statement(StatementKind.PIN, "unclassified statement")


def _classify_use(query: bytes) -> Statement:
    tokens = list(_tokens(query))
    names = [t for t in tokens[1:] if t[1] != b";"]
    if len(names) == 1 and names[0][0] in ("word", "ident") and b"@" not in names[0][1]:
        name = names[0][1]
        if name.startswith(b"`"):
            name = name[1:-1].replace(b"``", b"`")
        return Statement(StatementKind.USE, items=((name.decode("utf-8", "surrogateescape"), b""),))
    return Statement(StatementKind.PIN, "unclassified USE")


def _split_items(tokens, query: bytes):
    """Split SET's assignments at top-level commas: yields (tokens, text)."""
    depth = 0
    current: list = []
    for token in tokens:
        text = token[1]
        if text == b"(":
            depth += 1
        elif text == b")":
            depth -= 1
        if depth == 0 and text in (b",", b";"):
            if current:
                yield current, query[current[0][2] : current[-1][3]]
            current = []
            continue
        current.append(token)
    if current:
        yield current, query[current[0][2] : current[-1][3]]


def _classify_set(query: bytes, exclude_variable_sets: bool) -> Statement:
    tokens = list(_tokens(query))[1:]  # drop SET
    items: list[tuple[str, bytes]] = []
    untracked = ""
    for item_tokens, text in _split_items(tokens, query):
        key = _tracked_key(item_tokens)
        if key.startswith("!"):
            untracked = untracked or key[1:]
        else:
            items.append((key, text))
    if untracked:
        if exclude_variable_sets:
            # the filter says SET does not pin; what it sets leaks to the next borrower (as in RDS)
            return Statement(StatementKind.TRACK, "excluded variable set", tuple(items)) if items else PLAIN_STATEMENT
        return Statement(StatementKind.PIN, untracked)
    if not items:
        return Statement(StatementKind.PIN, "unclassified SET")
    return Statement(StatementKind.TRACK, items=tuple(items))


def _tracked_key(tokens) -> str:
    """Key under which a SET item is tracked, or '!reason' when it must pin."""
    words = [t[1].lower() for t in tokens]
    first = words[0]
    if first in (b"names", b"charset") or words[:2] == [b"character", b"set"]:
        return CHARSET_KEY if _simple_value(tokens[1:]) else "!unclassified SET NAMES"
    if first in (b"session", b"local"):
        tokens, words = tokens[1:], words[1:]
        if not words:
            return "!unclassified SET"
        first = words[0]
    if first in (b"global", b"persist", b"persist_only") or first.startswith(b"@@global."):
        return "!global variable"
    if first in (b"transaction", b"statement", b"password", b"role", b"default"):
        return f"!SET {first.decode()}"
    if first.startswith(b"@") and not first.startswith(b"@@"):
        return "!user variable"
    if len(words) < 3 or words[1] not in (b"=", b":="):
        return "!unclassified SET"
    name = first
    for prefix in (b"@@session.", b"@@local.", b"@@"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name_text = name.decode("ascii", "replace")
    if not _simple_value(tokens[2:]):
        return "!SET with expression"
    if name_text in CHARSET_VARIABLES:
        return CHARSET_KEY
    if name_text in TRACKED_VARIABLES:
        return name_text
    return f"!session variable {name_text}"


def _simple_value(tokens) -> bool:
    """A value that evaluates the same on any backend with the same tracked state."""
    for kind, text, _, _ in tokens:
        if kind in ("other", "exec") or text in (b"(", b")"):
            return False
        if kind == "word" and text.startswith(b"@") and not text.startswith(b"@@"):
            return False
    return True


def apply_tracked(state: dict[str, bytes], items) -> dict[str, bytes]:
    """The tracked state after a SET's items: a new dict, ``state`` is left alone.

    Charset items are accumulated in order (SET NAMES / CHARACTER SET start over), because
    they override each other; every other variable keeps its last assignment.
    """
    new = dict(state)
    for key, text in items:
        if key == CHARSET_KEY and not text.split(None, 1)[0].lower().startswith(_CHARSET_RESETS):
            previous = new.get(CHARSET_KEY)
            new[key] = previous + b", " + text if previous else text
        else:
            new[key] = text
    return new

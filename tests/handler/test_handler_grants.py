"""Reading ``SHOW GRANTS`` and finding what the application user has beyond its exact grants, for any line the
server can print (hypothesis: quoted names holding spaces, dots, commas, parentheses, quotes and the keywords)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.app_names import TableNames
from handler.app_users import Grant, Target, expected_grants, find_drift, parse_grant, quote_identifier

NAMES = TableNames("app", "access_times")
PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "EXECUTE", "TRIGGER"]
PRIVILEGES += ["ALL PRIVILEGES", "CREATE ROUTINE", "SHOW VIEW", "PROCESS", "APPLICATION_PASSWORD_ADMIN"]

identifiers = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
tricky = st.sampled_from(["a b", "x.y", "c,d", "p(q)", "o ON t", "TO", "`q`", "it's", 'say "hi"', "*"])
names = identifiers | tricky
plain_privileges = st.sampled_from(PRIVILEGES)
column_privileges = st.builds(
    lambda privilege, columns: f"{privilege} ({', '.join(quote_identifier(c) for c in columns)})",
    st.sampled_from(["SELECT", "INSERT", "UPDATE"]),
    st.lists(names, min_size=1, max_size=3),
)

UNTIMED = settings(deadline=None)
"""Properties have no time limit per example: on a loaded machine a descheduled example is not a failure."""


@st.composite
def targets(draw) -> Target:
    kind = draw(st.sampled_from(["GLOBAL", "DATABASE", "TABLE", "PROCEDURE", "FUNCTION"]))
    if kind == "GLOBAL":
        return Target("GLOBAL")
    database = draw(names.filter(lambda n: n != "*"))
    if kind == "DATABASE":
        return Target("DATABASE", database)
    return Target(kind, database, draw(names.filter(lambda n: n != "*")))


def show_grants_line(grant: Grant, account: str, tail: str) -> str:
    option = " WITH GRANT OPTION" if grant.grant_option else ""
    if grant.target is None:
        return f"GRANT {', '.join(grant.privileges)} TO {account}{option}"
    return f"GRANT {', '.join(grant.privileges)} ON {grant.target.sql()} TO {account}{tail}{option}"


accounts = st.sampled_from(["`app_user`@`%`", "'app_user'@'%'", "`app user`@`10.0.%`"])
tails = st.sampled_from(["", " IDENTIFIED BY PASSWORD '*0123ABCD'", " IDENTIFIED VIA ed25519 USING 'x TO y'"])


@UNTIMED
@given(
    st.lists(plain_privileges | column_privileges, min_size=1, max_size=4, unique=True),
    targets(),
    st.booleans(),
    accounts,
    tails,
)
def test_privilege_grants_parse_back_to_what_was_printed(privileges, target, grant_option, account, tail) -> None:
    grant = Grant(tuple(privileges), target, grant_option)
    assert parse_grant(show_grants_line(grant, account, tail)) == grant


@UNTIMED
@given(st.lists(names.map(lambda n: f"{quote_identifier(n)}@`%`"), min_size=1, max_size=3), accounts, st.booleans())
def test_role_grants_parse_back_to_their_roles(roles, account, admin_option) -> None:
    line = f"GRANT {', '.join(roles)} TO {account}" + (" WITH ADMIN OPTION" if admin_option else "")
    assert parse_grant(line) == Grant(tuple(roles), None, False)


@UNTIMED
@given(st.text(max_size=60))
def test_any_line_either_parses_or_is_refused_with_a_value_error(line: str) -> None:
    try:
        parsed = parse_grant(line)
    except ValueError:
        return
    assert parsed is None or isinstance(parsed, Grant)


@pytest.mark.parametrize(
    "line",
    ["REVOKE SELECT ON `app`.`x` FROM `u`@`%`", "SET DEFAULT ROLE `r` FOR `u`@`%`", ""],
)
def test_lines_that_grant_nothing_are_skipped(line: str) -> None:
    assert parse_grant(line) is None


def exact_lines() -> list[Grant]:
    return [Grant(tuple(sorted(privileges)), target) for target, privileges in expected_grants(NAMES).values()]


def test_the_exact_grants_are_no_drift() -> None:
    usage = Grant(("USAGE",), Target("GLOBAL"))
    assert find_drift([usage, *exact_lines()], NAMES).clauses() == []


@UNTIMED
@given(targets(), st.lists(plain_privileges | column_privileges, min_size=1, max_size=3, unique=True), st.booleans())
def test_anything_beyond_the_exact_grants_is_drift(target: Target, privileges: list[str], option: bool) -> None:
    allowed = expected_grants(NAMES).get(target.key(), (target, frozenset()))[1]
    extra = [privilege for privilege in privileges if privilege not in allowed]
    drift = find_drift([*exact_lines(), Grant(tuple(privileges), target, option)], NAMES)
    expected = [f"{', '.join(extra)} ON {target.sql()}"] if extra else []
    expected += [f"GRANT OPTION ON {target.sql()}"] if option else []
    assert list(drift.privileges) == expected and drift.separate == ()


def test_roles_and_proxy_grants_are_revoked_one_by_one() -> None:
    grants = [Grant(("`r1`@`%`",), None), Grant(("PROXY",), Target("PROXY", raw="''@'%'"))]
    assert find_drift(grants, NAMES).separate == ("`r1`@`%`", "PROXY ON ''@'%'")

"""The stand-in's accounts against a real MariaDB: one per client user, pooled apart under one cap, refusals logged.

Like RDS Proxy with one secret per database user: a client logs in as a user that has an account and gets database
connections opened as that user; a user without one is refused with 1045 naming it; every refusal is one INFO line
on the stand-in's stderr when it runs as a child process (as ``serve`` runs it).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
from typing import Any

import mysql.connector
import pytest

from local.data_plane.rdsproxy import ProxyProcess, ProxyServer
from tests.local.data_plane.rdsproxy.standin_support import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    add_db_user,
    client_account,
    connect,
    fetch,
    standin_config,
)
from tests.sync_support import wait_until

REPORTER, REPORTER_PASSWORD = "reporter", "reporter-pw"


@pytest.fixture(scope="module")
def db(mariadb_factory):
    return mariadb_factory(max_connections=20)


@pytest.fixture(scope="module")
def accounts(db):
    return (client_account(db), add_db_user(db, REPORTER, REPORTER_PASSWORD))


def as_reporter(proxy, db, **options: Any):
    return connect(proxy, db, user=REPORTER, password=REPORTER_PASSWORD, **options)


def current_user(conn) -> str:
    return fetch(conn, "SELECT CURRENT_USER()")[1][0][0].split("@")[0]


def test_each_client_reaches_the_database_as_its_own_account(db, accounts):
    with ProxyServer(standin_config(db, accounts=accounts)) as proxy:
        with (
            contextlib.closing(connect(proxy, db, autocommit=True)) as app,
            contextlib.closing(as_reporter(proxy, db, autocommit=True)) as reporter,
        ):
            for _ in range(3):  # multiplexed, yet never on the other account's connection
                assert current_user(app) == CLIENT_USER
                assert current_user(reporter) == REPORTER
        stats = proxy.stats()
    assert stats["accounts"] == sorted([CLIENT_USER, REPORTER]) and stats["auth_failures"] == 0


def test_accounts_share_one_cap(db, accounts):
    config = standin_config(
        db, accounts=accounts, db_max_connections=10, max_connections_percent=10, connection_borrow_timeout=0.3
    )  # cap 1, for both accounts together
    with ProxyServer(config) as proxy:
        with (
            contextlib.closing(connect(proxy, db, autocommit=True)) as app,
            contextlib.closing(as_reporter(proxy, db, autocommit=True)) as reporter,
        ):
            fetch(app, "BEGIN")  # holds the one connection
            with pytest.raises(mysql.connector.Error) as caught:
                fetch(reporter, "SELECT 1")
            assert caught.value.errno == 9501
            fetch(app, "COMMIT")  # back to the pool: the reporter's account takes the slot over
            assert current_user(reporter) == REPORTER
            assert current_user(app) == CLIENT_USER
        stats = proxy.stats()
    assert stats["backend_connections_peak"] == 1 and stats["borrow_timeouts"] == 1


def test_a_user_without_an_account_or_with_a_wrong_password_gets_1045_naming_it(db, accounts, caplog):
    caplog.set_level("INFO", logger="local.data_plane.rdsproxy")
    with ProxyServer(standin_config(db, accounts=accounts[:1])) as proxy:
        for user, password in ((REPORTER, REPORTER_PASSWORD), (CLIENT_USER, "wrong")):
            with pytest.raises(mysql.connector.Error) as caught:
                connect(proxy, db, user=user, password=password)
            assert (caught.value.errno, caught.value.sqlstate) == (1045, "28000")
            assert f"Access denied for user '{user}'" in caught.value.msg
        wait_until(lambda: proxy.stats()["auth_failures"] == 2)
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused login")]
    assert len(refusals) == 2, refusals
    assert re.fullmatch(rf"refused login user={REPORTER} from 127\.0\.0\.1:\d+: no account for this user", refusals[0])
    assert re.fullmatch(rf"refused login user={CLIENT_USER} from 127\.0\.0\.1:\d+: wrong password", refusals[1])


class LoggedProxy(ProxyProcess):
    """The stand-in as serve runs it (a child process), with its stderr captured."""

    def _popen_options(self) -> dict[str, Any]:
        return {"stderr": subprocess.PIPE, "text": False}


def test_a_child_stand_in_logs_each_refusal_as_one_info_line(db, accounts):
    proxy = LoggedProxy(standin_config(db, accounts=accounts[:1])).start()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proxy._process.stderr.read().decode().splitlines()))
    try:
        reader.start()
        with pytest.raises(mysql.connector.Error):
            connect(proxy, db, user="nobody", password="x")
        with contextlib.closing(connect(proxy, db)) as conn:  # a good login logs nothing
            assert fetch(conn, "SELECT 1")[1] == [(1,)]
        wait_until(lambda: proxy.stats()["auth_failures"] == 1)
    finally:
        assert proxy.stop() == 0
        reader.join(10)
    refusals = [line for line in lines if "refused login" in line]
    assert len(refusals) == 1, lines
    assert re.search(
        r" rdsproxy INFO refused login user=nobody from 127\.0\.0\.1:\d+: no account for this user$", refusals[0]
    )
    assert CLIENT_PASSWORD not in "\n".join(lines)

"""Unit tests of the RDS Proxy stand-in's pure parts: config, response framing, classification."""

from __future__ import annotations

import pytest

from local.data_plane.rdsproxy.accounts import StaticAccount
from local.data_plane.rdsproxy.classify import CHARSET_KEY, StatementKind, classify
from local.data_plane.rdsproxy.config import ProxyConfig, ProxyConfigError
from local.data_plane.rdsproxy.constants import ServerStatus
from local.data_plane.rdsproxy.protocol import (
    MAX_PAYLOAD,
    CommandCounter,
    ResponseKind,
    ResponseScanner,
    err_payload,
    lenenc_int,
    packet,
    read_lenenc_int,
)
from tests.local.data_plane.rdsproxy.standin_support import UNIT_FIELDS as BASE
from tests.local.data_plane.rdsproxy.standin_support import coldef, eof, ok, result_set


# -- config -------------------------------------------------------------------------------------
def test_pool_cap_is_floor_of_percent_of_max_connections():
    config = ProxyConfig(**BASE, max_connections_percent=70, max_idle_connections_percent=50)
    assert config.pool_cap == 45
    assert config.max_idle == 32


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("max_connections_percent", 0, "max_connections_percent=0: must be in [1, 100]"),
        ("max_connections_percent", 101, "max_connections_percent=101: must be in [1, 100]"),
        ("max_idle_connections_percent", 80, "max_idle_connections_percent=80: must be in [0, 70]"),
        ("connection_borrow_timeout", 3601, "connection_borrow_timeout=3601: must be in [0, 3600]"),
        ("connection_borrow_timeout", float("nan"), "connection_borrow_timeout=nan"),
        ("idle_client_timeout", 0.5, "idle_client_timeout=0.5: must be in [1, 28800]"),
        ("idle_client_timeout", 28801, "idle_client_timeout=28801: must be in [1, 28800]"),
        ("backend_port", 0, "backend_port=0: must be in [1, 65535]"),
        ("listen_port", 70000, "listen_port=70000: must be in [0, 65535]"),
        ("db_max_connections", True, "db_max_connections=True: must be an integer"),
        ("stats_port", -1, "stats_port=-1: must be in [0, 65535]"),
        ("session_pinning_filters", frozenset({"EXCLUDE_ALL"}), "unknown ['EXCLUDE_ALL']"),
        ("session_pinning_filters", "EXCLUDE_VARIABLE_SETS", "must be a set of strings"),
        ("event_loop", "trio", "event_loop='trio'"),
        ("backend_host", "", "backend_host='': must be a non-empty string"),
    ],
)
def test_config_errors_name_field_value_and_range(field, value, expected):
    fields = dict(BASE, max_connections_percent=70)
    fields[field] = value
    with pytest.raises(ProxyConfigError) as caught:
        ProxyConfig(**fields)
    assert expected in str(caught.value)


def test_config_rejects_a_pool_of_zero_and_keeps_secrets_out_of_repr():
    with pytest.raises(ProxyConfigError, match="pool of 0"):
        ProxyConfig(**dict(BASE, db_max_connections=1, max_connections_percent=50))
    text = repr(ProxyConfig(**dict(BASE, accounts=(StaticAccount("app", "hunter2"), StaticAccount("b", "topsecret")))))
    assert "hunter2" not in text and "topsecret" not in text and "'app'" in text


# -- response framing ---------------------------------------------------------------------------
AUTOCOMMIT, IN_TRANS = ServerStatus.AUTOCOMMIT, ServerStatus.IN_TRANS


ROWS = [b"\x011\x03abc", b"\xfb\x02xy", b"\xfc\x00\x01" + b"z" * 256 + b"\x00"]


def feed_in_pieces(scanner, data, size):
    done_at = None
    for start in range(0, len(data), size):
        if scanner.feed(data[start : start + size]):
            done_at = start + size
            break
    return done_at


@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("piece", [1, 2, 3, 5, 7, 64, 100000])
def test_scanner_finds_the_end_of_a_result_set_at_any_chunking(deprecate_eof, piece):
    data = result_set(deprecate_eof, ROWS, status=AUTOCOMMIT | IN_TRANS)
    scanner = ResponseScanner(deprecate_eof)
    done_at = feed_in_pieces(scanner, data, piece)
    assert done_at is not None and done_at >= len(data)
    assert scanner.extra == b""
    assert scanner.status == AUTOCOMMIT | IN_TRANS
    assert scanner.error is None


def test_scanner_is_not_done_before_the_last_byte():
    data = result_set(True, ROWS)
    scanner = ResponseScanner(True)
    assert scanner.feed(data[:-1]) is False
    assert scanner.feed(data[-1:]) is True


def test_scanner_follows_multiple_results_and_stops_at_an_error():
    first = result_set(False, ROWS, status=AUTOCOMMIT | ServerStatus.MORE_RESULTS_EXISTS)
    second = packet(1, ok(AUTOCOMMIT | ServerStatus.MORE_RESULTS_EXISTS))
    third = packet(1, err_payload(1146, "Table 'x' doesn't exist", "42S02"))
    scanner = ResponseScanner(False)
    assert scanner.feed(first) is False
    assert scanner.feed(second) is False
    assert scanner.feed(third) is True
    assert scanner.error == (1146, "Table 'x' doesn't exist", "42S02")


def test_scanner_reports_bytes_past_the_end():
    scanner = ResponseScanner(True)
    assert scanner.feed(packet(1, ok()) + b"\x01\x00\x00\x02\x00") is True
    assert scanner.extra == b"\x01\x00\x00\x02\x00"


def test_scanner_skips_row_fragments_of_16mib_packets_even_if_they_look_like_eof():
    big_row = b"\xfe" + (MAX_PAYLOAD + 100).to_bytes(8, "little") + b"x" * (MAX_PAYLOAD - 9)
    tail = b"\xfe" + b"\x00" * 4 + b"x" * 95  # continuation that starts like an EOF packet
    data = (
        packet(1, b"\x01")
        + packet(2, coldef())
        + packet(3, eof())
        + packet(4, big_row)
        + packet(5, tail)
        + packet(6, eof(AUTOCOMMIT))
    )
    scanner = ResponseScanner(False)
    assert feed_in_pieces(scanner, data, 1 << 20) is not None
    assert scanner.extra == b"" and scanner.status == AUTOCOMMIT


def test_scanner_single_and_field_list_modes():
    single = ResponseScanner(False, ResponseKind.SINGLE)
    assert single.feed(packet(1, b"Uptime: 5  Threads: 1")) is True
    fields = ResponseScanner(False, ResponseKind.FIELD_LIST)
    assert fields.feed(packet(1, coldef()) + packet(2, coldef(b"b"))) is False
    assert fields.feed(packet(3, eof())) is True


def test_scanner_stops_after_column_definitions_when_a_cursor_was_opened():
    data = packet(1, b"\x01") + packet(2, coldef()) + packet(3, eof(ServerStatus.CURSOR_EXISTS))
    scanner = ResponseScanner(False)
    assert scanner.feed(data) is True


def test_command_counter_counts_sequence_zero_packets_across_chunks():
    stream = packet(0, b"\x03SELECT 1") + packet(0, b"\x17" + b"\x00" * 30) + packet(1, b"x" * 10) + packet(0, b"\x01")
    counter = CommandCounter()
    assert sum(counter.feed(stream[i : i + 3]) for i in range(0, len(stream), 3)) == 3


def test_lenenc_round_trip():
    for value in (0, 250, 251, 65535, 65536, 1 << 24, 1 << 40):
        assert read_lenenc_int(lenenc_int(value), 0) == (value, len(lenenc_int(value)))


# -- classification -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql, action",
    [
        ("SELECT * FROM menus", StatementKind.PLAIN),
        ("  select 1", StatementKind.PLAIN),
        ("/* hint */ SELECT 1", StatementKind.PLAIN),
        ("(SELECT 1) UNION (SELECT 2)", StatementKind.PLAIN),
        ("INSERT INTO t VALUES (';')", StatementKind.PLAIN),
        ("SELECT 1;", StatementKind.PLAIN),
        ("BEGIN", StatementKind.PLAIN),
        ("START TRANSACTION", StatementKind.PLAIN),
        ("COMMIT", StatementKind.PLAIN),
        ("ROLLBACK", StatementKind.PLAIN),
        ("CREATE TABLE t (a int)", StatementKind.PLAIN),
        ("DROP TABLE t", StatementKind.PLAIN),
        ("SELECT 1; SELECT 2", StatementKind.PIN),
        ("SELECT @a := 1", StatementKind.PIN),
        ("SELECT 1 INTO @a", StatementKind.PIN),
        ("SELECT GET_LOCK('x', 1)", StatementKind.PIN),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t", StatementKind.PIN),
        ("CREATE TEMPORARY TABLE t (a int)", StatementKind.PIN),
        ("create or replace temporary table t (a int)", StatementKind.PIN),
        ("LOCK TABLES t WRITE", StatementKind.PIN),
        ("FLUSH TABLES WITH READ LOCK", StatementKind.PIN),
        ("PREPARE s FROM 'SELECT 1'", StatementKind.PIN),
        ("CALL p()", StatementKind.PLAIN),  # RDS Proxy: calling a stored procedure does not pin
        ("call `t_record`('id', '2026-11-24 10:00:00.000001', 100)", StatementKind.PLAIN),
        ("CALL p(@out)", StatementKind.PIN),
        ("CALL p('@not a variable')", StatementKind.PLAIN),
        ("XA START 'x'", StatementKind.PIN),
        ("/*!40101 SET NAMES utf8 */", StatementKind.PIN),
        ("FROBNICATE", StatementKind.PIN),
        ("SET @x = 1", StatementKind.PIN),
        ("SET GLOBAL max_connections = 10", StatementKind.PIN),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", StatementKind.PIN),
        ("SET sort_buffer_size = 1000000", StatementKind.PIN),
        ("SET sql_mode = CONCAT(@@sql_mode, ',ANSI')", StatementKind.PIN),
        ("SET autocommit = 0", StatementKind.TRACK),
        ("SET @@session.autocommit = OFF", StatementKind.TRACK),
        ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", StatementKind.TRACK),
        ("SET time_zone = '+00:00', sql_mode = 'ANSI'", StatementKind.TRACK),
        ("SET SESSION tx_isolation = 'READ-COMMITTED'", StatementKind.TRACK),
        ("USE app", StatementKind.USE),
        ("use `my db`", StatementKind.USE),
    ],
)
def test_classification(sql, action):
    assert classify(sql.encode()).action == action


def test_tracked_set_items_keep_their_text_and_key():
    statement = classify(b"SET NAMES utf8mb4, @@session.time_zone = '+09:00', tx_read_only = 0")
    assert statement.items == (
        (CHARSET_KEY, b"NAMES utf8mb4"),
        ("time_zone", b"@@session.time_zone = '+09:00'"),
        ("tx_read_only", b"tx_read_only = 0"),
    )
    assert classify(b"USE `my db`").items[0][0] == "my db"


def test_exclude_variable_sets_filter_stops_set_from_pinning():
    assert classify(b"SET @x = 1", exclude_variable_sets=True).action == StatementKind.PLAIN
    mixed = classify(b"SET @x = 1, autocommit = 0", exclude_variable_sets=True)
    assert mixed.action == StatementKind.TRACK and mixed.items == (("autocommit", b"autocommit = 0"),)
    # the filter is about SET only: other pinning conditions still pin
    assert classify(b"CREATE TEMPORARY TABLE t (a int)", exclude_variable_sets=True).action == StatementKind.PIN

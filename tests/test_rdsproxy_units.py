"""Unit tests of the RDS Proxy stand-in's pure parts: config, response framing, classification."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.data_plane.rdsproxy import protocol as p
from local.data_plane.rdsproxy.classify import CHARSET_KEY, PIN, PLAIN, TRACK, USE, classify
from local.data_plane.rdsproxy.config import ProxyConfig, ProxyConfigError

BASE = dict(
    backend_host="127.0.0.1",
    backend_port=3306,
    backend_user="app",
    backend_password="s",
    client_user="app",
    client_password="c",
    db_max_connections=65,
)


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
    text = repr(ProxyConfig(**dict(BASE, backend_password="hunter2", client_password="topsecret")))
    assert "hunter2" not in text and "topsecret" not in text


# -- response framing ---------------------------------------------------------------------------
def pkt(seq, payload):
    return p.packet(seq, payload)


def eof(status=p.SERVER_STATUS_AUTOCOMMIT):
    return b"\xfe" + struct.pack("<HH", 0, status)


def ok(status=p.SERVER_STATUS_AUTOCOMMIT, header=b"\x00"):
    return header + b"\x00\x00" + struct.pack("<HH", status, 0)


def coldef(name=b"a"):
    fixed = b"\x0c\x21\x00\x0b\x00\x00\x00\x08\x00\x00\x00\x00\x00"  # charset, length, type, flags
    return b"\x03def\x00\x00\x00" + bytes((len(name),)) + name + b"\x00" + fixed


def result_set(deprecate_eof, rows, status=p.SERVER_STATUS_AUTOCOMMIT):
    seq = 1
    out = [pkt(seq, b"\x02")]
    for name in (b"a", b"b"):
        seq += 1
        out.append(pkt(seq, coldef(name)))
    if not deprecate_eof:
        seq += 1
        out.append(pkt(seq, eof()))
    for row in rows:
        seq += 1
        out.append(pkt(seq, row))
    seq += 1
    out.append(pkt(seq, ok(status, b"\xfe") if deprecate_eof else eof(status)))
    return b"".join(out)


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
    data = result_set(deprecate_eof, ROWS, status=p.SERVER_STATUS_AUTOCOMMIT | p.SERVER_STATUS_IN_TRANS)
    scanner = p.ResponseScanner(deprecate_eof)
    done_at = feed_in_pieces(scanner, data, piece)
    assert done_at is not None and done_at >= len(data)
    assert scanner.extra == b""
    assert scanner.status == p.SERVER_STATUS_AUTOCOMMIT | p.SERVER_STATUS_IN_TRANS
    assert scanner.error is None


def test_scanner_is_not_done_before_the_last_byte():
    data = result_set(True, ROWS)
    scanner = p.ResponseScanner(True)
    assert scanner.feed(data[:-1]) is False
    assert scanner.feed(data[-1:]) is True


def test_scanner_follows_multiple_results_and_stops_at_an_error():
    first = result_set(False, ROWS, status=p.SERVER_STATUS_AUTOCOMMIT | p.SERVER_MORE_RESULTS_EXISTS)
    second = pkt(1, ok(p.SERVER_STATUS_AUTOCOMMIT | p.SERVER_MORE_RESULTS_EXISTS))
    third = pkt(1, p.err_payload(1146, "Table 'x' doesn't exist", "42S02"))
    scanner = p.ResponseScanner(False)
    assert scanner.feed(first) is False
    assert scanner.feed(second) is False
    assert scanner.feed(third) is True
    assert scanner.error == (1146, "Table 'x' doesn't exist", "42S02")


def test_scanner_reports_bytes_past_the_end():
    scanner = p.ResponseScanner(True)
    assert scanner.feed(pkt(1, ok()) + b"\x01\x00\x00\x02\x00") is True
    assert scanner.extra == b"\x01\x00\x00\x02\x00"


def test_scanner_skips_row_fragments_of_16mib_packets_even_if_they_look_like_eof():
    big_row = b"\xfe" + (p.MAX_PAYLOAD + 100).to_bytes(8, "little") + b"x" * (p.MAX_PAYLOAD - 9)
    tail = b"\xfe" + b"\x00" * 4 + b"x" * 95  # continuation that starts like an EOF packet
    data = (
        pkt(1, b"\x01")
        + pkt(2, coldef())
        + pkt(3, eof())
        + pkt(4, big_row)
        + pkt(5, tail)
        + pkt(6, eof(p.SERVER_STATUS_AUTOCOMMIT))
    )
    scanner = p.ResponseScanner(False)
    assert feed_in_pieces(scanner, data, 1 << 20) is not None
    assert scanner.extra == b"" and scanner.status == p.SERVER_STATUS_AUTOCOMMIT


def test_scanner_single_and_field_list_modes():
    single = p.ResponseScanner(False, p.SINGLE)
    assert single.feed(pkt(1, b"Uptime: 5  Threads: 1")) is True
    fields = p.ResponseScanner(False, p.FIELD_LIST)
    assert fields.feed(pkt(1, coldef()) + pkt(2, coldef(b"b"))) is False
    assert fields.feed(pkt(3, eof())) is True


def test_scanner_stops_after_column_definitions_when_a_cursor_was_opened():
    data = pkt(1, b"\x01") + pkt(2, coldef()) + pkt(3, eof(p.SERVER_STATUS_CURSOR_EXISTS))
    scanner = p.ResponseScanner(False)
    assert scanner.feed(data) is True


def test_command_counter_counts_sequence_zero_packets_across_chunks():
    stream = pkt(0, b"\x03SELECT 1") + pkt(0, b"\x17" + b"\x00" * 30) + pkt(1, b"x" * 10) + pkt(0, b"\x01")
    counter = p.CommandCounter()
    assert sum(counter.feed(stream[i : i + 3]) for i in range(0, len(stream), 3)) == 3


def test_lenenc_round_trip():
    for value in (0, 250, 251, 65535, 65536, 1 << 24, 1 << 40):
        assert p.read_lenenc_int(p.lenenc_int(value), 0) == (value, len(p.lenenc_int(value)))


# -- classification -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql, action",
    [
        ("SELECT * FROM menus", PLAIN),
        ("  select 1", PLAIN),
        ("/* hint */ SELECT 1", PLAIN),
        ("(SELECT 1) UNION (SELECT 2)", PLAIN),
        ("INSERT INTO t VALUES (';')", PLAIN),
        ("SELECT 1;", PLAIN),
        ("BEGIN", PLAIN),
        ("START TRANSACTION", PLAIN),
        ("COMMIT", PLAIN),
        ("ROLLBACK", PLAIN),
        ("CREATE TABLE t (a int)", PLAIN),
        ("DROP TABLE t", PLAIN),
        ("SELECT 1; SELECT 2", PIN),
        ("SELECT @a := 1", PIN),
        ("SELECT 1 INTO @a", PIN),
        ("SELECT GET_LOCK('x', 1)", PIN),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t", PIN),
        ("CREATE TEMPORARY TABLE t (a int)", PIN),
        ("create or replace temporary table t (a int)", PIN),
        ("LOCK TABLES t WRITE", PIN),
        ("FLUSH TABLES WITH READ LOCK", PIN),
        ("PREPARE s FROM 'SELECT 1'", PIN),
        ("CALL p()", PLAIN),  # RDS Proxy: calling a stored procedure does not pin
        ("call `t_record`('id', '2026-11-24 10:00:00.000001', 100)", PLAIN),
        ("CALL p(@out)", PIN),
        ("CALL p('@not a variable')", PLAIN),
        ("XA START 'x'", PIN),
        ("/*!40101 SET NAMES utf8 */", PIN),
        ("FROBNICATE", PIN),
        ("SET @x = 1", PIN),
        ("SET GLOBAL max_connections = 10", PIN),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", PIN),
        ("SET sort_buffer_size = 1000000", PIN),
        ("SET sql_mode = CONCAT(@@sql_mode, ',ANSI')", PIN),
        ("SET autocommit = 0", TRACK),
        ("SET @@session.autocommit = OFF", TRACK),
        ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", TRACK),
        ("SET time_zone = '+00:00', sql_mode = 'ANSI'", TRACK),
        ("SET SESSION tx_isolation = 'READ-COMMITTED'", TRACK),
        ("USE app", USE),
        ("use `my db`", USE),
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
    assert classify(b"SET @x = 1", exclude_variable_sets=True).action == PLAIN
    mixed = classify(b"SET @x = 1, autocommit = 0", exclude_variable_sets=True)
    assert mixed.action == TRACK and mixed.items == (("autocommit", b"autocommit = 0"),)
    # the filter is about SET only: other pinning conditions still pin
    assert classify(b"CREATE TEMPORARY TABLE t (a int)", exclude_variable_sets=True).action == PIN

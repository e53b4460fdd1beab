"""Property tests of the stand-in's session machine (``rdsproxy.core``), with no sockets and no database.

A hypothesis state machine plays the client, the pool and a model of a MySQL server session (autocommit,
transactions, tracked variables, default database), and drives ``SessionCore`` through every ``COM_*`` command,
pinning, transactions, errors inside transactions, borrow failures, replies cut in any chunks, backends lost
mid-reply, and hostile bytes from either side. After every step it checks what the real proxy relies on: a backend
is held exactly while its transaction is open (or the session is pinned), no open transaction is ever dropped
silently, every command gets exactly one reply, byte for byte, and the machine only ever raises for a shell bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from local.data_plane.rdsproxy.classify import StatementKind, apply_tracked, classify
from local.data_plane.rdsproxy.constants import Command, ErrorCode, ServerStatus
from local.data_plane.rdsproxy.core import (
    Adopt,
    Borrow,
    Close,
    Hold,
    Phase,
    Pin,
    Release,
    RollBack,
    SessionCore,
    SessionStateError,
    ToBackend,
    ToClient,
)
from local.data_plane.rdsproxy.protocol import ErrPacket, ResponseKind, ResponseScanner, err_payload, packet
from tests.local.data_plane.rdsproxy.standin_support import coldef, eof, ok, result_set

STATEMENTS = [
    "SELECT a FROM t",
    "INSERT INTO t VALUES (1)",
    "CALL t_record('id', 1)",
    "BEGIN",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "SET autocommit = 0",
    "SET autocommit = 1",
    "SET time_zone = '+09:00'",
    "SET time_zone = 'nowhere'",  # the server refuses it
    "SET NAMES latin1",
    "USE other",
    "USE missing",  # the server refuses it
    "SELECT no_such_column FROM t",  # an error that leaves the transaction open
    "UPDATE t SET a = a + 1 -- deadlock",  # an error that rolls the transaction back (1213)
    "SELECT 1",
    "SET @x = 1",  # pins
    "PREPARE s FROM 'SELECT 1'",  # pins
    "SELECT GET_LOCK('x', 1)",  # pins
]
SAFE_COMMANDS = [Command.PING, Command.INIT_DB, Command.FIELD_LIST, Command.STATISTICS, Command.RESET_CONNECTION]
OTHER_COMMANDS = [c for c in Command if c not in (Command.QUERY, Command.QUIT, *SAFE_COMMANDS)]
_AUTOCOMMIT, _IN_TRANS = ServerStatus.AUTOCOMMIT.value, ServerStatus.IN_TRANS.value


@dataclass
class ServerSession:
    """What one backend connection's server session does with the commands the proxy sends it."""

    deprecate_eof: bool
    autocommit: bool = True
    in_trans: bool = False
    db: str | None = None
    out: bytearray = field(default_factory=bytearray)

    def status(self) -> int:
        return (_AUTOCOMMIT if self.autocommit else 0) | (_IN_TRANS if self.in_trans else 0)

    def execute(self, raw: bytes) -> None:
        payload = raw[4:]
        code, argument = payload[0], payload[1:].decode("utf-8", "replace")
        if code == Command.PING:
            self._ok()
        elif code == Command.INIT_DB:
            self._use(argument)
        elif code == Command.FIELD_LIST:
            self.out += packet(1, coldef(b"a")) + packet(2, eof(self.status()))
        elif code == Command.STATISTICS:
            self.out += packet(1, b"Uptime: 1  Threads: 1")
        elif code == Command.QUERY:
            self._query(argument)
        else:
            self._error(1047, "Unknown command")

    def _query(self, sql: str) -> None:
        verb = sql.split(None, 1)[0].upper() if sql.strip() else ""
        if sql in ("BEGIN", "START TRANSACTION"):
            self.in_trans = True
            self._ok()
        elif sql in ("COMMIT", "ROLLBACK"):
            self.in_trans = False
            self._ok()
        elif sql.startswith("SET autocommit"):
            self.autocommit = sql.endswith("1")
            self.in_trans = self.in_trans and not self.autocommit  # autocommit=1 commits
            self._ok()
        elif sql == "SET time_zone = 'nowhere'":
            self._error(1298, "Unknown or incorrect time zone: 'nowhere'")
        elif sql.startswith("SET"):
            self._ok()
        elif sql.startswith("USE"):
            self._use(sql.split()[1])
        elif sql == "SELECT no_such_column FROM t":
            self._error(1054, "Unknown column 'no_such_column'")
        elif sql.endswith("-- deadlock"):
            self.in_trans = False
            self._error(1213, "Deadlock found when trying to get lock; try restarting transaction")
        elif verb in ("SELECT", "INSERT", "CALL", "UPDATE"):
            if not self.autocommit and "FROM t" in sql or verb in ("INSERT", "CALL", "UPDATE"):
                self.in_trans = self.in_trans or not self.autocommit
            if verb == "SELECT":
                self.out += result_set(self.deprecate_eof, [b"\x011\x01x"], self.status())
            else:
                self._ok(affected=1)
        else:
            self._error(1064, "You have an error in your SQL syntax")

    def _use(self, name: str) -> None:
        if name == "missing":
            self._error(1049, "Unknown database 'missing'")
        else:
            self.db = name
            self._ok()

    def _ok(self, affected: int = 0) -> None:
        self.out += packet(1, ok(self.status(), affected=affected))

    def _error(self, code: int, message: str) -> None:
        self.out += packet(1, err_payload(code, message, "HY000"))


class SessionMachine(RuleBasedStateMachine):
    """Client, pool and server around one SessionCore; each rule is one client command, start to finish."""

    @initialize(deprecate_eof=st.booleans(), database=st.sampled_from([None, "app"]), exclude=st.booleans())
    def start(self, deprecate_eof, database, exclude):
        self._open(deprecate_eof, database, exclude)

    @precondition(lambda self: self.ended)
    @rule(deprecate_eof=st.booleans(), database=st.sampled_from([None, "app"]), exclude=st.booleans())
    def next_client(self, deprecate_eof, database, exclude):
        self._open(deprecate_eof, database, exclude)

    def _open(self, deprecate_eof, database, exclude):
        self.core = SessionCore(deprecate_eof=deprecate_eof, database=database, exclude_variable_sets=exclude)
        self.deprecate_eof = deprecate_eof
        self.backend: ServerSession | None = None
        self.expected_state: dict = {}
        self.expected_db = database
        self.initial_db = database
        self.exclude = exclude
        self.ended = False

    # -- the shell, played by the test -----------------------------------------------------------
    def carry_out(self, actions, data, *, borrow_fails=False, cut_at=None, excuse=False) -> list[bytes]:
        """Do what the machine says, as session.py does; the bytes the client got."""
        to_client: list[bytes] = []
        queue = list(actions)
        relayed = 0
        while True:
            while queue:
                action = queue.pop(0)
                match action:
                    case Borrow(state, db):
                        assert self.backend is None and not self.core.attached
                        assert db == self.expected_db
                        if borrow_fails:
                            queue += self.core.borrow_failed(ErrPacket(ErrorCode.BORROW_TIMEOUT, "Timed-out", "08001"))
                            continue
                        self.backend = ServerSession(self.deprecate_eof, db=db)
                        self.backend.autocommit = state.get("autocommit", b"autocommit = 1").endswith(b"1")
                        queue += self.core.backend_ready()
                    case ToBackend(raw):
                        assert self.backend is not None and self.core.attached
                        self.backend.execute(raw)
                    case ToClient(payload):
                        to_client.append(payload)
                    case Adopt(state, db):
                        assert self.backend is not None
                        self.backend.db = db
                    case Release(reusable):
                        assert self.backend is not None and not self.core.attached
                        if reusable:
                            assert not self.backend.in_trans, "a backend went back to the pool inside a transaction"
                        else:
                            assert excuse or not self.backend.in_trans, "an open transaction was dropped silently"
                        self.backend = None
                    case Hold():
                        assert self.backend is not None and self.backend.in_trans
                    case RollBack():
                        assert self.backend is not None
                        self.backend = None
                    case Pin():
                        assert self.backend is not None and self.core.phase is Phase.PINNED
                        self.ended = True  # the shell pipes from here on; the machine is done
                    case Close():
                        self.ended = True
            if self.core.phase not in (Phase.RELAYING, Phase.CHECKING):
                return to_client
            assert self.backend is not None
            pending = bytes(self.backend.out)
            self.backend.out.clear()
            if not pending or (cut_at is not None and relayed >= cut_at):
                excuse = True
                queue += self.core.backend_lost("the database closed the connection")
                continue
            size = max(1, min(len(pending), data.draw(st.integers(1, 64)) if len(pending) > 1 else 1))
            self.backend.out += pending[size:]
            relayed += size
            queue += self.core.backend_data(pending[:size])

    def command(self, payload: bytes, data, **options) -> list[bytes]:
        seq = data.draw(st.integers(0, 254))
        sent = self.carry_out(self.core.command(packet(seq, payload), payload, seq), data, **options)
        return sent

    # -- rules: one client command each ------------------------------------------------------------
    @precondition(lambda self: not self.ended)
    @rule(sql=st.sampled_from(STATEMENTS), borrow_fails=st.booleans(), data=st.data())
    def query(self, sql, borrow_fails, data):
        borrow_fails = borrow_fails and not self.core.attached
        statement = classify(sql.encode(), self.exclude)
        sent = self.command(bytes((Command.QUERY,)) + sql.encode(), data, borrow_fails=borrow_fails)
        if self.core.phase is Phase.PINNED:
            assert statement.action is StatementKind.PIN and not sent  # the server's reply is piped
            return
        reply = b"".join(sent)
        scanner = ResponseScanner(self.deprecate_eof, ResponseKind.RESULT)
        assert scanner.feed(reply) and scanner.extra == b"", "one complete reply per command"
        if scanner.error is None and statement.action is StatementKind.TRACK:
            self.expected_state = apply_tracked(self.expected_state, statement.items)
        if scanner.error is None and statement.action is StatementKind.USE:
            self.expected_db = statement.items[0][0]

    @precondition(lambda self: not self.ended)
    @rule(code=st.sampled_from(SAFE_COMMANDS), name=st.sampled_from(["app", "other", "missing"]), data=st.data())
    def other_command(self, code, name, data):
        argument = name.encode() if code in (Command.INIT_DB, Command.FIELD_LIST) else b""
        reset = code == Command.RESET_CONNECTION  # MySQL's reset rolls an open transaction back: not silent
        sent = b"".join(self.command(bytes((code,)) + argument, data, excuse=reset))
        assert sent, "every command gets a reply"
        if code == Command.INIT_DB and not _is_error(sent):
            self.expected_db = name
        if code == Command.RESET_CONNECTION:
            assert self.backend is None and not self.core.attached
            self.expected_state, self.expected_db = {}, self.initial_db
        if code in (Command.PING, Command.RESET_CONNECTION):
            assert sent[4] == 0x00 and len(sent) == 4 + int.from_bytes(sent[:3], "little")  # the proxy's own OK

    @precondition(lambda self: not self.ended)
    @rule(code=st.sampled_from(OTHER_COMMANDS), body=st.binary(max_size=40), data=st.data())
    def stateful_or_unknown_command(self, code, body, data):
        sent = b"".join(self.command(bytes((code,)) + body, data))
        if code == Command.CHANGE_USER:
            assert _is_error(sent) and self.core.phase is Phase.IDLE
        else:
            assert self.core.phase is Phase.PINNED and self.core.attached

    @precondition(lambda self: not self.ended)
    @rule(
        sql=st.sampled_from(["SELECT a FROM t", "INSERT INTO t VALUES (1)"]), cut_at=st.integers(0, 40), data=st.data()
    )
    def backend_lost_mid_reply(self, sql, cut_at, data):
        sent = b"".join(self.command(bytes((Command.QUERY,)) + sql.encode(), data, cut_at=cut_at))
        if self.ended:  # part of the reply was relayed: only a close tells the client
            assert self.backend is None and sent
        elif self.backend is None and _is_error(sent):  # nothing relayed yet: the stand-in's own error
            assert int.from_bytes(sent[5:7], "little") in (ErrorCode.CONNECTION_KILLED, 1054)

    @precondition(lambda self: not self.ended and self.core.attached and self.core.phase is Phase.IDLE)
    @rule()
    def database_kills_the_held_backend(self):
        actions = self.core.held_backend_lost()
        self.carry_out(actions, None, excuse=True)
        assert self.ended and self.backend is None

    @precondition(lambda self: not self.ended)
    @rule(data=st.data())
    def client_quits(self, data):
        self.command(bytes((Command.QUIT,)), data, excuse=True)  # a client that quits ends its transaction
        assert self.ended and self.backend is None and self.core.phase is Phase.CLOSED

    @precondition(lambda self: not self.ended)
    @rule()
    def client_vanishes(self):
        self.carry_out(self.core.client_left(), None, excuse=True)
        self.ended = True
        assert self.backend is None and self.core.client_left() == ()

    # -- invariants -----------------------------------------------------------------------------------
    @invariant()
    def a_backend_is_held_exactly_while_needed(self):
        if self.ended:
            return
        assert self.core.phase is Phase.IDLE
        assert self.core.attached == (self.backend is not None)
        if self.backend is not None:
            assert self.backend.in_trans, "a backend is held between commands without a transaction"
        assert self.core.state == self.expected_state
        assert self.core.db == self.expected_db


def _is_error(reply: bytes) -> bool:
    return reply[4:5] == b"\xff"


SessionMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_session_machine = SessionMachine.TestCase


# -- hostile bytes ---------------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(
    payload=st.binary(max_size=64),
    reply=st.binary(max_size=200),
    chunks=st.lists(st.integers(1, 50), max_size=20),
    deprecate_eof=st.booleans(),
)
def test_any_bytes_from_either_side_end_in_a_relay_a_release_or_a_close(payload, reply, chunks, deprecate_eof):
    core = SessionCore(deprecate_eof=deprecate_eof, database="app")
    actions = list(core.command(packet(0, payload), payload, 0))
    attached = lost = False
    position = 0
    for _ in range(1000):
        while actions:
            action = actions.pop(0)
            if isinstance(action, Borrow):
                actions += core.backend_ready()
                attached = True
            elif isinstance(action, (Release, RollBack)):
                attached = False
        if core.phase not in (Phase.RELAYING, Phase.CHECKING):
            break
        if position >= len(reply):
            lost = True
            actions += core.backend_lost("the database closed the connection")
            continue
        size = chunks[position % len(chunks)] if chunks else len(reply)
        actions += core.backend_data(reply[position : position + size])
        position += size
    assert core.phase in (Phase.IDLE, Phase.PINNED, Phase.CLOSED)
    assert attached == core.attached
    if lost:
        assert not core.attached  # a broken backend is always given back (and closed)
    elif core.phase is Phase.IDLE and core.attached:
        assert core.status & ServerStatus.IN_TRANS  # held only while the server said a transaction is open


def test_the_shell_cannot_feed_events_out_of_order():
    core = SessionCore(deprecate_eof=True, database=None)
    with pytest.raises(SessionStateError):
        core.backend_ready()
    with pytest.raises(SessionStateError):
        core.backend_data(b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00")
    core.command(packet(0, b"\x03SELECT 1"), b"\x03SELECT 1", 0)
    with pytest.raises(SessionStateError):
        core.command(packet(0, b"\x03SELECT 1"), b"\x03SELECT 1", 0)


@given(seq=st.integers(0, 255))
def test_replies_of_the_proxy_itself_follow_the_commands_sequence_id(seq):
    core = SessionCore(deprecate_eof=True, database=None)
    (reply,) = core.command(packet(seq, b"\x0e"), b"\x0e", seq)
    assert reply.data[3] == (seq + 1) & 0xFF and reply.data[4] == 0x00
    (error, close) = core.command(packet(seq, b""), b"", seq)
    assert error.data[3] == (seq + 1) & 0xFF and error.data[4] == 0xFF and isinstance(close, Close)

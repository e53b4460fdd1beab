"""One client session's logic without I/O: what to do with each client command and each chunk of a reply.

Built like h11: a pure state machine that is told what happened (a command arrived, a backend was borrowed, bytes
came from the database, the database connection broke) and answers with actions for the I/O shell to carry out
(borrow a backend, send these bytes to the database or the client, release or hold the backend, pin, close).
It never blocks, reads a clock or touches a socket, so every path (pinning, transactions, each ``COM_*``,
hostile bytes from either side) is driven by property tests without a database; ``session.py`` is the asyncio
shell that runs it against real sockets.

Multiplexing: each command borrows a backend (or keeps the one held for an open transaction) and the reply is
relayed byte for byte while a ``ResponseScanner`` finds its end and final status flags; without ``IN_TRANS`` the
backend goes back to the pool at once. Pinning: once a statement leaves session state the proxy cannot move
(``classify``), the backend belongs to this client until it leaves and the shell pipes bytes both ways.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .classify import StatementKind, apply_tracked, classify
from .constants import Command, ErrorCode, ServerStatus
from .protocol import ErrPacket, ProtocolError, ResponseKind, ResponseScanner, err_payload, ok_payload, packet

_IN_TRANS = ServerStatus.IN_TRANS.value  # tested per command: plain ints on the hot path
_AUTOCOMMIT = ServerStatus.AUTOCOMMIT.value
_DB_DROPPED = ServerStatus.DB_DROPPED.value
_PING = packet(0, bytes((Command.PING,)))


class Phase(enum.Enum):
    IDLE = "idle"  # between commands (a backend may be held for an open transaction)
    BORROWING = "borrowing"  # waiting for a backend
    RELAYING = "relaying"  # the command went to the backend; its reply is being relayed
    CHECKING = "checking"  # asking the backend for its status after an ERR inside a transaction
    PINNED = "pinned"  # the shell pipes bytes both ways until the client leaves
    CLOSED = "closed"


# the machine tests its phase several times per command: members bound once (Enum attribute lookups are slow)
_IDLE, _BORROWING, _RELAYING, _CHECKING, _PINNED, _CLOSED = Phase


# -- actions: what the shell must do, in order (tuples: a few are made per command, so they must be cheap) -------
class Borrow(NamedTuple):
    """Get a backend with this tracked state and default database, then call ``backend_ready`` or
    ``borrow_failed``."""

    state: Mapping[str, bytes]
    db: str | None


class ToBackend(NamedTuple):
    data: bytes


class ToClient(NamedTuple):
    data: bytes


class Adopt(NamedTuple):
    """The attached backend now carries this tracked state and default database."""

    state: Mapping[str, bytes]
    db: str | None


class Release(NamedTuple):
    """Give the attached backend back; ``reusable=False`` closes it (its state is unknown)."""

    reusable: bool


class Hold(NamedTuple):
    """Keep the attached backend for the client's open transaction (parked until its next command)."""


class RollBack(NamedTuple):
    """The client left during its transaction: roll it back on the attached backend, then release it."""


class Pin(NamedTuple):
    """Pipe bytes both ways between the client and the attached backend until either side ends."""

    reason: str


class Close(NamedTuple):
    """End the session once what was sent is flushed; ``linger`` lets the client read it before the close."""

    linger: bool = False


Action = Borrow | ToBackend | ToClient | Adopt | Release | Hold | RollBack | Pin | Close
Actions = tuple[Action, ...]
HOLD, ROLL_BACK = Hold(), RollBack()


class SessionStateError(RuntimeError):
    """The shell called the machine in a phase where that event cannot happen (a bug in the shell)."""


@dataclass(slots=True)
class _Pending:
    raw: bytes
    kind: ResponseKind
    new_state: dict[str, bytes] | None = None
    use_db: str | None = None
    pin: str = ""


class SessionCore:
    """The machine for one logged-in client; ``phase`` says which events it accepts."""

    def __init__(self, *, deprecate_eof: bool, database: str | None, exclude_variable_sets: bool = False):
        self.phase = _IDLE
        self.state: dict[str, bytes] = {}
        self.db = self.initial_db = database
        self.status = _AUTOCOMMIT
        self.attached = False  # a backend is attached: in use, held for a transaction, or pinned
        self.pin_reason = ""
        self._tainted = False  # the attached backend's tracked state is unknown: never reuse it
        self._deprecate_eof = deprecate_eof
        self._exclude_sets = exclude_variable_sets
        self._reply_seq = 1
        self._pending: _Pending | None = None
        self._scanner: ResponseScanner | None = None
        self._relayed = False

    # -- events from the client ------------------------------------------------------------------
    def command(self, raw: bytes, payload: bytes, seq: int) -> Actions:
        """A complete command: ``raw`` its wire packets, ``payload`` their joined payload, ``seq`` the last id."""
        self._expect(_IDLE)
        self._reply_seq = seq + 1
        if not payload:
            return self._reply_error(ErrorCode.UNKNOWN_COM, "Unknown command") + (Close(),)
        code = payload[0]
        if code == Command.QUERY:
            return self._query(raw, payload)
        if code == Command.QUIT:
            return self.client_left() + (Close(),)
        if code == Command.PING:
            return (self._reply(ok_payload(self.status & (_AUTOCOMMIT | _IN_TRANS))),)
        if code == Command.INIT_DB:
            return self._statement(_Pending(raw, ResponseKind.SINGLE, use_db=_text(payload[1:])))
        if code == Command.FIELD_LIST:
            return self._statement(_Pending(raw, ResponseKind.FIELD_LIST))
        if code == Command.STATISTICS:
            return self._statement(_Pending(raw, ResponseKind.SINGLE))
        if code == Command.RESET_CONNECTION:
            return self._reset_connection()
        if code == Command.CHANGE_USER:
            return self._reply_error(
                ErrorCode.NOT_SUPPORTED_YET, "COM_CHANGE_USER is not supported by the RDS Proxy stand-in", "HY000"
            )
        # prepared statements and anything else stateful or unknown
        return self._statement(_Pending(raw, ResponseKind.RESULT, pin=f"command 0x{code:02x}"))

    def oversized(self, seq: int) -> Actions:
        """A command above max_allowed_packet (not read): MySQL's error 1153, then close."""
        self._expect(_IDLE)
        self._reply_seq = seq + 1
        message = "Got a packet bigger than 'max_allowed_packet' bytes"
        return self._reply_error(ErrorCode.NET_PACKET_TOO_LARGE, message) + self.client_left() + (Close(linger=True),)

    def client_left(self) -> Actions:
        """The client is gone (or the session ends): what to do with an attached backend. Idempotent."""
        if self.phase is _CLOSED:
            return ()
        busy = self.phase is not _IDLE
        self.phase = _CLOSED
        if not self.attached:
            return ()
        self.attached = False
        if busy or self.pin_reason or self._tainted:
            return (Release(reusable=False),)  # mid-command, pinned or after a failed SET: its state is unknown
        return (ROLL_BACK,)  # held for a transaction the client abandoned

    def client_stalled(self) -> Actions:
        """The client stopped reading while holding a backend: close the backend, drop the client."""
        if self.phase is _CLOSED:
            return ()
        return self.client_left() + (Close(),)

    # -- events from the pool and the backend --------------------------------------------------------
    def backend_ready(self) -> Actions:
        self._expect(_BORROWING)
        self.attached = True
        return self._send_pending()

    def borrow_failed(self, error: ErrPacket) -> Actions:
        self._expect(_BORROWING)
        self.phase = _IDLE
        self._pending = None
        return (self._reply(err_payload(error.code, error.message, error.sqlstate)),)

    def backend_data(self, data: bytes) -> Actions:
        """Bytes from the backend: relayed (RELAYING) or read for the proxy itself (CHECKING)."""
        if self.phase is _CHECKING:
            return self._checked(data)
        self._expect(_RELAYING)
        scanner = self._scanner
        assert scanner is not None
        try:
            done = scanner.feed(data)
        except ProtocolError as exc:
            return self.backend_lost(str(exc))
        if done and scanner.extra:
            return self.backend_lost("the database sent data past the end of a response")
        self._relayed = True
        if not done:
            return (ToClient(data),)
        return (ToClient(data),) + self._settle(scanner)

    def backend_lost(self, reason: str) -> Actions:
        """The attached backend failed mid-command (closed, reset, unparsable reply)."""
        if self.phase is _CHECKING:  # the client already has its reply
            self._detach_idle()
            return (Release(reusable=False),)
        self._expect(_RELAYING)
        self._detach_idle()
        if self._relayed:  # part of the reply reached the client: only a close tells it something broke
            return (Release(reusable=False), Close())
        message = f"Connection was killed: the RDS Proxy stand-in lost its database connection ({reason})"
        return (Release(reusable=False), self._reply(err_payload(ErrorCode.CONNECTION_KILLED, message)))

    def held_backend_lost(self) -> Actions:
        """Between commands, the database closed the backend held for this client's transaction: the
        transaction is gone, so the client is disconnected as the database would have done, and the slot freed."""
        self._expect(_IDLE)
        if not self.attached:
            raise SessionStateError("no backend is held")
        self._detach_idle()
        self.phase = _CLOSED
        killed = packet(0, err_payload(ErrorCode.CONNECTION_KILLED, "Connection was killed"))
        return (Release(reusable=False), ToClient(killed), Close())

    # -- internals -----------------------------------------------------------------------------------
    def _query(self, raw: bytes, payload: bytes) -> Actions:
        statement = classify(payload[1:], self._exclude_sets)
        if statement.action is StatementKind.PIN:
            return self._statement(_Pending(raw, ResponseKind.RESULT, pin=statement.reason))
        if statement.action is StatementKind.TRACK:
            return self._statement(
                _Pending(raw, ResponseKind.RESULT, new_state=apply_tracked(self.state, statement.items))
            )
        if statement.action is StatementKind.USE:
            return self._statement(_Pending(raw, ResponseKind.RESULT, use_db=statement.items[0][0]))
        return self._statement(_Pending(raw, ResponseKind.RESULT))

    def _statement(self, pending: _Pending) -> Actions:
        """A tracked SET runs on a backend already brought to the state the SET produces (so the SET itself is a
        no-op there, and a bad value fails the same way either time)."""
        self._pending = pending
        if self.attached:
            return self._send_pending()
        self.phase = _BORROWING
        state = pending.new_state if pending.new_state is not None else self.state
        return (Borrow(state, self.db),)

    def _send_pending(self) -> Actions:
        pending = self._pending
        assert pending is not None
        if pending.pin:
            self.phase = _PINNED
            self.pin_reason = pending.pin
            self._pending = None
            return (ToBackend(pending.raw), Pin(pending.pin))
        self.phase = _RELAYING
        self._scanner = ResponseScanner(self._deprecate_eof, pending.kind)
        self._relayed = False
        return (ToBackend(pending.raw),)

    def _settle(self, scanner: ResponseScanner) -> Actions:
        """The reply is complete: adopt what it changed, then keep the backend while a transaction is open."""
        pending = self._pending
        assert pending is not None
        adopted: Actions = ()
        if scanner.error is None:
            if pending.new_state is not None:
                self.state = pending.new_state
                adopted = (Adopt(self.state, self.db),)
            elif pending.use_db is not None:
                self.db = pending.use_db
                adopted = (Adopt(self.state, self.db),)
        elif pending.new_state is not None:
            # a SET may have applied some of its items before failing: the backend's state is unknown
            if not self.status & _IN_TRANS:
                self._detach_idle()
                return (Release(reusable=False),)
            self._tainted = True  # keep the client's transaction; the backend is closed when it ends
        status = scanner.status
        if status is None:  # ended with ERR, which carries no status
            if self.status & _IN_TRANS or not self.status & _AUTOCOMMIT:
                self.phase = _CHECKING  # ask the server whether the transaction survived
                self._scanner = ResponseScanner(self._deprecate_eof, ResponseKind.SINGLE)
                return adopted + (ToBackend(_PING),)
            status = self.status
        return adopted + self._finish(status)

    def _checked(self, data: bytes) -> Actions:
        scanner = self._scanner
        assert scanner is not None
        try:
            done = scanner.feed(data)
        except ProtocolError as exc:
            return self.backend_lost(str(exc))
        if not done:
            return ()
        if scanner.extra or scanner.error is not None:
            return self.backend_lost("the database did not answer the proxy's status check")
        return self._finish(self.status if scanner.status is None else scanner.status)

    def _finish(self, status: int) -> Actions:
        adopted: Actions = ()
        if status & _DB_DROPPED and self.db is not None:
            self.db = None
            adopted = (Adopt(self.state, None),)
        self.status = status
        self.phase = _IDLE
        self._pending = None
        if status & _IN_TRANS:
            return adopted + (HOLD,)
        self.attached = False
        reusable, self._tainted = not self._tainted, False
        return adopted + (Release(reusable=reusable),)

    def _reset_connection(self) -> Actions:
        """COM_RESET_CONNECTION: forget tracked state and any open transaction."""
        released: Actions = ()
        if self.attached:
            self._detach_idle()
            released = (Release(reusable=False),)
        self.state = {}
        self.db = self.initial_db
        self.status = _AUTOCOMMIT
        return released + (self._reply(ok_payload()),)

    def _detach_idle(self) -> None:
        self.attached = False
        self._tainted = False
        self.phase = _IDLE
        self._pending = None

    def _reply(self, payload: bytes) -> ToClient:
        return ToClient(packet(self._reply_seq, payload))

    def _reply_error(self, code: ErrorCode, message: str, sqlstate: str | None = None) -> Actions:
        return (self._reply(err_payload(code, message, sqlstate)),)

    def _expect(self, phase: Phase) -> None:
        if self.phase is not phase:
            raise SessionStateError(f"event for phase {phase.value} in phase {self.phase.value}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")

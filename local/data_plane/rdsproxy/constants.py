"""The MySQL protocol's numbers, once: capability flags, server status flags, commands, error codes.

Names and values follow the MySQL client/server protocol documentation (and MariaDB's, which shares them for
everything here). The rest of ``local/`` imports these enums rather than spelling a number again.

Client-supplied values are kept as plain ``int`` and only *tested* against members (``flags & Capability.SSL``):
turning an arbitrary 32-bit value into an ``IntFlag`` would cache one pseudo-member per distinct value, and
hostile clients choose the values. Hot paths that test a flag per packet use ``.value`` once at import.
"""

from __future__ import annotations

import enum


class Capability(enum.IntFlag):
    """Capability flags of the handshake (``CLIENT_*``)."""

    LONG_PASSWORD = 1
    FOUND_ROWS = 1 << 1
    LONG_FLAG = 1 << 2
    CONNECT_WITH_DB = 1 << 3
    NO_SCHEMA = 1 << 4
    COMPRESS = 1 << 5
    ODBC = 1 << 6
    LOCAL_FILES = 1 << 7
    IGNORE_SPACE = 1 << 8
    PROTOCOL_41 = 1 << 9
    INTERACTIVE = 1 << 10
    SSL = 1 << 11
    IGNORE_SIGPIPE = 1 << 12
    TRANSACTIONS = 1 << 13
    RESERVED = 1 << 14
    SECURE_CONNECTION = 1 << 15
    MULTI_STATEMENTS = 1 << 16
    MULTI_RESULTS = 1 << 17
    PS_MULTI_RESULTS = 1 << 18
    PLUGIN_AUTH = 1 << 19
    CONNECT_ATTRS = 1 << 20
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    SESSION_TRACK = 1 << 23
    DEPRECATE_EOF = 1 << 24
    OPTIONAL_RESULTSET_METADATA = 1 << 25
    ZSTD_COMPRESSION = 1 << 26
    QUERY_ATTRIBUTES = 1 << 27
    MULTI_FACTOR_AUTHENTICATION = 1 << 28
    CAPABILITY_EXTENSION = 1 << 29
    SSL_VERIFY_SERVER_CERT = 1 << 30
    REMEMBER_OPTIONS = 1 << 31


class ServerStatus(enum.IntFlag):
    """Status flags of OK and EOF packets (``SERVER_*``)."""

    IN_TRANS = 1
    AUTOCOMMIT = 1 << 1
    MORE_RESULTS_EXISTS = 1 << 3
    NO_GOOD_INDEX_USED = 1 << 4
    NO_INDEX_USED = 1 << 5
    CURSOR_EXISTS = 1 << 6
    LAST_ROW_SENT = 1 << 7
    DB_DROPPED = 1 << 8
    NO_BACKSLASH_ESCAPES = 1 << 9
    METADATA_CHANGED = 1 << 10
    QUERY_WAS_SLOW = 1 << 11
    PS_OUT_PARAMS = 1 << 12
    IN_TRANS_READONLY = 1 << 13
    SESSION_STATE_CHANGED = 1 << 14


class Command(enum.IntEnum):
    """First payload byte of a client command (``COM_*``)."""

    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    CREATE_DB = 0x05
    DROP_DB = 0x06
    REFRESH = 0x07
    SHUTDOWN = 0x08
    STATISTICS = 0x09
    PROCESS_INFO = 0x0A
    CONNECT = 0x0B
    PROCESS_KILL = 0x0C
    DEBUG = 0x0D
    PING = 0x0E
    TIME = 0x0F
    DELAYED_INSERT = 0x10
    CHANGE_USER = 0x11
    BINLOG_DUMP = 0x12
    TABLE_DUMP = 0x13
    CONNECT_OUT = 0x14
    REGISTER_SLAVE = 0x15
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    DAEMON = 0x1D
    BINLOG_DUMP_GTID = 0x1E
    RESET_CONNECTION = 0x1F


class ErrorCode(enum.IntEnum):
    """Server error codes the stand-in sends itself, each with the SQLSTATE MySQL pairs it with.

    Only server-range codes: 2000-2999 are client-library codes, and a server that sends one confuses clients
    (the mariadb CLI shows a 2013 sent by a server as "2027 malformed packet").
    """

    sqlstate: str

    def __new__(cls, code: int, sqlstate: str) -> ErrorCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.sqlstate = sqlstate
        return member

    HANDSHAKE_ERROR = 1043, "08S01"
    ACCESS_DENIED = 1045, "28000"
    UNKNOWN_COM = 1047, "08S01"
    SERVER_SHUTDOWN = 1053, "08S01"  # the database cannot be reached when a backend is opened
    NET_PACKET_TOO_LARGE = 1153, "08S01"
    NOT_SUPPORTED_YET = 1235, "42000"
    CONNECTION_KILLED = 1927, "70100"  # the database connection was lost in the middle of a command
    SECURE_TRANSPORT_REQUIRED = 3159, "HY000"
    BORROW_TIMEOUT = 9501, "08001"  # RDS Proxy's: no database connection became free within the borrow timeout


#: Capabilities offered to clients. Left out on purpose: COMPRESS, LOCAL_FILES (LOAD DATA LOCAL), SESSION_TRACK and
#: QUERY_ATTRIBUTES (they change packet formats in ways a shared backend cannot serve per client). SSL is added to
#: the greeting when TLS is configured; it is the client link's business and never asked of a backend.
PROXY_CAPABILITIES = (
    Capability.LONG_PASSWORD
    | Capability.FOUND_ROWS
    | Capability.LONG_FLAG
    | Capability.CONNECT_WITH_DB
    | Capability.IGNORE_SPACE
    | Capability.PROTOCOL_41
    | Capability.INTERACTIVE
    | Capability.TRANSACTIONS
    | Capability.SECURE_CONNECTION
    | Capability.MULTI_STATEMENTS
    | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS
    | Capability.PLUGIN_AUTH
    | Capability.CONNECT_ATTRS
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.DEPRECATE_EOF
)
#: Client-chosen flags that change what the server sends or how it parses: a backend is only shared between
#: clients that negotiated the same subset (part of the pool key).
SESSION_CAPABILITIES = (
    Capability.FOUND_ROWS
    | Capability.LONG_FLAG
    | Capability.IGNORE_SPACE
    | Capability.INTERACTIVE
    | Capability.MULTI_STATEMENTS
    | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS
    | Capability.DEPRECATE_EOF
)
#: Always requested from the backend.
BACKEND_BASE_CAPABILITIES = (
    Capability.LONG_PASSWORD
    | Capability.PROTOCOL_41
    | Capability.TRANSACTIONS
    | Capability.SECURE_CONNECTION
    | Capability.PLUGIN_AUTH
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CONNECT_WITH_DB
)

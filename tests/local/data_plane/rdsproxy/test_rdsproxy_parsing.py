"""Property tests of the stand-in's parsing of client bytes before login, and its new settings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.data_plane.rdsproxy.client_packets import HandshakeResponse, MalformedPacket, parse_handshake_response
from local.data_plane.rdsproxy.config import ProxyConfig, ProxyConfigError
from local.data_plane.rdsproxy.constants import PROXY_CAPABILITIES, Capability
from local.data_plane.rdsproxy.protocol import lenenc_int
from modules.pool_rules import ConnectionPoolRules
from modules.validation import SettingsError
from tests.local.data_plane.rdsproxy.standin_support import UNIT_FIELDS as BASE

FLAGS = int(
    Capability.PROTOCOL_41
    | Capability.SECURE_CONNECTION
    | Capability.PLUGIN_AUTH
    | Capability.CONNECT_WITH_DB
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CONNECT_ATTRS
)
NAMES = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=40)


def build(
    flags: int, user: str, token: bytes, database: str | None, plugin: str | None, attrs: list[tuple[bytes, bytes]]
) -> bytes:
    data = struct.pack("<IIB", flags, 1 << 24, 45) + bytes(23) + user.encode() + b"\x00"
    data += (
        lenenc_int(len(token)) + token
        if flags & Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
        else (bytes((len(token),)) + token)
    )
    if flags & Capability.CONNECT_WITH_DB:
        data += (database or "").encode() + b"\x00"
    if flags & Capability.PLUGIN_AUTH:
        data += (plugin or "").encode() + b"\x00"
    if flags & Capability.CONNECT_ATTRS:
        body = b"".join(lenenc_int(len(k)) + k + lenenc_int(len(v)) + v for k, v in attrs)
        data += lenenc_int(len(body)) + body
    return data


@settings(max_examples=300)
@given(data=st.binary(max_size=300), capabilities=st.integers(0, 0xFFFFFFFF))
def test_any_bytes_parse_or_raise_malformed_packet_only(data, capabilities):
    try:
        parsed = parse_handshake_response(data, capabilities)
    except MalformedPacket:
        return
    assert isinstance(parsed, HandshakeResponse)
    assert parsed.capabilities & ~capabilities == 0


@settings(max_examples=200)
@given(
    user=NAMES,
    token=st.binary(max_size=255),
    database=NAMES,
    plugin=NAMES,
    attrs=st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=300)), max_size=5),
    lenenc=st.booleans(),
)
def test_well_formed_responses_round_trip(user, token, database, plugin, attrs, lenenc):
    flags = FLAGS if lenenc else FLAGS & ~Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    parsed = parse_handshake_response(build(flags, user, token, database, plugin, attrs), PROXY_CAPABILITIES)
    assert (parsed.username, parsed.auth_response, parsed.database, parsed.client_plugin) == (
        user,
        token,
        database or None,
        plugin or None,
    )
    assert parsed.charset == 45 and parsed.capabilities == flags


@settings(max_examples=200)
@given(cut=st.integers(min_value=0), user=NAMES, token=st.binary(min_size=1, max_size=40))
def test_every_truncation_before_the_auth_response_ends_is_malformed(cut, user, token):
    packet = build(FLAGS, user, token, None, None, [])
    end_of_token = 32 + len(user.encode()) + 1 + 1 + len(token)
    with pytest.raises(MalformedPacket):
        parse_handshake_response(packet[: cut % end_of_token], PROXY_CAPABILITIES)


def test_user_name_without_nul_and_lying_lengths_are_malformed():
    fixed = struct.pack("<IIB", FLAGS, 1 << 24, 45) + bytes(23)
    for packet, where in [
        (fixed + b"lambdaX", "user name"),
        (fixed + b"u\x00\x30" + b"x" * 10, "auth response"),
        (fixed + b"u\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff", "auth response"),
        (fixed + b"u\x00\xff", "invalid length prefix"),
        (fixed[:31], "filler"),
        (struct.pack("<I", 0) + fixed[4:] + b"u\x00", "protocol 4.1"),
    ]:
        with pytest.raises(MalformedPacket, match=where):
            parse_handshake_response(packet, PROXY_CAPABILITIES)


# -- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("login_timeout", 0, "login_timeout=0: must be in [0.1, 3600]"),
        ("client_write_timeout", float("inf"), "client_write_timeout=inf: must be a number"),
        ("max_allowed_packet", 1023, "max_allowed_packet=1023: must be in [1024, 1073741824]"),
        ("max_allowed_packet", 4096.0, "max_allowed_packet=4096.0: must be an integer"),
        ("init_query", " ", "init_query=' '"),
    ],
)
def test_new_settings_are_validated(field, value, expected):
    with pytest.raises(ProxyConfigError) as caught:
        ProxyConfig(**dict(BASE, **{field: value}))
    assert expected in str(caught.value)
    assert isinstance(caught.value, SettingsError) and caught.value.field_name == field


def test_pool_arithmetic_is_the_shared_pool_rules():
    config = ProxyConfig(
        **BASE,
        max_connections_percent=70,
        max_idle_connections_percent=50,
        session_pinning_filters=frozenset({"EXCLUDE_VARIABLE_SETS"}),
    )
    rules = ConnectionPoolRules(
        max_connections_percent=70, max_idle_connections_percent=50, session_pinning_filters=("EXCLUDE_VARIABLE_SETS",)
    )
    assert config.rules == rules
    assert (config.pool_cap, config.max_idle) == (rules.pool_cap(65), rules.max_idle(65)) == (45, 32)
    assert config.exclude_variable_sets and config.max_allowed_packet == 64 << 20


def test_cli_names_missing_options_and_exits_2(capsys, monkeypatch):
    from local.data_plane.rdsproxy.__main__ import main

    assert main(["--login-timeout", "5"]) == 2
    assert "missing: --backend-port, --db-max-connections, --account" in capsys.readouterr().err
    base = ["--backend-port", "1", "--db-max-connections", "65", "--account", "app-user"]
    assert main(base) == 2  # the account's password is not in the environment
    assert "RDSPROXY_PASSWORD_APP_USER" in capsys.readouterr().err
    monkeypatch.setenv("RDSPROXY_PASSWORD_APP_USER", "pw")
    assert main([*base, "--max-allowed-packet", "10"]) == 2
    assert "max_allowed_packet=10: must be in [1024, 1073741824]" in capsys.readouterr().err

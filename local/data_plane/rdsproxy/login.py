"""A client's login phase within ``login_timeout``: TLS, authentication, and what a failure counts and logs.

Failures cost only that client. A refusal (bad token, no TLS, no account, wrong password, malformed handshake) is
logged as one INFO line with the client's address, the user it gave and the check that failed, e.g.
``refused login user=app_user from 127.0.0.1:51234: IAM authentication failed: expired``, and counted. A broken TLS
handshake or a client that leaves is the client's own failure (DEBUG); a client still not logged in at
``login_timeout`` (the TLS handshake included) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping

from .accounts import StaticAccount
from .config import ProxyConfig
from .handshake import AuthFailed, ClientLogin, ClientStreams, ServerInfo, accept_client
from .security import ClientSecurity
from .stats import Stats

log = logging.getLogger(__name__)


async def log_in(
    streams: ClientStreams,
    *,
    connection_id: int,
    config: ProxyConfig,
    accounts: Mapping[str, StaticAccount],
    security: ClientSecurity,
    stats: Stats,
    server_info: ServerInfo,
    flush: Callable[[], Awaitable[bool]],
) -> ClientLogin | None:
    """The logged-in client, or None (counted, logged) when it did not get in; ``streams`` may now be TLS ones."""
    peer = client_address(streams.writer)
    try:
        return await asyncio.wait_for(
            accept_client(
                streams,
                connection_id=connection_id,
                server=server_info,
                accounts=accounts,
                tls=security.tls,
                iam=security.iam,
                tls_required=security.tls_required,
            ),
            config.login_timeout,
        )
    except TimeoutError:
        stats.login_timeouts += 1
        log.debug("client %d from %s did not log in within %s s", connection_id, peer, config.login_timeout)
        return None
    except AuthFailed as exc:
        stats.auth_failed(exc.reason)
        log.info("refused login user=%s from %s: %s", "?" if exc.user is None else exc.user, peer, exc.check)
        await flush()
        return None
    except (asyncio.IncompleteReadError, OSError) as exc:  # ssl.SSLError (garbage instead of TLS) is an OSError
        stats.auth_failed("")
        if isinstance(exc, ssl.SSLError):
            stats.tls_handshake_failures += 1
        log.debug("client %d from %s failed to log in: %s", connection_id, peer, exc)
        return None
    finally:
        if streams.tls:
            stats.tls_clients += 1


def client_address(writer) -> str:
    """``host:port`` of the client (``[v6]:port`` for IPv6), or ``?`` when the socket no longer knows it."""
    peer = writer.get_extra_info("peername")
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "?"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

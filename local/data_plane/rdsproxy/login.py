"""A client's login phase within ``login_timeout``: TLS, authentication, and what a failure counts and logs.

Failures cost only that client: a refusal (bad token, no TLS, bad password) is logged at INFO with the reason and
counted; a broken TLS handshake or a client that leaves is a client failure (DEBUG); a client still not logged in
at ``login_timeout`` (the TLS handshake included) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

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
    security: ClientSecurity,
    stats: Stats,
    server_info: ServerInfo,
    flush: Callable[[], Awaitable[bool]],
) -> ClientLogin | None:
    """The logged-in client, or None (counted, logged) when it did not get in; ``streams`` may now be TLS ones."""
    try:
        return await asyncio.wait_for(
            accept_client(
                streams,
                connection_id=connection_id,
                server=server_info,
                user=config.client_user,
                password=config.client_password,
                tls=security.tls,
                iam=security.iam,
                tls_required=security.tls_required,
            ),
            config.login_timeout,
        )
    except TimeoutError:
        stats.login_timeouts += 1
        log.debug("client %d did not log in within %s s", connection_id, config.login_timeout)
        return None
    except AuthFailed as exc:
        stats.auth_failed(exc.reason)
        log.info("client %d refused: %s", connection_id, exc)
        await flush()
        return None
    except (asyncio.IncompleteReadError, OSError) as exc:  # ssl.SSLError (garbage instead of TLS) is an OSError
        stats.auth_failed("")
        if isinstance(exc, ssl.SSLError):
            stats.tls_handshake_failures += 1
        log.debug("client %d failed to log in: %s", connection_id, exc)
        return None
    finally:
        if streams.tls:
            stats.tls_clients += 1

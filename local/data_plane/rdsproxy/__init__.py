"""Local stand-in for Amazon RDS Proxy: MySQL protocol, multiplexing, RDS Proxy's limits.

See README.md in this folder for what it emulates and what it does not.
"""

from .accounts import Account, SecretAccount, StaticAccount
from .config import EXCLUDE_VARIABLE_SETS, ProxyConfig, ProxyConfigError
from .server import Proxy, ProxyProcess, ProxyServer

__all__ = [
    "EXCLUDE_VARIABLE_SETS",
    "Account",
    "Proxy",
    "ProxyConfig",
    "ProxyConfigError",
    "ProxyProcess",
    "ProxyServer",
    "SecretAccount",
    "StaticAccount",
]

"""The database accounts the stand-in logs in with: one per client user, as RDS Proxy's ``auth`` blocks give it.

RDS Proxy holds one Secrets Manager secret per database user; a client that logs in as user U gets pooled
database connections opened with the credentials of U's secret, and a user with no secret cannot log in. Here an
account is either static (user and password given directly: throw-away setups, tests) or a secret ARN, read once at
start through the emulator's Secrets Manager (the secret's JSON names the user, as RDS's own secrets do).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from local.data_plane.secrets import SECRET_ARN, SecretError, read_db_secret

#: MariaDB allows 80 characters in a user name (MySQL 32); a NUL would end it on the wire.
USER_NAME = re.compile(r"^[^\x00]{1,80}$")


@dataclass(frozen=True)
class StaticAccount:
    """A database user and its password, given directly."""

    user: str
    password: str = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password}


@dataclass(frozen=True)
class SecretAccount:
    """A database account held in a Secrets Manager secret (JSON ``{"username", "password"}``), read at start."""

    secret_arn: str

    def to_json(self) -> dict[str, str]:
        return {"secret_arn": self.secret_arn}


Account = StaticAccount | SecretAccount


class AccountError(ValueError):
    """An account is malformed, duplicated or cannot be read; the message names it (never a password)."""


def account_from_json(fields: Mapping[str, object]) -> Account:
    """The account a ``to_json()`` dict describes (the child process's config file)."""
    if set(fields) == {"secret_arn"}:
        return SecretAccount(str(fields["secret_arn"]))
    if set(fields) == {"user", "password"}:
        return StaticAccount(str(fields["user"]), str(fields["password"]))
    raise AccountError(f"account with fields {sorted(fields)}: expected user+password or secret_arn")


def check_accounts(accounts: object) -> tuple[Account, ...]:
    """The accounts as a tuple; AccountError names the first that is malformed or a user given twice."""
    if isinstance(accounts, (str, bytes, Mapping)) or not isinstance(accounts, Iterable):
        raise AccountError("not a list of StaticAccount or SecretAccount")
    checked = tuple(accounts)
    if not checked:
        raise AccountError("no account: clients could not log in as anyone")
    users: set[str] = set()
    arns: set[str] = set()
    for account in checked:
        if isinstance(account, StaticAccount):
            if not isinstance(account.user, str) or not USER_NAME.match(account.user):
                raise AccountError(f"user {account.user!r}: must be 1-80 characters without NUL")
            if not isinstance(account.password, str):
                raise AccountError(f"user {account.user!r}: the password must be a string")
            if account.user in users:
                raise AccountError(f"user {account.user!r} has two accounts; each user may have one")
            users.add(account.user)
        elif isinstance(account, SecretAccount):
            if not isinstance(account.secret_arn, str) or not SECRET_ARN.match(account.secret_arn):
                raise AccountError(
                    f"secret_arn {account.secret_arn!r}: must be a Secrets Manager ARN (arn:aws:secretsmanager:...)"
                )
            if account.secret_arn in arns:
                raise AccountError(f"secret {account.secret_arn} is named twice")
            arns.add(account.secret_arn)
        else:
            raise AccountError(f"{account!r}: must be a StaticAccount or a SecretAccount")
    return checked


def resolve_accounts(accounts: Iterable[Account], secrets_endpoint: str) -> dict[str, StaticAccount]:
    """Every account by user name, secrets read through ``secrets_endpoint``; AccountError names what failed."""
    resolved: dict[str, StaticAccount] = {}
    for account in accounts:
        if isinstance(account, SecretAccount):
            try:
                user, password = read_db_secret(secrets_endpoint, account.secret_arn)
            except SecretError as exc:
                raise AccountError(str(exc)) from None
            static = StaticAccount(user, password)
        else:
            static = account
        if static.user in resolved:
            raise AccountError(f"user {static.user!r} has two accounts (check the secrets' usernames)")
        resolved[static.user] = static
    return resolved

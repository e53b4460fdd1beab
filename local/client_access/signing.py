"""Whose credentials sign a client's RDS IAM auth token, and the token (``generate_db_auth_token``, as in AWS).

The stand-in admits tokens signed with keys the emulator issued (or the runtime's), decided by the signer's
policies. So the client signs with:

1. the credentials in its environment (``AWS_ACCESS_KEY_ID``…, a profile) when the emulator issued them: an IAM
   user's key, or an ``sts assume-role`` session; their policies decide;
2. otherwise (the local target's dummy credentials are nobody's) a session of a role, assumed through the
   emulator's STS: ``--role-arn``, else the stack's role granted ``rds-db:connect`` as that user (the role of the
   function that logs in as it). In AWS that role's trust policy would admit only Lambda; the emulator does not
   check trust policies, and the command says which principal it used.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from local.common.emulator_credentials import EmulatorLookupError, lookup_credentials
from modules.local_target import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY

_SESSION_NAME_CHARACTERS = re.compile(r"[^\w+=,.@-]")


class SigningError(RuntimeError):
    """No principal can sign for this user; the message says what to set or pass."""


@dataclass(frozen=True)
class SigningIdentity:
    """Credentials to sign with (secrets out of ``repr``) and who they are."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    principal_arn: str
    how: str
    """One line for the user: where these credentials came from."""

    def session(self, region: str) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token or None,
            region_name=region,
        )


def environment_credentials() -> Credentials | None:
    """What any AWS SDK would sign with here: environment variables, then a profile."""
    credentials = boto3.session.Session().get_credentials()
    return credentials.get_frozen_credentials() if credentials is not None else None  # type: ignore[return-value]


def signing_identity(
    emulator_endpoint: str, region: str, role_arn: str | None, found: Credentials | None = None
) -> SigningIdentity:
    """The environment's credentials when the emulator issued them, else a session of ``role_arn``."""
    found = found if found is not None else environment_credentials()
    if found is not None and found.access_key:
        try:
            known = lookup_credentials(emulator_endpoint, found.access_key)
        except EmulatorLookupError as exc:
            raise SigningError(str(exc)) from None
        if known is not None:
            return SigningIdentity(
                found.access_key,
                found.secret_key,
                found.token or "",
                known.principal_arn,
                f"your credentials ({known.principal_arn})",
            )
    if not role_arn:
        raise SigningError(
            "the credentials in this environment were not issued by the emulator, and no role of the stack "
            "connects as this user: pass --role-arn, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY to an "
            "emulator IAM user's key (aws iam create-access-key) whose policies allow rds-db:connect"
        )
    return assumed_role(emulator_endpoint, region, role_arn, found)


def assumed_role(emulator_endpoint: str, region: str, role_arn: str, found: Credentials | None) -> SigningIdentity:
    """A fresh ``sts assume-role`` session of ``role_arn`` from the emulator (with whatever credentials are here)."""
    caller = found if found is not None and found.access_key else None
    sts = boto3.session.Session(
        aws_access_key_id=caller.access_key if caller else LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=caller.secret_key if caller else LOCAL_SECRET_ACCESS_KEY,
        aws_session_token=(caller.token or None) if caller else None,
        region_name=region,
    ).client("sts", endpoint_url=emulator_endpoint)
    session_name = _SESSION_NAME_CHARACTERS.sub("-", f"local-sql-{getpass.getuser()}")[:64]
    try:
        answer: dict[str, Any] = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)
    except (BotoCoreError, ClientError) as exc:
        raise SigningError(f"cannot assume {role_arn} through the emulator at {emulator_endpoint}: {exc}") from None
    keys = answer["Credentials"]
    principal = answer["AssumedRoleUser"]["Arn"]
    return SigningIdentity(
        keys["AccessKeyId"],
        keys["SecretAccessKey"],
        keys["SessionToken"],
        principal,
        f"a session of {role_arn} assumed through the emulator ({principal})",
    )


def auth_token(identity: SigningIdentity, host: str, port: int, user: str, region: str) -> str:
    """``generate_db_auth_token``: a SigV4-presigned ``connect`` for ``host:port`` as ``user`` (valid 15 min)."""
    client = identity.session(region).client("rds")
    return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))

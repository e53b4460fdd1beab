"""Read the DB credentials from the Secrets Manager secret the stack deployed, through the emulator.

RDS keeps the master password in a secret it manages (``manage_master_user_password``), the stack keeps the
application user's in another; RDS Proxy reads the secrets its ``auth`` blocks name with its role. Locally the same
secrets live in the emulator, so the local DB instance and the proxy stand-in read them there too: no password is
handed around on command lines, printed, or written to our files.
"""

from __future__ import annotations

import json
import re

#: A Secrets Manager secret ARN (the region is the endpoint's signing region).
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+$")
_TIMEOUT_S = 10.0


class SecretError(RuntimeError):
    """The secret could not be read or does not hold DB credentials; the message says which and why."""


def region_of(arn: str) -> str:
    match = SECRET_ARN.match(arn or "")
    if not match:
        raise SecretError(f"secret ARN {arn!r} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:...)")
    return match.group("region")


def read_db_secret(endpoint: str, arn: str) -> tuple[str, str]:
    """``(username, password)`` from the JSON secret ``arn`` at the Secrets Manager ``endpoint``.

    Raises `SecretError` naming the ARN (never the value) for a malformed, missing or non-credential secret.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=region_of(arn),
        aws_access_key_id="test",  # the emulator accepts any credentials; real AWS rejects these
        aws_secret_access_key="test",
        config=Config(connect_timeout=_TIMEOUT_S, read_timeout=_TIMEOUT_S, retries={"max_attempts": 1}),
    )
    try:
        value = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise SecretError(
            f"cannot read secret {arn} at {endpoint}: {code} (is it the secret the stack deployed?)"
        ) from None
    except BotoCoreError as exc:
        raise SecretError(f"cannot reach Secrets Manager at {endpoint} to read {arn}: {exc}") from None
    try:
        fields = json.loads(value.get("SecretString") or "")
        username, password = fields["username"], fields["password"]
    except (ValueError, KeyError, TypeError):
        raise SecretError(
            f"secret {arn} does not hold DB credentials (a JSON object with username and password)"
        ) from None
    if not isinstance(username, str) or not username or not isinstance(password, str):
        raise SecretError(f"secret {arn} does not hold DB credentials (username must be a non-empty string)")
    return username, password

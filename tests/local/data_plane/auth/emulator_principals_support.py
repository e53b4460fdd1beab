"""Principals a real emulator issues, for the auth tests: IAM users' keys, assumed-role sessions, connect grants."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from modules.local_target import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY
from tests.local.data_plane.auth.auth_support import ACCOUNT, REGION, connect_arn

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def client(endpoint: str, service: str, **credentials: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=credentials.get("access_key_id", LOCAL_ACCESS_KEY_ID),
        aws_secret_access_key=credentials.get("secret_access_key", LOCAL_SECRET_ACCESS_KEY),
        aws_session_token=credentials.get("session_token") or None,
        region_name=REGION,
    )
    return session.client(service, endpoint_url=endpoint)


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def connect_grant(resource: str | None = None, effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Action": "rds-db:connect", "Resource": resource or connect_arn()}


@dataclass(frozen=True)
class Keys:
    """Credentials the emulator issued (as the AWS CLI would print them)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)
    arn: str = ""

    def as_kwargs(self) -> dict[str, str]:
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "session_token": self.session_token,
        }

    def environment(self) -> dict[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        return {**env, "AWS_SESSION_TOKEN": self.session_token} if self.session_token else env


def iam_user(endpoint: str, name: str, *statements: dict[str, Any]) -> Keys:
    """An IAM user with one inline policy of ``statements`` (none: no policy) and an access key."""
    iam = client(endpoint, "iam")
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="connect", PolicyDocument=document(*statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"], arn=arn)


def role(endpoint: str, name: str, *statements: dict[str, Any]) -> str:
    """A role Lambda may assume, with one inline policy of ``statements``."""
    iam = client(endpoint, "iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="connect", PolicyDocument=document(*statements))
    return str(arn)


def assume(endpoint: str, role_arn: str, session_policy: str | None = None, duration_s: int = 3600) -> Keys:
    extra = {"Policy": session_policy} if session_policy else {}
    answer = client(endpoint, "sts").assume_role(
        RoleArn=role_arn, RoleSessionName="tester", DurationSeconds=duration_s, **extra
    )
    keys = answer["Credentials"]
    return Keys(keys["AccessKeyId"], keys["SecretAccessKey"], keys["SessionToken"], answer["AssumedRoleUser"]["Arn"])


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"

"""Emulator fixes the least-privilege stack needs, each checked through boto3 against the running launcher.

Every test fails on plain moto 5.2.5: ModifyDBProxy and UpdateStage are not implemented there, and
GetRandomPassword follows moto's seedable generator (local/control_plane/EMULATOR.md, fixes b, h and i).
"""

from __future__ import annotations

import string
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.control_plane.emulator import Emulator
from local.control_plane.moto_server import NOT_IMPLEMENTED_CODE

REGION = "ap-northeast-1"
MASTER_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:master-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-AbCdEf"


def _client(emulator: Emulator, service: str):
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        # Standard mode retries 5xx: an unimplemented call would show as retries, a final error as none.
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def _auth(secret_arn: str, description: str) -> dict:
    return {
        "AuthScheme": "SECRETS",
        "SecretArn": secret_arn,
        "IAMAuth": "REQUIRED",
        "ClientPasswordAuthType": "MYSQL_CACHING_SHA2_PASSWORD",
        "Description": description,
    }


def _proxy(emulator: Emulator, name: str) -> dict:
    ec2 = _client(emulator, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.7.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "c"))
    ]
    groups = [ec2.create_security_group(GroupName=f"{name}-{i}", Description="x", VpcId=vpc)["GroupId"] for i in (1, 2)]
    return _client(emulator, "rds").create_db_proxy(
        DBProxyName=name,
        EngineFamily="MYSQL",
        RoleArn="arn:aws:iam::123456789012:role/proxy",
        Auth=[_auth(MASTER_SECRET, "master")],
        VpcSubnetIds=subnets,
        VpcSecurityGroupIds=groups[:1],
        RequireTLS=True,
    )["DBProxy"] | {"test_groups": groups}


def test_modify_db_proxy_adds_an_auth_block_and_changes_settings_in_place(emulator):
    created = _proxy(emulator, "modify-proxy")
    rds = _client(emulator, "rds")
    answer = rds.modify_db_proxy(
        DBProxyName="modify-proxy",
        NewDBProxyName="modify-proxy",  # the provider always sends the (unchanged) name
        Auth=[_auth(MASTER_SECRET, "master"), _auth(APP_SECRET, "app user")],
        IdleClientTimeout=900,
        DebugLogging=True,
        RequireTLS=True,
        RoleArn="arn:aws:iam::123456789012:role/proxy-2",
        SecurityGroups=created["test_groups"],
    )
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    (proxy,) = rds.describe_db_proxies(DBProxyName="modify-proxy")["DBProxies"]
    assert [(a["SecretArn"], a["IAMAuth"], a["Description"]) for a in proxy["Auth"]] == [
        (MASTER_SECRET, "REQUIRED", "master"),
        (APP_SECRET, "REQUIRED", "app user"),
    ]
    assert (proxy["IdleClientTimeout"], proxy["DebugLogging"], proxy["RequireTLS"]) == (900, True, True)
    assert proxy["RoleArn"].endswith("role/proxy-2") and proxy["VpcSecurityGroupIds"] == created["test_groups"]
    assert proxy["Endpoint"] == created["Endpoint"] and proxy["Status"] == "available"


def test_modify_db_proxy_keeps_what_is_not_sent(emulator):
    _proxy(emulator, "partial-proxy")
    rds = _client(emulator, "rds")
    rds.modify_db_proxy(DBProxyName="partial-proxy", IdleClientTimeout=50000)
    (proxy,) = rds.describe_db_proxies(DBProxyName="partial-proxy")["DBProxies"]
    assert proxy["IdleClientTimeout"] == 28800  # clamped to RDS's maximum, as CreateDBProxy does
    assert [a["SecretArn"] for a in proxy["Auth"]] == [MASTER_SECRET] and proxy["RequireTLS"] is True


def test_modify_db_proxy_refuses_a_rename_and_an_unknown_proxy_at_once(emulator):
    _proxy(emulator, "rename-proxy")
    rds = _client(emulator, "rds")
    started = time.monotonic()
    with pytest.raises(ClientError) as renamed:
        rds.modify_db_proxy(DBProxyName="rename-proxy", NewDBProxyName="other-name")
    error = renamed.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["RetryAttempts"]) == (NOT_IMPLEMENTED_CODE, 0)
    assert "NewDBProxyName" in error["Error"]["Message"] and "real AWS" in error["Error"]["Message"]
    with pytest.raises(ClientError) as unknown:
        rds.modify_db_proxy(DBProxyName="no-such-proxy", RequireTLS=True)
    assert unknown.value.response["Error"]["Code"] == "DBProxyNotFoundFault"
    assert time.monotonic() - started < 5
    assert rds.describe_db_proxies(DBProxyName="rename-proxy")["DBProxies"][0]["DBProxyName"] == "rename-proxy"


def test_update_stage_sets_throttling_and_access_logs_in_place(emulator):
    api = _client(emulator, "apigatewayv2")
    api_id = api.create_api(Name="throttled", ProtocolType="HTTP")["ApiId"]
    api.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    assert "ThrottlingBurstLimit" not in api.get_stage(ApiId=api_id, StageName="$default")["DefaultRouteSettings"]
    answer = api.update_stage(
        ApiId=api_id,
        StageName="$default",
        DefaultRouteSettings={"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100.0},
        AccessLogSettings={"DestinationArn": "arn:aws:logs:ap-northeast-1:123456789012:log-group:a", "Format": "x"},
    )
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    stage = api.get_stage(ApiId=api_id, StageName="$default")
    assert stage["DefaultRouteSettings"] == {
        "DetailedMetricsEnabled": False,
        "ThrottlingBurstLimit": 200,
        "ThrottlingRateLimit": 100.0,
    }
    assert stage["AccessLogSettings"]["Format"] == "x" and stage["AutoDeploy"] is True
    api.update_stage(ApiId=api_id, StageName="$default", DefaultRouteSettings={"ThrottlingBurstLimit": 50})
    settings = api.get_stage(ApiId=api_id, StageName="$default")["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] == 50 and "ThrottlingRateLimit" not in settings


def _seed(emulator: Emulator, value: int) -> None:
    request = urllib.request.Request(f"{emulator.endpoint}/moto-api/seed?a={value}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_random_passwords_are_not_decided_by_the_emulators_seed(emulator):
    secrets = _client(emulator, "secretsmanager")
    passwords = []
    for _ in range(2):
        _seed(emulator, 42)  # makes every draw from moto's own generator repeat
        passwords.append(
            secrets.get_random_password(PasswordLength=32, ExcludePunctuation=True, RequireEachIncludedType=True)[
                "RandomPassword"
            ]
        )
    assert passwords[0] != passwords[1]
    for password in passwords:
        assert len(password) == 32 and set(password) <= set(string.ascii_letters + string.digits)
        assert any(c.islower() for c in password) and any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password)

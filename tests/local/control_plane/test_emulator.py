"""The local AWS emulator launcher: start/stop by pid, ports, and that each moto fix takes effect."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.control_plane.emulator import Emulator, EmulatorConfig, EmulatorError
from local.control_plane.moto_server import NOT_IMPLEMENTED_CODE
from modules.project import REPO_ROOT
from tests.sync_support import stop_process

pytestmark = pytest.mark.heavy

REGION = "ap-northeast-1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# ---------------------------------------------------------------- configuration
def test_config_rejects_bad_port_naming_field_and_range():
    with pytest.raises(ValueError, match=r"EmulatorConfig\.port=70000.*0 .*65535"):
        EmulatorConfig(port=70000)
    with pytest.raises(ValueError, match=r"start_timeout_s=0"):
        EmulatorConfig(start_timeout_s=0)


def test_config_host_is_fixed_to_loopback():
    assert EmulatorConfig().host == "127.0.0.1"
    with pytest.raises(TypeError):
        EmulatorConfig(host="0.0.0.0")  # type: ignore[call-arg]


def test_endpoint_of_stopped_emulator_says_how_to_start(tmp_path):
    with pytest.raises(EmulatorError, match="python -m local up"):
        _ = Emulator(EmulatorConfig(state_dir=tmp_path)).endpoint


# ---------------------------------------------------------------- process lifecycle
def test_start_records_pid_and_free_port_and_stop_ends_that_process(tmp_path):
    emulator = Emulator(EmulatorConfig(port=0, state_dir=tmp_path))
    emulator.start()
    try:
        record = json.loads((tmp_path / "emulator.json").read_text())
        assert record["pid"] == emulator.pid and record["port"] == emulator.port
        assert emulator.endpoint == f"http://127.0.0.1:{emulator.port}" == record["endpoint"]
        assert emulator.port != 0 and emulator.is_running()
        cmdline = Path(f"/proc/{emulator.pid}/cmdline").read_bytes().split(b"\0")
        assert b"local.control_plane.moto_server" in cmdline and b"127.0.0.1" in cmdline

        # A second handle on the same state dir adopts the running server instead of starting another.
        again = Emulator(EmulatorConfig(port=0, state_dir=tmp_path)).start()
        assert again.pid == emulator.pid and again.endpoint == emulator.endpoint
        with Emulator(EmulatorConfig(state_dir=tmp_path)) as adopted:
            assert adopted.pid == emulator.pid
        assert emulator.is_running(), "leaving the context of an adopted emulator must not stop it"
    finally:
        pid = emulator.pid
        assert emulator.stop() is True
    assert pid is not None and not _alive(pid)
    assert not (tmp_path / "emulator.json").exists()
    assert not emulator.is_running()
    assert emulator.stop() is False  # nothing left to stop


def test_context_manager_stops_what_it_started(tmp_path):
    with Emulator(EmulatorConfig(state_dir=tmp_path)) as emulator:
        pid = emulator.pid
        assert pid is not None and _alive(pid)
    assert not _alive(pid)


def test_configured_port_in_use_fails_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        emulator = Emulator(EmulatorConfig(port=port, state_dir=tmp_path))
        with pytest.raises(EmulatorError, match=rf"port {port} .*already in use.*--port 0"):
            emulator.start()
    assert not (tmp_path / "emulator.json").exists()


def test_stop_never_signals_a_recorded_pid_that_is_not_the_emulator(tmp_path):
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "emulator.json").write_text(json.dumps({"pid": stranger.pid, "port": 1}))
        emulator = Emulator(EmulatorConfig(state_dir=tmp_path))
        assert not emulator.is_running()
        assert emulator.stop() is False
        assert stranger.poll() is None, "an unrelated process with the recorded pid must survive"
    finally:
        stranger.kill()
        stranger.wait(5)


def test_stop_falls_back_to_sigkill_when_sigterm_is_not_handled(tmp_path):
    emulator = Emulator(EmulatorConfig(state_dir=tmp_path, stop_timeout_s=0.5)).start()
    pid = emulator.pid
    assert pid is not None
    stop_process(pid)  # a stopped process leaves SIGTERM pending; only SIGKILL ends it
    started = time.monotonic()
    assert emulator.stop() is True
    assert time.monotonic() - started < 5
    assert not _alive(pid)


def test_server_that_dies_at_start_is_reported_with_its_log(tmp_path):
    broken_python = tmp_path / "python"
    broken_python.write_text("#!/bin/sh\necho 'boom: cannot start' >&2\nexit 3\n")
    broken_python.chmod(0o755)
    emulator = Emulator(EmulatorConfig(state_dir=tmp_path, python=str(broken_python)))
    with pytest.raises(EmulatorError, match=r"exited at start \(code 3\)(.|\n)*boom: cannot start"):
        emulator.start()


# ---------------------------------------------------------------- the fixes, checked through boto3
def _client(emulator: Emulator, service: str, **config):
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**config) if config else None,
    )


def test_rule_referencing_another_group_keeps_its_description(emulator):
    ec2 = _client(emulator, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    proxy = ec2.create_security_group(GroupName="proxy", Description="proxy", VpcId=vpc)["GroupId"]
    lam = ec2.create_security_group(GroupName="lambda", Description="lambda", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=proxy,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "UserIdGroupPairs": [{"GroupId": lam, "Description": "MySQL from Lambda"}],
            }
        ],
    )
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [proxy]}])
    ingress = [r for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    assert [(r["ReferencedGroupInfo"]["GroupId"], r.get("Description")) for r in ingress] == [
        (lam, "MySQL from Lambda")
    ]


def test_any_unimplemented_action_is_a_400_naming_the_call(emulator):
    rds = _client(emulator, "rds", retries={"mode": "standard", "max_attempts": 5})
    with pytest.raises(ClientError) as caught:
        rds.describe_db_proxy_endpoints()
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    assert error["Error"]["Code"] == NOT_IMPLEMENTED_CODE
    assert "describe_db_proxy_endpoints" in error["Error"]["Message"]


def _proxy(emulator: Emulator, name: str) -> None:
    ec2 = _client(emulator, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "c"))
    ]
    _client(emulator, "rds").create_db_proxy(
        DBProxyName=name,
        EngineFamily="MYSQL",
        RoleArn="arn:aws:iam::123456789012:role/proxy",
        Auth=[
            {
                "AuthScheme": "SECRETS",
                "SecretArn": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:x",
                "IAMAuth": "DISABLED",
            }
        ],
        VpcSubnetIds=subnets,
        RequireTLS=True,
    )


def test_proxy_target_group_pool_settings_can_be_changed(emulator):
    """ModifyDBProxyTargetGroup is native in moto: needed for in-place pool changes and for drift tests."""
    _proxy(emulator, "pool-proxy")
    rds = _client(emulator, "rds")
    rds.modify_db_proxy_target_group(
        DBProxyName="pool-proxy",
        TargetGroupName="default",
        ConnectionPoolConfig={
            "MaxConnectionsPercent": 70,
            "MaxIdleConnectionsPercent": 50,
            "ConnectionBorrowTimeout": 120,
        },
    )
    group = rds.describe_db_proxy_target_groups(DBProxyName="pool-proxy")["TargetGroups"][0]
    assert group["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 70
    assert group["ConnectionPoolConfig"]["MaxIdleConnectionsPercent"] == 50
    assert rds.describe_db_proxies(DBProxyName="pool-proxy")["DBProxies"][0]["RequireTLS"] is True


def test_user_set_db_parameters_report_source_user(emulator):
    rds = _client(emulator, "rds")
    rds.create_db_parameter_group(DBParameterGroupName="pg", DBParameterGroupFamily="mysql8.0", Description="x")
    rds.modify_db_parameter_group(
        DBParameterGroupName="pg",
        Parameters=[{"ParameterName": "slow_query_log", "ParameterValue": "1", "ApplyMethod": "immediate"}],
    )
    parameters = rds.describe_db_parameters(DBParameterGroupName="pg")["Parameters"]
    assert [(p["ParameterName"], p["ParameterValue"], p.get("Source")) for p in parameters] == [
        ("slow_query_log", "1", "user")
    ]


def test_managed_master_secret_holds_the_master_user_and_a_random_password(emulator):
    rds, secrets = _client(emulator, "rds"), _client(emulator, "secretsmanager")
    passwords = []
    for name in ("db-a", "db-b"):
        created = rds.create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t4g.micro",
            Engine="mysql",
            MasterUsername="app_admin",
            ManageMasterUserPassword=True,
            AllocatedStorage=20,
        )["DBInstance"]
        secret = json.loads(secrets.get_secret_value(SecretId=created["MasterUserSecret"]["SecretArn"])["SecretString"])
        assert secret["username"] == "app_admin"
        passwords.append(secret["password"])
    assert len(set(passwords)) == 2 and all(len(p) >= 24 and p != "P@55w0rd!" for p in passwords)


def test_modified_db_subnet_group_is_kept(emulator):
    ec2, rds = _client(emulator, "ec2"), _client(emulator, "rds")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]
        for i, zone in ((1, "a"), (2, "b"), (3, "c"))
    ]
    ids = [subnet["SubnetId"] for subnet in subnets]
    rds.create_db_subnet_group(DBSubnetGroupName="sg-mod", DBSubnetGroupDescription="x", SubnetIds=ids[:2])
    rds.modify_db_subnet_group(DBSubnetGroupName="sg-mod", SubnetIds=[ids[0], ids[2]])
    [group] = rds.describe_db_subnet_groups(DBSubnetGroupName="sg-mod")["DBSubnetGroups"]
    assert sorted(s["SubnetIdentifier"] for s in group["Subnets"]) == sorted([ids[0], ids[2]])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def test_lambda_logging_config_is_kept_and_reported(emulator):
    role = _client(emulator, "iam").create_role(
        RoleName="fn-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
                ],
            }
        ),
    )["Role"]["Arn"]
    lam = _client(emulator, "lambda")
    common = {"Role": role, "Runtime": "python3.12", "Handler": "app.lambda_handler", "Code": {"ZipFile": _zip()}}
    lam.create_function(
        FunctionName="json-logs", LoggingConfig={"LogFormat": "JSON", "LogGroup": "/custom/group"}, **common
    )
    lam.create_function(FunctionName="default-logs", **common)
    assert lam.get_function(FunctionName="json-logs")["Configuration"]["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "/custom/group",
    }
    assert lam.get_function(FunctionName="default-logs")["Configuration"]["LoggingConfig"] == {
        "LogFormat": "Text",
        "LogGroup": "/aws/lambda/default-logs",
    }
    lam.update_function_configuration(FunctionName="json-logs", LoggingConfig={"LogFormat": "Text"})
    assert lam.get_function(FunctionName="json-logs")["Configuration"]["LoggingConfig"]["LogFormat"] == "Text"


def test_managed_policies_are_loaded(emulator):
    iam = _client(emulator, "iam")
    arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


def test_cli_up_is_idempotent_and_down_stops_by_pid(tmp_path):
    """`python -m local up/down` on a copy of the launcher files (own state dir under the copy)."""
    repo = REPO_ROOT
    copy = tmp_path / "repo"
    (copy / "environments").mkdir(parents=True)
    (copy / "cdktf.json").write_text((repo / "cdktf.json").read_text())
    for package in ("local", "modules", "handler"):
        shutil.copytree(repo / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    run = [sys.executable, "-m", "local", "--port", "0"]
    first = subprocess.run([*run, "up"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    record = json.loads((copy / ".local" / "emulator" / "emulator.json").read_text())
    try:
        assert f"LOCAL_AWS_ENDPOINT=http://127.0.0.1:{record['port']}" in first.stdout
        second = subprocess.run([*run, "up"], cwd=copy, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0 and "already running" in second.stderr
        assert json.loads((copy / ".local" / "emulator" / "emulator.json").read_text())["pid"] == record["pid"]
    finally:
        down = subprocess.run([*run, "down"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "[emulator] stopped" in down.stderr
    assert not _alive(record["pid"])

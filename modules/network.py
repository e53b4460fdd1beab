"""The VPC: private subnets only, and security groups chained Lambda/migrator -> proxy -> DB on the DB port alone."""

from __future__ import annotations

from constructs import Construct

from handler import app_contract as contract
from modules.bindings import aws
from modules.context import AwsContext
from modules.field_types import DbPort, LogRetention, NamePrefix
from modules.logs import log_group
from modules.network_options import ExistingVpc, NewVpc
from modules.policy import policy_document, service_assume_role
from modules.props import expect_props
from modules.suppressions import skip_checks


class NetworkProps(LogRetention):
    name_prefix: NamePrefix
    """Prefix of every name and ``Name`` tag. Required."""
    ctx: AwsContext
    """Account the flow-log role trusts (``aws:SourceAccount``). Required."""
    kms_key_arn: str
    """Key of the flow-log group. Required."""
    vpc: NewVpc | ExistingVpc = NewVpc()
    """Create a private-only VPC, or use subnets of an existing one. Default: NewVpc(), a new VPC."""
    db_port: DbPort = contract.DEFAULT_PORT
    """The only port the security groups open, functions -> proxy -> DB. Default: 3306."""


class Network(Construct):
    """No internet gateway or NAT: the functions reach only the proxy, the proxy only the DB.

    IAM auth tokens are signed locally by the functions, so the request path needs no route to AWS APIs; the
    migrator's one AWS API (Secrets Manager) is reached through an interface endpoint (``modules.endpoints``).
    With an ``ExistingVpc`` only the security groups and their rules are created.
    """

    def __init__(self, scope: Construct, id_: str, props: NetworkProps):
        super().__init__(scope, id_)
        expect_props(props, NetworkProps)
        prefix = self._prefix = props.name_prefix
        self.vpc = self.flow_log_group = None
        if isinstance(props.vpc, ExistingVpc):
            # Someone else's VPC: its routes, flow logs and default security group stay theirs.
            self.vpc_id = props.vpc.vpc_id
            self.lambda_subnet_ids = list(props.vpc.lambda_subnet_ids)
            self.db_subnet_ids = list(props.vpc.db_subnet_ids)
        else:
            self._new_vpc(props, props.vpc)

        self.lambda_sg = self._security_group("lambda-sg", f"{prefix}-lambda", "Lambda ENIs: egress to the proxy only")
        self.proxy_sg = self._security_group("proxy-sg", f"{prefix}-proxy", "RDS Proxy: from Lambda, to the DB")
        skip_checks(self.proxy_sg, {"CKV2_AWS_5": "attached to aws_db_proxy, which checkov's graph does not follow"})
        self.db_sg = self._security_group("db-sg", f"{prefix}-db", "RDS MySQL: from the proxy only")
        self.migrator_sg = self._security_group(
            "migrator-sg", f"{prefix}-migrator", "Schema migrator: egress to the proxy and Secrets Manager only"
        )
        port = props.db_port
        self._allow("lambda-to-proxy", self.lambda_sg, self.proxy_sg, port, "Lambda connects to RDS Proxy")
        self._allow("proxy-to-db", self.proxy_sg, self.db_sg, port, "RDS Proxy connects to the DB instance")
        self.migrator_rules = self._allow(
            "migrator-to-proxy", self.migrator_sg, self.proxy_sg, port, "The migrator connects to RDS Proxy"
        )

    def _new_vpc(self, props: NetworkProps, layout: NewVpc) -> None:
        self.vpc = aws("vpc").Vpc(
            self,
            "vpc",
            cidr_block=layout.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{self._prefix}-vpc"},
        )
        self.vpc_id = self.vpc.id
        # Take every rule away from the default SG so nothing can use it by accident.
        aws("default_security_group").DefaultSecurityGroup(
            self, "default-sg", vpc_id=self.vpc.id, tags={"Name": f"{self._prefix}-default-deny"}
        )
        self._flow_logs(props)
        zones = layout.availability_zones
        self.lambda_subnet_ids = self._private_subnets("lambda", layout.lambda_subnet_cidrs, zones)
        self.db_subnet_ids = self._private_subnets("db", layout.db_subnet_cidrs, zones)

    def _private_subnets(self, role: str, cidrs: tuple[str, ...], zones: tuple[str, ...]) -> list[str]:
        """One subnet per CIDR, the i-th in the i-th zone, never assigning public IPs; returns their ids."""
        subnet = aws("subnet").Subnet
        return [
            subnet(
                self,
                f"{role}-subnet-{i}",
                vpc_id=self.vpc.id,
                cidr_block=cidr,
                availability_zone=zones[i],
                map_public_ip_on_launch=False,
                tags={"Name": f"{self._prefix}-{role}-{zones[i]}"},
            ).id
            for i, cidr in enumerate(cidrs)
        ]

    def _security_group(self, id_: str, name: str, description: str):
        # Rules are separate resources (one per rule, each with its own description); none inline.
        return aws("security_group").SecurityGroup(
            self, id_, name=name, description=description, vpc_id=self.vpc_id, tags={"Name": name}
        )

    def _allow(self, id_: str, source, target, port: int, description: str) -> tuple:
        return allow_tcp(self, id_, source=source, target=target, port=port, description=description)

    def _flow_logs(self, props: NetworkProps) -> None:
        """Rejected/accepted traffic records: the first thing to read when a connection times out."""
        self.flow_log_group = group = log_group(
            self,
            "flow-log-group",
            name=f"/vpc/{props.name_prefix}/flow-logs",
            retention_days=props.log_retention_days,
            kms_key_arn=props.kms_key_arn,
        )
        role = aws("iam_role").IamRole(
            self,
            "flow-log-role",
            name=f"{props.name_prefix}-flow-logs",
            assume_role_policy=service_assume_role(
                self,
                "flow-log-trust",
                "vpc-flow-logs.amazonaws.com",
                [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [props.ctx.account_id]}],
            ),
        )
        aws("iam_role_policy").IamRolePolicy(
            self,
            "flow-log-policy",
            name="write-flow-logs",
            role=role.id,
            policy=policy_document(
                self,
                "flow-log-permissions",
                [
                    {
                        "actions": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        "resources": [group.arn, f"{group.arn}:*"],
                    }
                ],
            ),
        )
        aws("flow_log").FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=600,
        )


def allow_tcp(scope: Construct, id_: str, *, source, target, port: int, description: str) -> tuple:
    """The egress rule of ``source`` and the ingress rule of ``target`` for one TCP port; returns both."""
    egress = aws("vpc_security_group_egress_rule").VpcSecurityGroupEgressRule(
        scope,
        f"{id_}-egress",
        security_group_id=source.id,
        referenced_security_group_id=target.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=f"{description} (egress)",
    )
    ingress = aws("vpc_security_group_ingress_rule").VpcSecurityGroupIngressRule(
        scope,
        f"{id_}-ingress",
        security_group_id=target.id,
        referenced_security_group_id=source.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=f"{description} (ingress)",
    )
    return egress, ingress

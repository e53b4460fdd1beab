"""Another app's role connects to a proxy this app does not manage: ``DatabaseProxy.from_attributes`` + a grant."""

import json

from cdktf import App, TerraformOutput, TerraformStack, TerraformVariable
from constructs import Construct

from modules.bindings import aws
from modules.proxy import DatabaseProxy, ProxyAttributes

REGION = "ap-northeast-1"


class SharedProxyStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str):
        super().__init__(scope, id_)
        aws("provider").AwsProvider(self, "aws", region=REGION)
        proxy_arn = TerraformVariable(self, "proxy_arn", type="string", description="ARN of the shared RDS Proxy")
        endpoint = TerraformVariable(self, "proxy_endpoint", type="string", description="Its endpoint host name")
        proxy = DatabaseProxy.from_attributes(
            self, "shared-proxy", ProxyAttributes(arn=proxy_arn.string_value, endpoint=endpoint.string_value)
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        reports = aws("iam_role").IamRole(self, "reports", name="reports-exec", assume_role_policy=json.dumps(trust))
        grant = proxy.grant_connect(reports, "reports")  # rds-db:connect as the DB user "reports" only
        TerraformOutput(self, "role_arn", value=reports.arn)
        TerraformOutput(self, "grant_policy", value=grant.name)
        TerraformOutput(self, "connect_to", value=proxy.endpoint)


if __name__ == "__main__":
    root = App()
    SharedProxyStack(root, "shared-proxy")
    root.synth()

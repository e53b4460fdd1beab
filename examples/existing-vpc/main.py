"""The architecture in subnets of a VPC you already run: no VPC, subnets, routes or flow logs are created."""

from cdktf import App, TerraformOutput, TerraformStack, TerraformVariable
from constructs import Construct

from modules.bindings import aws
from modules.network_options import ExistingVpc
from modules.serverless_mysql_api import ServerlessMysqlApi, ServerlessMysqlApiProps

REGION = "ap-northeast-1"


class ExistingVpcStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str):
        super().__init__(scope, id_)
        aws("provider").AwsProvider(self, "aws", region=REGION)
        vpc_id = TerraformVariable(self, "vpc_id", type="string", description="VPC with DNS support and host names")
        lambda_subnets = TerraformVariable(
            self, "lambda_subnet_ids", type="list(string)", description="Private subnets for the functions"
        )
        db_subnets = TerraformVariable(
            self, "db_subnet_ids", type="list(string)", description="Private subnets in two AZs for RDS and the proxy"
        )
        network = ExistingVpc(
            vpc_id=vpc_id.string_value,
            lambda_subnet_ids=lambda_subnets.list_value,
            db_subnet_ids=db_subnets.list_value,
        )
        app = ServerlessMysqlApi(
            self, "app", ServerlessMysqlApiProps(name_prefix="shared", region=REGION, network=network)
        )
        TerraformOutput(self, "api_url", value=app.api_url)
        TerraformOutput(
            self,
            "security_groups",
            value={
                "function": app.network.lambda_sg.id,
                "proxy": app.network.proxy_sg.id,
                "db": app.network.db_sg.id,
            },
        )


if __name__ == "__main__":
    root = App()
    ExistingVpcStack(root, "existing-vpc")
    root.synth()

"""The smallest app: the whole architecture, in a new private VPC, inside your own CDKTF stack."""

from cdktf import App, TerraformOutput, TerraformStack
from constructs import Construct

from modules.bindings import aws
from modules.serverless_mysql_api import ServerlessMysqlApi, ServerlessMysqlApiProps

REGION = "ap-northeast-1"


class NewVpcStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str):
        super().__init__(scope, id_)
        # aws("provider") loads only that part of the provider bindings (a 2 s synth instead of 12 s).
        aws("provider").AwsProvider(self, "aws", region=REGION)
        app = ServerlessMysqlApi(self, "app", ServerlessMysqlApiProps(name_prefix="demo", region=REGION))
        TerraformOutput(self, "api_url", value=app.api_url)
        TerraformOutput(self, "proxy_endpoint", value=app.proxy.endpoint)
        TerraformOutput(self, "dashboard_url", value=app.dashboard_url)


if __name__ == "__main__":
    root = App()
    NewVpcStack(root, "new-vpc")
    root.synth()

"""Alarms to an existing SNS topic, a throttled API with two routes, and a function capped by reserved concurrency.

Reserved concurrency bounds how many proxy clients the function can open; the API's burst limit stays below it so
that requests over the cap get the stage's 429 rather than the function's throttle error.
"""

from cdktf import App, TerraformOutput, TerraformStack, TerraformVariable
from constructs import Construct

from modules.alarms import AlarmOptions
from modules.bindings import aws
from modules.function_options import ApiOptions, FunctionOptions
from modules.serverless_mysql_api import ServerlessMysqlApi, ServerlessMysqlApiProps

REGION = "ap-northeast-1"


class AlarmsToSnsStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str):
        super().__init__(scope, id_)
        aws("provider").AwsProvider(self, "aws", region=REGION)
        on_call = TerraformVariable(self, "on_call_topic_arn", type="string", description="SNS topic of your on-call")
        props = ServerlessMysqlApiProps(
            name_prefix="orders",
            region=REGION,
            function=FunctionOptions(reserved_concurrency=50, memory_mb=512),
            api=ApiOptions(routes=("GET /", "GET /times"), throttling_burst_limit=40, throttling_rate_limit=20),
            alarms=AlarmOptions(
                topic_arn=on_call.string_value, proxy_client_connections=45, lambda_duration_percent=60, period_s=300
            ),
        )
        app = ServerlessMysqlApi(self, "app", props)
        TerraformOutput(self, "api_url", value=app.api_url)
        TerraformOutput(self, "alarm_topic_arn", value=app.monitoring.topic_arn)


if __name__ == "__main__":
    root = App()
    AlarmsToSnsStack(root, "alarms-to-sns")
    root.synth()

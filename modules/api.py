"""HTTP API (API Gateway v2) in front of the function: throttled, with access logs and a scoped invoke permission."""

from __future__ import annotations

import json
from dataclasses import dataclass

from constructs import Construct

from modules.api_limits import (
    API_THROTTLING_BURST_RANGE,
    API_THROTTLING_RATE_RANGE,
    DEFAULT_API_THROTTLING_BURST_LIMIT,
    DEFAULT_API_THROTTLING_RATE_LIMIT,
)
from modules.bindings import aws
from modules.logs import log_group
from modules.suppressions import skip_checks
from modules.validation import check_range

# Every method reaches the handler, which answers 405 for anything but GET.
ROUTE_KEY = "ANY /"
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "method": "$context.httpMethod",
        "path": "$context.path",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
        "integrationStatus": "$context.integrationStatus",
        "integrationError": "$context.integrationErrorMessage",
    },
    sort_keys=True,
)


STAGE_NAME = "$default"


@dataclass(frozen=True)
class HttpApiProps:
    name_prefix: str
    """The API is ``<name_prefix>-http-api``."""
    function: object
    """The ``LambdaFunction`` every request goes to (payload format 2.0)."""
    kms_key_arn: str
    """Key of the access-log group."""
    lambda_timeout_s: int = 10
    """The integration waits one second longer than the function (capped at API Gateway's 30 s)."""
    log_retention_days: int = 365
    throttling_burst_limit: int = DEFAULT_API_THROTTLING_BURST_LIMIT
    """Requests the ``$default`` stage admits at once before answering 429 (1-5000). Default: 200."""
    throttling_rate_limit: int = DEFAULT_API_THROTTLING_RATE_LIMIT
    """Steady requests per second the ``$default`` stage admits (1-10000). Default: 100."""

    def __post_init__(self) -> None:
        check_range("throttling_burst_limit", self.throttling_burst_limit, *API_THROTTLING_BURST_RANGE)
        check_range("throttling_rate_limit", self.throttling_rate_limit, *API_THROTTLING_RATE_RANGE)


class HttpApi(Construct):
    def __init__(self, scope: Construct, id_: str, props: HttpApiProps):
        super().__init__(scope, id_)
        function = props.function
        name = f"{props.name_prefix}-http-api"
        self.api = aws("apigatewayv2_api").Apigatewayv2Api(
            self,
            "api",
            name=name,
            protocol_type="HTTP",
            description="Each GET stores the current time through RDS Proxy and returns the newest ones",
        )
        integration = aws("apigatewayv2_integration").Apigatewayv2Integration(
            self,
            "integration",
            api_id=self.api.id,
            integration_type="AWS_PROXY",
            integration_uri=function.arn,
            integration_method="POST",
            payload_format_version="2.0",
            timeout_milliseconds=min(30000, props.lambda_timeout_s * 1000 + 1000),
        )
        route = aws("apigatewayv2_route").Apigatewayv2Route(
            self, "route", api_id=self.api.id, route_key=ROUTE_KEY, target=f"integrations/{integration.id}"
        )
        skip_checks(
            route,
            {"CKV_AWS_309": "the API is public by design (anyone may GET the times); add an authorizer for production"},
        )
        self.access_logs = access_logs = log_group(
            self,
            "access-logs",
            name=f"/aws/apigateway/{name}",
            retention_days=props.log_retention_days,
            kms_key_arn=props.kms_key_arn,
        )
        stage = aws("apigatewayv2_stage")
        self.stage = stage.Apigatewayv2Stage(
            self,
            "stage",
            api_id=self.api.id,
            name=STAGE_NAME,
            auto_deploy=True,
            access_log_settings=stage.Apigatewayv2StageAccessLogSettings(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            # Every GET writes a row: the edge bounds the load on the pool and the DB, and the table's growth.
            default_route_settings=stage.Apigatewayv2StageDefaultRouteSettings(
                throttling_burst_limit=props.throttling_burst_limit,
                throttling_rate_limit=props.throttling_rate_limit,
            ),
        )
        # Only this API's root route may invoke the function.
        aws("lambda_permission").LambdaPermission(
            self,
            "invoke",
            statement_id="AllowHttpApiInvoke",
            action="lambda:InvokeFunction",
            function_name=function.function_name,
            principal="apigateway.amazonaws.com",
            source_arn=f"{self.api.execution_arn}/*/*/",
        )

    @property
    def url(self) -> str:
        return self.stage.invoke_url

"""HTTP API (API Gateway v2) in front of the function: throttled, with access logs and a scoped invoke permission."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from constructs import Construct

from modules.bindings import aws
from modules.field_types import LambdaTimeoutS, LogRetention, NamePrefix
from modules.function_options import (
    ANY_METHOD,
    DEFAULT_ROUTE,
    DEFAULT_TIMEOUT_S,
    STAGE_NAME,
    ApiOptions,
    route_parts,
)
from modules.logs import log_group
from modules.props import expect_props, satisfying
from modules.suppressions import skip_checks

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


def _is_lambda_function(value: Any) -> bool:
    return isinstance(value, aws("lambda_function").LambdaFunction)


# Checked on use, not by type: naming the provider class here would load its jsii assembly on import (about 1.3 s).
LambdaFunctionConstruct = Annotated[Any, satisfying("an aws_lambda_function construct", _is_lambda_function)]


class HttpApiProps(ApiOptions, LogRetention):
    name_prefix: NamePrefix
    """The API is ``<name_prefix>-http-api``. Required."""
    function: LambdaFunctionConstruct
    """The function every route goes to (payload format 2.0). Required."""
    kms_key_arn: str
    """Key of the access-log group. Required."""
    lambda_timeout_s: LambdaTimeoutS = DEFAULT_TIMEOUT_S
    """The function's timeout: the integration waits one second longer (at most API Gateway's 30 s). Default: 10."""


def route_ids(route_key: str) -> tuple[str, str, str]:
    """(route id, permission id, permission statement id) of a route, derived from its key alone so reordering the
    routes moves nothing. ``ANY /`` keeps the ids it had as the API's only route, so existing stacks keep it."""
    if route_key == DEFAULT_ROUTE:
        return "route", "invoke", "AllowHttpApiInvoke"
    method, path = route_parts(route_key)
    words = [part.lower() for part in re.split(r"[^A-Za-z0-9]+", path) if part] or ["root"]
    slug = "-".join([method.lower(), *words])
    statement = "AllowHttpApiInvoke" + "".join(part.capitalize() for part in slug.split("-"))
    return f"route-{slug}", f"invoke-{slug}", statement


def source_arn(execution_arn: str, route_key: str) -> str:
    """What one route may invoke: ``<execution ARN>/<any stage>/<method or *>/<path>``."""
    method, path = route_parts(route_key)
    return f"{execution_arn}/*/{'*' if method == ANY_METHOD else method}{path}"


class HttpApi(Construct):
    """An HTTP API whose routes (and only those) invoke the function; the ``$default`` stage is throttled and logs
    every request as JSON."""

    def __init__(self, scope: Construct, id_: str, props: HttpApiProps):
        super().__init__(scope, id_)
        expect_props(props, HttpApiProps)
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
        self.routes = {}
        for route_key in props.routes:
            route = aws("apigatewayv2_route").Apigatewayv2Route(
                self,
                route_ids(route_key)[0],
                api_id=self.api.id,
                route_key=route_key,
                target=f"integrations/{integration.id}",
            )
            skip_checks(
                route,
                {
                    "CKV_AWS_309": "the API is public by design (anyone may GET the times); "
                    "add an authorizer for production"
                },
            )
            self.routes[route_key] = route
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
        # Exactly the configured routes of this API may invoke the function.
        self.permissions = {}
        for route_key in props.routes:
            _, permission_id, statement_id = route_ids(route_key)
            self.permissions[route_key] = aws("lambda_permission").LambdaPermission(
                self,
                permission_id,
                statement_id=statement_id,
                action="lambda:InvokeFunction",
                function_name=function.function_name,
                principal="apigateway.amazonaws.com",
                source_arn=source_arn(self.api.execution_arn, route_key),
            )

    @property
    def url(self) -> str:
        return self.stage.invoke_url

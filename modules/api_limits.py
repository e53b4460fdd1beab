"""API Gateway stage throttling: the ranges a stage accepts, defined once for the settings and the HttpApi construct.

Imports nothing from cdktf, so settings validation (and the local HTTP API) can use it without the provider bindings.
"""

from __future__ import annotations

# API Gateway's default account quotas per region (burst 5,000, 10,000 requests per second): a stage limit above
# them never applies. https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
API_THROTTLING_BURST_RANGE = (1, 5000)
API_THROTTLING_RATE_RANGE = (1, 10000)
DEFAULT_API_THROTTLING_BURST_LIMIT = 200
DEFAULT_API_THROTTLING_RATE_LIMIT = 100

"""Field types several props share: the rule is written once, with the words errors and docs use for it."""

from __future__ import annotations

from typing import Annotated

from modules.props import Props, between, matching, one_of

# Values accepted by CloudWatch Logs PutRetentionPolicy.
# fmt: off
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
# fmt: on
ONE_YEAR_DAYS = 365

NamePrefix = Annotated[
    str, matching(r"[a-z][a-z0-9-]{0,19}", "1-20 lowercase letters, digits or hyphens, starting with a letter")
]
Region = Annotated[str, matching(r"[a-z]{2}(-gov)?-[a-z]+-\d", "an AWS region name such as ap-northeast-1")]
LogRetentionDays = Annotated[int, one_of(LOG_RETENTION_DAYS)]
DbPort = Annotated[int, between(1150, 65535)]
"""A port RDS for MySQL accepts."""
LambdaMemoryMb = Annotated[int, between(128, 10240)]
LambdaTimeoutS = Annotated[int, between(1, 900)]


class LogRetention(Props):
    """Mixin of the constructs that create log groups."""

    log_retention_days: LogRetentionDays = ONE_YEAR_DAYS
    """Days CloudWatch keeps this construct's logs. Default: 365."""

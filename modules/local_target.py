"""What the ``local`` target's provider needs at synth: the emulator's default address and dummy credentials.

These are product facts (the synthesized ``local`` stack contains them); everything else about the emulator (how it
is started, where it keeps its state) belongs to the local tooling, ``local/common/local_target.py``.
"""

from __future__ import annotations

DEFAULT_LOCAL_ENDPOINT = "http://127.0.0.1:4599"
"""Where the local target's provider sends every AWS call unless ``LOCAL_AWS_ENDPOINT`` says otherwise."""
LOCAL_ENDPOINT_VARIABLE = "LOCAL_AWS_ENDPOINT"
LOCAL_ACCESS_KEY_ID = "test"
LOCAL_SECRET_ACCESS_KEY = "test"
"""The local target's dummy credentials: the emulator accepts any, real AWS rejects these."""
LOCAL_MAX_ATTEMPTS = 3
"""The provider's ``max_retries`` (the AWS SDK's attempts per call) against the emulator. The emulator's server closes
every connection after its answer, and under load the SDK sometimes reads that as a dropped connection, which it
retries; unimplemented calls are non-retryable 400s, so they still fail at once."""

# Services the stack calls; the local target points each one at the emulator.
LOCAL_SERVICES = (
    "apigatewayv2",
    "cloudwatch",
    "ec2",
    "iam",
    "kms",
    "lambda_",
    "logs",
    "rds",
    "secretsmanager",
    "sns",
    "sts",
)

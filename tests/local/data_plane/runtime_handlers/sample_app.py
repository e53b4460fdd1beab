"""Tiny handlers for the runtime/HTTP API tests: they expose container identity and module state."""

import os
import time

_STATE = {"pid": os.getpid(), "calls": 0, "imported_at": time.time()}
if os.environ.get("SAMPLE_FAIL_INIT") == "1":
    raise RuntimeError("init failed on purpose")


def lambda_handler(event, context):
    _STATE["calls"] += 1
    action = (event or {}).get("action") or ((event or {}).get("queryStringParameters") or {}).get("action")
    if action == "raise":
        raise ValueError("boom")
    if action == "sleep":
        time.sleep(float(event.get("seconds", 1)))
    if action == "exit":
        os._exit(3)
    if action == "not_json":
        return {"value": object()}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": __import__("json").dumps(
            {
                "pid": _STATE["pid"],
                "niceness": os.nice(0),
                "calls": _STATE["calls"],
                "env": os.environ.get("SAMPLE_VALUE"),
                "remaining_ms": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id,
                "event": event,
            }
        ),
    }

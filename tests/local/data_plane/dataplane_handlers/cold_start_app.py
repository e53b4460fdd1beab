"""A handler that records when its container was imported and when each of its invocations ran.

Each invocation writes one JSON file into ``COLD_START_LOG_DIR`` (pid, import time, start, end, call number), so a
test can tell how many cold starts (import to the end of the first call) ran at once.
"""

import json
import os
import time

_IMPORTED_AT = time.time()
_CALLS = 0


def lambda_handler(event, context):
    global _CALLS
    _CALLS += 1
    started = time.time()
    seconds = event.get("seconds") or (event.get("queryStringParameters") or {}).get("seconds") or 0
    time.sleep(float(seconds) if _CALLS == 1 else 0.0)  # only the first call: the cold start
    spin_until = time.process_time() + (float(event.get("spin", 0)) if _CALLS == 1 else 0.0)
    while time.process_time() < spin_until:  # CPU, like a first connection's TLS set-up and token signing
        pass
    record = {"pid": os.getpid(), "imported": _IMPORTED_AT, "start": started, "end": time.time(), "call": _CALLS}
    with open(os.path.join(os.environ["COLD_START_LOG_DIR"], f"{os.getpid()}-{_CALLS}.json"), "w") as out:
        json.dump(record, out)
    return {"statusCode": 200, "body": json.dumps(record)} if "rawPath" in event else record

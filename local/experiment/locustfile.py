"""The load test: N users GET / as fast as they can, stopping after exactly --requests requests.

Run by `local/experiment/run.py` (headless, as a subprocess), or by hand:
    locust -f local/experiment/locustfile.py --headless -u 100 -r 100 --host http://127.0.0.1:PORT --requests 10000

Each request is recorded (start time, latency, outcome, cause) and written to --results-file as
JSON when locust exits, so the experiment can report failures by cause and plot them over time.
A 503 from the handler carries the MySQL error code in its JSON body (1040 = Too many connections);
that code becomes the failure's cause. FastHttpUser keeps the load generator's own CPU use low,
which matters on a 2-core machine where it shares the CPU with the system under test.
"""

from __future__ import annotations

import json
import time

import gevent
from locust import FastHttpUser, events, task
from locust.exception import StopUser

_state = {"issued": 0, "completed": 0, "records": [], "started": None}


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument("--requests", type=int, default=10_000, help="Stop after exactly this many requests")
    parser.add_argument("--results-file", default="", help="Write per-request records here as JSON on exit")
    parser.add_argument("--path", default="/", help="Request path")


def failure_cause(status: int, body: bytes | None, error: BaseException | None) -> str:
    """A short, groupable cause: 'mysql-1040', 'http-502', or the connection error's class name."""
    if error is not None and not status:
        return type(error).__name__
    try:
        code = json.loads(body or b"{}").get("code")
    except (ValueError, AttributeError):
        code = None
    return f"mysql-{code}" if code else f"http-{status}"


def _finish(environment) -> None:
    environment.runner.quit()


class ApiUser(FastHttpUser):
    """One user: GET / with no think time."""

    @task
    def simple_get(self) -> None:
        options = self.environment.parsed_options
        if _state["issued"] >= options.requests:
            raise StopUser()
        _state["issued"] += 1  # greenlets switch only on I/O, so check-and-increment is atomic
        started_wall, started = time.time(), time.perf_counter()
        if _state["started"] is None:
            _state["started"] = started_wall
        with self.client.get(options.path, name="GET /", catch_response=True) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            ok = response.status_code == 200
            cause = "" if ok else failure_cause(response.status_code, response.content, response.error)
            if ok:
                response.success()
            else:
                response.failure(cause)
        _state["records"].append((round(started_wall, 4), round(latency_ms, 3), ok, cause))
        _state["completed"] += 1
        if _state["completed"] >= options.requests:
            gevent.spawn(_finish, self.environment)
            raise StopUser()


@events.quitting.add_listener
def _write_results(environment, **_kwargs) -> None:
    path = environment.parsed_options.results_file
    if not path:
        return
    with open(path, "w") as out:
        json.dump(
            {
                "requested": environment.parsed_options.requests,
                "issued": _state["issued"],
                "records": [
                    {"t": t, "latency_ms": latency, "ok": ok, "cause": cause}
                    for t, latency, ok, cause in _state["records"]
                ],
            },
            out,
        )

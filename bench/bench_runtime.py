"""Per-invocation overhead of the local runtime and HTTP API (prints numbers; not a test).

    python bench/bench_runtime.py [--invocations 3000] [--cold-starts 20] [--cold-start-cpu-ms 120]

Uses a trivial handler so only our plumbing is measured: runtime.invoke (pipe + JSON to a warm
container and back), the same through the HTTP API over one keep-alive connection (client in this process,
then in another process as locust is), throughput with concurrent keep-alive clients in another process,
and cold starts: 99 at once, then one at a time for a handler that signs an RDS IAM token with boto3 and its
container's role credentials (the production auth path): nothing preloaded in the zygote, boto3 imported there,
and boto3 imported and its RDS client model parsed there (`WARM_BOTO3`). First of all, 100 cold starts at once
whose first call is CPU-bound: when the first and the last answer, scheduled (`max_concurrent_cold_starts`) or not.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.data_plane.auth.authenticator import RuntimeCredentials  # noqa: E402
from local.data_plane.auth.credentials import CredentialIssuer, IssuerSettings  # noqa: E402
from local.data_plane.cold_starts import DEFAULT_CONCURRENT_COLD_STARTS  # noqa: E402
from local.data_plane.http_api import HttpApi  # noqa: E402
from local.data_plane.runtime import LambdaRuntime, RuntimeConfig  # noqa: E402
from local.data_plane.runtime_worker import WARM_BOTO3  # noqa: E402

HANDLERS = str(ROOT / "tests" / "runtime_handlers")


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


# Runs in a separate interpreter: N threads, each with one keep-alive connection, GET / in a loop.
_CLIENT = """
import http.client, json, sys, threading, time
host, port, clients, per_client = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
latencies, lock = [], threading.Lock()
def user():
    conn = http.client.HTTPConnection(host, port, timeout=30)
    mine = []
    for _ in range(per_client):
        started = time.perf_counter()
        conn.request("GET", "/")
        conn.getresponse().read()
        mine.append((time.perf_counter() - started) * 1e6)
    conn.close()
    with lock:
        latencies.extend(mine)
threads = [threading.Thread(target=user) for _ in range(clients)]
started = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"seconds": time.perf_counter() - started, "latencies": latencies}))
"""


def remote_clients(url: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    host, port = url.removeprefix("http://").split(":")
    args = [sys.executable, "-c", _CLIENT, host, port, str(clients), str(per_client)]
    result = json.loads(subprocess.run(args, capture_output=True, check=True, text=True, timeout=300).stdout)
    return result["seconds"], result["latencies"]


def report(label: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"{label:<46} median {statistics.median(samples):8.0f} us   p99 {q[98]:8.0f} us   n={len(samples)}")


ENDPOINT = "sms-local-proxy.proxy-abcdefghijkl.ap-northeast-1.rds.amazonaws.com"
TOKEN_EVENT = {"action": "token", "host": ENDPOINT, "port": 3306, "user": "app_admin"}


def sequential_cold_starts(preload: tuple[str, ...], event: dict, count: int) -> tuple[float, list[float]]:
    """(zygote start s, per-invocation us) with a fresh container for every invocation.

    A tiny `max_container_age_s` retires each container when its invocation returns, so every call is cold.
    """
    with tempfile.TemporaryDirectory() as scratch:
        issuer = CredentialIssuer(IssuerSettings(key_path=Path(scratch) / "issuer.key"))
        credentials = RuntimeCredentials(issuer, "arn:aws:iam::123456789012:role/sms-local-api-exec", "bench")
        config = RuntimeConfig(
            handler="probe_app.lambda_handler",
            code_dir=HANDLERS,
            timeout_s=30,
            region="ap-northeast-1",
            preload_modules=preload,
            address_overrides=(f"{ENDPOINT}:3306=127.0.0.1:3306",),
            max_container_age_s=0.001,
        )
        with LambdaRuntime(config, container_environment=credentials.environment) as runtime:
            started = time.perf_counter()
            runtime._get_zygote()  # the one-off cost, outside the per-container numbers
            zygote_s = time.perf_counter() - started
            samples = timed(lambda: runtime.invoke(event), count)
            assert runtime.stats().cold_starts == count
    return zygote_s, samples


def cold_start_report(count: int) -> None:
    imported = ("boto3", "mysql.connector.plugins.mysql_clear_password")
    variants = (("nothing preloaded", ()), ("boto3 imported", imported), ("boto3 warmed", (*imported, WARM_BOTO3)))
    for label, event in (("cold start + RDS token", TOKEN_EVENT), ("cold start, no boto3 use", {})):
        for preload_label, preload in variants:
            zygote_s, samples = sequential_cold_starts(preload, event, count)
            report(f"{label}, {preload_label}", samples)
            print(f"{'  zygote start (once per runtime)':<46} {zygote_s * 1000:8.0f} ms")


def _answer_times(runtime: LambdaRuntime, event: dict, count: int) -> list[float]:
    """Seconds from the start until each of `count` concurrent invocations answered, sorted."""
    started = time.perf_counter()
    done: list[float] = []

    def one() -> None:
        runtime.invoke(event)
        done.append(time.perf_counter() - started)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(done)


def scheduled_cold_starts(count: int, cpu_s: float) -> None:
    """`count` cold starts at once whose first call burns `cpu_s` of CPU (a TLS + IAM first connection costs
    ~0.1-0.2 s): when the first and the last answer, with the default bound on cold starts and without one."""
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        for label, slots in (("default bound", DEFAULT_CONCURRENT_COLD_STARTS), ("all at once", count)):
            config = RuntimeConfig(
                handler="cold_start_app.lambda_handler",
                code_dir=str(ROOT / "tests" / "dataplane_handlers"),
                environment={"COLD_START_LOG_DIR": scratch},
                max_concurrency=count,
                timeout_s=120,
                max_concurrent_cold_starts=slots,
            )
            with LambdaRuntime(config).prepare() as runtime:
                done = _answer_times(runtime, {"spin": cpu_s}, count)
            print(
                f"{f'{count} cold starts of {cpu_s * 1000:.0f} ms CPU, {label} ({slots})':<46} first {done[0]:6.2f} s"
                f"   median {statistics.median(done):6.2f} s   last {done[-1]:6.2f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=3000)
    parser.add_argument("--cold-starts", type=int, default=20)
    parser.add_argument("--cold-start-cpu-ms", type=float, default=120.0)
    args = parser.parse_args()
    scheduled_cold_starts(100, args.cold_start_cpu_ms / 1000)
    config = RuntimeConfig(
        handler="sample_app.lambda_handler",
        code_dir=HANDLERS,
        max_concurrency=100,
        timeout_s=5,
        preload_modules=("json",),
        max_concurrent_cold_starts=100,  # the 99 below measure how fast containers are made, all at once
    )
    with LambdaRuntime(config) as runtime, HttpApi(runtime.invoke) as api:
        runtime.invoke({})  # start the zygote and one container
        report("runtime.invoke (warm)", timed(lambda: runtime.invoke({"k": "v"}), args.invocations))
        host, port = api.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port))

        def get() -> None:
            conn.request("GET", "/")
            conn.getresponse().read()

        report("HTTP GET via HttpApi (keep-alive, warm)", timed(get, args.invocations))
        conn.close()
        _seconds, latencies = remote_clients(api.url, 1, args.invocations)
        report("HTTP GET, client in another process", latencies)
        per_client = max(1, args.invocations // 10)
        cpu_started = time.process_time()
        seconds, latencies = remote_clients(api.url, 10, per_client)
        cpu_us = (time.process_time() - cpu_started) * 1e6 / len(latencies)
        report("HTTP GET, 10 concurrent clients", latencies)
        print(f"{'  throughput, 10 concurrent clients':<46} {len(latencies) / seconds:8.0f} requests/s")
        print(f"{'  server CPU (API + runtime parent)':<46} {cpu_us:8.0f} us/request")
        started = time.perf_counter()
        threads = [
            threading.Thread(target=runtime.invoke, args=({"action": "sleep", "seconds": 0.5},)) for _ in range(99)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started - 0.5
        stats = runtime.stats()
        print(
            f"{'cold starts (99 concurrent)':<46} {stats.cold_starts - 1} new containers in ~{elapsed:.2f} s "
            f"(handler import median {statistics.median(runtime.init_durations_ms):.1f} ms)"
        )
    cold_start_report(args.cold_starts)


if __name__ == "__main__":
    main()

"""Synth speed: `python main.py` with the fast binding loader vs the plain import, and `cdktf synth` end to end.

Prints medians of wall-clock time (and the peak RSS of the Python+jsii processes). Run: `make bench` or
`.venv/bin/python bench/bench_synth.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from local.control_plane.toolchain import cdktf_command, terraform_env  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(label: str, cmd: list[str], env: dict[str, str], runs: int) -> None:
    timed(cmd, env)  # warm the jsii package cache and the OS page cache
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    samples = [timed(cmd, env) for _ in range(runs)]
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(
        f"{label:<38} median {statistics.median(samples):6.2f} s   min {min(samples):6.2f} s   "
        f"(runs={runs}, peak RSS so far {peak:,.0f} MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = terraform_env()
    base.pop("SMS_PLAIN_PROVIDER_IMPORT", None)
    with tempfile.TemporaryDirectory() as out:
        env = dict(base, CDKTF_OUTDIR=out)
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
        measure("python main.py (fast loader)", [sys.executable, "main.py"], env, args.runs)
        measure("cdktf synth (CLI, fast loader)", cdktf_command() + ["synth", "--output", out], env, args.runs)
        measure(
            "python main.py (plain import)",
            [sys.executable, "main.py"],
            dict(env, SMS_PLAIN_PROVIDER_IMPORT="1"),
            max(1, args.runs // 2),
        )


if __name__ == "__main__":
    main()

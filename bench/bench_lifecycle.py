"""The CI lifecycle's wall time: up -> deploy -> diff (no changes) -> destroy -> down, per step.

Runs in a fresh `git clone` of the committed tree (what CI checks out) with its own emulator on a free port,
so it never touches your local state. Target: the whole cycle under 6 minutes on 2 cores.

    .venv/bin/python bench/bench_lifecycle.py [--keep]   # --keep leaves the temp checkout for a look
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from local.control_plane import lifecycle as lc  # noqa: E402
from local.control_plane.emulator_control import down, up  # noqa: E402
from local.control_plane.project import Project  # noqa: E402
from local.control_plane.state_queries import state_list  # noqa: E402

TARGET_S = 360.0


def fresh_clone(destination: Path) -> None:
    """A clone of the committed tree (fresh mtimes, like CI); ``.venv`` and ``node_modules`` linked, never copied."""
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO_ROOT), str(destination)], check=True, timeout=300)
    for installed in (".venv", "node_modules"):
        (destination / installed).symlink_to(REPO_ROOT / installed, target_is_directory=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary checkout")
    parser.add_argument("--verbose", action="store_true", help="echo every line of cdktf/terraform output")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    root = workdir / "repo"
    fresh_clone(root)

    def output(line: str) -> None:
        if args.verbose or not line.startswith("    "):
            print(line, file=sys.stderr, flush=True)

    project = Project(root=root, emulator_port=0, output=output)
    print(f"checkout: git clone of the committed tree at {root}", file=sys.stderr)
    started = time.monotonic()
    ok = False
    try:
        up(project)
        lc.deploy("local", project)
        changes = lc.diff("local", project, synthesize=True)
        lc.destroy("local", project)
        left = state_list("local", project)
        ok = not changes and not left
    finally:
        down(project)
        total = time.monotonic() - started
        print("\nstep times:")
        project.timings.report(print)
        print(
            f"\nwall time, deploy -> diff -> destroy cycle: {total:.1f} s "
            f"(target {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'MISSED'})"
        )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        print("the cycle did not end clean: changes after deploy or resources left after destroy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

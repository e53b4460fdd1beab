"""Thin wrapper: `python bench/run_experiment.py [--requests N] [--users U] [--settings-from-synth] ...`.

Same as `python -m local experiment`; runs the 10,000-request comparison (direct vs proxy) by default.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.experiment import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The fast provider-binding loader (modules/bindings.py) synthesizes byte-identical output to the plain import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modules.project import REPO_ROOT

pytestmark = pytest.mark.heavy


def _synth(outdir: Path, plain: bool) -> dict[str, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_")}
    env.update(CDKTF_OUTDIR=str(outdir), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    if plain:
        env["SMS_PLAIN_PROVIDER_IMPORT"] = "1"
    code = (
        "import sys, runpy; sys.argv = ['main.py']; runpy.run_path('main.py', run_name='__main__');"
        "print(len([m for m in sys.modules if m.startswith('cdktf_cdktf_provider_aws.')]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    files = {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*")) if p.is_file()}
    files["#provider submodules loaded"] = run.stdout.strip().splitlines()[-1].encode()
    return files


def test_fast_loader_output_is_byte_identical_to_plain_import(tmp_path):
    fast = _synth(tmp_path / "fast", plain=False)
    plain = _synth(tmp_path / "plain", plain=True)
    loaded_fast = int(fast.pop("#provider submodules loaded"))
    loaded_plain = int(plain.pop("#provider submodules loaded"))
    assert loaded_plain > 2000 and loaded_fast < 100, (loaded_fast, loaded_plain)
    assert any(name.endswith("cdk.tf.json") for name in fast)
    assert fast.keys() == plain.keys()
    assert [name for name in fast if fast[name] != plain[name]] == []

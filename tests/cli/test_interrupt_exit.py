"""An interrupt kinase handled ends the process with status 130, never by SIGINT.

CPython 3.11 marks a KeyboardInterrupt raised inside `exec()` of a string as unhandled even when it
is caught, and `python -m` then ends by SIGINT after the cleanup. Module imports hit that path
(dataclasses and namedtuple build methods with exec), so a SIGTERM early in `python -m kinase_cli`
ended it by SIGINT, with nothing on stderr: found by tests/e2e/test_interrupts.py under load.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.cli import ROOT

PROBE = """\
import sys
from kinase_cli import interrupts

interrupts.install()
try:
    exec("import signal\\nsignal.raise_signal(signal.{sig})\\nwhile True: pass")
except KeyboardInterrupt:
    raise SystemExit(interrupts.EXIT_CODE)
"""


def run_as_module(tmp_path, sig: str) -> int:
    package = tmp_path / "probe"
    package.mkdir()
    (package / "__main__.py").write_text(PROBE.format(sig=sig))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, env=env, capture_output=True, timeout=60).returncode


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_handled_inside_exec_code_exits_130_not_by_sigint(tmp_path, sig):
    assert run_as_module(tmp_path, sig) == 130  # without the exit hook: -2, killed by SIGINT

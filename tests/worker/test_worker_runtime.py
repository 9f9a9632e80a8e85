"""The container's runtime, without Docker: a fresh venv from worker/requirements.txt alone runs the
worker on the ONNX test model, and torch is not importable there.

The venv is built anew on every run, as on a fresh machine, so a missing requirement cannot hide.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import ROOT
from support.worker_stack import SHAPES_ONNX

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REQUIREMENTS = ROOT / "worker" / "requirements.txt"
NODEPS = ROOT / "worker" / "requirements-nodeps.txt"  # installed --no-deps after REQUIREMENTS, as worker/Dockerfile does


def runtime_venv(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True, timeout=1200)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(NODEPS)], check=True, timeout=300)
    return python


def test_requirements_alone_run_the_worker_without_torch(media, tmp_path, make_clip):
    python = runtime_venv(tmp_path / "venv")
    image = tmp_path / "opt-kinase"
    shutil.copytree(ROOT / "worker", image / "worker", ignore=shutil.ignore_patterns("__pycache__", "Dockerfile*"))
    video = make_clip(frames=10, fps=15, size=(320, 240), seed=11).path
    target = media.fresh()
    env = {k: v for k, v in media.worker_env(target, str(video), model=SHAPES_ONNX).items() if k != "PYTHONPATH"}

    for module in ("torch", "ultralytics", "kinase_cli"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], cwd=image, capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    run = subprocess.run([str(python), "-m", "worker"], cwd=image, env=env, capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=10)
    assert sorted(m["source"]["frame_number"] for m in messages) == list(range(10))
    assert {m["model"] for m in messages} == {"shapes-yolo11n.onnx"}

"""Where kinase keeps its state: `$KINASE_HOME` (default ~/.kinase) and the project root."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    path = Path(os.environ.get("KINASE_HOME") or Path.home() / ".kinase")
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_dir(env: str, local: bool) -> Path:
    path = home() / ("local" if local else "aws") / env
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_dir() -> Path:
    path = home() / "local"
    path.mkdir(parents=True, exist_ok=True)
    return path

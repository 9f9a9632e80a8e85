"""The `--json` envelope: a stable, versioned shape documented in docs/OPERATIONS.md.

Every command that shows data prints, with `--json`, exactly one object on stdout:

    {"kinase": 1, "command": "<command path>", "data": <command-specific payload>}

Streaming commands (`watch --json`, `logs --json`) print one JSON object per line instead.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ENVELOPE_VERSION = 1


def envelope(command: str, data: Any) -> dict:
    return {"kinase": ENVELOPE_VERSION, "command": command, "data": data}


def emit(command: str, data: Any) -> None:
    sys.stdout.write(json.dumps(envelope(command, data), default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def emit_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()

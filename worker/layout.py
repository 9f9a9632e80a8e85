"""The frames bucket's layout: where frames, checkpoints, uploaded inputs and rules live in it.

A leaf (it imports nothing of the worker), so the worker, the CLI, the stacks (task role prefixes,
lifecycle rules) and the tests build every key here instead of by hand. Keys are deterministic:
a frame done again overwrites itself, a stream's checkpoint has one key.
"""

from __future__ import annotations

import re
import time

FRAMES_PREFIX = "frames/"  # the annotated JPEG of each frame
CHECKPOINTS_PREFIX = "checkpoints/"  # one checkpoint per stream (Kinesis Video), and those set aside beside it
INPUTS_PREFIX = "inputs/"  # videos uploaded for a run (`kinase run-task --source FILE`); the task role may read them
RULES_PREFIX = "rules/"  # the versioned rules (`kinase rules apply`, worker/rules.py)

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_component(value: str) -> str:
    """A key component that is stable for the same input and cannot form `..` or `/`."""
    cleaned = _UNSAFE.sub("_", value).strip("._") or "_"
    return cleaned[:200]


def frame_key(frame_id: str) -> str:
    """The S3 key of a frame's JPEG follows from its id, so a frame done again overwrites itself."""
    return f"{FRAMES_PREFIX}{frame_id}.jpg"


def input_key(sha256: str, file_name: str) -> str:
    """An uploaded video is addressed by its content, so the same file run again is the same object and gives the
    same frame ids. The hash is in the object's name, not a folder: a file's frame ids carry only that name."""
    return f"{INPUTS_PREFIX}{sha256[:16]}-{safe_component(file_name)}"


def checkpoint_key(stream_name: str) -> str:
    """Where the worker of `stream_name` keeps its checkpoint."""
    return f"{CHECKPOINTS_PREFIX}{safe_component(stream_name)}.json"


def set_aside_key(checkpoint_key: str, when: float) -> str:
    """Where an unusable checkpoint is kept beside the real one, named by the time (epoch seconds) it was set aside."""
    return checkpoint_key.removesuffix(".json") + f".set-aside-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(when))}.json"


def is_set_aside(key: str) -> bool:
    return key.startswith(CHECKPOINTS_PREFIX) and ".set-aside-" in key

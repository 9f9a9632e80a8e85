"""Fixtures of the worker tests: the generated clips they put and read, each made once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest


class Clip(NamedTuple):
    """A generated video and the ground truth of each of its frames (what `shapes_video` drew)."""

    path: Path
    truth: list[list[dict]]


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory) -> Callable[..., Clip]:
    """`make_clip(suffix=".mp4", **options)`: `shapes_video` with these options, cached by them for the session.

    Tests read the file (put it, hand it to a worker), never change it: one that cuts a clip copies it first.
    """
    from kinase_cli.workflows.samples import shapes_video

    folder = tmp_path_factory.mktemp("clips")
    made: dict[str, Clip] = {}

    def make(suffix: str = ".mp4", **options) -> Clip:
        key = repr((suffix, sorted(options.items())))
        if key not in made:
            path = folder / f"clip-{len(made)}{suffix}"
            made[key] = Clip(path, shapes_video(path, **options))
        return made[key]

    return make

"""`--save DIR`: download annotated frames in parallel, bounded, to paths that stay inside DIR.

S3 keys are producer-controlled text. Every key component is reduced to a safe file name (no
`..`, no separators, no leading slash) and the resolved destination is checked to lie inside DIR
before anything is written, so no key can place a file elsewhere. Folders are made only once the
object has been read, so a message naming a missing object leaves nothing behind.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from kinase_cli.ui.errors import KinaseError


def destination(root: Path, key: str) -> Path:
    """Where the object `key` is saved under `root`; raises KinaseError if it would not be inside it."""
    from worker.layout import FRAMES_PREFIX, safe_component

    if key.startswith(FRAMES_PREFIX):
        key = key[len(FRAMES_PREFIX) :]
    parts = [safe_component(p) for p in key.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        parts = ["_"]
    root = root.resolve()
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root):
        raise KinaseError(f"refusing to save {key!r}: it resolves outside {root}")
    return path


def check_writable(root: Path) -> None:
    """Fail before anything is received when DIR cannot be created or written (a disk problem is not a message problem)."""
    import tempfile

    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise KinaseError(f"cannot save frames into {root}: {exc.strerror or exc}", "pick a writable folder for --save") from None


class Saver:
    """Downloads objects of one bucket into one directory with at most `parallel` transfers at a time.

    `submit` blocks while `backlog` downloads are pending, so a deep queue cannot pile up
    unbounded work; the returned future resolves to the written path.
    """

    def __init__(self, s3, bucket: str, root: Path, parallel: int = 8, backlog: int = 32):
        self.s3 = s3
        self.bucket = bucket
        self.root = root
        check_writable(root)
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="kinase-save")
        self._slots = threading.BoundedSemaphore(backlog)

    def submit(self, key: str) -> Future:
        self._slots.acquire()
        try:
            future = self._pool.submit(self._download, key)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _download(self, key: str) -> Path:
        path = destination(self.root, key)
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(self.root.resolve()):
            raise KinaseError(f"refusing to save {key!r}: {path.parent} leads outside {self.root}")
        partial = path.with_name(f".{path.name}.{threading.get_ident()}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(partial, path)
        return path

    def close(self) -> None:
        self._pool.shutdown(wait=True)

"""`kinase watch --local --web` as the browser tests run it: started, its printed URL read, stopped."""

from __future__ import annotations

import signal
import subprocess
import threading

from support.cli import KINASE, ROOT


class WebWatch:
    """A running `kinase watch --local --web`; `url` is what it printed, token included."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [*KINASE, "watch", "--local", "--web", "--port", "0", "--idle-timeout", "300", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        found = threading.Event()

        def read(stream, lines):
            for line in stream:
                lines.append(line)
                if line.startswith("web view: "):
                    found.set()

        for stream, lines in ((self.proc.stderr, self.stderr), (self.proc.stdout, self.stdout)):
            threading.Thread(target=read, args=(stream, lines), daemon=True).start()
        if not found.wait(120):
            self.stop()
            raise AssertionError("no web view URL printed:\n" + "".join(self.stderr))
        self.url = next(line for line in self.stderr if line.startswith("web view: ")).split(" ", 2)[2].strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

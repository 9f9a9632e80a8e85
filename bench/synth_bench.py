"""`kinase synth` against bare `cdk synth` on the same app (target: <= 1.1x).

The baseline is what an operator without kinase would type: the project-local cdk CLI on
infra/ with the same interpreter. Runs alternate in one process run so noise hits both alike.
Usage: python -m bench.synth_bench [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.1


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(runs: int = 5) -> dict:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_CLI_TELEMETRY": "true"}
    with tempfile.TemporaryDirectory() as tmp:
        env["KINASE_HOME"] = tmp
        kinase = [sys.executable, "-m", "kinase_cli", "synth", "--out", f"{tmp}/kinase.out"]
        bare = [
            str(ROOT / "node_modules" / ".bin" / "cdk"),
            "synth",
            "--all",
            "--quiet",
            "--app",
            f"{shlex.quote(sys.executable)} app.py",
            "--output",
            f"{tmp}/bare.out",
        ]
        samples: dict[str, list[float]] = {"kinase synth": [], "cdk synth": []}
        for _ in range(runs):
            samples["kinase synth"].append(timed(kinase, ROOT, env))
            samples["cdk synth"].append(timed(bare, ROOT / "infra", env))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{'command':<14} {'median s':>9} {'runs':>5}")
    for name, values in samples.items():
        print(f"{name:<14} {med[name]:>9.2f} {len(values):>5}")
    ratio = med["kinase synth"] / med["cdk synth"]
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"kinase synth / cdk synth = {ratio:.2f}x; {verdict} the {TARGET_RATIO}x target")
    return {"kinase_s": med["kinase synth"], "cdk_s": med["cdk synth"], "ratio": ratio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)

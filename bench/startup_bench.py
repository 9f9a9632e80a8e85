"""`kinase --help` start-up time against a bare interpreter start (target: median <= 0.3 s).

Both commands run alternately in one process run, so machine noise hits both the same way.
Usage: python -m bench.startup_bench [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 0.3


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(runs: int = 15) -> dict:
    kinase = [sys.executable, "-m", "kinase_cli", "--help"]
    baseline = [sys.executable, "-c", "pass"]
    timed(kinase)
    samples = {"kinase --help": [], "python -c pass": []}
    for _ in range(runs):
        samples["kinase --help"].append(timed(kinase))
        samples["python -c pass"].append(timed(baseline))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{'command':<18} {'median s':>9} {'p90 s':>8}")
    for name, values in samples.items():
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        print(f"{name:<18} {med[name]:>9.3f} {p90:>8.3f}")
    ratio = med["kinase --help"] / med["python -c pass"]
    verdict = "meets" if med["kinase --help"] <= TARGET_S else "MISSES"
    print(f"kinase --help: {med['kinase --help']:.3f} s median ({ratio:.1f}x a bare interpreter); {verdict} the {TARGET_S} s target")
    return {"median_s": med["kinase --help"], "baseline_s": med["python -c pass"], "ratio": ratio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)

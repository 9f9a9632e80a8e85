"""Run every benchmark in one process run and print the headline ratios: `python -m bench` (`make bench`).

Each benchmark prints its own figures first; the table at the end compares each with its target.
Record the output in docs/BENCHMARKS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform

from bench import events_bench, fleet_bench, memory_bench, startup_bench, synth_bench, watch_bench, worker_bench


def main(quick: bool = False) -> None:
    rows = []

    print("== kinase --help start-up")
    startup = startup_bench.main(runs=7 if quick else 15)
    rows.append(("kinase --help median", f"{startup['median_s']:.3f} s", "<= 0.3 s", startup["median_s"] <= 0.3))

    print("\n== kinase synth vs cdk synth")
    synth = synth_bench.main(runs=2 if quick else 5)
    rows.append(("kinase synth / cdk synth", f"{synth['ratio']:.2f}x", "<= 1.1x", synth["ratio"] <= 1.1))

    print("\n== kinase watch vs receive 1, delete 1")
    watch = watch_bench.main(messages=150 if quick else 300, runs=1 if quick else 3)
    for rtt, ratio in watch["ratios"].items():
        rows.append((f"watch / hackathon consumer (+{rtt:.0f} ms)", f"{ratio:.2f}x", ">= 3x", ratio >= 3))

    print("\n== worker vs yolo predict vs its own inference loop")
    worker = worker_bench.main(frames=60 if quick else 150, runs=1 if quick else 2)
    for name, figure, target, verdict, _ in worker["rows"]:
        rows.append((name, figure, target.replace("≥ ", ">= ").replace("≤ ", "<= "), verdict == "met"))

    print("\n== events: tracking and rules against a frame's CPU")
    events = events_bench.main(frames=100, objects=(20,), repeats=1) if quick else events_bench.main()
    for name, figure, target, verdict, _ in events["rows"]:
        rows.append((name, figure, target, verdict == "met"))

    print("\n== fleet worker: K live streams against K one-stream workers, batching against none")
    fleet = fleet_bench.main(seconds=4, streams=(1, 2), quick=True) if quick else fleet_bench.main()
    for name, figure, target, verdict, _ in fleet["rows"]:
        rows.append((name, figure, target.replace("≥ ", ">= "), verdict == "met"))

    print("\n== frame memory: a fleet worker on live 4K streams, with the worker-wide budget and without")
    memory = memory_bench.main(seconds=2, streams=(1, 2)) if quick else memory_bench.main()
    for name, figure, target, verdict, _ in memory["rows"]:
        rows.append((name, figure, target.replace("≤ ", "<= "), verdict == "met"))

    print(f"\n== summary ({platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(f"{'benchmark':<40} {'figure':>10} {'target':>12}  verdict")
    for name, figure, target, ok in rows:
        print(f"{name:<40} {figure:>10} {target:>12}  {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller inputs")
    main(parser.parse_args().quick)

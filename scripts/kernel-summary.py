#!/usr/bin/env python3
"""Sums Nsight Compute's kernel durations (the GPU bundle's `run.sh --kernels`, kernels.csv) by kernel:
launches, total and mean time, share of the whole; the busiest first.

    kernel-summary.py kernels.csv [frames]     frames: how many frames the capture held (per-frame figures)
"""
import csv
import sys
from collections import defaultdict


def table(title, totals, whole, frames, rows):
    print(f"\n{title}")
    print(f"{'kernel':<60} {'grid':>16} {'block':>14} {'n/frame':>8} {'ms/frame':>9} {'mean us':>8} {'share':>6}")
    for (name, grid, block), (n, t) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:rows]:
        print(f"{name:<60} {grid:>16} {block:>14} {n / frames:>8.1f} {t / frames / 1e6:>9.3f} {t / n / 1e3:>8.1f} {100 * t / whole:>5.1f}%")


def main():
    path = sys.argv[1]
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rows = [line for line in open(path, errors="replace") if line.startswith('"')]
    totals = defaultdict(lambda: [0, 0.0])
    for row in csv.DictReader(rows):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        ns = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "nsecond")
        ns *= {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(unit, 1)
        name = row["Kernel Name"]
        key = (name[:60], row.get("Grid Size", ""), row.get("Block Size", ""))
        totals[key][0] += 1
        totals[key][1] += ns
    if not totals:
        print(f"kernel-summary: no kernel durations in {path}")
        return 1
    whole = sum(t for _, t in totals.values())
    launches = sum(n for n, _ in totals.values())
    print(f"kernels: {launches / frames:.0f} launches, {whole / frames / 1e6:.2f} ms of kernel time a frame ({frames} frames)")
    by_name = defaultdict(lambda: [0, 0.0])
    for (name, _, _), (n, t) in totals.items():
        by_name[name][0] += n
        by_name[name][1] += t
    table("by kernel", {(k, "", ""): v for k, v in by_name.items()}, whole, frames, 25)
    table("by kernel and launch shape", totals, whole, frames, 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

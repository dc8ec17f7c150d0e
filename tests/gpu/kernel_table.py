#!/usr/bin/env python3
"""kernel_table.py NCU_CSV [STEPS] — per-kernel GPU time of xlmc's training step from Nsight
Compute's CSV (run.sh, part kernels: `ncu --metrics gpu__time_duration.sum --csv`), summed by
kernel name and divided by the STEPS the profiled program ran (default 1: run.sh profiles
the first step, set-up kernels included), largest first. The last line is the total per step.

The tree has no cost model of the kernels yet, so there is no predicted column; the share of
the step and the calls per step are what to hold a model against.
"""
import collections
import csv
import sys


def main():
    path, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    lines = open(path, errors="replace").read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
    ns, calls = collections.Counter(), collections.Counter()
    for r in csv.DictReader(lines[start:]):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = r["Kernel Name"].split("(")[0][:60]
        ns[name] += float(r["Metric Value"].replace(",", ""))
        calls[name] += 1
    total = sum(ns.values())
    if not total:
        print("no kernel times in the CSV")
        return 1
    print(f"{'kernel':60s} {'calls/step':>10s} {'us/step':>10s} {'share':>6s}")
    for name, t in ns.most_common():
        print(f"{name:60s} {calls[name] / steps:10.1f} {t / steps / 1e3:10.1f} "
              f"{100 * t / total:5.1f}%")
    print(f"{len(ns)} kernels, {sum(calls.values()) / steps:.0f} launches and "
          f"{total / steps / 1e6:.2f} ms of GPU time per step (Nsight Compute, clocks as found)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

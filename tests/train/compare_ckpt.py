#!/usr/bin/env python3
"""compare_ckpt.py A.h5 B.h5 [--rtol R] [--groups weights,adam_m,adam_v] [--exclude S,...]

Compares the tensors of two xlmc checkpoints with h5py + numpy (independent of xlmc's own
reader). --rtol 0 (default): every tensor bit-identical. Otherwise the parameter vectors
must agree within R relative: ||a - b|| / ||a|| <= R over all compared tensors together (L2),
and no single element may differ by more than R * max|a| (the largest parameter), so that
elements near zero — rounding-sized in any run — do not dominate. --exclude skips tensors
whose name contains one of the given substrings. Exits 1 listing the worst tensors."""
import argparse
import sys

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--rtol", type=float, default=0.0)
ap.add_argument("--groups", default="weights")
ap.add_argument("--exclude", default="")
args = ap.parse_args()
excl = [s for s in args.exclude.split(",") if s]

pairs = []
with h5py.File(args.a, "r") as fa, h5py.File(args.b, "r") as fb:
    for g in args.groups.split(","):
        names = sorted(fa[g].keys())
        if names != sorted(fb[g].keys()):
            sys.exit(f"{g}: the checkpoints hold different tensors")
        for name in names:
            if any(s in name for s in excl):
                continue
            x, y = fa[g][name][()], fb[g][name][()]
            if x.shape != y.shape:
                sys.exit(f"{g}/{name}: shape {x.shape} vs {y.shape}")
            pairs.append((f"{g}/{name}", x, y))

if args.rtol == 0:
    bad = [n for n, x, y in pairs if x.tobytes() != y.tobytes()]
    for n in bad[:10]:
        print(f"{n}: not bit-identical")
    if bad:
        sys.exit(f"{len(bad)} of {len(pairs)} tensors differ")
    print(f"{len(pairs)} tensors bit-identical")
    sys.exit(0)

scale = max(float(np.max(np.abs(x))) for _, x, _ in pairs)
num = den = 0.0
worst = []
for n, x, y in pairs:
    d = x.astype(np.float64) - y
    num += float(np.sum(d * d))
    den += float(np.sum(x.astype(np.float64) ** 2))
    worst.append((float(np.max(np.abs(d))) / scale, n))
rel = (num / den) ** 0.5 if den else 0.0
worst.sort(reverse=True)
print(f"{len(pairs)} tensors: relative L2 difference {rel:.3e}, largest element difference "
      f"{worst[0][0]:.3e} of the largest parameter ({worst[0][1]})")
if rel > args.rtol or worst[0][0] > args.rtol:
    sys.exit(f"parameters differ by more than {args.rtol:g} relative")

#!/usr/bin/env python3
"""make_half_reference.py — the fixture of test_half_round_matches_numpy.

Writes half_reference.bin: N pairs of little-endian float32 (x, float32(float16(x))), the
conversion done by numpy (IEEE round to nearest even, subnormals, overflow to inf). Inputs: the
edges (65504, the 65520 tie, the smallest subnormal and its half, ties between subnormals,
zeros, infinities, NaN) and random bit patterns, half of them within the float16 range.

    cd tests/model && python3 make_half_reference.py
"""
import numpy as np

rng = np.random.default_rng(2026)
edges = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.996, 65520.0, -65520.0, 65536.0,
                  2.0**-14, 2.0**-24, 2.0**-25, -2.0**-25, 3 * 2.0**-25, 5 * 2.0**-25,
                  2.0**-26, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1e-30, np.inf, -np.inf],
                 dtype=np.float32)
anybits = rng.integers(0, 2**32, size=2000, dtype=np.uint64).astype(np.uint32)
inrange = (rng.integers(0x33000000, 0x47800000, size=6000, dtype=np.uint64)
           | (rng.integers(0, 2, size=6000, dtype=np.uint64) << 31)).astype(np.uint32)
x = np.concatenate([edges, anybits.view(np.float32), inrange.view(np.float32)])
x = x[~np.isnan(x)]  # NaN payloads are not compared
with np.errstate(over="ignore"):
    y = x.astype(np.float16).astype(np.float32)
np.stack([x, y], axis=1).astype("<f4").tofile("half_reference.bin")
print(len(x), "pairs")

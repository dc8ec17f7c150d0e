#!/usr/bin/env python3
"""train_check.py METRICS_JSONL — the verdict on the kit's short training run (run.sh, part
train): prints one line and exits 0 when the loss fell and the loss scale behaved, else 1.

  the loss fell:          the mean of the last 3 logged losses is at least 0.2 nats under the
                          first (a run that learns nothing stays within noise of log V)
  every loss is finite
  the scale behaved:      fp16 skips at most a quarter of the steps (a few halvings from 2^16
                          at the start are normal), and the scale ends between 1 and 2^24
"""
import json
import math
import sys


def main():
    try:
        rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    except (OSError, ValueError) as e:
        print(f"no usable metrics from the run: {e}")
        return 1
    train = [r for r in rows if r.get("type") == "train"]
    if len(train) < 5:
        print(f"only {len(train)} training steps logged")
        return 1
    losses = [r["loss"] for r in train]
    scales = [r["loss_scale"] for r in train]
    skipped = train[-1].get("skipped", 0)
    first, last3 = losses[0], sum(losses[-3:]) / 3
    problems = []
    if not all(math.isfinite(x) for x in losses):
        problems.append("a loss is not finite")
    if not last3 <= first - 0.2:
        problems.append(f"the loss did not fall ({first:.3f} -> {last3:.3f})")
    if skipped > len(train) / 4:
        problems.append(f"{skipped} steps skipped for overflow")
    if not 1 <= scales[-1] <= 2**24:
        problems.append(f"loss scale ended at {scales[-1]:g}")
    print(f"{train[-1]['step']} steps, loss {first:.3f} -> {losses[-1]:.3f} (last 3 mean "
          f"{last3:.3f}), loss scale {scales[0]:g} -> {scales[-1]:g}, {skipped} skipped, "
          f"{train[-1].get('tokens_per_s', 0):.0f} tok/s"
          + ("; " + "; ".join(problems) if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

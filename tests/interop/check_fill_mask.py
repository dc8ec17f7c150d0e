#!/usr/bin/env python3
"""Compare `xlmc fill-mask` output with transformers' XLMWithLMHeadModel (causal=False).

usage: check_fill_mask.py HF_DIR LANG_ID IDS FILL_OUTPUT
  IDS: the token ids of the text as xlmc encodes it, </s> ... </s> with 5 (<special1>) at
  each mask, space separated. FILL_OUTPUT: what `xlmc fill-mask` printed. For every mask, the
  printed probabilities must be transformers' softmax over the whole vocabulary at that
  position, top-k over the non-special ids (>= 14) in descending order, within 1e-4 (the
  output has 4 decimals), and no special word listed. Exit 0, 1 on a mismatch, 77 when
  transformers is not importable.
"""
import sys

try:
    import torch
    from transformers import XLMWithLMHeadModel
except ImportError as e:
    print(f"SKIPPED: transformers/torch not importable ({e})")
    sys.exit(77)


def main():
    d, lang, ids_text, out_path = sys.argv[1:5]
    ids = [int(x) for x in ids_text.split()]
    model = XLMWithLMHeadModel.from_pretrained(d).double().eval()
    if model.config.causal:
        print("FAIL: the export says causal: true")
        return 1
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x, langs=torch.full_like(x, int(lang))).logits[0]
    probs = torch.softmax(logits, dim=-1)
    lines = [l.split() for l in open(out_path) if l.strip().startswith("mask ")]
    masks = [t for t, i in enumerate(ids) if i == 5]
    if len(lines) != len(masks):
        print(f"FAIL: {len(lines)} mask lines printed, {len(masks)} masks in the text")
        return 1
    failed = False
    for line, t in zip(lines, masks):
        got = [float(p) for p in line[3::2]]
        words = line[2::2]
        p = probs[t].clone()
        p[:14] = -1
        top = torch.argsort(p, descending=True, stable=True)[:len(got)]
        want = [probs[t, i].item() for i in top]
        worst = max(abs(a - b) for a, b in zip(got, want))
        print(f"mask at {t}: xlmc {got}, transformers {[round(w, 4) for w in want]}, "
              f"max |diff| {worst:.2g}")
        if worst > 1e-4 or len(got) < 3:
            failed = True
        if any("<" in w for w in words):
            print(f"FAIL: special words listed: {words}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

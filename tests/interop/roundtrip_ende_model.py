#!/usr/bin/env python3
"""A tiny XLMWithLMHeadModel with the released en-de vocabulary size (64699 rows: not a
multiple of 128, so xlmc pads it inside), for test_export_roundtrip_hf_ende.sh.

usage: roundtrip_ende_model.py TOKENIZER_DIR OUT_DIR BATCH.h5
  TOKENIZER_DIR: vocab.json and merges.txt of the released pair (test_hf_vocab_roundtrip's)
  OUT_DIR:  save_pretrained of a random model (dim 16, 1 layer) plus the tokenizer files
  BATCH.h5: input_ids, langs, attention_mask (B,T) int32 and transformers' causal logits
            (B,T,V) float32 on them: the reference xlmc must reproduce after import
Exit 77 (skip) when transformers is not importable.
"""
import json
import os
import shutil
import sys

try:
    import h5py
    import numpy as np
    import torch
    from transformers import XLMConfig, XLMWithLMHeadModel
except ImportError as e:
    print(f"SKIPPED: transformers/torch/h5py not importable ({e})")
    sys.exit(77)


def main():
    tok_dir, out, batch = sys.argv[1:4]
    with open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8") as f:
        V = len(json.load(f))
    if V != 64699:
        print(f"FAIL: {tok_dir}/vocab.json has {V} words, the released pair has 64699")
        sys.exit(1)
    torch.manual_seed(14)
    cfg = XLMConfig(vocab_size=V, emb_dim=16, n_layers=1, n_heads=2, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=64, causal=True, dropout=0.1,
                    attention_dropout=0.1, layer_norm_eps=1e-12, lang2id={"de": 0, "en": 1},
                    id2lang={0: "de", 1: "en"}, pad_index=2, pad_token_id=2)
    model = XLMWithLMHeadModel(cfg)
    with torch.no_grad():  # LayerNorms and biases off their 1/0 init: a swap would show
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        # ids near the end of the vocabulary, where the padded rows begin, get their own
        # rows: the last real row must be the last row of the output
        model.pred_layer.proj.bias[-3:] += 2.0
    model.save_pretrained(out)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(out, name))
    B, T = 2, 10
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(14, V, (B, T), generator=g)
    ids[0, 3] = V - 1  # the last real row, just below the padding
    mask = torch.ones(B, T, dtype=torch.long)
    ids[1, 7:] = 2
    mask[1, 7:] = 0
    langs = torch.tensor([[0] * T, [1] * T])
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, langs=langs, attention_mask=mask).logits.numpy()
    with h5py.File(batch, "w") as f:
        f["input_ids"] = ids.numpy().astype(np.int32)
        f["langs"] = langs.numpy().astype(np.int32)
        f["attention_mask"] = mask.numpy().astype(np.int32)
        f["logits"] = logits.astype(np.float32)
    print(f"tiny model with V = {V} ({V % 128} rows past a multiple of 128) in {out}")


if __name__ == "__main__":
    main()

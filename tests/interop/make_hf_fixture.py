#!/usr/bin/env python3
"""Make the import fixtures: tiny random XLMWithLMHeadModel directories saved by transformers'
save_pretrained, plus their logits on a fixed batch (the reference xlmc must reproduce).

  hf_tiny/      F32 weights; config.json says causal: false like the released
                xlm-clm-ende-1024 although the logits are those of the causal model
  hf_tiny_f16/  the same model stored as F16 (logits of the F16-rounded weights in fp32)
  hf_tiny_batch.h5      input_ids, langs, attention_mask (B,T) int32, logits (B,T,V) float32
  hf_tiny_f16_batch.h5  the same batch, logits of hf_tiny_f16

The tokenizer is a small piece of the released en-de BPE: the first 40 merges of
SHARED/xlm-ende/codes and the symbols they use, in Hugging Face's spelling ("x</w>" ends a
word). usage: make_hf_fixture.py SHARED_DIR OUT_DIR   (OUT_DIR = tests/interop)
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
from transformers import XLMConfig, XLMWithLMHeadModel

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]


def tokenizer_files(shared, n_merges=40):
    merges = []
    with open(os.path.join(shared, "xlm-ende", "codes"), encoding="utf-8") as f:
        for line in f:
            a, b, _ = line.split()
            merges.append((a, b))
            if len(merges) == n_merges:
                break
    words = list(SPECIALS)
    chars = sorted({c for a, b in merges for c in (a + b).replace("</w>", "")})
    for c in chars:  # every character both as a continuation and as a word end
        words += [c, c + "</w>"]
    for a, b in merges:
        m = a + b
        if m not in words:
            words.append(m)
    return {w: i for i, w in enumerate(words)}, merges


def save_dir(model, vocab, merges, path, causal_in_config):
    model.config.causal = causal_in_config
    model.save_pretrained(path)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=2)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        for a, b in merges:
            f.write(f"{a} {b}\n")


def logits_of(model, ids, langs, mask):
    model.config.causal = True
    model.transformer.causal = True
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, langs=langs, attention_mask=mask).logits.numpy()


def main():
    shared, out = sys.argv[1], sys.argv[2]
    vocab, merges = tokenizer_files(shared)
    torch.manual_seed(8)
    cfg = XLMConfig(vocab_size=len(vocab), emb_dim=32, n_layers=2, n_heads=4, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=64, causal=True, dropout=0.1,
                    attention_dropout=0.1, layer_norm_eps=1e-12, lang2id={"de": 0, "en": 1},
                    id2lang={0: "de", 1: "en"}, pad_index=2, pad_token_id=2)
    model = XLMWithLMHeadModel(cfg)
    # move LayerNorms and biases off their 1/0 init so a swapped tensor cannot go unnoticed
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    B, T = 2, 12
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, len(vocab), (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    ids[1, 9:] = 2  # row 1 is right padded with <pad>
    mask[1, 9:] = 0
    langs = torch.tensor([[0] * T, [1] * T])

    def write_batch(path, logits):
        with h5py.File(path, "w") as f:
            f["input_ids"] = ids.numpy().astype(np.int32)
            f["langs"] = langs.numpy().astype(np.int32)
            f["attention_mask"] = mask.numpy().astype(np.int32)
            f["logits"] = logits.astype(np.float32)

    write_batch(os.path.join(out, "hf_tiny_batch.h5"), logits_of(model, ids, langs, mask))
    save_dir(model, vocab, merges, os.path.join(out, "hf_tiny"), False)
    half = model.half()
    save_dir(half, vocab, merges, os.path.join(out, "hf_tiny_f16"), True)
    model = half.float()
    write_batch(os.path.join(out, "hf_tiny_f16_batch.h5"), logits_of(model, ids, langs, mask))


if __name__ == "__main__":
    main()

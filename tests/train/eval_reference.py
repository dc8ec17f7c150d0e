#!/usr/bin/env python3
"""eval_reference.py CKPT.h5 DATA_DIR SPLIT N — the numbers `xlmc eval` must print,
computed without xlmc: the checkpoint's weights (h5py) loaded into transformers'
XLMWithLMHeadModel (causal, float64), the split's token streams rebuilt from the shards
(schema: data/README.md; each sentence followed by </s> = 1, stored so from format 2 on;
shards in name order) and cut
into windows of T+1 tokens, windows 0..N-1 per language. Prints per language:
"LANG windows W tokens K loss L ppl P acc A" with loss = mean token cross-entropy (nats) and
ppl = exp(loss). Needs torch and transformers (pip)."""
import configparser
import glob
import math
import sys

import h5py
import numpy as np
import torch
from transformers import XLMConfig, XLMWithLMHeadModel

ckpt, data, split, nwin = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
STRIDE_OVERLAP = 0  # windows of T+1 tokens start every T+1 tokens (see data/README.md)

with h5py.File(ckpt, "r") as f:
    ini = bytes(f["config"][()]).decode()
    weights = {k: torch.from_numpy(f["weights"][k][()].astype(np.float64)) for k in f["weights"]}
cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
cp.read_string(ini)
m, t = cp["model"], cp["train"]
langs = [s.strip() for s in m["langs"].split(",")]
T = int(t["seq_len"])
cfg = XLMConfig(vocab_size=int(m["vocab_size"]), emb_dim=int(m["dim"]),
                n_layers=int(m["n_layers"]), n_heads=int(m["n_heads"]), n_langs=int(m["n_langs"]),
                use_lang_emb=m["use_lang_emb"].strip().lower() in ("true", "1", "yes"),
                max_position_embeddings=int(m["max_positions"]), dropout=0.0,
                attention_dropout=0.0, layer_norm_eps=float(m["layer_norm_eps"]), causal=True,
                sinusoidal_embeddings=False, gelu_activation=True, asm=False,
                pad_index=int(m.get("pad_index", "2")))
model = XLMWithLMHeadModel(cfg).double().eval()
missing, unexpected = model.load_state_dict(weights, strict=False)
missing = [k for k in missing if k not in ("pred_layer.proj.weight", "transformer.position_ids")]
if missing or unexpected:
    sys.exit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
assert model.pred_layer.proj.weight.data_ptr() == model.transformer.embeddings.weight.data_ptr()

for lang_id, lang in enumerate(langs):
    stream = []
    for path in sorted(glob.glob(f"{data}/{split}-{lang}-*.h5")):
        with h5py.File(path, "r") as f:
            tok, off = f["tokens"][()].astype(np.int64), f["offsets"][()]
            version = int(f.attrs.get("format_version", 1))
        if version >= 2:  # tokens already hold </s> after each sentence: the stream itself
            stream.extend(tok[off[0]:off[-1]].tolist())
            continue
        for i in range(len(off) - 1):
            stream.extend(tok[off[i]:off[i + 1]].tolist())
            stream.append(1)
    step = T + 1 - STRIDE_OVERLAP
    n = min(nwin, (len(stream) - STRIDE_OVERLAP) // step) if stream else 0
    if n == 0:
        continue
    win = torch.tensor([stream[i * step:i * step + T + 1] for i in range(n)])
    with torch.no_grad():
        logits = model(input_ids=win[:, :T], langs=torch.full((n, T), lang_id)).logits
    tgt = win[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    acc = (logits.argmax(-1) == tgt).double().mean().item()
    print(f"{lang} windows {n} tokens {n * T} loss {loss.item():.9f} ppl {math.exp(loss.item()):.6f} "
          f"acc {acc:.6f}")

#!/usr/bin/env python3
"""make_mlm_reference.py — reference fixtures for the bidirectional (MLM, TLM) xlmc model.

Uses torch + transformers from pip (made with torch 2.15.0 and transformers 5.24.0); the
fixtures are committed, so CI never needs torch. Regenerate with:

    cd tests/ref && python3 make_mlm_reference.py        # writes model/{mlm,tlm}_*.h5

The model is the one of make_model_reference.py: its weights are read back from
model/weights.h5 (so this script does not depend on torch's generator reproducing them) into
XLMWithLMHeadModel with causal=False, converted to float64, and run on two batches:

  model/mlm_batch.h5  an MLM batch (B=4, T=16, right padded, lengths 16 11 7 13, one language
                      per row): about 30 % of the real positions are predicted; of those,
                      most inputs are replaced by the mask word (XLM's <special1> = 5), some
                      by a random word, some left unchanged, as XLM's mask_out does.
  model/tlm_batch.h5  a TLM batch (B=3, T=16): each row holds an en sentence then a de one,
                      each ending with </s> (= 1), positions restarting at 0 for the second
                      sentence, language ids per part, right padded (lengths 16, 13, 9),
                      masked as the MLM batch in both parts.
  Datasets of both: int32 input_ids, langs, positions, lengths (B,), labels (-100: not
  predicted; padded positions hold <pad> = 2, language 0 and position 0).
  model/{mlm,tlm}_expected.h5  logits (B,T,V), loss (the mean cross-entropy over the labels
                      != -100, HF's), group grads/<name> (the tied embedding's gradient sums
                      both uses), all float32 from the float64 computation.
"""
import os

import h5py
import numpy as np
import torch
from transformers import XLMConfig, XLMWithLMHeadModel

V, C, L, NH, P = 512, 64, 2, 4, 64
PAD, EOS, MASK = 2, 1, 5
N_SPECIAL = 14
EN, DE = 1, 0  # the language ids of the config's `langs = de,en`
SEED = 4321
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "model")


def load_model():
    cfg = XLMConfig(vocab_size=V, emb_dim=C, n_layers=L, n_heads=NH, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=P, dropout=0.0,
                    attention_dropout=0.0, layer_norm_eps=1e-12, causal=False,
                    gelu_activation=True, sinusoidal_embeddings=False, asm=False,
                    pad_index=PAD, eos_index=EOS, bos_index=0, unk_index=3, mask_index=MASK,
                    is_encoder=True)
    model = XLMWithLMHeadModel(cfg)
    with h5py.File(os.path.join(OUT, "weights.h5"), "r") as f, torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(f[name][()]))
    assert model.pred_layer.proj.weight.data_ptr() == model.transformer.embeddings.weight.data_ptr()
    model.eval()
    return model.double()


def mask_words(gen, ids, labels, b, lo, hi):
    """Positions [lo, hi) of row b: predict about 30 %, mask 80 % / random 10 % / keep 10 %."""
    for t in range(lo, hi):
        if gen.random() >= 0.3:
            continue
        labels[b, t] = ids[b, t]
        u = gen.random()
        if u < 0.8:
            ids[b, t] = MASK
        elif u < 0.9:
            ids[b, t] = gen.integers(N_SPECIAL, V)


def mlm_batch(gen):
    B, T, lengths, row_langs = 4, 16, [16, 11, 7, 13], [EN, DE, EN, DE]
    ids = np.full((B, T), PAD, dtype=np.int32)
    langs = np.zeros((B, T), dtype=np.int32)
    pos = np.zeros((B, T), dtype=np.int32)
    labels = np.full((B, T), -100, dtype=np.int32)
    for b, n in enumerate(lengths):
        ids[b, :n] = gen.integers(N_SPECIAL, V, size=n)
        langs[b, :n] = row_langs[b]
        pos[b, :n] = np.arange(n)
        mask_words(gen, ids, labels, b, 0, n)
    return ids, langs, pos, np.array(lengths, dtype=np.int32), labels


def tlm_batch(gen):
    B, T, parts = 3, 16, [(9, 7), (6, 7), (5, 4)]  # (en length, de length), each with </s>
    ids = np.full((B, T), PAD, dtype=np.int32)
    langs = np.zeros((B, T), dtype=np.int32)
    pos = np.zeros((B, T), dtype=np.int32)
    labels = np.full((B, T), -100, dtype=np.int32)
    lengths = []
    for b, (n1, n2) in enumerate(parts):
        for lo, n, lang in ((0, n1, EN), (n1, n2, DE)):
            ids[b, lo:lo + n - 1] = gen.integers(N_SPECIAL, V, size=n - 1)
            ids[b, lo + n - 1] = EOS
            langs[b, lo:lo + n] = lang
            pos[b, lo:lo + n] = np.arange(n)
            mask_words(gen, ids, labels, b, lo, lo + n - 1)
        lengths.append(n1 + n2)
    return ids, langs, pos, np.array(lengths, dtype=np.int32), labels


def write(model, name, batch):
    ids, langs, pos, lengths, labels = batch
    assert (labels != -100).sum() > 0
    with h5py.File(os.path.join(OUT, f"{name}_batch.h5"), "w") as f:
        for key, arr in zip(("input_ids", "langs", "positions", "lengths", "labels"), batch):
            f.create_dataset(key, data=arr)
    T = ids.shape[1]
    attn = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    t = lambda x: torch.from_numpy(np.asarray(x)).long()
    model.zero_grad()
    out = model(input_ids=t(ids), langs=t(langs), position_ids=t(pos), lengths=t(lengths),
                attention_mask=t(attn), labels=t(labels))
    out.loss.backward()
    with h5py.File(os.path.join(OUT, f"{name}_expected.h5"), "w") as f:
        f.create_dataset("logits", data=out.logits.detach().float().numpy())
        f.create_dataset("loss", data=np.float32(out.loss.item()))
        g = f.create_group("grads")
        for pname, p in model.named_parameters():
            g.create_dataset(pname, data=p.grad.float().numpy())
    print(f"{name}: {(labels != -100).sum()} predicted positions, loss {out.loss.item():.9f}")


def main():
    model = load_model()
    gen = np.random.default_rng(SEED)
    write(model, "mlm", mlm_batch(gen))
    write(model, "tlm", tlm_batch(gen))


if __name__ == "__main__":
    main()

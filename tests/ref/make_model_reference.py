#!/usr/bin/env python3
"""make_model_reference.py — reference fixtures for the xlmc CPU model and training step.

Uses torch + transformers installed from pip (CPU is enough; made with torch 2.15.0 and
transformers 5.24.0). The fixtures are committed, so CI never needs torch. Regenerate with:

    cd tests/ref && python3 make_model_reference.py            # writes model/*.h5

tests/ref/fixture.{h,c} read these files into xlmc structures for the C tests.

What it writes (all float32 on disk, computed in float64 so the reference's own rounding
error is far below the tolerances the tests use: logits 1e-5 rel, loss 1e-6, grads 1e-4):

  model/weights.h5   one root dataset per Hugging Face parameter name (named_parameters(),
                     so the tied pred_layer.proj.weight appears once, as
                     transformer.embeddings.weight), and the root string attribute
                     `config_ini`: the xlmc INI text (configs/*.ini keys) of the same model.
  model/batch.h5     int32 input_ids, langs, attention_mask, labels (B=4, T=16, right padded,
                     one language per row, en=1 de=0, labels[b,t] = input_ids[b,t+1] for
                     t < len-1 else -100; padded positions hold <pad> = 2).
  model/expected.h5  logits (B,T,V), loss (scalar), group grads/<name>: the gradient of the
                     mean loss (for the tied embedding: the sum of both uses).
  model/adam_steps.h5  10 updates of torch.optim.Adam on the same batch, from weights.h5:
                     constant lr 1e-3, betas (0.9, 0.98), eps 1e-8, no weight decay, and
                     before each update torch.nn.utils.clip_grad_norm_(params, 2.5) on the
                     mean-loss gradient (what xlmc's trainer_step does: global-norm clip,
                     coefficient clip / (norm + 1e-6) when below 1). The clip is 2.5, not
                     XLM's 5, because this model's gradient norm falls from 3.4 to 2.0 over
                     the 10 steps: with 2.5 the first steps are clipped and the last are not,
                     so both branches are checked. Datasets: losses (10,) =
                     the loss before each update, grad_norms (10,) = the norm before clipping,
                     and group weights/<name> = the parameters after the 10 updates.

The model: XLMWithLMHeadModel with causal=True, 2 layers, emb_dim 64, 4 heads, vocab 512,
2 languages with language embeddings, 64 positions, dropout 0, layer_norm_eps 1e-12. Weights
start from transformers' init and then every LayerNorm weight and bias and every bias is
randomized too, so that a backend that ignores one of them fails the parity test.
"""
import os

import h5py
import numpy as np
import torch
from transformers import XLMConfig, XLMWithLMHeadModel

SEED = 1234
# V = 512 rather than ~1000 keeps the four files under 2 MB together (random floats do not
# compress).
V, C, L, NH, P = 512, 64, 2, 4, 64
B, T = 4, 16
LENGTHS = [16, 11, 7, 13]
ROW_LANGS = [1, 0, 1, 0]  # en, de, en, de
PAD = 2
N_SPECIAL = 14  # XLM's dictionary starts with 14 special words; real tokens come after
ADAM_STEPS, ADAM_LR, ADAM_BETAS, ADAM_EPS, CLIP = 10, 1e-3, (0.9, 0.98), 1e-8, 2.5

CONFIG_INI = f"""\
# The model of tests/ref/model/*.h5 (made by tests/ref/make_model_reference.py).
[model]
vocab_size = {V}
dim = {C}
n_layers = {L}
n_heads = {NH}
ffn_dim = {4 * C}
max_positions = {P}
n_langs = 2
langs = de,en
dropout = 0
attention_dropout = 0
layer_norm_eps = 1e-12
use_lang_emb = true
pad_index = {PAD}

[train]
batch_tokens = {B * T}
micro_batch = {B}
seq_len = {T}
lr = {ADAM_LR}
beta1 = {ADAM_BETAS[0]}
beta2 = {ADAM_BETAS[1]}
adam_eps = {ADAM_EPS}
weight_decay = 0
schedule = constant
warmup = 0
clip_norm = {CLIP:g}
max_steps = {ADAM_STEPS}
precision = fp32
seed = 1
"""


def build_model():
    torch.manual_seed(SEED)
    cfg = XLMConfig(vocab_size=V, emb_dim=C, n_layers=L, n_heads=NH, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=P, dropout=0.0,
                    attention_dropout=0.0, layer_norm_eps=1e-12, causal=True,
                    gelu_activation=True, sinusoidal_embeddings=False, asm=False,
                    pad_index=PAD, eos_index=1, bos_index=0, unk_index=3, mask_index=5,
                    is_encoder=True)
    model = XLMWithLMHeadModel(cfg)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "embeddings" in name:
                p.copy_(C ** -0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    # The output projection must be the embedding itself (tied), or the fixture is wrong.
    assert model.pred_layer.proj.weight.data_ptr() == model.transformer.embeddings.weight.data_ptr()
    model.eval()  # dropout is 0 anyway
    return model


def build_batch():
    gen = np.random.default_rng(SEED)
    ids = np.full((B, T), PAD, dtype=np.int32)
    langs = np.zeros((B, T), dtype=np.int32)
    mask = np.zeros((B, T), dtype=np.int32)
    labels = np.full((B, T), -100, dtype=np.int32)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = gen.integers(N_SPECIAL, V, size=n)
        langs[b, :] = ROW_LANGS[b]
        mask[b, :n] = 1
        labels[b, :n - 1] = ids[b, 1:n]
    return ids, langs, mask, labels


def run(model, batch):
    ids, langs, mask, labels = (torch.from_numpy(x).long() for x in batch)
    out = model(input_ids=ids, langs=langs, attention_mask=mask, labels=labels)
    return out.loss, out.logits


def write_params(group, model):
    for name, p in model.named_parameters():
        group.create_dataset(name, data=p.detach().float().numpy())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "model")
    os.makedirs(outdir, exist_ok=True)
    model = build_model()
    batch = build_batch()

    with h5py.File(os.path.join(outdir, "weights.h5"), "w") as f:
        write_params(f, model)
        f.attrs["config_ini"] = CONFIG_INI
    # The reference computes from the float32 values exactly as stored, in float64.
    model = model.double()
    with h5py.File(os.path.join(outdir, "batch.h5"), "w") as f:
        for key, arr in zip(("input_ids", "langs", "attention_mask", "labels"), batch):
            f.create_dataset(key, data=arr)

    loss, logits = run(model, batch)
    model.zero_grad()
    loss.backward()
    with h5py.File(os.path.join(outdir, "expected.h5"), "w") as f:
        f.create_dataset("logits", data=logits.detach().float().numpy())
        f.create_dataset("loss", data=np.float32(loss.item()))
        g = f.create_group("grads")
        for name, p in model.named_parameters():
            g.create_dataset(name, data=p.grad.float().numpy())
    print(f"loss {loss.item():.9f}")

    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0)
    losses, norms = [], []
    for _ in range(ADAM_STEPS):
        opt.zero_grad()
        loss, _ = run(model, batch)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, CLIP)))
        losses.append(loss.item())
        opt.step()
    with h5py.File(os.path.join(outdir, "adam_steps.h5"), "w") as f:
        f.create_dataset("losses", data=np.array(losses, dtype=np.float32))
        f.create_dataset("grad_norms", data=np.array(norms, dtype=np.float32))
        write_params(f.create_group("weights"), model)
    print("adam losses", " ".join(f"{x:.6f}" for x in losses))
    print("grad norms ", " ".join(f"{x:.3f}" for x in norms))


if __name__ == "__main__":
    main()

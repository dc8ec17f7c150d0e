#!/usr/bin/env python3
"""race.py — PyTorch's half of the step race of tests/gpu/run.sh (gpu_step.c is xlmc's half):
transformers' XLMWithLMHeadModel with causal=True at the shape of an xlmc config, one training
step = forward + backward + clip_grad_norm_(5) + Adam on full rows of random tokens, the
languages alternating by row, dropout 0.1, as gpu_step.c does.

On cuda: autocast fp16 + GradScaler + fused Adam (--mode eager), or the same model through
torch.compile (--mode compile). On cpu: fp32, plain Adam. Prints training tokens/s and MFU
against --peak-tflops (give xlmc's, so that both sides use the same peak).

usage: race.py --config INI [--device cpu|cuda] [--mode eager|compile] [--vocab V]
               [--micro-batch B] [--seq-len T] [--warmup N] [--steps N] [--peak-tflops P]
"""
import argparse
import configparser
import time

import torch
from transformers import XLMConfig, XLMWithLMHeadModel


def read_config(path):
    p = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    p.read(path)
    return p["model"], p["train"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--vocab", type=int, default=0)
    ap.add_argument("--micro-batch", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    a = ap.parse_args()
    mc, tc = read_config(a.config)
    vocab = a.vocab or int(mc["vocab_size"])
    dim, layers, heads = int(mc["dim"]), int(mc["n_layers"]), int(mc["n_heads"])
    B = a.micro_batch or int(tc["micro_batch"])
    T = a.seq_len or int(tc["seq_len"])
    if vocab < 20:
        raise SystemExit(f"race.py: {a.config}: vocab_size is {vocab}: give --vocab")
    dev = torch.device(a.device)
    amp = a.device == "cuda"
    torch.manual_seed(1)
    cfg = XLMConfig(vocab_size=vocab, emb_dim=dim, n_layers=layers, n_heads=heads, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=int(mc["max_positions"]),
                    dropout=float(mc["dropout"]), attention_dropout=float(mc["attention_dropout"]),
                    layer_norm_eps=float(mc["layer_norm_eps"]), causal=True,
                    gelu_activation=True, asm=False, pad_index=2)
    model = XLMWithLMHeadModel(cfg).to(dev)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(14, vocab, (B, T), device=dev)
    langs = (torch.arange(B, device=dev) % 2)[:, None].expand(B, T).contiguous()
    labels = torch.full((B, T), -100, dtype=torch.long, device=dev)
    labels[:, :-1] = ids[:, 1:]
    mask = torch.ones(B, T, dtype=torch.long, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8,
                           fused=amp or None)
    scaler = torch.amp.GradScaler("cuda", init_scale=65536.0, enabled=amp)
    fwd = torch.compile(model) if a.mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(a.device, dtype=torch.float16, enabled=amp):
            out = fwd(input_ids=ids, langs=langs, attention_mask=mask, labels=labels)
        scaler.scale(out.loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        return out.loss

    sync = torch.cuda.synchronize if amp else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - t0
    tok_s = B * T * a.steps / seconds
    fpt = 6.0 * params + 12.0 * layers * dim * T  # xlmc's count (train/metrics.h)
    name = f"pytorch-{a.mode}"
    print(f"{name}: torch {torch.__version__} {a.device} {'amp fp16' if amp else 'fp32'} dim {dim}"
          f" layers {layers} heads {heads} vocab {vocab} B {B} T {T}: {a.steps} steps in"
          f" {seconds:.3f} s (warm-up {warm_s:.1f} s), loss {loss.item():.4f}")
    print(f"{name} tokens/s {tok_s:.1f}")
    if a.peak_tflops > 0:
        print(f"{name} MFU {100 * fpt * tok_s / (a.peak_tflops * 1e12):.2f}%")


if __name__ == "__main__":
    main()

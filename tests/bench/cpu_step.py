#!/usr/bin/env python3
"""cpu_step.py — PyTorch's half of the CPU training benchmark (cpu_step.sh runs it beside
xlmc's cpu_step): transformers' XLMWithLMHeadModel with causal=True, fp32 on the CPU,
forward + backward + clip_grad_norm_(5) + torch.optim.Adam on full rows of random tokens,
the same shapes and dropout as cpu_step.c. Prints training tokens per second.

usage: cpu_step.py THREADS [DIM LAYERS HEADS VOCAB B T WARMUP_STEPS TIMED_STEPS]
"""
import sys
import time

import torch
from transformers import XLMConfig, XLMWithLMHeadModel


def main():
    threads = int(sys.argv[1])
    dim, layers, heads, vocab, B, T, warm, timed = (
        [int(x) for x in sys.argv[2:10]] if len(sys.argv) > 2 else [256, 4, 8, 8000, 8, 128, 2, 5])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = XLMConfig(vocab_size=vocab, emb_dim=dim, n_layers=layers, n_heads=heads, n_langs=2,
                    use_lang_emb=True, max_position_embeddings=T + 1, dropout=0.1,
                    attention_dropout=0.1, layer_norm_eps=1e-12, causal=True,
                    gelu_activation=True, asm=False, pad_index=2)
    model = XLMWithLMHeadModel(cfg)
    model.train()
    ids = torch.randint(14, vocab, (B, T))
    langs = (torch.arange(B) % 2)[:, None].expand(B, T).contiguous()
    labels = torch.full((B, T), -100, dtype=torch.long)
    labels[:, :-1] = ids[:, 1:]
    mask = torch.ones(B, T, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, langs=langs, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return out.loss.item()

    for _ in range(warm):
        step()
    t0 = time.perf_counter()
    for _ in range(timed):
        loss = step()
    seconds = time.perf_counter() - t0
    print(f"pytorch {torch.__version__} threads {torch.get_num_threads()}: {timed} steps in "
          f"{seconds:.3f} s, loss {loss:.4f}")
    print(f"pytorch tokens/s {B * T * timed / seconds:.1f}")


if __name__ == "__main__":
    main()

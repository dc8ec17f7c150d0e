#!/usr/bin/env python3
"""Load an `xlmc export-hf` directory with transformers and compare with xlmc.

usage: check_export.py DIR BATCH.h5 XLMC_LOGITS.h5 [CKPT.h5] [--mlm]
  --mlm: the export of a masked LM: config.causal must be false (else true), and
  transformers runs it bidirectionally.
  - XLMWithLMHeadModel.from_pretrained(DIR) reports no missing, unexpected or mismatched
    weights and logs no warning;
  - its logits on BATCH.h5 (input_ids, langs, attention_mask) equal xlmc's within 1e-5
    relative (max |diff| / max |logit| over real positions);
  - XLMTokenizer.from_pretrained(DIR) loads with lowercasing off and lang2id of the model;
  - the vocabulary padding xlmc uses inside (rows up to a multiple of 128) never shows: the
    vocabulary size V is not a multiple of 128 (so the padding is really there), and the
    exported safetensors, xlmc's logits and (given CKPT.h5) the checkpoint hold exactly V rows.
Exit 0 on success, 1 on a mismatch, 77 (skip) when transformers is not importable.
"""
import json
import logging
import os
import struct
import sys

try:
    import h5py
    import numpy as np
    import torch
    from transformers import XLMTokenizer, XLMWithLMHeadModel
    from transformers.utils import logging as hf_logging
except ImportError as e:
    print(f"SKIPPED: transformers/torch/h5py not importable ({e})")
    sys.exit(77)


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def safetensors_shapes(path):
    """{name: shape} from a safetensors header (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def check_rows(d, ours, ckpt):
    """Every user-visible vocabulary dimension is V; returns the failures."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    V, C = cfg["vocab_size"], cfg["emb_dim"]
    fails = []
    if V % 128 == 0:
        fails.append(f"vocab_size {V} is a multiple of 128: the padding is not exercised")
    shapes = safetensors_shapes(os.path.join(d, "model.safetensors"))
    want = {"transformer.embeddings.weight": (V, C), "pred_layer.proj.bias": (V,)}
    for name, shape in want.items():
        if shapes.get(name) != shape:
            fails.append(f"exported {name} has shape {shapes.get(name)}, want {shape}")
    if ours.shape[-1] != V:
        fails.append(f"xlmc's logits have {ours.shape[-1]} columns, want {V}")
    if ckpt:
        with h5py.File(ckpt, "r") as f:
            for name, shape in want.items():
                got = f["weights"][name].shape
                if got != shape:
                    fails.append(f"checkpoint weights/{name} has shape {got}, want {shape}")
    print(f"vocabulary rows: {V} (padded inside xlmc to {(V + 127) // 128 * 128}) in "
          f"{'the checkpoint, ' if ckpt else ''}the export and the logits")
    return fails


def main():
    mlm = "--mlm" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--mlm"]
    d, batch_path, xlmc_path = args[:3]
    ckpt = args[3] if len(args) > 3 else None
    hf_logging.set_verbosity_warning()
    collect = Collect()
    hf_logging.get_logger("transformers").addHandler(collect)
    model, info = XLMWithLMHeadModel.from_pretrained(d, output_loading_info=True)
    tok = XLMTokenizer.from_pretrained(d)
    failed = False
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(k):
            print(f"FAIL: {k}: {info[k]}")
            failed = True
    weight_warnings = [m for m in collect.records if "weight" in m.lower()]
    if weight_warnings:
        print("FAIL: warnings while loading:", *weight_warnings, sep="\n  ")
        failed = True
    if bool(model.config.causal) == mlm:
        print(f"FAIL: config.causal is {model.config.causal} for {'an MLM' if mlm else 'a CLM'}")
        failed = True
    if tok.do_lowercase_and_remove_accent or tok.lang2id != model.config.lang2id:
        print(f"FAIL: tokenizer lowercases={tok.do_lowercase_and_remove_accent} "
              f"lang2id={tok.lang2id} (model: {model.config.lang2id})")
        failed = True
    if tok.convert_tokens_to_ids(["<s>", "</s>", "<pad>", "<unk>", "<special9>"]) != [0, 1, 2, 3, 13]:
        print("FAIL: special symbols do not keep XLM's ids")
        failed = True
    # the tied output layer really is the embedding matrix
    if model.pred_layer.proj.weight.data_ptr() != model.transformer.embeddings.weight.data_ptr():
        print("FAIL: pred_layer.proj.weight is not tied to transformer.embeddings.weight")
        failed = True
    with h5py.File(batch_path, "r") as f:
        ids = torch.from_numpy(f["input_ids"][...].astype(np.int64))
        langs = torch.from_numpy(f["langs"][...].astype(np.int64))
        mask = torch.from_numpy(f["attention_mask"][...].astype(np.int64))
    with h5py.File(xlmc_path, "r") as f:
        ours = f["logits"][...]
    for msg in check_rows(d, ours, ckpt):
        print("FAIL:", msg)
        failed = True
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids, langs=langs, attention_mask=mask).logits.numpy()
    real = mask.numpy().astype(bool)
    diff = np.abs(ours[real] - ref[real]).max()
    scale = np.abs(ref[real]).max()
    print(f"max |xlmc - transformers| = {diff:.3g}, max |logit| = {scale:.3g}, "
          f"relative {diff / scale:.3g} over {real.sum()} positions")
    if not diff <= 1e-5 * scale:
        print("FAIL: logits differ by more than 1e-5 relative")
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

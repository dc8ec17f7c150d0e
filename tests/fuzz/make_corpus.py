#!/usr/bin/env python3
"""make_corpus.py — writes the seed inputs of tests/fuzz/corpus/ (run from the checkout root:
python3 tests/fuzz/make_corpus.py). Seeds are valid inputs of each reader, so that the fuzzer
starts past the first checks; the layouts of shard and checkpoint inputs are those read by
fuzz_shard.c and fuzz_checkpoint.c (fuzz_input.h)."""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import save

root = os.getcwd()
out = os.path.join(root, "tests/fuzz/corpus")


def put(kind, name, data):
    os.makedirs(os.path.join(out, kind), exist_ok=True)
    with open(os.path.join(out, kind, name), "wb") as f:
        f.write(data)


# config: the shipped configs
for name in sorted(os.listdir(os.path.join(root, "configs"))):
    if name.endswith(".ini"):
        put("config", name, open(os.path.join(root, "configs", name), "rb").read())
tiny = open(os.path.join(root, "configs/tiny.ini"), "rb").read()

# safetensors: each dtype, a scalar, metadata
put("safetensors", "f32.st", save({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}))
put("safetensors", "f16_meta.st",
    save({"w": np.ones((3,), np.float16), "s": np.array(2.5, np.float32)}, {"format": "pt"}))
put("safetensors", "empty.st", save({"e": np.zeros((0, 4), np.float32)}))

# tokenizer: CODES \0 VOCAB \0 LINE, from a small vocabulary learned on the test corpus
xlmc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build/xlmc")
with tempfile.TemporaryDirectory() as d:
    corpus = os.path.join(root, "tests/slurm/corpus")
    subprocess.run([xlmc, "bpe-learn", "--codes", "60", "--lang", "en", "--out", d,
                    os.path.join(corpus, "en.txt"), os.path.join(corpus, "de.txt")],
                   check=True, capture_output=True)
    codes = open(os.path.join(d, "codes"), "rb").read()
    vocab = b"".join(open(os.path.join(d, "vocab"), "rb").readlines()[:120])
for name, line in [("en", "Debian is a free operating system ."),
                   ("de", "Die Installation ist \u00fcberraschend einfach, oder?"),
                   ("quotes", "\u201eSo\u201c sagt er: \"it's 3.5% (approx.)\"")]:
    put("tokenizer", name, codes + b"\0" + vocab + b"\0" + line.encode())


# shard: present bits (u16), 7 int attributes (i64), lang, split, nt/4, no, tokens, offsets
def shard(lang_id, lang, tokens, offsets, ttype=1):
    present = (1 << 11) - 1 | (ttype << 11)
    b = struct.pack("<H", present)
    for v in [1, lang_id, 100, 0x1234, 0x5678, len(tokens), len(offsets) - 1]:
        b += struct.pack("<q", v)
    for s in [lang, "train"]:
        b += bytes([len(s)]) + s.encode()
    assert len(tokens) % 4 == 0
    b += bytes([len(tokens) // 4, len(offsets)])
    fmt = {0: "<%dH", 1: "<%di", 2: "<%df", 3: "<%dq"}[ttype]
    b += struct.pack(fmt % len(tokens), *tokens) + struct.pack("<%dq" % len(offsets), *offsets)
    return b


put("shard", "en", shard(1, "en", [5, 6, 7, 8, 20, 21, 22, 99], [0, 3, 8]))
put("shard", "de_u16", shard(0, "de", [14, 15, 16, 17], [0, 1, 2, 4], ttype=0))
put("shard", "empty", shard(1, "en", [], [0]))


# checkpoint: modes, config length + text, vocab hash, weights type/ndim/dims/data
def ckpt(modes, text, wtype, dims, payload):
    b = bytes([modes]) + struct.pack("<H", len(text)) + text + struct.pack("<q", 42)
    b += bytes([wtype, len(dims) - 1]) + bytes(dims) + payload
    return b


put("checkpoint", "tiny_ok", ckpt(0, tiny, 0, [2, 3], struct.pack("<6f", *range(6))))
put("checkpoint", "tiny_badsum", ckpt(0x10, tiny, 0, [4], struct.pack("<4f", 1, 2, 3, 4)))
put("checkpoint", "no_config", ckpt(0x40, b"", 2, [1, 2, 2], struct.pack("<4q", 1, 2, 3, 4)))

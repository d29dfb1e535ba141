#!/usr/bin/env python3
"""An independent GPT-2 for checking src/hf_model.hpp: makes Hugging Face GPT-2 folders and runs
their forward pass in NumPy (float64), written from GPT-2's definition (Radford et al. 2019 and
Hugging Face's modeling_gpt2 layout: Conv1D weights [in, out], fused c_attn = q|k|v, pre-LayerNorm
blocks with eps 1e-5, "gelu_new", output layer tied to wte), with its own safetensors reader and
writer (struct + json, from the format's description) and its own byte-level BPE tokenizer.json.

  hf_gpt2_reference.py make DIR [--seed S] [--dtype F32|F16|BF16] [--prefix] [--lm-head] [--buffers]
                           [--corpus FILE] [--merges N] [--layers L] [--d-model D] [--heads H] [--context C]
      writes DIR/{config.json, model.safetensors, tokenizer.json}: random weights (large enough
      that every tensor moves the logits), a tokenizer of the 256 bytes + N merges learned from
      CORPUS (byte-pair counts over space-led words) + "<|endoftext|>".
  hf_gpt2_reference.py check DRIVER
      the cross-check ctest runs: folders in every dtype and naming variant; DRIVER's logits
      (tests/hf_driver.cpp) must equal NumPy's to 1e-5; a folder DRIVER saves must hold the same
      tensors under Hugging Face's names and layouts and give identical logits.
  hf_gpt2_reference.py compare DRIVER CHECKPOINT FOLDER
      DRIVER's logits of a pipeline checkpoint (a .pt) must equal those of the exported FOLDER
      exactly, and NumPy's forward pass of FOLDER must agree to 1e-5.
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from collections import Counter

import numpy as np

TOLERANCE = 1e-5


# ---- safetensors ---------------------------------------------------------------------------------

def float_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (no NaNs here)."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_float(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def rounded(array, dtype):
    """The float64 values a tensor holds once stored as `dtype`."""
    if dtype == "F32":
        return array.astype(np.float32).astype(np.float64)
    if dtype == "F16":
        return array.astype(np.float16).astype(np.float64)
    return bf16_bits_to_float(float_to_bf16_bits(array.astype(np.float32))).astype(np.float64)


def write_safetensors(path, tensors, dtype, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, array in tensors.items():
        if dtype == "F32":
            raw = array.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = array.astype("<f2").tobytes()
        else:
            raw = float_to_bf16_bits(array).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[8 + length + begin:8 + length + end]
        kind = {"F32": "<f4", "F16": "<f2"}.get(entry["dtype"])
        values = (np.frombuffer(raw, dtype=kind) if kind else bf16_bits_to_float(np.frombuffer(raw, dtype="<u2")))
        out[name] = values.astype(np.float64).reshape(entry["shape"])
    return out


# ---- tokenizer.json ------------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's map from bytes to printable characters (its encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def learn_merges(text, count):
    """Byte-pair merges by frequency over space-led words (plain BPE training)."""
    table = bytes_to_unicode()
    words = Counter()
    for i, word in enumerate(text.split()):
        words[tuple(table[b] for b in ((" " if i else "") + word).encode())] += 1
    merges = []
    for _ in range(count):
        pairs = Counter()
        for word, n in words.items():
            for a, b in zip(word, word[1:]):
                pairs[a, b] += n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def tokenizer_json(merges):
    vocab = {}
    for ch in bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    end = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": end, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }, end + 1


# ---- the model -----------------------------------------------------------------------------------

def random_weights(rng, vocab, context, d, layers):
    def normal(*shape, scale=0.1):
        return rng.normal(0.0, scale, size=shape)

    w = {"wte.weight": normal(vocab, d, scale=0.15), "wpe.weight": normal(context, d, scale=0.3),
         "ln_f.weight": 1.0 + normal(d), "ln_f.bias": normal(d)}
    for layer in range(layers):
        p = f"h.{layer}."
        w.update({p + "ln_1.weight": 1.0 + normal(d), p + "ln_1.bias": normal(d),
                  p + "attn.c_attn.weight": normal(d, 3 * d, scale=0.3), p + "attn.c_attn.bias": normal(3 * d),
                  p + "attn.c_proj.weight": normal(d, d, scale=0.2), p + "attn.c_proj.bias": normal(d),
                  p + "ln_2.weight": 1.0 + normal(d), p + "ln_2.bias": normal(d),
                  p + "mlp.c_fc.weight": normal(d, 4 * d, scale=0.2), p + "mlp.c_fc.bias": normal(4 * d),
                  p + "mlp.c_proj.weight": normal(4 * d, d, scale=0.1), p + "mlp.c_proj.bias": normal(d)})
    return w


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(w, config, ids):
    """Logits [B, T, V] of unpadded rows."""
    ids = np.asarray(ids)
    b, t = ids.shape
    d, heads = config["n_embd"], config["n_head"]
    dh = d // heads
    x = w["wte.weight"][ids] + w["wpe.weight"][np.arange(t)][None]
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(config["n_layer"]):
        p = f"h.{layer}."
        a = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(b, t, heads, dh).transpose(0, 2, 1, 3) for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + causal
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        x = x + attended.transpose(0, 2, 1, 3).reshape(b, t, d) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        x = x + gelu_new(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T


def make(directory, seed=1, dtype="F32", prefix=False, lm_head=False, buffers=False, corpus=None, merges=40,
         layers=2, d_model=32, heads=4, context=64):
    os.makedirs(directory, exist_ok=True)
    text = open(corpus, encoding="utf-8", errors="replace").read() if corpus else (
        "the quick brown fox jumps over the lazy dog; a library for reading the files of the system " * 20)
    tokenizer, vocab = tokenizer_json(learn_merges(text, merges))
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_positions": context,
              "n_ctx": context, "n_embd": d_model, "n_layer": layers, "n_head": heads, "n_inner": None,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
              "attn_pdrop": 0.1, "bos_token_id": vocab - 1, "eos_token_id": vocab - 1, "tie_word_embeddings": True}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    weights = random_weights(np.random.default_rng(seed), vocab, context, d_model, layers)
    stored = {("transformer." if prefix else "") + k: v for k, v in weights.items()}
    if lm_head:
        stored["lm_head.weight"] = weights["wte.weight"]
    if buffers:  # older files keep the causal mask as a buffer
        for layer in range(layers):
            stored[f"{'transformer.' if prefix else ''}h.{layer}.attn.bias"] = np.tril(np.ones((1, 1, context, context)))
    write_safetensors(os.path.join(directory, "model.safetensors"), stored, dtype, {"format": "pt"})
    return config, {k: rounded(v, dtype) for k, v in weights.items()}


def load(directory):
    """A folder's config and weights, names without the "transformer." prefix."""
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    weights = {}
    for name, value in read_safetensors(os.path.join(directory, "model.safetensors")).items():
        weights[name[len("transformer."):] if name.startswith("transformer.") else name] = value
    return config, weights


def driver_logits(driver, source, ids, *extra):
    with tempfile.TemporaryDirectory() as tmp:
        ids_file, out_file = os.path.join(tmp, "ids.json"), os.path.join(tmp, "logits.json")
        with open(ids_file, "w") as f:
            json.dump(ids, f)
        subprocess.run([driver, "logits", source, ids_file, out_file, *extra], check=True)
        with open(out_file) as f:
            return np.array(json.load(f), dtype=np.float64)


def random_ids(rng, config, rows=3, length=None):
    length = length or config["n_positions"]
    return rng.integers(0, config["vocab_size"], size=(rows, length)).tolist()


def check(driver):
    failures = 0
    rng = np.random.default_rng(5)
    variants = [dict(dtype="F32", buffers=True), dict(dtype="F16", prefix=True, lm_head=True),
                dict(dtype="BF16", prefix=True, layers=3, d_model=24, heads=3, context=20)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            folder = os.path.join(tmp, f"gpt2-{i}")
            config, weights = make(folder, seed=10 + i, **v)
            ids = random_ids(rng, config)
            expected = forward(weights, config, ids)
            got = driver_logits(driver, folder, ids)
            error = float(np.abs(got - expected).max())
            scale = float(np.abs(expected).max())
            ok = got.shape == expected.shape and error <= TOLERANCE
            failures += not ok
            print(f"{'ok' if ok else 'FAIL'}: {v}: logits {list(expected.shape)} (max |logit| {scale:.2f}) "
                  f"within {error:.2e} of NumPy's float64 forward pass (tolerance {TOLERANCE:g})")
            # Saved back by the C++ writer: the same tensors under Hugging Face's names and layouts.
            saved = os.path.join(tmp, f"saved-{i}")
            subprocess.run([driver, "resave", folder, saved], check=True)
            saved_config, saved_weights = load(saved)
            same_names = sorted(saved_weights) == sorted(weights)
            worst = max(float(np.abs(saved_weights[k] - weights[k]).max()) for k in weights) if same_names else math.inf
            ok = same_names and worst == 0.0 and all(saved_config[k] == config[k] for k in
                                                     ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"))
            failures += not ok
            print(f"{'ok' if ok else 'FAIL'}: {v}: the saved folder holds the same {len(weights)} tensors exactly "
                  f"(largest difference {worst:g}) and the same config")
            again = driver_logits(driver, saved, ids)
            ok = np.array_equal(again, got)
            failures += not ok
            print(f"{'ok' if ok else 'FAIL'}: {v}: the saved folder gives identical logits")
    return failures


def compare(driver, checkpoint, folder):
    config, weights = load(folder)
    ids = random_ids(np.random.default_rng(3), config, rows=2, length=min(16, config["n_positions"]))
    exported, trained = driver_logits(driver, folder, ids), driver_logits(driver, checkpoint, ids, folder)
    failures = 0
    ok = np.array_equal(exported, trained)
    failures += not ok
    print(f"{'ok' if ok else 'FAIL'}: {folder} gives the same logits as {checkpoint} "
          f"(largest difference {float(np.abs(exported - trained).max()):g})")
    error = float(np.abs(exported - forward(weights, config, ids)).max())
    ok = error <= TOLERANCE
    failures += not ok
    print(f"{'ok' if ok else 'FAIL'}: NumPy's forward pass of {folder} agrees to {error:.2e}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("directory")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    m.add_argument("--prefix", action="store_true")
    m.add_argument("--lm-head", action="store_true")
    m.add_argument("--buffers", action="store_true")
    m.add_argument("--corpus")
    m.add_argument("--merges", type=int, default=40)
    m.add_argument("--layers", type=int, default=2)
    m.add_argument("--d-model", type=int, default=32)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--context", type=int, default=64)
    c = sub.add_parser("check")
    c.add_argument("driver")
    p = sub.add_parser("compare")
    p.add_argument("driver")
    p.add_argument("checkpoint")
    p.add_argument("folder")
    args = parser.parse_args()
    if args.command == "make":
        make(args.directory, args.seed, args.dtype, args.prefix, args.lm_head, args.buffers, args.corpus, args.merges,
             args.layers, args.d_model, args.heads, args.context)
        return 0
    failures = check(args.driver) if args.command == "check" else compare(args.driver, args.checkpoint, args.folder)
    print("all checks passed" if failures == 0 else f"{failures} checks FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

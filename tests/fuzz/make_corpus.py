#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (Python standard library only).

    /usr/bin/python3 tests/fuzz/make_corpus.py [--shared DIR] [--out DIR]

creates, next to this script by default (the corpus-*/ folders are not committed):
    corpus-safetensors/    small valid safetensors files (F32, F16, BF16, other dtypes, metadata, scalars)
    corpus-config/         Llama, Mistral and Qwen2 config.json files
    corpus-tokenizer_json/ BPE tokenizer.json files: SentencePiece-style and byte-level (GPT-2, Llama-3, Qwen2)
    corpus-llama2c_bin/    tiny llama2.c checkpoints (tied and untied), small tokenizer.bin files, and a copy
                           of tok512.bin from the shared data directory when it is there
    corpus-db_index/       level database indexes (sparse, N:M, equal-step and quantized entries; empty;
                           an old format)
    corpus-db_payload/     sparse and quantized level payloads of a few shapes
Every file is regenerated from scratch; libFuzzer adds its own findings to these folders when they are
passed as the corpus directory.
"""
import argparse
import json
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))


def fresh_dir(path):
    if os.path.isdir(path):
        for name in os.listdir(path):
            p = os.path.join(path, name)
            if os.path.isfile(p):
                os.remove(p)
    os.makedirs(path, exist_ok=True)
    return path


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def values(n, seed):
    """n deterministic floats in about [-1, 1]."""
    return [math.sin(seed * 7.1 + i * 0.37) for i in range(n)]


# ---- safetensors ----

def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def bf16_bits(x):
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    b += 0x7FFF + ((b >> 16) & 1)
    return (b >> 16) & 0xFFFF


def encode(dtype, vals):
    if dtype == "F32":
        return struct.pack("<%df" % len(vals), *vals)
    if dtype == "F16":
        return struct.pack("<%dH" % len(vals), *[f16_bits(v) for v in vals])
    if dtype == "BF16":
        return struct.pack("<%dH" % len(vals), *[bf16_bits(v) for v in vals])
    if dtype == "F64":
        return struct.pack("<%dd" % len(vals), *vals)
    if dtype in ("I32", "U32"):
        return struct.pack("<%di" % len(vals), *[int(v * 100) for v in vals])
    if dtype in ("I8", "U8", "BOOL"):
        return bytes((int(abs(v) * 100) & 0x7F) for v in vals)
    raise ValueError(dtype)


def safetensors(tensors, metadata=None, align=8):
    """tensors: list of (name, dtype, shape); returns the file bytes (the layout evb_st_write produces)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for k, (name, dtype, shape) in enumerate(tensors):
        n = 1
        for d in shape:
            n *= d
        blob = encode(dtype, values(n, k + 1))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((align - len(text) % align) % align)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def make_safetensors(out):
    d = fresh_dir(os.path.join(out, "corpus-safetensors"))
    D, F, V = 4, 8, 6
    llama = [("model.embed_tokens.weight", "F32", (V, D)),
             ("model.layers.0.input_layernorm.weight", "F32", (D,)),
             ("model.layers.0.self_attn.q_proj.weight", "F32", (D, D)),
             ("model.layers.0.self_attn.k_proj.weight", "F32", (2, D)),
             ("model.layers.0.mlp.down_proj.weight", "F32", (D, F)),
             ("model.norm.weight", "F32", (D,))]
    write(os.path.join(d, "llama_f32.safetensors"), safetensors(llama, {"format": "pt"}))
    for dt in ("F16", "BF16"):
        write(os.path.join(d, "llama_%s.safetensors" % dt.lower()),
              safetensors([(n, dt, s) for n, _, s in llama], {"format": "pt"}))
    write(os.path.join(d, "mixed.safetensors"),
          safetensors([("a", "F32", (2, 3)), ("b", "F16", (3,)), ("c", "BF16", (1, 1, 2)),
                       ("d", "I32", (2,)), ("e", "U8", (4,)), ("f", "F64", (1,)), ("g", "BOOL", (3,))]))
    write(os.path.join(d, "scalar_empty.safetensors"),
          safetensors([("scalar", "F32", ()), ("empty", "F32", (0, 4)), ("vec", "BF16", (5,))]))
    write(os.path.join(d, "rank8.safetensors"), safetensors([("t", "F32", (1, 2, 1, 2, 1, 1, 2, 1))]))
    write(os.path.join(d, "unaligned.safetensors"), safetensors([("x", "F16", (3,)), ("y", "F32", (2,))], align=1))
    write(os.path.join(d, "metadata_only.safetensors"), safetensors([], {"format": "pt", "note": "no tensors"}))
    write(os.path.join(d, "empty_header.safetensors"), struct.pack("<Q", 2) + b"{}")


# ---- config.json ----

def make_config(out):
    d = fresh_dir(os.path.join(out, "corpus-config"))
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
            "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
            "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": True,
            "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32", "hidden_act": "silu",
            "rope_scaling": None}
    write(os.path.join(d, "llama.json"), json.dumps(base, indent=2))
    tinyllama = dict(base, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                     max_position_embeddings=2048, tie_word_embeddings=False, attention_bias=False,
                     pretraining_tp=1, use_cache=True, transformers_version="4.35.0")
    write(os.path.join(d, "tinyllama.json"), json.dumps(tinyllama, indent=2))
    llama3 = dict(base, vocab_size=128256, rope_theta=500000.0, eos_token_id=[128001, 128008, 128009],
                  bos_token_id=128000, head_dim=64, hidden_size=2048, num_attention_heads=32)
    write(os.path.join(d, "llama3.json"), json.dumps(llama3))
    mistral = dict(base, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4096,
                   max_position_embeddings=32768, rope_theta=1000000.0, num_key_value_heads=8)
    del mistral["rope_scaling"]
    write(os.path.join(d, "mistral.json"), json.dumps(mistral, indent=1))
    qwen2 = dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=896,
                 intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 vocab_size=151936, max_position_embeddings=32768, max_window_layers=21, sliding_window=32768,
                 use_sliding_window=False, rope_theta=1000000.0, rms_norm_eps=1e-06, eos_token_id=151643,
                 bos_token_id=151643, torch_dtype="bfloat16")
    write(os.path.join(d, "qwen2.json"), json.dumps(qwen2, indent=2))
    minimal = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "vocab_size": 16}
    write(os.path.join(d, "minimal.json"), json.dumps(minimal))
    reals = dict(minimal, hidden_size=8.0, num_hidden_layers=1.0, rms_norm_eps=1e-6, rope_theta=1e4,
                 num_key_value_heads=None, head_dim=4, tie_word_embeddings=None)
    write(os.path.join(d, "reals_nulls.json"), json.dumps(reals))


# ---- tokenizer.json ----

META = "\u2581"


def spm_tokenizer(prepend_scheme, with_normalizer):
    """A small Llama-style (SentencePiece BPE) tokenizer.json with byte fallback."""
    pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in (0x0A, 0x20, 0x21, 0x2C, 0xC3, 0xA9, 0xE4)]
    chars = [META, "a", "b", "c", "d", "e", "h", "i", "l", "m", "n", "o", "p", "r", "t", "u", "w", "O", "I", "'", "1", "2"]
    pieces += chars
    merges = [(META, "t"), ("h", "e"), (META + "t", "he"), ("o", "n"), ("O", "n"), ("c", "e"), ("On", "ce"),
              (META, "On"), (META + "On", "ce"), ("u", "p"), ("o", "n"), ("up", "on"), (META, "upon"),
              ("t", "i"), ("m", "e"), ("ti", "me"), (META, "time"), (META, "a"), ("l", "l"), ("e", "ll")]
    for a, b in merges:
        if a + b not in pieces:
            pieces.append(a + b)
    vocab = {p: i for i, p in enumerate(pieces)}
    doc = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, p in enumerate(pieces[:3])]}
    if with_normalizer:
        doc["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": META}, {"type": "Replace", "pattern": {"String": " "}, "content": META}]}
        doc["pre_tokenizer"] = None
        doc["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": META}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        doc["normalizer"] = None
        doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": META, "prepend_scheme": prepend_scheme,
                                "split": prepend_scheme != "never"}
        doc["decoder"] = {"type": "Metaspace", "replacement": META, "prepend_scheme": prepend_scheme, "split": True}
    doc["post_processor"] = {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    doc["model"] = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                    "vocab": vocab, "merges": ["%s %s" % m for m in merges]}
    return doc


def gpt2_bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


PAT_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PAT_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PAT_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytelevel_tokenizer(style, all_bytes):
    """A small byte-level BPE tokenizer.json: GPT-2 (ByteLevel with regex), Llama-3 or Qwen2 (Split, then
    ByteLevel without regex). all_bytes: the vocabulary holds all 256 byte characters."""
    b2u = gpt2_bytes_to_unicode()
    sp = b2u[0x20]
    if all_bytes:
        pieces = [b2u[b] for b in range(256)]
    else:
        pieces = [b2u[b] for b in b"I'mhlowrd12345 \n" + "é".encode()]
    merges = [("'", "m"), (b2u[0xC3], b2u[0xA9]), ("l", "l"), (sp, "h"), (sp, "w"), ("o", "r"),
              (sp + "w", "or"), ("l", "d"), (sp + "wor", "ld"), ("ll", "o"), (sp + "h", b2u[0xC3] + b2u[0xA9]),
              (sp, sp), ("3", "4"), ("1", "2"), ("12", "3")]
    for a, b in merges:
        if a + b not in pieces:
            pieces.append(a + b)
    added = ["<|endoftext|>"] if style == "gpt2" else ["<|begin_of_text|>", "<|end_of_text|>"]
    n = len(pieces)
    vocab = {p: i for i, p in enumerate(pieces)}
    doc = {"version": "1.0",
           "added_tokens": [{"id": n + i, "content": a, "special": True} for i, a in enumerate(added)],
           "normalizer": None}
    if style == "gpt2":
        doc["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    else:
        pat = PAT_LLAMA3 if style == "llama3" else PAT_QWEN2
        doc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pat}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        doc["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": added[0], "type_id": 0}},
                                                       {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [], "special_tokens": {added[0]: {"id": added[0], "ids": [n], "tokens": [added[0]]}}}]}
    doc["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    doc["model"] = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                    "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                    "ignore_merges": style == "llama3", "vocab": vocab,
                    "merges": [list(m) for m in merges] if style == "llama3" else ["%s %s" % m for m in merges]}
    return doc


def make_tokenizer_json(out):
    d = fresh_dir(os.path.join(out, "corpus-tokenizer_json"))
    write(os.path.join(d, "spm_metaspace_first.json"), json.dumps(spm_tokenizer("first", False), ensure_ascii=False))
    write(os.path.join(d, "spm_metaspace_always.json"), json.dumps(spm_tokenizer("always", False), indent=1))
    write(os.path.join(d, "spm_normalizer.json"), json.dumps(spm_tokenizer("never", True), ensure_ascii=False, indent=1))
    write(os.path.join(d, "gpt2.json"), json.dumps(bytelevel_tokenizer("gpt2", False), ensure_ascii=False))
    write(os.path.join(d, "gpt2_allbytes.json"), json.dumps(bytelevel_tokenizer("gpt2", True), ensure_ascii=False))
    write(os.path.join(d, "llama3.json"), json.dumps(bytelevel_tokenizer("llama3", False)))
    write(os.path.join(d, "qwen2.json"), json.dumps(bytelevel_tokenizer("qwen2", False), ensure_ascii=False))
    write(os.path.join(d, "minimal.json"), '{"model": {"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}')


# ---- llama2.c .bin ----

def llama2c_checkpoint(dim, hidden, layers, heads, kv_heads, vocab, seq_len, tied):
    """A legacy (version 0) llama2.c checkpoint: 7 int32 then the float32 arrays in llama2.c order; a
    negative vocab size marks an untied classifier."""
    head = dim // heads
    kvd = kv_heads * head
    sizes = [vocab * dim, layers * dim, layers * dim * dim, layers * kvd * dim, layers * kvd * dim,
             layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
             layers * hidden * dim, dim, seq_len * head // 2 * 2]
    if not tied:
        sizes.append(vocab * dim)
    out = [struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if tied else -vocab, seq_len)]
    for k, n in enumerate(sizes):
        vals = [1.0] * n if k in (1, 6, 10) else [0.1 * v for v in values(n, k)]
        out.append(struct.pack("<%df" % n, *vals))
    return b"".join(out)


def tokenizer_bin(pieces, scores):
    max_len = max(len(p) for p in pieces)
    out = [struct.pack("<i", max_len)]
    for p, s in zip(pieces, scores):
        out.append(struct.pack("<fi", s, len(p)) + p)
    return b"".join(out)


def make_llama2c_bin(out, shared):
    d = fresh_dir(os.path.join(out, "corpus-llama2c_bin"))
    write(os.path.join(d, "tiny_tied.bin"), llama2c_checkpoint(8, 16, 1, 2, 1, 16, 4, True))
    write(os.path.join(d, "tiny_untied.bin"), llama2c_checkpoint(8, 16, 1, 2, 1, 16, 4, False))
    write(os.path.join(d, "tiny_2layer_mha.bin"), llama2c_checkpoint(4, 8, 2, 2, 2, 8, 2, True))
    # A small tokenizer.bin: <unk> <s> </s>, then characters, then merges whose scores order them.
    chars = [b" ", b"a", b"e", b"h", b"n", b"o", b"t", b"O", b"c", b"\xc3\xa9"]
    merged = [b" t", b"he", b" the", b"On", b"ce", b"Once", b" Once", b"\xc3\xa9\xc3\xa9"]
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + chars + merged
    scores = [0.0, 0.0, 0.0] + [0.0] * len(chars) + [-float(i) for i in range(len(merged))]
    write(os.path.join(d, "tok_small.bin"), tokenizer_bin(pieces, scores))
    byte_pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % b for b in range(256)] + [b" a", b" ab"]
    write(os.path.join(d, "tok_bytes.bin"), tokenizer_bin(byte_pieces, [0.0] * 259 + [-1.0, -2.0]))
    tok512 = os.path.join(shared, "models", "stories260K", "tok512.bin")
    if os.path.isfile(tok512):
        shutil.copyfile(tok512, os.path.join(d, "tok512.bin"))
    else:
        print("note: %s not found; corpus-llama2c_bin has no tok512.bin" % tok512)

# ---- level database (index.msgpack and payloads) ----

class Fix64(int):
    """A uint64 packed in its fixed 9-byte form (the index's checksum)."""


def mp(o):
    """msgpack of dicts, lists, str, int, float and Fix64 (what the index uses)."""
    if isinstance(o, Fix64):
        return b"\xcf" + struct.pack(">Q", o)
    if isinstance(o, dict):
        n = len(o)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(mp(k) + mp(v) for k, v in o.items())
    if isinstance(o, list):
        n = len(o)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(mp(v) for v in o)
    if isinstance(o, str):
        b = o.encode("utf-8")
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if o >= 0:
            return b"\xcf" + struct.pack(">Q", o)
        return b"\xd3" + struct.pack(">q", o)
    raise TypeError(type(o))


def sparse_payload(rows, cols, seed, dtype=None):
    """dtype None: version 1 (format-3 databases, float32 values); 0 f32, 1 bf16, 2 f16: version 2."""
    n = rows * cols
    vals = values(n, seed)
    keep = [i for i in range(n) if (i * 7 + seed) % 3]
    mask = bytearray((n + 7) // 8)
    for i in keep:
        mask[i // 8] |= 1 << (i % 8)
    kept = [vals[i] for i in keep]
    if dtype is None:
        head, body = struct.pack("<I", 1), struct.pack("<%df" % len(kept), *kept)
    else:
        head = struct.pack("<HH", 2, dtype)
        if dtype == 1:   # bfloat16: the high half of the float32 (these values are exact in it or near)
            body = b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", v))[0] >> 16) for v in kept)
        elif dtype == 2:
            body = struct.pack("<%de" % len(kept), *kept)
        else:
            body = struct.pack("<%df" % len(kept), *kept)
    return b"EVBS" + head + struct.pack("<IIQ", rows, cols, len(keep)) + bytes(mask) + body, len(keep)


def quant_payload(rows, cols, bits, groups, seed):
    n = rows * cols
    codes = bytearray((n * bits + 7) // 8)
    for i in range(n):
        c = (i * 5 + seed) % (1 << bits)
        for b in range(bits):
            if c >> b & 1:
                bit = i * bits + b
                codes[bit // 8] |= 1 << (bit % 8)
    ns = rows * groups
    gsize = (cols + groups - 1) // groups
    return (b"EVBQ" + struct.pack("<IIIII", 1, rows, cols, bits, groups) + bytes(codes) +
            struct.pack("<%df" % ns, *[0.01 * (1 + i % 3) for i in range(ns)]) +
            struct.pack("<%df" % ns, *[float(1 << (bits - 1))] * ns) +
            struct.pack("<%di" % cols, *[c // gsize for c in range(cols)]))


def db_entry(unit, method, kind, rows, cols, sparsity=0.0, n_keep=0, m=0, n_removed=0, bits=0, group_size=0, sym=0,
             nnz=0, groups=0, dtype=None):
    """dtype None: a format-3 entry (no dtype field, float32 values); else format 4's dtype (0 f32, 1 bf16, 2 f16)."""
    n = rows * cols
    if kind == 0:
        vb = 2 if dtype in (1, 2) else 4
        params, bits_stored, size = float(nnz), float(n + 8 * vb * nnz), 24 + (n + 7) // 8 + vb * nnz
        if m:
            name = "u%04d_%s_%d-%d.bin" % (unit, method, n_keep, m)
        elif n_removed:
            name = "u%04d_%s_r%d.bin" % (unit, method, n_removed)
        else:
            name = "u%04d_%s_s%.6f.bin" % (unit, method, sparsity)
    else:
        ns = rows * groups
        params, bits_stored, size = float(n), float(n * bits + 64 * ns), 24 + (n * bits + 7) // 8 + 8 * ns + 4 * cols
        name = "u%04d_%s_b%dg%d%s.bin" % (unit, method, bits, group_size, "s" if sym else "a")
    e = {"unit": unit, "method": method, "kind": kind, "sparsity": float(sparsity), "n_keep": n_keep, "m": m,
         "n_removed": n_removed, "bits": bits, "group_size": group_size, "sym": sym, "rows": rows, "cols": cols,
         "params_kept": params, "bits_stored": bits_stored, "bytes": size, "recon_error": 0.125,
         "checksum": 0x1234567890ABCDEF, "file": name}
    if dtype is not None:
        e["dtype"] = dtype
    return e


def db_index(entries, fmt=4):
    body = {"format": fmt, "model": "0123456789abcdef", "calib": "fedcba9876543210", "entries": entries}
    if fmt >= 3:
        body["checksum"] = Fix64(0)  # fuzz_db_index writes the right value
    return mp(body)


def make_db(out):
    d = fresh_dir(os.path.join(out, "corpus-db_index"))
    def entries(dt):
        return [db_entry(0, "magnitude", 0, 4, 8, sparsity=0.5, nnz=16, dtype=dt),
                db_entry(1, "rtn", 1, 4, 8, bits=4, group_size=4, sym=1, groups=2, dtype=None if dt is None else 0),
                db_entry(2, "wanda", 0, 4, 8, n_keep=2, m=4, nnz=16, dtype=None if dt is None else 1),
                db_entry(3, "sparsegpt", 0, 4, 8, sparsity=0.375, n_removed=12, nnz=20, dtype=None if dt is None else 2),
                db_entry(4, "gptq", 1, 3, 5, bits=3, group_size=0, groups=1, dtype=None if dt is None else 0)]
    e, e3 = entries(1), entries(None)
    write(os.path.join(d, "empty.msgpack"), db_index([]))
    write(os.path.join(d, "one.msgpack"), db_index(e[:1]))
    write(os.path.join(d, "five.msgpack"), db_index(e))
    write(os.path.join(d, "format3.msgpack"), db_index(e3, fmt=3))
    write(os.path.join(d, "format2.msgpack"), db_index(e3[:2], fmt=2))
    d = fresh_dir(os.path.join(out, "corpus-db_payload"))
    for i, (r, c) in enumerate([(1, 1), (4, 8), (3, 5), (16, 16)]):
        write(os.path.join(d, "sparse-%dx%d.bin" % (r, c)), sparse_payload(r, c, i)[0])
        for dt, name in ((0, "f32"), (1, "bf16"), (2, "f16")):
            write(os.path.join(d, "sparse-%dx%d-%s.bin" % (r, c, name)), sparse_payload(r, c, i, dt)[0])
    for i, (r, c, b, g) in enumerate([(1, 1, 8, 1), (4, 8, 4, 2), (3, 5, 3, 1), (16, 16, 2, 4)]):
        write(os.path.join(d, "quant-%dx%d-b%d.bin" % (r, c, b)), quant_payload(r, c, b, g, i))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED, help="the shared data directory (default: %(default)s)")
    ap.add_argument("--out", default=HERE, help="where the corpus-*/ folders go (default: %(default)s)")
    args = ap.parse_args()
    make_safetensors(args.out)
    make_config(args.out)
    make_tokenizer_json(args.out)
    make_llama2c_bin(args.out, args.shared)
    make_db(args.out)
    for name in sorted(os.listdir(args.out)):
        p = os.path.join(args.out, name)
        if name.startswith("corpus-") and os.path.isdir(p):
            files = os.listdir(p)
            print("%-26s %3d files, %6d bytes" % (name, len(files), sum(os.path.getsize(os.path.join(p, f)) for f in files)))


if __name__ == "__main__":
    main()

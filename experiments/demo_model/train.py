#!/usr/bin/python3
"""Train the evobudget demo model: a small Llama-architecture LM on public-domain English.

Stages (run them all with `all`, or one at a time):
  tokenizer  learn a SentencePiece-style BPE (byte fallback) and write assets/demo/tokenizer.json
  train      train the model (AdamW, warmup + cosine), checkpointing to run/ckpt.pt
  export     write assets/demo/config.json + model.safetensors, reload and compare logits
  eval       held-out perplexity per text (non-overlapping 256-token windows)
  sample     greedy continuation check + assets/demo/calib.txt sampled from the model
  card       write assets/demo/MODEL_CARD.md from run/metrics.json and train.log

The model is written exactly as Hugging Face transformers' LlamaForCausalLM computes it:
RMSNorm (eps 1e-5, x * rsqrt(mean(x^2) + eps) * w), rotary embeddings in the rotate_half
convention (pairs (i, i + head_dim/2)), theta 10000, grouped-query attention where query head h
reads key/value head h // (n_heads / n_kv_heads), softmax(q k^T / sqrt(head_dim)) with a causal
mask, SwiGLU MLP down(silu(gate(x)) * up(x)), no biases, final RMSNorm, tied LM head.

Run with Debian's python (/usr/bin/python3, python3-torch 1.13); OPENBLAS_NUM_THREADS=1 and
OPENBLAS_CORETYPE=SkylakeX are set below unless already in the environment.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# OpenBLAS 0.3.21 (Debian 12) takes this machine's CPU (Intel family 6 model 207, AVX-512) for a
# Prescott and runs matmuls at ~23 GFLOP/s on one thread; the SkylakeX kernels run at ~90-117.
# Must be set before torch loads OpenBLAS.
os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")

import argparse
import collections
import json
import math
import operator
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ASSETS = os.path.join(ROOT, "assets", "demo")
RUN = os.path.join(HERE, "run")
DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "text"))

SEED = 1234
SPACE = "\u2581"  # "▁"

SOURCES = [
    # name, path under DATA, sampling weight in training batches
    ("sotu", "sotu/sotu_1790-2021.txt", 0.5),
    ("moby_dick", "moby-dick/moby_dick.txt", 0.25),
    ("shakespeare", "tinyshakespeare/input.txt", 0.25),
]
HELDOUT_FRACTION = 0.05

CFG = dict(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=6,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
)
TRAIN = dict(
    seq_len=256,
    batch_size=8,
    lr=2e-3,
    min_lr_ratio=0.1,
    warmup_steps=30,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,
    budget_s=38 * 60,  # wall-clock budget of the training loop; sets the step count
    log_every=10,
    eval_every=100,
    eval_windows=8,  # held-out windows per text for the in-training eval
    ckpt_every=50,
)
CHAR_MIN_COUNT = 20  # characters rarer than this are left to byte fallback
EVAL_WINDOW = 256


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- data


def load_sources(data_dir=DATA):
    """Returns {name: (train_text, heldout_text)}; held-out = last ~5% cut at a line break."""
    out = {}
    for name, rel, _ in SOURCES:
        with open(os.path.join(data_dir, rel), encoding="utf-8") as f:
            text = f.read()
        cut = text.index("\n", int(len(text) * (1 - HELDOUT_FRACTION)))
        out[name] = (text[:cut].rstrip("\n"), text[cut:].strip("\n"))
    return out


def split_docs(name, text):
    """Training documents; each is encoded as <s> ... </s>."""
    if name == "sotu":  # one address per paragraph
        return [d.strip() for d in text.split("\n\n") if d.strip()]
    if name == "moby_dick":  # one chapter per document
        return [d.strip("\n") for d in re.split(r"\n(?=CHAPTER \d+\.)", text) if d.strip()]
    # shakespeare: speeches separated by blank lines, grouped into ~3000-character documents
    docs, cur, n = [], [], 0
    for sp in text.split("\n\n"):
        cur.append(sp)
        n += len(sp)
        if n >= 3000:
            docs.append("\n\n".join(cur).strip("\n"))
            cur, n = [], 0
    if cur:
        docs.append("\n\n".join(cur).strip("\n"))
    return docs


# ----------------------------------------------------------------------------- tokenizer

N_SPECIAL = 3  # <unk>=0, <s>=1, </s>=2
BYTE0 = 3  # <0x00>..<0xFF> = 3..258
UNK, BOS, EOS = 0, 1, 2
WORD_RE = re.compile(SPACE + "[^" + SPACE + "]*|[^" + SPACE + "]+")


def normalize(text):
    """HF normalizer Sequence[Prepend("▁"), Replace(" " -> "▁")]."""
    if not text:
        return text
    return SPACE + text.replace(" ", SPACE)


def byte_piece(b):
    return "<0x%02X>" % b


class Tokenizer:
    """BPE with byte fallback, semantics of HF tokenizers' BPE model on a normalized string
    with no pre-tokenizer. Pieces carry "▁" only as their first character, so no merge crosses a
    word start and words (▁ + following non-▁ characters) can be encoded independently; chars
    outside the vocabulary become byte tokens, which no merge touches."""

    def __init__(self, vocab, merges):
        self.vocab = vocab  # piece -> id
        self.id_to_piece = {i: p for p, i in vocab.items()}
        self.merges = merges  # list of (a, b) in rank order
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.cache = {}

    def _encode_word(self, w):
        ids = self.cache.get(w)
        if ids is not None:
            return ids
        out = []
        seg = []

        def flush():
            if not seg:
                return
            syms = list(seg)
            while len(syms) > 1:
                best, bi = None, -1
                for i in range(len(syms) - 1):
                    r = self.ranks.get((syms[i], syms[i + 1]))
                    if r is not None and (best is None or r < best):
                        best, bi = r, i
                if best is None:
                    break
                a, b = self.merges[best]
                new, i = [], 0
                while i < len(syms):
                    if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                        new.append(a + b)
                        i += 2
                    else:
                        new.append(syms[i])
                        i += 1
                syms = new
            out.extend(self.vocab[s] for s in syms)
            seg.clear()

        for ch in w:
            if ch in self.vocab:
                seg.append(ch)
            else:
                flush()
                out.extend(BYTE0 + b for b in ch.encode("utf-8"))
        flush()
        self.cache[w] = out
        return out

    def encode(self, text, bos=False, eos=False):
        ids = [BOS] if bos else []
        for w in WORD_RE.findall(normalize(text)):
            ids.extend(self._encode_word(w))
        if eos:
            ids.append(EOS)
        return ids

    def decode(self, ids):
        """HF decoder Sequence[Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0)]."""
        parts, pending = [], bytearray()

        def flush_bytes():
            if pending:
                try:
                    parts.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    parts.append("\ufffd" * len(pending))
                pending.clear()

        for i in ids:
            if BYTE0 <= i < BYTE0 + 256:
                pending.append(i - BYTE0)
                continue
            flush_bytes()
            if i < N_SPECIAL:
                parts.append(["<unk>", "<s>", "</s>"][i])
            else:
                parts.append(self.id_to_piece[i].replace(SPACE, " "))
        flush_bytes()
        s = "".join(parts)
        return s[1:] if s.startswith(" ") else s

    # -- HF tokenizer.json --------------------------------------------------------
    def to_hf_json(self):
        specials = ["<unk>", "<s>", "</s>"]
        added = [
            dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
            for i, c in enumerate(specials)
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {
                "type": "Sequence",
                "normalizers": [
                    {"type": "Prepend", "prepend": SPACE},
                    {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
                ],
            },
            "pre_tokenizer": None,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [
                    {"SpecialToken": {"id": "<s>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}},
            },
            "decoder": {
                "type": "Sequence",
                "decoders": [
                    {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                    {"type": "ByteFallback"},
                    {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
                ],
            },
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": "<unk>",
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": True,
                "byte_fallback": True,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": ["%s %s" % m for m in self.merges],
            },
        }

    @classmethod
    def from_hf_json(cls, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
        return cls(j["model"]["vocab"], merges)


def train_bpe(texts, vocab_size):
    """Word-frequency BPE, as SentencePiece's BPE trainer: text is normalized (▁ marks word
    starts), split into words at ▁, and words are further split at characters that stay
    byte-fallback (rare chars, newline). Merges are the most frequent adjacent pair each round
    (ties: the pair seen first)."""
    t0 = time.time()
    chars = collections.Counter()
    words = collections.Counter()
    for t in texts:  # the training documents, normalized exactly as encode() sees them
        words.update(WORD_RE.findall(normalize(t)))
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    alphabet = sorted(ch for ch, c in chars.items() if c >= CHAR_MIN_COUNT and ch != "\n")
    alpha = set(alphabet)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[byte_piece(b)] = BYTE0 + b
    for ch in alphabet:
        vocab[ch] = len(vocab)
    # segments: words split at non-alphabet characters and, as SentencePiece's
    # split_by_unicode_script / split_by_number / split_digits do, between letters and
    # punctuation and around every digit; a leading ▁ joins the run that follows it
    segs = collections.Counter()
    for w, c in words.items():
        for sg in _segments(w, alpha):
            segs[sg] += c
    seg_syms = [list(s) for s in segs]
    seg_freq = [segs[s] for s in segs]
    pair_count = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for wi, syms in enumerate(seg_syms):
        f = seg_freq[wi]
        for a, b in zip(syms, syms[1:]):
            pair_count[(a, b)] += f
            where[(a, b)].add(wi)
    log(f"[tokenizer] {len(words)} word types, {len(seg_syms)} segments, alphabet {len(alphabet)} chars")
    merges = []
    while len(vocab) < vocab_size and pair_count:
        # most frequent pair; ties go to the pair first in dict order (deterministic)
        (a, b), c = max(pair_count.items(), key=operator.itemgetter(1))
        if c < 2:
            break
        merges.append((a, b))
        ab = a + b
        if ab not in vocab:
            vocab[ab] = len(vocab)
        for wi in list(where[(a, b)]):
            syms = seg_syms[wi]
            f = seg_freq[wi]
            for p in zip(syms, syms[1:]):
                pair_count[p] -= f
                if pair_count[p] == 0:
                    del pair_count[p]
                where[p].discard(wi)
            new, i = [], 0
            while i < len(syms):
                if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                    new.append(ab)
                    i += 2
                else:
                    new.append(syms[i])
                    i += 1
            seg_syms[wi] = new
            for p in zip(new, new[1:]):
                pair_count[p] += f
                where[p].add(wi)
        where.pop((a, b), None)
        if len(merges) % 500 == 0:
            log(f"[tokenizer] {len(merges)} merges, vocab {len(vocab)}, last {ab!r} x{c}, {time.time() - t0:.0f}s")
    log(f"[tokenizer] done: {len(merges)} merges, vocab {len(vocab)}, {time.time() - t0:.0f}s")
    return Tokenizer(vocab, merges)


def _char_class(ch):
    if ch == SPACE:
        return "S"
    if ch.isdigit():
        return "D"
    if ch.isalpha() or ch in "'\u2019":
        return "L"
    return "P"


def _segments(w, alpha):
    out, cur, cls = [], [], None
    for ch in w:
        c = _char_class(ch) if ch in alpha else "X"
        if c in ("X", "D", "S") or (cls not in (None, "S") and c != cls):
            if len(cur) > 1:
                out.append(tuple(cur))
            cur, cls = [], None
            if c in ("X", "D"):
                continue
        cur.append(ch)
        cls = c
    if len(cur) > 1:
        out.append(tuple(cur))
    return out


def stage_tokenizer(args):
    src = load_sources(args.data)
    docs = [d for name, (tr, _) in src.items() for d in split_docs(name, tr)]
    tok = train_bpe(docs, CFG["vocab_size"])
    os.makedirs(ASSETS, exist_ok=True)
    with open(os.path.join(ASSETS, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok.to_hf_json(), f, ensure_ascii=False, indent=1)
    # round trip and statistics
    tok = Tokenizer.from_hf_json(os.path.join(ASSETS, "tokenizer.json"))
    for name, (tr, ho) in src.items():
        for part, text in (("train", tr), ("heldout", ho)):
            ids = tok.encode(text)
            ok = tok.decode(ids) == text
            log(f"[tokenizer] {name}/{part}: {len(text)} chars -> {len(ids)} tokens "
                f"({len(text) / len(ids):.2f} chars/token), round trip {'ok' if ok else 'FAILED'}")
            if not ok:
                sys.exit("round trip failed")


def load_tokenizer():
    return Tokenizer.from_hf_json(os.path.join(ASSETS, "tokenizer.json"))


# ----------------------------------------------------------------------------- model


class LlamaRMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(cfg, positions):
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        self.hd = cfg["hidden_size"] // self.nh
        d = cfg["hidden_size"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k = torch.cat((cache["k"], k), dim=2)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)  # query head h uses kv head h // rep (HF repeat_kv)
        v = v.repeat_interleave(rep, dim=1)
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd)
        if mask is not None:
            att = att + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, t, self.nh * self.hd)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, seed):
        g = torch.Generator().manual_seed(seed)
        std = 0.02
        resid_std = std / math.sqrt(2 * self.cfg["num_hidden_layers"])
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                nn.init.ones_(p)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * resid_std)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def forward(self, ids, caches=None, pos0=0):
        t = ids.shape[1]
        positions = torch.arange(pos0, pos0 + t)
        cos, sin = rope_cos_sin(self.cfg, positions)
        mask = None
        if t > 1:
            mask = torch.full((t, pos0 + t), float("-inf")).triu(pos0 + 1)
        h = self.model.embed_tokens(ids)
        for i, layer in enumerate(self.model.layers):
            h = layer(h, cos, sin, mask, None if caches is None else caches[i])
        return self.lm_head(self.model.norm(h))


def param_count(model):
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


# ----------------------------------------------------------------------------- safetensors


def export_state(model):
    """HF Llama tensor names -> contiguous float32 tensors (lm_head omitted when tied)."""
    sd = model.state_dict()
    out = {}
    names = ["model.embed_tokens.weight"]
    for i in range(model.cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not model.cfg["tie_word_embeddings"]:
        names.append("lm_head.weight")
    for n in names:
        out[n] = sd[n].detach().to(torch.float32).contiguous()
    return out


def save_safetensors(path, tensors, metadata=None):
    header, off, blobs = {}, 0, []
    for name, t in tensors.items():
        arr = t.numpy().astype("<f4", copy=False)
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def hf_config(cfg):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def config_from_hf(j):
    return {k: j[k] for k in CFG}


def load_exported():
    with open(os.path.join(ASSETS, "config.json")) as f:
        cfg = config_from_hf(json.load(f))
    model = LlamaForCausalLM(cfg)
    tensors, _ = load_safetensors(os.path.join(ASSETS, "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = {"lm_head.weight"} if cfg["tie_word_embeddings"] else set()
    assert set(missing) <= allowed_missing and not unexpected, (missing, unexpected)
    model.eval()
    return model


# ----------------------------------------------------------------------------- training


def token_streams(tok, src):
    """{name: np.int32 stream of <s> doc </s> ...} for the training split."""
    streams = {}
    for name, (tr, _) in src.items():
        ids = []
        docs = split_docs(name, tr)
        for d in docs:
            ids.extend(tok.encode(d, bos=True, eos=True))
        streams[name] = np.array(ids, dtype=np.int32)
        log(f"[data] {name}: {len(docs)} documents, {len(ids)} training tokens")
    return streams


def heldout_windows(tok, text, window=EVAL_WINDOW):
    """Held-out text tokenized as one string (no <s>), cut into non-overlapping windows."""
    ids = np.array(tok.encode(text), dtype=np.int64)
    n = len(ids) // window
    return torch.from_numpy(ids[: n * window].reshape(n, window)), len(ids)


@torch.no_grad()
def window_nll(model, windows, batch=8):
    """Sum of NLL over tokens 1..W-1 of each window (each window evaluated from position 0)."""
    tot, cnt = 0.0, 0
    for i in range(0, len(windows), batch):
        x = windows[i : i + batch]
        logits = model(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        tot += float(nll)
        cnt += x[:, 1:].numel()
    return tot, cnt


def lr_at(step, total, tc):
    if step < tc["warmup_steps"]:
        return tc["lr"] * (step + 1) / tc["warmup_steps"]
    prog = (step - tc["warmup_steps"]) / max(1, total - tc["warmup_steps"])
    prog = min(1.0, prog)
    return tc["lr"] * (tc["min_lr_ratio"] + (1 - tc["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * prog)))


def save_ckpt(path, **state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def stage_train(args):
    tc = dict(TRAIN)
    if args.budget_s:
        tc["budget_s"] = args.budget_s
    os.makedirs(RUN, exist_ok=True)
    tok = load_tokenizer()
    src = load_sources(args.data)
    streams = token_streams(tok, src)
    names = [n for n, _, _ in SOURCES]
    weights = np.array([w for _, _, w in SOURCES], dtype=np.float64)
    weights /= weights.sum()
    eval_sets = {}
    for name in names:
        w, _ = heldout_windows(tok, src[name][1])
        idx = np.random.RandomState(SEED).choice(len(w), tc["eval_windows"], replace=False)
        eval_sets[name] = w[np.sort(idx)]

    torch.manual_seed(SEED)
    model = LlamaForCausalLM(CFG)
    model.init_weights(SEED)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc["lr"], betas=(tc["beta1"], tc["beta2"]), eps=1e-8,
    )
    rng = np.random.RandomState(SEED)
    step, total_steps, elapsed_prev, history = 0, args.steps, 0.0, []
    ckpt_path = os.path.join(RUN, "ckpt.pt")
    if os.path.exists(ckpt_path) and not args.fresh:
        st = torch.load(ckpt_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.set_state(st["rng"])
        step, total_steps, elapsed_prev, history = st["step"], st["total_steps"], st["elapsed"], st["history"]
        log(f"[train] resumed at step {step}/{total_steps}")
    log(f"[train] params {param_count(model):,} (tied embeddings), config {json.dumps(CFG)}")
    log(f"[train] hyper-parameters {json.dumps(tc)}; mixture {dict(zip(names, weights.round(3).tolist()))}")

    T, B = tc["seq_len"], tc["batch_size"]

    def batch():
        xs = []
        for _ in range(B):
            s = streams[names[rng.choice(len(names), p=weights)]]
            o = rng.randint(0, len(s) - T - 1)
            xs.append(s[o : o + T + 1])
        return torch.from_numpy(np.stack(xs).astype(np.int64))

    def evaluate():
        model.eval()
        res = {}
        for name in names:
            tot, cnt = window_nll(model, eval_sets[name])
            res[name] = tot / cnt
        model.train()
        return res

    model.train()
    t_start = time.time() - elapsed_prev
    run_loss, run_n, t_log = 0.0, 0, time.time()
    timing_steps = 6
    while total_steps is None or step < total_steps:
        if total_steps is None and step == timing_steps:
            # size the run from the measured step time (steps 2..6) and the wall-clock budget
            per_step = (time.time() - t_timing) / (timing_steps - 2)
            left = tc["budget_s"] - (time.time() - t_start)
            evals = left / per_step / tc["eval_every"]
            eval_cost = per_step * 0.6 * len(names) * tc["eval_windows"] * T / (B * T)
            total_steps = step + int((left - evals * eval_cost) / per_step * 0.97)
            log(f"[train] measured {per_step:.2f} s/step ({B * T / per_step:.0f} tok/s); "
                f"budget {tc['budget_s']} s -> total_steps {total_steps}")
        if step == 2:
            t_timing = time.time()
        lr = lr_at(step, total_steps or 10**9, tc)
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"]))
        opt.step()
        step += 1
        run_loss += float(loss)
        run_n += 1
        if step % tc["log_every"] == 0 or step == total_steps:
            dt = time.time() - t_log
            el = time.time() - t_start
            rec = dict(step=step, loss=run_loss / run_n, lr=lr, grad_norm=gn, tok_s=run_n * B * T / dt, elapsed=el)
            log(f"step {step:5d}/{total_steps or '?'} | loss {rec['loss']:.4f} | lr {lr:.2e} | "
                f"gnorm {gn:.2f} | {rec['tok_s']:.0f} tok/s | {el:.0f}s")
            history.append(rec)
            run_loss, run_n, t_log = 0.0, 0, time.time()
        if step % tc["eval_every"] == 0 or step == total_steps:
            ev = evaluate()
            log(f"eval  {step:5d} | held-out loss (8x256 windows) " +
                " ".join(f"{k} {v:.4f}" for k, v in ev.items()))
            history.append(dict(step=step, eval=ev, elapsed=time.time() - t_start))
            t_log = time.time()
        if step % tc["ckpt_every"] == 0 or step == total_steps:
            save_ckpt(ckpt_path, model=model.state_dict(), opt=opt.state_dict(), rng=rng.get_state(), step=step,
                      total_steps=total_steps, elapsed=time.time() - t_start, history=history, cfg=CFG, train=tc)
    el = time.time() - t_start
    log(f"[train] finished {step} steps, {step * B * T:,} tokens, wall time {el:.0f} s ({el / 60:.1f} min)")
    update_metrics(train=dict(steps=step, tokens=step * B * T, wall_s=el, params=param_count(model),
                              stream_tokens={k: int(len(v)) for k, v in streams.items()},
                              hyper=tc, history=history))
    save_ckpt(ckpt_path, model=model.state_dict(), opt=opt.state_dict(), rng=rng.get_state(), step=step,
              total_steps=total_steps, elapsed=el, history=history, cfg=CFG, train=tc)


# ----------------------------------------------------------------------------- export / checks


def stage_export(args):
    st = torch.load(os.path.join(RUN, "ckpt.pt"))
    model = LlamaForCausalLM(st["cfg"])
    model.load_state_dict(st["model"])
    model.eval()
    os.makedirs(ASSETS, exist_ok=True)
    with open(os.path.join(ASSETS, "config.json"), "w") as f:
        json.dump(hf_config(st["cfg"]), f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(ASSETS, "model.safetensors"), export_state(model), {"format": "pt"})
    log(f"[export] wrote config.json and model.safetensors "
        f"({os.path.getsize(os.path.join(ASSETS, 'model.safetensors')):,} bytes), step {st['step']}")
    # reload into a fresh model and compare logits
    fresh = load_exported()
    x = torch.randint(0, st["cfg"]["vocab_size"], (2, 64), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        a, b = model(x), fresh(x)
    same = torch.equal(a, b)
    log(f"[export] reload check: logits identical = {same} (max abs diff {float((a - b).abs().max()):.3g})")
    if not same:
        sys.exit("reload mismatch")
    # independent numpy forward pass over the exported tensors (HF LlamaModel semantics)
    ref = numpy_reference_logits(os.path.join(ASSETS, "model.safetensors"), hf_config(st["cfg"]), x[0].tolist())
    d = float(np.abs(ref - a[0].numpy()).max())
    log(f"[export] numpy reference forward: max abs logit diff {d:.3g}")
    if d > 1e-3:
        sys.exit("reference mismatch")
    # incremental decoding with the KV cache must match the full forward pass
    caches = [dict() for _ in range(st["cfg"]["num_hidden_layers"])]
    with torch.no_grad():
        inc = torch.cat([fresh(x[:, i : i + 1], caches, pos0=i) for i in range(x.shape[1])], dim=1)
    log(f"[export] kv-cache decoding vs full forward: max abs diff {float((inc - b).abs().max()):.3g}")


def numpy_reference_logits(path, cfg, ids):
    """Straight-line float64 implementation of HF LlamaForCausalLM.forward for one sequence."""
    t, _ = load_safetensors(path)
    W = {k: v.numpy().astype(np.float64) for k, v in t.items()}
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, n = d // nh, cfg["rms_norm_eps"], len(ids)

    def rms(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd))
    ang = np.arange(n)[:, None] * inv[None, :]  # (n, hd/2)
    c, s = np.cos(ang), np.sin(ang)

    def rope(v):  # v: (n, hd); pair (i, i + hd/2) rotated by angle pos * inv[i]
        a, b = v[:, : hd // 2], v[:, hd // 2 :]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=1)

    x = W["model.embed_tokens.weight"][ids]
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = h @ W[p + "self_attn.q_proj.weight"].T
        k = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        out = np.zeros((n, nh * hd))
        for head in range(nh):
            kvh = head // (nh // nkv)
            qh = rope(q[:, head * hd : (head + 1) * hd])
            kh = rope(k[:, kvh * hd : (kvh + 1) * hd])
            vh = v[:, kvh * hd : (kvh + 1) * hd]
            sc = qh @ kh.T / math.sqrt(hd)
            sc[np.triu_indices(n, 1)] = -np.inf
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            out[:, head * hd : (head + 1) * hd] = sc @ vh
        x = x + out @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head_w = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head_w.T


def update_metrics(**kv):
    path = os.path.join(RUN, "metrics.json")
    m = {}
    if os.path.exists(path):
        with open(path) as f:
            m = json.load(f)
    m.update(kv)
    with open(path, "w") as f:
        json.dump(m, f, indent=1)


def stage_eval(args):
    tok = load_tokenizer()
    model = load_exported()
    src = load_sources(args.data)
    res = {}
    for name, (tr, ho) in src.items():
        w, ntok = heldout_windows(tok, ho)
        tot, cnt = window_nll(model, w)
        # same windowing on an equally long slice from the start of the training split
        wt, _ = heldout_windows(tok, tr[: len(ho)])
        tt, tcn = window_nll(model, wt)
        res[name] = dict(heldout_chars=len(ho), heldout_tokens=ntok, windows=len(w), scored_tokens=cnt,
                         heldout_loss=tot / cnt, heldout_ppl=math.exp(tot / cnt),
                         train_slice_loss=tt / tcn, train_slice_ppl=math.exp(tt / tcn))
        log(f"[eval] {name}: held-out {len(w)} windows, {cnt} scored tokens, loss {tot / cnt:.4f}, "
            f"ppl {math.exp(tot / cnt):.2f} | train-slice loss {tt / tcn:.4f}, ppl {math.exp(tt / tcn):.2f}")
    tot = sum(r["heldout_loss"] * r["scored_tokens"] for r in res.values())
    cnt = sum(r["scored_tokens"] for r in res.values())
    res["all"] = dict(heldout_loss=tot / cnt, heldout_ppl=math.exp(tot / cnt), scored_tokens=cnt)
    log(f"[eval] all held-out: loss {tot / cnt:.4f}, ppl {math.exp(tot / cnt):.2f}")
    update_metrics(eval=res)


@torch.no_grad()
def generate(model, prompts, n_new, temperature=0.0, top_p=1.0, gen=None):
    """prompts: equal-length lists of ids. Greedy when temperature == 0. Stops rows at </s>."""
    cfg = model.cfg
    caches = [dict() for _ in range(cfg["num_hidden_layers"])]
    x = torch.tensor(prompts, dtype=torch.int64)
    logits = model(x, caches, pos0=0)[:, -1]
    pos = x.shape[1]
    out = [list(p) for p in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(n_new):
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = F.softmax(logits / temperature, dim=-1)
            sp, si = probs.sort(dim=-1, descending=True)
            keep = (sp.cumsum(-1) - sp) < top_p  # smallest prefix whose mass reaches top_p
            sp = sp * keep
            choice = torch.multinomial(sp / sp.sum(-1, keepdim=True), 1, generator=gen)
            nxt = si.gather(-1, choice)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, EOS), nxt)
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                out[i].append(t)
        done |= nxt == EOS
        if bool(done.all()) or pos >= cfg["max_position_embeddings"]:
            break
        logits = model(nxt[:, None], caches, pos0=pos)[:, -1]
        pos += 1
    return out


def stage_sample(args):
    tok = load_tokenizer()
    model = load_exported()
    greedy = {}
    for prompt in ["The Congress of the United States", "Call me Ishmael. Some years ago", "ROMEO:\nWhat light"]:
        ids = [BOS] + tok.encode(prompt)
        out = generate(model, [ids], 60)[0]
        text = tok.decode(out[1:])
        greedy[prompt] = text
        log(f"[sample] greedy: {text!r}")
    # calibration text: samples from <s>, temperature 1.0, top-p 0.95, fixed seed
    gen = torch.Generator().manual_seed(SEED)
    samples, size, rounds = [], 0, 0
    max_new = TRAIN["seq_len"] - 1
    while size < args.calib_bytes:
        outs = generate(model, [[BOS]] * 32, max_new, temperature=1.0, top_p=0.95, gen=gen)
        for o in outs:
            ids = [i for i in o[1:] if i != EOS]
            s = tok.decode(ids).strip()
            s = re.sub(r"\n{2,}", "\n", s)  # keep blank lines as the sample separator
            if s:
                samples.append(s)
                size += len(s.encode("utf-8")) + 2
        rounds += 1
        log(f"[sample] calib: {len(samples)} samples, {size:,} bytes")
    with open(os.path.join(ASSETS, "calib.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(samples) + "\n")
    update_metrics(greedy=greedy, calib=dict(samples=len(samples), bytes=os.path.getsize(os.path.join(ASSETS, "calib.txt")),
                                             temperature=1.0, top_p=0.95, seed=SEED, max_new_tokens=max_new))


def stage_hfcheck(args):
    """Compare the Python encoder with Hugging Face tokenizers (node, hf_tokenizer_check.js)."""
    import subprocess
    import tempfile

    tok = load_tokenizer()
    src = load_sources(args.data)
    tmp = tempfile.mkdtemp()
    texts = {}
    for name, (tr, ho) in src.items():
        texts[f"{name}_heldout"] = ho
        texts[f"{name}_train_head"] = tr[:300_000]
    texts["unicode"] = "  Leading spaces,\ttabs, unicode: na\u00efve caf\u00e9 \u2014 \u201cquotes\u201d \U0001f433 \u4e2d\u6587 \n\n end  \n"
    paths = {}
    for k, t in texts.items():
        paths[k] = os.path.join(tmp, k + ".txt")
        with open(paths[k], "w", encoding="utf-8") as f:
            f.write(t)
    res = json.loads(subprocess.run(["node", os.path.join(HERE, "hf_tokenizer_check.js"),
                                     os.path.join(ASSETS, "tokenizer.json")] + list(paths.values()),
                                    check=True, capture_output=True, text=True).stdout)
    ok = True
    for k, p in paths.items():
        mine = tok.encode(texts[k])
        same = mine == res[p]["ids"]
        ok &= same and res[p]["roundtrip"] and res[p]["bos"] == BOS
        log(f"[hfcheck] {k}: {len(mine)} tokens, ids {'identical' if same else 'DIFFER'}, "
            f"HF round trip {res[p]['roundtrip']}, HF first id with specials {res[p]['bos']}")
    if not ok:
        sys.exit("tokenizer check failed")


# ----------------------------------------------------------------------------- card


def stage_card(args):
    from card import write_card  # experiments/demo_model/card.py

    write_card()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["all", "tokenizer", "train", "export", "eval", "sample", "card", "hfcheck"])
    ap.add_argument("--data", default=DATA, help="folder with the shared text corpora")
    ap.add_argument("--steps", type=int, default=None, help="fixed step count (default: sized from budget)")
    ap.add_argument("--budget-s", type=int, default=None, help="training wall-clock budget in seconds")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--calib-bytes", type=int, default=150_000)
    args = ap.parse_args()
    stages = ["tokenizer", "train", "export", "eval", "sample", "card"] if args.stage == "all" else [args.stage]
    for s in stages:
        t0 = time.time()
        log(f"=== {s} ===")
        globals()["stage_" + s](args)
        log(f"=== {s} done in {time.time() - t0:.0f} s ===")


if __name__ == "__main__":
    main()

"""torch_llama.py -- the Llama forward the PyTorch references of bench/ share (torch_forward.py, torch_scale.py):
Hugging Face checkpoints read from safetensors with the standard library and numpy, RMSNorm and softmax in
float32, rotary embeddings rotating halves (Hugging Face) or adjacent pairs (llama2.c), grouped-query
attention, SwiGLU, a tied or untied classifier, in float32 or bfloat16; and the token ids bench_forward.c uses.

Import it after setting OMP_NUM_THREADS and OPENBLAS_NUM_THREADS: it imports torch.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def fail(msg):
    raise SystemExit("%s: %s" % (os.path.basename(sys.argv[0]), msg))


# ---- loading ----

def read_safetensors(path, out, dtype=torch.float32):
    """Adds every tensor of one safetensors file to out, in dtype, read one at a time (no copy of the whole
    file, which would count in the peak RSS)."""
    kinds = {"BF16": "<i2", "F32": "<f4", "F16": "<f2"}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                dt, shape = info["dtype"], info["shape"]
                if dt not in kinds:
                    fail("%s: tensor %s has dtype %s (F32, F16, BF16 are read)" % (path, name, dt))
                b0, b1 = info["data_offsets"]
                f.seek(8 + n + b0)
                a = np.fromfile(f, dtype=kinds[dt], count=(b1 - b0) // np.dtype(kinds[dt]).itemsize)
                t = torch.from_numpy(a)
                if dt == "BF16":
                    t = t.view(torch.bfloat16)
                out[name] = t.reshape(shape).to(dtype)
    except (OSError, struct.error, ValueError, KeyError) as e:
        fail("%s: cannot read it as safetensors: %s" % (path, e))


def load_hf(d, dtype=torch.float32):
    """A Hugging Face Llama/Mistral/Qwen2 directory: (cfg, weights) with every tensor in dtype."""
    try:
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: cannot read config.json: %s" % (d, e))
    t = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                read_safetensors(os.path.join(d, shard), t, dtype)
    elif os.path.isfile(os.path.join(d, "model.safetensors")):
        read_safetensors(os.path.join(d, "model.safetensors"), t, dtype)
    else:
        fail("%s: no model.safetensors or model.safetensors.index.json" % d)
    D, H = c["hidden_size"], c["num_attention_heads"]
    cfg = dict(dim=D, hidden=c["intermediate_size"], layers=c["num_hidden_layers"], heads=H,
               kv_heads=c.get("num_key_value_heads") or H, head_dim=c.get("head_dim") or D // H,
               vocab=c["vocab_size"],
               seq=min(c.get("max_position_embeddings", 2048), c.get("sliding_window") or 1 << 30),
               theta=float(c.get("rope_theta", 10000.0)), eps=float(c.get("rms_norm_eps", 1e-6)), halves=True,
               bos=c.get("bos_token_id") if isinstance(c.get("bos_token_id"), int) else 1)
    names = dict(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.o_proj",
                 gate="mlp.gate_proj", up="mlp.up_proj", down="mlp.down_proj")
    layers = []
    try:
        for l in range(cfg["layers"]):
            p = "model.layers.%d." % l
            ly = {k: t[p + n + ".weight"] for k, n in names.items()}
            ly.update(rms_att=t[p + "input_layernorm.weight"], rms_ffn=t[p + "post_attention_layernorm.weight"])
            for k in ("q", "k", "v"):
                ly["b" + k] = t.get(p + names[k] + ".bias")
            layers.append(ly)
        emb = t["model.embed_tokens.weight"]
        cls = t.get("lm_head.weight", emb) if not c.get("tie_word_embeddings", False) else emb
        w = dict(emb=emb, layers=layers, rms_final=t["model.norm.weight"], cls=cls)
    except KeyError as e:
        fail("%s: tensor %s is missing" % (d, e))
    return cfg, w


# ---- the forward ----

def head_dim(cfg):
    return cfg.get("head_dim") or cfg["dim"] // cfg["heads"]


def rmsnorm(x, w, eps):
    """In float32 whatever x's dtype, as Hugging Face's LlamaRMSNorm does."""
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope_tables(cfg, T, dtype=torch.float32):
    E = head_dim(cfg)
    freq = cfg["theta"] ** (-2.0 * torch.arange(E // 2, dtype=torch.float64) / E)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)      # [T, E/2]


def rope(x, cos, sin, halves):
    """x [B, T, heads, E]; rotates pairs (i, i + E/2) (Hugging Face) or (2i, 2i + 1) (llama2.c)."""
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    if halves:
        a, b = x.chunk(2, dim=-1)
        return torch.cat((a * c - b * s, a * s + b * c), dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


def forward(cfg, w, tok, cos, sin, mask):
    """Logits [B T, V] of tok [B, T]; mask [T, T] is True above the diagonal."""
    B, T = tok.shape
    H, G, E = cfg["heads"], cfg["kv_heads"], head_dim(cfg)
    x = w["emb"][tok.reshape(-1)]                                # [B T, D]
    for ly in w["layers"]:
        h = rmsnorm(x, ly["rms_att"], cfg["eps"])
        q = F.linear(h, ly["q"], ly.get("bq")).view(B, T, H, E)
        k = F.linear(h, ly["k"], ly.get("bk")).view(B, T, G, E)
        v = F.linear(h, ly["v"], ly.get("bv")).view(B, T, G, E)
        q, k = rope(q, cos, sin, cfg["halves"]), rope(k, cos, sin, cfg["halves"])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)    # [B, heads, T, E]
        if G != H:                                               # query head h reads key/value head h // (H/G)
            k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        a = (q @ k.transpose(-1, -2)) * (1.0 / E ** 0.5)
        a = torch.softmax(a.masked_fill(mask, float("-inf")), dim=-1, dtype=torch.float32).to(x.dtype)
        o = (a @ v).transpose(1, 2).reshape(B * T, H * E)
        x = x + F.linear(o, ly["o"])
        h = rmsnorm(x, ly["rms_ffn"], cfg["eps"])
        x = x + F.linear(F.silu(F.linear(h, ly["gate"])) * F.linear(h, ly["up"]), ly["down"])
    return F.linear(rmsnorm(x, w["rms_final"], cfg["eps"]), w["cls"])   # [B T, V]


def make_tokens(B, T, V, bos):
    """The ids of bench_forward.c: BOS at t = 0, else splitmix64(b T + t) mod V."""
    M = (1 << 64) - 1
    out = []
    for i in range(B * T):
        if i % T == 0:
            out.append(bos)
            continue
        z = (i + 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        out.append((z ^ (z >> 31)) % V)
    return torch.tensor(out, dtype=torch.long).view(B, T)

#!/usr/bin/python3
"""torch_scale.py -- PyTorch's forward + log-softmax on a Hugging Face Llama directory, the scale benchmark's reference.

Loads a directory written by bench/make_checkpoint.py (or any Llama checkpoint: config.json with
model.safetensors or a sharded set; F32, F16 or BF16), keeps the weights as torch.bfloat16 (--dtype bf16,
the default) or float32 (--dtype f32), and times the forward (embedding, blocks, final norm, classifier) and
a log-softmax over the vocabulary of a batch of B x T tokens (default 2 x 512) under torch.no_grad(): median
of --reps timed runs (default 3) after one warm-up. It prints tokens/s and the process's peak RSS
(getrusage ru_maxrss, which includes loading).

The forward is bench/torch_forward.py's Llama (rotate-half rotary as Hugging Face checkpoints store q and k,
grouped-query attention, SwiGLU, tied or untied classifier), with Hugging Face's handling of bf16: RMSNorm
and the attention softmax in float32, cast back to the weights' dtype; the log-softmax in float32. The
projections are F.linear, which on a CPU with AVX512-BF16 or AMX runs bf16 in oneDNN. Token ids: BOS at
t = 0, then splitmix64(b T + t) mod V (torch_forward.py's make_tokens).

Weights are read tensor by tensor with the standard library and numpy, and BF16 is kept as it is stored
(no float32 copy) for --dtype bf16, so the peak RSS is about the checkpoint plus the activations.

Threads: --threads N (default OMP_NUM_THREADS, else 1) sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS before
torch is imported, and torch.set_num_threads(N).

Run with Debian's interpreter (python3-torch 1.13):
  /usr/bin/python3 bench/torch_scale.py --model /tmp/evb_scale/llama-3.2-1b [--dtype bf16|f32] [--batch B]
      [--seq T] [--reps R] [--threads N] [--json]
"""
import argparse
import json
import os
import resource
import struct
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face Llama directory")
    p.add_argument("--dtype", choices=("bf16", "f32"), default="bf16", help="weights and activations (default bf16)")
    p.add_argument("--batch", type=int, default=2, help="sequences per forward (default 2)")
    p.add_argument("--seq", type=int, default=512, help="tokens per sequence (default 512)")
    p.add_argument("--reps", type=int, default=3, help="timed runs after one warm-up; the median is reported (default 3)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: OMP_NUM_THREADS, else 1)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = p.parse_args()
    if a.threads is None:
        a.threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    for k in ("batch", "seq", "reps", "threads"):
        if getattr(a, k) < 1:
            p.error("--%s must be at least 1" % k)
    return a


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)   # read when OpenBLAS is loaded, i.e. by import torch
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
DTYPE = torch.bfloat16 if ARGS.dtype == "bf16" else torch.float32


def log(msg):
    print("torch_scale: " + msg, file=sys.stderr, flush=True)


def fail(msg):
    print("torch_scale: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- loading ----

def read_safetensors(path, out):
    """Adds every tensor of one safetensors file to out, in DTYPE, read one at a time (no mapping of the
    whole file, which would count in the peak RSS)."""
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
                out[name] = t.reshape(shape).to(DTYPE)
    except (OSError, struct.error, ValueError, KeyError) as e:
        fail("%s: cannot read it as safetensors: %s" % (path, e))


def load_hf(d):
    """torch_forward.py's load_hf, keeping DTYPE."""
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
                read_safetensors(os.path.join(d, shard), t)
    elif os.path.isfile(os.path.join(d, "model.safetensors")):
        read_safetensors(os.path.join(d, "model.safetensors"), t)
    else:
        fail("%s: no model.safetensors (write one with bench/make_checkpoint.py)" % d)
    D, H = c["hidden_size"], c["num_attention_heads"]
    cfg = dict(dim=D, hidden=c["intermediate_size"], layers=c["num_hidden_layers"], heads=H,
               kv_heads=c.get("num_key_value_heads") or H, head_dim=c.get("head_dim") or D // H,
               vocab=c["vocab_size"], seq=c.get("max_position_embeddings", 2048),
               theta=float(c.get("rope_theta", 10000.0)), eps=float(c.get("rms_norm_eps", 1e-6)),
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


# ---- the forward (torch_forward.py's, with Hugging Face's float32 norms and softmax) ----

def rmsnorm(x, w, eps):
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope_tables(cfg, T):
    E = cfg["head_dim"]
    freq = cfg["theta"] ** (-2.0 * torch.arange(E // 2, dtype=torch.float64) / E)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).to(DTYPE), torch.sin(ang).to(DTYPE)      # [T, E/2]


def rope(x, cos, sin):
    """x [B, T, heads, E]; rotates pairs (i, i + E/2), as Hugging Face checkpoints store q and k."""
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * c - b * s, a * s + b * c), dim=-1)


def forward(cfg, w, tok, cos, sin, mask):
    B, T = tok.shape
    H, G, E = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    x = w["emb"][tok.reshape(-1)]                                # [B T, D]
    for ly in w["layers"]:
        h = rmsnorm(x, ly["rms_att"], cfg["eps"])
        q = F.linear(h, ly["q"], ly.get("bq")).view(B, T, H, E)
        k = F.linear(h, ly["k"], ly.get("bk")).view(B, T, G, E)
        v = F.linear(h, ly["v"], ly.get("bv")).view(B, T, G, E)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)    # [B, heads, T, E]
        if G != H:                                               # query head h reads key/value head h // (H/G)
            k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        a = (q @ k.transpose(-1, -2)) * (1.0 / E ** 0.5)
        a = torch.softmax(a.masked_fill(mask, float("-inf")), dim=-1, dtype=torch.float32).to(DTYPE)
        o = (a @ v).transpose(1, 2).reshape(B * T, H * E)
        x = x + F.linear(o, ly["o"])
        h = rmsnorm(x, ly["rms_ffn"], cfg["eps"])
        x = x + F.linear(F.silu(F.linear(h, ly["gate"])) * F.linear(h, ly["up"]), ly["down"])
    return F.linear(rmsnorm(x, w["rms_final"], cfg["eps"]), w["cls"])   # [B T, V]


def make_tokens(B, T, V, bos):
    """torch_forward.py's ids: BOS at t = 0, else splitmix64(b T + t) mod V."""
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


def gflop_per_token(cfg, T):
    """2 x (projection + classifier weights), plus causal attention 2 x 2 x (T/2) x H x E per layer."""
    D, F_, L, H, G, E, V = (cfg[k] for k in ("dim", "hidden", "layers", "heads", "kv_heads", "head_dim", "vocab"))
    linear = L * (2 * D * H * E + 2 * D * G * E + 3 * D * F_) + V * D
    return (2.0 * linear + 4.0 * (T / 2.0) * H * E * L) / 1e9


def main():
    t0 = time.perf_counter()
    cfg, w = load_hf(ARGS.model)
    load_s = time.perf_counter() - t0
    B, T = ARGS.batch, ARGS.seq
    if T > cfg["seq"]:
        fail("--seq %d exceeds the model's context of %d" % (T, cfg["seq"]))
    tok = make_tokens(B, T, cfg["vocab"], cfg["bos"])
    cos, sin = rope_tables(cfg, T)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    log("%s: loaded in %.1f s (%s); 1 warm-up + %d timed runs of %d x %d tokens, %d thread(s)"
        % (ARGS.model, load_s, ARGS.dtype, ARGS.reps, B, T, ARGS.threads))
    times, check = [], 0.0
    with torch.no_grad():
        for it in range(-1, ARGS.reps):
            t1 = time.perf_counter()
            lp = torch.log_softmax(forward(cfg, w, tok, cos, sin, mask).float(), dim=-1)
            dt = time.perf_counter() - t1
            check = -lp[torch.arange(B * T - 1), tok.reshape(-1)[1:]].mean().item()   # mean NLL of the next ids
            del lp
            if it >= 0:
                times.append(dt)
    step = float(np.median(times))
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = dict(engine="pytorch " + torch.__version__, model=ARGS.model, dtype=ARGS.dtype, threads=ARGS.threads,
             batch=B, seq=T, reps=ARGS.reps, load_s=load_s, step_s=step, tok_s=B * T / step,
             gflop_per_token=gflop_per_token(cfg, T), peak_rss_kib=rss_kib, nll=check)
    if not np.isfinite(check):
        fail("the log-probabilities are not finite (nll %r)" % check)
    if ARGS.json:
        print(json.dumps(r))
        return
    print("%s %s, %d thread(s): %d x %d tokens in %.3f s (median of %d): %.1f tok/s, %.1f GFLOP/s; "
          "peak RSS %.2f GiB; load %.1f s; mean NLL %.3f"
          % (r["engine"], ARGS.dtype, ARGS.threads, B, T, step, ARGS.reps, r["tok_s"],
             r["tok_s"] * r["gflop_per_token"], rss_kib / 2**20, load_s, check))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""torch_scale.py -- PyTorch's forward + log-softmax on a Hugging Face Llama directory, the scale benchmark's reference.

Loads a directory written by bench/make_checkpoint.py (or any Llama checkpoint: config.json with
model.safetensors or a sharded set; F32, F16 or BF16), keeps the weights as torch.bfloat16 (--dtype bf16,
the default) or float32 (--dtype f32), and times the forward (embedding, blocks, final norm, classifier) and
a log-softmax over the vocabulary of a batch of B x T tokens (default 2 x 512) under torch.no_grad(): median
of --reps timed runs (default 3) after one warm-up. It prints tokens/s and the process's peak RSS
(getrusage ru_maxrss, which includes loading).

The forward is bench/torch_llama.py's Llama (rotate-half rotary as Hugging Face checkpoints store q and k,
grouped-query attention, SwiGLU, tied or untied classifier), with Hugging Face's handling of bf16: RMSNorm
and the attention softmax in float32, cast back to the weights' dtype; the log-softmax in float32. The
projections are F.linear, which on a CPU with AVX512-BF16 or AMX runs bf16 in oneDNN. Token ids: BOS at
t = 0, then splitmix64(b T + t) mod V (torch_llama.py's make_tokens, as torch_forward.py).

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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import forward, load_hf, make_tokens, rope_tables  # noqa: E402

torch.set_num_threads(ARGS.threads)
DTYPE = torch.bfloat16 if ARGS.dtype == "bf16" else torch.float32


def log(msg):
    print("torch_scale: " + msg, file=sys.stderr, flush=True)


def fail(msg):
    print("torch_scale: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- the benchmark (loading and the forward: torch_llama.py) ----

def gflop_per_token(cfg, T):
    """2 x (projection + classifier weights), plus causal attention 2 x 2 x (T/2) x H x E per layer."""
    D, F_, L, H, G, E, V = (cfg[k] for k in ("dim", "hidden", "layers", "heads", "kv_heads", "head_dim", "vocab"))
    linear = L * (2 * D * H * E + 2 * D * G * E + 3 * D * F_) + V * D
    return (2.0 * linear + 4.0 * (T / 2.0) * H * E * L) / 1e9


def main():
    t0 = time.perf_counter()
    cfg, w = load_hf(ARGS.model, DTYPE)
    load_s = time.perf_counter() - t0
    B, T = ARGS.batch, ARGS.seq
    if T > cfg["seq"]:
        fail("--seq %d exceeds the model's context of %d" % (T, cfg["seq"]))
    tok = make_tokens(B, T, cfg["vocab"], cfg["bos"])
    cos, sin = rope_tables(cfg, T, DTYPE)
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

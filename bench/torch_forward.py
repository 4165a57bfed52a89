#!/usr/bin/python3
"""torch_forward.py -- the forward benchmark of bench_forward.c in PyTorch, on the same weights and tokens.

Runs each model over the same batch (B x T tokens, default 8 x 512, ids from the same splitmix64 formula),
then log_softmax and KL(dense || copy) against the log-probabilities of the first run, under
torch.no_grad(), and prints tokens/s (median of R runs). The Llama forward is bench/torch_llama.py's:
RMSNorm, rotary (adjacent pairs for llama2.c checkpoints, rotate-half for Hugging Face ones), grouped-query
attention, SwiGLU, tied or untied classifier.

Models: stories260K (llama2.c .bin, parsed here), the demo model (assets/demo, model.safetensors, skipped
when absent), and the random-weight models that bench_forward writes to /tmp/evb_bench_models/<name>
(run bench_forward first). Safetensors are parsed with the standard library and numpy (torch_llama.py).

Threads: --threads N sets torch.set_num_threads(N) and, before torch is imported, OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS (Debian's torch calls OpenBLAS for matmuls, whose thread count set_num_threads does not
change).

With --engine-logits DIR (bench_forward --dump DIR: each model's logits of sequence 0, [T, V] float32, in
DIR/<model>.logits.f32) it prints the max abs difference between the PyTorch and engine logits at
position 0 and over all positions of that sequence.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_forward.py [--threads N] [--json]
"""
import argparse
import json
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ("stories260K", "demo", "rand768", "rand512")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "data", "models", "stories260K", "stories260K.bin"),
                   help="stories260K checkpoint (default ../shared/data/models/stories260K/stories260K.bin from the repo root)")
    p.add_argument("--demo", default=os.path.join(ROOT, "assets", "demo"), help="demo model directory (default assets/demo)")
    p.add_argument("--random-dir", default="/tmp/evb_bench_models", help="where bench_forward wrote the random models")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--reps", type=int, default=5, help="timed runs (default 5); medians are reported")
    p.add_argument("--reps-big", type=int, default=None, help="timed runs for models over 10M parameters (default min(R, 3))")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs (default 2, 0 for models over 10M parameters), "
                   "after the untimed run that fills the dense copy")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="threads (default: OMP_NUM_THREADS, else 1)")
    p.add_argument("--engine-logits", default=None, metavar="DIR",
                   help="bench_forward --dump directory: compare each model's logits of sequence 0 with the engine's")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = p.parse_args()
    for m in a.models.split(","):
        if m not in MODELS:
            p.error("--models: unknown model '%s' (%s)" % (m, ", ".join(MODELS)))
    if a.threads is None:
        a.threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    if a.reps_big is None:
        a.reps_big = min(a.reps, 3)
    return a


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)   # read when OpenBLAS is loaded, i.e. by import torch
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import forward, load_hf, make_tokens, rope_tables  # noqa: E402

torch.set_num_threads(ARGS.threads)


def log(msg):
    print("torch_forward: " + msg, file=sys.stderr, flush=True)


# ---- loading ----

def load_llama2c(path):
    """llama2.c version-0 checkpoint: 7 int32 header, then float32 arrays (SOURCE.md of stories260K)."""
    with open(path, "rb") as f:
        buf = f.read()
    D, Fh, L, H, G, V, S = struct.unpack("<7i", buf[:28])
    tied, V = V > 0, abs(V)
    E = D // H
    a = np.frombuffer(buf, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        t = torch.from_numpy(a[pos:pos + n].reshape(shape).copy())
        pos += n
        return t
    emb = take(V, D)
    rms_att, wq, wk, wv, wo = take(L, D), take(L, H * E, D), take(L, G * E, D), take(L, G * E, D), take(L, D, H * E)
    rms_ffn, w1, w2, w3 = take(L, D), take(L, Fh, D), take(L, D, Fh), take(L, Fh, D)
    rms_final = take(D)
    pos += S * E                      # freq_cis_real, freq_cis_imag (unused)
    cls = emb if tied else take(V, D)
    layers = [dict(rms_att=rms_att[l], q=wq[l], k=wk[l], v=wv[l], o=wo[l], rms_ffn=rms_ffn[l],
                   gate=w1[l], down=w2[l], up=w3[l]) for l in range(L)]
    cfg = dict(dim=D, hidden=Fh, layers=L, heads=H, kv_heads=G, vocab=V, seq=S, theta=10000.0, eps=1e-5,
               halves=False, bos=1)
    return cfg, dict(emb=emb, layers=layers, rms_final=rms_final, cls=cls)


# ---- the benchmark (the forward: torch_llama.py) ----

def run(name, cfg, w, reps, warmup):
    B, T = ARGS.batch, min(ARGS.seq, cfg["seq"])
    tok = make_tokens(B, T, cfg["vocab"], cfg["bos"])
    cos, sin = rope_tables(cfg, T)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    log("%s: %d warm-up + %d timed runs of %d x %d tokens, %d thread(s)" % (name, warmup, reps, B, T, ARGS.threads))
    ref, times, kl, first = None, [], 0.0, None
    for it in range(-warmup - 1, reps):
        t0 = time.perf_counter()
        logits = forward(cfg, w, tok, cos, sin, mask)
        if ref is None:
            first = logits[:T].clone()                           # sequence 0, before log-softmax
        lp = torch.log_softmax(logits, dim=-1)
        if ref is None:
            ref = lp
            continue
        kl = F.kl_div(lp, ref, reduction="sum", log_target=True).item()    # sum exp(ref) (ref - lp)
        dt = time.perf_counter() - t0
        if it >= 0:
            times.append(dt)
        del logits, lp
    params = sum(t.numel() for t in [w["emb"], w["rms_final"]] + [v for ly in w["layers"] for v in ly.values() if v is not None])
    params += 0 if w["cls"] is w["emb"] else w["cls"].numel()
    step = float(np.median(times))
    return dict(name=name, skipped=False, params=params, batch=B, seq=T, reps=reps, warmup=warmup,
                threads=ARGS.threads, step_s=step, tok_s=B * T / step, kl=kl), first


def main():
    results = []
    want = ARGS.models.split(",")
    with torch.no_grad():
        for name in MODELS:
            if name not in want:
                continue
            if name == "stories260K":
                if not os.path.isfile(ARGS.model):
                    raise SystemExit("torch_forward: the stories260K checkpoint %s is missing; pass --model PATH" % ARGS.model)
                cfg, w = load_llama2c(ARGS.model)
            elif name == "demo":
                if not os.path.isfile(os.path.join(ARGS.demo, "config.json")):
                    log("skipping the demo model: %s has no config.json" % ARGS.demo)
                    results.append(dict(name=name, skipped=True, note="no model in %s" % ARGS.demo))
                    continue
                cfg, w = load_hf(ARGS.demo)
            else:
                d = os.path.join(ARGS.random_dir, name)
                if not os.path.isfile(os.path.join(d, "model.safetensors")):
                    raise SystemExit("torch_forward: %s is missing: run bench_forward first (it writes the random models)" % d)
                cfg, w = load_hf(d)
            big = sum(t.numel() for ly in w["layers"] for t in ly.values() if t is not None) + w["emb"].numel() > 10_000_000
            reps = ARGS.reps_big if big else ARGS.reps
            warmup = ARGS.warmup if ARGS.warmup is not None else (0 if big else 2)
            r, first = run(name, cfg, w, reps, warmup)
            path = os.path.join(ARGS.engine_logits, name + ".logits.f32") if ARGS.engine_logits else None
            if path and os.path.isfile(path):
                eng = np.fromfile(path, dtype="<f4")
                V = cfg["vocab"]
                if eng.size % V or eng.size // V > first.shape[0]:
                    raise SystemExit("torch_forward: %s holds %d floats, not [T, %d] for T <= %d" % (path, eng.size, V, first.shape[0]))
                eng = torch.from_numpy(eng.reshape(-1, V))
                n = eng.shape[0]
                r["engine_logits_check"] = dict(positions=n, max_abs_diff_pos0=(first[0] - eng[0]).abs().max().item(),
                                                max_abs_diff_all=(first[:n] - eng).abs().max().item(),
                                                max_abs_logit=eng.abs().max().item())
            elif path:
                log("%s: no engine logits in %s" % (name, path))
            results.append(r)
            del w
    if ARGS.json:
        print(json.dumps(dict(engine="pytorch " + torch.__version__, threads=ARGS.threads, batch=ARGS.batch,
                              seq=ARGS.seq, models=results), indent=1))
        return
    print("## PyTorch %s forward benchmark: %d x %d tokens, %d thread(s)\n" % (torch.__version__, ARGS.batch, ARGS.seq, ARGS.threads))
    print("| model | params | PyTorch tok/s | step s |\n|---|---:|---:|---:|")
    for r in results:
        if r["skipped"]:
            print("| %s | - | skipped: %s | |" % (r["name"], r["note"]))
        else:
            print("| %s | %.2fM | %.0f | %.3f |" % (r["name"], r["params"] / 1e6, r["tok_s"], r["step_s"]))
    for r in results:
        if not r["skipped"]:
            print("%s: KL(dense || copy) = %.3g (expected 0)" % (r["name"], r["kl"]))
    for r in results:
        c = r.get("engine_logits_check")
        if c:
            print("%s logits of sequence 0, PyTorch vs engine (bench_forward --dump): max |diff| %.3g at position 0, "
                  "%.3g over all %d positions (max |logit| %.3g)" % (r["name"], c["max_abs_diff_pos0"], c["max_abs_diff_all"],
                                                                    c["positions"], c["max_abs_logit"]))


if __name__ == "__main__":
    main()

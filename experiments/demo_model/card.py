"""Writes assets/demo/MODEL_CARD.md from run/metrics.json, the exported files and train.log."""
import json
import math
import os
import re

import train as T


def _size(path):
    return os.path.getsize(path)


def write_card():
    with open(os.path.join(T.RUN, "metrics.json")) as f:
        m = json.load(f)
    with open(os.path.join(T.ASSETS, "config.json")) as f:
        cfg = json.load(f)
    tr = m["train"]
    hp = tr["hyper"]
    ev = m["eval"]
    cal = m["calib"]
    hist = [h for h in tr["history"] if "loss" in h]
    evals = {h["step"]: h["eval"] for h in tr["history"] if "eval" in h}
    d, L, ff, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    kvd = cfg["num_key_value_heads"] * hd
    attn = d * d * 2 + d * kvd * 2
    mlp = 3 * d * ff
    per_layer = attn + mlp + 2 * d
    emb = V * d
    assert emb + L * per_layer + d == tr["params"], "parameter count mismatch"

    files = ["config.json", "model.safetensors", "tokenizer.json", "calib.txt"]
    sizes = {f: _size(os.path.join(T.ASSETS, f)) for f in files}

    last = hist[-5:]
    final_train_loss = sum(h["loss"] for h in last) / len(last)

    L_ = []
    w = L_.append
    w("# evobudget demo model (Llama architecture, 5.4 M parameters)")
    w("")
    w("A small causal language model trained from scratch for this project on public-domain English, "
      "so that the engine can be run, tested and benchmarked on a real Llama-architecture model that "
      "the project ships itself. It is a toy: it writes locally fluent but meaningless English in the "
      "style of its three sources.")
    w("")
    w("Files in `assets/demo/`:")
    w("")
    w("| file | bytes | contents |")
    w("|---|---:|---|")
    w(f"| config.json | {sizes['config.json']:,} | Hugging Face `LlamaForCausalLM` config |")
    w(f"| model.safetensors | {sizes['model.safetensors']:,} | weights, F32, Hugging Face Llama tensor names (no `lm_head.weight`: tied) |")
    w(f"| tokenizer.json | {sizes['tokenizer.json']:,} | Hugging Face tokenizer (BPE with byte fallback, Llama-2 layout) |")
    w(f"| calib.txt | {sizes['calib.txt']:,} | calibration text sampled from this model (see below) |")
    w("")
    w("Everything is reproduced by `experiments/demo_model/train.py` (see the README there); the full "
      "training log is `experiments/demo_model/train.log`.")
    w("")
    w("## Architecture")
    w("")
    w("Computed exactly as Hugging Face transformers' `LlamaForCausalLM` (same tensor names, config keys and "
      "arithmetic; transformers itself was not available where it was trained, so the export is checked against an "
      "independent NumPy implementation instead, see the end):")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| hidden_size | {d} |")
    w(f"| num_hidden_layers | {L} |")
    w(f"| num_attention_heads | {cfg['num_attention_heads']} (head_dim {hd}) |")
    w(f"| num_key_value_heads | {cfg['num_key_value_heads']} (grouped-query attention: query head h uses KV head h // {cfg['num_attention_heads'] // cfg['num_key_value_heads']}) |")
    w(f"| intermediate_size | {ff} (SwiGLU: down(silu(gate(x)) * up(x))) |")
    w(f"| vocab_size | {V} |")
    w(f"| max_position_embeddings | {cfg['max_position_embeddings']} (trained on {hp['seq_len']}-token sequences) |")
    w(f"| RMSNorm | eps {cfg['rms_norm_eps']}, pre-norm (input_layernorm, post_attention_layernorm), final model.norm |")
    w(f"| RoPE | theta {cfg['rope_theta']}, rotate_half convention: dimension pairs (i, i + head_dim/2) |")
    w("| biases | none |")
    w(f"| tie_word_embeddings | {str(cfg['tie_word_embeddings']).lower()} (lm_head = model.embed_tokens) |")
    w(f"| bos / eos | {cfg['bos_token_id']} `<s>` / {cfg['eos_token_id']} `</s>` |")
    w("")
    w(f"Parameters: **{tr['params']:,}** = embedding {emb:,} + {L} layers x {per_layer:,} "
      f"(attention {attn:,}, MLP {mlp:,}, norms {2 * d}) + final norm {d}. "
      f"Tensors in model.safetensors: {2 + 9 * L}.")
    w("")
    w("## Tokenizer")
    w("")
    w("SentencePiece-style BPE with byte fallback in the Llama-2 `tokenizer.json` layout, trained for this model:")
    w("")
    w("- ids 0, 1, 2: `<unk>`, `<s>`, `</s>` (the `added_tokens`); ids 3..258: byte tokens `<0x00>`..`<0xFF>`; "
      f"then {T.CHAR_MIN_COUNT}+-occurrence characters of the training text (including `▁`), then merged pieces, "
      f"{V} in all, with {len(json.load(open(os.path.join(T.ASSETS, 'tokenizer.json'), encoding='utf-8'))['model']['merges']):,} merges.")
    w("- normalizer: Prepend `▁`, Replace ` ` -> `▁`; no pre-tokenizer; decoder: Replace `▁` -> ` `, ByteFallback, "
      "Fuse, Strip one leading space. Post-processor adds `<s>` (as Llama-2's).")
    w("- Training: word-frequency BPE over the training split (words = `▁` + following characters, as "
      "SentencePiece splits on whitespace). Like SentencePiece's default `split_by_unicode_script`, "
      "`split_by_number` and Llama-2's `split_digits`, no merge joins letters with punctuation, and digits are never "
      "merged; newline and rare characters are left to byte fallback (newline is `<0x0A>`, as in Llama-2). "
      "Encoding applies the merges in rank order (Hugging Face BPE semantics).")
    w("- Checks: `decode(encode(x)) == x` on every training and held-out text; ids identical to the Hugging Face "
      "`tokenizers` library (0.23.2) on the held-out texts, 300 KB of each training text and a Unicode/whitespace "
      "test string.")
    w("")
    w("## Training data")
    w("")
    w("Read from the shared corpora (`shared/data/text/`, not copied into the project):")
    w("")
    w("| text | file | licence | train tokens | held-out chars / tokens | batch weight |")
    w("|---|---|---|---:|---:|---:|")
    lic = {
        "sotu": ("U.S. State of the Union addresses 1790-2021", "sotu/sotu_1790-2021.txt",
                 "public domain (works of the U.S. Government, 17 U.S.C. 105)"),
        "moby_dick": ("Moby Dick (Melville)", "moby-dick/moby_dick.txt", "public domain"),
        "shakespeare": ("Tiny Shakespeare", "tinyshakespeare/input.txt", "public domain (Shakespeare's text)"),
    }
    for name, rel, wt in T.SOURCES:
        title, f, l = lic[name]
        e = ev[name]
        w(f"| {title} | `{f}` | {l} | {tr['stream_tokens'][name]:,} | {e['heldout_chars']:,} / {e['heldout_tokens']:,} | {wt} |")
    w("")
    w(f"Held-out split: the last {T.HELDOUT_FRACTION:.0%} of each file, cut at the first line break after the "
      "95% mark (so the SOTU held-out part is 14 whole addresses, 2008 to 2021). Training documents: one per "
      "SOTU address, one per Moby Dick chapter, and Tiny Shakespeare speeches grouped into ~3,000-character "
      "documents; each is encoded as `<s>` text `</s>`, and training sequences are random "
      f"{hp['seq_len'] + 1}-token windows of a text chosen with the batch weights above.")
    w("")
    w("## Hyper-parameters")
    w("")
    w(f"AdamW (beta1 {hp['beta1']}, beta2 {hp['beta2']}, eps 1e-8, weight decay {hp['weight_decay']} on matrices "
      f"only), peak learning rate {hp['lr']}, linear warmup {hp['warmup_steps']} steps, cosine decay to "
      f"{hp['min_lr_ratio']} x peak, gradient clipping {hp['grad_clip']}, batch {hp['batch_size']} x "
      f"{hp['seq_len']} tokens, float32, {tr['steps']} steps = {tr['tokens']:,} tokens "
      f"(the step count was sized from the measured step time to fit a {hp['budget_s'] // 60}-minute budget). "
      "Initialisation N(0, 0.02), o_proj and down_proj N(0, 0.02/sqrt(2 x layers)), norms 1. Seed 1234 for "
      "everything. PyTorch 1.13 (Debian python3-torch) on one CPU thread "
      "(`torch.set_num_threads(1)`, `OPENBLAS_NUM_THREADS=1`, and `OPENBLAS_CORETYPE=SkylakeX`, because "
      "Debian's OpenBLAS 0.3.21 does not recognise the CPU (Intel family 6 model 207, AVX-512) and would otherwise "
      "fall back to its slow Prescott kernels).")
    w("")
    with open(os.path.join(T.HERE, "train.log"), encoding="utf-8") as f:
        measured = re.search(r"measured ([0-9.]+) s/step", f.read())
    w(f"Training wall time: **{tr['wall_s']:.0f} s ({tr['wall_s'] / 60:.1f} min)**"
      + (f", {tr['wall_s'] / 60 - hp['budget_s'] / 60:.0f} minutes over the budget: the step time measured at the start "
         f"({measured.group(1)} s) grew to {tr['wall_s'] / tr['steps']:.2f} s on average while other jobs shared the "
         "machine's two cores." if tr["wall_s"] > hp["budget_s"] * 1.02 and measured else "."))
    w("")
    w("## Training log")
    w("")
    w("Training loss = mean over the preceding 10 steps; held-out loss = 8 fixed 256-token windows per text.")
    w("")
    w("| step | tokens | train loss | lr | held-out loss sotu / moby_dick / shakespeare | elapsed s |")
    w("|---:|---:|---:|---:|---|---:|")
    for h in hist:
        s = h["step"]
        every = 50 if tr["steps"] <= 800 else 100
        if s % every and s != tr["steps"] and s > 10:
            continue
        e = evals.get(s)
        es = " / ".join(f"{e[k]:.3f}" for k, _, _ in T.SOURCES) if e else ""
        w(f"| {s} | {s * hp['batch_size'] * hp['seq_len']:,} | {h['loss']:.3f} | {h['lr']:.2e} | {es} | {h['elapsed']:.0f} |")
    w("")
    w("## Evaluation")
    w("")
    w("Token-level perplexity = exp(mean NLL per predicted token). Windowing: each text is tokenized as one "
      "string (normalizer as above, no `<s>`), cut into non-overlapping 256-token windows (the remainder "
      "< 256 tokens is dropped); each window is run independently from position 0, and tokens 2..256 of each window are scored "
      "(255 predictions per window, the first token of a window is context only). \"train slice\" applies the same "
      "to an equally long piece from the start of the training split.")
    w("")
    w("| text | windows | scored tokens | held-out loss | held-out ppl | train-slice loss | train-slice ppl |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, _, _ in T.SOURCES:
        e = ev[name]
        w(f"| {name} | {e['windows']} | {e['scored_tokens']:,} | {e['heldout_loss']:.4f} | {e['heldout_ppl']:.2f} | "
          f"{e['train_slice_loss']:.4f} | {e['train_slice_ppl']:.2f} |")
    a = ev["all"]
    w(f"| all (token-weighted) | | {a['scored_tokens']:,} | {a['heldout_loss']:.4f} | {a['heldout_ppl']:.2f} | | |")
    w("")
    w(f"Final training loss (mean of the last {len(last) * 10} steps' batches): {final_train_loss:.3f} "
      f"(ppl {math.exp(final_train_loss):.1f}).")
    w("")
    w("Greedy continuations (60 new tokens, prompt after `<s>`):")
    w("")
    for p, t in m["greedy"].items():
        w("```")
        w(t)
        w("```")
    w("")
    w("## calib.txt")
    w("")
    w(f"{cal['samples']} samples drawn from this model, each started from `<s>` alone and run for at most "
      f"{cal['max_new_tokens']} new tokens or until `</s>`; temperature {cal['temperature']}, top-p {cal['top_p']}, "
      f"torch generator seed {cal['seed']}, 32 samples at a time with a KV cache. Inside a sample, runs of blank "
      "lines are reduced to one line break, so that samples are separated by exactly one blank line; "
      f"{cal['bytes']:,} bytes. Being the model's own output, it carries no third-party text.")
    w("")
    w("## Checks done at export")
    w("")
    w("- model.safetensors re-read by the script's own reader into a fresh model must give bit-identical logits.")
    w("- An independent float64 NumPy implementation of the Hugging Face Llama forward pass (explicit per-head "
      "loops, rotate_half RoPE, KV head h // 2) over the exported tensors is compared with the PyTorch model.")
    w("- Incremental decoding with the KV cache is compared with the full forward pass.")
    w("")
    w("From train.log:")
    w("")
    w("```")
    with open(os.path.join(T.HERE, "train.log"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("[export]"):
                w(line.rstrip("\n"))
    w("```")
    w("")
    with open(os.path.join(T.ASSETS, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(L_))
    T.log(f"[card] wrote {os.path.join(T.ASSETS, 'MODEL_CARD.md')}")

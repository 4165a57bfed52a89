"""Turns the JSON written by experiments/compressors/run.sh into the Markdown results table."""
import json, os, sys

out, seconds = sys.argv[1], sys.argv[2]
def load(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)

print("# Layer compressors on stories260K and the demo model\n")
print("Produced by `experiments/compressors/run.sh` (wall time %s s). Calibration: 64 windows of 256 tokens "
      "(stories260K: the first 600 KB of the TinyStories head; demo: its own samples, assets/demo/calib.txt). "
      "Held out: the rest of the TinyStories head (stories260K); the last 5%% of Moby Dick and Tiny Shakespeare "
      "(demo). Every unit at the same level (uniform).\n" % seconds)
for name in ("stories260K", "demo"):
    lv = load("levels-%s.json" % name)["levels"]
    err = {}
    for e in lv:
        key = (e["method"], e["sparsity"] if e["bits"] == 0 else e["bits"])
        err.setdefault(key, {})[e["unit"]] = e["recon_error"]
    units = sorted(err[("sparsegpt", 0.5)])
    print("## %s (%d units)\n" % (name, len(units)))
    print("Per-layer relative reconstruction error ||WX - ŴX||² / ||WX||² on the calibration inputs:\n")
    print("| level | mean SparseGPT | mean Wanda | mean magnitude | layers with SparseGPT < Wanda | layers with Wanda < magnitude | layers with SparseGPT < Wanda < magnitude |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in (0.5, 0.7):
        g, w, m = err[("sparsegpt", s)], err[("wanda", s)], err[("magnitude", s)]
        a = sum(g[u] < w[u] for u in units); b = sum(w[u] < m[u] for u in units)
        c = sum(g[u] < w[u] < m[u] for u in units)
        n = len(units)
        print("| %d%% | %.4f | %.4f | %.4f | %d / %d | %d / %d | %d / %d |" % (
            s * 100, sum(g.values()) / n, sum(w.values()) / n, sum(m.values()) / n, a, n, b, n, c, n))
    q, r = err[("gptq", 3)], err[("rtn", 3)]
    print("\n3 bits, group 64: GPTQ below RTN on %d / %d layers (mean %.4f against %.4f).\n" % (
        sum(q[u] < r[u] for u in units), len(units), sum(q.values()) / len(units), sum(r.values()) / len(units)))
    dense = load("eval-%s-dense.json" % name)
    print("Held-out perplexity (%d tokens) and mean per-token KL(dense || compressed):\n" % dense["tokens"])
    print("| configuration | perplexity | KL |")
    print("|---|---:|---:|")
    print("| dense | %.3f | 0 |" % dense["perplexity"])
    for s in ("0.5", "0.7"):
        for m in ("magnitude", "wanda", "sparsegpt"):
            e = load("eval-%s-%s-%s.json" % (name, m, s))
            print("| %s %d%% | %.3f | %.4f |" % (m, float(s) * 100, e["perplexity"], e["kl"]))
    for m in ("rtn", "gptq"):
        e = load("eval-%s-%s-3.json" % (name, m))
        print("| %s 3-bit g64 | %.3f | %.4f |" % (m, e["perplexity"], e["kl"]))
    print("\nCalibration protocol, SparseGPT and GPTQ (held-out perplexity / KL): every layer on the dense model's "
          "inputs (the database default, levels independent of each other) against block by block through the "
          "blocks before as compressed at the same level (sequential):\n")
    print("| level | dense protocol | sequential |")
    print("|---|---:|---:|")
    for lvl, m, tag in (("0.5", "sparsegpt", "SparseGPT 50%"), ("0.7", "sparsegpt", "SparseGPT 70%"), ("3", "gptq", "GPTQ 3-bit g64")):
        d, q = load("eval-%s-%s-%s.json" % (name, m, lvl)), load("eval-%s-seq-%s-%s.json" % (name, m, lvl))
        print("| %s | %.3f / %.4f | %.3f / %.4f |" % (tag, d["perplexity"], d["kl"], q["perplexity"], q["kl"]))
    info = {}
    for e in lv:
        k = e["method"] + (" %d%%" % round(e["sparsity"] * 100) if e["bits"] == 0 else " %d-bit g%d" % (e["bits"], e["group_size"]))
        d = info.setdefault(k, [0, 0])
        d[0] += e["bytes"]; d[1] += e["rows"] * e["cols"] * 4
    print("\nDatabase size on disk against the dense float32 weights of the same layers:\n")
    print("| level | bytes | dense bytes | ratio |")
    print("|---|---:|---:|---:|")
    for k in sorted(info):
        print("| %s | %d | %d | %.3f |" % (k, info[k][0], info[k][1], info[k][0] / info[k][1]))
    print()

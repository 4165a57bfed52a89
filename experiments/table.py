"""table.py TSV OUT RESULTS TABLE TITLE NOTE GENS -- turns the runs a table script listed (TSV rows:
model, target label, method, run directory) into RESULTS/TABLE.md and RESULTS/TABLE.csv, and copies the
manifest of every run to RESULTS/TABLE/manifests/MODEL/. Per target the lowest held-out KL is in bold. The
wall time is the sum of the runs' search and evaluation times (RUN.seconds, RUN.eval_seconds), which a
rerun that finds a search done does not change."""
import csv, json, os, shutil, sys

from runinfo import profile_seconds

tsv, out, results, table, title, note, gens = sys.argv[1:8]


def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def size_of(b):
    for k in ("sparsity", "bits_per_weight", "storage_bits_per_weight", "dropped"):
        if k in b:
            return b[k]
    return None


runs = [line.rstrip("\n").split("\t") for line in open(tsv) if line.strip()]
models = []
for r in runs:
    if r[0] not in models:
        models.append(r[0])


def seconds(run, ext):
    """RUN.seconds and the like; a search's (.seconds) includes the sensitivity profile its --prior read."""
    p = run + ext
    s = int(open(p).read().strip()) if os.path.exists(p) else None
    if s is not None and ext == ".seconds":
        s += round(profile_seconds(run))
    return s


search_s = sum(seconds(r[3], ".seconds") or 0 for r in runs)
eval_s = sum(seconds(r[3], ".eval_seconds") or 0 for r in runs)
md = ["# %s\n" % title, "Produced by `experiments/%s.sh` (wall time %d s: searches %d s, level databases included, and "
      "evaluations %d s; EvoPress generations: %s). %s\n" % (table, search_s + eval_s, search_s, eval_s, gens, note),
      "Columns: size is what the target fixes (average sparsity, average bits, storage bits per linear weight, or "
      "sub-blocks dropped); storage is the linear layers' bytes with 16-bit values, 1-bit masks for sparse layers "
      "and 16-bit scales and zero points per group; calib KL is KL(dense || compressed) per token on all the "
      "calibration windows the search used (`eval --calib-windows 64`), the same measure for every method; held-out "
      "KL and perplexity are on text the search never saw; Wiki2 ppl is WikiText-2 test perplexity; tokens are the "
      "tokens the search forwarded (the surrogate row: surrogate-assisted EvoPress, `--surrogate 16` with a "
      "sensitivity profile of 256 tokens a level as its prior and start, `--prior`, stopped by `--token-budget` at "
      "a third of plain EvoPress's tokens, the profile's included). The manifests "
      "of every run are in `%s/manifests/`.\n" % table]
rows = []
for name in models:
    dense, dwiki = load(os.path.join(out, name, "dense.eval.json")), load(os.path.join(out, name, "dense.wiki.json"))
    md.append("## %s (dense: held-out perplexity %s, Wiki2 perplexity %s)\n" % (
        name, "%.3f" % dense["perplexity"] if dense else "?", "%.2f" % dwiki["perplexity"] if dwiki else "?"))
    md.append("| target | method | size | storage KB | calib KL | held-out KL | held-out ppl | Wiki2 ppl | tokens | search s |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = []
    for r in runs:
        if r[0] == name and r[1] not in labels:
            labels.append(r[1])
    for label in labels:
        cells = []
        for _, lab, method, run in (r for r in runs if r[0] == name and r[1] == label):
            b, e, w = load(os.path.join(run, "best.json")), load(run + ".eval.json"), load(run + ".wiki.json")
            c, sj = load(run + ".calib.json"), load(run + ".search.json")
            tok = sj.get("tokens", "") if sj else ""
            if b and c:
                b["calib_kl"] = c["kl"]
            sec = seconds(run, ".seconds")
            sec = "" if sec is None else sec
            man = os.path.join(run, "manifest.json")
            if os.path.exists(man):
                d = os.path.join(results, table, "manifests", name)
                os.makedirs(d, exist_ok=True)
                shutil.copy(man, os.path.join(d, os.path.basename(run) + ".json"))
            cells.append((method, b, e, w, sec, tok))
        ok = [c for c in cells if c[1] and c[2] and "calib_kl" in c[1]]
        best = min(ok, key=lambda c: c[2]["kl"])[0] if ok else None
        for method, b, e, w, sec, tok in cells:
            if not (b and e and "calib_kl" in b):
                md.append("| %s | %s | (missing) | | | | | | | |" % (label, method))
                continue
            bold = "**" if method == best else ""
            st = b.get("storage_bytes")
            md.append("| %s | %s | %.4f | %s | %.4g | %s%.4g%s | %.3f | %s | %s | %s |" % (
                label, method, size_of(b), "%.1f" % (st / 1e3) if st else "", b["calib_kl"], bold, e["kl"], bold,
                e["perplexity"], "%.2f" % w["perplexity"] if w else "", "{:,}".format(tok) if tok != "" else "", sec))
            rows.append({"model": name, "target": label, "method": method, "size": size_of(b), "storage_bytes": st,
                         "calib_kl": b["calib_kl"], "heldout_kl": e["kl"], "heldout_ppl": e["perplexity"],
                         "wiki2_ppl": w["perplexity"] if w else "", "tokens": tok, "search_seconds": sec})
    md.append("")
with open(os.path.join(results, table + ".md"), "w") as f:
    f.write("\n".join(md))
with open(os.path.join(results, table + ".csv"), "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=["model", "target", "method", "size", "storage_bytes", "calib_kl", "heldout_kl",
                                       "heldout_ppl", "wiki2_ppl", "tokens", "search_seconds"])
    wr.writeheader()
    wr.writerows(rows)

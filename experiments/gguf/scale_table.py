"""scale_table.py OUT -- the table of experiments/gguf/scale.sh from the files it left in OUT."""
import json, os, sys
out = sys.argv[1]
def j(n):
    return json.load(open(os.path.join(out, n)))
def t(n):
    return j(n + '.time')
print('| step | wall s | peak RSS GiB | result |')
print('|---|---:|---:|---|')
def row(step, name, result):
    x = t(name)
    print(f"| {step} | {x['seconds']:.1f} | {x['max_rss_kb'] / 2**20:.2f} | {result} |")
db = j('db.json')
row('db build gguf-rtn ' + 'Q3_K,Q4_K,Q5_K,Q6_K', 'db', f"{db['built']} levels, {int(open(os.path.join(out, 'db.bytes')).read()) / 2**30:.2f} GiB")
ed = j('eval-dense.json')
row('eval, dense (bf16 path)', 'eval-dense', f"ppl {ed['perplexity']:.1f} on {ed['tokens']} tokens")
for tb in ('3.5', '4.5'):
    s, e, x, i, n = j(f'search-{tb}.json'), j(f'eval-{tb}.json'), j(f'export-{tb}.json'), j(f'info-{tb}.json'), j(f'nll-{tb}.json')
    row(f'search EvoPress at {tb} bits', f'search-{tb}', f"fitness {s.get('fitness', float('nan')):.5f}")
    row(f'export --format gguf ({tb})', f'export-{tb}', f"{x['file_bytes'] / 2**30:.3f} GiB, linear {x['linear_bits_per_weight']:.4f} bits (all linear layers held)")
    row(f'llama.cpp loads it ({tb})', f'info-{tb}', f"llama.cpp BPW {i['bpw']:.4f}, {i['n_params'] / 1e9:.3f}B parameters")
    d = 100 * (n['ppl'] - e['perplexity']) / e['perplexity']
    row(f'llama.cpp perplexity ({tb})', f'nll-{tb}', f"{n['ppl']:.2f} (evobudget eval {e['perplexity']:.2f}, {d:+.3f}%) on {n['tokens']} tokens")
    if os.path.exists(os.path.join(out, f'exportq6-{tb}.json')):
        x, i, n = j(f'exportq6-{tb}.json'), j(f'infoq6-{tb}.json'), j(f'nllq6-{tb}.json')
        row(f'export, embedding Q6_K ({tb})', f'exportq6-{tb}', f"{x['file_bytes'] / 2**30:.3f} GiB")
        row(f'llama.cpp, embedding Q6_K ({tb})', f'nllq6-{tb}', f"llama.cpp BPW {i['bpw']:.4f}, ppl {n['ppl']:.2f}")
xd = j('export-dense.json')
row('export --format gguf, dense BF16', 'export-dense', f"{xd['file_bytes'] / 2**30:.3f} GiB")
for q in ('Q3_K_M', 'Q4_K_M'):
    i, n = j(f'info-{q}.json'), j(f'nll-{q}.json')
    row(f"llama.cpp's quantizer to {q}", f'quantize-{q}', f"{j(f'quantize-{q}.json')['bytes'] / 2**30:.3f} GiB, BPW {i['bpw']:.4f}, ppl {n['ppl']:.2f}")

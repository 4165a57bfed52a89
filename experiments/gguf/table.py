#!/usr/bin/python3
"""table.py OUT -- the tables of experiments/gguf/run.sh from the files it wrote in OUT (markdown on stdout)."""
import json
import math
import os
import statistics
import sys

out = sys.argv[1]


def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None


def secs(name):
    p = os.path.join(out, name + '.seconds')
    return int(open(p).read()) if os.path.exists(p) else None


dense = load('dense.eval.json')
rows = []


def linear_bits(info):
    """Bits per weight of the linear layers the GGUF types can hold (every blk.* 2-D tensor whose rows are 256 wide
    here: all but ffn_down), as the file stores them."""
    b = n = 0
    for t in info['tensors']:
        if t['name'].startswith('blk.') and len(t['ne']) == 2 and not t['name'].endswith('ffn_down.weight'):
            b += 8 * t['bytes']
            n += t['ne'][0] * t['ne'][1]
    return b / n


def add(name, label, made_by):
    info, nll, kl = load(name + '.info.json'), load(name + '.nll.json'), load(name + '.kl.json')
    if not info or not nll:
        return
    base = name[:-3] if name.endswith('-e6') else name
    ev, se = load(base + '.eval.json'), load(base + '.search.json')
    if base != name:
        ev = None  # evobudget's eval holds the embedding dense: no match for a file with a Q6_K embedding
    rows.append(dict(label=label, by=made_by, lin=linear_bits(info), bpw=info['bpw'], mib=info['file_bytes'] / 2**20,
                     ppl_llama=nll['ppl'], kl_llama=kl['kl_mean'] if kl else None, ppl_ours=ev['perplexity'] if ev else None, kl=ev.get('kl') if ev else None,
                     secs=secs(base), evals=se.get('evaluations') if se else None))


add('dense', 'dense (F32)', 'evobudget export')
add('dense-f16', 'dense (F16)', 'evobudget export')
for q, lab in (('Q3_K', 'uniform Q3_K (--pure, embedding F16)'), ('Q4_K', 'uniform Q4_K (--pure, embedding F16)'),
               ('Q3_K_S', 'Q3_K_S (its own mix)'), ('Q3_K_M', 'Q3_K_M (its own mix)'), ('Q4_K_S', 'Q4_K_S (its own mix)'),
               ('Q4_K_M', 'Q4_K_M (its own mix)')):
    add('llama-' + q, lab, "llama.cpp's quantizer")
for m, lab in (('rtn', 'llama.cpp rounding (gguf-rtn)'), ('gptq', 'GPTQ into the grids (gguf)')):
    for q in ('Q3_K', 'Q4_K'):
        add(f'uniform-{m}-{q}', f'uniform {q}, {lab}', 'evobudget')
    for t in ('3.4375', '3.5', '4.5'):
        add(f'evopress-{m}-{t}', f'EvoPress at {t} bits, {lab}', 'evobudget')
for q in ('Q3_K_M', 'Q4_K_M'):
    add(f'evopress-gptq-at-{q}', f"EvoPress at {q}'s linear bits, GPTQ into the grids (gguf)", 'evobudget')
rows_e6 = []
for name in sorted(os.listdir(out)):
    if name.endswith('-e6.info.json'):
        n0 = name[:-len('.info.json')]
        before = len(rows)
        add(n0, n0[:-3] + ', embedding Q6_K', 'evobudget')
        rows_e6 += rows[before:]
        del rows[before:]


def f(x, fmt):
    return '' if x is None else fmt.format(x)


print('# GGUF files judged by llama.cpp (demo model)\n')
print('`experiments/gguf/run.sh`: every file below loaded by llama.cpp (node-llama-cpp 3.21.1\'s prebuilt CPU build, '
      '`tests/tools/llama_judge`), which scores the held-out windows (the last tenth of `assets/demo/calib.txt`, '
      f'{dense["tokens"]} tokens in {dense["windows"]} windows of {dense["seq_len"]}) that `evobudget eval` scores for the same '
      'configuration. "linear bits" is the stored bits per weight of the linear layers the GGUF types can hold (all but the '
      '688-wide ffn_down, which stays F16 in every file, as llama.cpp leaves it); "file BPW" is what llama.cpp reports '
      '(every tensor: the F16 embedding and ffn_down, the F32 norms). Float32 path throughout. '
      f'Total wall time {secs("total")} s.\n')
def table(rows):
    print('| configuration | made by | linear bits | file BPW (llama.cpp) | file MiB | llama.cpp held-out KL | llama.cpp held-out ppl | '
          'evobudget held-out ppl | ppl difference | evobudget held-out KL | search s |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        d = None if r['ppl_ours'] is None else 100 * (r['ppl_llama'] - r['ppl_ours']) / r['ppl_ours']
        print(f"| {r['label']} | {r['by']} | {r['lin']:.4f} | {r['bpw']:.4f} | {r['mib']:.3f} | {f(r['kl_llama'], '{:.5f}')} | "
              f"{r['ppl_llama']:.4f} | {f(r['ppl_ours'], '{:.4f}')} | {f(d, '{:+.3f}%')} | {f(r['kl'], '{:.5f}')} | {f(r['secs'], '{}')} |")


table(rows)
print('\nThe same configurations with the token embedding in Q6_K (`export --embd-type Q6_K`), as llama.cpp\'s own '
      'Q3_K_S/M and Q4_K_S/M have it: the sizes of those files.\n')
table(rows_e6)

lv = load('db-levels.json')
if lv:
    by = {}
    for e in lv['levels']:
        if 'type' in e:
            by.setdefault((e['unit'], e['type']), {})[e['method']] = e['recon_error']
    types = sorted({t for (_, t) in by}, key=lambda t: ['Q2_K', 'Q3_K', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K',
                                                         'Q6_K', 'Q8_0'].index(t))
    print('\n## GPTQ into each type\'s grid against llama.cpp\'s rounding, every layer\n')
    print('Relative reconstruction error ||W X^T - W_hat X^T||^2 / ||W X^T||^2 on the calibration inputs, per layer '
          f'(the {len({u for (u, _) in by})} layers the types hold). Database build: gguf-rtn {secs("db-gguf-rtn")} s, '
          f'gguf {secs("db-gguf")} s.\n')
    print('| type | layers | GPTQ below RTN | median RTN | median GPTQ | median GPTQ / RTN | worst GPTQ / RTN |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for t in types:
        pairs = [v for (u, tt), v in by.items() if tt == t and 'gguf' in v and 'gguf-rtn' in v]
        rat = [p['gguf'] / p['gguf-rtn'] for p in pairs]
        below = sum(p['gguf'] < p['gguf-rtn'] for p in pairs)
        print(f"| {t} | {len(pairs)} | {below} | {statistics.median(p['gguf-rtn'] for p in pairs):.3e} | "
              f"{statistics.median(p['gguf'] for p in pairs):.3e} | {statistics.median(rat):.3f} | {max(rat):.3f} |")

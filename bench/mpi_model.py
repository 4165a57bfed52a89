"""mpi_model.py [TOKENS_PER_CORE_S [EFFICIENCY]] -- seconds per EvoPress generation of evobudget-mpi on N
nodes of 16 cores (one rank per node), on paper.

The model follows evaluators/mpi.c: a stage with at least as many candidates as threads in all gives each
thread whole candidates (one core per forward); a smaller one gives each node one candidate at a time, its
forward on all 16 cores at EFFICIENCY (default 0.8), and with fewer candidates than nodes each candidate's
nodes split its windows (whole chunks of --batch windows). A thread scores tokens at the per-core rate measured on the demo
model (default: 4,212 tokens/s per core, bench/README.md), scaled by forward FLOPs per token to the model.
Messages: rank 0 sends each rank a 64-byte header and the batch's level vectors (2 bytes per unit per
candidate) and receives 8 bytes per candidate or per thread; at 10 GB/s and 5 us latency they are noise.
"""
import math, sys

rate_demo = float(sys.argv[1]) if len(sys.argv) > 1 else 4212.0  # tokens/s per core, demo model
eff = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8           # a forward on all 16 cores of a node: 16 x eff cores
flops_demo = 2 * 5.4e6                                           # forward FLOPs per token, demo model
models = [("Llama-2-7B", 2 * 6.7e9, 32 * 7, 4096)]               # name, FLOPs/token, units, window length
stages = [(64, 2048), (8, 16384), (2, 65536)]                    # EvoPress sparsity defaults: candidates, tokens
cores = 16


def stage_seconds(n_cand, tokens, nodes, batch, rate, seq, eff):
    threads = nodes * cores
    windows = max(1, math.ceil(tokens / seq))
    chunks = math.ceil(windows / batch)
    chunk_tokens = tokens / chunks
    node_rate = rate * cores * eff       # one forward using every core of a node
    if n_cand >= threads:                # whole candidates per thread, one core each
        return math.ceil(n_cand / threads) * tokens / rate
    if n_cand > nodes:                   # whole candidates one at a time per node
        return math.ceil(n_cand / nodes) * tokens / node_rate
    parts = min(nodes // n_cand, chunks) # each candidate's nodes score whole chunks of it
    return math.ceil(chunks / parts) * chunk_tokens / node_rate


def comm_seconds(nodes, units, n_cand):
    bytes_out = (nodes - 1) * (64 + 2 * units * n_cand)
    return bytes_out / 10e9 + 2 * (nodes - 1) * 5e-6


print("| model | nodes x 16 cores | --batch | s / generation | speed-up over 1 node | messages per generation |")
print("|---|---:|---:|---:|---:|---:|")
for name, flops, units, seq in models:
    rate = rate_demo * flops_demo / flops
    for batch in (8, 1):
        base = None
        for nodes in (1, 8, 64):
            t = sum(stage_seconds(n, tok, nodes, batch, rate, seq, eff) for n, tok in stages)
            c = sum(comm_seconds(nodes, units, n) for n, _ in stages)
            base = base or t + c
            print("| %s | %d | %d | %.0f | %.1fx | %.2f ms |" % (name, nodes, batch, t + c, base / (t + c), c * 1e3))

#!/usr/bin/python3
"""sparsegpt_torch.py -- time of the PyTorch transcription of SparseGPT's fasterprune
(tests/tools/sparsegpt_ref.py) on the shapes of bench_compress_prune.c: 50% unstructured, percdamp 0.01,
blocksize 128, H from 4096 random tokens, one thread, median of REPS runs, in float32 (the published code's
precision) and float64 (the precision of compressors/prune.c).

Usage: /usr/bin/python3 bench/sparsegpt_torch.py [REPS]"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
from sparsegpt_ref import fasterprune  # noqa: E402

torch.set_num_threads(1)
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
torch.manual_seed(0)
print("%-12s %14s %14s" % ("shape", "fp32 median ms", "fp64 median ms"))
for rows, cols in [(768, 768), (768, 3072), (3072, 768)]:
    W = torch.rand(rows, cols) * 2 - 1
    X = torch.rand(4096, cols) * 2 - 1
    H = 2.0 / 4096 * (X.t() @ X)
    res = []
    for dtype in (torch.float32, torch.float64):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fasterprune(W, H.to(dtype), 0.5, blocksize=128, percdamp=0.01, dtype=dtype)
            ts.append(1e3 * (time.perf_counter() - t0))
        res.append(sorted(ts)[reps // 2])
    print("%-12s %14.1f %14.1f" % ("%dx%d" % (rows, cols), res[0], res[1]), flush=True)

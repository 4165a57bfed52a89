#!/usr/bin/python3
"""gptq_torch.py -- time of the PyTorch transcription of GPTQ fasterquant (tests/tools/gptq_ref.py) on the
shapes of bench_compress_quant.c: rows x cols 768 x 768, 768 x 3072, 3072 x 768; H = X^T X of 4096 random
tokens; 3 bits asymmetric, group 128 and per channel; one thread; median of REPS runs.

    OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/gptq_torch.py [REPS]
Prints one line per case: rows cols bits group median_ms min_ms."""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
from gptq_ref import fasterquant  # noqa: E402


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print(f"# rows cols bits group median_ms min_ms ({reps} runs, torch {torch.__version__})")
    for rows, cols in [(768, 768), (768, 3072), (3072, 768)]:
        W = torch.randn(rows, cols, generator=g)
        X = torch.randn(4096, cols, generator=g) * (0.1 + 2.9 * torch.rand(cols, generator=g))
        H = X.t() @ X
        for group in (128, 0):
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fasterquant(W, H, 3, group, 0, 0)
                t.append((time.perf_counter() - t0) * 1e3)
            t.sort()
            print(f"{rows} {cols} 3 {group} {t[len(t) // 2]:.1f} {t[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()

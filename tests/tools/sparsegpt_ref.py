#!/usr/bin/python3
"""sparsegpt_ref.py -- PyTorch transcription of SparseGPT's fasterprune and Wanda's score
(shared/reference/baselines.md §3.1, §3.3), the independent check of compressors/prune.c.

Run with Debian's torch:  OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 /usr/bin/python3 \
    tests/tools/sparsegpt_ref.py tests/fixtures/prune_ref.bin
It regenerates the fixed problem below and writes the fixture that tests/test_prune.c reads (the test does
not need Python).

Problem (the C test regenerates it bit for bit): splitmix64 streams, u = (z >> 40) * 2^-23 - 1 in [-1, 1)
(exact in float32).  W [48, 64] row-major from seed 1.  Z [512, 64] row-major from seed 2,
X[t][j] = Z[t][j] * (0.25 + 0.25 * (j % 7)) + 0.5 * Z[t][(j + 1) % 64], rounded to float32, and column 5
set to 0 (a dead input). Every product and sum is exact in double, so the rounding is the same in C.

Ties: the mask takes the k lowest scores of a stable ascending sort (lower row-major index first), k =
int(s * n) (baselines.md; the published SparseGPT's `tmp <= sort(tmp)[k]` would take k + 1).
SparseGPT runs in float64 here with H = 2/n X^T X, n = tokens (the published code: float32, n = sequences).

Fixture layout (little-endian):
  0   char[8]  "EVBPRUN1"
  8   uint32   rows, cols, n_tokens, blocksize, seed_w, seed_x
  32  float64  sum of W, sum of X (checks that the generators agree)
  48  float32  [rows*cols] x 4: SparseGPT 50% unstructured, SparseGPT 2:4, Wanda 50%, Wanda 2:4
  (blocksize 32, dampening 0.01)
"""
import struct
import sys

import torch

M64 = (1 << 64) - 1


def uniform_stream(seed, n):
    state, out = seed, []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out.append((z >> 40) * 2.0 ** -23 - 1.0)
    return out


def problem(rows=48, cols=64, n_tokens=512, seed_w=1, seed_x=2):
    W = torch.tensor(uniform_stream(seed_w, rows * cols), dtype=torch.float64).reshape(rows, cols).float()
    Z = torch.tensor(uniform_stream(seed_x, n_tokens * cols), dtype=torch.float64).reshape(n_tokens, cols)
    scale = torch.tensor([0.25 + 0.25 * (j % 7) for j in range(cols)], dtype=torch.float64)
    X = (Z * scale + 0.5 * torch.roll(Z, -1, dims=1)).float()
    X[:, 5] = 0
    return W, X


def fasterprune(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01, dtype=torch.float64):
    """sparsegpt.py::fasterprune; prunen = weights removed per group of prunem."""
    W = W.clone().to(dtype)
    H = H.clone().to(dtype)
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            k = int(tmp.numel() * sparsity)
            order = torch.sort(tmp.flatten(), stable=True)[1]
            mask1 = torch.zeros(tmp.numel(), dtype=torch.bool)
            mask1[order[:k]] = True
            mask1 = mask1.reshape(tmp.shape)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.sort(tmp, dim=1, stable=True)[1][:, :prunen], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


def wanda(W, X, sparsity, prunen=0, prunem=0):
    """lib/prune.py::prune_wanda: S = |W| * sqrt(scaler_row), scaler_row = mean over tokens of X_j^2."""
    scaler_row = (X.double() ** 2).sum(0) / X.shape[0]
    S = W.double().abs() * torch.sqrt(scaler_row).reshape((1, -1))
    mask = torch.zeros_like(S, dtype=torch.bool)
    if prunen != 0:
        for ii in range(S.shape[1]):
            if ii % prunem == 0:
                tmp = S[:, ii:(ii + prunem)]
                mask.scatter_(1, ii + torch.sort(tmp, dim=1, stable=True)[1][:, :prunen], True)
    else:
        order = torch.sort(S, dim=-1, stable=True)[1]
        mask.scatter_(1, order[:, :int(S.shape[1] * sparsity)], True)
    out = W.clone()
    out[mask] = 0
    return out


def main(path):
    rows, cols, n_tokens, blocksize, seed_w, seed_x = 48, 64, 512, 32, 1, 2
    W, X = problem(rows, cols, n_tokens, seed_w, seed_x)
    H = 2.0 / n_tokens * (X.double().t() @ X.double())
    outs = [fasterprune(W, H, 0.5, blocksize=blocksize),
            fasterprune(W, H, 0, prunen=2, prunem=4, blocksize=blocksize),
            wanda(W, X, 0.5), wanda(W, X, 0, prunen=2, prunem=4)]
    with open(path, "wb") as f:
        f.write(b"EVBPRUN1")
        f.write(struct.pack("<6I", rows, cols, n_tokens, blocksize, seed_w, seed_x))
        f.write(struct.pack("<2d", W.double().sum().item(), X.double().sum().item()))
        for o in outs:
            f.write(o.float().contiguous().numpy().astype("<f4").tobytes())
    for name, o in zip(["sgpt50", "sgpt24", "wanda50", "wanda24"], outs):
        print(name, "zeros", int((o == 0).sum()), "of", o.numel())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/prune_ref.bin")

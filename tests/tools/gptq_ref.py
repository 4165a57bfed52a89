#!/usr/bin/python3
"""gptq_ref.py -- reference outputs of GPTQ and RTN for tests/test_quant.c, from a PyTorch transcription of
IST-DASLab/gptq quant.py::Quantizer and gptq.py::fasterquant (shared/reference/baselines.md §3.4-3.5),
float32 throughout as there.

Run with Debian's interpreter (python3-torch):
    OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/tools/gptq_ref.py \
        tests/fixtures/gptq_ref.bin

Problem: W [48, 128] ~ N(0, 1); X [512, 128] ~ N(0, 1) with per-column scales in [0.1, 3] and column 5 all
zero (a dead input); seed 1234. H = X^T X is formed in float64 and rounded to float32; both this script
and the C test use that float32 H.

File layout (little-endian; int32 = i32, float32 = f32):
    magic    8 bytes "EVBGPTQ1"
    i32      rows, cols, n_cases, 0
    f32      W [rows, cols]
    f32      H lower triangle, row by row (row i holds H[i, 0..i])
    per case:
      i32    bits, group_size (0 = per channel), sym, act_order, blocksize, n_groups
      f32    damp
      u8     gptq codes [rows, cols]     (original column order)
      f32    gptq scale [rows, n_groups], gptq zero [rows, n_groups]
      i32    gptq group_of [cols]
      u8     rtn codes [rows, cols]
      f32    rtn scale [rows, n_groups], rtn zero [rows, n_groups]
Dequantized weights are scale * (code - zero), with the scale and zero of (row, group_of[col]).
"""
import struct
import sys

import torch

CASES = [  # bits, group_size, sym, act_order
    (3, 64, 0, 0),
    (4, 0, 1, 0),
    (3, 32, 0, 1),
]
DAMP, BLOCKSIZE = 0.01, 128


def find_params(x, bits, sym):
    """Quantizer.find_params, perchannel=True, over the rows of x."""
    maxq = torch.tensor(2 ** bits - 1)
    tmp = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], tmp)
    xmax = torch.maximum(x.max(1)[0], tmp)
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        tmp = xmin < 0
        if torch.any(tmp):
            xmin[tmp] = -xmax[tmp]
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp] = -1
    xmax[tmp] = +1
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1), maxq


def quant_codes(x, scale, zero, maxq):
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq)


def fasterquant(W, H, bits, groupsize, sym, actorder, blocksize=BLOCKSIZE, percdamp=DAMP):
    """gptq.py::fasterquant (static_groups off); returns codes, scales, zeros per group, g_idx."""
    W = W.clone().float()
    H = H.clone()
    rows, columns = W.shape
    scale, zero, maxq = find_params(W, bits, sym)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    Q = torch.zeros_like(W)
    codes = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    scales, zeros = [], []
    if groupsize == 0:
        scales, zeros = [scale], [zero]
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != 0 and (i1 + i) % groupsize == 0:
                scale, zero, maxq = find_params(W[:, (i1 + i):(i1 + i + groupsize)], bits, sym)
                scales.append(scale)
                zeros.append(zero)
            c = quant_codes(w.unsqueeze(1), scale, zero, maxq)
            q = (scale * (c - zero)).flatten()
            codes[:, i1 + i] = c.flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    g_idx = torch.tensor([(i // groupsize) if groupsize else 0 for i in range(columns)], dtype=torch.int32)
    if actorder:
        Q = Q[:, invperm]
        codes = codes[:, invperm]
        g_idx = g_idx[invperm]
    return codes, torch.cat(scales, 1), torch.cat(zeros, 1), g_idx, Q


def rtn(W, bits, groupsize, sym):
    """llama.py --nearest: the Quantizer on W directly, per row or per group of columns."""
    cols = W.shape[1]
    g = groupsize if groupsize else cols
    codes, scales, zeros = [], [], []
    for c0 in range(0, cols, g):
        scale, zero, maxq = find_params(W[:, c0:c0 + g], bits, sym)
        codes.append(quant_codes(W[:, c0:c0 + g], scale, zero, maxq))
        scales.append(scale)
        zeros.append(zero)
    return torch.cat(codes, 1), torch.cat(scales, 1), torch.cat(zeros, 1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gptq_ref.bin"
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1234)
    rows, cols, ntok = 48, 128, 512
    W = torch.randn(rows, cols, generator=g)
    X = torch.randn(ntok, cols, generator=g) * (0.1 + 2.9 * torch.rand(cols, generator=g))
    X[:, 5] = 0
    H = (X.double().t() @ X.double()).float()
    blob = bytearray(b"EVBGPTQ1")
    blob += struct.pack("<4i", rows, cols, len(CASES), 0)
    blob += W.numpy().astype("<f4").tobytes()
    for i in range(cols):
        blob += H[i, :i + 1].numpy().astype("<f4").tobytes()
    for bits, gs, sym, act in CASES:
        codes, sc, ze, gidx, Q = fasterquant(W, H, bits, gs, sym, act)
        ng = sc.shape[1]
        blob += struct.pack("<6i", bits, gs, sym, act, BLOCKSIZE, ng)
        blob += struct.pack("<f", DAMP)
        blob += codes.to(torch.uint8).numpy().tobytes()
        blob += sc.numpy().astype("<f4").tobytes() + ze.numpy().astype("<f4").tobytes()
        blob += gidx.numpy().astype("<i4").tobytes()
        # the dequantized result must be scale * (code - zero) of the group each column belongs to
        rec = torch.gather(sc, 1, gidx.long().expand(rows, cols)) * (codes - torch.gather(ze, 1, gidx.long().expand(rows, cols)))
        assert torch.equal(rec, Q)
        rc, rs, rz = rtn(W, bits, gs, sym)
        blob += rc.to(torch.uint8).numpy().tobytes()
        blob += rs.numpy().astype("<f4").tobytes() + rz.numpy().astype("<f4").tobytes()
        err = lambda Wh: float(torch.trace((W - Wh) @ H @ (W - Wh).t()) / torch.trace(W @ H @ W.t()))
        ridx = torch.tensor([(i // gs) if gs else 0 for i in range(cols)]).expand(rows, cols)
        rq = torch.gather(rs, 1, ridx) * (rc - torch.gather(rz, 1, ridx))
        print(f"bits {bits} group {gs} sym {sym} act_order {act}: groups {ng}, "
              f"recon error gptq {err(Q):.5f} rtn {err(rq):.5f}")
    with open(out, "wb") as f:
        f.write(blob)
    print(f"wrote {out}: {len(blob)} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A protocol-2 worker for tests/test_worker_seq.c (docs/worker-protocol.md), Python 3 with python3-msgpack.

    seq_worker.py MODE [STATE_FILE]

It registers SEQS (below) and the top 2, except in the modes that break the registration on purpose:
  long        sequence 3 has 513 tokens (the test's model has a context of 512)
  vocab       sequence 2 holds token 4096 (the test's model has 4096)
  negative    sequence 2 holds token -1
  score_from  sequence 3 has score_from 0
  text_long   sequence 1 is text of more than 512 tokens
  text_empty  sequence 1 is text whose continuation is empty
  protocol1   a protocol-1 ready, without sequences
  changing    the first start registers SEQS, every later one (counted in STATE_FILE) sequence 1 changed
  big         2000 sequences of 200 tokens >= 256 (a ready of about 1.2 MB, beyond a result's limit)
  sum         SEQS; answers each request with check(), below
  flaky       as sum, but the first process (STATE_FILE absent) exits at its first request

check(): sum over the request's sequences in order of (id * 1000 + its log-probabilities + its top-k ids
+ its top-k log-probabilities, each in order), each value added to a Python float starting at 0.0, after the
lengths are checked (a wrong length answers -1e300), so that the C side can compute the same bits."""
import os
import sys

import msgpack

SEQS = [
    {"tokens": [1, 5, 9, 300], "score_from": 1},
    {"tokens": [1, 7, 7, 8, 4000], "score_from": 3, "group": 0},
    {"tokens": [1, 2, 3], "score_from": 2, "group": 5},
    {"tokens": [1, 10, 11, 12, 13, 14], "score_from": 2, "group": 5},
]


def registration(mode, state):
    seqs = [dict(s) for s in SEQS]
    if mode == "long":
        seqs[3] = {"tokens": [1] + [20] * 512, "score_from": 1}
    elif mode == "vocab":
        seqs[2] = {"tokens": [1, 4096, 3], "score_from": 1}
    elif mode == "negative":
        seqs[2] = {"tokens": [1, -1, 3], "score_from": 1}
    elif mode == "score_from":
        seqs[3] = {"tokens": [1, 10, 11], "score_from": 0}
    elif mode == "text_long":
        seqs[1] = {"context": "Once upon a time, " * 200, "continuation": " the end."}
    elif mode == "text_empty":
        seqs[1] = {"context": "Once upon a time", "continuation": ""}
    elif mode == "changing":
        n = int(open(state).read()) if os.path.exists(state) else 0
        with open(state, "w") as f:
            f.write(str(n + 1))
        if n > 0:
            seqs[1] = {"tokens": [1, 7, 7, 8, 4001], "score_from": 3, "group": 0}
    elif mode == "big":
        seqs = [{"tokens": [256 + (i + j) % 3000 for j in range(200)], "score_from": 1} for i in range(2000)]
    return seqs


def check(msg):
    K = 2
    f = 0.0
    for k, sid in enumerate(msg["sequences"]):
        s = SEQS[sid]
        n = len(s["tokens"]) - s["score_from"]
        lp, ti, tl = msg["logprobs"][k], msg["topk_ids"][k], msg["topk_logprobs"][k]
        if len(lp) != n or len(ti) != n * K or len(tl) != n * K:
            return -1e300
        f += sid * 1000
        for x in lp:
            f += x
        for x in ti:
            f += x
        for x in tl:
            f += x
    return f


def main():
    mode = sys.argv[1]
    state = sys.argv[2] if len(sys.argv) > 2 else None
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = inp.read1(65536)
        if not data:
            return
        unpacker.feed(data)
        for msg in unpacker:
            t = msg.get("type")
            if t == "hello":
                if mode == "protocol1":
                    ready = {"type": "ready", "protocol": 1, "name": "p1"}
                else:
                    ready = {"type": "ready", "protocol": 2, "name": "seq", "sequences": registration(mode, state), "topk": 2}
                out.write(msgpack.packb(ready))
            elif t == "evaluate":
                if mode == "flaky" and not os.path.exists(state):
                    open(state, "w").close()
                    return
                out.write(msgpack.packb({"type": "result", "id": msg["id"], "fitness": check(msg)}))
            elif t == "bye":
                return
            out.flush()


if __name__ == "__main__":
    main()

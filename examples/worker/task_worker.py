#!/usr/bin/env python3
"""An evobudget worker with the model in the loop (protocol 2, docs/worker-protocol.md), Python 3 with Debian's
python3-msgpack: a multiple-choice task as the fitness.

    evobudget search --model assets/demo --target-sparsity 0.6 \\
        --fitness-cmd "/usr/bin/python3 examples/worker/task_worker.py items.jsonl"

At the hello it registers every item's choices as text (context, continuation = the choice, group = the item),
in file order. For each candidate evobudget sends the compressed model's log-probabilities of the scored tokens
(the choice's tokens after the context's) of the batch's sequences; the worker answers the mean cross-entropy
of the gold choice under the softmax of the choices' length-normalised log-likelihoods, with the operations in
the order of the built-in `--fitness task:FILE` (include/evobudget/evb_task.h), so that both give the same
search. Replace score() with your own task."""
import json
import math
import sys

import msgpack


def load(path):
    """Items (context, choices, gold) and, per registered sequence, its item."""
    items, seqs, item_of = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            it = json.loads(line)
            first = len(seqs)
            for c in it["choices"]:
                item_of.append(len(items))
                seqs.append({"context": it["context"], "continuation": c, "group": len(items)})
            items.append((first, len(it["choices"]), it["gold"]))
    return items, seqs, item_of


def score(items, item_of, ids, logprobs):
    """The mean cross-entropy of the batch's items (every choice of an item is in the batch, ids ascending)."""
    lp = dict(zip(ids, logprobs))
    total, n = 0.0, 0
    for k, sid in enumerate(ids):
        first, nc, gold = items[item_of[sid]]
        if sid != first:
            continue
        sc = []
        for c in range(nc):
            s = 0.0
            for x in lp[first + c]:
                s += x
            sc.append(s / len(lp[first + c]))
        m = max(sc)
        z = 0.0
        for c in range(nc):
            z += math.exp(sc[c] - m)
        total += (m + math.log(z)) - sc[gold]
        n += 1
    return total / n


def main():
    items, seqs, item_of = load(sys.argv[1])
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = inp.read1(65536) if hasattr(inp, "read1") else inp.read(65536)
        if not data:
            return
        unpacker.feed(data)
        for msg in unpacker:
            t = msg.get("type")
            if t == "hello":
                out.write(msgpack.packb({"type": "ready", "protocol": 2, "name": "task-python", "sequences": seqs}))
            elif t == "evaluate":
                f = score(items, item_of, msg["sequences"], msg["logprobs"])
                out.write(msgpack.packb({"type": "result", "id": msg["id"], "fitness": f}))
            elif t == "bye":
                return
            out.flush()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A complete evobudget worker in Python (docs/worker-protocol.md), with Debian's python3-msgpack.

evobudget starts it with `/bin/sh -c COMMAND` and talks msgpack over stdin/stdout:

    evobudget search --problem problem.json --fitness-cmd "/usr/bin/python3 examples/worker/additive_worker.py" --workers 2

It scores a candidate by the sum over units of their level's "fitness" value in the problem file (the
built-in fitness of problem files), so its search equals the built-in one. Put your own model's score in
score(): the request gives the level of every unit, the tokens to spend and the seed of the stage's batch
(every candidate of one selection stage gets the same seed, so score them on the same data).
"""
import json
import os
import sys

import msgpack


def main():
    out = sys.stdout.buffer
    values = None
    for msg in messages():
        kind = msg.get("type")
        if kind == "hello":
            with open(msg["problem"]) as f:
                problem = json.load(f)
            values = [[level["fitness"] for level in unit["levels"]] for unit in problem["units"]]
            out.write(msgpack.packb({"type": "ready", "protocol": 1, "name": "additive-python"}))
        elif kind == "evaluate":
            fitness = score(values, msg["levels"], msg["tokens"], msg["seed"])
            out.write(msgpack.packb({"type": "result", "id": msg["id"], "fitness": fitness}))
        elif kind == "bye":
            break
        out.flush()


def messages():
    """The requests as they arrive: os.read returns what the pipe holds (a buffered reader would wait
    for its buffer to fill)."""
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        unpacker.feed(data)
        yield from unpacker


def score(values, levels, tokens, seed):
    return float(sum(values[u][l] for u, l in enumerate(levels)))


if __name__ == "__main__":
    main()

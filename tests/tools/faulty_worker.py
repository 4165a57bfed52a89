#!/usr/bin/python3
"""A worker that misbehaves on purpose, for tests/test_worker_cli.c.

usage: faulty_worker.py MODE AFTER STATE
  Behaves like examples/worker/additive_worker.py until AFTER requests have been answered in all (counted
  across restarts in the file STATE), then, by MODE:
    exit_once   exits (status 3) once; the restarted worker behaves
    hang_once   sleeps forever once; the restarted worker behaves
    garbage     prints bytes that are not a result map, from then on
    nan         answers NaN, from then on
    wrong_id    answers with another request's id, from then on
"""
import json
import os
import sys
import time

import msgpack

mode, after, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def bump():
    n = int(open(state).read()) if os.path.exists(state) else 0
    with open(state, "w") as f:
        f.write(str(n + 1))
    return n


def main():
    out = sys.stdout.buffer
    unpacker = msgpack.Unpacker(raw=False)
    values = None
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        unpacker.feed(data)
        for msg in unpacker:
            if msg["type"] == "hello":
                problem = json.load(open(msg["problem"]))
                values = [[lv["fitness"] for lv in u["levels"]] for u in problem["units"]]
                out.write(msgpack.packb({"type": "ready", "protocol": 1}))
            elif msg["type"] == "evaluate":
                n = bump()
                fitness = float(sum(values[u][l] for u, l in enumerate(msg["levels"])))
                ident = msg["id"]
                if n == after and mode == "exit_once":
                    sys.exit(3)
                if n == after and mode == "hang_once":
                    time.sleep(1000)
                if n >= after and mode == "garbage":
                    out.write(b"this is not msgpack\n")
                    out.flush()
                    continue
                if n >= after and mode == "nan":
                    fitness = float("nan")
                if n >= after and mode == "wrong_id":
                    ident += 7
                out.write(msgpack.packb({"type": "result", "id": ident, "fitness": fitness}))
            elif msg["type"] == "bye":
                return
            out.flush()


main()

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
    huge_string answers a result map with a 1 GiB string in it (written in pieces), from then on
    huge_array  sends the header of an array of 2^32-1 elements, from then on
    deep        sends 100 arrays nested in one another, from then on
    fork_hang   forks a child that sleeps (holding the pipes), then sleeps itself, once
    fork_daemon at the hello, forks a child that sleeps for good (holding the pipes); behaves otherwise
    no_read     answers, then shrinks its stdin pipe to 4 KiB and stops reading it (sleeps), once
"""
import fcntl
import json
import os
import struct
import sys
import time

import msgpack

mode, after, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]


counted = None  # this process's count once the trigger is past (the file is then left alone)


def bump():
    """The number of requests answered before this one, by all workers (the file is locked, so that the
    workers of one run may share it); once past AFTER, counted here only."""
    global counted
    if counted is not None and counted > after:
        counted += 1
        return counted
    fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    text = os.read(fd, 64)
    n = int(text) if text else 0
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, str(n + 1).encode())
    os.close(fd)
    counted = n
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
                if mode == "fork_daemon" and os.fork() == 0:
                    time.sleep(1000)
                    os._exit(0)
                out.write(msgpack.packb({"type": "ready", "protocol": 1}))
            elif msg["type"] == "evaluate":
                n = bump()
                fitness = float(sum(values[u][l] for u, l in enumerate(msg["levels"])))
                ident = msg["id"]
                if n == after and mode == "exit_once":
                    sys.exit(3)
                if n == after and mode == "hang_once":
                    time.sleep(1000)
                if n == after and mode == "fork_hang":
                    if os.fork() == 0:
                        time.sleep(1000)
                        os._exit(0)
                    time.sleep(1000)
                if n >= after and mode == "huge_string":
                    head = msgpack.packb({"type": "result", "id": ident, "fitness": fitness})
                    out.write(bytes([head[0] + 1]) + head[1:] + msgpack.packb("note") + b"\xdb" + struct.pack(">I", 1 << 30))
                    piece = b"x" * (1 << 20)
                    for _ in range(1 << 10):
                        out.write(piece)
                    out.flush()
                    continue
                if n >= after and mode == "huge_array":
                    out.write(b"\xdd\xff\xff\xff\xff")
                    out.flush()
                    continue
                if n >= after and mode == "deep":
                    out.write(b"\x91" * 100 + b"\x01")
                    out.flush()
                    continue
                if n >= after and mode == "garbage":
                    out.write(b"this is not msgpack\n")
                    out.flush()
                    continue
                if n >= after and mode == "nan":
                    fitness = float("nan")
                if n >= after and mode == "wrong_id":
                    ident += 7
                if n == after and mode == "no_read":
                    # evobudget waits for this answer, so the pipe is empty: shrunk to one page, a request of a
                    # few thousand units overfills it, and nothing reads it after the answer
                    fcntl.fcntl(0, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
                    out.write(msgpack.packb({"type": "result", "id": ident, "fitness": fitness}))
                    out.flush()
                    time.sleep(1000)
                out.write(msgpack.packb({"type": "result", "id": ident, "fitness": fitness}))
            elif msg["type"] == "bye":
                return
            out.flush()


main()

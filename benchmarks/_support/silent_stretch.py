"""The longest silent stretch of a command: run it, timestamp every piece of output it writes to
stdout or stderr (a line, or a progress bar refresh ended by ``\\r``), and report the longest gap
between two of them (the start and the exit count as events).

    python benchmarks/_support/silent_stretch.py [--limit 10] [--json FILE] -- modeldiff diff A.h5 B.h5 --out D

Prints the gap, the output just before and just after it, and exits 1 when the gap exceeds
``--limit`` seconds (the goal: "no silent stretch over ~10 s in any command"). The command runs
with ``PYTHONUNBUFFERED=1`` so Python's own buffering does not hide output.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time


def watch(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; returns ``{"exit", "seconds", "events": [(t, text)], "gap", "before", "after"}``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    events, pending = [(0.0, "<start>")], b""
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        now = time.perf_counter() - start
        if not chunk:
            break
        pending += chunk
        *pieces, pending = re.split(rb"[\r\n]", pending)
        events += [(now, p.decode(errors="replace")) for p in pieces if p.strip()]
        if pending.strip():  # a partial piece still shows something on a terminal
            events.append((now, pending.decode(errors="replace")))
            pending = b""
    code = proc.wait()
    end = time.perf_counter() - start
    events.append((end, "<exit>"))
    gaps = [(events[i + 1][0] - events[i][0], i) for i in range(len(events) - 1)]
    gap, i = max(gaps)
    longest = [{"gap": round(g, 2), "at": round(events[j][0], 2), "before": events[j][1][-160:],
                "after": events[j + 1][1][-160:]} for g, j in sorted(gaps, reverse=True)[:8]]
    return {"command": cmd, "exit": code, "seconds": end, "events": len(events) - 2, "gap": gap,
            "before": events[i][1][-200:], "after": events[i + 1][1][-200:], "at": events[i][0],
            "longest": longest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=float, default=10.0, help="seconds of silence allowed (default: 10)")
    parser.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command after --")
    r = watch(cmd)
    print(f"{' '.join(cmd)}\n  exit {r['exit']}, {r['seconds']:.1f} s, {r['events']} output events; longest silence "
          f"{r['gap']:.1f} s at {r['at']:.1f} s\n    after:  {r['before']!r}\n    before: {r['after']!r}")
    for g in r["longest"][1:]:
        if g["gap"] > args.limit:
            print(f"  also {g['gap']:.1f} s at {g['at']:.1f} s after {g['before']!r}")
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(r) + "\n")
    return 1 if r["gap"] > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())

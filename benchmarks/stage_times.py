"""Wall time of each stage of a `modeldiff study` run, from its ``[k/N]`` stage headings (and the
per-direction counterfactual / report lines of the last stage), to set beside `modeldiff plan`.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/stage_times.py .venv/bin/python -m modeldiff.cli study STUDY --out DIR
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

HEADING = re.compile(rb"(\[\d+/\d+\] |  counterfactual tests, |  writing the report )[^\r\n]*")


def main(cmd: list[str]) -> int:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    marks, seen, buf = [], set(), b""
    while chunk := proc.stderr.read1(65536):
        buf += chunk
        for m in HEADING.finditer(buf):
            key = m.group(0)[:60]
            if key not in seen:
                seen.add(key)
                marks.append((key.decode(errors="replace"), time.perf_counter() - t0))
        buf = buf[-2000:]  # a heading split across reads is found on the next one
    proc.wait()
    end = time.perf_counter() - t0
    for (text, t), nxt in zip(marks, [m[1] for m in marks[1:]] + [end]):
        print(f"{nxt - t:7.1f} s  {text}")
    print(f"before the first stage {marks[0][1] if marks else end:.1f} s, total {end:.1f} s, exit {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else __doc__)

"""The command line's garbage-collector policy (modeldiff/cli/gc_policy.py) vs CPython's defaults, side by side.

Each round runs the same whole study once per setting, each a fresh ``modeldiff study`` process, alternating
so that neighbours in time are compared. Per run: wall seconds (this process's clock, start to exit),
seconds spent inside the collector (``gc.callbacks`` in the child), full (generation-2) collections, and
peak RSS (``wait4``). Prints the table and the median ratios default / tuned.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/gc_policy.py [--rounds 3] [--studies tabular optimizers]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {"tabular": "case_studies/tabular/breast_cancer.yaml", "optimizers": "case_studies/optimizers/digits.yaml",
           "demo": "sgd_noise"}
SETTINGS = {"CPython default": {"MODELDIFF_GC": "default"}, "tuned": {}}

CHILD = r"""
import atexit, gc, json, sys, time
spent, full = [0.0], [0]
start = [0.0]
def watch(phase, info):
    if phase == "start":
        start[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - start[0]
        full[0] += info["generation"] == 2
gc.callbacks.append(watch)
atexit.register(lambda: print("GCSTATS " + json.dumps({"gc_seconds": spent[0], "full": full[0]}), file=sys.stderr))
sys.argv = ["modeldiff"] + sys.argv[1:]
from modeldiff.cli.main import main
sys.exit(main())
"""


def run_once(study: str, env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MODELDIFF_GC"} | env_extra
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "err", "w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "study", study, "--out", f"{tmp}/run"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        sys.exit(f"failed: modeldiff study {study}\n{text[-2000:]}")
    stats = json.loads(text.rsplit("GCSTATS ", 1)[1].splitlines()[0])
    return {"seconds": wall, "peak_rss": usage.ru_maxrss * 1024, **stats}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--studies", nargs="+", choices=sorted(STUDIES), default=["tabular", "optimizers"])
    args = p.parse_args(argv)
    print("| study | round | setting | wall s | in the collector s | full collections | peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    results = {(s, name): [] for s in args.studies for name in SETTINGS}
    for r in range(args.rounds):
        for study in args.studies:
            order = list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                out = run_once(STUDIES[study], SETTINGS[name])
                results[(study, name)].append(out)
                print(f"| {study} | {r + 1} | {name} | {out['seconds']:.1f} | {out['gc_seconds']:.2f} | {out['full']} | "
                      f"{out['peak_rss'] / 2**20:.0f} |", flush=True)
    print()
    for study in args.studies:
        d, t = results[(study, "CPython default")], results[(study, "tuned")]
        ratio = lambda key, d=d, t=t: statistics.median(a[key] / max(b[key], 1e-9) for a, b in zip(d, t))
        print(f"{study}: wall default/tuned median {ratio('seconds'):.3f}x; collector seconds "
              f"{statistics.median(x['gc_seconds'] for x in d):.2f} -> {statistics.median(x['gc_seconds'] for x in t):.2f}; "
              f"peak RSS tuned/default {1 / ratio('peak_rss'):.3f}")


if __name__ == "__main__":
    main()

"""glibc malloc with fixed thresholds (modeldiff/cli/allocator.py) vs glibc's defaults, side by side.

Each round trains the same chunk (the SGD-noise demo's high-noise recipe, 32 models at once, the
built-in ensemble trainer) once per setting, each in a fresh process (a malloc setting is per process),
alternating so that neighbours in time are compared; prints wall seconds and peak RSS per run and the
median ratio.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/allocator.py [--rounds 3] [--epochs 5] [--models 32]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"glibc default": {"MODELDIFF_MALLOC": "default"}, "fixed thresholds": {}}

CHILD = r"""
import json, resource, sys, tempfile, time
sys.path.insert(0, {root!r})
from modeldiff.cli.allocator import tune
from datamodels.store import Store
from datamodels.runs.runner import train_chunk
from modeldiff.studies.config import load_study
from modeldiff.studies.pipeline import load_study_data
cfg = load_study("sgd_noise")
data = load_study_data(cfg, None)
recipe = cfg.recipes()[0].replace(epochs={epochs})
with tempfile.TemporaryDirectory() as tmp:
    store = Store.create_or_resume(tmp + "/s", recipe, data, {models}, 0.5, seed=0, ensemble_size={models})
    t0 = time.perf_counter()
    train_chunk(str(store.path), list(range({models})), "cpu", data)
    wall = time.perf_counter() - t0
print(json.dumps({{"seconds": wall, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "tuned": tune()}}))
"""


def run_once(env_extra: dict, epochs: int, models: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MODELDIFF_MALLOC"))} | env_extra
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    code = CHILD.format(root=str(ROOT), epochs=epochs, models=models)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--models", type=int, default=32)
    args = p.parse_args(argv)
    results = {name: [] for name in SETTINGS}
    print(f"load average before: {os.getloadavg()}")
    for r in range(args.rounds):
        for name, env in SETTINGS.items():
            out = run_once(env, args.epochs, args.models)
            results[name].append(out)
            print(f"round {r + 1}: {name:16s} {out['seconds']:6.2f} s  peak {out['peak_rss'] / 2**20:6.0f} MiB  "
                  f"(thresholds fixed: {out['tuned']})", flush=True)
    base, tuned = (results[n] for n in SETTINGS)
    ratios = [b["seconds"] / t["seconds"] for b, t in zip(base, tuned)]
    mem = [t["peak_rss"] / b["peak_rss"] for b, t in zip(base, tuned)]
    print(f"speed-up (default / fixed, per round): {', '.join(f'{x:.2f}' for x in ratios)}; "
          f"median {statistics.median(ratios):.2f}x")
    print(f"peak RSS (fixed / default): median {statistics.median(mem):.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

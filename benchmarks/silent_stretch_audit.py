"""Audit of "no silent stretch over ~10 s" across every command, at demo-like sizes.

    python benchmarks/silent_stretch_audit.py --out DIR [--models 32] [--limit 10] [--only train,diff]

Runs, in order: train (A, B and an LDS evaluation store), attribute (TRAK, datamodels), lds, diff,
counterfactual (with a patch-size sweep), search, verify, diagnose, plan, and a whole study
(``sgd_noise --models M``); each through :mod:`benchmarks._support.silent_stretch`, which
timestamps every output line or progress-bar refresh. Prints one row per command (wall time,
longest silence and what came before it) and appends the details to ``DIR/stretches.jsonl``.
Exit 1 when a command has a silence above ``--limit`` seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support.silent_stretch import watch  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "case_studies" / "sgd_noise"


def commands(out: Path, models: int) -> list[tuple[str, list[str]]]:
    md = [sys.executable, "-m", "modeldiff.cli"]
    a, b, ev = out / "store_a", out / "store_b", out / "store_eval"
    half = str(max(4, models // 2))
    return [
        ("train A", md + ["train", str(RECIPES / "high_noise_digits.yaml"), "--out", str(a), "--models", str(models)]),
        ("train B", md + ["train", str(RECIPES / "low_noise_digits.yaml"), "--out", str(b), "--models", str(models)]),
        ("train eval", md + ["train", str(RECIPES / "high_noise_digits.yaml"), "--out", str(ev), "--models",
                             str(models), "--seed", "1"]),
        ("attribute trak", md + ["attribute", str(a), "--out", str(out / "a.h5"), "--models", half, "--force"]),
        ("attribute trak B", md + ["attribute", str(b), "--out", str(out / "b.h5"), "--models", half, "--force"]),
        ("attribute datamodels", md + ["attribute", str(a), "--method", "datamodels", "--out", str(out / "a_dm.h5"),
                                       "--force"]),
        ("lds", md + ["lds", str(out / "a.h5"), "--against", str(ev)]),
        ("diff", md + ["diff", str(out / "a.h5"), str(out / "b.h5"), "--out", str(out / "diff"), "--force"]),
        ("counterfactual", md + ["counterfactual", "--store-a", str(a), "--store-b", str(b), "--transform",
                                 "patch:pattern=texture,size=3,loc=random", "--target-class", "0", "--sizes", "2,3,4",
                                 "--out", str(out / "cf"), "--force"]),
        ("search", md + ["search", "--store-a", str(a), "--store-b", str(b), "--scores-a", str(out / "a.h5"),
                         "--scores-b", str(out / "b.h5"), "--out", str(out / "search"), "--force"]),
        ("verify", md + ["verify", str(a)]),
        ("diagnose", md + ["diagnose", str(a), str(b), "--models", "2", "--out", str(out / "diag"), "--force"]),
        ("plan", md + ["plan", "sgd_noise"]),
        ("study", md + ["study", "sgd_noise", "--models", str(models), "--out", str(out / "study")]),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="work folder (stores, outputs, stretches.jsonl)")
    p.add_argument("--models", type=int, default=32, help="models per store (default: 32)")
    p.add_argument("--limit", type=float, default=10.0, help="silence allowed, seconds (default: 10)")
    p.add_argument("--only", default=None, help="comma-separated command names to run (default: all)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    worst = 0.0
    print(f"{'command':22s} {'exit':>4s} {'wall s':>7s} {'silence s':>9s}  before the silence", flush=True)
    for name, cmd in commands(out, args.models):
        if only and name not in only and name.split()[0] not in only:
            continue
        r = watch(cmd)
        r["name"] = name
        with open(out / "stretches.jsonl", "a") as fh:
            fh.write(json.dumps(r) + "\n")
        print(f"{name:22s} {r['exit']:4d} {r['seconds']:7.1f} {r['gap']:9.1f}  {r['before'][:90]!r}", flush=True)
        worst = max(worst, r["gap"])
    print(f"longest silence of all: {worst:.1f} s (limit {args.limit:g} s)")
    return 1 if worst > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the pilot's learning curve predict the LDS of a 4x larger study? (issue 14, digits, one run)

One store of ``2 * 4P`` models of the SGD-noise demo's high-noise recipe: models ``[0, 4P)`` are
attributed with TRAK, models ``[4P, 8P)`` are the held-out evaluation set. The pilot is the first
``P`` attributed models: the learning curve is fitted on random subsets of them only (exactly as
``modeldiff plan --pilot`` does), then predicts the LDS with ``4P`` models; the LDS actually
measured with all ``4P`` models (every test example, 95 % bootstrap CI over test examples) is the
check. Features of each model are computed once; a subset's scores are the average of its
models' per-model scores times their average out-to-loss weights, which is TRAK's formula.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/plan_learning_curve.py --pilot 8 --out runs/plan_lc
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pilot", type=int, default=8, help="attributed models of the pilot (P)")
    ap.add_argument("--out", default="runs/plan_lc", help="store folder (reused when it exists)")
    ap.add_argument("--proj-dim", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    big = 4 * args.pilot
    recipe = ROOT / "case_studies/sgd_noise/high_noise_digits.yaml"
    subprocess.run([sys.executable, "-m", "modeldiff.cli", "train", str(recipe), "--out", args.out, "--models",
                    str(2 * big), "--ensemble-size", "32"], check=True, cwd=ROOT)

    from datamodels.attribution.lds import lds
    from datamodels.store import Store
    from modeldiff.plan.learning_curve import fit_learning_curve
    from modeldiff.plan.pilot import _counts, _trak_subsets

    store = Store.open(ROOT / args.out)
    data = store.load_dataset()
    attributed, held_out = np.arange(big), np.arange(big, 2 * big)
    rows = np.arange(data.n_test)
    scores_of = _trak_subsets(store, attributed, data, rows, args.proj_dim, 256, "cpu")
    masks, margins = np.asarray(store.masks[held_out]), np.asarray(store.test_margins[held_out])
    rng = np.random.default_rng(0)
    ns, values = [], []
    for n in _counts(args.pilot):
        for _ in range(1 if n == args.pilot else 4):
            pick = np.sort(rng.choice(args.pilot, size=n, replace=False))
            ns.append(n)
            values.append(lds(scores_of(pick), masks, margins, n_boot=10).mean)
    curve = fit_learning_curve(ns, values)
    mid, lo, hi = curve.predict(big)
    measured = lds(scores_of(np.arange(big)), masks, margins, n_boot=2000)
    inside = measured.ci_low <= mid <= measured.ci_high
    print(f"pilot: {args.pilot} attributed models; curve a = {curve.a:.4f}, b = {curve.b:.2f}")
    print(f"LDS observed on the pilot: " + ", ".join(f"{n}: {v:.4f}" for n, v in zip(ns, values)))
    print(f"predicted LDS with {big} models: {mid:.4f} [{lo:.4f}, {hi:.4f}]")
    print(f"measured  LDS with {big} models: {measured.mean:.4f} [{measured.ci_low:.4f}, {measured.ci_high:.4f}] "
          f"(95 % CI over {data.n_test} test examples, {len(held_out)} held-out models)")
    print(f"prediction inside the measured CI: {inside}")


if __name__ == "__main__":
    main()

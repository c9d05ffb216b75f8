"""Does the pilot's learning curve predict the LDS of a 4x larger study? (digits, one run)

One store of ``2 * 4P`` models of the SGD-noise demo's high-noise recipe: models ``[0, 4P)`` are
attributed with TRAK, models ``[4P, 8P)`` are the held-out evaluation set. The pilot is the first
``P`` attributed models: the variance components of their per-model predictions (exactly as
``modeldiff plan --pilot`` computes them) predict the LDS with ``4P`` models; the LDS actually
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

    from datamodels.attribution.lds import average_over_seeds, lds
    from datamodels.store import Store
    from modeldiff.plan.pilot import curves, per_model_scores

    store = Store.open(ROOT / args.out)
    data = store.load_dataset()
    attributed, held_out = np.arange(big), np.arange(big, 2 * big)
    cache = ROOT / args.out / f"per_model_k{args.proj_dim}.npz"
    if cache.is_file():
        saved = np.load(cache)
        per_model, q = saved["per_model"], saved["q"]
    else:
        per_model, q = per_model_scores(store, attributed, data, np.arange(data.n_test), args.proj_dim, 256, "cpu")
        np.savez(cache, per_model=per_model, q=q)
    masks, margins = np.asarray(store.masks[held_out]), np.asarray(store.test_margins[held_out])
    weighted = per_model[:args.pilot] * q[:args.pilot].mean(0)[None, None, :]
    curve, prec = curves(weighted, *average_over_seeds(masks, margins))

    def measured(n):  # TRAK's own formula on the first n models, every test example
        scores = per_model[:n].mean(0) * q[:n].mean(0)[None, :]
        return lds(scores, masks, margins, n_boot=2000)

    print(f"pilot: {args.pilot} attributed models; LDS ceiling (infinitely many models) "
          f"{curve.ceiling:.4f}")
    for n in (args.pilot, 2 * args.pilot, big):
        mid, lo, hi = curve.predict(n)
        m = measured(n)
        inside = m.ci_low <= mid <= m.ci_high
        print(f"{n:3d} models: predicted {mid:.4f} [{lo:.4f}, {hi:.4f}]   measured {m.mean:.4f} "
              f"[{m.ci_low:.4f}, {m.ci_high:.4f}] (95 % CI over {data.n_test} test examples, {len(held_out)} "
              f"held-out models)   prediction inside: {inside}")

    # --target-precision: the pilot's precision curve against the reliability (the squared precision: the
    # correlation between two disjoint sets of n models' scores, TRAK's formula with their own weights) measured
    # on the other attributed models
    rest = np.arange(args.pilot, big)
    c = prec.point
    print(f"precision curve from the {args.pilot}-model pilot: ceiling {prec.ceiling:.3f}")
    rng = np.random.default_rng(0)
    for n in (args.pilot // 2, args.pilot, (big - args.pilot) // 2):
        values = []
        for _ in range(20):
            pick = rng.permutation(rest)[:2 * n]
            one, two = (per_model[k].mean(0) * q[k].mean(0)[None, :] for k in (pick[:n], pick[n:]))
            one, two = one - one.mean(1, keepdims=True), two - two.mean(1, keepdims=True)
            values.append(np.nanmean((one * two).sum(1) / np.sqrt((one * one).sum(1) * (two * two).sum(1))))
        r = np.array(values)
        predicted = float(np.mean(c.var_mu / np.maximum(c.var_mu + c.var_noise / n, 1e-300)))
        lo_m, hi_m = np.quantile(r, [0.025, 0.975])
        print(f"{n:3d} models: predicted reliability {predicted:.4f} (precision {prec.predict(n)[0]:.3f})   "
              f"measured {r.mean():.4f} [{lo_m:.4f}, {hi_m:.4f}] (two disjoint sets of held-out attributed models, "
              f"20 draws)   inside: {lo_m <= predicted <= hi_m}")
    for target in (0.5, 0.6):
        print(f"models for precision {target}: {prec.models_for(target)}")


if __name__ == "__main__":
    main()

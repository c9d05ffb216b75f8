"""Does the pilot's learning curve predict the LDS of a 4x larger study? (digits, one run)

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
    from modeldiff.plan.pilot import trak_per_model, trak_variance_curve

    store = Store.open(ROOT / args.out)
    data = store.load_dataset()
    attributed, held_out = np.arange(big), np.arange(big, 2 * big)
    cache = ROOT / args.out / f"per_model_k{args.proj_dim}.npz"
    if cache.is_file():
        saved = np.load(cache)
        per_model, q = saved["per_model"], saved["q"]
    else:
        per_model, q = trak_per_model(store, attributed, data, np.arange(data.n_test), args.proj_dim, 256, "cpu")
        np.savez(cache, per_model=per_model, q=q)
    masks, margins = np.asarray(store.masks[held_out]), np.asarray(store.test_margins[held_out])
    curve = trak_variance_curve(per_model[:args.pilot], q[:args.pilot], masks, margins)

    def measured(n):  # TRAK's own formula on the first n models, every test example
        scores = per_model[:n].mean(0) * q[:n].mean(0)[None, :]
        return lds(scores, masks, margins, n_boot=2000)

    print(f"pilot: {args.pilot} attributed models; LDS ceiling (infinitely many models) "
          f"{curve.point.lds(float('inf')):.4f}")
    for n in (args.pilot, 2 * args.pilot, big):
        mid, lo, hi = curve.predict(n)
        m = measured(n)
        inside = m.ci_low <= mid <= m.ci_high
        print(f"{n:3d} models: predicted {mid:.4f} [{lo:.4f}, {hi:.4f}]   measured {m.mean:.4f} "
              f"[{m.ci_low:.4f}, {m.ci_high:.4f}] (95 % CI over {data.n_test} test examples, {len(held_out)} "
              f"held-out models)   prediction inside: {inside}")

    # --target-precision: the pilot's precision curve against the reliability measured on the other
    # attributed models (two disjoint sets of n models each, TRAK's formula with their own weights)
    from modeldiff.plan.precision import _row_corr, fit_precision_curve

    prec = fit_precision_curve(per_model[:args.pilot], q[:args.pilot])
    rest = np.arange(args.pilot, big)
    print(f"precision curve from the {args.pilot}-model pilot (Spearman-Brown through its split-half reliability "
          f"{prec.observed[-1]:.4f} at {args.pilot // 2} models): logit R(n) = {prec.a:.3f} + log n")
    rng = np.random.default_rng(0)
    for n in (args.pilot // 2, args.pilot, (big - args.pilot) // 2):
        values = []
        for _ in range(20):
            pick = rng.permutation(rest)[:2 * n]
            one, two = pick[:n], pick[n:]
            values.append(np.nanmean(_row_corr(per_model[one].mean(0) * q[one].mean(0)[None, :],
                                               per_model[two].mean(0) * q[two].mean(0)[None, :])))
        r = np.array(values)
        mid, lo, hi = prec.predict(n)
        lo_m, hi_m = np.quantile(r, [0.025, 0.975])
        inside = lo_m <= mid ** 2 <= hi_m or lo ** 2 <= r.mean() <= hi ** 2
        print(f"{n:3d} models: predicted reliability R = precision^2 {mid ** 2:.4f} [{lo ** 2:.4f}, {hi ** 2:.4f}] "
              f"(precision {mid:.3f})   measured {r.mean():.4f} [{lo_m:.4f}, {hi_m:.4f}] (two disjoint sets of "
              f"held-out attributed models, 20 draws)   consistent: {inside}")
    for target in (0.5, 0.6):
        print(f"models for precision {target}: {prec.models_for(target)}")


if __name__ == "__main__":
    main()

"""Precision@100 of the planted training images at the top A − B component against the number of
models per algorithm (128 … 512), classic and cross-fitted estimators, on one planted-grid variant.

Runs the variant's planted study (no twin, no search, no counterfactual tests) with ``--models`` models
per algorithm, every model attributed by TRAK in ``--groups`` groups, then
``benchmarks/discovery_components.py``'s evaluation on the first 2, 4, … groups (the cross-fitted
estimator needs two halves): one run gives the whole curve.

    python benchmarks/components_curve.py --variant 0 --models 512 --groups 8 --out runs/curve_v0

Prints one line per model count and writes ``OUT/components_curve.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", type=int, default=0)
    p.add_argument("--grid-seed", type=int, default=0)
    p.add_argument("--models", type=int, default=512, help="models per algorithm, all attributed")
    p.add_argument("--groups", type=int, default=8, help="TRAK groups (the curve's points: 1, 2, 4, ... groups)")
    p.add_argument("--splits", type=int, default=8, help="half splits of the cross-fitted estimator")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from discovery_components import evaluate

    from case_studies.planted.grid import draw_variants, variant_config
    from case_studies.planted.plant import plant as make_plant
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data
    from modeldiff.studies.run import run_configured

    variant = draw_variants(args.variant + 1, args.grid_seed)[args.variant]
    cfg = variant_config(load_study("planted"), variant, args.models)
    cfg.runner["kwargs"]["twin"] = False
    cfg.attribution.models = args.models
    cfg.calibration.groups = args.groups
    cfg.search.enabled = False
    cfg.counterfactual.auto_candidates = 0
    cfg.ensemble_size = min(64, args.models)
    out = Path(args.out)
    t0 = time.perf_counter()
    run_configured(cfg, out, args.device)
    study_s = time.perf_counter() - t0
    planted = np.asarray(make_plant(load_study_data(cfg), **cfg.runner["kwargs"]["plant"]).planted_train)
    points = sorted({min(args.groups, 2 ** i) for i in range(1, args.groups.bit_length())})  # >= 2 groups: halves
    result = evaluate(out, planted, args.splits, points)
    result.update(variant=variant, study_seconds=round(study_s, 1))
    (out / "components_curve.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"variant {args.variant}: {variant}; chance {result['chance']:.3f}; study {study_s:.0f} s")
    for row in result["curve"]:
        c, x = row["classic"], row["crossfit"]
        print(f"  {row['models_a']} models: precision@100 A-B / B-A / B own: classic {c['a_minus_b']:.2f} / "
              f"{c['b_minus_a']:.2f} / {c['b_own']:.2f}; cross-fitted {x['a_minus_b']:.2f} / {x['b_minus_a']:.2f} / "
              f"{x['b_own']:.2f}; planted share of the top cross-fitted signal {x['planted_signal_share']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

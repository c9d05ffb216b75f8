"""How strong is a planted feature in ModelDiff's residuals? For a finished planted run (a folder
written by `modeldiff study planted` or benchmarks/planted_grid.py), the residual variance along
the planted training set against the top A−B component's, per component the planted images among
its 100 largest and 100 smallest weights, and the planted images' mean attribution in the test
rows that carry the feature.

    python benchmarks/planted_signal.py RUN_DIR [--study planted] [--set fraction=0.1 --set test_fraction=1.0]

``--set`` must repeat the plant overrides the run was made with (the planted set is re-derived
from them; the study's YAML gives the rest).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from case_studies.planted.metrics import planted_signal  # noqa: E402
from case_studies.planted.plant import plant  # noqa: E402
from datamodels.attribution.influence_io import read_influence  # noqa: E402
from modeldiff.studies.config import load_study  # noqa: E402
from modeldiff.studies.pipeline import load_study_data  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the planted run's output folder")
    p.add_argument("--study", default="planted", help="the study it ran (default: planted)")
    p.add_argument("--method", default="trak", help="attribution method of the run's scores (default: trak)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="plant override of the run")
    args = p.parse_args(argv)
    cfg = load_study(args.study)
    plant_args = dict(cfg.runner["kwargs"]["plant"])
    plant_args.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    planted = plant(load_study_data(cfg), **plant_args)
    run = Path(args.run)
    a = read_influence(run / f"scores_a_{args.method}.h5").scores
    b = read_influence(run / f"scores_b_{args.method}.h5").scores
    comps = np.load(run / "components_a_minus_b.npy")
    pl = planted.planted_train
    s = planted_signal(a, b, pl, comps[0])
    print(f"{len(pl)} planted of {a.shape[1]} training images; {a.shape[0]} test rows")
    print(f"residual variance along the planted set {s['planted_variance']:.3g}; top A−B component "
          f"{s['top_variance']:.3g}; share {s['share']:.4f}; |cos| {s['cosine']:.3f}")
    for j, c in enumerate(comps):
        ranks_top, ranks_bottom = np.argsort(-c).argsort()[pl], np.argsort(c).argsort()[pl]
        print(f"component {j}: planted among the 100 largest weights {(ranks_top < 100).sum()}, "
              f"among the 100 smallest {(ranks_bottom < 100).sum()}")
    rows = np.setdiff1d(np.arange(a.shape[0]), planted.clean_test_rows)
    if len(rows):
        others = np.setdiff1d(np.arange(a.shape[1]), pl)
        for tag, m in (("A", a), ("B", b)):
            print(f"{tag}: mean attribution of planted images in the {len(rows)} pasted test rows "
                  f"{m[rows][:, pl].mean():+.3g} (other training images {m[rows][:, others].mean():+.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

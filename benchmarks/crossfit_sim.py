"""Classic vs cross-fitted components and their nulls on simulated attributions (seconds on a CPU).

Each algorithm's per-model attributions are a shared rank-3 signal, A's own signal along a
direction ``s`` (sd ``--signal``), isotropic noise and a large noise direction ``d``; B's noise
along ``d`` can differ (``--noise-b``: unequal attribution noise without any feature difference).
Per seed it fits both estimators as the study pipeline does (:func:`modeldiff.studies.pipeline.compare`,
:func:`~modeldiff.studies.pipeline.calibrate_null`) and counts: the top A−B component's |cos| with
``s`` and ``d``, and the seeds with any component beyond null.

    python benchmarks/crossfit_sim.py --signal 0                    # the same algorithm twice
    python benchmarks/crossfit_sim.py --signal 0 --noise-b 2        # unequal noise, no feature
    python benchmarks/crossfit_sim.py --signal 1.5                  # A's feature, weaker than the noise
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def simulate(seed, n=200, m=60, units=16, signal=1.5, noise_big=8.0, noise_iso=0.5, noise_big_b=None):
    """Per-model attributions ``[units, n, m]`` of A and B, the signal direction ``s`` and the noise direction ``d``.

    Both share a rank-3 signal; A alone has signal sd ``signal`` along ``s``. Each model's estimation
    noise is isotropic (sd ``noise_iso``) plus a large direction ``d`` (sd ``noise_big``; B's
    ``noise_big_b``, default the same): after averaging half of the models the noise variance along
    ``d`` (``noise_big² / (units / 2)`` = 8) exceeds A's signal variance along ``s`` (2.25).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(m, 5)))
    shared, s, d = q[:, :3], q[:, 3], q[:, 4]
    base = rng.normal(size=(n, 3)) * [6.0, 5.0, 4.0] @ shared.T
    a_mean = base + rng.normal(size=(n, 1)) * signal * s

    def models(mean, big):
        return mean[None] + rng.normal(size=(units, n, m)) * noise_iso + rng.normal(size=(units, n, 1)) * big * d

    return models(a_mean, noise_big), models(base, noise_big if noise_big_b is None else noise_big_b), s, d


def study(**calibration):
    """A study config with 3 components and these ``calibration`` settings."""
    from datamodels.base.dataclass_build import build_dataclass
    from modeldiff.studies.config import StudyConfig

    return build_dataclass(StudyConfig, {"name": "sim", "algorithm_a": {"recipe": "a.yaml"}, "algorithm_b": {"recipe": "b.yaml"},
                                "components": 3, "calibration": calibration}, "", what="study")


def labels(n: int, m: int):
    """Stand-in dataset labels for the subpopulations (3 classes)."""
    import torch

    return SimpleNamespace(y_train=torch.arange(m) % 3, y_test=torch.arange(n) % 3, class_names=["x", "y", "z"])


def run(seed: int, estimator: str, splits: int = 8, **sim) -> dict:
    """One seed, one estimator: ``{cos_s, cos_d, beyond}`` of the A−B direction (beyond: either direction)."""
    from modeldiff.diff.null import mean_halves
    from modeldiff.diff.null_crossfit import mean_quarters
    from modeldiff.studies.pipeline import calibrate_null, compare

    a, b, s, d = simulate(seed, **sim)
    cfg = study(estimator=estimator, splits=splits)
    data = labels(a.shape[1], a.shape[2])
    halves = lambda: mean_halves(a, b, n_splits=splits, seed=seed)  # noqa: E731
    dirs = compare(cfg, a.mean(0), b.mean(0), data, lambda: mean_halves(a, b, n_splits=4, seed=seed))
    cal = calibrate_null(cfg, halves, dirs, lambda: mean_quarters(a, b, n_splits=splits, seed=seed))
    top = dirs[0].fit.components_[0]
    return {"cos_s": float(abs(top @ s)), "cos_d": float(abs(top @ d)), "beyond": cal.any_beyond(),
            "top_beyond": cal.components("a_minus_b")[0].beyond_null}


def main(argv=None) -> int:
    import logging

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--signal", type=float, default=1.5, help="sd of A's own signal along s (0: no feature)")
    p.add_argument("--noise-b", type=float, default=None, help="B's noise sd along d (default: A's, 8)")
    args = p.parse_args(argv)
    logging.disable(logging.INFO)  # the per-split headings
    for estimator in ("classic", "crossfit"):
        rows = [run(seed, estimator, signal=args.signal, noise_big_b=args.noise_b) for seed in range(args.seeds)]
        print(f"{estimator:>8s}: top A-B component |cos| with the signal {np.median([r['cos_s'] for r in rows]):.2f}, "
              f"with the noise {np.median([r['cos_d'] for r in rows]):.2f} (medians); top component beyond null "
              f"{sum(r['top_beyond'] for r in rows)}/{len(rows)}; any component beyond null "
              f"{sum(r['beyond'] for r in rows)}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Datamodels regression at CIFAR-10 scale: 50,000 training examples, memory bounded.

Synthetic problem with a known answer: N models on random halves of n_train = 50,000 examples,
T targets, each a sparse linear function of the mask (s non-zero coefficients) plus noise.
Ours (`DatamodelsRegression`: λ path, held-out selection, refit) runs on the whole problem; the
reference (scikit-learn `Lasso` at the λ we chose, same centred design) on a few targets.
Prints time, peak RSS increase against the size of an n_train² matrix, support recovery and
agreement with scikit-learn.

    python benchmarks/regression_50k.py [--models 2000 --n-train 50000 --targets 32]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from datamodels.attribution.regression import DatamodelsRegression  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def problem(n_models, n_train, n_targets, support, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.random((n_models, n_train), dtype=np.float32) < 0.5
    coef = np.zeros((n_targets, n_train), np.float32)
    for t in range(n_targets):
        idx = rng.choice(n_train, support, replace=False)
        coef[t, idx] = rng.choice([-1.0, 1.0], support) * rng.uniform(0.5, 1.5, support)
    margins = masks.astype(np.float32) @ coef.T + rng.normal(0, 1.0, (n_models, n_targets)).astype(np.float32)
    return masks, margins, coef


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--targets", type=int, default=32)
    ap.add_argument("--support", type=int, default=50)
    ap.add_argument("--sklearn-targets", type=int, default=2)
    args = ap.parse_args()
    masks, margins, true = problem(args.models, args.n_train, args.targets, args.support)
    base = peak_rss_gib()
    t0 = time.perf_counter()
    reg = DatamodelsRegression(progress=True).fit(masks, margins)
    ours_s = time.perf_counter() - t0
    peak = peak_rss_gib() - base
    gram_gib = args.n_train ** 2 * 4 / 2 ** 30
    hits = [len(set(np.argsort(-np.abs(c))[:args.support]) & set(np.flatnonzero(t))) / args.support
            for c, t in zip(reg.coef_, true)]
    print(f"ours: {args.models} models x {args.n_train:,} examples, {args.targets} targets: {ours_s:.1f} s, "
          f"peak RSS increase {peak:.2f} GiB (an n_train² float32 matrix would be {gram_gib:.1f} GiB); "
          f"top-{args.support} support recovery {np.mean(hits):.3f}")

    from sklearn.linear_model import Lasso

    x = masks.astype(np.float64)
    xc = x - x.mean(0)
    rel, sk_s = [], 0.0
    for t in range(args.sklearn_targets):
        y = margins[:, t].astype(np.float64)
        t0 = time.perf_counter()
        sk = Lasso(alpha=float(reg.lambda_[t]), tol=1e-6, max_iter=20_000).fit(xc, y - y.mean())
        sk_s += time.perf_counter() - t0
        rel.append(np.linalg.norm(reg.coef_[t] - sk.coef_) / max(np.linalg.norm(sk.coef_), 1e-12))
    print(f"scikit-learn Lasso at our chosen λ on {args.sklearn_targets} targets: {sk_s:.1f} s "
          f"({sk_s / args.sklearn_targets:.1f} s per target at ONE λ, x{args.targets} targets = "
          f"{sk_s / args.sklearn_targets * args.targets:.0f} s vs ours {ours_s:.1f} s for the whole path); "
          f"relative coefficient difference max {max(rel):.2e}")


if __name__ == "__main__":
    main()

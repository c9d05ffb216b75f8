"""Functional distance between high- and low-noise models at matched loss (Vyas et al., "Beyond
implicit bias: the insignificance of SGD noise in online learning").

The online paper's claim: models trained with different SGD noise are close *in function* once
compared at the same loss (noise only moves a model more slowly along one "golden path"). With
the final models of two stores (their stored test logits, no extra forward pass):

* each model's test loss (cross-entropy) and accuracy;
* matched pairs: A and B models paired one to one by test loss (minimum total |ΔL|,
  :func:`scipy.optimize.linear_sum_assignment`), kept when ``|ΔL| <= caliper · mean loss``;
* the distance of two models: the mean over test inputs of the total-variation distance
  ``½‖p − p'‖₁`` of their softmax outputs (in [0, 1]), and the rate at which their top classes
  disagree;
* the baseline: the same distance between two models of the *same* algorithm (seed-to-seed
  variation, disjoint pairs of its models), so ``excess = cross − within`` is the part of the A–B
  distance that independent seeds do not already produce; 95 % bootstrap CI over pairs.

A claim "close in function at matched loss" reads: excess ≈ 0 (CI covering 0) with enough
matched pairs. Its control, ``null``: the same figures between two random halves of one algorithm's
models, whose excess must itself be ≈ 0 (else the test is loose).
``python -m case_studies.sgd_noise.functional_distance STUDY_OUT [...]`` prints the figures of
finished studies (their ``store_a`` / ``store_b``).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax, softmax


def model_losses(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(loss[M], accuracy[M])`` of ``logits[M, n, K]`` against labels ``y[n]``."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    loss = -lp[:, np.arange(len(y)), y].mean(1)
    acc = (lp.argmax(-1) == y[None]).mean(1)
    return loss, acc


def pair_distance(pa: np.ndarray, pb: np.ndarray) -> tuple[float, float]:
    """``(total variation, top-class disagreement)`` of two models' probabilities ``[n, K]``, averaged over inputs."""
    return float(0.5 * np.abs(pa - pb).sum(-1).mean()), float((pa.argmax(-1) != pb.argmax(-1)).mean())


def _within_pairs(m: int, rng) -> list[tuple[int, int]]:
    perm = rng.permutation(m)
    return [(int(perm[2 * i]), int(perm[2 * i + 1])) for i in range(m // 2)]


def functional_distance(logits_a: np.ndarray, logits_b: np.ndarray, y: np.ndarray, *, caliper: float = 0.05,
                        n_boot: int = 2000, seed: int = 0) -> dict:
    """High- vs low-noise functional distance at matched test loss (see the module docstring).

    Args:
        logits_a, logits_b: test logits ``[M_a, n, K]`` and ``[M_b, n, K]`` of the two algorithms.
        y: test labels ``[n]``.
        caliper: a matched pair's ``|ΔL|`` must be at most this share of the pair's mean loss.
    Returns:
        dict: ``loss_a``, ``loss_b``, ``accuracy_a``, ``accuracy_b`` (means), ``pairs`` (matched pairs
        kept), ``pairs_total``, ``loss_gap`` (mean |ΔL| of kept pairs), ``tv_cross`` / ``tv_within`` /
        ``tv_excess`` and ``disagree_cross`` / ``disagree_within`` / ``disagree_excess`` (means), with
        ``*_ci`` 95 % bootstrap intervals of the excesses, ``matched`` (at least 2 pairs kept).
    """
    y = np.asarray(y, dtype=np.int64)
    pa, pb = softmax(np.asarray(logits_a, np.float64), -1), softmax(np.asarray(logits_b, np.float64), -1)
    la, acc_a = model_losses(logits_a, y)
    lb, acc_b = model_losses(logits_b, y)
    rows, cols = linear_sum_assignment(np.abs(la[:, None] - lb[None, :]))
    keep = [(int(i), int(j)) for i, j in zip(rows, cols) if abs(la[i] - lb[j]) <= caliper * (la[i] + lb[j]) / 2]
    rng = np.random.default_rng(seed)
    cross = np.array([pair_distance(pa[i], pb[j]) for i, j in keep]).reshape(-1, 2)
    within = np.array([pair_distance(p[i], p[j]) for p in (pa, pb) for i, j in _within_pairs(len(p), rng)]).reshape(-1, 2)
    out = {"loss_a": float(la.mean()), "loss_b": float(lb.mean()), "accuracy_a": float(acc_a.mean()),
           "accuracy_b": float(acc_b.mean()), "pairs": len(keep), "pairs_total": int(len(rows)),
           "caliper": caliper, "loss_gap": float(np.mean([abs(la[i] - lb[j]) for i, j in keep])) if keep else None,
           "matched": len(keep) >= 2}
    for c, name in enumerate(("tv", "disagree")):
        xc = cross[:, c] if len(cross) else np.zeros(0)
        xw = within[:, c] if len(within) else np.zeros(0)
        out[f"{name}_cross"] = float(xc.mean()) if len(xc) else None
        out[f"{name}_within"] = float(xw.mean()) if len(xw) else None
        out[f"{name}_excess"] = (out[f"{name}_cross"] - out[f"{name}_within"]) if len(xc) and len(xw) else None
        if len(xc) >= 2 and len(xw) >= 2:  # bootstrap both sets of pairs independently
            bc = xc[rng.integers(0, len(xc), (n_boot, len(xc)))].mean(1)
            bw = xw[rng.integers(0, len(xw), (n_boot, len(xw)))].mean(1)
            out[f"{name}_excess_ci"] = [float(np.quantile(bc - bw, 0.025)), float(np.quantile(bc - bw, 0.975))]
        else:
            out[f"{name}_excess_ci"] = [None, None]
    return out


def null_excess(logits: np.ndarray, y: np.ndarray, seed: int = 0, **kwargs) -> dict:
    """The control of :func:`functional_distance`: the same figures between two random halves of ONE
    algorithm's models ``logits[M, n, K]`` (two runs of one algorithm), whose excess should be ~0."""
    perm = np.random.default_rng(seed).permutation(len(logits))
    half = len(logits) // 2
    return functional_distance(logits[perm[:half]], logits[perm[half:]], y, seed=seed, **kwargs)


def from_study(out_dir, **kwargs) -> dict:
    """:func:`functional_distance` of a finished study folder's ``store_a`` (A) and ``store_b`` (B) (their
    matched stores when the study matched fit), with ``null``: :func:`null_excess` of each algorithm."""
    from datamodels.store.store import Store
    from modeldiff.studies.match import study_store

    stores = [Store.open(study_store(out_dir, t)) for t in "ab"]  # store_X_matched of a matched study
    y = stores[0].load_dataset().y_test.numpy()
    logits = [np.asarray(s.test_logits)[s.valid_indices()] for s in stores]
    out = functional_distance(logits[0], logits[1], y, **kwargs)
    out["null"] = {tag: null_excess(lg, y, **kwargs) for tag, lg in zip("ab", logits)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="+", help="finished study folders (with store_a, store_b)")
    ap.add_argument("--caliper", type=float, default=0.05)
    args = ap.parse_args(argv)
    for s in args.studies:
        print(s, json.dumps(from_study(s, caliper=args.caliper), indent=1))


if __name__ == "__main__":
    main()

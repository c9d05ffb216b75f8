"""The controls of the paper-direction test (`case_studies.sgd_noise.paper_direction`).

A difference "low noise reacts more than high noise to the texture patch → dog" can come from
things other than a learnt texture feature. Each control below is computed from the same per-model
effects (log-odds of the target class, treated minus clean, averaged over the test inputs), so all
of them cost one forward pass per model, patch and size:

* **null** — the same test between two random halves of ONE algorithm's models (each algorithm in
  turn). Nothing should come out; a significant half-vs-half test says the test itself is loose.
* **held_out** — models split in halves per algorithm; the patch size with the largest |t| on the
  first halves is chosen, and only that size is tested on the second halves (Holm over the patches).
  The pre-registered direction must hold on models not used to pick the size.
* **occluder** — the simpler explanation "low noise is more easily pushed towards dog by any patch":
  the same test on each model's effect of the paper's patch MINUS its effect of a grey solid patch of
  the same size at the same places. A pattern-specific reliance survives this; occlusion sensitivity
  does not.
* **temperature** — the simpler explanation "one algorithm is just more confident (larger logits),
  so every log-odds effect is larger": each model's logits are divided by its own temperature, fitted
  on the clean test set by maximum likelihood, and the test is repeated.

`fit_table` states each algorithm's test accuracy, loss, expected calibration error and fitted
temperature, the differences that the direction must not merely restate.
"""
from __future__ import annotations

import numpy as np
import torch

from modeldiff.counterfactual.effect_stats import compare_effects
from modeldiff.counterfactual.search import holm

GREY = 0.5


def log_odds(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``log(p / (1 − p))`` of probabilities clipped to ``[eps, 1 − eps]`` (float64)."""
    p = p.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def rescale(p: torch.Tensor, temperature: np.ndarray) -> torch.Tensor:
    """Probabilities ``[M, n, K]`` of the same models with their logits divided by ``temperature[M]``."""
    t = torch.as_tensor(np.asarray(temperature, dtype=np.float64)).view(-1, 1, 1)
    return torch.softmax(torch.log(p.double().clamp_min(1e-300)) / t, dim=-1)


def effects(p_clean: torch.Tensor, p_treated: torch.Tensor, target: int, temperature=None) -> np.ndarray:
    """Per-model log-odds effect ``[M]`` on class ``target`` of ``[M, n, K]`` treated vs clean probabilities."""
    if temperature is not None:
        p_clean, p_treated = rescale(p_clean, temperature), rescale(p_treated, temperature)
    return (log_odds(p_treated[..., target]) - log_odds(p_clean[..., target])).mean(dim=1).numpy()


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-model temperature ``[M]`` minimising the test NLL of ``logits[M, n, K] / T`` (labels ``y[n]``)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y))

    def nll(log_t, z):
        return -log_softmax(z / np.exp(log_t), axis=-1)[rows, y].mean()

    return np.array([np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), args=(z,), method="bounded").x)
                     for z in logits])


def calibration_error(logits: np.ndarray, y: np.ndarray, bins: int = 15) -> np.ndarray:
    """Expected calibration error ``[M]`` (top-class confidence, equal-width bins)."""
    from scipy.special import softmax

    p = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    conf, correct = p.max(-1), (p.argmax(-1) == np.asarray(y)[None]).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    out = np.zeros(len(p))
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        gap = np.abs(np.where(inside, conf - correct, 0).sum(1))
        out += gap / conf.shape[1]
    return out


def fit_table(logits: np.ndarray, y: np.ndarray, temperature: np.ndarray | None = None) -> dict:
    """Mean test accuracy, NLL, ECE and fitted temperature of one algorithm's models ``logits[M, n, K]``
    (``temperature[M]``: the models' :func:`fit_temperature`, when already fitted)."""
    from scipy.special import log_softmax

    lp = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    y = np.asarray(y)
    return {"accuracy": float((lp.argmax(-1) == y[None]).mean()),
            "test_loss": float(-lp[:, np.arange(len(y)), y].mean()),
            "ece": float(calibration_error(logits, y).mean()),
            "temperature": float((fit_temperature(logits, y) if temperature is None else temperature).mean())}


def test_rows(low: dict, high: dict, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One test per key ``(patch, target, size)`` of ``low``/``high`` (per-model effects): low − high,
    Welch CI and p, Holm over all keys."""
    rows = []
    for key in low:
        c = compare_effects(low[key], high[key], n_resamples=n_resamples, seed=seed)
        rows.append({"patch": key[0], "target": key[1], "size": int(key[2]), "n_low": int(len(low[key])),
                     "n_high": int(len(high[key])), "low": c.a.mean, "high": c.b.mean, "diff": c.diff.mean,
                     "diff_ci": [c.diff.ci_low, c.diff.ci_high], "p": c.diff.p_value})
    for r, adj in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = float(adj)
    return rows


def verdicts(rows: list[dict]) -> tuple[dict, dict]:
    """``(replicates, opposite)`` per patch: some size with CI above (below) 0 and Holm p < 0.05."""
    patches = sorted({r["patch"] for r in rows})
    rep = {p: any(r["patch"] == p and r["diff_ci"][0] > 0 and r["p_holm"] < 0.05 for r in rows) for p in patches}
    opp = {p: any(r["patch"] == p and r["diff_ci"][1] < 0 and r["p_holm"] < 0.05 for r in rows) for p in patches}
    return rep, opp


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``range(n)`` (sizes ``n // 2`` and ``n − n // 2``)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def null_control(per_algorithm: dict[str, dict], seed: int = 0, **kw) -> dict:
    """Half against half of each algorithm (``{name: {key: effects[M]}}``): the significant tests per algorithm."""
    out = {}
    for i, (name, eff) in enumerate(per_algorithm.items()):
        first, second = halves(len(next(iter(eff.values()))), seed + 101 * (i + 1))
        rows = test_rows({k: v[first] for k, v in eff.items()}, {k: v[second] for k, v in eff.items()}, **kw)
        out[name] = {"significant": int(sum(r["p_holm"] < 0.05 for r in rows)),
                     "max_abs_diff": float(max(abs(r["diff"]) for r in rows)), "tests": rows}
    return out


def held_out_control(low: dict, high: dict, seed: int = 0, **kw) -> dict:
    """Pick each patch's size on the first halves of both algorithms' models (largest |t|), test it on the
    second halves (Holm over the patches); the pre-registered direction is low − high > 0."""
    lo1, lo2 = halves(len(next(iter(low.values()))), seed + 7)
    hi1, hi2 = halves(len(next(iter(high.values()))), seed + 8)
    chosen = {}
    for key in low:
        c = compare_effects(low[key][lo1], high[key][hi1], n_resamples=kw.get("n_resamples", 2000), seed=seed)
        t = c.diff.mean / c.diff.stderr if c.diff.stderr and np.isfinite(c.diff.stderr) else 0.0
        if key[:2] not in chosen or abs(t) > chosen[key[:2]][1]:
            chosen[key[:2]] = (key, abs(t), float(np.sign(t)))
    picked = {v[0]: v[2] for v in chosen.values()}
    rows = test_rows({k: low[k][lo2] for k in picked}, {k: high[k][hi2] for k in picked}, seed=seed, **kw)
    for r in rows:
        sign = picked[(r["patch"], r["target"], r["size"])]
        r["sign_on_first_halves"] = sign
        r["confirmed"] = bool(r["p_holm"] < 0.05 and np.sign(r["diff"]) == sign
                              and (r["diff_ci"][0] > 0 or r["diff_ci"][1] < 0))
    rep = {r["patch"]: bool(r["confirmed"] and r["sign_on_first_halves"] > 0) for r in rows}
    opp = {r["patch"]: bool(r["confirmed"] and r["sign_on_first_halves"] < 0) for r in rows}
    return {"tests": rows, "replicates": rep, "opposite": opp}


def specific_effects(paper: dict, grey: dict) -> dict:
    """Per-model effect of each paper patch minus that of the grey solid patch of the same size."""
    return {k: paper[k] - grey[("solid", k[1], k[2])] for k in paper}

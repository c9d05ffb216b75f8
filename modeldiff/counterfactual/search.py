"""Confirmatory transformation search: which input transformation moves A's models more than B's?

The paper chose its transformations by hand after looking at subpopulations. Here a library of
candidates (:mod:`modeldiff.counterfactual.library`: the paper's patch families over sizes,
places and colours, tint, grayscale, blur, contrast, sharpen, shifts, low/high-pass, the
data-derived overlays of components, and user callables) is searched automatically, and what
is reported is only what survives a confirmation on fresh models and inputs.

Procedure, per direction (A−B: "A relies more than B"; B−A swapped):

1. **Discovery** on the first half of each algorithm's models and the first half of the test
   inputs: for every candidate transform T and every target class c (or the candidate's own
   target), each model's effect = mean over inputs not of class c of
   ``u(T(x))_c − u(x)_c`` in two units: ``u = p`` (probability) and ``u = log(p / (1 − p))``
   (log-odds of the target class, which for softmax models is exactly its margin ``z_c −
   logsumexp_{k≠c} z_k``; probabilities are clipped to [1e-6, 1 − 1e-6]). Candidates are
   ranked by ``min(t_Welch(A − B), t(A))`` of the per-model log-odds effects (A must move
   towards the class, and more than B).
2. **Confirmation** of the top ``n_confirm`` (one target class per transform) on the *other*
   half of the models and the *other* half of the inputs. Disjoint models make the
   confirmation p-value valid (the CI is over models, the unit the claim is about: "the
   models this algorithm trains"); disjoint inputs keep the search from picking transforms
   tuned to particular images. One-sided Welch p-values (A's log-odds effect > B's) are
   Holm-adjusted over the ``n_confirm`` tested.
3. A transform is **confirmed** for the direction when, in the confirmation half, its
   Holm-adjusted p < ``alpha`` (A's effect exceeds B's) and A's own log-odds effect CI lies
   above 0 (the transform pushes A's models towards the class: a larger *drop* under B is
   not evidence that A relies on it). The headline is the confirmed transform with the largest A−B
   log-odds difference, or "no distinguishing transformation confirmed".

The verdict uses log-odds (margin) units: a probability change depends on where the control
probability sits (two algorithms with different calibration give different probability
changes for the same shift in margin), the log-odds change does not. Both units are reported,
each with bootstrap CIs over models (:func:`modeldiff.counterfactual.effect_stats.compare_effects`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from datamodels.base.errors import UserError
from modeldiff.counterfactual.effect_stats import compare_effects

DIRECTIONS = ("a_minus_b", "b_minus_a")
UNIT = "log-odds"  # the unit of ranking, testing and the verdict
_EPS = 1e-6
NOTHING = "no distinguishing transformation confirmed"


@dataclass
class SearchSettings:
    n_confirm: int = 5            # candidates taken from discovery to confirmation, per direction
    alpha: float = 0.05           # family-wise level of the Holm-adjusted confirmation
    level: float = 0.95           # CI level
    n_inputs: int = 400           # test inputs per half (at most)
    n_resamples: int = 2000       # bootstrap resamples for the CIs
    seed: int = 0

    def __post_init__(self):
        check_search_values(alpha=self.alpha, n_inputs=self.n_inputs, n_confirm=self.n_confirm,
                            n_resamples=self.n_resamples, level=self.level)


def check_search_values(*, alpha: float, n_inputs: int, n_confirm: int, n_resamples: int, level: float = 0.95,
                        name=lambda key: key) -> None:
    """The one rule for the search's numbers (CLI flags, study YAML, Python): a one-line :class:`UserError`
    naming the setting as ``name(key)`` (e.g. ``--n-inputs`` or ``search.n_inputs``)."""
    import math

    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 < alpha < 1):
        raise UserError(f"{name('alpha')} is a family-wise error level and must be in (0, 1), got {alpha}")
    if not 0 < level < 1:
        raise UserError(f"{name('level')} (a confidence level) must be in (0, 1), got {level}")
    for key, value, least in (("n_inputs", n_inputs, 2), ("n_confirm", n_confirm, 1), ("n_resamples", n_resamples, 1)):
        if int(value) != value or value < least:
            raise UserError(f"{name(key)} must be an integer >= {least}, got {value}")


@dataclass
class Halves:
    """Predictors of each algorithm's two disjoint model halves, and the two input halves.

    ``predict_*``: callables ``x[n, C, H, W] -> probabilities [n_models, n, K]``;
    ``x_*``: inputs ``[n, C, H, W]`` with labels ``y_*`` ``[n]``.
    """
    predict_a: tuple          # (discovery, confirmation)
    predict_b: tuple
    x: tuple                  # (discovery inputs, confirmation inputs)
    y: tuple


@dataclass
class DirectionSearch:
    direction: str
    confirmed: list = field(default_factory=list)   # dicts, best first
    tested: list = field(default_factory=list)      # every confirmation-stage result (dicts)
    candidates_tested: int = 0                      # (transform, class) pairs ranked in discovery
    unit: str = UNIT

    @property
    def headline(self) -> str:
        if not self.confirmed:
            return NOTHING
        return describe(self.confirmed[0])

    def to_dict(self) -> dict:
        return {"direction": self.direction, "unit": self.unit, "headline": self.headline,
                "confirmed": self.confirmed, "tested": self.tested, "candidates_tested": self.candidates_tested}


def describe(rec: dict) -> str:
    lo, pr = rec["effects"]["log-odds"], rec["effects"]["probability"]
    f = lambda e: f"{e['mean']:+.3f} [{_n(e['ci_low'])}, {_n(e['ci_high'])}]"
    return (f"{rec.get('label', rec['transform'])} -> class {rec['target_name']}: log-odds effect first {f(lo['a'])} vs second "
            f"{f(lo['b'])} (probability {pr['a']['mean']:+.4f} vs {pr['b']['mean']:+.4f}), "
            f"Holm-adjusted p = {rec['p_adjusted']:.3g}")


def _n(v):
    return "nan" if v is None else f"{v:+.3f}"


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def _units(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = prob.double().clamp(_EPS, 1 - _EPS)
    return p, torch.log(p) - torch.log1p(-p)


def _class_weights(y: np.ndarray, k: int) -> torch.Tensor:
    """``W[n, K]``: averaging weights over inputs not of class c (column c)."""
    w = (np.asarray(y)[:, None] != np.arange(k)[None, :]).astype(np.float64)
    return torch.from_numpy(w / np.maximum(w.sum(0, keepdims=True), 1))


def per_model_effects(predict: Callable, x: torch.Tensor, y: np.ndarray, transform, control=None):
    """Per-model effects ``[n_models, K]`` for every target class, in probability and log-odds.

    Returns ``(prob_effects, logodds_effects, control)``; pass ``control`` (the output of a
    previous call on the same ``x``) to skip the control forward pass.
    """
    if control is None:
        control = torch.as_tensor(predict(x))
    treated = torch.as_tensor(predict(transform(x)))
    (pc, lc), (pt, lt) = _units(control), _units(treated)
    w = _class_weights(y, control.shape[-1])
    return (torch.einsum("mik,ik->mk", pt - pc, w).numpy(), torch.einsum("mik,ik->mk", lt - lc, w).numpy(), control)


def _welch_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-sided Welch t of mean(a) − mean(b) over axis 0 (models)."""
    se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
    return (a.mean(0) - b.mean(0)) / np.maximum(se, 1e-12)


def _one_sample_t(a: np.ndarray) -> np.ndarray:
    return a.mean(0) / np.maximum(a.std(0, ddof=1) / np.sqrt(a.shape[0]), 1e-12)


def search(halves: Halves, candidates: Sequence[tuple], settings: SearchSettings | None = None,
           class_names=None, progress: Callable[[str], None] | None = None) -> dict[str, DirectionSearch]:
    """Run discovery and confirmation for both directions (see the module docstring).

    ``candidates``: ``(transform, target_class or None)`` pairs (None: every class is tried).
    Returns ``{"a_minus_b": DirectionSearch, "b_minus_a": DirectionSearch}``.
    """
    s = settings or SearchSettings()
    if not candidates:
        raise ValueError("the search needs at least one candidate transform")
    xd, yd = halves.x[0], np.asarray(halves.y[0])
    pad, pbd = halves.predict_a[0], halves.predict_b[0]
    ctrl_a = ctrl_b = None
    disc = []  # per candidate: (logodds A [m, K], logodds B [m, K])
    said = -1e9
    for i, (t, _target) in enumerate(candidates):
        if progress and time.monotonic() - said > 2:  # a line every ~2 s, whatever a candidate costs
            said = time.monotonic()
            progress(f"discovery: candidate {i + 1}/{len(candidates)}")
        _, la, ctrl_a = per_model_effects(pad, xd, yd, t, ctrl_a)
        _, lb, ctrl_b = per_model_effects(pbd, xd, yd, t, ctrl_b)
        disc.append((la, lb))
    k = ctrl_a.shape[-1]
    allowed = [np.arange(k) if target is None else np.array([target]) for _, target in candidates]
    n_pairs = int(sum(len(a) for a in allowed))
    out = {}
    conf_ctrl = {}
    for direction in DIRECTIONS:
        flip = direction == "b_minus_a"
        scores = []
        for i, (la, lb) in enumerate(disc):
            first, second = (lb, la) if flip else (la, lb)
            t = np.minimum(_welch_t(first, second), _one_sample_t(first))
            c = int(allowed[i][np.argmax(t[allowed[i]])])
            scores.append((float(t[c]), i, c))
        scores.sort(key=lambda r: -r[0])
        picked = scores[: s.n_confirm]
        tested = []
        for k, (t_disc, i, c) in enumerate(picked, 1):
            if progress:
                progress(f"confirmation ({direction}): candidate {k} of {len(picked)}")
            transform = candidates[i][0]
            rec = _confirm(transform, c, halves, conf_ctrl, flip, s, class_names)
            rec["discovery_t"] = t_disc
            tested.append(rec)
        if tested:
            adj = holm([r["p_value"] for r in tested])
            for r, a in zip(tested, adj):
                r["p_adjusted"] = float(a)
                lo_a = r["effects"]["log-odds"]["a"]
                r["confirmed"] = bool(a < s.alpha and lo_a["ci_low"] is not None and lo_a["ci_low"] > 0)
        confirmed = sorted((r for r in tested if r["confirmed"]),
                           key=lambda r: -r["effects"]["log-odds"]["diff"]["mean"])
        out[direction] = DirectionSearch(direction, confirmed, tested, n_pairs)
    return out


def _confirm(transform, c: int, halves: Halves, cache: dict, flip: bool, s: SearchSettings, class_names) -> dict:
    from scipy import stats

    xc, yc = halves.x[1], np.asarray(halves.y[1])
    keep = torch.from_numpy(yc != c)
    res = {}
    for tag, predict in (("a", halves.predict_a[1]), ("b", halves.predict_b[1])):
        pr, lo, cache[tag] = per_model_effects(predict, xc, yc, transform, cache.get(tag))
        res[tag] = (pr[:, c], lo[:, c], float(cache[tag][:, keep, c].double().mean()))
    first, second = ("b", "a") if flip else ("a", "b")
    (pa, la, ca), (pb, lb, cb) = res[first], res[second]
    kw = {"level": s.level, "n_resamples": s.n_resamples, "seed": s.seed}
    p = float(stats.ttest_ind(la, lb, equal_var=False, alternative="greater").pvalue) if len(la) > 1 and len(lb) > 1 \
        else float("nan")
    name = str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)
    from modeldiff.counterfactual.library import short_label

    return {"transform": repr(transform), "label": short_label(transform), "params": _params(transform),
            "target_class": c, "target_name": name,
            "n_inputs": int(keep.sum()), "control_a": ca, "control_b": cb,
            "effects": {"log-odds": compare_effects(la, lb, **kw).to_dict(),
                        "probability": compare_effects(pa, pb, **kw).to_dict()},
            "p_value": p if np.isfinite(p) else 1.0, "unit": UNIT}


def _params(t) -> dict:
    out = {}
    for k, v in dict(getattr(t, "params", {})).items():
        out[k] = list(v) if isinstance(v, tuple) else (f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else v)
    return out


# -- building the halves from stores ----------------------------------------------------------------

def model_halves(rows: Sequence[int]) -> tuple[list[int], list[int]]:
    """Discovery = first half of the rows, confirmation = the second half."""
    rows = [int(r) for r in rows]
    if len(rows) < 4:
        from datamodels.base.errors import UserError
        raise UserError(f"the search needs at least 4 models with saved weights per algorithm, got {len(rows)}")
    return rows[: len(rows) // 2], rows[len(rows) // 2:]


def input_halves(y: np.ndarray, n_per_half: int, seed: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of test rows (from ``rows``, default all), at most ``n_per_half`` each."""
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    perm = np.random.default_rng(seed).permutation(rows)
    half = min(n_per_half, len(perm) // 2)
    return np.sort(perm[:half]), np.sort(perm[half:2 * half])


class LoadedModels:
    """Predictor over some of a store's models, loaded once (the search calls it hundreds of
    times): ``x[n, C, H, W] -> probabilities [n_models, n, K]`` (softmax in float64)."""

    def __init__(self, store, indices, device="cpu", batch_size: int = 512, per_pass: int = 16):
        self.nets = [store.load_ensemble(list(indices[i:i + per_pass]), device)
                     for i in range(0, len(indices), per_pass)]
        self.device, self.batch_size, self.indices = device, batch_size, list(indices)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from datamodels.training.ensemble_trainer import predict_logits

        outs = []
        for net in self.nets:
            dtype = next(net.parameters()).dtype
            outs.append(predict_logits(net, torch.as_tensor(x), self.device, dtype, self.batch_size).double()
                        .softmax(-1).cpu())
        return torch.cat(outs, 0)


def store_halves(store_a, store_b, data, *, n_inputs: int = 400, seed: int = 0, device="cpu", rows=None,
                 max_models: int | None = None) -> Halves:
    """:class:`Halves` from two stores: model halves by :func:`model_halves` (at most
    ``max_models`` each), inputs by :func:`input_halves` (from test ``rows``, default all)."""
    preds = []
    for store in (store_a, store_b):
        usable = [int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i))]
        d, c = model_halves(usable)
        d, c = (d[:max_models], c[:max_models]) if max_models else (d, c)
        preds.append((LoadedModels(store, d, device), LoadedModels(store, c, device)))
    y = data.y_test.numpy()
    i1, i2 = input_halves(y, n_inputs, seed, rows)
    x = (data.x_test[torch.from_numpy(i1)], data.x_test[torch.from_numpy(i2)])
    return Halves(preds[0], preds[1], x, (y[i1], y[i2]))


def overlay_candidates(fits: dict, x_train, y_train, n_components: int = 3, top_k: int = 40) -> list[tuple]:
    """Data-derived overlays of the top components of each direction (both signs), with their classes."""
    from modeldiff.counterfactual.candidates import overlay_from_component

    out = []
    for name, fit in fits.items():
        for j in range(min(n_components, len(fit.components_))):
            for sign in (1, -1):
                t, target, _ = overlay_from_component(fit.components_[j], x_train, y_train, top_k=top_k, sign=sign,
                                                      name=f"{name} component {j}")
                out.append((t, target))
    return out

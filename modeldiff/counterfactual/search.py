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
   ranked (``SearchSettings.ranking``, :mod:`modeldiff.counterfactual.ranking`) by the lower
   confidence bound of A's class-specific log-odds effect over B's (``"effect"``), over three times
   B's (``"exclusive"``: what A relies on and B does not), or by ``min(t_Welch(A − B), t(A))``
   (``"t"``); the whole ranking is kept (``DirectionSearch.ranking``).
2. **Confirmation** of the top ``n_confirm`` (``classes_per_transform`` target classes per
   transform; with ``distinct``, near-copies of a better-ranked candidate skipped:
   :mod:`modeldiff.counterfactual.distinct`) on the *other*
   half of the models and the *other* half of the inputs. Disjoint models make the
   confirmation p-value valid (the CI is over models, the unit the claim is about: "the
   models this algorithm trains"); disjoint inputs keep the search from picking transforms
   tuned to particular images. One-sided Welch p-values (A's log-odds effect > B's) are
   Holm-adjusted over the ``2 * n_confirm`` tested in both directions (:func:`judge`): the study's
   claim "a distinguishing transformation was confirmed" is made at family-wise level ``alpha``.
3. A transform is **confirmed** for the direction when, in the confirmation half, its
   Holm-adjusted p < ``alpha`` (A's effect exceeds B's) and A's own log-odds effect CI lies
   above 0 (the transform pushes A's models towards the class: a larger *drop* under B is
   not evidence that A relies on it). The headline is the confirmed transform with the largest A−B
   log-odds difference (under ``"exclusive"``: the largest exclusive score on the confirmation half,
   ``confirmation_score``), or "no distinguishing transformation confirmed". Each tested record
   also carries its practical size (``practical``: probability change, share of predictions
   flipped to the class, and whether the A−B difference is negligible in probability).

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
from modeldiff.counterfactual.halves import Halves, LoadedModels, input_halves, model_halves, store_halves  # noqa: F401 (re-exported)
from modeldiff.counterfactual.ranking import CLASSES_PER_TRANSFORM, DEFAULT_RANKING
from modeldiff.counterfactual.screen import SCREEN_KEEP, SCREEN_MODELS, Discovery, allowed_classes, kept_indices

DIRECTIONS = ("a_minus_b", "b_minus_a")
UNIT = "log-odds"  # the unit of ranking, testing and the verdict
_EPS = 1e-6
NOTHING = "no distinguishing transformation confirmed"
DISCOVERY_BATCH = 2048  # inputs per predictor call in discovery (several candidates' inputs at once)
LIBRARY_MATCHES = 3  # library transforms proposed per signed component (overlay_candidates)


@dataclass
class SearchSettings:
    n_confirm: int = 5            # candidates taken from discovery to confirmation, per direction
    alpha: float = 0.05           # family-wise level of the Holm-adjusted confirmation
    level: float = 0.95           # CI level
    n_inputs: int = 400           # test inputs per half (at most)
    n_resamples: int = 2000       # bootstrap resamples for the CIs
    seed: int = 0
    ranking: str = DEFAULT_RANKING  # discovery ranking: "exclusive", "effect" or "t" (modeldiff.counterfactual.ranking)
    screen_keep: int = SCREEN_KEEP  # candidates per direction the screening keeps (0: no screening; Halves.screen)
    classes_per_transform: int = CLASSES_PER_TRANSFORM  # (transform, class) pairs ranked per transform
    distinct: bool = False  # confirm distinct findings: skip near-copies of a better-ranked one (counterfactual.distinct)

    def __post_init__(self):
        check_search_values(alpha=self.alpha, n_inputs=self.n_inputs, n_confirm=self.n_confirm,
                            n_resamples=self.n_resamples, level=self.level, screen_keep=self.screen_keep,
                            classes_per_transform=self.classes_per_transform)


def check_search_values(*, alpha: float, n_inputs: int, n_confirm: int, n_resamples: int, level: float = 0.95,
                        screen_keep: int = SCREEN_KEEP, screen_models: int = SCREEN_MODELS,
                        classes_per_transform: int = CLASSES_PER_TRANSFORM, name=lambda key: key) -> None:
    """The one rule for the search's numbers (CLI flags, study YAML, Python): a one-line :class:`UserError`
    naming the setting as ``name(key)`` (e.g. ``--n-inputs`` or ``search.n_inputs``)."""
    import math

    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 < alpha < 1):
        raise UserError(f"{name('alpha')} is a family-wise error level and must be in (0, 1), got {alpha}")
    if not 0 < level < 1:
        raise UserError(f"{name('level')} (a confidence level) must be in (0, 1), got {level}")
    for key, value, least in (("n_inputs", n_inputs, 2), ("n_confirm", n_confirm, 1), ("n_resamples", n_resamples, 1),
                              ("classes_per_transform", classes_per_transform, 1)):
        if int(value) != value or value < least:
            raise UserError(f"{name(key)} must be an integer >= {least}, got {value}")
    for key, value in (("screen_keep", screen_keep), ("screen_models", screen_models)):
        if int(value) != value or value < 0:
            raise UserError(f"{name(key)} must be an integer >= 0 (0: no screening), got {value}")
    if screen_keep and screen_keep < n_confirm:
        raise UserError(f"{name('screen_keep')} ({screen_keep}) must be at least {name('n_confirm')} ({n_confirm}), "
                        "or 0 for no screening")


@dataclass
class DirectionSearch:
    direction: str
    confirmed: list = field(default_factory=list)   # dicts, best first
    tested: list = field(default_factory=list)      # every confirmation-stage result (dicts)
    candidates_tested: int = 0                      # (transform, class) pairs ranked in discovery
    unit: str = UNIT
    ranking: list = field(default_factory=list)     # every candidate at its best class(es), best first (dicts)
    ranking_rule: str = ""
    screening: dict = field(default_factory=dict)   # {"models", "keep", "screened_out"} when the screening ran

    @property
    def headline(self) -> str:
        if not self.confirmed:
            return NOTHING
        return describe(self.confirmed[0])

    def to_dict(self) -> dict:
        return {"direction": self.direction, "unit": self.unit, "headline": self.headline,
                "confirmed": self.confirmed, "tested": self.tested, "candidates_tested": self.candidates_tested,
                "ranking_rule": self.ranking_rule, "ranking": self.ranking, "screening": self.screening}


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
    return (*_effects(control, treated, y), control)


def _effects(control: torch.Tensor, treated: torch.Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model ``(probability, log-odds)`` effects ``[m, K]`` from probabilities ``[m, n, K]``."""
    (pc, lc), (pt, lt) = _units(control), _units(treated)
    w = _class_weights(y, control.shape[-1])
    return torch.einsum("mik,ik->mk", pt - pc, w).numpy(), torch.einsum("mik,ik->mk", lt - lc, w).numpy()


def _discover(predicts: tuple, x: torch.Tensor, y: np.ndarray, candidates: Sequence[tuple], progress,
              stage: str = "discovery") -> tuple[list, list]:
    """Discovery log-odds effects per candidate ``(e_a [m, K], e_b [m, K])``: several candidates'
    transformed inputs go through each predictor in one call (at most ``DISCOVERY_BATCH`` inputs); also
    returns the control probabilities of each predictor."""
    controls = [torch.as_tensor(p(x)) for p in predicts]
    n, per = len(x), max(1, DISCOVERY_BATCH // max(len(x), 1))
    out, said = [], -1e9
    for s0 in range(0, len(candidates), per):
        if progress and time.monotonic() - said > 2:  # a line every ~2 s, whatever a candidate costs
            said = time.monotonic()
            progress(f"{stage}: candidate {s0 + 1}/{len(candidates)}")
        group = candidates[s0:s0 + per]
        xt = torch.cat([t(x) for t, _ in group])
        treated = [torch.as_tensor(p(xt)) for p in predicts]
        for j in range(len(group)):
            out.append(tuple(_effects(c, t[:, j * n:(j + 1) * n], y)[1] for c, t in zip(controls, treated)))
    return out, controls


def search(halves: Halves, candidates: Sequence[tuple], settings: SearchSettings | None = None,
           class_names=None, progress: Callable[[str], None] | None = None) -> dict[str, DirectionSearch]:
    """Run discovery and confirmation for both directions (see the module docstring).

    ``candidates``: ``(transform, target_class or None)`` pairs (None: every class is tried).
    Returns ``{"a_minus_b": DirectionSearch, "b_minus_a": DirectionSearch}``.
    """
    if not candidates:
        raise ValueError("the search needs at least one candidate transform")
    from modeldiff.counterfactual.ranking import ranking_ratio

    s = settings or SearchSettings()
    disc = discover(halves, candidates, progress, s.screen_keep, ranking_ratio(s.ranking))
    return confirm(halves, candidates, disc, settings, class_names, progress)


def discover(halves: Halves, candidates: Sequence[tuple], progress=None, keep: int = SCREEN_KEEP,
             ratio: float = 1.0) -> Discovery:
    """The discovery stage: per candidate ``(e_a [m, K], e_b [m, K])`` log-odds effects on the
    discovery halves (one pass, whatever the ranking; :func:`confirm` ranks and confirms).

    With ``halves.screen`` and more than ``keep`` candidates, every candidate is first screened on
    the screening models and only the ``keep`` best of each direction (by the ranking's ``ratio``) get
    the full pass (:mod:`modeldiff.counterfactual.screen`); the others keep their screening effects
    and are marked ``screened_out``.
    """
    xd, yd = halves.x[0], np.asarray(halves.y[0])
    full = (halves.predict_a[0], halves.predict_b[0])
    if halves.screen is None or not keep or len(candidates) <= keep:
        return Discovery(_discover(full, xd, yd, candidates, progress)[0])
    first = _discover(tuple(halves.screen), xd, yd, candidates, progress, "screening")[0]
    kept = kept_indices(first, allowed_classes(candidates, first[0][0].shape[-1]), keep, ratio)
    second = _discover(full, xd, yd, [candidates[i] for i in kept], progress)[0]
    out = list(first)
    for i, effects in zip(kept, second):
        out[i] = effects
    return Discovery(out, screened_out=sorted(set(range(len(candidates))) - set(kept.tolist())))


def confirm(halves: Halves, candidates: Sequence[tuple], disc: list, settings: SearchSettings | None = None,
            class_names=None, progress=None) -> dict[str, DirectionSearch]:
    """Rank the discovery effects ``disc`` (:func:`discover`) and confirm the top ones, both directions."""
    s = settings or SearchSettings()
    k = disc[0][0].shape[-1]
    allowed = allowed_classes(candidates, k)
    n_pairs = int(sum(len(a) for a in allowed))
    conf_ctrl = {}
    from modeldiff.counterfactual.distinct import finding_key, pick_distinct
    from modeldiff.counterfactual.library import short_label
    from modeldiff.counterfactual.ranking import rank_candidates

    hw = tuple(halves.x[0].shape[-2:])
    keys = [finding_key(t, _params(t), hw) for t, _ in candidates] if s.distinct else []
    found = {}
    for direction in DIRECTIONS:
        flip = direction == "b_minus_a"
        ranked = rank_candidates(disc, allowed, flip, s.ranking, s.level, getattr(disc, "screened_out", ()),
                                 s.classes_per_transform)
        for r, row in enumerate(ranked, 1):
            row.update(rank=r, label=short_label(candidates[row["index"]][0]))
        picked = pick_distinct(ranked, keys, s.n_confirm) if s.distinct else ranked[: s.n_confirm]
        tested = []
        for k, row in enumerate(picked, 1):
            if progress:
                progress(f"confirmation ({direction}): candidate {k} of {len(picked)}")
            transform = candidates[row["index"]][0]
            rec = _confirm(transform, row["target_class"], halves, conf_ctrl, flip, s, class_names)
            rec.update(discovery_t=row["t"], discovery_score=row["score"], discovery_rank=row["rank"])
            tested.append(rec)
        found[direction] = (ranked, tested)
    confirmed = judge({d: tested for d, (_, tested) in found.items()}, s.alpha,
                      "confirmation_score" if s.ranking == "exclusive" else "diff")
    return {d: DirectionSearch(d, confirmed[d], tested, n_pairs, ranking=ranked, ranking_rule=s.ranking,
                               screening=_screening(disc, s.screen_keep))
            for d, (ranked, tested) in found.items()}


def judge(tested: dict, alpha: float, order: str = "diff") -> dict:
    """Holm over every tested record of both directions (the study's family: "a distinguishing
    transformation was confirmed" is one claim about the two algorithms), then the confirmation rule.

    ``tested``: ``{direction: [records with "p_value" and "effects"]}``; sets each record's
    ``p_adjusted`` and ``confirmed`` in place and returns ``{direction: confirmed records}``, largest
    A−B log-odds difference first (``order="diff"``) or largest ``confirmation_score`` first
    (``order="confirmation_score"``: the ranking's score on the confirmation half).
    """
    if order not in ("diff", "confirmation_score"):
        raise ValueError(f"order must be 'diff' or 'confirmation_score', got {order!r}")
    flat = [r for d in tested for r in tested[d]]
    for r, a in zip(flat, holm([r["p_value"] for r in flat]) if flat else []):
        lo_a = r["effects"]["log-odds"]["a"]
        r["p_adjusted"] = float(a)
        r["confirmed"] = bool(a < alpha and lo_a["ci_low"] is not None and lo_a["ci_low"] > 0)
    key = (lambda r: -r["effects"]["log-odds"]["diff"]["mean"]) if order == "diff" else \
        (lambda r: -r["confirmation_score"])
    return {d: sorted((r for r in tested[d] if r["confirmed"]), key=key) for d in tested}


def _screening(disc, keep: int) -> dict:
    """What the screening did: models per algorithm it used, candidates kept per direction, candidates it dropped."""
    dropped = sorted(getattr(disc, "screened_out", ()))
    if not dropped:
        return {}
    return {"models": int(disc[dropped[0]][0].shape[0]), "keep": int(keep), "screened_out": len(dropped)}


def _confirm(transform, c: int, halves: Halves, cache: dict, flip: bool, s: SearchSettings, class_names) -> dict:
    from scipy import stats

    from modeldiff.counterfactual.ranking import flip_share, practical_size, scores

    xc, yc = halves.x[1], np.asarray(halves.y[1])
    keep = torch.from_numpy(yc != c)
    res, flips, every = {}, {}, {}
    treated = transform(xc)
    for tag, predict in (("a", halves.predict_a[1]), ("b", halves.predict_b[1])):
        pr, lo, cache[tag] = per_model_effects(predict, xc, yc, lambda _x: treated, cache.get(tag))
        res[tag] = (pr[:, c], lo[:, c], float(cache[tag][:, keep, c].double().mean()))
        every[tag] = lo
        flips[tag] = flip_share(cache[tag].numpy(), torch.as_tensor(predict(treated)).numpy(), yc, c)
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
            "practical": practical_size(pa, pb, flips[first], flips[second]),
            "confirmation_score": float(scores(every[first], every[second], s.ranking, s.level)[c]),
            "p_value": p if np.isfinite(p) else 1.0, "unit": UNIT}


def _params(t) -> dict:
    out = {}
    for k, v in dict(getattr(t, "params", {})).items():
        out[k] = list(v) if isinstance(v, tuple) else (f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else v)
    return out


def overlay_candidates(fits: dict, x_train, y_train, n_components: int = 3, top_k: int = 40,
                       library=(), n_best: int = LIBRARY_MATCHES) -> list[tuple]:
    """Data-derived candidates of the top components of each direction (both signs), with their classes:
    the overlay of the top training images, and the ``n_best`` transforms of ``library`` (fixed-place
    patches and strokes) that best draw what those images share
    (:func:`modeldiff.counterfactual.candidates.library_match`)."""
    from modeldiff.counterfactual.candidates import library_match, overlay_from_component

    out = []
    for name, fit in fits.items():
        for j in range(min(n_components, len(fit.components_))):
            for sign in (1, -1):
                t, target, _ = overlay_from_component(fit.components_[j], x_train, y_train, top_k=top_k, sign=sign,
                                                      name=f"{name} component {j}")
                out.append((t, target))
                if library:
                    out += library_match(fit.components_[j], x_train, y_train, library, top_k=top_k, sign=sign,
                                         n_best=n_best)
    return out

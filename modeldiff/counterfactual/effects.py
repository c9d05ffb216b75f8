"""Counterfactual tests: does a transformation move A's models and not B's?

For an input transformation T and a target class c, each model's effect is
``mean_i [Pr(c | do(T(x_i))) − Pr(c | x_i)]`` over the chosen test inputs; the effects of
the models of A and of B give each algorithm's mean effect with a bootstrap CI and the
A−B difference with its CI and p-value (see `modeldiff.counterfactual.effect_stats`).

Models are reached through a *predictor*: any callable ``predict_proba(x[n, *input_shape]) ->
Tensor[n_models, n, K]`` (class probabilities), so the statistics run as well on simulated
outputs as on any `datamodels.modelset.ModelSet` — a store, or models trained elsewhere
(adapter: `store_predictor`). Transformations are any callables ``x -> x'`` of the same shape:
images (patches, overlays...) or, for other data, the user's own functions.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from modeldiff.counterfactual.effect_stats import EffectComparison, compare_effects

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CounterfactualResult:
    """One transformation tested on A and B."""
    transform: str
    target_class: int
    n_inputs: int
    comparison: EffectComparison
    effects_a: np.ndarray      # [n_models_a] per-model effects
    effects_b: np.ndarray      # [n_models_b]
    control_a: float           # mean Pr(target | control) over A's models and the inputs
    control_b: float
    params: dict = field(default_factory=dict)
    log_odds: EffectComparison | None = None  # the same test in log-odds (margin) units of the class

    def to_dict(self) -> dict:
        return {"transform": self.transform, "params": {k: _plain(v) for k, v in self.params.items()},
                "target_class": self.target_class, "n_inputs": self.n_inputs,
                "control_a": self.control_a, "control_b": self.control_b,
                **self.comparison.to_dict(),
                **({"log_odds": self.log_odds.to_dict()} if self.log_odds is not None else {}),
                "effects_a": self.effects_a.tolist(), "effects_b": self.effects_b.tolist()}


@dataclass
class SizeSweep:
    """Effects of one patch transform at several sizes."""
    sizes: list[int]
    results: list[CounterfactualResult]

    def table(self) -> list[dict]:
        """One row per size: effects of A and B with CIs, the difference, its CI and p-value."""
        rows = []
        for size, r in zip(self.sizes, self.results):
            c = r.comparison
            rows.append({"size": size,
                         "effect_a": c.a.mean, "ci_a": [c.a.ci_low, c.a.ci_high],
                         "effect_b": c.b.mean, "ci_b": [c.b.ci_low, c.b.ci_high],
                         "diff": c.diff.mean, "ci_diff": [c.diff.ci_low, c.diff.ci_high],
                         "p_value": c.diff.p_value})
        return rows


def _plain(v):
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    return list(v) if isinstance(v, tuple) else v


def _target_proba(predict: Predictor, x: torch.Tensor, target_class: int, who: str) -> torch.Tensor:
    out = torch.as_tensor(predict(x))
    if out.ndim != 3 or out.shape[1] != x.shape[0]:
        raise ValueError(f"predictor {who} returned shape {tuple(out.shape)}; expected [n_models, {x.shape[0]}, K]")
    if not 0 <= target_class < out.shape[2]:
        raise ValueError(f"target class {target_class} is out of range for {out.shape[2]} classes")
    p = out[:, :, target_class].double().cpu()
    if not torch.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError(f"predictor {who} must return probabilities in [0, 1] (apply softmax to logits)")
    return p


def model_effects(predict: Predictor, x: torch.Tensor, transform: Callable, target_class: int,
                  control: torch.Tensor | None = None, who: str = "") -> tuple[np.ndarray, torch.Tensor]:
    """Per-model effects ``[n_models]`` of ``transform`` and the control probabilities ``[n_models, n]``."""
    effects, control, _ = _effects_both_units(predict, x, transform, target_class, control, who)
    return effects, control


def _effects_both_units(predict: Predictor, x: torch.Tensor, transform: Callable, target_class: int,
                        control: torch.Tensor | None = None, who: str = ""):
    """Per-model effects in probability ``[n_models]``, the control ``[n_models, n]`` and the
    per-model effects in log-odds units ``[n_models]``."""
    if control is None:
        control = _target_proba(predict, x, target_class, who)
    treated = _target_proba(predict, transform(x), target_class, who)
    if treated.shape != control.shape:
        raise ValueError(f"predictor {who} changed its number of models between calls")
    log_odds = (_log_odds(treated) - _log_odds(control)).mean(dim=1).numpy()
    return (treated - control).mean(dim=1).numpy(), control, log_odds


def _log_odds(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(p / (1 − p)) with p clipped to [eps, 1 − eps]: for softmax models the class's margin."""
    p = p.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def counterfactual_effects(predict_a: Predictor, predict_b: Predictor, x: torch.Tensor, transform: Callable,
                           target_class: int, *, level: float = 0.95, n_resamples: int = 9999, seed: int = 0,
                           _controls: tuple | None = None) -> CounterfactualResult:
    """Test ``transform`` on inputs ``x[n, *input_shape]`` for target class ``target_class``.

    Returns per-model effects of A and B, each algorithm's mean effect with a bootstrap CI
    at ``level`` over its models, and the A−B difference (CI, Welch p-value).
    """
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [n, *input_shape], got {tuple(x.shape)}")
    ctrl_a, ctrl_b = _controls if _controls is not None else (None, None)
    eff_a, ctrl_a, lo_a = _effects_both_units(predict_a, x, transform, target_class, ctrl_a, "A")
    eff_b, ctrl_b, lo_b = _effects_both_units(predict_b, x, transform, target_class, ctrl_b, "B")
    comparison = compare_effects(eff_a, eff_b, level=level, n_resamples=n_resamples, seed=seed)
    log_odds = compare_effects(lo_a, lo_b, level=level, n_resamples=n_resamples, seed=seed)
    return CounterfactualResult(repr(transform), int(target_class), int(x.shape[0]), comparison, eff_a, eff_b,
                                float(ctrl_a.mean()), float(ctrl_b.mean()), dict(getattr(transform, "params", {})),
                                log_odds)


def patch_size_sweep(predict_a: Predictor, predict_b: Predictor, x: torch.Tensor, transform, target_class: int,
                     sizes: Sequence[int], **kwargs) -> SizeSweep:
    """`counterfactual_effects` of ``transform.with_params(size=s)`` for each size (controls computed once)."""
    if "size" not in getattr(transform, "params", {}):
        raise ValueError(f"{transform!r} has no size parameter to sweep")
    controls = (_target_proba(predict_a, x, target_class, "A"), _target_proba(predict_b, x, target_class, "B"))
    from datamodels.base.progress import progress_bar  # each size costs a full test on both algorithms' models

    results = [counterfactual_effects(predict_a, predict_b, x, transform.with_params(size=int(s)), target_class,
                                      _controls=controls, **kwargs)
               for s in progress_bar(sizes, desc="patch sizes", unit="size", leave=False)]
    return SizeSweep([int(s) for s in sizes], results)


def select_inputs(labels, target_class: int, source_classes: Sequence[int] | None = None) -> np.ndarray:
    """Indices of test inputs to transform: labels in ``source_classes`` (default: every class but the target)."""
    labels = np.asarray(labels)
    if source_classes is None:
        keep = labels != target_class
    else:
        keep = np.isin(labels, np.asarray(list(source_classes)))
    return np.flatnonzero(keep)


def store_predictor(store, *, indices=None, device="cpu", batch_size: int = 512) -> Predictor:
    """Adapter: any `datamodels.modelset.ModelSet` (a Store, its path, ``ModelSet.from_folder``...)
    as a predictor of class probabilities ``x[n, *input_shape] -> [n_models, n, K]``."""
    from datamodels.modelset import as_modelset  # lazy: only the CLI and real studies need it

    store = as_modelset(store)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return store.predict_proba(x, indices=indices, device=device, batch_size=batch_size)

    predict.store = store
    return predict

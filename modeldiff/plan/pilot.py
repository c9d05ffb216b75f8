"""``modeldiff plan --pilot STORE``: the first third of the pilot's models with weights, featurised once with TRAK,
give per-model scores on at most ``MAX_TEST`` sampled test examples, hence both curves of :mod:`.curve`: the LDS
against the other (held-out) models' margins, and the precision of the scores themselves."""
from __future__ import annotations

import numpy as np
import torch

from datamodels.base.errors import UserError

FACTORS = (1, 2, 4, 8)  # multiples of the pilot's attributed models shown in the plan
MAX_TEST = 300  # test examples sampled (an unbiased estimate of the mean over all of them)


def trak_pilot(store, proj_dim: int, batch_size: int, device: str, seed: int = 0):
    """``(lds_curve, precision_curve)`` from ``store`` (a Store)."""
    from datamodels.attribution.lds import average_over_seeds

    valid = np.asarray(store.valid_indices(warn=False))
    attributed = np.array([i for i in valid if store.has_weights(int(i))], dtype=np.int64)
    attributed = attributed[:max(3, len(attributed) // 3)]
    held_out = np.setdiff1d(valid, attributed)
    if len(attributed) < 3 or len(np.unique(store.masks[held_out], axis=0)) < 3:
        raise UserError(f"pilot store {store.path} has {len(valid)} usable models: the learning curve needs at least "
                        "3 attributed (with weights) and 3 held-out models; train a larger pilot (e.g. --models 32)")
    data = store.load_dataset()
    rows = np.sort(np.random.default_rng(seed).choice(data.n_test, min(MAX_TEST, data.n_test), replace=False))
    scores, q = per_model_scores(store, attributed, data, rows, proj_dim, batch_size, device)
    masks, margins = average_over_seeds(store.masks[held_out], np.asarray(store.test_margins[held_out])[:, rows])
    return curves(scores * q.mean(0)[None, None, :], masks, margins)


def curves(weighted: np.ndarray, masks: np.ndarray, margins: np.ndarray):
    """``(lds_curve, precision_curve)`` from per-model weighted scores ``[M, T, n_train]`` and the held-out
    models' distinct ``masks[U, n_train]`` with their mean ``margins[U, T]``."""
    from modeldiff.plan.curve import fit_curve

    lds = fit_curve(np.einsum("un,mtn->mut", masks.astype(np.float64), weighted), margins)
    return lds, fit_curve(weighted.transpose(0, 2, 1))


def per_model_scores(store, attributed, data, rows, proj_dim: int, batch_size: int, device: str):
    """Per-model TRAK scores ``[M, len(rows), n_train]`` (before the out-to-loss weights) and the weights
    ``q[M, n_train]`` of the ``attributed`` models."""
    from datamodels.attribution.trak import TRAK
    from datamodels.base.progress import step_bar

    est = TRAK(device=device, progress=False, proj_dim=proj_dim, batch_size=batch_size)
    est.proj_dim_ = proj_dim
    rows = torch.as_tensor(rows)
    scores, qs = [], []
    with step_bar("pilot: featurising", len(attributed)) as bar:
        for i in attributed:
            feats, phi_te, q = est._per_model(store.load_model(int(i), device), int(i), data.x_train, data.y_train,
                                              data.x_test[rows], data.y_test[rows])
            scores.append((phi_te @ feats.T).double().cpu().numpy())
            qs.append(q.double().cpu().numpy())
            bar.update(1)
    return np.stack(scores), np.stack(qs)


def curve_json(curve, name: str, target: float | None) -> dict:
    """The curve at ``FACTORS`` x the pilot's models, and the models needed for ``target`` when given."""
    pool = curve.pilot_models
    out = {**curve.to_dict(), "predicted": [{"models": f * pool, **dict(zip((name, "low", "high"),
                                                                             curve.predict(f * pool)))}
                                            for f in FACTORS]}
    if target is not None:
        out.update(target=target, models_needed=list(curve.models_for(target)))
    return out


def apply_pilot(req) -> dict:
    """Fit the pilot's curves for ``req`` (a PlanRequest); with a target, plan for the models it needs (the
    larger count when both targets are given). Returns the plan's ``learning_curve`` entry."""
    from datamodels.store import Store
    from modeldiff.plan.planner import is_recipe
    from modeldiff.studies.config import AttributionSpec, load_study

    spec = AttributionSpec() if is_recipe(req.target) else load_study(req.target).attribution
    if spec.method != "trak":
        raise UserError(f"--pilot models an average of per-model attributions (TRAK); this study uses "
                        f"{spec.method}: plan without --pilot")
    lds, precision = trak_pilot(Store.open(req.pilot), spec.proj_dim, spec.batch_size, req.device)
    out = {"method": "trak", "pilot_models": lds.pilot_models, **curve_json(lds, "lds", req.target_lds),
           "precision": curve_json(precision, "precision", req.target_precision)}
    needed = [c["models_needed"][0] for c in (out, out["precision"]) if "models_needed" in c]
    if needed and is_recipe(req.target):
        req.models = max(max(needed), req.models or 0)
    elif needed:
        req.attribution_models = max(needed)
    return out

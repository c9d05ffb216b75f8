"""Comparing two algorithms at equal fit: the study key ``match: {by: train_loss, method: ...}``.

At equal steps a low-noise algorithm is usually less fitted, so "what it relies on" would be "what a
less-fitted model relies on". After both algorithms are trained as their recipes say, the *faster*
one is the one with the lower mean training loss (eval mode, each model on its own subset:
:mod:`datamodels.training.fit`), and the two are matched:

- ``train_slower``: the slower algorithm is trained again from scratch with ``until:
  {train_loss: <the faster one's mean final loss>, max_epochs: E}`` (``match.max_epochs``, default
  4 x its recipe's epochs; its learning-rate schedule laid over ``E``) into ``store_X_matched``;
- ``stop_faster``: both recipes keep a checkpoint every epoch, and each model of the faster
  algorithm is taken at its kept checkpoint closest to the slower one's mean final loss
  (:func:`datamodels.runs.checkpoints.store_at_checkpoint`, ``store_X_matched``), without retraining.

``match.checks_per_epoch: K`` (K > 1) checks the fit inside epochs too (``until.checks_per_epoch``,
:mod:`datamodels.training.fit`), so each model stops within about ``1/K`` of an epoch's change of the
target instead of at an epoch end: ``train_slower`` passes it to the slower algorithm's ``until``;
``stop_faster`` then keeps no checkpoints and instead trains the faster algorithm again (same masks and
seeds) with ``until: {train_loss: <the slower one's mean final loss>, max_epochs: <its recipe's
epochs>, checks_per_epoch: K}``: the schedule laid over its own epochs is its recipe's schedule, so
each model follows its first run exactly and stops at the first check at or below the target, inside
an epoch when need be (the only way to stop a one-epoch, online, algorithm part-way).
``match.stop_at: closest`` (``until.stop_at``) keeps each retrained model at whichever of its two checks
around the target is nearer it, so the matched mean lands on the target instead of up to one check's
drop below it; ``stop_at: nearest`` trains each to the end and keeps its check nearest the target over
the whole run (for losses that jump between checks).

Every later stage (attribution, null, search, diagnostics, counterfactuals) uses the matched stores.
``summary.json`` gets ``match`` (method, which algorithm was slower, the target, the losses before and
after, the relative difference of the mean training losses with a bootstrap CI over models, and
whether that CI lies within ±5 %); every study, matched or not, gets ``algorithms.{a,b}.train_loss``
and ``test_loss`` ``{mean, ci_low, ci_high}`` (95 % bootstrap CI of the mean over models).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.training.fit import check_stop_options

log = get_logger(__name__)

METHODS = ("train_slower", "stop_faster")
TOLERANCE = 0.05  # the acceptance band of the relative difference of mean training losses
BOOTSTRAP = 2000  # resamples of the models for the CIs


@dataclass
class MatchSpec:
    """Match the two algorithms' fit before comparing them (see :mod:`modeldiff.studies.match`)."""
    by: str | None = field(default=None, metadata={"help": "train_loss (empty: no matching)"})
    method: str = field(default="train_slower", metadata={
        "help": "train_slower (train the slower algorithm until the faster one's mean final loss) | stop_faster "
                "(take the faster one's checkpoint closest to the slower one's mean final loss)"})
    max_epochs: int | None = field(default=None, metadata={
        "help": "train_slower: most epochs of the slower algorithm (default 4 x its recipe's epochs)"})
    checks_per_epoch: int = field(default=1, metadata={
        "help": "checks of the fit per epoch (until.checks_per_epoch): 1 = epoch ends; K > 1 stops each model within "
                "~1/K epoch of the target (stop_faster then retrains the faster algorithm instead of checkpoints)"})
    stop_at: str = field(default="first", metadata={
        "help": "where a retrained model stops (until.stop_at): first (the first check at or below the target) | "
                "closest (of that check and the one before, the one nearer the target) | nearest (trained to the end, "
                "kept at its check nearest the target)"})

    def __post_init__(self):
        if self.by is not None and self.by != "train_loss":
            raise UserError(f"match.by must be train_loss, got {self.by!r}")
        if self.method not in METHODS:
            raise UserError(f"match.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.max_epochs is not None and (isinstance(self.max_epochs, bool) or self.max_epochs < 1):
            raise UserError(f"match.max_epochs must be an integer >= 1, got {self.max_epochs!r}")
        check_stop_options("match", self.checks_per_epoch, self.stop_at)
        k = self.checks_per_epoch
        if self.stop_at != "first" and self.method == "stop_faster" and k == 1:
            raise UserError("match.stop_at applies to retrained models: stop_faster at checks_per_epoch 1 takes "
                            "each model's closest epoch checkpoint already; set checks_per_epoch > 1 or remove stop_at")
        if self.by is None and (self.max_epochs is not None or k != 1 or self.stop_at != "first"):
            key = "max_epochs" if self.max_epochs is not None else "checks_per_epoch" if k != 1 else "stop_at"
            raise UserError(f"match.{key} is set but match.by is not: add by: train_loss")
        if self.max_epochs is not None and self.method == "stop_faster":
            raise UserError("match.max_epochs is for train_slower: stop_faster stops the faster algorithm within "
                            "its own epochs; remove max_epochs or use method: train_slower")

    @property
    def active(self) -> bool:
        return self.by is not None

    @property
    def retrains_faster(self) -> bool:
        """``stop_faster`` by retraining to the target with checks inside epochs (instead of checkpoints)."""
        return self.active and self.method == "stop_faster" and self.checks_per_epoch > 1


def mean_ci(values, seed: int = 0) -> dict | None:
    """``{mean, ci_low, ci_high, n}``: the mean of ``values`` with a 95 % bootstrap CI (None when empty)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, v.size, (BOOTSTRAP, v.size))].mean(1)
    return {"mean": float(v.mean()), "ci_low": float(np.quantile(boot, 0.025)),
            "ci_high": float(np.quantile(boot, 0.975)), "n": int(v.size)}


def relative_difference(slower, faster, seed: int = 0) -> dict:
    """``(mean(slower) - mean(faster)) / mean(faster)`` with a 95 % bootstrap CI (models resampled in
    each algorithm independently), ``within`` (the CI inside ±:data:`TOLERANCE`), and ``spread``: for
    each side, the half-width of its own mean's 95 % CI relative to that mean (when one exceeds the band,
    no matching of the means can show it with these models)."""
    s, f = (np.asarray(x, dtype=np.float64) for x in (slower, faster))
    s, f = s[np.isfinite(s)], f[np.isfinite(f)]
    rng = np.random.default_rng(seed)
    bs = s[rng.integers(0, s.size, (BOOTSTRAP, s.size))].mean(1)
    bf = f[rng.integers(0, f.size, (BOOTSTRAP, f.size))].mean(1)
    rel = (bs - bf) / bf
    out = {"mean": float((s.mean() - f.mean()) / f.mean()), "ci_low": float(np.quantile(rel, 0.025)),
           "ci_high": float(np.quantile(rel, 0.975)),
           "spread": {name: float((np.quantile(b, 0.975) - np.quantile(b, 0.025)) / 2 / b.mean())
                      for name, b in (("slower", bs), ("faster", bf))}}
    out["estimate_within"] = bool(abs(out["mean"]) <= TOLERANCE)
    out["within"] = bool(-TOLERANCE <= out["ci_low"] and out["ci_high"] <= TOLERANCE)
    return out


def train_losses(store) -> np.ndarray | None:
    """Final training losses ``[n_valid]`` of a store's valid models (None: not recorded)."""
    values = getattr(store, "fit_values", lambda name: None)("train_loss")
    return None if values is None else np.asarray(values, dtype=np.float64)


def test_losses(store, y_test) -> np.ndarray | None:
    """Mean cross-entropy on the test set ``[n_valid]`` of a store's valid models (from its stored logits)."""
    import torch
    import torch.nn.functional as F

    rows = store.valid_indices(warn=False)
    logits = getattr(store, "test_logits", None)
    if logits is None or len(rows) == 0:
        return None
    lg = torch.from_numpy(np.asarray(logits[rows], dtype=np.float32))
    y = torch.as_tensor(np.asarray(y_test)).long()
    return F.cross_entropy(lg.flatten(0, 1), y.repeat(len(rows)), reduction="none").view(len(rows), -1) \
        .mean(1).double().numpy()


def fit_entries(store, y_test) -> dict:
    """``{train_loss, test_loss}`` entries of one algorithm in summary.json (None when unknown), and ``until``
    (its target and the models that met it or reached max_epochs first) when its recipe trains to a target."""
    tl = train_losses(store)
    te = test_losses(store, y_test)
    out = {"train_loss": None if tl is None else mean_ci(tl), "test_loss": None if te is None else mean_ci(te)}
    recipe = getattr(store, "recipe", None)
    until = getattr(recipe, "until", None)
    if getattr(until, "active", False) and hasattr(store, "fit_counts"):  # counted, never mixed in silently
        counts = store.fit_counts()
        out["until"] = {"train_loss": recipe.until.train_loss, "train_accuracy": recipe.until.train_accuracy,
                        "max_epochs": recipe.until.max_epochs, "met": counts["met"], "hit_max_epochs": counts["hit_max"]}
    return out


def study_store(out, tag: str):
    """Path of algorithm ``tag``'s store in a finished study folder: ``store_<tag>_matched`` when the study
    matched that algorithm's fit, else ``store_<tag>``."""
    from pathlib import Path

    matched = Path(out) / f"store_{tag}_matched"
    return matched if (matched / "metadata.json").is_file() else Path(out) / f"store_{tag}"


def with_checkpoints(cfg, recipes):
    """The recipes a ``stop_faster`` study trains: each keeps a checkpoint every epoch."""
    if not (cfg.match.active and cfg.match.method == "stop_faster") or cfg.match.retrains_faster:
        return recipes
    return [r if "all" in r.keep_checkpoints else r.replace(keep_checkpoints=[*r.keep_checkpoints, "all"])
            for r in recipes]


def match_stores(cfg, stores, recipes, data, out, device) -> tuple[list, dict]:
    """The matched ``[store_a, store_b]`` and the ``match`` entry of summary.json (see the module)."""
    from datamodels.runs.checkpoints import store_at_checkpoint, tags_at_loss

    spec = cfg.match
    losses = [train_losses(s) for s in stores]
    if any(v is None or v.size == 0 for v in losses):
        raise UserError("match needs the training loss of every model: the stores were made before fit records "
                        "existed; train the study into a new --out")
    before = [float(v.mean()) for v in losses]
    slow = 0 if before[0] > before[1] else 1
    fast = 1 - slow
    tag_s, tag_f = "ab"[slow], "ab"[fast]
    stores = list(stores)
    if spec.method == "train_slower":
        target = before[fast]
        max_epochs = spec.max_epochs or 4 * recipes[slow].epochs
        log.info(f"  match train_slower: {tag_s} (mean training loss {before[slow]:.4g}) trained again until "
                 f"{target:.4g}, at most {max_epochs} epochs{_checks(spec)}")
        stores[slow] = _train_until(cfg, recipes[slow], target, max_epochs, spec, data,
                                    out / f"store_{tag_s}_matched", cfg.seeds()[slow], device)
    elif spec.retrains_faster:
        target, recipe = before[slow], recipes[fast]
        log.info(f"  match stop_faster: {tag_f} trained again until {target:.4g} within its {recipe.epochs} "
                 f"epochs{_checks(spec)}")
        stores[fast] = _train_until(cfg, recipe, target, recipe.epochs, spec, data,
                                    out / f"store_{tag_f}_matched", cfg.seeds()[fast], device)
    else:
        target = before[slow]
        tags = tags_at_loss(stores[fast], target, rule="closest")
        log.info(f"  match stop_faster: {tag_f} taken at its checkpoints closest to {target:.4g}")
        stores[fast] = store_at_checkpoint(stores[fast], out / f"store_{tag_f}_matched", tags, data)
    after = [train_losses(s) for s in stores]
    rel = relative_difference(after[slow], after[fast])
    moved = fast if spec.method == "stop_faster" else slow
    counts = stores[moved].fit_counts() if spec.method == "train_slower" or spec.retrains_faster else \
        {"met": None, "hit_max": None}
    info = {"by": spec.by, "method": spec.method, "checks_per_epoch": spec.checks_per_epoch, "stop_at": spec.stop_at,
            "slower": tag_s, "faster": tag_f, "target_loss": target,
            "train_loss_before": {"a": before[0], "b": before[1]},
            "train_loss_after": {"a": float(after[0].mean()), "b": float(after[1].mean())},
            "relative_difference": rel, "within_5_percent": rel["within"],
            "met_target": counts["met"], "hit_max_epochs": counts["hit_max"],
            "models_matched": int(len(after[moved]))}
    info["statement"] = match_statement(info)
    return stores, info


def _checks(spec) -> str:
    checks = f", checking the fit {spec.checks_per_epoch} times an epoch" if spec.checks_per_epoch > 1 else ""
    return checks + {"closest": ", each model kept at whichever of its checks around the target is nearer it",
                     "nearest": ", each model trained to the end and kept at its check nearest the target"
                     }.get(spec.stop_at, "")


def _train_until(cfg, recipe, target: float, max_epochs: int, spec: MatchSpec, data, path, seeds, device):
    """The store of ``recipe`` trained again (same masks and seeds) until ``target``, reopened for reading."""
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store

    recipe = recipe.replace(**{"until.train_loss": target, "until.max_epochs": max_epochs, "until.train_accuracy": None,
                               "until.checks_per_epoch": spec.checks_per_epoch, "until.stop_at": spec.stop_at})
    store = Store.create_or_resume(path, recipe, data, cfg.models, cfg.subset_fraction, seeds)
    fill_store(store, device, cfg.ensemble_size, dataset=data)
    return Store.open(store.path, data)


def match_statement(info: dict) -> str:
    """One sentence on the matching (which method; the losses within 5 % or not)."""
    rel = info["relative_difference"]
    if rel["within"]:
        verdict = "within 5 % of each other"
    elif abs(rel["mean"]) <= TOLERANCE:
        verdict = "NOT shown within 5 % of each other (the estimate is, its 95 % CI is not inside ±5 %)"
    else:
        verdict = "NOT within 5 % of each other"
    after = info["train_loss_after"]
    extra = ""
    kept = "faster" if info["method"] == "train_slower" else "slower"  # the side the matching did not retrain
    spread = rel.get("spread", {}).get(kept, 0.0)
    if not rel["within"] and spread > TOLERANCE:
        extra += (f"; {info[kept]}'s own losses spread so that its mean alone has a 95 % CI of ±{100 * spread:.1f} %: "
                  f"more models, or a matching that trains {info[kept]} to the target, can show the band")
    if info.get("hit_max_epochs"):
        moved = info["faster"] if info["method"] == "stop_faster" else info["slower"]
        extra = f"; {info['hit_max_epochs']} model(s) of {moved} reached max_epochs before the target"
    return (f"matched by {info['by']} ({info['method']}, slower: {info['slower']}): mean training loss "
            f"a {after['a']:.4g} vs b {after['b']:.4g}, relative difference {100 * rel['mean']:+.1f} % "
            f"[{100 * rel['ci_low']:+.1f}, {100 * rel['ci_high']:+.1f}] (95 % CI over models): {verdict}{extra}")

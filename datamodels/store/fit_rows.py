"""The fit half of a store: per model, the training loss it reached, the epochs and steps it ran,
whether it met the recipe's ``until`` target, its loss curve and its kept checkpoints.

Arrays (stores made by this release; earlier stores have none of them and answer None)::

    train_loss [M] float32        eval-mode loss on the model's own subset at its last epoch
    train_accuracy [M] float32
    epochs_run, steps_run [M] int64   (-1: a train_fn that did not report them)
    fit_status [M] uint8          0 no target, 1 met the target, 2 reached max_epochs first
    loss_curve [M, E] float32     training loss at each epoch end that was measured (NaN otherwise)
    checkpoint_records [M, C, 3] float64   (epoch, step, loss) of each kept checkpoint, NaN = none

Checkpoint weights: ``STORE/checkpoints/<tag>/model_XXXXXX.pt`` (one-model state dicts, for the
rows whose weights the store keeps), ``tag`` as :func:`datamodels.training.fit.parse_checkpoints`
names it (``epoch5``, ``train_loss0.5``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodels.base.atomic import atomic_path
from datamodels.base.errors import UserError

FIT_ARRAYS = ("train_loss", "train_accuracy", "epochs_run", "steps_run", "fit_status", "loss_curve",
              "checkpoint_records")


def fit_arrays(n_models: int, epochs: int, n_checkpoints: int) -> dict:
    """``{name: (shape, dtype)}`` of the fit arrays of a store whose models train at most ``epochs``."""
    spec = {"train_loss": ([n_models], "float32"), "train_accuracy": ([n_models], "float32"),
            "epochs_run": ([n_models], "int64"), "steps_run": ([n_models], "int64"),
            "fit_status": ([n_models], "uint8"), "loss_curve": ([n_models, epochs], "float32")}
    if n_checkpoints:
        spec["checkpoint_records"] = ([n_models, n_checkpoints, 3], "float64")
    return spec


def fit_row(fit, j: int, tags: list[str]) -> dict:
    """Model ``j``'s row of a :class:`~datamodels.training.fit.FitRecord` as the store writes it
    (``checkpoints``: ``{tag: (state, epoch, step, loss)}`` of the tags it reached)."""
    return {"train_loss": float(fit.train_loss[j]), "train_accuracy": float(fit.train_accuracy[j]),
            "epochs_run": int(fit.epochs_run[j]), "steps_run": int(fit.steps_run[j]),
            "fit_status": int(fit.status[j]), "loss_curve": fit.curve[j].numpy(),
            "checkpoints": {t: fit.checkpoints[t][j] for t in tags if j in fit.checkpoints.get(t, {})}}


class StoreFit:
    """Fit records of a :class:`~datamodels.store.store.Store` (needs ``path``, ``arrays``, ``recipe``)."""

    def checkpoint_tags(self) -> list[str]:
        from datamodels.training.fit import parse_checkpoints

        return [t for t, _, _ in parse_checkpoints(self.recipe.keep_checkpoints, self.recipe.train_epochs)]

    def checkpoint_path(self, tag: str, i: int) -> Path:
        return self.path / "checkpoints" / tag / f"model_{i:06d}.pt"

    def _write_fit(self, a: dict, i: int, row: dict, keep: bool) -> None:
        """Write model ``i``'s fit ``row`` (:func:`fit_row`) into the writable arrays ``a`` (before its checksum)."""
        for name in ("train_loss", "train_accuracy", "epochs_run", "steps_run", "fit_status"):
            if name in a:
                a[name][i] = row[name]
        if "loss_curve" in a:
            a["loss_curve"][i] = np.asarray(row["loss_curve"], dtype=np.float32)
        if "checkpoint_records" in a:
            rec = np.full((len(self.checkpoint_tags()), 3), np.nan)
            for k, tag in enumerate(self.checkpoint_tags()):
                if tag in row["checkpoints"]:
                    state, epoch, step, loss = row["checkpoints"][tag]
                    rec[k] = (epoch, step, loss)
                    if keep:
                        target = self.checkpoint_path(tag, i)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with atomic_path(target) as tmp:
                            torch.save(state, tmp)
            a["checkpoint_records"][i] = rec
        for name in FIT_ARRAYS:
            if name in a:
                a[name].flush()

    def fit_values(self, name: str, rows=None) -> np.ndarray | None:
        """Array ``name`` (one of :data:`FIT_ARRAYS`) at ``rows`` (default: the valid models), or None
        for a store made before fit records existed."""
        if name not in self.arrays:
            return None
        rows = self.valid_indices(warn=False) if rows is None else np.asarray(rows, dtype=np.int64)
        return np.asarray(self.arrays[name][rows])

    def fit_counts(self) -> dict:
        """``{"met": n, "hit_max": n}`` over the valid models (zeros without a target)."""
        status = self.fit_values("fit_status")
        if status is None:
            return {"met": 0, "hit_max": 0}
        return {"met": int((status == 1).sum()), "hit_max": int((status == 2).sum())}

    def fit_summary(self, rows) -> dict:
        """``train_loss_mean`` (NaN for a store without fit records), ``fit_met``, ``fit_hit_max`` over ``rows``."""
        loss = self.fit_values("train_loss", rows)
        status = self.fit_values("fit_status", rows)
        return {"train_loss_mean": float(np.mean(loss)) if loss is not None and len(loss) else float("nan"),
                "fit_met": 0 if status is None else int((status == 1).sum()),
                "fit_hit_max": 0 if status is None else int((status == 2).sum())}

    def fit_line(self) -> str | None:
        """One line on the ``until`` target: how many models met it and how many reached max_epochs
        first (None when the recipe sets no target)."""
        until = self.recipe.until
        if not until.active:
            return None
        s = self.fit_summary(self.valid_indices(warn=False))
        target = " and ".join(t for t in (
            f"train_loss <= {until.train_loss:g}" if until.train_loss is not None else "",
            f"train_accuracy >= {until.train_accuracy:g}" if until.train_accuracy is not None else "") if t)
        epochs = self.fit_values("epochs_run")
        spread = f", epochs run {int(epochs.min())}-{int(epochs.max())}" if epochs is not None and len(epochs) else ""
        return (f"{self.recipe.name}: until {target}: {s['fit_met']} model(s) met it, {s['fit_hit_max']} reached "
                f"max_epochs {until.max_epochs} first (kept, counted here){spread}; mean training loss "
                f"{s['train_loss_mean']:.4g}")

    def load_checkpoint(self, tag: str, i: int) -> dict:
        """Model ``i``'s state dict at checkpoint ``tag`` (a one-line error when it was not kept)."""
        file = self.checkpoint_path(tag, i)
        if tag not in self.checkpoint_tags():
            raise UserError(f"store {self.path} keeps no checkpoint {tag!r}: its checkpoints are "
                            f"{', '.join(self.checkpoint_tags()) or 'none'} (recipe keep_checkpoints)")
        if not file.is_file():
            raise UserError(f"model {i} of {self.path} has no checkpoint {tag!r} (it never reached it, or its "
                            f"weights are not kept)")
        return torch.load(file, map_location="cpu", weights_only=True)

"""The store: one directory per algorithm run, rows = models, safe to resume and share.

Layout::

    STORE/metadata.json        recipe, dataset identity and statistics, array spec, versions
    STORE/<array>.npy          preallocated memory-mapped arrays (see ``ARRAYS``)
    STORE/weights/model_XXXXXX.pt   one-model state dicts (all models or the first ``save_weights``)

A row is committed in this order: outputs, weights, checksum, then ``status`` (0 pending,
1 done, 2 diverged). A process killed at any point leaves the row pending, and it is retrained
on resume; a done row whose bytes no longer match its checksum is *corrupted*: reported,
excluded from :meth:`Store.valid_indices`, and retrained on resume.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from datamodels.data.dataset import Dataset
from datamodels.training.recipe import Recipe, recipe_from_dict
from datamodels.store.metadata import build_metadata, check_compatible
from modeldiff.errors import UserError

PENDING, DONE, DIVERGED = 0, 1, 2
CHECKED_ARRAYS = ("masks", "test_margins", "test_logits", "train_margins", "accuracy", "seeds")


def array_spec(n_models: int, n_train: int, n_test: int, n_classes: int, train_margins: bool) -> dict:
    spec = {
        "masks": ([n_models, n_train], "bool"),
        "seeds": ([n_models], "int64"),
        "test_margins": ([n_models, n_test], "float32"),
        "test_logits": ([n_models, n_test, n_classes], "float32"),
        "accuracy": ([n_models], "float32"),
        "status": ([n_models], "uint8"),
        "checksums": ([n_models], "uint64"),
    }
    if train_margins:
        spec["train_margins"] = ([n_models, n_train], "float32")
    return {k: {"shape": s, "dtype": d} for k, (s, d) in spec.items()}


def draw_masks_and_seeds(seed: int, n_models: int, n_train: int, fraction: float):
    """Model ``i``'s mask and seed depend only on ``(seed, i)``: exactly ``round(fraction * n_train)`` ones."""
    m = max(1, round(fraction * n_train))
    masks = np.zeros((n_models, n_train), dtype=bool)
    seeds = np.zeros(n_models, dtype=np.int64)
    for i in range(n_models):
        ss = np.random.SeedSequence([seed, i])
        rng = np.random.default_rng(ss)
        masks[i, rng.permutation(n_train)[:m]] = True
        seeds[i] = int(ss.generate_state(1)[0])
    return masks, seeds


class Store:
    """A run directory. Open with :meth:`open`, make or resume with :meth:`create_or_resume`."""

    def __init__(self, path: str | Path, dataset: Dataset | None = None):
        self.path = Path(path)
        meta_file = self.path / "metadata.json"
        if not meta_file.is_file():
            raise UserError(f"{self.path} is not a modeldiff store (no metadata.json): train into it first")
        self.metadata = json.loads(meta_file.read_text())
        self.recipe: Recipe = recipe_from_dict(self.metadata["recipe"])
        self._dataset = dataset
        self.arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r+")
                       for name in self.metadata["arrays"]}

    @classmethod
    def open(cls, path: str | Path, dataset: Dataset | None = None) -> "Store":
        """Open an existing store (``dataset``: the data, when it cannot be reloaded by name)."""
        return cls(path, dataset)

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, path, recipe: Recipe, dataset: Dataset, n_models: int, subset_fraction: float,
                         seed: int, save_weights: int | None = None, train_margins: bool = True) -> "Store":
        """Create the store, or reopen it after checking it was made with the same settings.

        ``save_weights``: keep weights of the first ``save_weights`` models (``None`` = all).
        """
        if not 0 < subset_fraction <= 1:
            raise UserError(f"--subset-fraction must be in (0, 1], got {subset_fraction}")
        if n_models < 1:
            raise UserError(f"--models must be >= 1, got {n_models}")
        path = Path(path)
        meta = build_metadata(recipe, dataset, n_models, subset_fraction, seed, save_weights, train_margins,
                              array_spec(n_models, dataset.n_train, dataset.n_test, dataset.num_classes, train_margins))
        if (path / "metadata.json").is_file():
            store = cls(path, dataset)
            check_compatible(store.metadata, meta, path)
            return store
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} exists and is not a modeldiff store: choose an empty or new --out folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
        try:
            masks, seeds = draw_masks_and_seeds(seed, n_models, dataset.n_train, subset_fraction)
            for name, spec in meta["arrays"].items():
                arr = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=spec["dtype"],
                                                shape=tuple(spec["shape"]))
                if name == "masks":
                    arr[:] = masks
                elif name == "seeds":
                    arr[:] = seeds
                elif arr.dtype.kind == "f":
                    arr[:] = np.nan
                arr.flush()
                del arr
            (tmp / "weights").mkdir()
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(path, dataset)

    # -- rows ------------------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return int(self.metadata["n_models"])

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def _row_checksum(self, i: int) -> int:
        crc = 0
        for name in CHECKED_ARRAYS:
            if name in self.arrays:
                crc = zlib.crc32(np.ascontiguousarray(self.arrays[name][i]).tobytes(), crc)
        return crc

    def pending_indices(self) -> np.ndarray:
        return np.flatnonzero(self.arrays["status"] == PENDING)

    def corrupted_indices(self) -> np.ndarray:
        """Rows marked done/diverged whose bytes no longer match their checksum."""
        status, sums = self.arrays["status"], self.arrays["checksums"]
        finished = np.flatnonzero(status != PENDING)
        return np.array([i for i in finished if self._row_checksum(i) != int(sums[i])], dtype=np.int64)

    def valid_indices(self, warn: bool = True) -> np.ndarray:
        """Models that finished, did not diverge, and whose rows pass their checksum."""
        done = np.flatnonzero(self.arrays["status"] == DONE)
        bad = set(self.corrupted_indices().tolist())
        if bad and warn:
            warnings.warn(f"{len(bad)} corrupted row(s) in {self.path} excluded (rows {sorted(bad)[:10]}...); "
                          f"run the same train command again to retrain them")
        return np.array([i for i in done if i not in bad], dtype=np.int64)

    def write_row(self, i: int, *, test_logits, test_margins, accuracy, diverged: bool, train_margins=None,
                  state_dict=None) -> None:
        """Commit model ``i``'s outputs (refuses to overwrite a finished row)."""
        a = self.arrays
        if a["status"][i] != PENDING:
            raise RuntimeError(f"model {i} of {self.path} is already finished; refusing to write it twice")
        a["test_logits"][i] = np.asarray(test_logits, dtype=np.float32)
        a["test_margins"][i] = np.asarray(test_margins, dtype=np.float32)
        a["accuracy"][i] = float(accuracy)
        if "train_margins" in a and train_margins is not None:
            a["train_margins"][i] = np.asarray(train_margins, dtype=np.float32)
        for name in ("test_logits", "test_margins", "accuracy", "train_margins"):
            if name in a:
                a[name].flush()
        if state_dict is not None and self.keeps_weights(i):
            target = self.weight_path(i)
            tmp = target.with_suffix(".tmp")
            torch.save(state_dict, tmp)
            os.replace(tmp, target)
        a["checksums"][i] = self._row_checksum(i)
        a["checksums"].flush()
        a["status"][i] = DIVERGED if diverged else DONE
        a["status"].flush()

    def reset_rows(self, rows) -> None:
        """Mark rows pending again (used to retrain corrupted rows)."""
        for i in rows:
            self.arrays["status"][i] = PENDING
            self.weight_path(i).unlink(missing_ok=True)
        self.arrays["status"].flush()

    # -- models and data ---------------------------------------------------------------------
    def keeps_weights(self, i: int) -> bool:
        k = self.metadata["save_weights"]
        return k is None or i < k

    def weight_path(self, i: int) -> Path:
        return self.path / "weights" / f"model_{i:06d}.pt"

    def has_weights(self, i: int) -> bool:
        return self.weight_path(i).is_file() and self.arrays["status"][i] == DONE

    def load_dataset(self) -> Dataset:
        """The dataset this store was trained on (checked against the recorded identity)."""
        if self._dataset is None:
            from datamodels.store.metadata import reload_dataset

            self._dataset = reload_dataset(self.metadata)
        return self._dataset

    def build_net(self, n_models: int = 1):
        from datamodels.training.models import build_model

        d = self.metadata["dataset"]
        return build_model(self.recipe.model, n_models, d["num_classes"], d["image_shape"], d["mean"], d["std"])

    def load_model(self, i: int, device="cpu") -> torch.nn.Module:
        """Model ``i`` as a plain one-model net (``x[B, C, H, W] -> [B, K]``), eval mode."""
        return self.load_ensemble([i], device)

    def load_ensemble(self, indices, device="cpu") -> torch.nn.Module:
        """Models ``indices`` as one ensemble net (``x[M, B, C, H, W] -> [M, B, K]``), eval mode."""
        from datamodels.training.models import stack_singles

        indices = [int(i) for i in indices]
        missing = [i for i in indices if not self.has_weights(i)]
        if missing:
            raise UserError(f"{self.path} has no saved weights for model(s) {missing[:5]}: retrain with "
                            f"--save-weights covering them, or choose models below {self.metadata['save_weights']}")
        states = [torch.load(self.weight_path(i), map_location="cpu", weights_only=True) for i in indices]
        net = self.build_net(len(indices))
        net.load_state_dict(stack_singles(states))
        dtype = torch.float64 if self.recipe.precision == "float64" else torch.float32
        return net.to(device, dtype).eval()

    def predict_proba(self, x: torch.Tensor, indices=None, device="cpu", batch_size: int = 512,
                      models_per_pass: int = 16) -> torch.Tensor:
        """Class probabilities ``[n_models, n, K]`` of the stored models on ``x[n, C, H, W]``."""
        from datamodels.training.ensemble_trainer import predict_logits

        if indices is None:
            indices = [i for i in self.valid_indices() if self.has_weights(i)]
        if len(indices) == 0:
            raise UserError(f"{self.path} has no finished models with saved weights")
        outs = []
        for start in range(0, len(indices), models_per_pass):
            net = self.load_ensemble(indices[start:start + models_per_pass], device)
            dtype = next(net.parameters()).dtype
            outs.append(predict_logits(net, torch.as_tensor(x), device, dtype, batch_size).softmax(-1))
        return torch.cat(outs, 0)

    def summary(self) -> dict:
        """Counts and accuracy of the finished models."""
        status = self.arrays["status"]
        valid = self.valid_indices(warn=False)
        acc = self.arrays["accuracy"][valid] if len(valid) else np.array([np.nan])
        return {
            "models": self.n_models, "done": int((status == DONE).sum()), "diverged": int((status == DIVERGED).sum()),
            "pending": int((status == PENDING).sum()), "corrupted": len(self.corrupted_indices()),
            "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
            "noise_temperature": self.recipe.noise_temperature,
        }

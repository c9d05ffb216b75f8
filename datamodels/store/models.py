"""The models half of a :class:`~datamodels.store.store.Store`: weights files (paths, loading with
the size and CRC-32 recorded at commit checked on the bytes read), the recorded network, the
dataset, and predictions of stored models. Mixed into ``Store``; the rows/arrays half (creation,
commit, damage, resume) stays in :mod:`datamodels.store.store`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.data.dataset import Dataset
from datamodels.store import verify as _verify

log = get_logger(__name__)


def _done() -> int:
    from datamodels.store.store import DONE

    return DONE


class StoreModels:
    """Weights and models of a store (needs ``path``, ``metadata``, ``arrays``, ``recipe``,
    ``use_valid_only``, ``_dataset`` and ``valid_indices`` from :class:`~datamodels.store.store.Store`)."""

    def weights_damage(self, rows) -> dict[int, str]:
        """``{row: problem}`` of the weights files of ``rows`` checked completely (size and CRC-32:
        their bytes are read, once per process). Used before attribution picks its models."""
        out = {}
        for i in map(int, rows):
            if self.keeps_weights(i):
                problem = _verify.weight_problem(self, i, crc=True)
                if problem:
                    out[i] = f"{self.weight_path(i).relative_to(self.path)}: {problem}"
        return out

    def refuse_or_drop(self, bad: dict[int, str], rows) -> np.ndarray:
        """``rows`` without the damaged ones in ``bad`` ``{row: problem}``: refused in one line
        unless the store was opened with ``use_valid_only`` (then counted in a note)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not bad:
            return rows
        first = sorted(bad)[0]
        if not self.use_valid_only:
            raise UserError(f"store {self.path} has {len(bad)} damaged row(s) {sorted(bad)[:8]} (row {first}: "
                            f"{bad[first]}): {_verify.repair_hint(self.path)}, or pass --use-valid-only to "
                            "use the intact models only")
        log.warning(f"note: {self.path}: {len(bad)} more damaged row(s) {sorted(bad)[:10]} found when reading their "
                    f"weights, excluded (--use-valid-only)")
        return np.array([i for i in rows if int(i) not in bad], dtype=np.int64)

    def keeps_weights(self, i: int) -> bool:
        k = self.metadata["save_weights"]
        return k is None or i < k

    def weight_path(self, i: int) -> Path:
        return self.path / "weights" / f"model_{i:06d}.pt"

    def has_weights(self, i: int) -> bool:
        return self.weight_path(i).is_file() and self.arrays["status"][i] == _done()

    def load_dataset(self) -> Dataset:
        """The dataset this store was trained on (checked against the recorded identity)."""
        if self._dataset is None:
            from datamodels.store.metadata import reload_dataset

            self._dataset = reload_dataset(self.metadata)
        return self._dataset

    def model_search_path(self) -> str | None:
        """Folder to import a user model target from when it is not importable as is (recorded when
        the store was made; else the data target's folder, where user modules usually live). Also
        makes the recipe's other recorded targets (optimizer, loss, train_fn) importable."""
        from datamodels.training.backends import add_import_paths

        targets = self.metadata.get("targets") or {}
        add_import_paths(rec.get("path") for rec in targets.values())
        d = self.metadata.get("dataset", {})
        return (targets.get("model.target") or d.get("target") or {}).get("path")

    def build_net(self, n_models: int = 1):
        """An untrained net of the recorded model: a built-in ensemble of ``n_models``, or (user
        model target) one module built from the recorded target and kwargs."""
        from datamodels.training.model_factory import DataSpec, build_module
        from datamodels.training.models import build_model

        d = self.metadata["dataset"]
        if not self.recipe.model.builtin:
            if n_models != 1:
                raise ValueError("a user model is built one at a time (see load_ensemble)")
            return build_module(self.recipe.model, DataSpec.from_metadata(d), self.model_search_path())
        return build_model(self.recipe.model, n_models, d["num_classes"], d["image_shape"], d["mean"], d["std"])

    def _states(self, indices) -> list[dict]:
        missing = [i for i in indices if not self.has_weights(i)]
        if missing:
            raise UserError(f"{self.path} has no saved weights for model(s) {missing[:5]}: retrain with "
                            f"--save-weights covering them, or choose models below {self.metadata['save_weights']}")
        return [self._load_state(int(i)) for i in indices]

    def _load_state(self, i: int) -> dict:
        """Model ``i``'s state dict; the bytes read are checked against the size and CRC-32 recorded
        at commit (a mismatch is refused in one line naming the file and the repair command)."""
        import io

        file = self.weight_path(i)
        data = file.read_bytes()
        problem = _verify.bytes_problem(self, i, data) if self.keeps_weights(i) else None
        if problem:
            raise UserError(f"store {self.path} is damaged: {file.relative_to(self.path)}: {problem}: "
                            f"{_verify.repair_hint(self.path)}")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, ValueError, OSError) as err:  # unreadable though its record matches
            first = (str(err).splitlines() or [""])[0][:160]
            raise UserError(f"store {self.path}: {file.relative_to(self.path)} cannot be read ({first}): "
                            f"{_verify.repair_hint(self.path)}") from None

    def load_model(self, i: int, device="cpu") -> torch.nn.Module:
        """Model ``i`` as a plain one-model net (``x[B, *input_shape] -> [B, K]``), eval mode."""
        if self.recipe.model.builtin:
            return self.load_ensemble([i], device)
        net = self.build_net(1)
        try:
            net.load_state_dict(self._states([int(i)])[0])
        except RuntimeError as err:
            raise UserError(f"model {i} of {self.path} does not fit model.target {self.recipe.model.target!r} as it "
                            f"is now ({str(err).splitlines()[0]}): restore the module the store was trained "
                            f"with") from None
        dtype = torch.float64 if self.recipe.precision == "float64" else torch.float32
        return net.to(device, dtype).eval()

    def load_ensemble(self, indices, device="cpu") -> torch.nn.Module:
        """Models ``indices`` as one net ``x[M, B, *input_shape] -> [M, B, K]``, eval mode: a grouped
        ensemble for built-in models, a :class:`~datamodels.training.models.ModelStack` otherwise."""
        from datamodels.training.models import ModelStack, stack_singles

        indices = [int(i) for i in indices]
        if not self.recipe.model.builtin:
            return ModelStack([self.load_model(i, device) for i in indices]).eval()
        states = self._states(indices)
        net = self.build_net(len(indices))
        net.load_state_dict(stack_singles(states))
        dtype = torch.float64 if self.recipe.precision == "float64" else torch.float32
        return net.to(device, dtype).eval()

    def predict_proba(self, x: torch.Tensor, indices=None, device="cpu", batch_size: int = 512,
                      models_per_pass: int = 16) -> torch.Tensor:
        """Class probabilities ``[n_models, n, K]`` of the stored models on ``x[n, *input_shape]``."""
        from datamodels.training.ensemble_trainer import predict_logits

        if indices is None:
            indices = [i for i in self.valid_indices() if self.has_weights(i)]
            indices = self.refuse_or_drop(self.weights_damage(indices), indices).tolist()
        if len(indices) == 0:
            raise UserError(f"{self.path} has no finished models with saved weights")
        outs = []
        for start in range(0, len(indices), models_per_pass):
            net = self.load_ensemble(indices[start:start + models_per_pass], device)
            dtype = next(net.parameters()).dtype
            outs.append(predict_logits(net, torch.as_tensor(x), device, dtype, batch_size).softmax(-1))
        return torch.cat(outs, 0)

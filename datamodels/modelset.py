"""ModelSet: the seam between training and analysis (models + their training masks + their outputs).

Everything downstream of training (TRAK and datamodels attribution, LDS, ModelDiff, counterfactual
tests) reads models through this interface, never through a store's layout:

==================  =========================================================================
``masks``           ``[N, n_train]`` bool: which training examples model ``i`` saw
``test_margins``    ``[N, n_test]`` float: model ``i``'s output (margin) on each test example
``valid_indices()`` models usable for analysis (finished, not diverged, intact)
``has_weights(i)``  whether model ``i`` can be loaded
``load_model(i)``   model ``i`` as a plain ``nn.Module``: ``x[B, *input_shape] -> logits [B, K]``, eval mode
``load_dataset()``  the :class:`~datamodels.data.dataset.Dataset` the models were trained on
``predict_proba``   class probabilities ``[n_models, n, K]`` of chosen models on ``x[n, *input_shape]``
``recipe``          the training recipe when known (None for models trained elsewhere)
``metadata``        ``{"dataset": {name, identity, n_train, n_test, num_classes, ...}, "n_models": N}``
``weights_damage``  ``{i: problem}`` for models among ``rows`` whose weights are damaged (default: none)
``refuse_or_drop``  rows without damaged ones, or a one-line refusal (default: rows as given)
``use_valid_only``  whether damaged models are dropped rather than refused (default False)
``summary()``       ``{done, diverged, accuracy_mean, accuracy_std, noise_temperature}`` of the usable models
==================  =========================================================================

The abstract methods are what an implementation must provide; the rest have defaults here, so
attribution, counterfactual tests and studies call them without asking whether they exist.

Implementations: :class:`datamodels.store.store.Store` (models trained by modeldiff) and
:class:`FolderModelSet` (``ModelSet.from_folder``: a folder of state dicts trained anywhere, with
their masks). Anything else implementing the abstract methods works too.
"""
from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datamodels.base.errors import UserError


class ModelSet(abc.ABC):
    """Models + masks + outputs (see the module docstring for the contract)."""

    recipe = None  # the training recipe, when known
    path: Path | None = None  # where the models live, when on disk
    use_valid_only = False  # drop damaged models (True) or refuse them (False)

    @property
    @abc.abstractmethod
    def masks(self) -> np.ndarray:
        """``[N, n_train]`` bool."""

    @property
    @abc.abstractmethod
    def test_margins(self) -> np.ndarray:
        """``[N, n_test]`` float: each model's margin (output) on each test example."""

    @abc.abstractmethod
    def valid_indices(self, warn: bool = True) -> np.ndarray:
        """Indices of the models usable for analysis."""

    @abc.abstractmethod
    def has_weights(self, i: int) -> bool:
        """Whether model ``i`` can be loaded."""

    @abc.abstractmethod
    def load_model(self, i: int, device="cpu") -> nn.Module:
        """Model ``i``: ``x[B, *input_shape] -> [B, K]``, eval mode, on ``device``."""

    @abc.abstractmethod
    def load_dataset(self):
        """The Dataset the models were trained on."""

    @property
    def n_models(self) -> int:
        return len(self.masks)

    @property
    def metadata(self) -> dict:
        return {"dataset": dataset_metadata(self.load_dataset()), "n_models": self.n_models}

    def weights_damage(self, rows) -> dict[int, str]:
        """``{row: problem}`` for models among ``rows`` whose weights are damaged (none by default)."""
        return {}

    def refuse_or_drop(self, bad: dict[int, str], rows) -> np.ndarray:
        """``rows`` without the damaged ones in ``bad``; refused in one line unless ``use_valid_only``."""
        rows = np.asarray(rows, dtype=np.int64)
        if bad and not self.use_valid_only:
            first = sorted(bad)[0]
            raise UserError(f"{describe(self)} has {len(bad)} damaged model(s) (model {first}: {bad[first]})")
        return np.array([i for i in rows if int(i) not in bad], dtype=np.int64)

    def summary(self) -> dict:
        """Counts and test accuracy (argmax of the logits; without weights, the share of positive
        margins) of the usable models."""
        valid = [int(i) for i in self.valid_indices(warn=False)]
        acc = np.array([np.nan])
        if valid and all(self.has_weights(i) for i in valid):
            data = self.load_dataset()
            pred = self.predict_proba(data.x_test, indices=valid).argmax(-1)
            acc = (pred == data.y_test[None, :]).double().mean(dim=1).numpy()
        elif valid:
            acc = (np.asarray(self.test_margins)[valid] > 0).mean(axis=1)
        recipe = self.recipe
        return {"models": self.n_models, "done": int(len(valid)), "diverged": 0,
                "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
                "noise_temperature": recipe.noise_temperature if recipe is not None else float("nan")}

    def predict_proba(self, x: torch.Tensor, indices=None, device="cpu", batch_size: int = 512) -> torch.Tensor:
        """Class probabilities ``[n_models, n, K]`` of models ``indices`` (default: all valid ones with
        weights) on ``x[n, *input_shape]``."""
        if indices is None:
            indices = [int(i) for i in self.valid_indices(warn=False) if self.has_weights(int(i))]
        if len(indices) == 0:
            raise UserError(f"{describe(self)} has no usable models with weights")
        x = torch.as_tensor(x)
        outs = []
        for i in indices:
            outs.append(_logits(self.load_model(int(i), device), x, device, batch_size).softmax(-1))
        return torch.stack(outs)

    @classmethod
    def from_folder(cls, folder, make_model, masks, dataset, outputs=None, **kwargs) -> FolderModelSet:
        """Models trained elsewhere: see :class:`FolderModelSet`."""
        return FolderModelSet(folder, make_model, masks, dataset, outputs, **kwargs)

    @classmethod
    def open(cls, path, dataset=None) -> ModelSet:
        """A store by its path (:meth:`datamodels.store.store.Store.open`)."""
        from datamodels.store.store import Store

        return Store.open(path, dataset)


def _register_store() -> None:
    from datamodels.store.store import Store

    ModelSet.register(Store)


def as_modelset(obj, what: str = "store") -> ModelSet:
    """A ModelSet from itself or from a store's path."""
    if isinstance(obj, (str, os.PathLike)):
        from datamodels.store.store import Store

        return Store.open(obj)
    if isinstance(obj, ModelSet):
        return obj
    missing = [a for a in _REQUIRED if not hasattr(obj, a)]
    if missing:
        raise UserError(f"{what} must be a store path or a ModelSet; {type(obj).__name__} lacks {', '.join(missing)}")
    return _Adapted(obj)  # duck-typed: implements the abstract methods without subclassing


_REQUIRED = ("masks", "test_margins", "valid_indices", "has_weights", "load_model", "load_dataset")


class _Adapted(ModelSet):
    """An object with the abstract methods of the contract, given the defaults of the rest."""

    def __init__(self, obj):
        self._obj = obj
        self.path = getattr(obj, "path", None)
        self.recipe = getattr(obj, "recipe", None)

    def __getattr__(self, name):
        return getattr(self.__dict__["_obj"], name)

    masks = property(lambda self: self._obj.masks)
    test_margins = property(lambda self: self._obj.test_margins)

    def valid_indices(self, warn: bool = True) -> np.ndarray:
        return self._obj.valid_indices(warn)

    def has_weights(self, i: int) -> bool:
        return self._obj.has_weights(i)

    def load_model(self, i: int, device="cpu") -> nn.Module:
        return self._obj.load_model(i, device)

    def load_dataset(self):
        return self._obj.load_dataset()

    # the optional parts of the contract: the object's own when it has them, else the defaults
    use_valid_only = property(lambda self: getattr(self._obj, "use_valid_only", False))

    def weights_damage(self, rows) -> dict[int, str]:
        own = getattr(self._obj, "weights_damage", None)
        return own(rows) if own is not None else super().weights_damage(rows)

    def refuse_or_drop(self, bad: dict[int, str], rows) -> np.ndarray:
        own = getattr(self._obj, "refuse_or_drop", None)
        return own(bad, rows) if own is not None else super().refuse_or_drop(bad, rows)

    def summary(self) -> dict:
        own = getattr(self._obj, "summary", None)
        return own() if own is not None else super().summary()


def describe(ms) -> str:
    """How error messages name a model set."""
    path = getattr(ms, "path", None)
    return str(path) if path is not None else type(ms).__name__


def model_dtype(ms) -> torch.dtype:
    """The floating dtype the models compute in (the recipe's precision, else the models' own)."""
    recipe = getattr(ms, "recipe", None)
    if recipe is not None and getattr(recipe, "precision", None):
        return torch.float64 if recipe.precision == "float64" else torch.float32
    dtype = getattr(ms, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def dataset_metadata(data) -> dict:
    return {"name": data.name, "identity": data.identity, "n_train": data.n_train, "n_test": data.n_test,
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "input_shape": list(data.input_shape), "image_shape": list(data.input_shape)}


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    outs = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        xb = xb.to(device, dtype) if xb.is_floating_point() else xb.to(device)
        outs.append(model(xb).float().cpu())
    return torch.cat(outs)


def _array(a, what: str) -> np.ndarray:
    if isinstance(a, (str, os.PathLike)):
        if not Path(a).is_file():
            raise UserError(f"{what} file {a} does not exist")
        return np.load(a)
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


class FolderModelSet(ModelSet):
    """A folder of one-model state dicts (trained anywhere) with the masks of their training subsets.

    Args:
        folder: holds one state dict per model (``torch.save(model.state_dict(), ...)``; ``*.pt`` or
            ``*.pth``, sorted by name: file ``i`` is model ``i``), or pass ``files`` explicitly.
        make_model: callable (or import target ``"pkg.mod:make_net"``) returning the untrained
            ``nn.Module`` (``x[B, *input_shape] -> [B, K]``); ``num_classes`` / ``input_shape`` are
            passed when its signature takes them.
        masks: ``[N, n_train]`` bool (0/1 ok), array or ``.npy`` path: the examples each model saw.
        dataset: the :class:`~datamodels.data.dataset.Dataset` they were trained on.
        outputs: ``[N, n_test]`` test margins (array or ``.npy``); None = computed from the models
            (the margin of their logits on the test split) on first use.
        device: where outputs are computed when needed.
    """

    def __init__(self, folder, make_model: Callable | str, masks, dataset, outputs=None, *, files=None,
                 device="cpu", name: str | None = None):
        from datamodels.registry import resolve_target

        self.path = Path(folder)
        if files is None:
            if not self.path.is_dir():
                raise UserError(f"model folder {self.path} does not exist")
            files = sorted(p for p in self.path.iterdir() if p.suffix in (".pt", ".pth"))
        self.files = [Path(f) for f in files]
        if not self.files:
            raise UserError(f"{self.path} holds no state dicts (*.pt or *.pth): save each model with "
                            f"torch.save(model.state_dict(), 'model_000.pt')")
        if isinstance(make_model, str):
            make_model = resolve_target(make_model, what="make_model")
        if not callable(make_model):
            raise UserError(f"make_model must be a function returning an nn.Module, got {type(make_model).__name__}")
        self.make_model, self.dataset, self.name = make_model, dataset, name or self.path.name
        m = _array(masks, "masks")
        if m.ndim != 2 or m.shape != (len(self.files), dataset.n_train):
            raise UserError(f"masks must be [{len(self.files)} models, {dataset.n_train} train examples]; got "
                            f"shape {tuple(m.shape)}")
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise UserError("masks must be boolean (or 0/1): True where the model trained on the example")
        self._masks = m.astype(bool)
        self._outputs = None
        if outputs is not None:
            o = _array(outputs, "outputs").astype(np.float32)
            if o.shape != (len(self.files), dataset.n_test):
                raise UserError(f"outputs must be [{len(self.files)} models, {dataset.n_test} test examples]; got "
                                f"shape {tuple(o.shape)}")
            self._outputs = o
        self._device = device
        self._dtype = None
        self._finite: dict | None = None  # model -> weights all finite (read once)
        self._said = False

    @property
    def masks(self) -> np.ndarray:
        return self._masks

    @property
    def test_margins(self) -> np.ndarray:
        """``[N, n_test]``: the given outputs, else the models' margins on the test split (computed once)."""
        if self._outputs is None:
            from datamodels.margins import margin

            d = self.dataset
            rows = [margin(_logits(self.load_model(i, self._device), d.x_test, self._device, 512), d.y_test).numpy()
                    for i in range(len(self.files))]
            self._outputs = np.stack(rows).astype(np.float32)
        return self._outputs

    def valid_indices(self, warn: bool = True) -> np.ndarray:
        """Models with a weights file, finite weights and (when given) finite outputs; the others are left
        out, with one logged line counting them (once, whatever ``warn``)."""
        ok = [i for i in range(len(self.files)) if self.files[i].is_file()]
        if self._outputs is not None:
            ok = [i for i in ok if np.isfinite(self._outputs[i]).all()]
        if self._finite is None:
            self._finite = {i: all(bool(torch.isfinite(v).all()) for v in self._state(i).values()
                                   if torch.is_tensor(v) and v.is_floating_point()) for i in ok}
        bad = [i for i in ok if not self._finite.get(i, True)]
        if bad and not self._said:  # said even when warn=False: leaving models out is never silent
            self._said = True
            logging.getLogger("modeldiff").warning(
                "%s: %d of %d models have NaN or infinite weights and are left out (models %s)",
                self.path, len(bad), len(self.files), ", ".join(map(str, bad[:10])))
        return np.asarray([i for i in ok if i not in bad], dtype=np.int64)

    def has_weights(self, i: int) -> bool:
        return 0 <= int(i) < len(self.files) and self.files[int(i)].is_file()

    def _state(self, i: int) -> dict:
        state = torch.load(self.files[i], map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise UserError(f"{self.files[i]} is not a state dict: save models with "
                            f"torch.save(model.state_dict(), path)")
        return state

    @property
    def dtype(self) -> torch.dtype:
        if self._dtype is None:
            floats = [v.dtype for v in self._state(0).values() if torch.is_tensor(v) and v.is_floating_point()]
            self._dtype = floats[0] if floats else torch.float32
        return self._dtype

    def load_model(self, i: int, device="cpu") -> nn.Module:
        from datamodels.registry import accepted_kwargs

        i = int(i)
        if not self.has_weights(i):
            raise UserError(f"{self.path} has no weights for model {i}")
        d = self.dataset
        accepted = accepted_kwargs(self.make_model)
        options = {"num_classes": d.num_classes, "input_shape": tuple(d.input_shape)}
        net = self.make_model(**{k: v for k, v in options.items() if accepted is None or k in accepted})
        if not isinstance(net, nn.Module):
            raise UserError(f"make_model returned {type(net).__name__}, not a torch.nn.Module")
        try:
            net.load_state_dict(self._state(i))
        except RuntimeError as err:
            raise UserError(f"{self.files[i]} does not fit the model make_model builds: "
                            f"{str(err).splitlines()[0]} — check make_model") from None
        return net.to(device, self.dtype).eval()

    def load_dataset(self):
        return self.dataset

    @property
    def metadata(self) -> dict:
        return {"dataset": dataset_metadata(self.dataset), "n_models": self.n_models, "source": str(self.path)}


_register_store()

"""The store: one directory per algorithm run, rows = models, safe to resume and share.

Layout::

    STORE/metadata.json        recipe, dataset identity and statistics, array spec, versions
    STORE/<array>.npy          preallocated memory-mapped arrays (see ``ARRAYS``)
    STORE/weights/model_XXXXXX.pt   one-model state dicts (all models or the first ``save_weights``)

A row is committed in this order: outputs, weights (written atomically; their size and CRC-32 go
to ``weight_records``), checksum, then ``status`` (0 pending, 1 done, 2 diverged). A process
killed at any point leaves the row pending, and it is retrained on resume.

Integrity (:mod:`datamodels.store.verify`): a store is opened **read-only** (``np.load(...,
mmap_mode="r")``) after its metadata schema and every array file's header, shape and size were
checked; only the training coordinator and its workers reopen the arrays for writing, and only
to commit rows. A finished row whose bytes no longer match its checksum, whose mask/seed differ
from the ones drawn for it, or whose weights file is missing or differs from its record is
*damaged*: analysis refuses the store (one line naming the damage and the repair command) unless
it was opened with ``use_valid_only=True`` (then damaged rows are excluded and counted). Opening
checks weights files by size only; their CRC-32 is checked when they are loaded (the bytes are
read anyway) or selected for an attribution, and in full by ``verify`` and training;
``modeldiff train`` / ``modeldiff verify --repair`` retrain exactly the damaged rows. Damaged
array *files* (missing, truncated, header or shape wrong) are rebuilt by the training coordinator:
masks and seeds are redrawn exactly, the intact leading rows of other arrays are kept, and every
row that lost bytes is retrained.

Reproducibility: results depend on the ensemble size (float32 grouped kernels differ by group
count), so the first training run records ``ensemble_size`` in the metadata and a resume with
another ``--ensemble-size`` is refused. Stores of earlier releases (no ``ensemble_size``, no
``weight_records``) still open: the missing records count as unknown (``modeldiff verify`` says
so; only the presence of weights files is checked, and the first resume records its ensemble size).
"""
from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from datamodels.base.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.data.dataset import Dataset
from datamodels.store import verify as _verify
from datamodels.store.fingerprints import check_code, code_changes
from datamodels.store.fit_rows import FIT_ARRAYS, StoreFit, fit_arrays
from datamodels.store.metadata import build_metadata, check_compatible
from datamodels.store.models import StoreModels
from datamodels.training.recipe import Recipe, recipe_from_dict

log = get_logger(__name__)

PENDING, DONE, DIVERGED = 0, 1, 2
CHECKED_ARRAYS = ("masks", "test_margins", "test_logits", "train_margins", "accuracy", "seeds", "weight_records",
                  *FIT_ARRAYS)


def array_spec(n_models: int, n_train: int, n_test: int, n_classes: int, train_margins: bool, epochs: int = 1,
               n_checkpoints: int = 0) -> dict:
    """The store's arrays ``{name: {shape, dtype}}`` (``epochs``/``n_checkpoints``: of its fit records)."""
    spec = {
        "masks": ([n_models, n_train], "bool"),
        "seeds": ([n_models], "int64"),
        "test_margins": ([n_models, n_test], "float32"),
        "test_logits": ([n_models, n_test, n_classes], "float32"),
        "accuracy": ([n_models], "float32"),
        "status": ([n_models], "uint8"),
        "checksums": ([n_models], "uint64"),
        "weight_records": ([n_models, 2], "uint64"),  # (bytes, crc32) of weights/model_i.pt, 0 = none
    }
    if train_margins:
        spec["train_margins"] = ([n_models, n_train], "float32")
    spec.update(fit_arrays(n_models, epochs, n_checkpoints))
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


class Store(StoreModels, StoreFit):
    """A run directory. Open with :meth:`open`, make or resume with :meth:`create_or_resume`."""

    def __init__(self, path: str | Path, dataset: Dataset | None = None, *, use_valid_only: bool = False,
                 _meta: dict | None = None):
        self.path = Path(path)
        self.metadata = _meta if _meta is not None else _verify.read_metadata(self.path)
        broken = _verify.check_files(self.path, self.metadata)
        if broken:
            name, problem = next(iter(broken.items()))
            more = f" (and {len(broken) - 1} more file(s))" if len(broken) > 1 else ""
            raise UserError(f"store {self.path} is damaged: {name} {problem}{more}: {_verify.repair_hint(self.path)}")
        from datamodels.registry import missing_python_objects, python_only_message

        missing = missing_python_objects(self.metadata["recipe"])
        if missing:  # made in a notebook or a script's __main__: only such a process can rebuild its models
            raise UserError(python_only_message(f"store {self.path}", missing))
        try:
            self.recipe: Recipe = recipe_from_dict(self.metadata["recipe"], stored=True)
        except UserError as err:
            raise UserError(f"{self.path / 'metadata.json'}: recorded recipe is not valid ({err})") from None
        self._dataset = dataset
        self.use_valid_only = use_valid_only
        self.writable = False
        self._damage: dict[int, list[str]] | None = None
        self._told = False
        self.arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                       for name in self.metadata["arrays"]}

    @classmethod
    def open(cls, path: str | Path, dataset: Dataset | None = None, *, use_valid_only: bool = False) -> Store:
        """Open an existing store read-only (``dataset``: the data, when it cannot be reloaded by name).

        ``use_valid_only``: accept a store with damaged rows, using only its intact models
        (otherwise :meth:`valid_indices` refuses a damaged store with one line).
        """
        return cls(path, dataset, use_valid_only=use_valid_only)

    def make_writable(self) -> Store:
        """Reopen the arrays for writing (training coordinator and workers only; files re-checked first)."""
        if not self.writable:
            broken = _verify.check_files(self.path, self.metadata)
            if broken:
                raise UserError(f"store {self.path} is damaged ({broken}): {_verify.repair_hint(self.path)}")
            self.arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r+", allow_pickle=False)
                           for name in self.metadata["arrays"]}
            self.writable = True
            self._damage = None  # the coordinator checks weights CRCs too
        return self

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, path, recipe: Recipe, dataset: Dataset, n_models: int, subset_fraction: float,
                         seed: int, save_weights: int | None = None, train_margins: bool = True,
                         ensemble_size: int | None = None, allow_changed_code: bool = False) -> Store:
        """Create the store, or reopen it for training after checking it was made with the same settings.

        ``save_weights``: keep weights of the first ``save_weights`` models (``None`` = all).
        ``ensemble_size``: models trained at once; fixed at creation (``None``: recorded by the
        first :func:`~datamodels.runs.launchers.fill_store`). On resume, damaged array files
        are rebuilt (:meth:`repair_files`) and stale temporaries of killed runs removed. The
        returned store is writable (the caller is the training coordinator). A resume whose user
        code changed since the store was made is refused unless ``allow_changed_code``.
        """
        if not 0 < subset_fraction <= 1:
            raise UserError(f"--subset-fraction must be in (0, 1], got {subset_fraction}")
        if n_models < 1:
            raise UserError(f"--models must be >= 1, got {n_models}")
        path = Path(path)
        from datamodels.training.fit import parse_checkpoints

        n_checkpoints = len(parse_checkpoints(recipe.keep_checkpoints, recipe.train_epochs))
        meta = build_metadata(recipe, dataset, n_models, subset_fraction, seed, save_weights, train_margins,
                              array_spec(n_models, dataset.n_train, dataset.n_test, dataset.num_classes, train_margins,
                                         recipe.train_epochs, n_checkpoints))
        from datamodels.registry import python_only_keys

        if python_only_keys(meta["recipe"]):  # recorded: reopened from Python only (see Store.__init__)
            meta["python_only"] = sorted(set(python_only_keys(meta["recipe"])))
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} is a file: choose a folder for the store")
        if (path / "metadata.json").is_file():
            old = _verify.read_metadata(path)
            check_compatible(old, meta, path)
            check_code(old, path, allow=allow_changed_code, doing="resuming its training")
            if ensemble_size is not None and old.get("ensemble_size") not in (None, ensemble_size):
                raise UserError(f"{path} was trained with --ensemble-size {old['ensemble_size']} and results depend "
                                f"on it (float32 grouped kernels differ by group count): resume with --ensemble-size "
                                f"{old['ensemble_size']}, or use a new --out")
            for folder in (path, path / "weights"):
                remove_stale_temporaries(folder)
            cls.repair_files(path, old)
            store = cls(path, dataset, _meta=old).make_writable()
            if ensemble_size is not None:
                store.fix_ensemble_size(ensemble_size)
            return store
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} exists and is not a modeldiff store: choose an empty or new --out folder")
        _check_writable_folder(path.parent)
        meta["ensemble_size"] = ensemble_size
        need = sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in meta["arrays"].values())
        free = shutil.disk_usage(_existing_parent(path)).free
        if need > free:
            raise UserError(f"the store's arrays need {need / 2**20:.1f} MiB but {path.parent} has only "
                            f"{free / 2**20:.1f} MiB free: free space or choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        with atomic_path(path, directory=True, replace=False) as tmp:
            masks, seeds = draw_masks_and_seeds(seed, n_models, dataset.n_train, subset_fraction)
            for name, spec in meta["arrays"].items():
                _new_array(tmp / f"{name}.npy", spec, {"masks": masks, "seeds": seeds}.get(name))
            (tmp / "weights").mkdir()
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
            if path.exists():
                path.rmdir()
        return cls(path, dataset).make_writable()

    @staticmethod
    def repair_files(path: Path, meta: dict) -> list[str]:
        """Rebuild damaged array files of the store at ``path`` (coordinator only); returns what was done.

        Masks and seeds are redrawn exactly (also when the file is whole but some of its values
        differ from the ones drawn from the store's seed: a flipped bit), so a row whose only damage
        was its mask or seed matches its checksum again and keeps its model; other arrays keep their
        intact leading rows and fill the rest as a fresh store would (NaN / 0), so the rows that lost
        bytes fail their checksum (or are pending) and are retrained.
        """
        broken = _verify.check_files(path, meta)
        masks, seeds = draw_masks_and_seeds(meta["seed"], meta["n_models"], meta["dataset"]["n_train"],
                                            meta["subset_fraction"])
        done = Store._restore_drawn(path, meta, {"masks": masks, "seeds": seeds}, broken)
        if not broken:
            (path / "weights").mkdir(exist_ok=True)
            return done
        for file, problem in broken.items():
            name = file[:-len(".npy")]
            spec = meta["arrays"][name]
            exact = {"masks": masks, "seeds": seeds}.get(name)
            kept, k = (None, 0) if exact is not None else _verify.salvage_rows(path / file, spec)
            with atomic_path(path / file) as tmp:
                _new_array(tmp, spec, exact, kept)
            lost = "" if exact is not None else f"; rows from {k} on are retrained"
            done.append(f"{file} ({problem}) rebuilt{lost}")
            log.warning(f"repaired {path / file}: {problem}; rebuilt{lost}")
        (path / "weights").mkdir(exist_ok=True)
        return done

    @staticmethod
    def _restore_drawn(path: Path, meta: dict, drawn: dict, broken: dict) -> list[str]:
        """Rewrite ``masks.npy`` / ``seeds.npy`` (whole files, not in ``broken``) whose values differ from
        ``drawn`` (compared byte for byte: a flipped bit in a bool byte still reads as True)."""
        done = []
        for name, exact in drawn.items():
            file = f"{name}.npy"
            if file in broken:
                continue
            now = np.load(path / file, mmap_mode="r")
            bad = (np.asarray(now).view(np.uint8).reshape(len(exact), -1)
                   != exact.view(np.uint8).reshape(len(exact), -1)).any(1)
            if bad.any():
                with atomic_path(path / file) as tmp:
                    _new_array(tmp, meta["arrays"][name], exact)
                line = (f"{file}: {int(bad.sum())} row(s) differed from the values drawn from the store's seed "
                        f"(rows {', '.join(map(str, np.flatnonzero(bad)[:5]))}); restored")
                done.append(line)
                log.warning(f"repaired {path / file}: {line}")
        return done

    def fix_ensemble_size(self, ensemble_size: int) -> None:
        """Refuse another ensemble size than the store's (results depend on it); record it if unknown."""
        was = self.metadata.get("ensemble_size")
        if was is not None and was != ensemble_size:
            raise UserError(f"{self.path} was trained with --ensemble-size {was} and results depend on it (float32 "
                            f"grouped kernels differ by group count): resume with --ensemble-size {was}, or "
                            f"use a new --out")
        if was is None:
            if (self.arrays["status"] != PENDING).any():
                log.warning(f"note: {self.path} does not record its ensemble size (made by an earlier release); "
                            f"recording {ensemble_size} from now on")
            self.metadata["ensemble_size"] = int(ensemble_size)
            atomic_write_text(self.path / "metadata.json", json.dumps(self.metadata, indent=1))

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

    def damage(self) -> dict[int, list[str]]:
        """``{row: [problems]}``: rows with an invalid status, or finished rows whose bytes, mask,
        seed or weights no longer match what was committed (see :mod:`datamodels.store.verify`)."""
        if self._damage is None:  # weights CRCs: read by the coordinator (it repairs); else at load time
            self._damage = _verify.row_problems(self, weights_crc=self.writable)
        return self._damage

    def corrupted_indices(self) -> np.ndarray:
        """Damaged rows (see :meth:`damage`): excluded from :meth:`valid_indices`, retrained on resume."""
        return np.array(sorted(self.damage()), dtype=np.int64)

    def valid_indices(self, warn: bool = True) -> np.ndarray:
        """Models that finished, did not diverge, and are intact (row checksum, mask, seed, weights).

        A store opened read-only refuses to answer while it has damaged rows (one line naming
        the damage and the repair command), unless it was opened with ``use_valid_only``: then
        the damaged rows are excluded and counted (a warning, once).
        """
        done = np.flatnonzero(self.arrays["status"] == DONE)
        bad = self.damage()
        if bad and not self.writable and not self.use_valid_only:
            first = sorted(bad)[0]
            raise UserError(f"store {self.path} has {len(bad)} damaged row(s) {sorted(bad)[:8]} (row {first}: "
                            f"{bad[first][0]}): {_verify.repair_hint(self.path)}, or pass --use-valid-only to "
                            "use the intact models only")
        valid = np.array([i for i in done if i not in bad], dtype=np.int64)
        if bad and (warn or self.use_valid_only) and not self._told:
            self._told = True
            log.warning(f"note: {self.path}: {len(bad)} damaged row(s) {sorted(bad)[:10]} excluded (--use-valid-only); "
                        f"using the {len(valid)} intact finished models")
        return valid

    def write_row(self, i: int, *, test_logits, test_margins, accuracy, diverged: bool, train_margins=None,
                  state_dict=None, fit: dict | None = None) -> None:
        """Commit model ``i``'s outputs (refuses to overwrite a finished row); ``fit``: its fit records
        and checkpoints (:func:`datamodels.store.fit_rows.fit_row`)."""
        a = self.make_writable().arrays
        self._damage = None
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
        record = (0, 0)
        if state_dict is not None and self.keeps_weights(i):
            target = self.weight_path(i)
            target.parent.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                torch.save(state_dict, tmp)
                record = _verify.file_crc(tmp)
        if fit is not None:
            self._write_fit(a, i, fit, keep=self.keeps_weights(i))
        if "weight_records" in a:
            a["weight_records"][i] = record
            a["weight_records"].flush()
        a["checksums"][i] = self._row_checksum(i)
        a["checksums"].flush()
        a["status"][i] = DIVERGED if diverged else DONE
        a["status"].flush()

    def reset_rows(self, rows) -> None:
        """Mark rows pending again (used to retrain damaged rows)."""
        a = self.make_writable().arrays
        self._damage = None
        for i in rows:
            a["status"][i] = PENDING
            self.weight_path(i).unlink(missing_ok=True)
        a["status"].flush()

    def code_changes(self) -> list[dict]:
        """User modules whose source changed since the store was made (:mod:`datamodels.store.fingerprints`)."""
        return code_changes(self.metadata)

    def summary(self) -> dict:
        """Counts and accuracy of the finished models."""
        self._damage = None  # rows may have been written by other processes meanwhile
        status = self.arrays["status"]
        valid = self.valid_indices(warn=False)
        acc = self.arrays["accuracy"][valid] if len(valid) else np.array([np.nan])
        return {
            "models": self.n_models, "done": int((status == DONE).sum()), "diverged": int((status == DIVERGED).sum()),
            "pending": int((status == PENDING).sum()), "corrupted": len(self.damage()),
            "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
            "noise_temperature": self.recipe.noise_temperature, **self.fit_summary(valid),
        }


def _existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def _check_writable_folder(folder: Path) -> None:
    """Refuse an output location under a file or in a folder we may not write (before any work)."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot create {folder}: {probe} is a file, not a folder; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into {probe} (permission denied): choose another --out")


def _new_array(file: Path, spec: dict, values=None, leading=None) -> None:
    """Create one store array at ``file``: ``values`` (whole array), else ``leading`` rows then the
    fresh-store fill (NaN for floats, 0 otherwise); disk blocks are reserved up front so a full
    disk fails here (``OSError``), never later inside a memory map."""
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    arr = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(file, "r+b") as fh:
            try:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
            except OSError as err:
                import errno

                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                    raise
        if values is not None:
            arr[:] = values
        else:
            if dtype.kind == "f":
                arr[:] = np.nan
            if leading is not None and len(leading):
                arr[:len(leading)] = leading
        arr.flush()
    finally:
        del arr

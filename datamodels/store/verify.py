"""Store integrity: everything a result depends on, checked without writing a byte.

Three levels, cheapest first:

* **metadata** (:func:`read_metadata`): ``metadata.json`` parses and has the schema a store
  needs (keys, types, array shapes consistent with ``n_models`` / the dataset); a problem raises
  :class:`~datamodels.base.errors.UserError` naming the file.
* **files** (:func:`check_files`): every array ``<name>.npy`` exists, its header parses, its
  shape and dtype equal the metadata's, and its size is exactly header + data (a truncated or
  zero-extended file is caught *before* any memory map is opened).
* **rows** (:func:`row_problems`): per model ``i``: ``status`` is 0/1/2; a finished row's bytes
  match its checksum; its mask and seed equal the ones drawn from ``(seed, i)``; a done model
  that keeps weights has ``weights/model_i.pt`` with the size and CRC-32 recorded at commit
  (``weight_records`` ``[n_models, 2]`` uint64 = (bytes, crc32); stores of earlier releases lack
  it: only presence is checked there, and :func:`verify` says so).

Cost: reading every weights file to check its CRC takes seconds on large stores, so a store
opened for analysis checks weights by presence and size only, and checks a file's CRC when its
bytes are read to load the model (:func:`bytes_problem`; a mismatch is refused with the repair
command) or when the models an attribution will use are selected (so ``--use-valid-only`` can
skip them). :func:`verify` and the training coordinator (which repairs) check every CRC.

:func:`verify` runs all three and returns a :class:`Report`; ``modeldiff verify STORE`` prints it.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodels.base.errors import UserError

REQUIRED_ARRAYS = ("masks", "seeds", "test_margins", "test_logits", "accuracy", "status", "checksums")
_TOP_KEYS = {"format": str, "format_version": int, "recipe": dict, "dataset": dict, "n_models": int,
             "subset_fraction": (int, float), "seed": int, "train_margins": bool, "arrays": dict}
_DATASET_KEYS = {"name": str, "identity": str, "n_train": int, "n_test": int, "num_classes": int,
                 "image_shape": list}


def repair_hint(path) -> str:
    return f"repair it with `modeldiff verify {path} --repair` (retrains only the damaged rows)"


def _is(value, typ) -> bool:
    return isinstance(value, typ) and not (isinstance(value, bool) and typ is not bool)


def read_metadata(path) -> dict:
    """``STORE/metadata.json`` parsed and schema-checked; any problem is one :class:`UserError` line."""
    path = Path(path)
    if not path.is_dir():
        what = "a file" if path.exists() else "missing"
        raise UserError(f"store {path} is {what}, not a store folder: pass a folder made by `modeldiff train`")
    file = path / "metadata.json"
    if not file.is_file():
        raise UserError(f"{path} is not a modeldiff store (no metadata.json): train into it first")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{file} is damaged (not valid JSON: {err}): the store cannot be used or repaired "
                        "without it; restore it from a copy, or delete the store and train again") from None
    problem = metadata_problem(meta)
    if problem:
        raise UserError(f"{file} is damaged ({problem}): restore it from a copy, or delete the store and "
                        "train again")
    return meta


def metadata_problem(meta) -> str | None:
    """The first schema problem of a parsed ``metadata.json``, or ``None``."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, got {type(meta).__name__}"
    for key, typ in _TOP_KEYS.items():
        if key not in meta:
            return f"missing key {key!r}"
        if not _is(meta[key], typ):
            return f"key {key!r} has the wrong type ({type(meta[key]).__name__})"
    if meta["format"] != "modeldiff-store":
        return f"format is {meta['format']!r}, not 'modeldiff-store'"
    for key, typ in _DATASET_KEYS.items():
        if not _is(meta["dataset"].get(key), typ):
            return f"dataset.{key} is missing or has the wrong type"
    if meta["n_models"] < 1:
        return "n_models < 1"
    sw = meta.get("save_weights")
    if sw is not None and not _is(sw, int):
        return "save_weights must be an integer or null"
    es = meta.get("ensemble_size")
    if es is not None and (not _is(es, int) or es < 1):
        return "ensemble_size must be a positive integer or null"
    n, d = meta["n_models"], meta["dataset"]
    want = {"masks": [n, d["n_train"]], "seeds": [n], "test_margins": [n, d["n_test"]],
            "test_logits": [n, d["n_test"], d["num_classes"]], "accuracy": [n], "status": [n],
            "checksums": [n], "train_margins": [n, d["n_train"]], "weight_records": [n, 2]}
    for name in REQUIRED_ARRAYS:
        if name not in meta["arrays"]:
            return f"arrays.{name} is missing"
    for name, spec in meta["arrays"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) \
                or not isinstance(spec.get("dtype"), str):
            return f"arrays.{name} needs a shape list and a dtype string"
        if name in want and spec["shape"] != want[name]:
            return f"arrays.{name}.shape {spec['shape']} disagrees with n_models/dataset ({want[name]})"
        try:
            np.dtype(spec["dtype"])
        except TypeError:
            return f"arrays.{name}.dtype {spec['dtype']!r} is not a dtype"
    return None


def _read_header(file: Path):
    """``(shape, fortran_order, dtype, data_offset)`` of an ``.npy`` file, or raise ``ValueError``."""
    with open(file, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        return shape, fortran, dtype, fh.tell()


def array_file_problem(file: Path, spec: dict) -> str | None:
    """What is wrong with one array file against its metadata ``spec``, or ``None``."""
    if not file.is_file():
        return "missing"
    try:
        shape, fortran, dtype, offset = _read_header(file)
    except Exception:  # noqa: BLE001 - any parse failure means the header is damaged
        return "header unreadable (not a .npy file)"
    want_shape, want_dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    if shape != want_shape or dtype != want_dtype or fortran:
        return f"holds {dtype}{list(shape)}, metadata says {want_dtype}{list(want_shape)}"
    size, want = file.stat().st_size, offset + int(np.prod(want_shape)) * want_dtype.itemsize
    if size < want:
        return f"truncated ({size} of {want} bytes)"
    if size > want:
        return f"has {size - want} extra bytes ({size} instead of {want})"
    return None


def check_files(path, meta: dict) -> dict[str, str]:
    """``{file name: problem}`` for the store's array files (empty when all are intact)."""
    path = Path(path)
    out = {}
    for name, spec in meta["arrays"].items():
        problem = array_file_problem(path / f"{name}.npy", spec)
        if problem:
            out[f"{name}.npy"] = problem
    return out


def salvage_rows(file: Path, spec: dict) -> tuple[np.ndarray, int]:
    """The leading intact rows of a damaged array file: ``(rows[k, ...], k)`` (``k = 0``: none)."""
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
    try:
        got_shape, fortran, got_dtype, offset = _read_header(file)
    except Exception:  # noqa: BLE001
        return np.zeros((0, *shape[1:]), dtype), 0
    if got_shape != shape or got_dtype != dtype or fortran:
        return np.zeros((0, *shape[1:]), dtype), 0
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    k = min(shape[0], max(0, file.stat().st_size - offset) // max(row_bytes, 1))
    rows = np.fromfile(file, dtype=dtype, count=k * (row_bytes // dtype.itemsize), offset=offset)
    return rows.reshape(k, *shape[1:]), k


def file_crc(file: Path) -> tuple[int, int]:
    """``(size in bytes, CRC-32)`` of a file."""
    crc, size = 0, 0
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


_CRC_CACHE: dict[tuple, int] = {}  # (path, inode, size, mtime_ns) -> CRC-32: a file is read once per process


def cached_file_crc(file: Path) -> int:
    """CRC-32 of ``file``, computed once per process for the same (path, inode, size, mtime)."""
    st = Path(file).stat()
    key = (str(file), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CRC_CACHE:
        _CRC_CACHE[key] = file_crc(file)[1]
    return _CRC_CACHE[key]


def weight_problem(store, i: int, crc: bool = True) -> str | None:
    """What is wrong with model ``i``'s weights file (for a done row that keeps weights), or ``None``.

    ``crc=False``: presence and size only (cheap: no byte is read). The CRC-32 is then checked
    when the file is loaded (:meth:`~datamodels.store.store.Store.load_model` reads its bytes
    anyway and refuses a mismatch) and by ``modeldiff verify`` / training, which check everything.
    """
    file = store.weight_path(i)
    if not file.is_file():
        return "missing"
    records = store.arrays.get("weight_records")
    if records is None:  # earlier release: nothing recorded, presence only
        return None if file.stat().st_size > 0 else "empty"
    size, want = (int(v) for v in records[i])
    if size == 0:
        return "no size/checksum recorded for it"
    got = file.stat().st_size
    if got != size:
        return f"size {got} bytes, recorded {size}"
    if crc and cached_file_crc(file) != want:
        return CRC_MISMATCH
    return None


CRC_MISMATCH = "checksum differs from the one recorded at commit"


def bytes_problem(store, i: int, data: bytes) -> str | None:
    """What is wrong with the bytes ``data`` just read from model ``i``'s weights file, or ``None``
    (checked against ``weight_records``; nothing to check for stores of earlier releases)."""
    records = store.arrays.get("weight_records")
    if records is None:
        return None if data else "empty"
    size, want = (int(v) for v in records[i])
    if size == 0:
        return "no size/checksum recorded for it"
    if len(data) != size:
        return f"size {len(data)} bytes, recorded {size}"
    if zlib.crc32(data) != want:
        return CRC_MISMATCH
    return None


def row_problems(store, weights_crc: bool = True) -> dict[int, list[str]]:
    """``{row: [problems]}`` of an opened store (status, checksum, mask/seed, weights).

    ``weights_crc=False`` checks weights files by presence and size only (no weights byte read:
    what analysis commands do on open; each file's CRC is checked when it is loaded)."""
    from datamodels.store.store import DIVERGED, DONE, PENDING, draw_masks_and_seeds

    a, meta = store.arrays, store.metadata
    out: dict[int, list[str]] = {}
    status = np.asarray(a["status"])
    sums = np.asarray(a["checksums"])
    masks, seeds = draw_masks_and_seeds(meta["seed"], store.n_models, meta["dataset"]["n_train"],
                                        meta["subset_fraction"])
    mask_bad = np.flatnonzero((np.asarray(a["masks"]).view(np.uint8) != masks.view(np.uint8)).any(1))
    seed_bad = np.flatnonzero(np.asarray(a["seeds"]) != seeds)
    for i in mask_bad:
        out.setdefault(int(i), []).append("masks.npy: mask differs from the one drawn for this row")
    for i in seed_bad:
        out.setdefault(int(i), []).append("seeds.npy: seed differs from the one drawn for this row")
    for i in np.flatnonzero(~np.isin(status, (PENDING, DONE, DIVERGED))):
        out.setdefault(int(i), []).append(f"status.npy: invalid status {int(status[i])}")
    for i in np.flatnonzero(np.isin(status, (DONE, DIVERGED))):
        if store._row_checksum(int(i)) != int(sums[i]):
            out.setdefault(int(i), []).append("row bytes do not match checksums.npy (outputs, mask or "
                                              "checksum changed)")
    for i in np.flatnonzero(status == DONE):
        if store.keeps_weights(int(i)):
            problem = weight_problem(store, int(i), crc=weights_crc)
            if problem:
                out.setdefault(int(i), []).append(f"{store.weight_path(int(i)).relative_to(store.path)}: {problem}")
    return dict(sorted(out.items()))


@dataclass
class Report:
    """Result of :func:`verify`: ``files`` {file: problem}, ``rows`` {row: [problems]}, ``notes``."""

    path: Path
    metadata_error: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[int, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.metadata_error is None and not self.files and not self.rows

    def summary(self) -> str:
        """One line naming the damage (for refusals)."""
        if self.metadata_error:
            return self.metadata_error
        parts = [f"{f} {p}" for f, p in self.files.items()]
        if self.rows:
            rows = sorted(self.rows)
            parts.append(f"{len(rows)} damaged row(s) {rows[:8]}{'...' if len(rows) > 8 else ''} "
                         f"({self.rows[rows[0]][0]})")
        return "; ".join(parts) or "intact"

    def lines(self) -> list[str]:
        out = [f"store {self.path}"]
        if self.metadata_error:
            return out + [f"  DAMAGED metadata.json: {self.metadata_error}"]
        out += [f"  DAMAGED {f}: {p}" for f, p in self.files.items()]
        for i, problems in self.rows.items():
            out += [f"  DAMAGED row {i}: {p}" for p in problems]
        out += [f"  note: {n}" for n in self.notes]
        c = self.counts
        if c:
            out.append(f"  {c['models']} models: {c['done']} done, {c['diverged']} diverged, {c['pending']} "
                       f"pending, {len(self.rows)} damaged")
        out.append("  intact" if self.ok else f"  {repair_hint(self.path)}")
        return out


def verify(path) -> Report:
    """Check a store completely (metadata, files, rows); never writes."""
    from datamodels.store.store import DIVERGED, DONE, PENDING, Store

    path = Path(path)
    report = Report(path)
    try:
        meta = read_metadata(path)
    except UserError as err:
        report.metadata_error = str(err)
        return report
    report.files = check_files(path, meta)
    if "weight_records" not in meta["arrays"]:
        report.notes.append("made by an earlier release: weights carry no size/checksum record "
                            "(only their presence is checked)")
    if meta.get("ensemble_size") is None:
        report.notes.append("ensemble size not recorded (unknown): a resume accepts any --ensemble-size")
    stale = [p.name for folder in (path, path / "weights") if folder.is_dir()
             for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    if stale:
        report.notes.append(f"{len(stale)} leftover temporary file(s) (removed by the next train)")
    if report.files:
        report.notes.append("rows are checked once the damaged files are rebuilt (--repair)")
        return report
    store = Store(path, _meta=meta)
    report.rows = row_problems(store)
    status = np.asarray(store.arrays["status"])
    report.counts = {"models": store.n_models, "done": int((status == DONE).sum()),
                     "diverged": int((status == DIVERGED).sum()), "pending": int((status == PENDING).sum())}
    return report

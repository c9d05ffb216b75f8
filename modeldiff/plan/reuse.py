"""Calibrate less: share a calibration between timing-identical recipes, and keep it per machine.

**Timing-identical recipes.** What a step, a set-up and an evaluation cost depends on the model,
the batch size, the optimizer's kind, augmentation, precision and trainer, not on the values of
the learning rate, weight decay, schedule, label smoothing, the number of epochs (the calibration
trains a few steps of one epoch anyway), the seed, the recipe's name or its initial weights. Two
recipes whose :func:`timing_key` agree (e.g. the null study: one recipe at two seeds; the
pretraining study: a checkpoint vs a random initialisation) are calibrated once. Two recipes with
the same model, data and trainer but another batch size or optimizer (:func:`finish_key`, e.g. the
SGD-noise demo's two recipes) differ only in their steps: the second one's chunks are stopped after
their timed steps, and the first one's evaluation-and-commit time, weights size and
candidate-evaluation cost are reused.

**Cache** (stated in the plan when used): a finished calibration is saved under
``$MODELDIFF_PLAN_CACHE`` (default ``$XDG_CACHE_HOME/modeldiff/plan``, i.e. ``~/.cache/modeldiff/plan``),
keyed by a fingerprint of this machine (CPU model and count, torch version, device), of what the
calibration measured (timing keys of the recipes, the data's shape, ensemble size, workers,
launcher, attribution and search settings) and of the planner's own source. A plan of the same
study or recipe on the same machine reuses it for ``CACHE_DAYS`` days; ``modeldiff plan
--recalibrate`` measures again (and replaces it); ``MODELDIFF_PLAN_CACHE=off`` disables the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import time
from pathlib import Path

CACHE_DAYS = 7
_VALUE_ONLY_OPTIM = ("lr", "weight_decay", "schedule", "warmup_fraction", "label_smoothing", "betas", "eps")


def timing_key(recipe) -> str:
    """The parts of ``recipe`` that change what training and evaluation cost (JSON text)."""
    d = recipe.to_dict()
    for key in ("name", "epochs", "seed", "init"):
        d.pop(key, None)
    optim = dict(d.get("optim") or {})
    for key in _VALUE_ONLY_OPTIM:
        optim.pop(key, None)
    if "momentum" in optim:  # a momentum buffer or none; its value costs nothing
        optim["momentum"] = bool(optim["momentum"])
    d["optim"] = optim
    return json.dumps(d, sort_keys=True, default=str)


def finish_key(recipe) -> str:
    """The parts of ``recipe`` that change what evaluating and committing a chunk's models costs (the
    model, its precision, the data, the trainer) — not the batch size, optimizer or augmentation."""
    d = recipe.to_dict()
    return json.dumps({k: d.get(k) for k in ("model", "precision", "data", "trainer")}, sort_keys=True, default=str)


def machine_key(device: str) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def _source_key() -> str:
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path | None:
    """The cache folder, or None when ``MODELDIFF_PLAN_CACHE=off``."""
    env = os.environ.get("MODELDIFF_PLAN_CACHE")
    if env is not None and env.strip().lower() in ("off", "0", "none", ""):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modeldiff" / "plan"


def fingerprint(what: dict, device: str) -> str:
    """A key of ``what`` the calibration measured, on this machine, with this planner's code."""
    text = json.dumps({"machine": machine_key(device), "what": what, "code": _source_key()}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(key: str):
    """``(calibration, path, saved_at)`` from the cache, or None (missing, too old, unreadable)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}.pkl"
    try:
        if time.time() - path.stat().st_mtime > CACHE_DAYS * 86400:
            return None
        with open(path, "rb") as fh:
            cal = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return cal, path, path.stat().st_mtime


def save(key: str, calibration) -> Path | None:
    """Save ``calibration`` atomically under ``key`` (nothing when the cache is off or not writable)."""
    from datamodels.base.atomic import atomic_write_bytes

    folder = cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.pkl"
        atomic_write_bytes(path, pickle.dumps(calibration))
        return path
    except OSError:
        return None

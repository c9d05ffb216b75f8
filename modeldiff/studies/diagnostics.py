"""The diagnostics stage of a study (``diagnostics: {models: N}`` in the study YAML).

Runs :func:`modeldiff.diagnostics.store.diagnose_store` on the first ``N`` models of each
algorithm's store, writes ``OUT/diagnostics/diagnostics.json`` and ``OUT/diagnostics/report.html``
(the same files as ``modeldiff diagnose``), and returns the per-algorithm results that the study
report's diagnostics section (:mod:`modeldiff.report.diagnostics`) and ``summary.json``
(:func:`summary_entry`) show. A rerun with the same settings and finished models reuses the file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

# per-algorithm keys copied into summary.json (mean, ci_low, ci_high, n over the diagnosed models)
SUMMARY_JSON_KEYS = ("eta_over_b", "eta_eff_over_b", "train_loss", "train_accuracy", "lambda_max", "eos_threshold",
                     "eos_threshold_momentum", "hessian_fro", "hessian_fro_se", "trace_sigma_h", "sigma_fro",
                     "alignment", "alignment_mu", "stability_ratio")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def settings_of(spec):
    """:class:`~modeldiff.diagnostics.model.DiagnosticSettings` from the study's ``diagnostics`` spec."""
    from modeldiff.diagnostics.model import DiagnosticSettings

    return DiagnosticSettings(lanczos_steps=spec.lanczos_steps, lanczos_tol=spec.lanczos_tol, probes=spec.probes,
                              seed=spec.seed)


def run_diagnostics(spec, stores, labels, out, device: str = "cpu") -> list[dict]:
    """Diagnose the first ``spec.models`` models of each store (capped at the store's size).

    Args:
        spec: the study's ``diagnostics`` section (``models``, ``probes``, ``lanczos_steps``,
            ``lanczos_tol``, ``batch_size``, ``seed``).
        stores: the algorithms' stores (A, B); labels: their display names.
        out: the study folder; results go to ``out/diagnostics/``.
    Returns:
        one dict per store: ``label``, ``store``, ``name``, ``models`` (per-model entries) and
        ``summary`` (key -> mean, ci_low, ci_high, sd, n), as in ``diagnostics.json``.
    """
    from datamodels.base.atomic import atomic_write_text
    from modeldiff.diagnostics.store import diagnose_store
    from modeldiff.report.diagnostics import comparison, report_html

    folder = Path(out) / "diagnostics"
    path = folder / "diagnostics.json"
    settings = settings_of(spec)
    params = {**settings.params(), "device": device, "batch_size": spec.batch_size, "models": spec.models}
    key = {"settings": params, "valid": [len(s.valid_indices()) for s in stores], "labels": list(labels)}
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc.get("key") == key:
            return doc["algorithms"]
    results = []
    from datamodels.base.progress import progress_bar

    for store, label in zip(stores, labels):
        n = min(spec.models, len(store.valid_indices()))
        with progress_bar(total=n, desc=f"diagnosing {label}", unit="model") as bar:
            r = diagnose_store(store, n, settings, device=device, batch_size=spec.batch_size,
                               progress=lambda i: bar.update(1),
                               step=lambda i, k: bar.set_postfix_str(f"model {i}: {k} Hessian-vector products"))
        r["label"] = label
        results.append(r)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": "modeldiff-diagnostics", "format_version": 1, "settings": params, "key": key,
           "algorithms": results, "summary": {r["label"]: r["summary"] for r in results},
           "comparison": comparison(results)}
    atomic_write_text(path, json.dumps(_jsonable(doc), indent=1))
    atomic_write_text(folder / "report.html", report_html(results, params, "modeldiff study (diagnostics stage)"))
    return _jsonable(results)


def summary_entry(results: list[dict], tags=("a", "b")) -> dict:
    """The ``diagnostics`` part of a study's ``summary.json``.

    ``{"algorithms": {tag: {"label", "models", key: {mean, ci_low, ci_high, n}}}, "comparison": str}``
    for the keys in :data:`SUMMARY_JSON_KEYS`.
    """
    from modeldiff.report.diagnostics import comparison

    algs = {}
    for tag, r in zip(tags, results):
        entry = {"label": r["label"], "models": len(r["models"])}
        for k in SUMMARY_JSON_KEYS:
            s = r["summary"].get(k)
            if s is not None:
                entry[k] = {f: s.get(f) for f in ("mean", "ci_low", "ci_high", "n")}
        algs[tag] = entry
    return {"algorithms": algs, "comparison": comparison(results)}

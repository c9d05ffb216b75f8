"""``modeldiff diagnose STORE [STORE_B ...] --out DIR``: sharpness and SGD-noise diagnostics per model.

Writes ``DIR/diagnostics.json`` (per-model entries and a ``summary`` per store: mean, ci_low,
ci_high over models) and ``DIR/report.html`` (table and plot), and prints the table.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from datamodels.base.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "diagnose", help="Hessian sharpness (λ_max, ‖H‖_F) and SGD-noise alignment of stored models",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="For a sample of each store's models, on each model's own training subset: η/B, training "
                    "loss and accuracy, the top Hessian eigenvalue (Lanczos) vs 2/η, ‖H‖_F (Lanczos-deflated "
                    "Hutchinson, with its standard error), the gradient-noise covariance Σ's alignment "
                    "tr(ΣH)/(‖Σ‖_F‖H‖_F) and tr(ΣH)/(2L‖H‖_F²), and the stability ratio ‖H‖_F·η/√B.")
    p.add_argument("stores", nargs="+", metavar="STORE", help="store directories made by `modeldiff train`")
    p.add_argument("--out", required=True, help="output folder (diagnostics.json, report.html)")
    p.add_argument("--models", type=int, default=8, help="first N finished models with weights per store")
    p.add_argument("--probes", type=int, default=4,
                   help="Hutchinson probes for tr(H²) (on the part outside the Lanczos basis)")
    p.add_argument("--lanczos-steps", type=int, default=20, help="most Lanczos iterations (HVPs) for λ_max")
    p.add_argument("--lanczos-tol", type=float, default=1e-3,
                   help="stop Lanczos when the top Ritz residual is below this share of λ_max")
    p.add_argument("--trace-examples", type=int, default=None,
                   help="examples sampled (one HVP each) for tr(ΣH) beyond the Lanczos subspace (0 = all examples: "
                        "exact; default: estimated from the Hutchinson probes' HVPs, no extra HVP)")
    p.add_argument("--noise-examples", type=int, default=None,
                   help="examples in the Gram matrix for ‖Σ‖_F (default all, capped by memory)")
    p.add_argument("--batch-size", type=int, default=1024, help="examples per pass chunk (memory bound)")
    p.add_argument("--dtype", choices=["store", "float32", "float64"], default="store",
                   help="compute precision (store = the recipe's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--seed", type=int, default=0, help="seeds Lanczos start vectors, probes and example samples")
    p.add_argument("--labels", default=None, help="comma-separated names for the stores (default: recipe names)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run(args) -> int:
    import torch

    from datamodels.base.atomic import atomic_write_text
    from datamodels.base.progress import progress_bar
    from datamodels.store.store import Store
    from modeldiff.checks import check_device, check_output
    from modeldiff.diagnostics.model import DiagnosticSettings
    from modeldiff.diagnostics.store import diagnose_store, pick_models
    from modeldiff.report.diagnostics import comparison, report_html, text_table

    for name, value, low in (("--models", args.models, 1), ("--probes", args.probes, 2),
                             ("--lanczos-steps", args.lanczos_steps, 1), ("--trace-examples", args.trace_examples or 0, 0),
                             ("--batch-size", args.batch_size, 1)):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    if args.noise_examples is not None and args.noise_examples < 2:
        raise UserError(f"--noise-examples must be >= 2, got {args.noise_examples}")
    check_device(args.device)
    out = check_output(args.out, folder=True, force=args.force, may_exist=args.force)
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.stores):
        raise UserError(f"--labels has {len(labels)} names for {len(args.stores)} stores: give one per store")
    for s in args.stores:
        if not Path(s).is_dir():
            raise UserError(f"store {s} does not exist: train one with `modeldiff train`")
    stores = [Store.open(s) for s in args.stores]
    chosen = [pick_models(st, args.models) for st in stores]
    dtype = None if args.dtype == "store" else getattr(torch, args.dtype)
    settings = DiagnosticSettings(lanczos_steps=args.lanczos_steps, lanczos_tol=args.lanczos_tol, probes=args.probes,
                                  trace_examples=args.trace_examples, noise_examples=args.noise_examples,
                                  seed=args.seed)
    bar = progress_bar(total=sum(map(len, chosen)), desc="diagnose", unit="model", progress=not args.quiet)
    results = []
    for j, st in enumerate(stores):
        r = diagnose_store(st, args.models, settings, device=args.device, dtype=dtype, batch_size=args.batch_size,
                           progress=lambda i: bar.update(1),
                           step=lambda i, k: bar.set_postfix_str(f"model {i}: {k} Hessian-vector products"))
        names = [x["label"] for x in results]
        label = labels[j] if labels else r["name"]
        r["label"] = label if label not in names else f"{label} ({j + 1})"
        results.append(r)
    bar.close()
    params = {**settings.params(), "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    doc = {"format": "modeldiff-diagnostics", "format_version": 1, "settings": params,
           "algorithms": results, "summary": {r["label"]: r["summary"] for r in results},
           "comparison": comparison(results)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "diagnostics.json", json.dumps(_jsonable(doc), indent=1))
    command = "modeldiff " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    atomic_write_text(out / "report.html", report_html(results, params, command))
    print(text_table(results))
    if doc["comparison"]:
        print(doc["comparison"])
    print(f"diagnostics written to {out / 'diagnostics.json'} and {out / 'report.html'}")
    return 0

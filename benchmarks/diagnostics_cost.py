"""Cost of `modeldiff diagnose` against TRAK featurisation for the same models (goal: ≤ 2×).

For each of the first N models of each store, in turn: TRAK's per-model work exactly as
``modeldiff attribute --method trak`` does it with its defaults (projected margin gradients of all
training and test examples, the kernel; ``TRAK._per_model``), then the diagnostics of the same
model with the CLI defaults (``diagnose_model`` on its training subset; tr(ΣH)'s out-of-basis part
now reuses the Hutchinson probes' HVPs, ``--trace-examples 8`` restores the old default). Alternating
the two per model keeps a shared machine's load comparable between them. Before timing, both run
once on the first model (untimed warm-up: one-off costs such as TorchScript compilation of TRAK's
projector or torch.func's first trace would otherwise land on whichever model comes first;
``--no-warmup`` times them too). Prints per-model and mean wall and CPU seconds and the ratio
diagnostics / TRAK. ``--no-fold`` evaluates batch norm with PyTorch's own kernels (the code before
the batch-norm folding of :mod:`modeldiff.diagnostics.fold`). One run; no timing assertion.

    .venv/bin/python benchmarks/diagnostics_cost.py STORE [STORE ...] --models 4
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--probes", type=int, default=4)
    ap.add_argument("--lanczos-min-steps", type=int, default=10)
    ap.add_argument("--trace-examples", type=int, default=None,
                    help="tr(ΣH) outside the Lanczos basis: default from the Hutchinson probes (no extra HVP); "
                         "0 = exact; m = m importance-sampled HVPs (the previous default was 8)")
    ap.add_argument("--lanczos-steps", type=int, default=20)
    ap.add_argument("--lanczos-tol", type=float, default=1e-3)
    ap.add_argument("--proj-dim", default="auto", help="TRAK projection dimension (auto = attribute's default)")
    ap.add_argument("--no-warmup", action="store_true", help="also time the first (cold) call of each side")
    ap.add_argument("--no-fold", action="store_true", help="keep PyTorch's batch norm (no folding into convs)")
    args = ap.parse_args()

    from datamodels.attribution.trak import TRAK, auto_proj_dim
    from datamodels.store.store import Store
    from modeldiff.diagnostics.hvp import TrainingLoss
    from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model
    from modeldiff.diagnostics.store import pick_models, recipe_loss

    settings = DiagnosticSettings(lanczos_steps=args.lanczos_steps, lanczos_tol=args.lanczos_tol, probes=args.probes,
                                  trace_examples=args.trace_examples, lanczos_min_steps=args.lanczos_min_steps)
    totals = {"trak": [0.0, 0.0], "diag": [0.0, 0.0]}  # [wall, cpu]
    hvps = []
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(fn, *fn_args):
        sync()
        w, c = time.perf_counter(), time.process_time()
        out = fn(*fn_args)
        sync()
        return out, time.perf_counter() - w, time.process_time() - c

    warm = not args.no_warmup
    extra = {"fold_batchnorm": False} if args.no_fold else {}  # (older releases lack the keyword)

    def diagnose(model, x, y, loss_fn, seed):
        loss = TrainingLoss(model, x, y, loss_fn, batch_size=1024, device=args.device, **extra)
        return diagnose_model(loss, settings, seed=seed)
    for path in args.stores:
        store = Store.open(path)
        data = store.load_dataset()
        trak = TRAK(device=args.device, progress=False)
        trak.proj_dim_ = auto_proj_dim(data.n_train) if args.proj_dim == "auto" else int(args.proj_dim)
        loss_fn = recipe_loss(store.recipe)
        rows = pick_models(store, args.models)
        for i in ([rows[0]] if warm else []) + rows:
            model = store.load_model(i, args.device)
            _, tw, tc = timed(trak._per_model, model, i, data.x_train, data.y_train, data.x_test, data.y_test)
            mask = torch.as_tensor(np.array(store.masks[i]), dtype=torch.bool)
            model = store.load_model(i, args.device)

            out, dw, dc = timed(diagnose, model, data.x_train[mask], data.y_train[mask], loss_fn, i)
            if warm:
                warm = False
                print(f"{path} model {i} (warm-up, not counted): trak {tw:.2f}s wall {tc:.2f}s CPU, "
                      f"diag {dw:.2f}s wall {dc:.2f}s CPU", flush=True)
                continue
            for key, (a, b) in (("trak", (tw, tc)), ("diag", (dw, dc))):
                totals[key][0] += a
                totals[key][1] += b
            hvps.append(out["hvps"])
            print(f"{path} model {i}: trak {tw:.2f}s wall {tc:.2f}s CPU, diag {dw:.2f}s wall {dc:.2f}s CPU "
                  f"(CPU ratio {dc / tc:.2f}x), {out['hvps']} HVPs, ‖H‖_F {out['hessian_fro']:.4g} "
                  f"± {out['hessian_fro_se']:.2g}, tr(ΣH) {out['trace_sigma_h']:.4g} ± {out['trace_sigma_h_se']:.2g}",
                  flush=True)
    n = len(hvps)
    tw, tc = totals["trak"]
    dw, dc = totals["diag"]
    print(f"models: {n}; TRAK featurisation: {tw / n:.2f} s wall, {tc / n:.2f} s CPU per model "
          f"(proj_dim {trak.proj_dim_}); diagnostics: {dw / n:.2f} s wall, {dc / n:.2f} s CPU per model "
          f"({np.mean(hvps):.1f} HVPs, settings {settings.params()}, fold_batchnorm {not args.no_fold})")
    print(f"ratio diagnostics / TRAK featurisation: wall {dw / tw:.2f}x, CPU {dc / tc:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()

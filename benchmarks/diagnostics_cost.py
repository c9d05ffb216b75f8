"""Cost of `modeldiff diagnose` against TRAK featurisation for the same models (issue 13: ≤ 2×).

For each of the first N models of each store, in turn: TRAK's per-model work exactly as
``modeldiff attribute --method trak`` does it with its defaults (projected margin gradients of all
training and test examples, the kernel; ``TRAK._per_model``), then the diagnostics of the same
model with the CLI defaults (``diagnose_model`` on its training subset; tr(ΣH)'s out-of-basis part
now reuses the Hutchinson probes' HVPs, ``--trace-examples 8`` restores the old default). Alternating
the two per model keeps a shared machine's load comparable between them. Prints wall and CPU seconds
and the ratio diagnostics / TRAK. One run; no timing assertion.

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
    for path in args.stores:
        store = Store.open(path)
        data = store.load_dataset()
        trak = TRAK(device=args.device, progress=False)
        trak.proj_dim_ = auto_proj_dim(data.n_train) if args.proj_dim == "auto" else int(args.proj_dim)
        loss_fn = recipe_loss(store.recipe)
        for i in pick_models(store, args.models):
            model = store.load_model(i, args.device)
            w, c = time.perf_counter(), time.process_time()
            trak._per_model(model, i, data.x_train, data.y_train, data.x_test, data.y_test)
            totals["trak"][0] += time.perf_counter() - w
            totals["trak"][1] += time.process_time() - c
            mask = torch.as_tensor(np.array(store.masks[i]), dtype=torch.bool)
            model = store.load_model(i, args.device)
            w, c = time.perf_counter(), time.process_time()
            loss = TrainingLoss(model, data.x_train[mask], data.y_train[mask], loss_fn, batch_size=1024,
                                device=args.device)
            out = diagnose_model(loss, settings, seed=i)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            totals["diag"][0] += time.perf_counter() - w
            totals["diag"][1] += time.process_time() - c
            hvps.append(out["hvps"])
            print(f"{path} model {i}: trak {totals['trak'][0]:.1f}s diag {totals['diag'][0]:.1f}s (cumulative wall), "
                  f"{out['hvps']} HVPs", flush=True)
    n = len(hvps)
    tw, tc = totals["trak"]
    dw, dc = totals["diag"]
    print(f"models: {n}; TRAK featurisation: {tw / n:.2f} s wall, {tc / n:.2f} s CPU per model "
          f"(proj_dim {trak.proj_dim_}); diagnostics: {dw / n:.2f} s wall, {dc / n:.2f} s CPU per model "
          f"({np.mean(hvps):.1f} HVPs, settings {settings.params()})")
    print(f"ratio diagnostics / TRAK featurisation: wall {dw / tw:.2f}x, CPU {dc / tc:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()

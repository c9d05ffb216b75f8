"""``modeldiff counterfactual``: test input transformations on the models of two stores.

    modeldiff counterfactual --store-a RUN_A --store-b RUN_B \\
        --transform patch:pattern=texture,size=4,loc=random --target-class 0 [--sizes 2,4,6] --out DIR

Writes into DIR (built in a temporary folder, then renamed): ``effects.json`` (per test:
effects of A and B with CIs, A−B with CI and Welch p-value, per-model effects; sweep
tables) and the report (``report.html``, ``figures/``, ``summary.json``).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from datamodels.base.errors import UserError
from modeldiff.cli.study import add_allow_changed_code, say_code_changes


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "counterfactual", help="measure Pr(class | do(T)) - Pr(class | control) for the models of A and B",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store-a", required=True, help="store folder of algorithm A (models with saved weights)")
    p.add_argument("--store-b", required=True, help="store folder of algorithm B, same dataset")
    p.add_argument("--transform", action="append", required=True,
                   help="KIND:key=value,... e.g. patch:pattern=texture,size=4,loc=random, or your own function "
                        "'pkg.mod:fn' (x -> x', any data) (repeatable)")
    p.add_argument("--target-class", required=True, help="class index or name whose probability is measured")
    p.add_argument("--source-classes", default=None,
                   help="comma-separated classes of the test inputs to transform (default: all but the target)")
    p.add_argument("--sizes", default=None, help="comma-separated patch sizes to sweep, e.g. 2,4,6")
    p.add_argument("--max-inputs", type=int, default=None, help="use at most N test inputs (seeded sample)")
    p.add_argument("--models", type=int, default=None, help="use the first N usable models of each store")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--batch-size", type=int, default=512, help="test inputs per forward pass")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of random patch locations, sampling, bootstrap")
    p.add_argument("--names", default="A,B", help="display names of the two algorithms")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_allow_changed_code(p)
    p.add_argument("--use-valid-only", action="store_true",
                   help="accept stores with damaged rows and use only their intact models (else they are refused)")
    p.set_defaults(func=run)


def _class(value: str, names: list[str], what: str) -> int:
    value = value.strip()
    if value in names:
        return names.index(value)
    try:
        c = int(value)
    except ValueError:
        raise UserError(f"{what} {value!r} is neither a class index nor one of {', '.join(names)}") from None
    if not 0 <= c < len(names):
        raise UserError(f"{what} {c} is out of range: the dataset has classes 0..{len(names) - 1}")
    return c


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return values


def _open(path: str, what: str, use_valid_only: bool = False):
    from datamodels.store.store import Store  # lazy: heavy
    if not Path(path).is_dir():
        raise UserError(f"{what} {path} is not a folder: pass a store made by `modeldiff train`")
    return Store.open(path, use_valid_only=use_valid_only)


def _indices(store, n: int | None):
    usable = [int(i) for i in store.valid_indices() if store.has_weights(i)]
    if not usable:
        raise UserError(f"{store.path} has no finished models with saved weights: train with --save-weights")
    return usable[:n] if n else usable


def run(args) -> int:
    import numpy as np
    import torch

    from modeldiff.cli.diff import check_out, commit_out, prepare_out
    from modeldiff.counterfactual.effects import (
        counterfactual_effects,
        patch_size_sweep,
        select_inputs,
        store_predictor,
    )
    from modeldiff.counterfactual.transforms import parse_transform
    from modeldiff.report import write_report
    from modeldiff.report.writer import jsonable

    out = Path(args.out)
    check_out(out, args.force)
    names = [s.strip() for s in args.names.split(",")]
    if len(names) != 2 or not all(names):
        raise UserError(f"--names needs two comma-separated names, got {args.names!r}")
    if not 0 < args.level < 1:
        raise UserError(f"--level must be between 0 and 1, got {args.level}")
    from modeldiff.counterfactual.user_transform import is_user_spec, store_code_folder, user_transform

    code = store_code_folder(args.store_a)  # user transforms may live beside the store's data target
    try:  # built-in image transforms, or the user's own callables named 'pkg.mod:fn' (any data)
        transforms = [user_transform(t, code)[0] if is_user_spec(t) else parse_transform(t, seed=args.seed)
                      for t in args.transform]
    except UserError:
        raise
    except ValueError as err:
        raise UserError(f"--transform: {err}") from None
    sizes = _ints(args.sizes, "--sizes") if args.sizes else None
    if sizes and not any("size" in t.params for t in transforms):
        raise UserError("--sizes needs a patch transform (one with a size parameter)")
    from modeldiff.checks import check_device

    check_device(args.device)
    store_a = _open(args.store_a, "--store-a", args.use_valid_only)
    store_b = _open(args.store_b, "--store-b", args.use_valid_only)
    for store, path in ((store_a, args.store_a), (store_b, args.store_b)):
        say_code_changes(store, path, args.allow_changed_code, "testing counterfactuals on its models")
    ida, idb = store_a.metadata["dataset"]["identity"], store_b.metadata["dataset"]["identity"]
    if ida != idb:
        raise UserError(f"the stores were trained on different datasets ({ida[:12]} vs {idb[:12]}): "
                        "counterfactual tests compare models on the same test inputs")
    data = store_a.load_dataset()
    from modeldiff.studies.validate import check_transforms

    check_transforms(transforms, data.x_test, sizes or ())  # e.g. a patch larger than the image: before any model
    class_names = list(data.class_names)
    target = _class(args.target_class, class_names, "--target-class")
    sources = [_class(c, class_names, "--source-classes entry") for c in args.source_classes.split(",")] \
        if args.source_classes else None
    idx = select_inputs(data.y_test.numpy(), target, sources)
    if idx.size == 0:
        raise UserError("no test inputs in the chosen source classes")
    if args.max_inputs and idx.size > args.max_inputs:
        idx = np.sort(np.random.default_rng(args.seed).choice(idx, args.max_inputs, replace=False))
    x = data.x_test[torch.from_numpy(idx)]
    predict_a = store_predictor(store_a, indices=_indices(store_a, args.models), device=args.device,
                                batch_size=args.batch_size)
    predict_b = store_predictor(store_b, indices=_indices(store_b, args.models), device=args.device,
                                batch_size=args.batch_size)
    kw = dict(level=args.level, n_resamples=args.n_resamples, seed=args.seed)
    from datamodels.base.progress import heading  # a heading per test: no silent minutes

    results, sweeps = [], []
    for k, t in enumerate(transforms, 1):
        heading(f"transform {k} of {len(transforms)}: {t!r} on {int(idx.size)} inputs")
        results.append(counterfactual_effects(predict_a, predict_b, x, t, target, **kw))
        if sizes and "size" in t.params:
            heading(f"  patch sizes {', '.join(map(str, sizes))}")
            sweeps.append(patch_size_sweep(predict_a, predict_b, x, t, target, sizes, **kw))
    heading("writing the report")
    tmp = prepare_out(out, args.force)
    try:
        effects = {"names": names, "target_class": target, "target_name": class_names[target],
                   "source_classes": sources, "n_inputs": int(idx.size), "input_indices": idx.tolist(),
                   "store_a": str(args.store_a), "store_b": str(args.store_b),
                   "tests": [r.to_dict() for r in results],
                   "sweeps": [{"transform": s.results[0].transform, "table": s.table()} for s in sweeps]}
        (tmp / "effects.json").write_text(json.dumps(jsonable(effects), indent=1))
        write_report(tmp, None, counterfactuals=results, sweeps=sweeps, names=tuple(names),
                     title=f"Counterfactual tests {names[0]} vs {names[1]}: class {class_names[target]}",
                     meta={"store_a": args.store_a, "store_b": args.store_b, "inputs": int(idx.size)})
        commit_out(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in results:
        c = r.comparison
        print(f"{r.transform}: {names[0]} {c.a.mean:+.4f} [{c.a.ci_low:+.4f}, {c.a.ci_high:+.4f}]  "
              f"{names[1]} {c.b.mean:+.4f} [{c.b.ci_low:+.4f}, {c.b.ci_high:+.4f}]  diff p={c.diff.p_value:.3g}")
    return 0

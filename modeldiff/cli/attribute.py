"""``modeldiff attribute STORE --method trak|datamodels --out SCORES.h5``: an attribution matrix."""
from __future__ import annotations

import argparse

from datamodels.base.errors import UserError
from modeldiff.cli.study import add_allow_changed_code, say_code_changes


def add_parser(subparsers) -> None:
    from datamodels.attribution.names import METHODS, PROJECTORS
    from modeldiff.cli.choices import name_or_target

    p = subparsers.add_parser(
        "attribute", help="estimate training-data attributions [n_test, n_train] from a store",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("store", help="store directory made by `modeldiff train`")
    p.add_argument("--method", type=name_or_target(METHODS), default="trak", metavar="{" + ",".join(METHODS) + "}",
                   help="estimator: TRAK (needs saved weights), datamodels regression (needs many models), or an "
                        "import target 'pkg.mod:MyMethod' of an AttributionMethod")
    p.add_argument("--out", required=True, help="influence dataset to write (HDF5, e.g. scores.h5)")
    p.add_argument("--models", type=int, default=None,
                   help="use the first N finished models (default: all; TRAK: those with weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--proj-dim", default="auto",
                   help="TRAK: projection dimension k; auto = power of two <= n_train/4, at most "
                        "2048; 0 = no projection (exact TRAK, needs --lambda-reg when n_params "
                        ">= n_train)")
    p.add_argument("--projector", default="auto", type=name_or_target(PROJECTORS),
                   metavar="{" + ",".join(PROJECTORS) + "}",
                   help="TRAK: random projection (auto = fast_jl on CUDA when installed, else sketch), or an import "
                        "target 'pkg.mod:MyProjector' of a Projector class or factory")
    p.add_argument("--lambda-reg", type=float, default=0.0, help="TRAK: ridge added to the kernel")
    p.add_argument("--batch-size", type=int, default=64, help="TRAK: examples per gradient batch")
    p.add_argument("--model-output", default="margin",
                   help="TRAK: what is attributed: margin (classification margin) or an import target "
                        "'pkg.mod:Output' (a ModelOutput with output(model, batch) and out_to_loss(model, batch), or a "
                        "function (model, batch) -> (output, out_to_loss); the older (out, y) forms are adapted)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of a method given by import target (repeatable; values parsed as YAML)")
    p.add_argument("--n-lambdas", type=int, default=25, help="datamodels: values on the lasso path")
    p.add_argument("--eps", type=float, default=1e-3, help="datamodels: lambda_min / lambda_max")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="datamodels: share of models held out to choose lambda")
    p.add_argument("--seed", type=int, default=0,
                   help="projection seed (TRAK) / validation split of the models (datamodels)")
    p.add_argument("--compress", action="store_true", help="gzip the scores in the HDF5 file")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_allow_changed_code(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--use-valid-only", action="store_true",
                   help="accept a store with damaged rows and use only its intact models (else it is refused)")
    p.set_defaults(func=run)


def settings(args) -> dict:
    """Estimator keyword arguments from the parsed command line (a method other than the built-ins
    takes its settings as ``--param KEY=VALUE``)."""
    if args.method not in ("trak", "datamodels"):
        return dict(_param(p) for p in args.param)
    if args.method == "trak":
        k = args.proj_dim
        if k != "auto":
            if not k.isdigit():
                raise UserError(f"--proj-dim must be 'auto' or an integer >= 0, got {k!r}")
            k = int(k) or None
        return {"proj_dim": k, "projector": args.projector,
                "proj_seed": args.seed, "lambda_reg": args.lambda_reg, "batch_size": args.batch_size,
                "model_output": args.model_output}
    return {"n_lambdas": args.n_lambdas, "eps": args.eps, "val_fraction": args.val_fraction,
            "seed": args.seed}


def _param(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--param must be KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def run(args) -> int:
    from pathlib import Path

    from datamodels.attribution.api import attribute_to_file
    from datamodels.store.store import Store
    from modeldiff.checks import check_device, check_free_space, check_output

    out = Path(args.out)
    if out.exists() and not args.force and not out.is_dir():
        raise UserError(f"{out} exists: choose another --out or pass --force to overwrite it")
    check_output(out, folder=False, force=args.force)
    check_device(args.device)
    if args.batch_size < 1 or args.n_lambdas < 1:
        raise UserError("--batch-size and --n-lambdas must be >= 1")
    if not Path(args.store).is_dir():
        raise UserError(f"store {args.store} does not exist: train one with `modeldiff train`")
    store = args.store
    if (Path(args.store) / "metadata.json").is_file():  # a store: integrity-checked, read-only
        store = Store.open(args.store, use_valid_only=args.use_valid_only)
        say_code_changes(store, args.store, args.allow_changed_code, "attributing its models")
        d = store.metadata["dataset"]
        check_free_space(out.parent, 4 * d["n_test"] * d["n_train"] + (1 << 20), f"the scores file {out}")
    try:
        path = attribute_to_file(store, out, args.method, n_models=args.models,
                                 device=args.device, progress=not args.quiet,
                                 compression="gzip" if args.compress else None, **settings(args))
    except ValueError as err:  # settings rejected by the estimator
        raise UserError(str(err)) from err
    from datamodels.attribution.influence_io import read_influence

    used = read_influence(path, load_scores=False).n_models
    total = "" if isinstance(store, str) else f" of {store.n_models}"
    print(f"{args.method} scores written to {path} (from {used} models{total})")
    return 0

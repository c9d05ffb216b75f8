"""``modeldiff verify STORE [--repair]``: check a store's integrity; optionally retrain what is damaged.

Exit status: 0 when the store is intact, 2 when it is damaged (every problem is listed per file
and per row). ``--repair`` rebuilds damaged array files and retrains exactly the damaged rows with
the recipe and settings the store recorded (the same as rerunning its ``modeldiff train`` command).
"""
from __future__ import annotations

import argparse

from datamodels.base.errors import UserError
from modeldiff.cli.study import add_allow_changed_code


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="check a store's metadata, arrays, row checksums and weights; --repair retrains damage",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("store", help="store directory made by `modeldiff train`")
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged files and retrain exactly the damaged rows (recorded recipe and settings)")
    p.add_argument("--device", default="cpu", help="device for --repair: cpu, cuda or cuda:K")
    p.add_argument("--workers", type=int, default=1, help="worker processes for --repair")
    p.add_argument("--data-dir", default=None, help="dataset folder for --repair (default: the recorded one)")
    add_allow_changed_code(p)
    p.set_defaults(func=run)


def repair(path, device: str = "cpu", workers: int = 1, data_dir: str | None = None,
           allow_changed_code: bool = False) -> dict:
    """Retrain the damaged rows of the store at ``path`` with its recorded recipe and settings."""
    from datamodels.runs.launchers import fill_store
    from datamodels.store.metadata import reload_dataset
    from datamodels.store.store import Store
    from datamodels.store.verify import read_metadata
    from datamodels.training.recipe import recipe_from_dict

    meta = read_metadata(path)
    recipe = recipe_from_dict(meta["recipe"], stored=True)
    if data_dir:
        recipe = recipe.replace(**{"data.data_dir": data_dir})
    data = reload_dataset(meta, data_dir)
    ensemble_size = meta.get("ensemble_size") or 16
    store = Store.create_or_resume(path, recipe, data, meta["n_models"], meta["subset_fraction"], meta["seed"],
                                   meta.get("save_weights"), meta["train_margins"], ensemble_size=ensemble_size,
                                   allow_changed_code=allow_changed_code)
    return fill_store(store, device, ensemble_size, "local", workers, data)


def run(args) -> int:
    from datamodels.store.verify import verify
    from modeldiff.checks import check_device

    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    report = verify(args.store)
    if report.metadata_error:  # nothing else can be checked without it: one line, exit 2
        raise UserError(report.metadata_error)
    for line in report.lines():
        print(line)
    if report.ok or not args.repair:
        return 0 if report.ok else 2
    check_device(args.device)
    s = repair(args.store, args.device, args.workers, args.data_dir, args.allow_changed_code)
    after = verify(args.store)
    print(f"repaired: {s['done']}/{s['models']} models done, {s['diverged']} diverged, {s['pending']} pending; "
          f"store {'intact' if after.ok else 'still damaged: ' + after.summary()}")
    return 0 if after.ok else 2

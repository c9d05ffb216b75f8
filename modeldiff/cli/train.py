"""``modeldiff train RECIPE.yaml --out STORE``: train many models on random subsets into a store."""
from __future__ import annotations

import argparse
import os

from datamodels.base.errors import UserError
from datamodels.runs.names import ENSEMBLE_SIZE, MODELS, SUBSET_FRACTION
from modeldiff.cli.study import add_allow_changed_code


def add_parser(subparsers) -> None:
    from datamodels.runs.names import LAUNCHERS
    from datamodels.training.schedule import DEFAULT_TEXT, UNTIL_TEXT

    p = subparsers.add_parser("train", help="train many models of one recipe on random subsets into a store",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                              epilog=f"learning-rate schedule (recipe key optim.schedule), by default {DEFAULT_TEXT}. "
                                     f"{UNTIL_TEXT}")
    p.add_argument("recipe", help="recipe YAML file, or 'default' for the embedded digits recipe")
    p.add_argument("--out", required=True, help="store directory (created, or resumed when it exists)")
    p.add_argument("--models", type=int, default=MODELS, help="number of models N")
    p.add_argument("--subset-fraction", type=float, default=SUBSET_FRACTION, help="share alpha of the training set per model")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--launcher", choices=LAUNCHERS.names(), default="local",
                   help="where ensembles train: local processes or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address ('auto' joins a running cluster)")
    p.add_argument("--workers", type=int, default=1, help="worker processes / Ray tasks in parallel")
    p.add_argument("--ensemble-size", type=int, default=ENSEMBLE_SIZE,
                   help="models trained at once per worker; fixed when the store is created (results depend on "
                        "it), a resume with another value is refused")
    p.add_argument("--seed", type=int, default=0, help="run seed: masks and model seeds derive from it")
    p.add_argument("--save-weights", type=int, default=None,
                   help="keep weights of the first K models only (all when not given)")
    p.add_argument("--no-train-margins", action="store_true", help="skip margins on the training set")
    p.add_argument("--data-dir", default=None, help="dataset folder (overrides the recipe's data.data_dir)")
    add_allow_changed_code(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from datamodels.data.dataset import load_from_config
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store
    from modeldiff.checks import check_device, check_output

    if args.ensemble_size < 1 or args.workers < 1:
        raise UserError("--ensemble-size and --workers must be >= 1")
    if args.save_weights is not None and args.save_weights < 0:
        raise UserError(f"--save-weights must be >= 0, got {args.save_weights}")
    check_device(args.device)
    check_output(args.out, folder=True, may_exist=True)
    from datamodels.training.recipe import resolve_recipe

    recipe = resolve_recipe(args.recipe, args.data_dir)
    from datamodels.training.backends import check_recipe
    from modeldiff.checks import notice_if_slow

    with notice_if_slow(f"loading {recipe.data.name or 'the data'} and checking recipe {recipe.name}"):
        data = load_from_config(recipe.data)
        check_recipe(recipe, data)  # bad model/optimizer/loss/trainer targets: one line, before the store exists
    store = Store.create_or_resume(args.out, recipe, data, args.models, args.subset_fraction, args.seed,
                                   args.save_weights, not args.no_train_margins, ensemble_size=args.ensemble_size,
                                   allow_changed_code=args.allow_changed_code)
    s = fill_store(store, args.device, args.ensemble_size, args.launcher, args.workers, None, args.address)
    print(f"{recipe.name}: {s['done']}/{s['models']} models done, {s['diverged']} diverged, "
          f"{s['pending']} pending, {s['corrupted']} corrupted; test accuracy "
          f"{100 * s['accuracy_mean']:.2f} ± {100 * s['accuracy_std']:.2f} %; eta/B = {s['noise_temperature']:.3g}")
    if store.fit_line():
        print(store.fit_line())
    print(f"store: {os.path.abspath(args.out)}")
    return 0 if s["pending"] == 0 else 1

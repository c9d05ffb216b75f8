"""``modeldiff lds SCORES.h5 --against EVAL_STORE``: linear datamodeling score of an attribution."""
from __future__ import annotations

import argparse

import numpy as np

from modeldiff.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "lds", help="check attributions against models retrained on held-out subsets (LDS)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scores", help="influence dataset written by `modeldiff attribute`")
    p.add_argument("--against", required=True,
                   help="store of models trained on other random subsets of the same data/recipe")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--save", action="store_true", help="record the LDS in the scores file")
    p.set_defaults(func=run)


def lds_against_store(influence, store, *, n_boot: int = 1000, seed: int = 0):
    """LDS of an :class:`~datamodels.attribution.influence_io.InfluenceDataset` against a store's valid models."""
    from datamodels.attribution.lds import lds

    meta = store.metadata["dataset"]
    if influence.dataset_identity and influence.dataset_identity != meta["identity"]:
        raise UserError(f"the scores are for dataset {influence.dataset_name!r} "
                        f"({influence.dataset_identity[:12]}…) but {store.path} was trained on "
                        f"{meta['name']!r} ({meta['identity'][:12]}…): use an evaluation store of "
                        "the same data")
    valid = np.asarray(store.valid_indices(warn=False))
    if influence.store_path and str(store.path.resolve()) == influence.store_path:
        ranges = influence.method_params.get("model_ranges")
        if ranges is None:
            raise UserError(f"{store.path} is the store the scores came from and the file does not "
                            "say which models were used: evaluate against another store")
        used = np.zeros(store.n_models, bool)
        for a, b in ranges:
            used[a:b] = True
        valid = valid[~used[valid]]  # held-out: the models the scores never saw
    if len(valid) < 3:
        raise UserError(f"{store.path} has {len(valid)} finished held-out models; LDS needs at "
                        "least 3 (train more, or a separate evaluation store)")
    if influence.train_indices.max() >= meta["n_train"] or influence.test_indices.max() >= meta["n_test"]:
        raise UserError("the scores index examples outside the evaluation store's dataset")
    masks = np.asarray(store.masks[valid])[:, influence.train_indices]
    margins = np.asarray(store.test_margins[valid])[:, influence.test_indices]
    if len(np.unique(masks, axis=0)) < 3:
        raise UserError(f"{store.path} has fewer than 3 distinct subsets: LDS needs varied masks")
    return lds(influence.scores, masks, margins, n_boot=n_boot, seed=seed)


def run(args) -> int:
    from datamodels.attribution.influence_io import read_influence, update_attrs
    from datamodels.store.store import Store

    inf = read_influence(args.scores)
    res = lds_against_store(inf, Store.open(args.against), n_boot=args.bootstrap, seed=args.seed)
    print(f"{inf.method} ({inf.n_models} models): {res}")
    if args.save:
        update_attrs(args.scores, lds=res.mean)
        print(f"saved lds={res.mean:.4f} in {args.scores}")
    return 0

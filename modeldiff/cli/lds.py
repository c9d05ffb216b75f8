"""``modeldiff lds SCORES.h5 --against EVAL_STORE``: linear datamodeling score of an attribution.

The figure is computed on truly held-out subsets only: evaluation models whose training subset
(mask) equals a subset the scores were estimated from, or overlaps one more than independent
random subsets do, are excluded and counted, whatever folder they live in. An evaluation store
trained with the same ``--seed`` (and subset fraction) as the attributed store shares its subsets
row for row: a warning says so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from datamodels.base.errors import UserError

if TYPE_CHECKING:  # numpy is imported when a command runs, not when `modeldiff --help` builds the parser
    import numpy as np


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "lds", help="check attributions against models retrained on held-out subsets (LDS)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scores", help="influence dataset written by `modeldiff attribute`")
    p.add_argument("--against", required=True,
                   help="store of models trained on other random subsets of the same data/recipe "
                        "(train it with another --seed)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CI (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--save", action="store_true", help="record the LDS in the scores file")
    p.add_argument("--use-valid-only", action="store_true",
                   help="accept an evaluation store with damaged rows and use only its intact models")
    p.set_defaults(func=run)


def attributed_masks(influence) -> tuple[np.ndarray | None, dict | None]:
    """Masks ``[U, n_train]`` of the models the scores were estimated from, redrawn from the
    attributed store's recorded seed (``None`` when the file does not say which models, or the
    store's metadata is gone), and that store's metadata."""
    import numpy as np

    from datamodels.store.store import draw_masks_and_seeds
    from datamodels.store.verify import read_metadata

    ranges = influence.method_params.get("model_ranges")
    if not influence.store_path or ranges is None:
        return None, None
    try:
        meta = read_metadata(Path(influence.store_path))
    except UserError:
        return None, None
    rows = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
    if rows.size and rows.max() >= meta["n_models"]:
        return None, meta
    masks, _ = draw_masks_and_seeds(meta["seed"], int(rows.max()) + 1 if rows.size else 0,
                                    meta["dataset"]["n_train"], meta["subset_fraction"])
    return masks[rows], meta


def lds_against_store(influence, store, *, n_boot: int = 1000, seed: int = 0, report=print):
    """LDS of an :class:`~datamodels.attribution.influence_io.InfluenceDataset` against a store's
    valid, truly held-out models (see :func:`datamodels.attribution.lds.held_out`)."""
    import numpy as np

    from datamodels.attribution.lds import held_out, lds

    if n_boot < 1:
        raise UserError(f"--bootstrap must be >= 1, got {n_boot}")
    meta = store.metadata["dataset"]
    if influence.dataset_identity and influence.dataset_identity != meta["identity"]:
        raise UserError(f"the scores are for dataset {influence.dataset_name!r} "
                        f"({influence.dataset_identity[:12]}…) but {store.path} was trained on "
                        f"{meta['name']!r} ({meta['identity'][:12]}…): use an evaluation store of "
                        "the same data")
    if influence.train_indices.max() >= meta["n_train"] or influence.test_indices.max() >= meta["n_test"]:
        raise UserError("the scores index examples outside the evaluation store's dataset")
    valid = np.asarray(store.valid_indices())
    all_masks = np.asarray(store.masks[valid])
    used, used_meta = attributed_masks(influence)
    ranges = influence.method_params.get("model_ranges")
    if used is None and ranges and influence.store_path and str(Path(store.path).resolve()) == influence.store_path:
        # a ModelSet without store metadata (e.g. ModelSet.from_folder): the used models' masks are its own
        used = np.asarray(store.masks)[np.concatenate([np.arange(a, b) for a, b in ranges])]
    if used is None:
        if influence.store_path and str(store.path.resolve()) == influence.store_path:
            raise UserError(f"{store.path} is the store the scores came from and the file does not "
                            "say which models were used: evaluate against another store")
        report(f"warning: {influence.method} scores do not say which training subsets they saw (their store "
               f"{influence.store_path or '?'} is gone or unrecorded): cannot exclude shared subsets; the LDS "
               "may be inflated if the evaluation store shares them", file=sys.stderr)
    else:
        same_seed = used_meta is not None and (used_meta["seed"], used_meta["subset_fraction"]) == \
            (store.metadata["seed"], store.metadata["subset_fraction"])
        h = held_out(all_masks, used)
        same_store = bool(influence.store_path) and str(store.path.resolve()) == influence.store_path
        if h.n_excluded and same_store:
            report(f"note: excluded {h.n_same} models of {store.path} the scores were estimated from and "
                   f"{h.n_dependent} with overlapping subsets; evaluating on the other {int(h.keep.sum())}",
                   file=sys.stderr)
        elif h.n_excluded:
            why = ("it was trained with the same --seed and subset fraction as the attributed store, so its "
                   "subsets repeat row for row: train the evaluation store with another --seed") if same_seed \
                else "their subsets were used (or overlap with ones used) for the scores"
            report(f"warning: excluded {h.n_excluded} of {len(valid)} evaluation models of {store.path} "
                   f"({h.n_same} same subset, {h.n_dependent} dependent): {why}", file=sys.stderr)
        valid, all_masks = valid[h.keep], all_masks[h.keep]
    if len(valid) < 3:
        raise UserError(f"{store.path} has {len(valid)} finished held-out models; LDS needs at "
                        "least 3 (train more, or a separate evaluation store with another --seed)")
    masks = all_masks[:, influence.train_indices]
    margins = np.asarray(store.test_margins[valid])[:, influence.test_indices]
    if len(np.unique(masks, axis=0)) < 3:
        raise UserError(f"{store.path} has fewer than 3 distinct held-out subsets: LDS needs varied masks")
    return lds(influence.scores, masks, margins, n_boot=n_boot, seed=seed)


def run(args) -> int:
    from datamodels.attribution.influence_io import read_influence, update_attrs
    from datamodels.store.store import Store

    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    inf = read_influence(args.scores)
    store = Store.open(args.against, use_valid_only=args.use_valid_only)
    res = lds_against_store(inf, store, n_boot=args.bootstrap, seed=args.seed)
    print(f"{inf.method} ({inf.n_models} models): {res}")
    if args.save:
        update_attrs(args.scores, lds=res.mean)
        print(f"saved lds={res.mean:.4f} in {args.scores}")
    return 0

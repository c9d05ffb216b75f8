"""``modeldiff diff SCORES_A SCORES_B --components K --out DIR``: residual PCA, variances, report.

Writes into DIR (all at once: built in a temporary folder next to it, then renamed):
``components.npy`` [k, n_train], ``test_projections.npy`` [n_test, k], ``variances.json``,
``subpopulations.json``, and the report (``report.html``, ``figures/``, ``summary.json``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from datamodels.base.errors import UserError


def add_parser(subparsers) -> None:
    from modeldiff.diff.names import SOLVERS

    p = subparsers.add_parser(
        "diff", help="compare two attribution matrices: residual PCA A−B, explained variances, report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scores_a", metavar="SCORES_A", help="attributions of algorithm A (.h5/.hdf5, .npy or .pt)")
    p.add_argument("scores_b", metavar="SCORES_B", help="attributions of algorithm B, same examples")
    p.add_argument("--components", type=int, default=10, help="number of residual components k")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--solver", choices=SOLVERS.names(), default="auto",
                   help="PCA solver: full SVD, randomized, or auto (by size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomized solver")
    p.add_argument("--names", default="A,B", help="display names of the two algorithms, comma-separated")
    p.add_argument("--top", type=int, default=12, help="examples per subpopulation group")
    p.add_argument("--store", default=None,
                   help="store folder whose dataset gives images and class names for the report")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def check_out(out: Path, force: bool) -> None:
    """Refuse an existing ``out`` unless ``force``, or one that cannot be written (a file, under a
    file, a read-only place): checked before any long computation."""
    from modeldiff.checks import check_output

    if out.exists() and not force:
        raise UserError(f"{out} already exists: choose a new --out folder or pass --force to replace it")
    check_output(out, folder=True, force=force)


def prepare_out(out: Path, force: bool) -> Path:
    """A fresh temporary folder beside ``out`` (named as :mod:`datamodels.base.atomic` names temporaries,
    so one left by a killed run is removed by the next command), moved into place by `commit_out`."""
    from datamodels.base.atomic import _tmp_prefix, remove_stale_temporaries

    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    return Path(tempfile.mkdtemp(prefix=_tmp_prefix(out), dir=out.parent))


def commit_out(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder into place (replacing an old ``out``)."""
    from datamodels.base.atomic import replace_dir

    replace_dir(tmp, out)


def _images(store_dir, la, n_test: int, n_train: int):
    """Train/test images and class names from a store's dataset (indexed like the scores)."""
    if store_dir is None:
        return None, None, None
    from datamodels.store.store import Store  # lazy: heavy
    data = Store.open(store_dir).load_dataset()
    # without recorded indices, rows and columns must be the whole test and training splits
    tr = la.train_indices if la.train_indices is not None else range(data.n_train)
    te = la.test_indices if la.test_indices is not None else range(data.n_test)
    if (len(tr), len(te)) != (n_train, n_test) or max(tr, default=0) >= data.n_train \
            or max(te, default=0) >= data.n_test:
        raise UserError(f"the dataset of store {store_dir} ({data.n_test} test, {data.n_train} train) does not "
                        f"match the scores ({n_test} x {n_train}); pass the store the scores came from")
    return data.x_train[list(tr)], data.x_test[list(te)], list(data.class_names)


def run(args) -> int:
    import numpy as np

    from modeldiff.diff.io_scores import check_same_examples, load_scores
    from modeldiff.diff.residual_pca import ModelDiff
    from modeldiff.diff.subpopulations import subpopulations
    from modeldiff.report import write_report

    names = [s.strip() for s in args.names.split(",")]
    if len(names) != 2 or not all(names):
        raise UserError(f"--names needs two comma-separated names, got {args.names!r}")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    from modeldiff.checks import check_device

    if args.components < 1:
        raise UserError(f"--components must be at least 1, got {args.components}")
    out = Path(args.out)
    check_out(out, args.force)
    check_device(args.device)
    la, lb = load_scores(args.scores_a), load_scores(args.scores_b)
    check_same_examples(la, lb)
    md = ModelDiff(args.components, solver=args.solver, device=args.device, random_state=args.seed)
    md.fit(la.scores, lb.scores)
    n_test, n_train = md.n_test_, md.n_features_in_
    train_images, test_images, class_names = _images(args.store, la, n_test, n_train)
    subs = subpopulations(md, n_train_top=args.top, n_test_top=args.top, train_labels=la.train_labels,
                          test_labels=la.test_labels, class_names=class_names)
    tmp = prepare_out(out, args.force)
    try:
        np.save(tmp / "components.npy", md.components_)
        np.save(tmp / "test_projections.npy", md.test_projections_)
        variances = {"names": names, "n_components": int(args.components), "solver": md.solver_,
                     "passes": md.n_passes_, "converged": md.converged_,
                     "explained_variance_a": md.explained_variance_a_.tolist(),
                     "explained_variance_b": md.explained_variance_b_.tolist(),
                     "residual_variance": md.explained_variance_.tolist(),
                     "excluded_rows": md.excluded_rows_.tolist(),
                     "scores_a": str(args.scores_a), "scores_b": str(args.scores_b),
                     "meta_a": la.meta, "meta_b": lb.meta}
        (tmp / "variances.json").write_text(json.dumps(variances, indent=1))
        (tmp / "subpopulations.json").write_text(json.dumps([s.to_dict() for s in subs], indent=1))
        write_report(tmp, md, subpops=subs, train_images=train_images, test_images=test_images,
                     train_labels=la.train_labels, test_labels=la.test_labels, class_names=class_names,
                     names=tuple(names), title=f"ModelDiff {names[0]} − {names[1]}",
                     meta={"scores_a": args.scores_a, "scores_b": args.scores_b, "solver": md.solver_,
                           "components": args.components})
        commit_out(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}/report.html ({args.components} components, solver {md.solver_})")
    return 0

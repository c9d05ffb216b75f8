"""``modeldiff search``: the confirmatory transformation search on the models of two stores.

    modeldiff search --store-a RUN_A --store-b RUN_B [--scores-a SA --scores-b SB] --out DIR

Discovery on the first half of each store's models (and half of the test inputs), confirmation
of the top candidates on the other halves, Holm-adjusted (see
:mod:`modeldiff.counterfactual.search`). With ``--scores-a/--scores-b`` the data-derived
overlays of the top ModelDiff components join the generic library. Writes ``DIR/search.json``
(per direction: ``headline``, ``confirmed``, ``tested``, ``candidates_tested``, the whole discovery ``ranking``) and prints the
headline of each direction. The study pipeline runs the same code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datamodels.base.errors import UserError
from modeldiff.cli.study import add_allow_changed_code, say_code_changes

RANKINGS = ("exclusive", "effect", "t")  # modeldiff.counterfactual.ranking.RANKINGS, spelt out: building the CLI imports no numpy


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("search", help="find and confirm input transformations A's models rely on more than B's",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store-a", required=True, help="store folder of algorithm A (models with saved weights)")
    p.add_argument("--store-b", required=True, help="store folder of algorithm B, same dataset")
    p.add_argument("--scores-a", default=None, help="attribution file of A (.h5/.npy/.pt): adds component overlays")
    p.add_argument("--scores-b", default=None, help="attribution file of B (with --scores-a)")
    p.add_argument("--transform", action="append", default=[],
                   help="extra candidate: KIND:key=value,... or 'pkg.mod:fn' (repeatable)")
    p.add_argument("--families", default=None,
                   help="comma-separated generic families (default all): patch,stroke,square,tint,grayscale,blur,"
                        "contrast,sharpen,shift,lowpass,highpass; 'none' for only your candidates")
    p.add_argument("--components", type=int, default=3, help="components turned into overlays (with scores)")
    p.add_argument("--n-confirm", type=int, default=5, help="candidates confirmed per direction")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level of the confirmation (Holm)")
    p.add_argument("--n-inputs", type=int, default=400, help="test inputs per half (at most)")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples for CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's random choices")
    p.add_argument("--ranking", choices=RANKINGS, default=None,
                   help="discovery ranking: exclusive (lower bound of A's class-specific log-odds effect beyond 3x B's), "
                        "effect (beyond B's) or t "
                        "(default: the library's, modeldiff.counterfactual.ranking.DEFAULT_RANKING)")
    p.add_argument("--screen-models", type=int, default=None,
                   help="models per algorithm of the screening pass over every candidate, 0: no screening "
                        "(default: the library's, modeldiff.counterfactual.screen.SCREEN_MODELS)")
    p.add_argument("--screen-keep", type=int, default=None,
                   help="candidates per direction the screening passes to the full discovery pass "
                        "(default: the library's, modeldiff.counterfactual.screen.SCREEN_KEEP)")
    p.add_argument("--classes-per-transform", type=int, default=None,
                   help="(transform, class) pairs ranked per transform in discovery: its best classes "
                        "(default: the library's, modeldiff.counterfactual.ranking.CLASSES_PER_TRANSFORM)")
    p.add_argument("--distinct", action="store_true",
                   help="confirm distinct findings: skip near-copies (same place or kind, same class) of a better one")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--names", default="A,B", help="display names of the two algorithms")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_allow_changed_code(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from modeldiff.cli.counterfactual import _open
    from modeldiff.cli.diff import check_out, commit_out, prepare_out
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.ranking import CLASSES_PER_TRANSFORM
    from modeldiff.counterfactual.screen import SCREEN_KEEP, SCREEN_MODELS
    from modeldiff.counterfactual.search import SearchSettings, check_search_values, overlay_candidates, search, store_halves
    from modeldiff.report.writer import jsonable

    out = Path(args.out)
    args.screen_models = SCREEN_MODELS if args.screen_models is None else args.screen_models
    args.screen_keep = SCREEN_KEEP if args.screen_keep is None else args.screen_keep
    if args.classes_per_transform is None:
        args.classes_per_transform = CLASSES_PER_TRANSFORM
    check_search_values(alpha=args.alpha, n_inputs=args.n_inputs, n_confirm=args.n_confirm,
                        n_resamples=args.n_resamples, screen_keep=args.screen_keep, screen_models=args.screen_models,
                        classes_per_transform=args.classes_per_transform,
                        name=lambda key: f"--{key.replace('_', '-')}")
    settings = SearchSettings(n_confirm=args.n_confirm, alpha=args.alpha, n_inputs=args.n_inputs,
                              n_resamples=args.n_resamples, seed=args.seed, screen_keep=args.screen_keep,
                              classes_per_transform=args.classes_per_transform, distinct=args.distinct,
                              **({"ranking": args.ranking} if args.ranking else {}))  # every number checked before work
    if args.components < 1:
        raise UserError(f"--components must be >= 1, got {args.components}")
    check_out(out, args.force)
    names = [s.strip() for s in args.names.split(",")]
    if len(names) != 2 or not all(names):
        raise UserError(f"--names needs two comma-separated names, got {args.names!r}")
    if bool(args.scores_a) != bool(args.scores_b):
        raise UserError("give both --scores-a and --scores-b, or neither")
    store_a, store_b = _open(args.store_a, "--store-a"), _open(args.store_b, "--store-b")
    for store, path in ((store_a, args.store_a), (store_b, args.store_b)):
        say_code_changes(store, path, args.allow_changed_code, "searching with its models")
    if store_a.metadata["dataset"]["identity"] != store_b.metadata["dataset"]["identity"]:
        raise UserError("the stores were trained on different datasets: the search compares models on the same inputs")
    data = store_a.load_dataset()
    families = None if not args.families else [f.strip() for f in args.families.split(",") if f.strip()]
    cands = [] if families == ["none"] else [(t, None) for t in generic_candidates(data.x_test.shape[1:],
                                                                                 families=families, seed=args.seed)]
    cands += user_candidates(args.transform, args.seed)
    if args.scores_a:
        print("fitting ModelDiff both ways for the component overlays", file=sys.stderr, flush=True)
        cands += _overlays(args, data, overlay_candidates)
    if not cands:
        raise UserError("no candidate transforms: drop --families none or give --transform")
    from datamodels.base.progress import heading
    from modeldiff.studies.validate import check_transforms

    check_transforms([t for t, _ in cands], data.x_test)  # a candidate that cannot run: before any model loads
    heading(f"loading the models of both algorithms; {len(cands)} candidate transforms")
    halves = store_halves(store_a, store_b, data, n_inputs=args.n_inputs, seed=args.seed, device=args.device,
                          screen_models=args.screen_models)
    result = search(halves, cands, settings, class_names=list(data.class_names), progress=heading)
    tmp = prepare_out(out, args.force)
    try:
        doc = {"names": names, "store_a": args.store_a, "store_b": args.store_b,
               "directions": {d: r.to_dict() for d, r in result.items()}}
        (tmp / "search.json").write_text(json.dumps(jsonable(doc), indent=1))
        commit_out(tmp, out)
    finally:
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    for d, (x, y) in (("a_minus_b", names), ("b_minus_a", names[::-1])):
        r = result[d]
        print(f"{x} relies more than {y} ({r.candidates_tested} candidates, {len(r.tested)} confirmed-tested): "
              f"{r.headline}")
    print(f"wrote {out / 'search.json'}")
    return 0


def user_candidates(specs, seed: int) -> list[tuple]:
    from modeldiff.counterfactual.library import as_candidates
    from modeldiff.counterfactual.user_transform import is_user_spec, user_transform

    out = []
    for spec in specs:
        try:
            out += [user_transform(spec)] if is_user_spec(spec) else as_candidates([spec], seed)
        except ValueError as err:
            raise UserError(f"--transform {spec!r}: {err}") from None
    return out


def _overlays(args, data, overlay_candidates) -> list[tuple]:
    import numpy as np

    from modeldiff.diff.io_scores import load_scores
    from modeldiff.diff.residual_pca import ModelDiff

    sa, sb = load_scores(args.scores_a).scores, load_scores(args.scores_b).scores
    fits = {"A-B": ModelDiff(args.components, random_state=args.seed).fit(np.asarray(sa), np.asarray(sb)),
            "B-A": ModelDiff(args.components, random_state=args.seed).fit(np.asarray(sb), np.asarray(sa))}
    return overlay_candidates(fits, data.x_train, data.y_train, args.components)

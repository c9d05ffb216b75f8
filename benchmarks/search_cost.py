"""Cost of the search's discovery stage, with and without the screening pass, side by side.

    python benchmarks/search_cost.py RUN_DIR [--models 32] [--inputs 200] [--rows clean]

RUN_DIR holds ``store_a`` and ``store_b`` with saved weights (any finished study run). On the same
halves it runs discovery over the whole default library (every family) once without screening
(every candidate on every discovery model) and once with it (``modeldiff.counterfactual.screen``:
every candidate on the first ``--screen-models``, the ``--keep`` best per direction on all), and
prints the seconds of each, their ratio, the load average, and whether the two rankings put the
same candidates in the top ``n_confirm`` (what the confirmation tests) of each direction.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--models", type=int, default=32, help="models per half (at most)")
    p.add_argument("--inputs", type=int, default=200, help="inputs per half")
    p.add_argument("--screen-models", type=int, default=None, help="screening models (default: the library's)")
    p.add_argument("--keep", type=int, default=None, help="candidates kept per direction (default: the library's)")
    args = p.parse_args(argv)
    import modeldiff.counterfactual.search as S
    from datamodels.store.store import Store
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.ranking import rank_candidates, ranking_ratio
    from modeldiff.counterfactual.screen import SCREEN_KEEP, SCREEN_MODELS, allowed_classes

    screen_models = SCREEN_MODELS if args.screen_models is None else args.screen_models
    keep = SCREEN_KEEP if args.keep is None else args.keep
    stores = [Store.open(str(Path(args.run) / f"store_{t}")) for t in "ab"]
    data = stores[0].load_dataset()
    halves = S.store_halves(*stores, data, n_inputs=args.inputs, max_models=args.models, screen_models=screen_models)
    cands = [(t, None) for t in generic_candidates(data.x_test.shape[1:])]
    ranking = S.SearchSettings().ranking  # the library's default, screened and ranked by its own rule
    runs = {}
    for name, k in (("without screening", 0), (f"screening on {screen_models} models, keep {keep}", keep)):
        t0 = time.perf_counter()
        disc = S.discover(halves, cands, keep=k, ratio=ranking_ratio(ranking))
        runs[name] = (disc, time.perf_counter() - t0, os.getloadavg()[0])
        print(f"{name}: {len(cands)} candidates, {runs[name][1]:.1f} s (load average {runs[name][2]:.1f})", flush=True)
    (full, t_full, _), (screened, t_screen, _) = runs.values()
    print(f"without / with screening: {t_full / t_screen:.2f}x")
    allowed = allowed_classes(cands, full[0][0].shape[-1])
    n = S.SearchSettings().n_confirm
    for direction, flip in (("A-B", False), ("B-A", True)):
        top = [[r["index"] for r in rank_candidates(d, allowed, flip, ranking,
                                                    screened_out=getattr(d, "screened_out", ()))[:n]]
               for d in (full, screened)]
        print(f"{direction}: top {n} without screening {top[0]}, with {top[1]}: "
              f"{len(set(top[0]) & set(top[1]))} of {n} shared")
    return 0


if __name__ == "__main__":
    sys.exit(main())

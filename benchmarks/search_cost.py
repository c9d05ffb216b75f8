"""Cost of the search's discovery stage: candidates and seconds, the patch-only library one candidate per
predictor call (as before) against the library with strokes, several candidates per call.

    python benchmarks/search_cost.py RUN_DIR [--models 16] [--inputs 200] [--repeats 2]

RUN_DIR holds ``store_a`` and ``store_b`` with saved weights (any finished study run). Prints the
candidate counts and the median seconds of each discovery, with the load average beside them.
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
    p.add_argument("--models", type=int, default=16, help="models per half (at most)")
    p.add_argument("--inputs", type=int, default=200, help="inputs per half")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    import numpy as np

    import modeldiff.counterfactual.search as S
    from datamodels.store.store import Store
    from modeldiff.counterfactual.library import generic_candidates

    stores = [Store.open(str(Path(args.run) / f"store_{t}")) for t in "ab"]
    data = stores[0].load_dataset()
    halves = S.store_halves(*stores, data, n_inputs=args.inputs, max_models=args.models)
    shape = data.x_test.shape[1:]
    old = [(t, None) for t in generic_candidates(shape, families=[f for f in _families() if f != "stroke"])]
    new = [(t, None) for t in generic_candidates(shape)]
    batch = S.DISCOVERY_BATCH
    for name, cands, per_call in (("without strokes, one candidate per call", old, 1),
                                  ("without strokes, batched", old, batch),
                                  ("with strokes, batched", new, batch)):
        S.DISCOVERY_BATCH = per_call
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            S.discover(halves, cands)
            times.append(time.perf_counter() - t0)
        print(f"{name}: {len(cands)} candidates, {np.median(times):.1f} s "
              f"({1000 * np.median(times) / len(cands):.1f} ms a candidate; load average {os.getloadavg()[0]:.1f})")
    S.DISCOVERY_BATCH = batch
    return 0


def _families():
    from modeldiff.counterfactual.library import FAMILIES

    return FAMILIES


if __name__ == "__main__":
    sys.exit(main())

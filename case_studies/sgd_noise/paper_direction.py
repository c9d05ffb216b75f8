"""The ModelDiff paper's SGD-noise finding as a pre-registered test on a finished study.

The paper (CIFAR-10, lr 0.1 / batch 128 vs 0.02 / 1024): low-noise models react more than
high-noise ones to a black/white texture patch towards "dog" and to a window patch towards
"truck". Here, on the study's own stores (``store_a`` = high noise, ``store_b`` = low noise, as in
cifar10_cpu.yaml), each patch is swept over sizes on test images of other classes; per size the
low − high difference of the mean log-odds effect on the target class, with a bootstrap 95 % CI
over models and a Welch p-value, Holm-adjusted over all (patch, size) tests. The direction
replicates for a patch when some size has a difference whose CI is above 0 and whose adjusted
p < 0.05; the opposite direction is reported the same way.

    python -m case_studies.sgd_noise.paper_direction STUDY_OUT [--sizes 2,4,6,8,10]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from modeldiff.counterfactual.search import holm

PAPER_TESTS = (("patch:pattern=texture,size=6,loc=random", "dog"), ("patch:pattern=window,size=6,loc=random", "truck"))


def paper_direction(out_dir, sizes=(2, 4, 6, 8, 10), n_test: int = 300, seed: int = 0, device: str = "cpu",
                    n_resamples: int = 2000, high: str = "a", low: str = "b") -> dict:
    """Sweep the paper's two patches on a finished study (see the module docstring).

    Returns:
        ``{"tests": [{patch, target, size, low, high, diff, diff_ci, p, p_holm}], "replicates":
        {patch: bool}, "opposite": {patch: bool}}`` in log-odds units (low, high: mean effects).
    """
    from datamodels.store.store import Store
    from modeldiff.counterfactual.effects import patch_size_sweep, store_predictor
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.studies.match import study_store
    from modeldiff.studies.pipeline import counterfactual_inputs

    out_dir = Path(out_dir)
    st_high, st_low = Store.open(study_store(out_dir, high)), Store.open(study_store(out_dir, low))  # matched if so
    data = st_high.load_dataset()
    names = [str(c) for c in data.class_names]
    pred_low, pred_high = store_predictor(st_low, device=device), store_predictor(st_high, device=device)
    tests = []
    for spec, cls in PAPER_TESTS:
        target = names.index(cls)
        x = counterfactual_inputs(data, target, n_test, seed)
        sweep = patch_size_sweep(pred_low, pred_high, x, parse_transform(spec, seed=seed), target, list(sizes),
                                 n_resamples=n_resamples, seed=seed)
        for size, r in zip(sweep.sizes, sweep.results):
            c = r.log_odds
            tests.append({"patch": spec.split("pattern=")[1].split(",")[0], "target": cls, "size": int(size),
                          "n_inputs": r.n_inputs, "low": c.a.mean, "high": c.b.mean, "diff": c.diff.mean,
                          "diff_ci": [c.diff.ci_low, c.diff.ci_high], "p": c.diff.p_value})
    for t, adj in zip(tests, holm([t["p"] for t in tests])):
        t["p_holm"] = float(adj)
    patches = sorted({t["patch"] for t in tests})
    rep = {p: any(t["patch"] == p and t["diff_ci"][0] > 0 and t["p_holm"] < 0.05 for t in tests) for p in patches}
    opp = {p: any(t["patch"] == p and t["diff_ci"][1] < 0 and t["p_holm"] < 0.05 for t in tests) for p in patches}
    return {"tests": tests, "replicates": rep, "opposite": opp, "unit": "log-odds"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_out", help="a finished study folder (store_a = high noise, store_b = low noise; "
                    "store_X_matched instead when the study matched fit)")
    ap.add_argument("--sizes", default="2,4,6,8,10")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    res = paper_direction(args.study_out, [int(s) for s in args.sizes.split(",")], args.n_test, device=args.device)
    for t in res["tests"]:
        print(f"{t['patch']:>8s} -> {t['target']:<6s} size {t['size']:>2d}: low {t['low']:+.3f}  high {t['high']:+.3f}  "
              f"low-high {t['diff']:+.3f} [{t['diff_ci'][0]:+.3f}, {t['diff_ci'][1]:+.3f}]  p(Holm) {t['p_holm']:.3g}")
    print(json.dumps({"replicates": res["replicates"], "opposite": res["opposite"]}))


if __name__ == "__main__":
    main()

"""Classic vs cross-fitted ModelDiff components on finished planted runs: precision@100 of the planted
training images at the top end of the A−B component and of the controls (B−A, B's own top component).

Reads a run folder written by ``modeldiff study planted`` (or benchmarks/planted_grid.py): its
TRAK groups (``trak_groups_{a,b}.npz``, written by the null calibration) give the full-model scores
(classic estimator) and disjoint halves of each algorithm's attribution models (cross-fitted
estimator, :class:`modeldiff.diff.crossfit.CrossFitModelDiff`). ``--groups 2,4,8`` also draws the
curve against the attribution models used (the first g groups of each algorithm).

The groups keep TRAK's kernel product and its out-to-loss term ``Q = 1 − p(y | x)`` apart, so both
weightings come from one run exactly: ``--weightings q,none`` scores with TRAK's ``Q`` (the default,
``attribution.params.out_to_loss: true``) and without it (``out_to_loss: false``).

``--grid DIR`` takes every variant of a finished planted grid (benchmarks/planted_grid.py) and its
no-plant twin, and counts the variants where the top A−B component holds at least 3x chance of the
planted images while B−A and B's own top component hold at most 2x chance, and where the twin's top
A−B component does not reach 3x chance on the same images.

    python benchmarks/discovery_components.py RUN_DIR [RUN_DIR ...] [--study planted] [--set KEY=VALUE]
        [--splits 8] [--groups 2,4,8] [--weightings q,none] [--json OUT.json]
    python benchmarks/discovery_components.py --grid runs/planted_grid [--weightings q,none] [--json OUT.json]

``--set`` must repeat the plant overrides the run was made with (the planted set is re-derived from
the study's YAML and them); ``--variant K [--grid-seed S]`` takes the plant of a planted-grid variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeldiff.diff.crossfit import CrossFitModelDiff, own_components  # noqa: E402
from modeldiff.diff.null import TrakGroups, split_halves  # noqa: E402

TOP = 100


def planted_set(run: Path, study: str, sets: list[str], variant: int | None = None, grid_seed: int = 0) -> np.ndarray:
    """Indices of the planted training images of a run, re-derived from its study's plant (the runner's
    ``plant`` keyword) with the overrides ``sets``, or from grid variant ``variant`` of ``grid_seed``."""
    from case_studies.planted.plant import plant
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data

    cfg = load_study(study)
    if variant is not None:
        from case_studies.planted.grid import draw_variants, variant_config

        cfg = variant_config(cfg, draw_variants(variant + 1, grid_seed)[variant])
    args = dict(cfg.runner["kwargs"]["plant"])
    args.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in sets)})
    return np.asarray(plant(load_study_data(cfg), **args).planted_train)


def precision(weights: np.ndarray, planted: np.ndarray, k: int = TOP) -> float:
    """Share of planted images among the ``k`` largest weights (the component's top end)."""
    return float(np.isin(np.argsort(-np.asarray(weights))[:k], planted).mean())


def classic_top(sa: np.ndarray, sb: np.ndarray) -> dict:
    import torch

    from modeldiff.diff.residual_pca import ModelDiff

    fit = lambda x, y: ModelDiff(3, solver="full", dtype=torch.float64).fit(x, y).components_[0]
    return {"a_minus_b": fit(sa, sb), "b_minus_a": fit(sb, sa), "b_own": _own_classic(sb)}


def _own_classic(s: np.ndarray) -> np.ndarray:
    x = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-30)
    x = x - x.mean(0)
    v = np.linalg.svd(x, full_matrices=False)[2][0]
    return v * np.sign(v[np.abs(v).argmax()])


def crossfit_top(ga: TrakGroups, gb: TrakGroups, groups_a, groups_b, splits: int, seed: int = 0) -> dict:
    ha = [(np.asarray(groups_a)[i], np.asarray(groups_a)[j]) for i, j in split_halves(len(groups_a), splits, seed)]
    hb = [(np.asarray(groups_b)[i], np.asarray(groups_b)[j]) for i, j in split_halves(len(groups_b), splits, seed + 1)]
    sa = [(ga.scores(i), ga.scores(j)) for i, j in ha]
    sb = [(gb.scores(i), gb.scores(j)) for i, j in hb]
    ab = CrossFitModelDiff(3).fit([(a1, a2, b1, b2) for (a1, a2), (b1, b2) in zip(sa, sb)])
    ba = CrossFitModelDiff(3).fit([(b1, b2, a1, a2) for (a1, a2), (b1, b2) in zip(sa, sb)])
    return {"a_minus_b": ab.components_[0], "b_minus_a": ba.components_[0], "b_own": own_components(sb, 1)[1][0],
            "signal_a_minus_b": float(ab.explained_variance_[0]), "noise_a_minus_b": float(ab.noise_variance_[0]),
            "halves": [(a1, a2, b1, b2) for (a1, a2), (b1, b2) in zip(sa, sb)]}


def planted_signal(halves: list, planted: np.ndarray, n_train: int) -> float:
    """Cross-fitted A−B residual signal variance along the unit vector uniform over the planted images."""
    from modeldiff.diff.crossfit import residual

    u = np.zeros(n_train)
    u[planted] = 1 / np.sqrt(len(planted))
    vals = []
    for a1, a2, b1, b2 in halves:
        r1, r2 = residual(a1, b1)[2] @ u, residual(a2, b2)[2] @ u
        vals.append(float(((r1 - r1.mean()) * (r2 - r2.mean())).mean()))
    return float(np.mean(vals))


def weighted(g: TrakGroups, weighting: str) -> TrakGroups:
    """The groups scored with TRAK's out-to-loss term (``q``) or without it (``none``: ``Q`` = 1)."""
    if weighting == "q":
        return g
    if weighting == "none":
        return TrakGroups(g.s, np.ones_like(g.q), g.sizes, g.rows)
    raise SystemExit(f"error: unknown weighting {weighting!r}: use q or none")


def evaluate(run: Path, planted: np.ndarray, splits: int, groups: list[int] | None, weighting: str = "q") -> dict:
    ga, gb = (weighted(TrakGroups.load(run / f"trak_groups_{t}.npz"), weighting) for t in "ab")
    n_train = ga.s.shape[2]
    out = {"run": str(run), "weighting": weighting, "n_planted": int(len(planted)), "chance": len(planted) / n_train,
           "curve": []}
    for g in groups or [len(ga.sizes)]:
        ia, ib = list(range(min(g, len(ga.sizes)))), list(range(min(g, len(gb.sizes))))
        t0 = time.perf_counter()
        classic = classic_top(ga.scores(ia), gb.scores(ib))
        cross = crossfit_top(ga, gb, ia, ib, splits)
        row = {"groups": len(ia), "models_a": int(ga.sizes[ia].sum()), "models_b": int(gb.sizes[ib].sum()),
               "seconds": round(time.perf_counter() - t0, 1)}
        for name, comps in (("classic", classic), ("crossfit", cross)):
            row[name] = {d: precision(comps[d], planted) for d in ("a_minus_b", "b_minus_a", "b_own")}
        row["crossfit"]["signal_a_minus_b"], row["crossfit"]["noise_a_minus_b"] = (
            cross["signal_a_minus_b"], cross["noise_a_minus_b"])
        row["crossfit"]["planted_signal"] = planted_signal(cross["halves"], planted, n_train)
        row["crossfit"]["planted_signal_share"] = row["crossfit"]["planted_signal"] / cross["signal_a_minus_b"]
        out["curve"].append(row)
    return out


def grid_runs(grid: Path, study: str) -> list[tuple[int, Path, np.ndarray]]:
    """``(variant, run folder, planted indices)`` of every finished variant of a planted grid."""
    result = json.loads((grid / "planted_grid.json").read_text())
    seed = int(result["settings"]["seed"])
    return [(v["variant"], grid / f"variant_{v['variant']}",
             planted_set(grid / f"variant_{v['variant']}", study, [], v["variant"], seed)) for v in result["variants"]]


def grid_table(grid: Path, study: str, splits: int, weightings: list[str]) -> dict:
    """Per variant, estimator and weighting: precision@100 over chance of the planted run's top A−B, B−A and
    B-own components and of the twin's top A−B component; the counts of variants passing every control."""
    rows = []
    for k, run, planted in grid_runs(grid, study):
        for w in weightings:
            top = evaluate(run, planted, splits, None, w)
            twin = evaluate(run / "twin", planted, splits, None, w)
            ch = top["chance"]
            for est in ("classic", "crossfit"):
                r = {d: top["curve"][-1][est][d] / ch for d in ("a_minus_b", "b_minus_a", "b_own")}
                r["twin_a_minus_b"] = twin["curve"][-1][est]["a_minus_b"] / ch
                r["found"] = r["a_minus_b"] >= 3
                r["passes"] = bool(r["found"] and r["b_minus_a"] <= 2 and r["b_own"] <= 2 and r["twin_a_minus_b"] < 3)
                rows.append({"variant": k, "weighting": w, "estimator": est, "chance": ch, **r})
                print(f"v{k:<2d} {w:>4s} {est:>8s}: A−B {r['a_minus_b']:4.1f}x  B−A {r['b_minus_a']:4.1f}x  "
                      f"B own {r['b_own']:4.1f}x  twin A−B {r['twin_a_minus_b']:4.1f}x  "
                      f"{'passes' if r['passes'] else 'found, fails a control' if r['found'] else '-'}", flush=True)
    counts = {}
    for w in weightings:
        for est in ("classic", "crossfit"):
            sel = [r for r in rows if r["weighting"] == w and r["estimator"] == est]
            counts[f"{w}/{est}"] = {"variants": len(sel), "found": sum(r["found"] for r in sel),
                                    "passes_every_control": sum(r["passes"] for r in sel),
                                    "b_own_over_2x": sum(r["b_own"] > 2 for r in sel),
                                    "b_minus_a_over_2x": sum(r["b_minus_a"] > 2 for r in sel),
                                    "twin_over_3x": sum(r["twin_a_minus_b"] >= 3 for r in sel)}
            print(f"{w}/{est}: " + ", ".join(f"{k} {v}" for k, v in counts[f"{w}/{est}"].items()))
    return {"grid": str(grid), "rows": rows, "counts": counts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="planted run folders")
    p.add_argument("--grid", default=None, help="a finished planted grid folder (every variant and its twin)")
    p.add_argument("--study", default="planted")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="plant override of the runs")
    p.add_argument("--variant", type=int, default=None, help="the runs are this variant of the planted grid")
    p.add_argument("--grid-seed", type=int, default=0, help="the planted grid's seed (with --variant)")
    p.add_argument("--splits", type=int, default=8, help="random half splits averaged by the cross-fitted estimator")
    p.add_argument("--groups", default=None, help="comma-separated TRAK group counts for the curve (default: all)")
    p.add_argument("--weightings", default="q", help="comma-separated: q (TRAK's out-to-loss term) and/or none")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    weightings = args.weightings.split(",")
    if args.grid:
        table = grid_table(Path(args.grid), args.study, args.splits, weightings)
        if args.json:
            Path(args.json).write_text(json.dumps(table, indent=1))
        return 0
    if not args.runs:
        p.error("give run folders or --grid DIR")
    groups = [int(g) for g in args.groups.split(",")] if args.groups else None
    results = []
    for run in map(Path, args.runs):
        planted = planted_set(run, args.study, args.set, args.variant, args.grid_seed)
        for w in weightings:
            res = evaluate(run, planted, args.splits, groups, w)
            results.append(res)
            for row in res["curve"]:
                c, x = row["classic"], row["crossfit"]
                print(f"{run.name} [{w}] models {row['models_a']}/{row['models_b']}: chance {res['chance']:.3f}; "
                      f"precision@{TOP} classic A−B {c['a_minus_b']:.2f} B−A {c['b_minus_a']:.2f} B own "
                      f"{c['b_own']:.2f} | cross-fitted A−B {x['a_minus_b']:.2f} B−A {x['b_minus_a']:.2f} B own "
                      f"{x['b_own']:.2f}; planted-direction signal {x['planted_signal']:.2g} = "
                      f"{x['planted_signal_share']:.3f} of the top component's ({row['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ModelDiff paper's SGD-noise finding as a pre-registered test on a finished study.

The paper (CIFAR-10, lr 0.1 / batch 128 vs 0.02 / 1024): low-noise models react more than
high-noise ones to a black/white texture patch towards "dog" and to a window patch towards
"truck". Here, on the study's own stores (``store_a`` = high noise, ``store_b`` = low noise, as in
cifar10_cpu.yaml), each patch is swept over sizes on test images of other classes; per size the
low − high difference of the mean log-odds effect on the target class, with a bootstrap 95 % CI
over models and a Welch p-value, Holm-adjusted over all (patch, size) tests. The direction
replicates for a patch when some size has a difference whose CI is above 0 and whose adjusted
p < 0.05; the opposite direction is reported the same way.

Beside it, from the same per-model effects, the controls of `paper_controls`: half against half of
one algorithm (null), the size chosen on half of the models and tested on the other half (held-out
models), the paper's patch against a grey patch of the same size and places (occlusion), and each
model's logits divided by its fitted temperature (confidence); and each algorithm's test accuracy,
loss, calibration error and temperature.

    python -m case_studies.sgd_noise.paper_direction STUDY_OUT [--sizes 2,4,6,8,10] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER_TESTS = (("patch:pattern=texture,size=6,loc=random", "dog"), ("patch:pattern=window,size=6,loc=random", "truck"))
GREY_PATCH = "patch:pattern=solid,size=6,loc=random"


def _store_effects(store, data, names, sizes, n_test, seed, device, temperature=None) -> dict:
    """Per-model log-odds effects ``{(patch, target, size): [M]}`` of the paper's patches and of the grey
    solid patch (same sizes, same places), with logits divided by ``temperature[M]`` when given."""
    from case_studies.sgd_noise.paper_controls import GREY, effects
    from modeldiff.counterfactual.effects import store_predictor
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.studies.pipeline import counterfactual_inputs

    predict = store_predictor(store, device=device)
    out = {}
    for spec, cls in PAPER_TESTS:
        target = names.index(cls)
        x = counterfactual_inputs(data, target, n_test, seed)
        clean = predict(x)
        for pattern, base in ((spec.split("pattern=")[1].split(",")[0], spec), ("solid", GREY_PATCH)):
            t = parse_transform(base, seed=seed)
            if pattern == "solid":
                t = t.with_params(color=(GREY,) * 3, background=(GREY,) * 3)
            for size in sizes:
                treated = predict(t.with_params(size=int(size))(x))
                out[(pattern, cls, int(size))] = (effects(clean, treated, target),
                                                  None if temperature is None else effects(clean, treated, target, temperature))
    return out


def paper_direction(out_dir, sizes=(2, 4, 6, 8, 10), n_test: int = 300, seed: int = 0, device: str = "cpu",
                    n_resamples: int = 2000, high: str = "a", low: str = "b", matched: bool = True) -> dict:
    """Sweep the paper's two patches on a finished study, with the controls of `paper_controls`.

    Returns:
        ``{"tests": [{patch, target, size, low, high, diff, diff_ci, p, p_holm}], "replicates":
        {patch: bool}, "opposite": {patch: bool}, "fit": {"low"|"high": {accuracy, test_loss, ece,
        temperature}}, "controls": {"null", "held_out", "occluder", "temperature"}}`` in log-odds units
        (low, high: mean effects over models; tests Holm-adjusted over all (patch, size) pairs).
    """
    import numpy as np

    from case_studies.sgd_noise import paper_controls as pc
    from datamodels.store.store import Store
    from modeldiff.studies.match import study_store

    out_dir = Path(out_dir)
    where = study_store if matched else (lambda out, tag: out / f"store_{tag}")  # matched stores when the study made them
    st = {"high": Store.open(where(out_dir, high)), "low": Store.open(where(out_dir, low))}
    data = st["high"].load_dataset()
    names = [str(c) for c in data.class_names]
    y = data.y_test.numpy()
    eff, eff_t, fit = {}, {}, {}
    for name, store in st.items():
        rows = [int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i))]
        logits = np.asarray(store.test_logits)[rows]
        temperature = pc.fit_temperature(logits, y)
        fit[name] = pc.fit_table(logits, y, temperature)
        both = _store_effects(store, data, names, sizes, n_test, seed, device, temperature)
        eff[name] = {k: v[0] for k, v in both.items()}
        eff_t[name] = {k: v[1] for k, v in both.items()}
    kw = {"n_resamples": n_resamples, "seed": seed}
    paper = lambda e: {k: v for k, v in e.items() if k[0] != "solid"}  # noqa: E731
    tests = pc.test_rows(paper(eff["low"]), paper(eff["high"]), **kw)
    rep, opp = pc.verdicts(tests)
    controls = {"null": pc.null_control({n: paper(e) for n, e in eff.items()}, **kw),
                "held_out": pc.held_out_control(paper(eff["low"]), paper(eff["high"]), **kw)}
    for name, (lo_eff, hi_eff) in {"occluder": (pc.specific_effects(paper(eff["low"]), eff["low"]),
                                                pc.specific_effects(paper(eff["high"]), eff["high"])),
                                   "temperature": (paper(eff_t["low"]), paper(eff_t["high"]))}.items():
        rows = pc.test_rows(lo_eff, hi_eff, **kw)
        r, o = pc.verdicts(rows)
        controls[name] = {"tests": rows, "replicates": r, "opposite": o}
    return {"tests": tests, "replicates": rep, "opposite": opp, "fit": fit, "controls": controls, "unit": "log-odds"}


def _print_rows(rows) -> None:
    for t in rows:
        print(f"  {t['patch']:>8s} -> {t['target']:<6s} size {t['size']:>2d}: low {t['low']:+.3f}  high {t['high']:+.3f}  "
              f"low-high {t['diff']:+.3f} [{t['diff_ci'][0]:+.3f}, {t['diff_ci'][1]:+.3f}]  p(Holm) {t['p_holm']:.3g}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_out", help="a finished study folder (store_a = high noise, store_b = low noise; "
                    "store_X_matched instead when the study matched fit)")
    ap.add_argument("--sizes", default="2,4,6,8,10")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--unmatched", action="store_true", help="a matched study's stores as first trained (store_a, "
                    "store_b), not its matched ones")
    ap.add_argument("--json", help="also write the whole result to this file")
    args = ap.parse_args(argv)
    res = paper_direction(args.study_out, [int(s) for s in args.sizes.split(",")], args.n_test, device=args.device,
                          matched=not args.unmatched)
    for name, f in res["fit"].items():
        print(f"{name} noise: test accuracy {100 * f['accuracy']:.1f} %, test loss {f['test_loss']:.3f}, "
              f"ECE {f['ece']:.3f}, fitted temperature {f['temperature']:.2f}")
    print("the paper's direction (low - high, log-odds of the target class):")
    _print_rows(res["tests"])
    print(f"  replicates {res['replicates']}  opposite {res['opposite']}")
    c = res["controls"]
    print("null (half against half of one algorithm): " + ", ".join(
        f"{n} noise {v['significant']} significant (max |diff| {v['max_abs_diff']:.3f})" for n, v in c["null"].items()))
    print("held-out models (size chosen on first halves, tested on second halves):")
    _print_rows(c["held_out"]["tests"])
    print(f"  replicates {c['held_out']['replicates']}  opposite {c['held_out']['opposite']}")
    for name, what in (("occluder", "paper patch minus grey solid patch"), ("temperature", "logits / fitted temperature")):
        print(f"{name} control ({what}):")
        _print_rows(c[name]["tests"])
        print(f"  replicates {c[name]['replicates']}  opposite {c[name]['opposite']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()

"""Attribution benchmarks: ours vs the reference implementations, side by side.

    python benchmarks/attribution.py featurize-resnet9 [--n 192 --proj-dim 2048]
    python benchmarks/attribution.py digits --store S --eval-store E [--models 5]
    python benchmarks/attribution.py store --store S --eval-store E [--models 5]   # any store
    python benchmarks/attribution.py regression --store S [--sklearn-targets 8]
    python benchmarks/attribution.py lds-table --store S --eval-store E

``featurize-*``: TRAK featurisation throughput (per-example margin gradients + projection + Q),
examples/s, ours (SketchProjector) vs traker (CPU: BasicProjector) at equal k; the first batch
(warm-up: projection signs, allocations) is not timed. ``regression``: ours vs scikit-learn's
``lasso_path`` looped over targets with the same λ grid, held-out selection and refit; sklearn is
timed on a random subset of targets and extrapolated (the loop is linear in targets).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from datamodels.attribution.gradients import featurize, n_params  # noqa: E402
from datamodels.attribution.lds import lds  # noqa: E402
from datamodels.attribution.projectors import make_projector  # noqa: E402


def _traker(model, n_train, k, save_dir):
    from trak import TRAKer

    return TRAKer(model=model, task="image_classification", train_set_size=n_train,
                  save_dir=save_dir, device="cpu", proj_dim=k, use_half_precision=False,
                  logging_level=logging.ERROR)


def time_featurize(model, x, y, k, batch, repeats=1):
    """Median examples/s of ours and traker on ``x`` over ``repeats`` alternating runs (the
    first batch of each run excluded: warm-up)."""
    proj = make_projector("sketch", n_params(model), k, 0, "cpu")
    ours, ref = [], []
    with tempfile.TemporaryDirectory() as d:
        tr = _traker(model, len(y), k, d)
        for r in range(repeats):
            featurize(model, x[:batch], y[:batch], proj, r, batch_size=batch)  # warm-up
            t = time.perf_counter()
            featurize(model, x[batch:], y[batch:], proj, r, batch_size=batch)
            ours.append((len(y) - batch) / (time.perf_counter() - t))
            tr.load_checkpoint(model.state_dict(), model_id=r)  # a new id: nothing cached
            tr.featurize((x[:batch], y[:batch]), num_samples=batch)
            t = time.perf_counter()
            for s in range(batch, len(y), batch):
                tr.featurize((x[s:s + batch], y[s:s + batch]), num_samples=len(y[s:s + batch]))
            ref.append((len(y) - batch) / (time.perf_counter() - t))
    return float(np.median(ours)), float(np.median(ref))


def featurize_resnet9(args):
    from datamodels.training.models import build_model
    from datamodels.training.recipe import ModelConfig

    if os.environ.get("MODELDIFF_CIFAR10_DIR"):
        from datamodels.data.dataset import load_dataset

        data = load_dataset("cifar10", per_class_train=-(-args.n // 10), per_class_test=1)
        x, y, src = data.x_train[:args.n], data.y_train[:args.n], "CIFAR-10 images"
        mean, std = data.mean, data.std
    else:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(args.n, 3, 32, 32, generator=gen), torch.randint(0, 10, (args.n,), generator=gen)
        src, mean, std = "random images", (0.5,) * 3, (0.25,) * 3
    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="resnet9", width=64), 1, 10, (3, 32, 32), mean, std).eval()
    ours, ref = time_featurize(net, x, y, args.proj_dim, args.batch, args.repeats)
    print(f"ResNet-9 ({n_params(net):,} params), {args.n} {src}, k={args.proj_dim}, batch "
          f"{args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}: ours "
          f"{ours:.2f} ex/s, traker "
          f"{ref:.3f} ex/s, ratio {ours / ref:.1f}x")


def _trak_scores(store, ids, k, seed=0):
    from datamodels.attribution.trak import TRAK

    d = store.load_dataset()
    models = ((int(i), store.load_model(int(i))) for i in ids)
    return TRAK(proj_dim=k, proj_seed=seed, progress=False).run(models, d.x_train, d.y_train,
                                                                   d.x_test, d.y_test)


def _traker_scores(store, ids, k):
    d = store.load_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        tr = _traker(store.load_model(int(ids[0])), d.n_train, k, tmp)
        for i in ids:
            tr.load_checkpoint(store.load_model(int(i)).state_dict(), model_id=int(i))
            for s in range(0, d.n_train, 256):
                tr.featurize((d.x_train[s:s + 256], d.y_train[s:s + 256]),
                             num_samples=len(d.y_train[s:s + 256]))
        tr.finalize_features()
        for i in ids:
            tr.start_scoring_checkpoint("t", store.load_model(int(i)).state_dict(),
                                        model_id=int(i), num_targets=d.n_test)
            tr.score((d.x_test, d.y_test), num_samples=d.n_test)
        return np.array(tr.finalize_scores("t")).T


def _eval(store):
    v = store.valid_indices(warn=False)
    return np.asarray(store.masks[v]), np.asarray(store.test_margins[v])


def digits(args):
    """Featurisation throughput and LDS at equal k, ours vs traker, on the models of any store
    (``digits`` and ``store`` are the same part; the name is kept for the recorded commands)."""
    from datamodels.store.store import Store

    st, ev = Store.open(args.store), _eval(Store.open(args.eval_store))
    d = st.load_dataset()
    net = st.load_model(0)
    ours, ref = time_featurize(net, d.x_train[:args.n], d.y_train[:args.n], args.proj_dim,
                               args.batch, args.repeats)
    arch = st.recipe.model.arch
    print(f"{arch} on {d.name} ({n_params(net):,} params), {args.n} train images, k={args.proj_dim}, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}: "
          f"ours {ours:.1f} ex/s, traker {ref:.1f} ex/s, ratio {ours / ref:.2f}x")
    ids = [i for i in st.valid_indices(warn=False) if st.has_weights(int(i))][:args.models]
    a = lds(_trak_scores(st, ids, args.proj_dim), *ev)
    b = lds(_traker_scores(st, ids, args.proj_dim), *ev)
    print(f"LDS with {len(ids)} models, k={args.proj_dim}: ours {a.mean:.4f} "
          f"[{a.ci_low:.4f}, {a.ci_high:.4f}], traker {b.mean:.4f} [{b.ci_low:.4f}, "
          f"{b.ci_high:.4f}], difference {a.mean - b.mean:+.4f}")


def sklearn_datamodels(x, y, lambdas, tr, va, stop):
    """The same estimator with scikit-learn: per target ``lasso_path`` on the training split over
    its λ grid up to index ``stop[t]`` (inclusive), held-out selection, ``Lasso`` refit on all."""
    from sklearn.linear_model import Lasso, lasso_path

    chosen = np.empty(y.shape[1], np.int64)
    for t in range(y.shape[1]):
        xt, yt = x[tr], y[tr, t]
        _, coefs, _ = lasso_path(xt - xt.mean(0), yt - yt.mean(), alphas=lambdas[:stop[t] + 1, t])
        b = yt.mean() - xt.mean(0) @ coefs
        mse = ((y[va, t][:, None] - x[va] @ coefs - b) ** 2).mean(0)
        chosen[t] = int(np.argmin(mse))
        Lasso(alpha=max(lambdas[chosen[t], t], 1e-12)).fit(x, y[:, t])
    return chosen


def regression(args):
    from datamodels.attribution.regression import DatamodelsRegression, split_models
    from datamodels.store.store import Store

    st = Store.open(args.store)
    x, y = _eval(st)
    t = time.perf_counter()
    reg = DatamodelsRegression(progress=False).fit(x, y)
    ours = time.perf_counter() - t
    n, p, nt = x.shape[0], x.shape[1], y.shape[1]
    print(f"ours: N={n} models, n_train={p}, {nt} targets: {ours:.1f} s, converged "
          f"{100 * reg.converged_:.1f}%")
    s = reg.settings
    tr, va = split_models(n, s.val_fraction, s.seed)
    pick = np.sort(np.random.default_rng(0).choice(nt, min(args.sklearn_targets, nt), replace=False))
    xf, yf = x.astype(np.float64), y[:, pick].astype(np.float64)
    visited = np.where(np.isnan(reg.val_mse_[:, pick]), -1, np.arange(s.n_lambdas)[:, None]).max(0)
    for name, stop in (("same early-stopped path", visited),
                       ("full path", np.full(len(pick), s.n_lambdas - 1))):
        t = time.perf_counter()
        chosen = sklearn_datamodels(xf, yf, reg.lambdas_[:, pick], tr, va, stop)
        sk = (time.perf_counter() - t) / len(pick) * nt
        agree = np.mean(chosen == reg.lambda_index_[pick])
        print(f"sklearn ({name}), timed on {len(pick)} targets, extrapolated to {nt}: {sk:.1f} s; "
              f"ratio {sk / ours:.1f}x; same chosen λ on {100 * agree:.0f}% of the timed targets")


def lds_table(args):
    from datamodels.attribution.regression import DatamodelsRegression
    from datamodels.store.store import Store

    st, ev = Store.open(args.store), _eval(Store.open(args.eval_store))
    ids = [i for i in st.valid_indices(warn=False) if st.has_weights(int(i))]
    for m in (1, 5, 20):
        r = lds(_trak_scores(st, ids[:m], args.proj_dim), *ev)
        print(f"TRAK, {m} models, k={args.proj_dim}: {r}")
    x, y = _eval(st)
    r = lds(DatamodelsRegression(progress=False).fit(x, y).coef_, *ev)
    print(f"datamodels, {x.shape[0]} models: {r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["featurize-resnet9", "digits", "store", "regression", "lds-table"])
    ap.add_argument("--store"), ap.add_argument("--eval-store")
    ap.add_argument("--n", type=int, default=192, help="examples to featurize")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--proj-dim", type=int, default=2048)
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--sklearn-targets", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="alternating timing runs (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (both sides)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    {"featurize-resnet9": featurize_resnet9, "digits": digits, "store": digits, "regression": regression,
     "lds-table": lds_table}[args.part](args)


if __name__ == "__main__":
    main()

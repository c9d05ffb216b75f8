"""Models per minute on digits, this CPU: (a) the ensemble trainer (in this process, and (a2) the CLI's
path: a store filled by one worker process per core), (b) a plain one-model loop,
(c) one process per model (the classic worker pattern), with mean test accuracy, and the compute
limit (training FLOPs per model / measured dense-matmul FLOP/s).

    python benchmarks/train_throughput.py [--recipe default|RECIPE.yaml] [--precision bfloat16]
        [--ensemble-models 64] [--plain-models 6] [--process-models 8]

All three sides train the same recipe (a digits_cnn recipe on digits; ``--precision`` overrides the
recipe's, for all three).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the modeldiff CLI does; before torch loads
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._support.plain_digits import check_benchmarkable, load_recipe_for_benchmark, train_plain  # noqa: E402
from datamodels.base.errors import UserError  # noqa: E402
from datamodels.data.dataset import load_digits  # noqa: E402
from datamodels.store.store import draw_masks_and_seeds  # noqa: E402
from datamodels.training.ensemble_trainer import train_ensemble  # noqa: E402

FRACTION = 0.5  # alpha: the usual datamodels subset size


def matmul_flops_per_s(dtype=torch.float32, n=1024, reps=10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def training_flops_per_model(recipe, data) -> float:
    """FLOPs of one model's training (forward + backward of every step) and its evaluation."""
    from torch.utils.flop_counter import FlopCounterMode

    from datamodels.training.models import init_ensemble

    net = init_ensemble(recipe.model, [0], data.num_classes, data.image_shape, data.mean, data.std)
    xb = data.x_train[: recipe.batch_size].unsqueeze(0)
    with FlopCounterMode(display=False) as counter:
        net(xb).sum().backward()
    per_step = counter.get_total_flops()
    m = round(FRACTION * data.n_train)
    steps = recipe.epochs * -(-m // recipe.batch_size)
    eval_flops = per_step / 3 * (data.n_train + data.n_test) / recipe.batch_size
    return per_step * steps + eval_flops


def run_ensemble(recipe, data, n_models, ensemble_size):
    masks, seeds = draw_masks_and_seeds(0, n_models, data.n_train, FRACTION)
    train_ensemble(recipe, data, torch.from_numpy(masks[:2]), seeds[:2].tolist())  # warm-up
    accs, t = [], time.perf_counter()
    for s in range(0, n_models, ensemble_size):
        res = train_ensemble(recipe, data, torch.from_numpy(masks[s:s + ensemble_size]),
                             seeds[s:s + ensemble_size].tolist())
        accs.append(res.accuracy.numpy())
    return time.perf_counter() - t, np.concatenate(accs)


def run_store(recipe, data, n_models, ensemble_size, workers):
    """The CLI's path, ``modeldiff train --workers W``: the local launcher fills a store (rows, checksums,
    status) with ``workers`` spawned processes of ``cpu_count / workers`` threads each."""
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create_or_resume(os.path.join(tmp, "store"), recipe, data, n_models, FRACTION, 0,
                                       save_weights=0)
        t = time.perf_counter()
        summary = fill_store(store, "cpu", ensemble_size, "local", workers, data)
        elapsed = time.perf_counter() - t
        assert summary["done"] == n_models, summary
        return elapsed, np.array(store.arrays["accuracy"])


def run_plain(recipe, data, n_models):
    masks, seeds = draw_masks_and_seeds(0, n_models, data.n_train, FRACTION)
    t, accs = time.perf_counter(), []
    for i in range(n_models):
        accs.append(train_plain(recipe, data, masks[i], int(seeds[i])))
    return time.perf_counter() - t, np.array(accs)


def run_processes(n_models, parallel, recipe_path, precision):
    """``parallel`` one-thread worker processes at a time (one per core), each training one model."""
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "acc.npy")
        np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n_models,)).flush()
        worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_support", "plain_digits.py")
        env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(worker))}
        cmd = lambda i: subprocess.run([sys.executable, worker, str(i), out, str(n_models), str(FRACTION),
                                        recipe_path, precision or ""],
                                       check=True, env=env)
        t = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(cmd, range(n_models)))
        return time.perf_counter() - t, np.load(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="default", help="default, or a digits_cnn recipe YAML")
    ap.add_argument("--precision", choices=("float32", "bfloat16"), help="override the recipe's precision")
    ap.add_argument("--ensemble-models", type=int, default=64)
    ap.add_argument("--ensemble-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes of the store run (a2); default one per core")
    ap.add_argument("--plain-models", type=int, default=6)
    ap.add_argument("--process-models", type=int, default=8)
    args = ap.parse_args()
    try:
        recipe = load_recipe_for_benchmark(args.recipe, args.precision)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    check_benchmarkable(recipe)
    data = load_digits()
    print(f"torch threads: {torch.get_num_threads()}; recipe {recipe.name}: width {recipe.model.width}, "
          f"{recipe.epochs} epochs, batch {recipe.batch_size}, {recipe.precision}, alpha {FRACTION}")
    flops = training_flops_per_model(recipe, data)
    rate = matmul_flops_per_s(torch.bfloat16 if recipe.precision == "bfloat16" else torch.float32)
    limit = 60 * rate / flops
    ta, acc_a = run_ensemble(recipe, data, args.ensemble_models, args.ensemble_size)
    ta2, acc_a2 = run_store(recipe, data, args.ensemble_models, args.ensemble_size, args.workers)
    tb, acc_b = run_plain(recipe, data, args.plain_models)
    tc, acc_c = run_processes(args.process_models, os.cpu_count() or 1, args.recipe, args.precision)
    rows = [("(a) ensemble trainer", args.ensemble_models / ta * 60, acc_a),
            (f"(a2) store, {args.workers} workers", args.ensemble_models / ta2 * 60, acc_a2),
            ("(b) plain one-model loop", args.plain_models / tb * 60, acc_b),
            ("(c) one process per model", args.process_models / tc * 60, acc_c)]
    print(f"compute limit: {flops / 1e9:.2f} GFLOP per model / {rate / 1e9:.1f} {recipe.precision} GFLOP/s "
          f"= {limit:.0f} models/min")
    for name, per_min, acc in rows:
        print(f"{name:28s} {per_min:8.1f} models/min   accuracy {100 * acc.mean():.2f} ± {100 * acc.std():.2f} %")
    a, a2, b, c = (r[1] for r in rows)
    print(f"ratios: a/c = {a / c:.1f}x (floor 20x), a/b = {a / b:.1f}x (floor 5x), "
          f"a / compute limit = {a / limit:.2f}, accuracy a - b = {100 * (acc_a.mean() - acc_b.mean()):+.2f} points")
    print(f"        a2/c = {a2 / c:.1f}x, a2/b = {a2 / b:.1f}x, a2 / compute limit = {a2 / limit:.2f}, "
          f"accuracy a2 - b = {100 * (acc_a2.mean() - acc_b.mean()):+.2f} points")


if __name__ == "__main__":
    main()

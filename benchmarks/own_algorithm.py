"""Bring-your-own-algorithm throughput on digits, this CPU, side by side: the ``vmap`` backend (any
``nn.Module``; here the digits CNN), the built-in grouped-convolution ``ensemble`` backend, and the
one-model ``loop`` backend; models per minute and mean test accuracy of each, and their ratios.

    python benchmarks/own_algorithm.py [--models 16] [--loop-models 4] [--epochs 8] [--net builtin|user] [--repeats R]

All three train the same recipe (digits CNN width 16, SGD with Nesterov momentum, batch 32, float32)
on random halves of the training set. ``--net user`` trains the digits CNN written as a plain user
module (case_studies/optimizers/nets.py) with vmap and loop (the ensemble side stays built-in).
Target: vmap >= 0.7x ensemble and >= 3x loop, at equal accuracy (+-1 point).
"""
from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the modeldiff CLI does; before torch loads
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datamodels.data.dataset import load_digits  # noqa: E402
from datamodels.store.store import draw_masks_and_seeds  # noqa: E402
from datamodels.training.backends import train_models  # noqa: E402
from datamodels.training.recipe import recipe_from_dict  # noqa: E402

RECIPE = {"name": "bench-own", "model": {"arch": "digits_cnn", "width": 16}, "batch_size": 32,
          "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}}


def run(recipe, data, masks, seeds, chunk: int) -> tuple[float, float, float]:
    """(models per wall-clock minute, models per CPU minute, mean test accuracy) training
    ``len(seeds)`` models ``chunk`` at a time. CPU time (this process, all threads) is the fairer
    measure on a shared machine: time spent descheduled does not count."""
    accs = []
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(seeds), chunk):
        res = train_models(recipe, data, masks[s:s + chunk], seeds[s:s + chunk], train_margins=True)
        accs.append(res.accuracy)
    wall, cpu = (time.perf_counter() - t) / 60, (time.process_time() - c) / 60
    return len(seeds) / wall, len(seeds) / cpu, float(torch.cat(accs).mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=16, help="models trained by vmap and by ensemble (one group)")
    p.add_argument("--loop-models", type=int, default=4, help="models trained one at a time by loop")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--net", choices=["builtin", "user"], default="builtin")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of ensemble, vmap, loop back to back (figures: means; vmap/loop also per round)")
    p.add_argument("--one-group", action="store_true",
                   help="also time vmap with all models in one group (vmap.THREAD_GROUPS off; on by default: "
                        "concurrent groups, one per CPU thread)")
    args = p.parse_args(argv)
    data = load_digits()
    base = recipe_from_dict({**RECIPE, "epochs": args.epochs})
    own = base if args.net == "builtin" else base.replace(**{
        "model.arch": None, "model.width": None, "model.target": "case_studies.optimizers.nets:digits_cnn",
        "model.kwargs": {"width": 16}})
    masks, seeds = draw_masks_and_seeds(0, args.models, data.n_train, 0.5)
    masks, seeds = torch.from_numpy(masks), seeds.tolist()
    tiny = base.replace(epochs=1)
    for trainer in ("ensemble", "vmap", "loop"):  # warm-up (first-call overheads)
        train_models((tiny if trainer == "ensemble" else own.replace(epochs=1)).replace(trainer=trainer), data,
                     masks[:2], seeds[:2])
    load_before = os.getloadavg()[0]
    print(f"torch threads: {torch.get_num_threads()}; digits CNN width 16 ({args.net} net for vmap/loop), "
          f"{args.epochs} epochs, batch 32, SGD-Nesterov, float32, alpha 0.5")
    rounds = []  # each round: ensemble, vmap, loop back to back, so a ratio compares neighbours in time
    for r in range(args.repeats):
        rounds.append({
            "ensemble": run(base.replace(trainer="ensemble"), data, masks, seeds, args.models),
            "vmap": run(own.replace(trainer="vmap"), data, masks, seeds, args.models),
            "loop": run(own.replace(trainer="loop"), data, masks[:args.loop_models], seeds[:args.loop_models], 1),
        })
        if args.repeats > 1:
            v, e, lo = (rounds[-1][k][0] for k in ("vmap", "ensemble", "loop"))
            print(f"round {r + 1}/{args.repeats}: ensemble {e:.1f}, vmap {v:.1f}, loop {lo:.1f} models/min; "
                  f"vmap / loop {v / lo:.2f}x, vmap / ensemble {v / e:.2f}x (load {os.getloadavg()[0]:.2f})",
                  flush=True)
    rows = {k: tuple(sum(rd[k][i] for rd in rounds) / len(rounds) for i in range(3)) for k in rounds[0]}
    if args.one_group:
        from datamodels.training.backends import vmap as vmap_backend

        before, vmap_backend.THREAD_GROUPS = vmap_backend.THREAD_GROUPS, False
        rows["vmap-1grp"] = run(own.replace(trainer="vmap"), data, masks, seeds, args.models)
        vmap_backend.THREAD_GROUPS = before
    for name, (rate, cpu_rate, acc) in rows.items():
        print(f"{name:9s} {rate:8.1f} models/min (wall)  {cpu_rate:8.1f} models/CPU-min   "
              f"mean test accuracy {100 * acc:.2f} %")
    (v, vc, va), (e, ec, ea), (lo, lc, la) = rows["vmap"], rows["ensemble"], rows["loop"]
    print(f"wall: vmap / ensemble = {v / e:.2f}x (target >= 0.7x); vmap / loop = {v / lo:.2f}x (target >= 3x)"
          + (" (means over rounds)" if len(rounds) > 1 else ""))
    if len(rounds) > 1:
        per_round = sorted(rd["vmap"][0] / rd["loop"][0] for rd in rounds)
        print(f"vmap / loop per round: {', '.join(f'{x:.2f}' for x in per_round)}x; median "
              f"{statistics.median(per_round):.2f}x, lowest {per_round[0]:.2f}x")
    print(f"CPU:  vmap / ensemble = {vc / ec:.2f}x; vmap / loop = {vc / lc:.2f}x")
    print(f"load average (1 min) before / after the timed runs: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"accuracy vmap - ensemble {100 * (va - ea):+.2f} points, vmap - loop {100 * (va - la):+.2f} points")


if __name__ == "__main__":
    main()

"""Seconds per full-data CIFAR-10 ResNet-9 model, and its test accuracy, for a few recipes.

    python benchmarks/gpu_train.py --data-dir /path/to/cifar10 --models 8
    python benchmarks/gpu_train.py --recipes speedrun --models 8 --ensemble-size 4
    python benchmarks/gpu_train.py --device cpu --epochs 1 --models 1 --limit 2000   # CPU smoke check

Each recipe first trains one untimed warm-up ensemble on a small slice (cuDNN autotuning, lazy
initialisation), then ``--models`` models on the whole training set (every mask all true), in
ensembles of ``--ensemble-size``, timed with the device synchronised. Time per model = wall time
of an ensemble (training + test-set evaluation; no training-set margins) / its size. Prints
mean ± std over ensembles, and accuracy mean ± std over models. Target on one H100: >= 94 % in
<= 4 s per model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from importlib import resources

import torch

from datamodels.data.cifar10 import load_cifar10
from datamodels.data.dataset import Dataset
from datamodels.training.ensemble_trainer import train_ensemble
from datamodels.training.recipe import load_recipe

RECIPES = {"high": "cifar10_high_noise.yaml", "low": "cifar10_low_noise.yaml", "mid": "cifar10_mid_noise.yaml",
           "speedrun": "cifar10_speedrun.yaml"}
WARMUP_BATCHES = 2  # training steps of the warm-up ensemble (enough to autotune the full batch shape)
WARMUP_TEST = 1024  # test images evaluated during the warm-up


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["high", "low"],
                   help=f"recipe names ({', '.join(RECIPES)}) or YAML paths")
    p.add_argument("--models", type=int, default=4, help="timed models per recipe")
    p.add_argument("--ensemble-size", type=int, default=1, help="models trained at once (grouped convolutions)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $MODELDIFF_CIFAR10_DIR)")
    p.add_argument("--limit", type=int, default=None,
                   help="keep LIMIT training images (LIMIT/10 per class) and LIMIT/5 test images: smoke checks")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="model i gets seed SEED + i")
    return p.parse_args(argv)


def resolve_recipe(name: str, epochs: int | None):
    path = str(resources.files("datamodels") / "recipes" / RECIPES[name]) if name in RECIPES else name
    recipe = load_recipe(path)
    return recipe.replace(epochs=epochs) if epochs else recipe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(recipe, data: Dataset, device: torch.device, on_device) -> None:
    """One untimed ensemble: a few full-size steps and a slice of the test set."""
    k = min(data.n_train, WARMUP_BATCHES * recipe.batch_size)
    small = Dataset(data.name, data.x_train[:k], data.y_train[:k], data.x_test[:WARMUP_TEST],
                    data.y_test[:WARMUP_TEST], data.class_names, identity="warm-up", mean=data.mean, std=data.std)
    masks = torch.ones(1, k, dtype=torch.bool)
    train_ensemble(recipe.replace(epochs=1), small, masks, [10**9], device, train_margins=False,
                   data_on_device=(on_device[0][:k], on_device[1][:k]))
    sync(device)


def bench_recipe(recipe, data: Dataset, args, device: torch.device) -> dict:
    dtype = torch.float64 if recipe.precision == "float64" else torch.float32
    on_device = (data.x_train.to(device, dtype), data.y_train.to(device))  # moved once for all ensembles
    warm_up(recipe, data, device, on_device)
    seconds, accuracy = [], []
    for start in range(0, args.models, args.ensemble_size):
        seeds = list(range(args.seed + start, args.seed + min(args.models, start + args.ensemble_size)))
        masks = torch.ones(len(seeds), data.n_train, dtype=torch.bool)
        sync(device)
        t0 = time.perf_counter()
        result = train_ensemble(recipe, data, masks, seeds, device, train_margins=False, data_on_device=on_device)
        sync(device)
        seconds.append((time.perf_counter() - t0) / len(seeds))
        accuracy += result.accuracy.tolist()
        if result.diverged.any():
            print(f"  warning: {int(result.diverged.sum())} model(s) diverged", file=sys.stderr)
    return {"seconds": seconds, "accuracy": accuracy}


def mean_std(values) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.models < 1 or args.ensemble_size < 1:
        raise SystemExit("--models and --ensemble-size must be >= 1")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    per_train = max(1, args.limit // 10) if args.limit else None
    per_test = max(1, args.limit // 50) if args.limit else None
    data = load_cifar10(args.data_dir, per_class_train=per_train, per_class_test=per_test)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(f"device {name}; torch {torch.__version__}; train {data.n_train}, test {data.n_test} images; "
          f"{args.models} model(s) per recipe in ensembles of {args.ensemble_size}")
    for recipe_name in args.recipes:
        recipe = resolve_recipe(recipe_name, args.epochs)
        r = bench_recipe(recipe, data, args, device)
        print(f"{recipe.name:20s} epochs {recipe.epochs:3d} batch {recipe.batch_size:5d} lr {recipe.optim.lr:<6g} "
              f"{recipe.precision:8s}: {mean_std(r['seconds'])} s/model, "
              f"accuracy {mean_std([100 * a for a in r['accuracy']])} %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

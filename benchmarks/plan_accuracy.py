"""Is `modeldiff plan` right? Predicted vs measured wall time and peak memory, same machine, one run.

For each case: `modeldiff plan TARGET --json` (a subprocess), then the real work as the CLI runs it,
each stage in its own subprocess timed here with its peak RSS from ``/usr/bin/time``:

* ``digits``   — the embedded default recipe: ``modeldiff train`` (64 models);
* ``demo``     — the SGD-noise demo study's stages: ``train`` of A and B, then ``attribute`` (TRAK)
  of A, each as its own command (the study runs them in one process: the plan's start-up is
  added once per command here);
* ``cifar``    — the CPU-sized CIFAR-10 ResNet-9 recipe (needs $MODELDIFF_CIFAR10_DIR), 8 models.

Prints, per stage, predicted seconds [low, high], measured seconds, the ratio, and the same for
peak memory; and the calibration's share of the predicted time. Run on a quiet machine:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/plan_accuracy.py [--cases digits demo cifar]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELDIFF = [sys.executable, "-m", "modeldiff.cli"]


def run(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS bytes and stdout of ``cmd`` (its own process tree's largest RSS)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    rss = int(re.findall(r"MAXRSS (\d+)", r.stderr)[-1]) * 1024
    return wall, rss, r.stdout


def plan(target: str, *extra: str) -> dict:
    _, _, out = run([*MODELDIFF, "plan", target, "--json", *extra])  # calibrated in this run
    return json.loads(out)


def row(name, pred_s, lo, hi, meas_s, pred_mem, meas_mem) -> str:
    return (f"| {name} | {pred_s:.1f} [{lo:.1f}, {hi:.1f}] | {meas_s:.1f} | {pred_s / meas_s:.3f} | "
            f"{pred_mem / 2**20:.0f} | {meas_mem / 2**20:.0f} | {pred_mem / meas_mem:.3f} |")


def with_startup(p: dict, stage: str) -> tuple[float, float, float, int]:
    s, start = p["stages"][stage], p["stages"]["startup"]["seconds"]
    return s["seconds"] + start, s["seconds_low"] + start, s["seconds_high"] + start, s["peak_memory_bytes"]


def case_recipe(name: str, recipe: str, models: int, tmp: Path, *extra: str) -> tuple[list[str], dict]:
    p = plan(recipe, "--models", str(models), *extra)
    wall, rss, _ = run([*MODELDIFF, "train", recipe, "--out", str(tmp / name), "--models", str(models), *extra])
    return [row(f"{name}: train", *with_startup(p, "train")[:3], wall, with_startup(p, "train")[3], rss)], p


def case_demo(tmp: Path) -> tuple[list[str], dict]:
    from modeldiff.studies.config import load_study

    cfg = load_study("sgd_noise")
    p = plan("sgd_noise")
    rows = []
    for tag, spec in (("a", cfg.algorithm_a), ("b", cfg.algorithm_b)):
        recipe = str(Path(cfg.folder) / spec.recipe)
        wall, rss, _ = run([*MODELDIFF, "train", recipe, "--out", str(tmp / f"demo_{tag}"), "--models",
                            str(cfg.models), "--ensemble-size", str(cfg.ensemble_size),
                            "--subset-fraction", str(cfg.subset_fraction), "--seed", str(cfg.seed)])
        pred = with_startup(p, f"train_{tag}")
        rows.append(row(f"demo: train_{tag}", *pred[:3], wall, pred[3], rss))
    spec = cfg.attribution
    wall, rss, _ = run([*MODELDIFF, "attribute", str(tmp / "demo_a"), "--method", "trak", "--models", str(spec.models),
                        "--proj-dim", str(spec.proj_dim), "--batch-size", str(spec.batch_size),
                        "--out", str(tmp / "demo_a.h5"), "--quiet"])  # the study's TRAK settings, as planned
    pred = with_startup(p, "attribute_a")
    rows.append(row("demo: attribute_a", *pred[:3], wall, pred[3], rss))
    return rows, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["digits", "demo", "cifar"])
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    lines = ["| stage | predicted s [low, high] | measured s | pred/meas | predicted MiB | measured MiB | "
             "pred/meas |", "|---|---|---:|---:|---:|---:|---:|"]
    shares = []
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
        tmp = Path(tmp)
        if "digits" in args.cases:
            rows, p = case_recipe("digits", "datamodels/recipes/digits_default.yaml", 64, tmp)
            lines += rows
            shares.append(("digits", p["calibration_share"]))
        if "demo" in args.cases:
            rows, p = case_demo(tmp)
            lines += rows
            shares.append(("demo study", p["calibration_share"]))
        if "cifar" in args.cases:
            if not os.environ.get("MODELDIFF_CIFAR10_DIR"):
                sys.exit("set MODELDIFF_CIFAR10_DIR for the cifar case (or leave it out with --cases)")
            rows, p = case_recipe("cifar", "benchmarks/recipes/resnet9_cifar_small.yaml", 8, tmp,
                                  "--data-dir", os.environ["MODELDIFF_CIFAR10_DIR"])
            lines += rows
            shares.append(("cifar", p["calibration_share"]))
    print("\n".join(lines))
    print(f"load average before / after: {load_before} / {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, share in shares:
        print(f"calibration cost, {name}: {100 * share:.1f} % of the predicted time")


if __name__ == "__main__":
    main()

"""``modeldiff plan STUDY.yaml|RECIPE.yaml``: predict time, memory, disk and the models needed; print the plan as
a table (one row per stage, totals, the pilot's curves, assumptions, the command) or JSON."""
from __future__ import annotations

import json
import time

from datamodels.base.errors import UserError


def add_parser(subparsers) -> None:
    from datamodels.runs.names import ENSEMBLE_SIZE, MODELS, SUBSET_FRACTION

    p = subparsers.add_parser(
        "plan", help="predict a study's or a recipe's time, memory and disk from a short calibration run")
    p.add_argument("target", help="a study (name like sgd_noise, or STUDY.yaml) or a RECIPE.yaml")
    p.add_argument("--models", type=int, default=None,
                   help=f"models per algorithm (default: the study's; {MODELS} for a recipe)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda is calibrated on the GPU, so needs one)")
    p.add_argument("--ensemble-size", type=int, default=None,
                   help=f"models trained at once, recipes only (default {ENSEMBLE_SIZE}; a study sets its own)")
    p.add_argument("--subset-fraction", type=float, default=None,
                   help=f"share of the training set per model, recipes only (default {SUBSET_FRACTION})")
    p.add_argument("--data-dir", default=None, help="dataset folder (e.g. CIFAR-10)")
    p.add_argument("--pilot", default=None,
                   help="a pilot store of the same recipe (TRAK): how LDS and attribution precision grow with models")
    p.add_argument("--target-lds", type=float, default=None,
                   help="predict the models needed to reach this LDS (needs --pilot) and plan for that many")
    p.add_argument("--target-precision", type=float, default=None,
                   help="predict the models needed for this attribution precision (needs --pilot; in (0, 1)): "
                        "the mean correlation between a test example's scores from N models and from infinitely "
                        "many models; plan for that many")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.set_defaults(func=run)


def check_plan_numbers(args) -> None:
    """The ranges of plan's numbers, before any work (the same rules ``train`` applies to a run)."""
    import math

    if args.target_lds is not None and not (math.isfinite(args.target_lds) and 0 < args.target_lds < 1):
        raise UserError(f"--target-lds must be in (0, 1) (an LDS is a rank correlation; a target <= 0 needs no "
                        f"models), got {args.target_lds:g}")
    fraction = args.subset_fraction
    if fraction is not None and not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise UserError(f"--subset-fraction must be in (0, 1] (the share of the training set per model, as "
                        f"`modeldiff train` takes it), got {fraction:g}")
    if args.ensemble_size is not None and args.ensemble_size < 1:
        raise UserError(f"--ensemble-size must be >= 1, got {args.ensemble_size}")


def run(args) -> int:
    from modeldiff.plan.pilot import apply_pilot
    from modeldiff.plan.planner import PlanRequest, plan

    for flag, value in (("--target-lds", args.target_lds), ("--target-precision", args.target_precision)):
        if value is not None and not args.pilot:
            raise UserError(f"{flag} needs --pilot STORE: a small store of the same recipe (with saved weights) to "
                            "fit how the attributions improve with more models")
    if args.target_precision is not None and not 0 < args.target_precision < 1:
        raise UserError(f"--target-precision must be in (0, 1) (a correlation with the infinite-model scores), "
                        f"got {args.target_precision:g}")
    if args.models is not None and args.models < 1:
        raise UserError(f"--models must be >= 1, got {args.models}")
    check_plan_numbers(args)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda cannot be predicted without a GPU to calibrate on: run `modeldiff plan` "
                            "on the GPU machine, or plan for --device cpu")
    req = PlanRequest(args.target, models=args.models, device=args.device, data_dir=args.data_dir,
                      ensemble_size=args.ensemble_size, subset_fraction=args.subset_fraction, pilot=args.pilot,
                      target_lds=args.target_lds, target_precision=args.target_precision)
    started = time.perf_counter()
    curve = apply_pilot(req) if args.pilot else None
    req.elapsed = time.perf_counter() - started  # not part of the study's start-up
    result = plan(req)
    if curve is not None:
        result["learning_curve"] = curve
    print(json.dumps(result, indent=1) if args.json else format_plan(result))
    return 0


TARGET_CALIBRATION_SHARE = 0.05  # a calibration above this share of the study is called out


def _h(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _b(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _row(name: str, s: float, low: float, high: float, mem: float, disk: float) -> str:
    return f"  {name:<14}{_h(s):>10}  ({_h(low)} – {_h(high)})".ljust(50) + f"{_b(mem):>12}{_b(disk):>12}"


def _curve(c: dict, name: str, label: str) -> list[str]:
    out = [f"  {label} vs models, from {c['pilot_models']} pilot models (ceiling {c['ceiling']:.3f}): "
           + ", ".join(f"{p['models']}: {p[name]:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in c["predicted"])]
    if "models_needed" in c:
        n, lo, hi = c["models_needed"]
        out.append(f"  models needed for {name} {c['target']:g}: {n} (95 % interval {lo} – "
                   f"{'unbounded' if hi is None else hi})")
    return out


def format_plan(r: dict) -> str:
    lines = [f"plan for {r['target']}: {r['models']} models per algorithm, ensemble size {r['ensemble_size']}, "
             f"{r['device']}", f"  {'stage':<14}{'time':>10}  {'(low – high)':<22}{'peak memory':>12}{'disk':>12}"]
    lines += [_row(name, *(s[k] for k in ("seconds", "seconds_low", "seconds_high", "peak_memory_bytes",
                                          "disk_bytes"))) for name, s in r["stages"].items()]
    lines.append(_row("total", r["total_seconds"], r["total_seconds_low"], r["total_seconds_high"],
                      r["peak_memory_bytes"], r["disk_bytes"]))
    share = r["calibration_share"]
    lines.append(f"  calibration took {r['calibration_seconds']:.1f} s ({100 * share:.1f} % of the predicted time)")
    if share > TARGET_CALIBRATION_SHARE:
        lines.append(f"  (over {100 * TARGET_CALIBRATION_SHARE:g} %: the study is short — running it costs only "
                     f"~{1 / share:.0f}x what this calibration did, plus a process start)")
    if "learning_curve" in r:
        c = r["learning_curve"]
        lines += _curve(c, "lds", f"LDS ({c['method']})") + _curve(
            c["precision"], "precision", "precision (corr. with infinitely many models' scores)")
    return "\n".join(lines + ["  assumptions:"] + [f"    - {a}" for a in r["assumptions"]]
                     + [f"  run it: {r['command']}"])

"""``modeldiff plan STUDY.yaml|RECIPE.yaml``: predict time, memory, disk and the models needed."""
from __future__ import annotations

import json

from datamodels.base.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="predict a study's or a recipe's time, memory and disk from a short calibration run")
    p.add_argument("target", help="a study (name like sgd_noise, or STUDY.yaml) or a RECIPE.yaml")
    p.add_argument("--models", type=int, default=None,
                   help="models per algorithm (default: the study's; 64 for a recipe)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda is calibrated on the GPU, so needs one)")
    p.add_argument("--ensemble-size", type=int, default=None,
                   help="models trained at once, recipes only (default 16; a study sets its own)")
    p.add_argument("--subset-fraction", type=float, default=0.5,
                   help="share of the training set per model, recipes only")
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


def run(args) -> int:
    from modeldiff.plan.pilot import apply_pilot
    from modeldiff.plan.planner import PlanRequest, plan
    from modeldiff.plan.text import format_plan

    for flag, value in (("--target-lds", args.target_lds), ("--target-precision", args.target_precision)):
        if value is not None and not args.pilot:
            raise UserError(f"{flag} needs --pilot STORE: a small store of the same recipe (with saved weights) to "
                            "fit how the attributions improve with more models")
    if args.target_precision is not None and not 0 < args.target_precision < 1:
        raise UserError(f"--target-precision must be in (0, 1) (a correlation with the infinite-model scores), "
                        f"got {args.target_precision:g}")
    for flag, value in (("--models", args.models), ("--ensemble-size", args.ensemble_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if not 0 < args.subset_fraction <= 1:
        raise UserError(f"--subset-fraction must be in (0, 1], got {args.subset_fraction:g}")
    req = PlanRequest(args.target, models=args.models, device=args.device, data_dir=args.data_dir,
                      ensemble_size=args.ensemble_size, subset_fraction=args.subset_fraction, pilot=args.pilot,
                      target_lds=args.target_lds, target_precision=args.target_precision)
    curve = apply_pilot(req) if args.pilot else None
    result = plan(req)
    if curve is not None:
        result["learning_curve"] = curve
    print(json.dumps(result, indent=1) if args.json else format_plan(result))
    return 0

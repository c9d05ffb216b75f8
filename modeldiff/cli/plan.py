"""``modeldiff plan STUDY.yaml|RECIPE.yaml``: predict time, memory, disk, cost and models needed."""
from __future__ import annotations

import json

from datamodels.base.errors import UserError

PRICES_HELP = ("YAML of $/hour per machine kind: {currency: USD, machines: {KIND: {per_hour: PRICE}}}; "
               "prices are yours, none are built in")


def add_parser(subparsers) -> None:
    from datamodels.runs.names import LAUNCHERS

    p = subparsers.add_parser(
        "plan", help="predict a study's or a recipe's time, memory, disk and cost from a short calibration run")
    p.add_argument("target", help="a study (name like sgd_noise, or STUDY.yaml) or a RECIPE.yaml")
    p.add_argument("--models", type=int, default=None,
                   help="models per algorithm (default: the study's; 64 for a recipe)")
    p.add_argument("--workers", type=int, default=1, help="parallel workers (local processes or Ray machines)")
    p.add_argument("--launcher", choices=LAUNCHERS.names(), default="local",
                   help="where chunks run: local processes sharing this machine, or a Ray cluster of such machines")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda is calibrated on the GPU, so needs one)")
    p.add_argument("--ensemble-size", type=int, default=None,
                   help="models trained at once, recipes only (default 16; a study sets its own)")
    p.add_argument("--subset-fraction", type=float, default=0.5,
                   help="share of the training set per model, recipes only")
    p.add_argument("--data-dir", default=None, help="dataset folder (e.g. CIFAR-10)")
    p.add_argument("--pilot", default=None, help="a pilot store of the same recipe: fits how LDS (and TRAK's precision) grows with models")
    p.add_argument("--target-lds", type=float, default=None,
                   help="predict the models needed to reach this LDS (needs --pilot) and plan for that many")
    p.add_argument("--target-precision", type=float, default=None,
                   help="predict the models needed for this attribution precision (needs --pilot; TRAK; in (0, 1)): "
                        "the mean correlation between a test example's scores from N models and from infinitely "
                        "many models; plan for that many")
    p.add_argument("--prices", default=None, help=PRICES_HELP)
    p.add_argument("--machine", default=None, help="which price-file kind this machine is (default: the first)")
    p.add_argument("--deadline", type=float, default=None,
                   help="hours: with --prices, also the cheapest number of Ray machines that finishes by then")
    p.add_argument("--recalibrate", action="store_true",
                   help="measure again instead of reusing this machine's cached calibration of the same work "
                        "(cache: $MODELDIFF_PLAN_CACHE, default ~/.cache/modeldiff/plan; 'off' disables it)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.set_defaults(func=run)


def check_plan_numbers(args) -> None:
    """The ranges of plan's numbers, before any work (the same rules ``train`` applies to a run)."""
    import math

    if args.target_lds is not None and not (math.isfinite(args.target_lds) and 0 < args.target_lds < 1):
        raise UserError(f"--target-lds must be in (0, 1) (an LDS is a rank correlation; a target <= 0 needs no "
                        f"models), got {args.target_lds:g}")
    if not (math.isfinite(args.subset_fraction) and 0 < args.subset_fraction <= 1):
        raise UserError(f"--subset-fraction must be in (0, 1] (the share of the training set per model, as "
                        f"`modeldiff train` takes it), got {args.subset_fraction:g}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.ensemble_size is not None and args.ensemble_size < 1:
        raise UserError(f"--ensemble-size must be >= 1, got {args.ensemble_size}")


def run(args) -> int:
    from modeldiff.plan.planner import PlanRequest, plan
    from modeldiff.plan.report import apply_pilot, apply_prices, format_plan

    if args.target_lds is not None and not args.pilot:
        raise UserError("--target-lds needs --pilot STORE: a small store of the same recipe to fit the learning curve")
    if args.target_precision is not None and not args.pilot:
        raise UserError("--target-precision needs --pilot STORE: a small store of the same recipe (with saved "
                        "weights) to measure the between-model noise of the attributions")
    if args.target_precision is not None and not 0 < args.target_precision < 1:
        raise UserError(f"--target-precision must be in (0, 1) (a correlation with the infinite-model scores), "
                        f"got {args.target_precision:g}")
    if args.deadline is not None and not args.prices:
        raise UserError("--deadline needs --prices PRICES.yaml (the cheapest configuration is a cost question)")
    if args.deadline is not None and args.deadline <= 0:
        raise UserError(f"--deadline must be a positive number of hours, got {args.deadline}")
    if args.models is not None and args.models < 1:
        raise UserError(f"--models must be >= 1, got {args.models}")
    check_plan_numbers(args)
    prices = None
    if args.prices:
        from modeldiff.plan.prices import load_prices

        prices = load_prices(args.prices)
        machine = args.machine or next(iter(prices.per_hour))
        prices.of(machine)  # a missing kind is an error before any work
    req = PlanRequest(args.target, models=args.models, workers=args.workers, launcher=args.launcher,
                      device=args.device, data_dir=args.data_dir, ensemble_size=args.ensemble_size,
                      subset_fraction=args.subset_fraction, pilot=args.pilot, target_lds=args.target_lds,
                      target_precision=args.target_precision, recalibrate=args.recalibrate)
    curve = apply_pilot(req) if args.pilot else None
    result = plan(req)
    if curve is not None:
        result["learning_curve"] = curve
    if prices is not None:
        apply_prices(result, prices, machine, args.deadline)
    print(json.dumps(result, indent=1) if args.json else format_plan(result))
    return 0

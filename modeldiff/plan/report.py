"""What ``modeldiff plan`` adds to a plan (pilot learning curve, prices) and how it prints it."""
from __future__ import annotations

from modeldiff.plan.planner import PlanRequest, _is_recipe
from modeldiff.plan.prices import Prices, cheapest, cost

LDS_FACTORS = (1, 2, 4, 8)  # multiples of the pilot's attributed models shown in the table
TARGET_CALIBRATION_SHARE = 0.05  # a calibration above this share of the study is called out (the planner's design target)


def apply_pilot(req: PlanRequest) -> dict:
    """Fit the pilot's curves on ``req.pilot``; with ``req.target_lds`` / ``req.target_precision`` set
    the model count to reach the target (the larger of the two when both are given).

    Returns the learning curve's JSON (model, observations, ``predicted`` LDS with intervals,
    ``models_needed`` ``[n, low, high]`` for a target LDS) and, for TRAK, ``precision``
    (:mod:`modeldiff.plan.precision`: ``predicted`` precision with intervals, ``models_needed`` for a
    target precision).
    """
    from datamodels.base.errors import UserError
    from datamodels.store import Store
    from modeldiff.plan.pilot import pilot_learning_curve, trak_pilot

    method, proj_dim, batch, lambdas = "trak", 1024, 256, 12
    if not _is_recipe(req.target):
        from modeldiff.studies.config import load_study

        spec = load_study(req.target).attribution
        method, proj_dim, batch, lambdas = spec.method, spec.proj_dim, spec.batch_size, spec.lambdas
    if req.target_precision is not None and method != "trak":
        raise UserError(f"--target-precision is defined for TRAK (an average of per-model scores); this study uses "
                        f"{method}: use --target-lds instead")
    store = Store.open(req.pilot)
    precision = None
    if method == "trak":
        pilot = trak_pilot(store, proj_dim=proj_dim, batch_size=batch, device=req.device)
        curve, precision = pilot.lds_curve(), pilot.precision_curve()
    else:
        curve = pilot_learning_curve(store, method, proj_dim=proj_dim, batch_size=batch, lambdas=lambdas,
                                     device=req.device)
    pool = curve.pilot_models
    out = {"method": method, **curve.to_dict(), "pilot_models": pool,
           "predicted": [{"models": f * pool, **dict(zip(("lds", "low", "high"), curve.predict(f * pool)))}
                         for f in LDS_FACTORS]}
    needed = []
    if req.target_lds is not None:
        n, lo, hi = curve.models_for(req.target_lds)
        out["target_lds"] = req.target_lds
        out["models_needed"] = [n, lo, None if hi < 0 else hi]  # None: no finite upper end
        needed.append(n)
    if precision is not None:
        out["precision"] = {**precision.to_dict(),
                            "predicted": [{"models": f * pool,
                                           **dict(zip(("precision", "low", "high"), precision.predict(f * pool)))}
                                          for f in LDS_FACTORS]}
        if req.target_precision is not None:
            n, lo, hi = precision.models_for(req.target_precision)
            out["precision"].update(target=req.target_precision, models_needed=[n, lo, None if hi < 0 else hi])
            needed.append(n)
    if needed:
        n = max(needed)
        if method == "trak" and not _is_recipe(req.target):
            req.attribution_models = n
        else:
            req.models = max(n, req.models or 0)
    return out


def apply_prices(result: dict, prices: Prices, machine: str, deadline_hours: float | None) -> None:
    """Add ``cost`` (of the planned configuration) and, for a deadline, ``cheapest`` to ``result``."""
    per_hour = prices.of(machine)
    machines = result["workers"] if result["launcher"] == "ray" else 1
    result["cost"] = {"machine": machine, "currency": prices.currency, "per_hour": per_hour,
                      "amount": cost(result["total_seconds"], per_hour, machines)}
    options = [{**o, "cost": cost(o["seconds"], per_hour, o["workers"])} for o in result["scale_out"]]
    result["scale_out"] = options
    if deadline_hours is not None:
        best = cheapest(options, deadline_hours * 3600)
        result["cheapest"] = best or {"error": f"no configuration up to {options[-1]['workers']} machines "
                                               f"finishes within {deadline_hours:g} h"}


def _h(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _b(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_plan(r: dict) -> str:
    """A table a person reads: one row per stage, totals, assumptions, the command to run."""
    lines = [f"plan for {r['target']}: {r['models']} models per algorithm, ensemble size {r['ensemble_size']}, "
             f"{r['workers']} worker(s) ({r['launcher']}), {r['device']}",
             f"  {'stage':<14}{'time':>10}  {'(low – high)':<22}{'peak memory':>12}{'disk':>12}"]
    for name, s in r["stages"].items():
        lines.append(f"  {name:<14}{_h(s['seconds']):>10}  ({_h(s['seconds_low'])} – {_h(s['seconds_high'])})"
                     .ljust(50) + f"{_b(s['peak_memory_bytes']):>12}{_b(s['disk_bytes']):>12}")
    lines.append(f"  {'total':<14}{_h(r['total_seconds']):>10}  ({_h(r['total_seconds_low'])} – "
                 f"{_h(r['total_seconds_high'])})".ljust(50) + f"{_b(r['peak_memory_bytes']):>12}"
                 f"{_b(r['disk_bytes']):>12}")
    lines.append(f"  calibration took {r['calibration_seconds']:.1f} s "
                 f"({100 * r['calibration_share']:.1f} % of the predicted time)")
    if r["calibration_share"] > TARGET_CALIBRATION_SHARE and r["calibration_seconds"] > 0:
        lines.append(f"  (over {100 * TARGET_CALIBRATION_SHARE:g} %: the study is short — running it costs only "
                     f"~{1 / r['calibration_share']:.0f}x what this calibration did, plus a process start)")
    if "learning_curve" in r:
        c = r["learning_curve"]
        lines.append(f"  LDS ({c['method']}) vs models, fitted on {c['pilot_models']} pilot models: "
                     + ", ".join(f"{p['models']}: {p['lds']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"
                                 for p in c["predicted"]))
        if "models_needed" in c:
            n, lo, hi = c["models_needed"]
            lines.append(f"  models needed for LDS {c['target_lds']:g}: {n} (95 % interval {lo} – "
                         f"{'unbounded' if hi is None or hi < 0 else hi})")
        if "precision" in c:
            p = c["precision"]
            lines.append("  precision (corr. with infinitely many models' scores) vs models: "
                         + ", ".join(f"{q['models']}: {q['precision']:.3f} [{q['low']:.3f}, {q['high']:.3f}]"
                                     for q in p["predicted"]) + (f"; ceiling {p['ceiling']:.3f}" if "ceiling" in p
                                                                 else ""))
            if "models_needed" in p:
                n, lo, hi = p["models_needed"]
                lines.append(f"  models needed for precision {p['target']:g}: {n} (95 % interval {lo} – "
                             f"{'unbounded' if hi is None or hi < 0 else hi})")
    if "cost" in r:
        c = r["cost"]
        lines.append(f"  cost on {c['machine']}: {c['amount']:.2f} {c['currency']}".rstrip())
        if "cheapest" in r:
            b = r["cheapest"]
            lines.append("  cheapest meeting the deadline: " + (b["error"] if "error" in b else
                         f"{b['workers']} Ray machine(s), {_h(b['seconds'])}, {b['cost']:.2f} {c['currency']}"))
    lines.append("  assumptions:")
    lines += [f"    - {a}" for a in r["assumptions"]]
    lines.append(f"  run it: {r['command']}")
    return "\n".join(lines)

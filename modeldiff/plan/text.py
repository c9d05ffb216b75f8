"""The plan as a table a person reads: one row per stage, totals, the pilot's curves, assumptions, the command."""
from __future__ import annotations

TARGET_CALIBRATION_SHARE = 0.05  # a calibration above this share of the study is called out


def _h(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


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
                   f"{hi if hi >= 0 else 'unbounded'})")
    return out


def format_plan(r: dict) -> str:
    lines = [f"plan for {r['target']}: {r['models']} models per algorithm, ensemble size {r['ensemble_size']}, "
             f"{r['device']}", f"  {'stage':<14}{'time':>10}  {'(low – high)':<22}{'peak memory':>12}{'disk':>12}"]
    lines += [_row(name, s["seconds"], s["seconds_low"], s["seconds_high"], s["peak_memory_bytes"], s["disk_bytes"])
              for name, s in r["stages"].items()]
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
    lines.append("  assumptions:")
    lines += [f"    - {a}" for a in r["assumptions"]]
    lines.append(f"  run it: {r['command']}")
    return "\n".join(lines)

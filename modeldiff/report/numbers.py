"""Numbers as a paper prints them: an estimate to the precision its confidence interval supports,
p-values to one or two significant digits, other values to three."""
from __future__ import annotations

import math


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def decimals_for(low, high, mean=None) -> int:
    """Decimals that keep one significant digit of the CI's half-width (0.9 -> 1, 0.05 -> 2, 3 -> 0); for
    an asymmetric CI (bootstrap) the shorter side of it around ``mean`` decides."""
    lo, hi = _finite(low), _finite(high)
    if lo is None or hi is None or hi <= lo:
        return 2
    half = (hi - lo) / 2
    m = _finite(mean)
    if m is not None and lo < m < hi:
        half = min(m - lo, hi - m)
    return max(0, min(6, -math.floor(math.log10(half))))


def estimate(mean, low=None, high=None, signed: bool = True) -> str:
    """``+15.3 [14.5, 16.3]``: the mean and its CI rounded alike to what the CI supports."""
    m = _finite(mean)
    if m is None:
        return "n/a"
    d = decimals_for(low, high, m)
    sign = "+" if signed else ""
    text = f"{m:{sign}.{d}f}"
    lo, hi = _finite(low), _finite(high)
    if lo is not None and hi is not None:
        text += f" [{lo:.{d}f}, {hi:.{d}f}]"
    return text


def pvalue(p) -> str:
    """``0.03``, ``0.0012``, ``3e-21``: two significant digits down to 0.001, then one."""
    v = _finite(p)
    if v is None:
        return "n/a"
    if v >= 0.001:
        return f"{v:.2g}"
    if v == 0:
        return "< 1e-300"
    return f"{v:.0e}".replace("e-0", "e-")


def value(v, digits: int = 3) -> str:
    """A value without a CI (explained variance, ratio) to ``digits`` significant digits."""
    x = _finite(v)
    return "n/a" if x is None else f"{x:.{digits}g}"


def holm(pvalues) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; NaN stays NaN)."""
    idx = [i for i, p in enumerate(pvalues) if _finite(p) is not None]
    order = sorted(idx, key=lambda i: float(pvalues[i]))
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * float(pvalues[i])))
        out[i] = running
    return out

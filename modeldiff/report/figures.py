"""Report figures as PNG bytes (matplotlib, Agg canvas; no pyplot global state)."""
from __future__ import annotations

import io

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib is slow to import
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


class FigureBytes(bytes):
    """PNG bytes that keep their figure (``.fig``), so the report can also write it as SVG and PDF."""

    fig = None


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    out = FigureBytes(buf.getvalue())
    out.fig = fig
    return out


def save_vector(png: bytes, stem) -> list[str]:
    """Write ``stem.svg`` and ``stem.pdf`` of a figure made by this module; returns the file names."""
    fig = getattr(png, "fig", None)
    if fig is None:
        return []
    names = []
    for fmt in ("svg", "pdf"):
        path = f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, bbox_inches="tight")
        names.append(path)
    return names


def variance_scatter(var_a, var_b, label_a: str = "A", label_b: str = "B", null=None,
                     colors=("tab:red", "tab:blue")) -> bytes:
    """Explained variance of each component under A (y) against under B (x), with y = x.

    ``null``: per component ``(ratio_halves, null_median, null_q95)``: a grey band at each
    component spans ``var_b × [null median, null q95]`` (where a same-algorithm pair lands) and
    a hollow marker shows ``var_b × ratio_halves`` (the tested, half-size ratio).
    """
    var_a, var_b = np.asarray(var_a, float), np.asarray(var_b, float)
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot()
    top = max(float(np.nanmax(np.concatenate([var_a, var_b]))), 1e-12) * 1.1
    if null is not None:
        r, med, q95 = (np.array([v[i] for v in null], float) for i in range(3))
        reach = var_b * np.maximum(r, q95)
        if np.isfinite(reach).any():  # q95 is unknown (None/inf) when too few splits were run
            top = max(top, float(reach[np.isfinite(reach)].max()) * 1.1)
        w = top / 60
        for j in range(var_b.size):
            ax.fill_between([var_b[j] - w, var_b[j] + w], var_b[j] * med[j], var_b[j] * q95[j], color="0.75",
                            zorder=1, label="null band (median–95 %, half size)" if j == 0 else None)
        ax.scatter(var_b, var_b * r, facecolors="none", edgecolors="0.2", zorder=4,
                   label="half-size ratio × var (tested)")
    ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", label="y = x")
    ax.scatter(var_b, var_a, c=np.where(var_a > var_b, colors[0], colors[1]), zorder=3, label="full models")
    for j, (x, y) in enumerate(zip(var_b, var_a)):
        ax.annotate(str(j), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlim(0, top), ax.set_ylim(0, top)
    ax.set_xlabel(f"explained variance under {label_b}")
    ax.set_ylabel(f"explained variance under {label_a}")
    ax.set_title(f"Residual components {label_a} − {label_b}")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _as_hwc(img) -> np.ndarray:
    x = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.transpose(x, (1, 2, 0))       # CHW -> HWC
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(x, 0.0, 1.0)


def image_grid(rows: list[tuple[str, object, list[int], list[str]]]) -> bytes:
    """Rows of images: ``(row title, images [n, C, H, W] (indexable), indices, captions)``.

    One axes per row, each thumbnail an image artist in its own unit cell with its caption above it (an
    axes per thumbnail made a 3 x 8 digits grid cost 0.47 s to lay out and draw, this 0.19 s:
    benchmarks/report_figures.py)."""
    ncols = max(1, max(len(idx) for _, _, idx, _ in rows))
    fig = _figure(1.5 * ncols + 1.6, 2.2 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    gap = 0.06  # of a cell, between neighbouring thumbnails
    for ax, (title, images, idx, captions) in zip(axes, rows):
        height = 1 - 2 * gap  # of a thumbnail, in cell widths (its own aspect ratio, set by the first one)
        for c, (i, caption) in enumerate(zip(idx, captions)):
            img = _as_hwc(images[int(i)])
            if c == 0:
                height *= img.shape[0] / max(1, img.shape[1])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest",
                      extent=(c + gap, c + 1 - gap, 0, height))
            ax.text(c + 0.5, height + gap, caption, ha="center", va="bottom", fontsize=9)
        ax.set_xlim(0, ncols), ax.set_ylim(0, height + gap + 0.45)
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_ylabel(title, fontsize=10)
    return _png(fig)


def weight_bars(rows: list[tuple[str, np.ndarray, list[str]]]) -> bytes:
    """Bar charts (one per row) of weights or projections, labelled by example."""
    fig = _figure(7.5, 1.9 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, (title, values, labels) in zip(axes[:, 0], rows):
        values = np.asarray(values, float)
        ax.bar(range(values.size), values, color=np.where(values >= 0, "tab:red", "tab:blue"))
        ax.set_xticks(range(values.size), labels, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=8)
        ax.axhline(0, color="0.3", lw=0.8)
    fig.tight_layout()
    return _png(fig)


def effect_plot(labels: list[str], a: list[tuple[float, float, float]], b: list[tuple[float, float, float]],
                name_a: str = "A", name_b: str = "B", colors=("tab:red", "tab:blue"),
                unit: str = "Pr(class | do(T)) − Pr(class | control)") -> bytes:
    """Mean effect with CI (``(mean, low, high)``) of A and B for each counterfactual test.

    One row per test (labels on the y axis, one line each: they never overlap)."""
    fig = _figure(7.5, 0.45 * len(labels) + 1.4)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    for off, vals, name, color in ((0.12, a, name_a, colors[0]), (-0.12, b, name_b, colors[1])):
        m, lo, hi = (np.array([v[i] for v in vals], float) for i in range(3))
        ax.errorbar(m, y + off, xerr=[m - np.where(np.isnan(lo), m, lo), np.where(np.isnan(hi), m, hi) - m],
                    fmt="o", capsize=3, color=color, label=name)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(unit)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def sweep_plot(sizes, a: list[tuple[float, float, float]], b: list[tuple[float, float, float]], title: str,
               name_a: str = "A", name_b: str = "B", colors=("tab:red", "tab:blue")) -> bytes:
    """Effect against patch size, with CI bands, for A and B."""
    fig = _figure(5.0, 3.6)
    ax = fig.add_subplot()
    for vals, name, color in ((a, name_a, colors[0]), (b, name_b, colors[1])):
        m, lo, hi = (np.array([v[i] for v in vals], float) for i in range(3))
        ax.plot(sizes, m, "o-", color=color, label=name)
        ax.fill_between(sizes, lo, hi, color=color, alpha=0.2)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(list(sizes))
    ax.set_xlabel("patch size (pixels)")
    ax.set_ylabel("treatment effect")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    return _png(fig)

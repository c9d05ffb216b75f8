"""How the report shows one non-image example: a user hook, or a labelled default.

A hook is any callable ``show_example(x, *, title, feature_names) -> figure | image`` (or an import
target ``"my_pkg.viz:show"`` naming one), where ``x`` is one example (``[*input_shape]``, numpy) and
it returns a matplotlib ``Figure``, PNG bytes, or an image array ``[H, W]`` / ``[H, W, 3|4]`` in [0, 1].
The defaults: a float vector ``[d]`` is a bar chart of its values labelled with the feature names
(``f0``, ``f1``... without them); integer token ids ``[T]`` are written out as text (through
``feature_names`` as a vocabulary when given); anything else is flattened to a bar chart.
"""
from __future__ import annotations

import io

import numpy as np

MAX_BARS = 40  # features shown per example: the largest |values| beyond this many


def resolve(show_example):
    """A callable from a callable, an import target ``"pkg.mod:name"`` or None (the default)."""
    if show_example is None or callable(show_example):
        return show_example or default_show_example
    from datamodels.registry import resolve_target

    return resolve_target(show_example, what="report show_example")


def default_show_example(x, *, title: str = "", feature_names=None, ax=None):
    """The default picture of one example (see the module docstring): a matplotlib Figure, or
    drawn into ``ax`` when one is given."""
    from modeldiff.report.figures import _figure

    x = np.asarray(x)
    fig = None
    if x.ndim == 1 and np.issubdtype(x.dtype, np.integer):
        vocab = list(feature_names) if feature_names is not None else None
        words = [vocab[t] if vocab is not None and 0 <= t < len(vocab) else str(int(t)) for t in x.tolist()]
        if ax is None:
            fig = _figure(4.0, 1.6)
            ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0, 1, _wrap(" ".join(words), 48), va="top", ha="left", fontsize=8, family="monospace",
                transform=ax.transAxes)
        ax.set_title(title, fontsize=8, loc="left")
        return fig if fig is not None else ax
    v = x.astype(float).ravel()
    names = list(feature_names) if feature_names is not None and len(feature_names) == v.size else \
        [f"f{i}" for i in range(v.size)]
    keep = np.arange(v.size) if v.size <= MAX_BARS else np.sort(np.argsort(-np.abs(v))[:MAX_BARS])
    if ax is None:
        fig = _figure(4.0, 0.16 * keep.size + 0.9)
        ax = fig.add_subplot()
    y = np.arange(keep.size)[::-1]
    ax.barh(y, v[keep], color="0.45")  # input values: one neutral colour (red/blue mark weights elsewhere)
    ax.set_yticks(y, [names[i] for i in keep], fontsize=6)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title(title, fontsize=8, loc="left")
    return fig if fig is not None else ax


def to_image(obj) -> np.ndarray:
    """What a hook returned, as an RGBA/gray array in [0, 1] (Figure, PNG bytes or an array)."""
    from matplotlib.image import imread

    if hasattr(obj, "savefig"):
        buf = io.BytesIO()
        obj.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        obj = buf.getvalue()
    if isinstance(obj, (bytes, bytearray)):
        return imread(io.BytesIO(bytes(obj)), format="png")
    arr = np.asarray(obj, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"show_example must return a Figure, PNG bytes or an image [H, W(, C)]; got shape {arr.shape}")
    return np.clip(arr / 255.0 if arr.max() > 1.0 else arr, 0.0, 1.0)


def example_panels(rows, show_example=None, feature_names=None, per_row: int = 3) -> bytes:
    """One figure of examples: ``rows`` are ``(row title, inputs [n, ...], indices, captions)``;
    each example is drawn by ``show_example`` (default: :func:`default_show_example`)."""
    from modeldiff.report.figures import _figure, _png

    show = resolve(show_example)
    items = [[(np.asarray(inputs[int(i)]), f"{title}: {cap}") for i, cap in list(zip(idx, captions))[:per_row]]
             for title, inputs, idx, captions in rows]
    if show is default_show_example:  # drawn straight into the grid: no figure per example
        first = items[0][0][0] if items and items[0] else np.zeros(1)
        tall = first.ndim == 1 and not np.issubdtype(first.dtype, np.integer)
        per_panel = 0.16 * min(first.size, MAX_BARS) + 0.9 if tall else 1.6
        fig = _figure(12.0, per_panel * len(rows))
        axes = fig.subplots(len(rows), per_row, squeeze=False)
        for r, row in enumerate(items):
            for c in range(per_row):
                if c < len(row):
                    default_show_example(row[c][0], title=row[c][1], feature_names=feature_names, ax=axes[r, c])
                else:
                    axes[r, c].axis("off")
        fig.tight_layout()
        return _png(fig)
    pictures = [[to_image(show(x, title=t, feature_names=feature_names)) for x, t in row] for row in items]
    height = max((p.shape[0] for row in pictures for p in row), default=100)
    fig = _figure(12.0, max(1.0, len(rows) * min(height, 700) / 100 * 0.8))
    axes = fig.subplots(len(rows), per_row, squeeze=False)
    for r, row in enumerate(pictures):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(row):
                ax.imshow(row[c], cmap="gray" if row[c].ndim == 2 else None, interpolation="antialiased")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return _png(fig)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or " "

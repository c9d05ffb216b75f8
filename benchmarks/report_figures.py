"""Report thumbnail grid: ours (one axes per row, thumbnails as image artists) vs the reference layout
(one matplotlib axes per thumbnail, as the report drew it before), side by side in one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/report_figures.py [--repeats 5]

Both draw the same 3 rows x 8 digits thumbnails with two-line captions to PNG; prints the median
seconds per figure of each and the ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datamodels.data import load_digits  # noqa: E402
from modeldiff.report import figures  # noqa: E402


def reference_grid(rows) -> bytes:
    """The reference: a grid of ``len(rows) x ncols`` axes, one image and title per axes."""
    ncols = max(1, max(len(idx) for _, _, idx, _ in rows))
    fig = figures._figure(1.5 * ncols + 1.6, 2.2 * len(rows))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (title, images, idx, captions) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(idx):
                ax.axis("off")
                continue
            img = figures._as_hwc(images[int(idx[c])])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(captions[c], fontsize=9)
        axes[r][0].set_ylabel(title, fontsize=10)
    return figures._png(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    data = load_digits()
    idx = list(range(8))
    captions = [f"#{i} {int(data.y_train[i])}\n{0.0123 * i:+.3g}" for i in idx]
    rows = [(name, data.x_train, idx, captions) for name in ("train +", "train −", "test top")]
    figures.effect_plot(["warm-up"], [(0.0, -1.0, 1.0)], [(0.0, -1.0, 1.0)])  # matplotlib's import and first draw
    times = {"reference (axes per thumbnail)": [], "ours (axes per row)": []}
    for _ in range(args.repeats):  # interleaved: neighbours in time are compared
        for name, fn in zip(times, (reference_grid, figures.image_grid)):
            t = time.perf_counter()
            fn(rows)
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    for name, v in times.items():
        print(f"{name:32s} median {med[name]:.3f} s  ({', '.join(f'{x:.3f}' for x in v)})")
    ref, ours = med.values()
    print(f"ours is {ref / ours:.2f}x faster per 3 x 8 grid")


if __name__ == "__main__":
    main()

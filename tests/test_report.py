"""The report's files: HTML with every figure inlined, PNGs on disk, a JSON summary."""
import base64
import json
import re

import numpy as np
import pytest
import torch

from modeldiff import ModelDiff
from modeldiff.counterfactual.effects import counterfactual_effects, patch_size_sweep
from modeldiff.counterfactual.transforms import PatchPaste
from modeldiff.report import write_report


def simulated(effect):
    def predict(x):
        white = (x[:, 0] >= 0.999).flatten(1).double().mean(1)
        eff = torch.as_tensor(effect, dtype=torch.float64)[:, None]
        p = (0.3 + eff * white[None]).clamp(0, 1)
        return torch.stack([p, 1 - p], dim=-1)
    return predict


def build(tmp_path, with_images=True, with_effects=True):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(40, 60)).astype(np.float32), rng.normal(size=(40, 60)).astype(np.float32)
    md = ModelDiff(3).fit(A, B)
    kw = {}
    if with_images:
        kw = dict(train_images=rng.random((60, 3, 8, 8)), test_images=torch.rand(40, 3, 8, 8),
                  train_labels=rng.integers(0, 2, 60), test_labels=rng.integers(0, 2, 40),
                  class_names=["cat <b>", "dog & co"])
    if with_effects:
        x = 0.9 * torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        pa, pb = simulated(rng.normal(0.5, 0.1, 12)), simulated(np.zeros(12))
        patch = PatchPaste(pattern="solid", size=2, loc=(0, 0))
        kw["counterfactuals"] = [counterfactual_effects(pa, pb, x, patch, 0, n_resamples=499)]
        kw["sweeps"] = [patch_size_sweep(pa, pb, x, patch, 0, [1, 2, 3], n_resamples=499)]
    path = write_report(tmp_path / "rep", md, names=("SGD big lr", "SGD small lr"),
                        meta={"scores_a": "a.h5 <script>"}, **kw)
    return md, path


@pytest.mark.parametrize("with_images", [True, False])
def test_report_files_and_summary(tmp_path, with_images):
    md, path = build(tmp_path, with_images=with_images)
    out = path.parent
    html = path.read_text()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(["variance.png", "component_0.png", "component_1.png", "component_2.png",
                           "effects.png", "sweep_0.png"])
    inlined = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(inlined) == len(pngs)
    assert all(base64.b64decode(s)[:8] == b"\x89PNG\r\n\x1a\n" for s in inlined)
    assert "<script>" not in html and "a.h5 &lt;script&gt;" in html           # text is escaped
    assert 'src="figures' not in html                                          # nothing external
    summary = json.loads((out / "summary.json").read_text())
    assert [c["index"] for c in summary["components"]] == [0, 1, 2]
    np.testing.assert_allclose([c["explained_variance_a"] for c in summary["components"]],
                               md.explained_variance_a_, rtol=1e-6)
    assert len(summary["components"][0]["subpopulation"]["train_positive"]) == 8
    assert summary["counterfactuals"][0]["diff"]["mean"] > 0
    assert [row["size"] for row in summary["sweeps"][0]["table"]] == [1, 2, 3]
    if with_images:
        assert "cat &lt;b&gt;" in html


def test_report_without_counterfactuals(tmp_path):
    _, path = build(tmp_path, with_images=False, with_effects=False)
    assert not (path.parent / "figures" / "effects.png").exists()
    assert "Counterfactual tests" not in path.read_text()


def test_image_grid_keeps_each_thumbnails_aspect_ratio():
    """Thumbnails sit in unit cells of one axes per row: wide images must come out flatter, not squashed square."""
    import struct

    from modeldiff.report import figures

    def png_height(png: bytes) -> int:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        return struct.unpack(">II", png[16:24])[1]

    def grid(h, w):
        return figures.image_grid([("row", np.full((3, 1, h, w), 0.5), [0, 1, 2], ["#0 a\n+1", "#1 b\n+2", "#2 c\n+3"])])

    square, wide = png_height(grid(8, 8)), png_height(grid(8, 32))
    assert wide < 0.8 * square

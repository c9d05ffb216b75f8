"""The report's files: HTML with every figure inlined, PNGs on disk, a JSON summary."""
import base64
import json
import re
from pathlib import Path

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


def build_tabular(tmp_path):
    """A report of non-image data (feature vectors with names), with a verdict and the other direction linked."""
    from tests.test_report_verdict import ALGORITHMS

    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(30, 50)).astype(np.float32), rng.normal(size=(30, 50)).astype(np.float32)
    md = ModelDiff(2).fit(A, B)
    names = [f"worst feature number {i}" for i in range(12)]
    return write_report(tmp_path / "tab", md, train_inputs=rng.normal(size=(50, 12)).astype(np.float32),
                        test_inputs=rng.normal(size=(30, 12)).astype(np.float32), feature_names=names,
                        train_labels=rng.integers(0, 2, 50), test_labels=rng.integers(0, 2, 30),
                        class_names=["malignant", "benign"], names=("adam", "sgd"), algorithms=ALGORITHMS,
                        verdict=["No component of adam − sgd is beyond the null."],
                        other_report="../tab_b/report.html")


def test_non_image_examples_are_labelled_and_figures_exported(tmp_path):
    path = build_tabular(tmp_path)
    figs = path.parent / "figures"
    assert (figs / "examples_0.png").is_file() and (figs / "examples_1.png").is_file()
    for png in figs.glob("*.png"):                          # every figure also as SVG and PDF
        assert (figs / f"{png.stem}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        assert (figs / f"{png.stem}.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (figs / "examples_0.svg").read_text()
    assert "worst feature number" in svg                    # bars labelled by feature name
    html = path.read_text()
    assert 'href="../tab_b/report.html"' in html and "sgd minus adam" in html


def test_user_show_example_hook_draws_the_examples(tmp_path):
    from modeldiff.report import display

    calls = []

    def show(x, *, title, feature_names):
        calls.append((x.shape, title))
        return np.full((20, 30, 3), 0.5)

    png = display.example_panels([("train +", np.zeros((5, 4)), [0, 1, 2, 3], ["a", "b", "c", "d"])], show)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(calls) == 3 and calls[0] == ((4,), "train +: a")


def test_tokens_are_shown_as_text():
    from modeldiff.report import display

    fig = display.default_show_example(np.array([2, 0, 1]), feature_names=["the", "cat", "sat"])
    assert "sat the cat" in [t.get_text() for t in fig.axes[0].texts]


def test_identical_candidates_are_merged():
    from modeldiff.report.writer import merge_identical

    e = lambda m: {"a": {"mean": m, "ci_low": m - 1, "ci_high": m + 1}, "b": {"mean": 0.0, "ci_low": -1, "ci_high": 1}}
    rec = lambda label, m, ok: {"label": label, "transform": label, "target_name": "8", "confirmed": ok, "p_adjusted": 0.01,
                                "effects": {"log-odds": e(m), "probability": e(m / 10)}}
    rows = merge_identical([rec("solid 3px", 2.0, False), rec("window 3px", 2.0, True), rec("texture 3px", 1.0, True)])
    assert [names for names, _ in rows] == [["solid 3px", "window 3px"], ["texture 3px"]]
    assert rows[0][1]["confirmed"]


def test_numbers_are_rounded_to_their_ci():
    from modeldiff.report.numbers import estimate, holm, pvalue

    assert estimate(15.3123, 14.48, 16.31) == "+15.3 [14.5, 16.3]"
    assert estimate(0.09629, 0.081, 0.109) == "+0.10 [0.08, 0.11]"
    assert estimate(150.0, 100.0, 200.0) == "+150 [100, 200]"
    assert pvalue(1.199e-13) == "1e-13" and pvalue(0.0342) == "0.034" and pvalue(None) == "n/a"
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


@pytest.mark.parametrize("report,message", [({"colour": "red"}, "unknown key(s) colour"),
                                            ({"show_example": "no_such_pkg.viz:show"}, "cannot import module"),
                                            ({"feature_names": "case_studies.tabular.data:no_such_names"}, "no attribute")])
def test_study_report_settings_are_refused_before_training(tmp_path, report, message):
    import yaml

    from datamodels.base.errors import UserError
    from modeldiff.studies.config import load_study
    from modeldiff.studies.run import _check_report_settings

    root = Path(__file__).resolve().parents[1]
    study = yaml.safe_load((root / "case_studies/tabular/breast_cancer.yaml").read_text())
    study["report"] = report
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(UserError, match=re.escape(message)):
        _check_report_settings(load_study(str(tmp_path / "s.yaml")))

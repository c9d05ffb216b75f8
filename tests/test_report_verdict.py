"""The report's first screen: the verdict paragraph and the table of both algorithms, the null
band on the explained-variance scatter, the confirmatory search section, legible labels."""
import json

import numpy as np

from modeldiff import ModelDiff
from modeldiff.counterfactual.search import SearchSettings, search
from modeldiff.counterfactual.transforms import PatchPaste
from modeldiff.diff.null import calibrate, mean_halves
from modeldiff.report import write_report
from tests.test_search import make_halves

ALGORITHMS = {"a": {"label": "SGD big lr", "accuracy": 0.9812, "accuracy_std": 0.0041, "noise_temperature": 6.25e-3,
                    "models": 64, "diverged": 0},
              "b": {"label": "SGD small lr", "accuracy": 0.9791, "accuracy_std": 0.0032,
                    "noise_temperature": 1.56e-4, "models": 64, "diverged": 1}}
VERDICT = "1 component(s) of SGD big lr − SGD small lr beyond null. Confirmed: a white corner patch."


def build_full(tmp_path):
    rng = np.random.default_rng(0)
    per_a, per_b = rng.normal(size=(8, 40, 60)), rng.normal(size=(8, 40, 60))
    md = ModelDiff(3).fit(per_a.mean(0), per_b.mean(0))
    cal = calibrate(mean_halves(per_a, per_b, n_splits=6), 3, {"a_minus_b": md}, solver="full")
    cands = [(PatchPaste("solid", s, (0, 0)), None) for s in (1, 2, 3)] + [(PatchPaste("texture", 2, (6, 6)), None)]
    found = search(make_halves(0, 3.0, 0.0), cands, SearchSettings(n_confirm=3, n_resamples=200))
    path = write_report(tmp_path / "rep", md, names=("SGD big lr", "SGD small lr"), train_images=rng.random((60, 1, 8, 8)),
                        test_images=rng.random((40, 1, 8, 8)), train_labels=rng.integers(0, 4, 60),
                        test_labels=rng.integers(0, 4, 40), class_names=["zero", "one", "two", "three"],
                        verdict=VERDICT, algorithms=ALGORITHMS, search=found["a_minus_b"],
                        calibration=cal.to_dict()["directions"]["a_minus_b"], title="ModelDiff report")
    return path


def test_first_section_is_the_verdict_with_the_algorithm_table(tmp_path):
    path = build_full(tmp_path)
    html = path.read_text()
    first = html.index("<section")
    assert html.index('id="verdict"') == html.index("<section", first) + len('<section ')
    verdict = html[first:html.index("</section>", first)]
    assert "beyond null" in verdict and 'class="algorithms"' in verdict
    assert "98.12 ± 0.41 %" in verdict and "0.00625" in verdict and "diverged" in verdict
    assert "{" not in verdict                                   # never a raw dict dump
    assert html.index("Transformation search") < html.index("Explained variance")
    assert "null q95" in html and "beyond null" in html
    assert "Under each thumbnail" in html
    summary = json.loads((path.parent / "summary.json").read_text())
    assert "figures/search.png" in summary["figures"]


def test_verdict_survives_undefined_null_quantiles():
    """A null quantile left undefined (None / inf: too few calibration splits) reads "n/a" instead
    of crashing the verdict (the study refuses such settings up front; the text must not depend on it)."""
    from modeldiff.report.verdict import direction_verdict

    comps = [{"rank": 1, "ratio_halves": 2.5, "null_ratio_q95": None, "p_value": 0.5, "beyond_null": False}]
    text = direction_verdict({"components": comps}, "A", "B")
    assert "No component of A − B is beyond null" in text and "null n/a" in text
    comps[0].update(beyond_null=True, null_ratio_q95=float("inf"), p_value=None)
    assert "beyond null (#1 ratio 2.50 vs null n/a (p = n/a))" in direction_verdict({"components": comps}, "A", "B")

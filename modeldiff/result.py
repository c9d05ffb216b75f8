"""What :func:`modeldiff.compare` returns: the study's results as typed objects.

``result.algorithms["a"].accuracy``, ``result.directions["a_minus_b"].components`` (``[k, n_train]``),
``result.confirmed["a_minus_b"]`` (transformations confirmed for A over B), ``result.reports``
(HTML report per direction), ``result.verdict``; ``result.to_dict()`` equals ``OUT/summary.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DIRECTIONS = ("a_minus_b", "b_minus_a")


@dataclass(frozen=True)
class AlgorithmResult:
    """One algorithm's models: label, mean test accuracy (± sd over models), models used."""

    tag: str  # "a" or "b"
    label: str
    accuracy: float
    accuracy_std: float
    models: int
    diverged: int
    noise_temperature: float | None  # η/B of its recipe (NaN for models trained elsewhere)


@dataclass(frozen=True)
class DirectionResult:
    """ModelDiff of one ordering: ``a_minus_b`` (what A relies on and B does not) or ``b_minus_a``."""

    name: str
    components: np.ndarray  # [k, n_train]: directions in training-set space (rows of unit norm)
    explained_variance_a: list  # [k] under the first algorithm of the ordering
    explained_variance_b: list  # [k] under the second
    top_classes: list  # [k] most frequent training class among each component's top examples
    calibration: list | None  # [k] per-component null calibration (ratio, p_value, beyond_null ...) or None
    confirmed: list  # transformations the search confirmed ([] when none or the search was off)
    headline: str | None  # the search's one-line conclusion (None when the search was off)
    counterfactuals: list  # counterfactual tests of this direction (dicts as in summary.json)
    report: Path | None  # the HTML report

    @property
    def beyond_null(self) -> list[int]:
        """Ranks of the components beyond the null (empty when the calibration was off)."""
        return [c["rank"] for c in self.calibration or [] if c.get("beyond_null")]


@dataclass(frozen=True)
class ComparisonResult:
    """The result of :func:`modeldiff.compare` (see the module docstring)."""

    out: Path
    algorithms: dict  # "a" | "b" -> AlgorithmResult
    directions: dict  # "a_minus_b" | "b_minus_a" -> DirectionResult
    verdict: str
    study: str
    method: str
    summary: dict = field(repr=False)  # summary.json as read back

    @property
    def components(self) -> dict:
        """``{direction: components [k, n_train]}``."""
        return {name: d.components for name, d in self.directions.items()}

    @property
    def confirmed(self) -> dict:
        """``{direction: confirmed transformations}``."""
        return {name: d.confirmed for name, d in self.directions.items()}

    @property
    def warnings(self) -> list:
        """The study's sanity warnings ``[{code, message, detail}]`` (docs/warnings.md); empty when healthy."""
        return list(self.summary.get("warnings") or [])

    @property
    def reports(self) -> dict:
        """``{direction: path of report.html}``."""
        return {name: d.report for name, d in self.directions.items()}

    def to_dict(self) -> dict:
        """The summary exactly as ``OUT/summary.json`` holds it."""
        return json.loads(json.dumps(self.summary))

    def __getitem__(self, key):
        """``result["algorithms"]``: the summary's keys, as the dict earlier releases returned."""
        return self.summary[key]

    @classmethod
    def from_folder(cls, out) -> ComparisonResult:
        """Read a finished comparison back from its folder (``summary.json`` and ``components_*.npy``)."""
        out = Path(out)
        summary = json.loads((out / "summary.json").read_text())
        algorithms = {tag: AlgorithmResult(tag=tag, label=a["label"], accuracy=a["accuracy"],
                                           accuracy_std=a["accuracy_std"], models=a["models"],
                                           diverged=a.get("diverged", 0),
                                           noise_temperature=a.get("noise_temperature"))
                      for tag, a in summary["algorithms"].items()}
        directions = {}
        for name in DIRECTIONS:
            d = summary["directions"][name]
            directions[name] = DirectionResult(
                name=name, components=np.load(out / f"components_{name}.npy"),
                explained_variance_a=d["explained_variance_a"], explained_variance_b=d["explained_variance_b"],
                top_classes=d["top_classes"], calibration=d.get("components"), confirmed=d.get("confirmed", []),
                headline=d.get("headline"), counterfactuals=d.get("counterfactuals", []),
                report=Path(d["report"]) if d.get("report") else None)
        return cls(out=out, algorithms=algorithms, directions=directions, verdict=summary.get("verdict", ""),
                   study=summary["study"], method=summary["method"], summary=summary)

"""A study compares two learning algorithms end to end; its settings are one YAML file.

Example (``case_studies/sgd_noise/digits.yaml``)::

    name: sgd_noise
    algorithm_a: {recipe: high_noise_digits.yaml, label: high noise}
    algorithm_b: {recipe: low_noise_digits.yaml, label: low noise}
    models: 48                 # per algorithm, each on a random subset
    subset_fraction: 0.5
    attribution: {method: trak, models: 16, proj_dim: 1024}
    components: 5
    counterfactual: {transforms: ["patch:pattern=texture,size=3"], auto_candidates: 3}
    search: {transforms: ["patch:pattern=texture,size=3"]}   # search candidates are listed here

Recipe paths are relative to the study file. Unknown keys are rejected with the key named.
A study that needs a set-up step or its own runner names it as an import target (``setup`` /
``runner``, see :mod:`modeldiff.studies.hooks`); the library knows nothing about any one study.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datamodels.base import strict_yaml
from datamodels.base.dataclass_build import build_dataclass
from datamodels.base.errors import UserError
from datamodels.training.recipe import Recipe, load_recipe, recipe_from_dict
from modeldiff.counterfactual.ranking import CLASSES_PER_TRANSFORM, DEFAULT_RANKING, RANKINGS
from modeldiff.counterfactual.screen import SCREEN_KEEP, SCREEN_MODELS
from modeldiff.studies.match import MatchSpec


@dataclass
class AlgorithmSpec:
    recipe: str | dict = field(metadata={"help": "recipe YAML (relative to the study file) or an inline recipe mapping"})
    label: str = ""
    seed: int | None = field(default=None, metadata={
        "help": "this algorithm's run seed (masks and model seeds); default: the study's seed. "
                "A null study gives the same recipe twice with two seeds"})

    def load_recipe(self, folder: str) -> Recipe:
        """The recipe this spec names (a file relative to ``folder``) or holds inline."""
        if isinstance(self.recipe, dict):
            return recipe_from_dict(self.recipe)
        return load_recipe(Path(folder) / self.recipe)


@dataclass
class AttributionSpec:
    method: object = field(default="trak", metadata={
        "help": "trak | datamodels | an import target 'pkg.mod:MyMethod' (an AttributionMethod)"})
    models: int = field(default=16, metadata={
        "help": "TRAK and methods by import target: models used (the first ones of the store)"})
    proj_dim: int = field(default=1024, metadata={"help": "TRAK: random projection dimension k"})
    lambdas: int = field(default=12, metadata={"help": "datamodels: lasso path length"})
    batch_size: int = field(default=1024, metadata={
        "help": "TRAK: examples per per-example-gradient call (memory ~ batch_size x n_params x 4 bytes)"})
    projector: object = field(default="auto", metadata={
        "help": "TRAK: auto | sketch | rademacher | fast_jl | an import target 'pkg.mod:MyProjector'"})
    params: dict = field(default_factory=dict, metadata={"help": "further settings of the method"})

    def __post_init__(self):
        from datamodels.attribution.names import METHODS, PROJECTORS

        if isinstance(self.method, str):
            METHODS.check(self.method, key="attribution.method", targets=True)
        if isinstance(self.projector, str):
            PROJECTORS.check(self.projector, key="attribution.projector", targets=True)
        if not isinstance(self.params, dict):
            raise UserError(f"attribution.params must be a mapping, got {self.params!r}")


@dataclass
class CounterfactualSpec:
    transforms: list = field(default_factory=list, metadata={"help": "transform specs tried for every component"})
    auto_candidates: int = field(default=3, metadata={"help": "components turned into a data-derived transform"})
    top_k: int = field(default=40, metadata={"help": "training examples that define a component's feature"})
    n_test: int = field(default=400, metadata={"help": "test images the transforms are applied to"})
    sizes: list = field(default_factory=list, metadata={"help": "patch sizes to sweep for patch transforms"})
    rows: str | list = field(default="all", metadata={
        "help": "test rows the transforms are applied to: all, [start, stop), or a row set the study's setup names"})
    bootstrap: int = 2000
    seed: int = 0


ESTIMATORS = ("classic", "crossfit")  # calibration.estimator: modeldiff.diff ModelDiff | CrossFitModelDiff


@dataclass
class NullSpec:
    """Null calibration of components (see modeldiff.diff.null)."""
    enabled: bool = True
    splits: int = field(default=8, metadata={"help": "random splits of each algorithm's attribution models into halves"})
    groups: int = field(default=8, metadata={"help": "TRAK: model groups attributed once each (halves = unions of groups)"})
    level: float = field(default=0.95, metadata={"help": "a component is beyond null above this null quantile"})
    estimator: str = field(default="classic", metadata={
        "help": "ModelDiff estimator of the components: classic (PCA of the residual, as in the paper) | crossfit "
                "(cross-covariance of residuals from disjoint halves of each algorithm's models: ranks signal, "
                "not estimation noise; needs the calibration enabled and, for TRAK, groups >= 4)"})

    def __post_init__(self):
        if self.splits < 2 or self.groups < 2:
            raise UserError(f"calibration.splits and calibration.groups must be >= 2, got {self.splits} and {self.groups}")
        if not 0 < self.level < 1:
            raise UserError(f"calibration.level must be in (0, 1), got {self.level}")
        if self.estimator not in ESTIMATORS:
            raise UserError(f"calibration.estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.estimator == "crossfit" and not self.enabled:
            raise UserError("calibration.estimator crossfit uses the calibration's model halves: "
                            "set calibration.enabled to true")
        if self.estimator == "crossfit" and self.groups < 4:
            raise UserError(f"calibration.estimator crossfit splits each algorithm's models into 4 parts for its null: "
                            f"calibration.groups must be >= 4, got {self.groups}")


@dataclass
class SearchSpec:
    """Confirmatory transformation search (see modeldiff.counterfactual.search)."""
    enabled: bool = True
    families: list = field(default_factory=list, metadata={
        "help": "generic families to search (default all): patch, stroke, square, tint, grayscale, blur, contrast, "
                "sharpen, shift, lowpass, highpass"})
    n_confirm: int = field(default=5, metadata={"help": "top discovery candidates confirmed per direction"})
    alpha: float = field(default=0.05, metadata={"help": "family-wise level of the Holm-adjusted confirmation"})
    n_inputs: int = field(default=200, metadata={"help": "test inputs per half (discovery / confirmation)"})
    models: int = field(default=32, metadata={"help": "models per half (discovery / confirmation), at most"})
    overlays: int = field(default=3, metadata={"help": "top components per direction turned into overlay candidates"})
    transforms: list = field(default_factory=list, metadata={
        "help": "extra candidates (specs or import targets); counterfactual.transforms do not join the search"})
    exclude: list = field(default_factory=list, metadata={
        "help": "candidates kept out of the search: transform specs, or reprs of library candidates"})
    rows: str | list = field(default="all", metadata={
        "help": "test rows the search draws its inputs from: all, [start, stop), or a row set the study's setup names"})
    n_resamples: int = 2000
    seed: int = 0
    ranking: str = field(default=DEFAULT_RANKING, metadata={
        "help": "discovery ranking: exclusive (lower bound of the class-specific log-odds effect beyond 3x the "
                "other algorithm's), effect (beyond the other's) or t"})
    screen_models: int = field(default=SCREEN_MODELS, metadata={
        "help": "models per algorithm of the screening pass over every candidate (0: no screening)"})
    screen_keep: int = field(default=SCREEN_KEEP, metadata={
        "help": "candidates per direction the screening passes to the full discovery pass"})
    classes_per_transform: int = field(default=CLASSES_PER_TRANSFORM, metadata={
        "help": "(transform, class) pairs ranked per transform in discovery: its best classes (1: the best only)"})
    distinct: bool = field(default=False, metadata={
        "help": "confirm distinct findings: skip a candidate at the same place (or of the same kind) and class as "
                "a better-ranked one"})

    def __post_init__(self):
        if self.ranking not in RANKINGS:
            raise UserError(f"search.ranking must be one of {', '.join(RANKINGS)}, got {self.ranking!r}")
        if not isinstance(self.distinct, bool):
            raise UserError(f"search.distinct must be true or false, got {self.distinct!r}")


@dataclass
class DiagnosticsSpec:
    """Sharpness and SGD-noise diagnostics of each algorithm's models (see modeldiff.studies.diagnostics)."""
    models: int = field(default=0, metadata={"help": "models diagnosed per algorithm (the first ones); 0 = stage off"})
    probes: int = field(default=4, metadata={"help": "Hutchinson probes for tr(H²) (they also estimate tr(ΣH))"})
    lanczos_steps: int = field(default=20, metadata={"help": "most Lanczos iterations (HVPs) for λ_max"})
    lanczos_tol: float = field(default=1e-3, metadata={"help": "stop Lanczos at this relative residual of λ_max"})
    batch_size: int = field(default=1024, metadata={"help": "examples per pass chunk (memory bound)"})
    seed: int = 0

    def __post_init__(self):
        if self.models < 0 or self.probes < 2 or self.lanczos_steps < 1 or self.batch_size < 1:
            raise UserError("diagnostics: models must be >= 0, probes >= 2, lanczos_steps and batch_size >= 1")


@dataclass
class StudyConfig:
    name: str
    algorithm_a: AlgorithmSpec
    algorithm_b: AlgorithmSpec
    models: int = 48
    subset_fraction: float = 0.5
    seed: int = 0
    components: int = 5
    ensemble_size: int = 16
    attribution: AttributionSpec = field(default_factory=AttributionSpec)
    counterfactual: CounterfactualSpec = field(default_factory=CounterfactualSpec)
    calibration: NullSpec = field(default_factory=NullSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    diagnostics: DiagnosticsSpec = field(default_factory=DiagnosticsSpec)
    match: MatchSpec = field(default_factory=MatchSpec, metadata={
        "help": "{by: train_loss, method: train_slower | stop_faster}: compare the algorithms at equal training "
                "loss (see modeldiff.studies.match)"})
    data: dict = field(default_factory=dict, metadata={"help": "overrides of both recipes' data section"})
    setup: dict | str = field(default_factory=dict, metadata={
        "help": "{target: 'pkg.mod:fn', kwargs: {...}} (or just the target): a step run before training that may change the data, the "
                "recipes and the named test-row sets (see modeldiff.studies.hooks)"})
    runner: dict | str = field(default_factory=dict, metadata={
        "help": "{target: 'pkg.mod:fn', kwargs: {...}} (or just the target): runs the study instead of the standard pipeline "
                "(see modeldiff.studies.hooks)"})
    report: dict = field(default_factory=dict, metadata={
        "help": "report display of non-image examples: {show_example: 'pkg.mod:fn', feature_names: [...] or 'pkg.mod:fn'}"})
    folder: str = ""  # where recipe paths are resolved (set by load_study)

    def __post_init__(self):
        from modeldiff.studies.hooks import check_hook

        for key in ("setup", "runner"):
            setattr(self, key, check_hook(getattr(self, key), key))

    def recipes(self, data_dir: str | None = None) -> tuple[Recipe, Recipe]:
        out = []
        for spec in (self.algorithm_a, self.algorithm_b):
            recipe = spec.load_recipe(self.folder)
            changes = {f"data.{k}": v for k, v in self.data.items()}
            if data_dir:
                changes["data.data_dir"] = data_dir
            out.append(recipe.replace(**changes) if changes else recipe)
        return out[0], out[1]

    def with_models(self, models: int) -> None:
        """Train ``models`` per algorithm (at least 2); TRAK then uses at most that many."""
        if models < 2:
            raise UserError("--models must be at least 2")
        self.models = models
        self.attribution.models = min(self.attribution.models, models)

    def seeds(self) -> tuple[int, int]:
        """Run seeds of A and B (each algorithm's own, else the study's)."""
        return tuple(self.seed if s.seed is None else s.seed for s in (self.algorithm_a, self.algorithm_b))

    def labels(self) -> tuple[str, str]:
        a, b = self.recipes()
        return self.algorithm_a.label or a.name, self.algorithm_b.label or b.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_study(path_or_name: str) -> StudyConfig:
    """A study YAML by path, or ``STUDY`` / ``STUDY/DATASET`` for the shipped ones
    (e.g. ``sgd_noise`` = ``case_studies/sgd_noise/digits.yaml``)."""
    from modeldiff.studies.shipped import find_study, shipped_names

    path = Path(path_or_name)
    if not path.is_file():
        path = find_study(path_or_name) or path
    if not path.is_file():
        raise UserError(f"no study {path_or_name!r}: give a study YAML or one of {', '.join(shipped_names())}")
    try:
        data = strict_yaml.load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"study {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"study {path} must be a YAML mapping (name: ..., algorithm_a: ..., algorithm_b: ...), "
                        f"got {'an empty file' if data is None else 'a ' + type(data).__name__}")
    cfg = build_dataclass(StudyConfig, data, "", what="study")
    cfg.folder = str(path.parent)
    return cfg

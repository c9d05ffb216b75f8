"""Learning algorithms as typed recipes: dataclasses loaded from YAML, strictly validated.

A recipe is everything that defines *how* models are trained (model, optimiser, loss, trainer
backend, augmentation, initialisation, precision). Unknown or mistyped keys are rejected with the
key named. Choices come from registries: models (:mod:`datamodels.training.model_factory`),
optimisers (:mod:`~datamodels.training.optimizers`), losses (:mod:`~datamodels.training.losses`),
trainers (:mod:`~datamodels.training.backends`); anything else is an import target
``"pkg.mod:name"``, resolved when training starts (not when a recipe or a store is read).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from datamodels.base import strict_yaml
from datamodels.base.dataclass_build import build_dataclass
from datamodels.base.errors import UserError
from datamodels.registry import is_target
from datamodels.training.fit import UntilConfig, parse_checkpoints, train_epochs

PRECISIONS = ("float32", "float64", "bfloat16")
LOADERS = ("tensor", "ffcv")


@dataclass
class DataConfig:
    name: str = field(default="digits", metadata={
        "help": "digits | cifar10; with a target: the dataset's display name (default: the target)"})
    data_dir: str | None = field(default=None, metadata={
        "help": "folder for cifar10 (ImageFolder or torchvision layout); passed to a target that takes data_dir"})
    per_class_train: int | None = field(default=None, metadata={"help": "keep this many training images per class"})
    per_class_test: int | None = field(default=None, metadata={"help": "keep this many test images per class"})
    target: str | None = field(default=None, metadata={
        "help": "your data loader 'my_pkg.data:load' returning a Dataset or "
                "(x_train, y_train, x_test, y_test[, class_names])"})
    kwargs: dict = field(default_factory=dict, metadata={"help": "keyword arguments of the data target"})

    def __post_init__(self):
        if self.target is None:
            if self.kwargs:
                raise UserError("data.kwargs is set but data.target is not: kwargs are the data target's arguments")
            return
        from datamodels.registry import is_target

        if not is_target(self.target):
            raise UserError(f"data.target {self.target!r} is not an import target: write it as 'package.module:name'")
        if self.per_class_train is not None or self.per_class_test is not None:
            raise UserError("data.per_class_train/per_class_test apply to built-in datasets only: "
                            "pass such options to your data target in data.kwargs")
        if self.name == "digits":  # the default: a target's data is named after the target
            self.name = self.target


@dataclass
class ModelConfig:
    """The network: a built-in architecture (``arch``) or any callable returning an ``nn.Module``
    (``target: "pkg.mod:make_net"`` with ``kwargs``) that maps ``x[B, *input_shape]`` to logits ``[B, K]``.

    A built-in name given as ``target`` is an alias of ``arch``. ``num_classes`` / ``input_shape`` are
    passed to a user callable when its signature accepts them.
    """

    arch: str | None = field(default=None, metadata={
        "help": "built-in: digits_cnn | resnet9 | linear (default digits_cnn)"})
    width: int | None = field(default=None, metadata={
        "help": "built-in models: channels of the first layer (later layers scale from it; default 16); "
                "a user model: passed as its 'width' argument (it must take one; else use model.kwargs)"})
    blind_region: list | None = field(default=None, metadata={
        "help": "[row0, row1, col0, col1]: pixels the model never sees (zeroed in its input layer, train and test)"})
    target: str | None = field(default=None, metadata={"help": "import target 'pkg.mod:make_net' of a user model"})
    kwargs: dict = field(default_factory=dict, metadata={"help": "keyword arguments of the user model's callable"})

    def __post_init__(self):
        from datamodels.registry import is_target
        from datamodels.training.model_factory import MODELS

        builtin = MODELS.names()
        if self.target is not None and self.target in builtin:  # alias: target: digits_cnn
            if self.arch not in (None, self.target):
                raise UserError(f"model.arch {self.arch!r} and model.target {self.target!r} disagree: give one of them")
            self.arch, self.target = self.target, None
        if self.target is not None:
            if self.arch is not None:
                raise UserError(f"model.arch {self.arch!r} and model.target {self.target!r} both given: "
                                f"give one of them")
            if not is_target(self.target):
                raise UserError(f"model.target {self.target!r} must be one of {', '.join(builtin)} or an import "
                                f"target 'package.module:name'")
            if self.blind_region is not None:
                raise UserError("model.blind_region works only for built-in image models: remove it or blank the "
                                "region inside your own model")
            if self.width is not None:  # one place for the user callable's arguments: model.kwargs
                if "width" in self.kwargs:
                    raise UserError(f"model.width and model.kwargs.width are both given for model.target "
                                    f"{self.target!r}: keep one")
                self.kwargs = {**self.kwargs, "width": self.width}
                self.width = None
        else:
            self.width = 16 if self.width is None else self.width
            self.arch = self.arch or "digits_cnn"
            _choice("model.arch", self.arch, builtin)
            if self.kwargs:
                raise UserError(f"model.kwargs {sorted(self.kwargs)} only apply to a user model (model.target); "
                                f"built-in models take model.width")
        width = self.width if self.builtin else self.kwargs.get("width")
        if isinstance(width, int) and not isinstance(width, bool) and width < 1:
            raise UserError(f"model.width must be >= 1, got {width}")
        region = self.blind_region
        if region is not None and (len(region) != 4 or not all(isinstance(v, int) for v in region)):
            raise UserError(f"model.blind_region must be four integers [row0, row1, col0, col1], got {region!r}")

    @property
    def builtin(self) -> bool:
        """True for a built-in architecture (the grouped-convolution ensemble can train it)."""
        return self.target is None

    @property
    def label(self) -> str:
        """The architecture name or the user target (for messages)."""
        return self.arch if self.builtin else self.target


PER_OPTIMIZER_KEYS = ("momentum", "nesterov", "weight_decay", "betas", "eps")  # which apply: optimizers.BUILTIN_DEFAULTS


@dataclass
class OptimConfig:
    """The optimiser: ``name`` sgd | adam | adamw | an import target of a ``torch.optim.Optimizer`` class.

    Per-optimiser keys: ``momentum``/``nesterov`` (sgd), ``betas``/``eps`` (adam, adamw), ``weight_decay``
    (all). For a user optimiser, any other key goes to its constructor (``kwargs``), checked against
    its signature when training starts. Keys left empty take the optimiser's defaults (sgd: those of
    earlier releases, momentum 0.9, Nesterov, weight decay 5e-4; adam/adamw: torch's).
    """

    lr: float = field(default=0.05, metadata={"help": "peak learning rate eta (per example-averaged loss)"})
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    schedule: str = field(default="triangle", metadata={
        "help": "default triangle (linear warm-up over warmup_fraction of the steps, then decay to 0; the same for "
                "every optimizer) | constant | cosine | step | import target of a PyTorch LR scheduler class "
                "('torch.optim.lr_scheduler:OneCycleLR') or of a function fn(t, optim) -> multiplier"})
    schedule_kwargs: dict = field(default_factory=dict, metadata={
        "help": "keyword arguments of a PyTorch scheduler class (total_steps / T_max default to the step count)"})
    warmup_fraction: float = field(default=0.2, metadata={"help": "share of steps spent warming up (triangle)"})
    label_smoothing: float = 0.0
    name: str = field(default="sgd", metadata={"help": "sgd | adam | adamw | import target of an optimizer class"})
    betas: list | None = field(default=None, metadata={"help": "adam/adamw: [beta1, beta2]"})
    eps: float | None = field(default=None, metadata={"help": "adam/adamw: denominator epsilon"})
    kwargs: dict = field(default_factory=dict, metadata={"help": "user optimizer: extra constructor arguments"})

    def __post_init__(self):
        from datamodels.registry import is_target
        from datamodels.training.optimizers import BUILTIN_DEFAULTS, OPTIMIZERS
        from datamodels.training.schedule import SCHEDULES

        SCHEDULES.check(self.schedule, key="optim.schedule", targets=True)
        if self.schedule_kwargs and self.schedule in SCHEDULES:
            raise UserError(f"optim.schedule_kwargs apply to a PyTorch scheduler class, not to schedule "
                            f"{self.schedule!r}: remove them")
        if self.name not in OPTIMIZERS and not is_target(self.name):
            raise UserError(f"optim.name must be one of {', '.join(OPTIMIZERS.names())} or an import target "
                            f"'package.module:OptimizerClass'; got {self.name!r}")
        if not self.lr > 0:
            raise UserError(f"optim.lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.warmup_fraction <= 1:
            raise UserError(f"optim.warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        defaults = BUILTIN_DEFAULTS.get(self.name)
        if defaults is not None:
            allowed = tuple(defaults)
            for key in PER_OPTIMIZER_KEYS:
                if key not in allowed and getattr(self, key) is not None:
                    raise UserError(f"optim.{key} does not apply to optim.name {self.name!r} (its keys: "
                                    f"{', '.join(allowed)}): remove it")
            if self.kwargs:
                raise UserError(f"unknown recipe key 'optim.{sorted(self.kwargs)[0]}' for optim.name {self.name!r}: "
                                f"its keys are {', '.join(allowed)}")
            for key, value in defaults.items():
                if getattr(self, key) is None:
                    setattr(self, key, list(value) if isinstance(value, list) else value)
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise UserError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if self.betas is not None and (len(self.betas) != 2 or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            raise UserError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.eps is not None and not self.eps > 0:
            raise UserError(f"optim.eps must be positive, got {self.eps}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise UserError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")

    def constructor_kwargs(self) -> dict:
        """Keyword arguments for the optimiser class besides ``lr`` (the keys that are set)."""
        out = {k: getattr(self, k) for k in ("momentum", "nesterov", "weight_decay", "eps")
               if getattr(self, k) is not None}
        if self.betas is not None:
            out["betas"] = tuple(self.betas)
        if self.name == "sgd":
            out["nesterov"] = bool(self.nesterov and self.momentum > 0)
        return {**out, **self.kwargs}


@dataclass
class PasteConfig:
    """Paste a fixed pattern at a fixed place on a random, label-independent share of the training
    inputs, drawn anew for every model and epoch (see :mod:`datamodels.data.patterns`). A model trained
    so sees the pattern on every class alike, so the pattern tells it nothing about the label."""
    share: float = field(default=0.0, metadata={"help": "probability that an input gets the pattern, per epoch; 0 = off"})
    region: list | None = field(default=None, metadata={"help": "[row0, row1, col0, col1] where the pattern goes"})
    pattern: str = field(default="solid", metadata={"help": "solid | checker | bar | vbar | ring | cross | diagonal"})
    amplitude: float = field(default=1.0, metadata={"help": "mean intensity the pattern adds over its region, (0, 1]"})
    erase: bool = field(default=False, metadata={
        "help": "occlude only: dim the region as the pattern's blend would, (1 - w) * x, without writing the pattern"})

    def __post_init__(self):
        from datamodels.data.patterns import check_pattern

        if not isinstance(self.erase, bool):
            raise UserError(f"augment.paste.erase must be true or false, got {self.erase!r}")
        if not 0 <= self.share <= 1:
            raise UserError(f"augment.paste.share must be in [0, 1], got {self.share}")
        check_pattern(self.pattern, self.amplitude, what="augment.paste.pattern")
        if self.share > 0 and (not isinstance(self.region, list) or len(self.region) != 4):
            raise UserError(f"augment.paste.region must be [row0, row1, col0, col1] when share > 0, got {self.region!r}")


@dataclass
class AugmentConfig:
    flip: bool = field(default=False, metadata={"help": "random horizontal flips"})
    translate: int = field(default=0, metadata={"help": "max shift in pixels (random crop of a reflect-padded image)"})
    cutout: int = field(default=0, metadata={"help": "side of a square zeroed at a random place, 0 = off"})
    paste: PasteConfig = field(default_factory=PasteConfig, metadata={
        "help": "a pattern pasted at a fixed place on a random share of the inputs (before flip/translate/cutout)"})

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.flip or self.translate > 0 or self.cutout > 0 or self.paste.share > 0)


@dataclass
class InitConfig:
    kind: str = field(default="random", metadata={"help": "random | checkpoint (pretraining)"})
    checkpoint: str | None = field(default=None, metadata={"help": "state dict to start from when kind=checkpoint"})
    reset_head: bool = field(default=True, metadata={"help": "re-initialise the final layer after loading"})

    def __post_init__(self):
        _choice("init.kind", self.kind, ("random", "checkpoint"))
        if self.kind == "checkpoint" and not self.checkpoint:
            raise UserError("init.kind is 'checkpoint' but init.checkpoint is empty: give the path of a state dict")


@dataclass
class Recipe:
    """One learning algorithm. ``noise_temperature`` = lr / batch_size (eta/B)."""

    name: str = "recipe"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: InitConfig = field(default_factory=InitConfig)
    batch_size: int = field(default=64, metadata={"help": "examples per SGD step, per model"})
    epochs: int = field(default=15, metadata={"help": "passes over each model's training subset"})
    precision: str = field(default="float32", metadata={"help": "float32 | float64 | bfloat16 (autocast)"})
    loader: str = field(default="tensor", metadata={"help": "tensor (data resident on the device) | ffcv"})
    loss: str = field(default="cross_entropy", metadata={
        "help": "cross_entropy | import target of fn(logits[B, K], y[B]) -> per-example loss [B]"})
    trainer: str | dict = field(default="auto", metadata={
        "help": "auto | ensemble | vmap | loop | {target: 'pkg.mod:train_fn', kwargs: {...}}"})
    until: UntilConfig = field(default_factory=UntilConfig, metadata={
        "help": "{train_loss: L and/or train_accuracy: A, max_epochs: E}: train each model until its own "
                "training fit meets the target (checked at epoch ends; see datamodels.training.fit)"})
    keep_checkpoints: list = field(default_factory=list, metadata={
        "help": "checkpoints kept per model: epochs (5), loss levels ({train_loss: 0.5}), "
                "{train_accuracy: 0.9} or 'all' (every epoch)"})

    def __post_init__(self):
        _choice("precision", self.precision, PRECISIONS)
        _choice("loader", self.loader, LOADERS)
        if self.batch_size < 1 or self.epochs < 1:
            raise UserError(f"batch_size and epochs must be >= 1, got {self.batch_size} and {self.epochs}")
        parse_checkpoints(self.keep_checkpoints, train_epochs(self))
        _check_recipe_choices(self)

    @property
    def train_epochs(self) -> int:
        """Most epochs a model trains: ``until.max_epochs`` when a target is set, else ``epochs``."""
        return train_epochs(self)

    @property
    def noise_temperature(self) -> float:
        """SGD noise temperature eta / B."""
        return self.optim.lr / self.batch_size

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes) -> "Recipe":
        """A copy with dotted keys changed, e.g. ``recipe.replace(**{"optim.lr": 0.1})``.

        Changing ``optim.name`` starts the new optimiser from its own defaults: the old optimiser's
        keys still at their defaults are dropped; a key set to another value (a deliberate choice,
        e.g. ``weight_decay: 1e-3``) is kept when the new optimiser takes it and refused in one line
        when it does not (pass it as ``None`` in the same call to drop it); keys given in the same
        call win, e.g. ``recipe.replace(**{"optim.name": "adam", "optim.lr": 1e-3, "optim.eps": 1e-6})``.
        """
        d = self.to_dict()
        if "optim.name" in changes and changes["optim.name"] != self.optim.name:
            given = {key.split(".", 1)[1] for key in changes if key.startswith("optim.")}
            d["optim"] = _optim_for_new_name(self.optim, changes["optim.name"], given)
        for key, value in changes.items():
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise UserError(f"recipe.replace: {key!r} is not a recipe key ({p!r} is not a section)")
                node = node[p]
            node[leaf] = value
        return recipe_from_dict(d)


def _optim_for_new_name(old: OptimConfig, new_name, given: set) -> dict:
    """``old``'s optim section for a switch to ``new_name`` (see :meth:`Recipe.replace`)."""
    from datamodels.training.optimizers import BUILTIN_DEFAULTS

    old_defaults = BUILTIN_DEFAULTS.get(old.name, {})
    new_keys = BUILTIN_DEFAULTS.get(new_name)  # None: a user optimizer, which takes any key
    d = asdict(old)
    for key in PER_OPTIMIZER_KEYS:
        value = d[key]
        if key in given or value is None:
            continue
        if key in old_defaults and value == old_defaults[key]:
            d[key] = None  # the old optimizer's default: the new one fills in its own
        elif new_keys is not None and key not in new_keys:
            raise UserError(f"optim.{key}={value!r} was set for optim.name {old.name!r} and does not apply to "
                            f"{new_name!r}: pass \"optim.{key}\": None in the same replace() to drop it")
    if d["kwargs"] and "kwargs" not in given and new_keys is not None:
        raise UserError(f"optim.kwargs {sorted(d['kwargs'])} of optimizer {old.name!r} do not apply to "
                        f"{new_name!r}: pass \"optim.kwargs\": {{}} in the same replace() to drop them")
    return d


def _check_recipe_choices(recipe: "Recipe") -> None:
    """Recipe-level checks: loss and trainer names, and settings that only some choices take."""
    from datamodels.registry import is_target
    from datamodels.training.backends import TRAINERS
    from datamodels.training.losses import LOSSES

    if recipe.loss not in LOSSES and not is_target(recipe.loss):
        raise UserError(f"loss must be one of {', '.join(LOSSES.names())} or an import target 'package.module:fn'; "
                        f"got {recipe.loss!r}")
    if recipe.loss != "cross_entropy" and recipe.optim.label_smoothing:
        raise UserError("optim.label_smoothing applies to loss cross_entropy only: smooth inside your loss instead")
    trainer = recipe.trainer
    if isinstance(trainer, dict):
        for key in trainer:
            if key not in ("target", "kwargs"):
                raise UserError(f"unknown recipe key 'trainer.{key}': allowed keys are kwargs, target")
        if not is_target(trainer.get("target")):
            raise UserError(f"trainer.target must be an import target 'package.module:train_fn'; "
                            f"got {trainer.get('target')!r}")
        if not isinstance(trainer.get("kwargs", {}), dict):
            raise UserError(f"recipe key 'trainer.kwargs' must be a mapping, got {trainer['kwargs']!r}")
        recipe.trainer = {"target": trainer["target"], "kwargs": dict(trainer.get("kwargs") or {})}
    elif is_target(trainer):
        recipe.trainer = {"target": trainer, "kwargs": {}}
    else:
        _choice("trainer", trainer, TRAINERS.names())
    if recipe.trainer == "ensemble" and not recipe.model.builtin:
        raise UserError(f"trainer ensemble trains the built-in architectures only, not model.target "
                        f"{recipe.model.target!r}: use trainer vmap, loop or auto")
    if recipe.init.kind == "checkpoint" and recipe.init.reset_head and not recipe.model.builtin:
        raise UserError("init.reset_head works for built-in models only (their final layer is 'head'): set "
                        "init.reset_head: false and re-initialise your model's head inside model.target")


def _choice(key, value, allowed):
    if value not in allowed:
        raise UserError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def recipe_from_dict(data: dict, *, stored: bool = False) -> Recipe:
    """Validate a nested dict (as read from YAML) into a :class:`Recipe`.

    For a user optimiser (``optim.name`` an import target) keys beyond :class:`OptimConfig`'s are
    collected into ``optim.kwargs`` (its constructor's arguments).

    ``stored``: the dict is a store's recorded recipe. Stores of the release that introduced
    ``model.target`` recorded ``model.width: 16`` beside it, a width that was never passed to the
    model; it is dropped, so such stores reopen and resume as they were trained (this release
    records a user model's width in ``model.kwargs``, never beside ``model.target``).
    """
    data = dict(data or {})
    model = data.get("model")
    if stored and isinstance(model, dict) and model.get("target") and model.get("width") is not None:
        data["model"] = {**model, "width": None}
    optim = data.get("optim")
    if isinstance(optim, dict) and is_target(optim.get("name")):
        known = {f.name for f in dataclasses.fields(OptimConfig)}
        extra = {k: v for k, v in optim.items() if k not in known}
        if extra:
            kwargs = optim.get("kwargs") or {}
            clash = sorted(set(extra) & set(kwargs)) if isinstance(kwargs, dict) else []
            if clash:
                raise UserError(f"recipe key 'optim.{clash[0]}' is given twice (also in optim.kwargs): keep one")
            data["optim"] = {**{k: v for k, v in optim.items() if k in known},
                             "kwargs": {**(kwargs if isinstance(kwargs, dict) else {}), **extra}}
    return build_dataclass(Recipe, data, "")


def load_recipe(path: str | Path) -> Recipe:
    """Read a YAML recipe; unknown or mistyped keys raise :class:`UserError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file {path} does not exist")
    try:
        data = strict_yaml.load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:  # an empty file is a mistake, not a request for the default recipe
        raise UserError(f"recipe {path} is empty: write a recipe (see `modeldiff train default`), or pass 'default'")
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a YAML mapping (name: ..., model: ..., optim: ...), "
                        f"got a {type(data).__name__}")
    return recipe_from_dict(data)


def resolve_recipe(name_or_path: str, data_dir: str | None = None) -> Recipe:
    """A recipe file, or ``"default"`` for the embedded digits recipe; ``data_dir`` overrides ``data.data_dir``."""
    from importlib import resources

    if name_or_path == "default":
        name_or_path = str(resources.files("datamodels") / "recipes" / "digits_default.yaml")
    recipe = load_recipe(name_or_path)
    if data_dir:
        recipe = recipe.replace(**{"data.data_dir": data_dir})
    return recipe

"""Learning algorithms as typed recipes: dataclasses loaded from YAML, strictly validated.

A recipe is everything that defines *how* models are trained (architecture, SGD settings,
augmentation, initialisation, precision). Unknown or mistyped keys are rejected with the key named.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from modeldiff.errors import UserError

ARCHS = ("digits_cnn", "resnet9", "linear")
SCHEDULES = ("constant", "triangle", "cosine", "step")
PRECISIONS = ("float32", "float64", "bfloat16")
LOADERS = ("tensor", "ffcv")


@dataclass
class DataConfig:
    name: str = field(default="digits", metadata={"help": "digits | cifar10"})
    data_dir: str | None = field(default=None, metadata={"help": "folder for cifar10 (ImageFolder or torchvision layout)"})
    per_class_train: int | None = field(default=None, metadata={"help": "keep this many training images per class"})
    per_class_test: int | None = field(default=None, metadata={"help": "keep this many test images per class"})


@dataclass
class ModelConfig:
    arch: str = field(default="digits_cnn", metadata={"help": "digits_cnn | resnet9 | linear"})
    width: int = field(default=16, metadata={"help": "channels of the first layer (later layers scale from it)"})
    blind_region: list | None = field(default=None, metadata={
        "help": "[row0, row1, col0, col1]: pixels the model never sees (zeroed in its input layer, train and test)"})

    def __post_init__(self):
        _choice("model.arch", self.arch, ARCHS)
        if self.width < 1:
            raise UserError(f"model.width must be >= 1, got {self.width}")
        region = self.blind_region
        if region is not None and (len(region) != 4 or not all(isinstance(v, int) for v in region)):
            raise UserError(f"model.blind_region must be four integers [row0, row1, col0, col1], got {region!r}")


@dataclass
class OptimConfig:
    lr: float = field(default=0.05, metadata={"help": "peak learning rate eta (per example-averaged loss)"})
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = field(default="triangle", metadata={"help": "constant | triangle (linear warm-up then decay to 0) | cosine | step"})
    warmup_fraction: float = field(default=0.2, metadata={"help": "share of steps spent warming up (triangle)"})
    label_smoothing: float = 0.0

    def __post_init__(self):
        _choice("optim.schedule", self.schedule, SCHEDULES)
        if self.lr <= 0:
            raise UserError(f"optim.lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class AugmentConfig:
    flip: bool = field(default=False, metadata={"help": "random horizontal flips"})
    translate: int = field(default=0, metadata={"help": "max shift in pixels (random crop of a reflect-padded image)"})
    cutout: int = field(default=0, metadata={"help": "side of a square zeroed at a random place, 0 = off"})


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

    def __post_init__(self):
        _choice("precision", self.precision, PRECISIONS)
        _choice("loader", self.loader, LOADERS)
        if self.batch_size < 1 or self.epochs < 1:
            raise UserError(f"batch_size and epochs must be >= 1, got {self.batch_size} and {self.epochs}")

    @property
    def noise_temperature(self) -> float:
        """SGD noise temperature eta / B."""
        return self.optim.lr / self.batch_size

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes) -> "Recipe":
        """A copy with dotted keys changed, e.g. ``recipe.replace(**{"optim.lr": 0.1})``."""
        d = self.to_dict()
        for key, value in changes.items():
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return recipe_from_dict(d)


def _choice(key, value, allowed):
    if value not in allowed:
        raise UserError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _check_type(key: str, value, hint, what: str = "recipe"):
    """``value`` checked (and, for floats, converted) against the type ``hint``, or a UserError naming ``key``."""
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return value
    for option in (o for o in options if o is not type(None)):
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # YAML reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                continue
        if isinstance(value, base) and not (base in (int, float) and isinstance(value, bool)):
            return value
    names = " or ".join((typing.get_origin(o) or o).__name__ for o in options)
    raise UserError(f"{what} key '{key}' must be {names}, got {type(value).__name__} {value!r}")


def _build(cls, data: dict, prefix: str, what: str = "recipe"):
    """Validate ``data`` into the dataclass ``cls`` (recursively), naming any bad key."""
    if not isinstance(data, dict):
        raise UserError(f"{what} key '{prefix.rstrip('.') or what}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise UserError(f"unknown {what} key '{prefix}{key}': allowed keys are {', '.join(sorted(known))}")
    for f in fields:
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{what} key '{prefix}{f.name}' is missing")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.", what)
        else:
            kwargs[key] = _check_type(prefix + key, value, hint, what)
    return cls(**kwargs)


def recipe_from_dict(data: dict) -> Recipe:
    """Validate a nested dict (as read from YAML) into a :class:`Recipe`."""
    return _build(Recipe, data or {}, "")


def load_recipe(path: str | Path) -> Recipe:
    """Read a YAML recipe; unknown or mistyped keys raise :class:`UserError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return recipe_from_dict(data)

"""Learning-rate schedules as a multiplier of the peak rate at each SGD step."""
from __future__ import annotations

import math

from datamodels.training.recipe import OptimConfig


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate for ``step`` in ``[0, total_steps)``."""
    t = step / max(total_steps, 1)
    if cfg.schedule == "constant":
        factor = 1.0
    elif cfg.schedule == "triangle":  # linear warm-up, then linear decay to zero
        w = cfg.warmup_fraction
        factor = t / w if (w > 0 and t < w) else (1 - t) / (1 - w) if w < 1 else 1.0
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * t))
    else:  # step: divide by 10 at 50 % and 75 % of training
        factor = 0.1 ** ((t >= 0.5) + (t >= 0.75))
    return cfg.lr * max(factor, 0.0)

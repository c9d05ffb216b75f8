"""Learning-rate schedules as a multiplier of the peak rate at each SGD step.

:data:`SCHEDULES` is the one list of schedule names (``optim.schedule`` is checked against it);
each entry maps the training progress ``t = step / total_steps`` in ``[0, 1)`` and the recipe's
``optim`` section to the multiplier of ``optim.lr``.
"""
from __future__ import annotations

import math

from datamodels.registry import Registry

SCHEDULES = Registry("optim.schedule")
SCHEDULES.register("constant", lambda t, cfg: 1.0)


@SCHEDULES.register("triangle")
def _triangle(t: float, cfg) -> float:
    """Linear warm-up over ``warmup_fraction`` of training, then linear decay to zero."""
    w = cfg.warmup_fraction
    return t / w if (w > 0 and t < w) else (1 - t) / (1 - w) if w < 1 else 1.0


SCHEDULES.register("cosine", lambda t, cfg: 0.5 * (1 + math.cos(math.pi * t)))
SCHEDULES.register("step", lambda t, cfg: 0.1 ** ((t >= 0.5) + (t >= 0.75)))  # /10 at 50 % and 75 %


def lr_at(step: int, total_steps: int, cfg) -> float:
    """Learning rate for ``step`` in ``[0, total_steps)`` (``cfg``: the recipe's ``optim`` section)."""
    t = step / max(total_steps, 1)
    return cfg.lr * max(SCHEDULES.get(cfg.schedule, key="optim.schedule")(t, cfg), 0.0)

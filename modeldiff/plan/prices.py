"""Cost from a user's price file, and the cheapest configuration that meets a deadline.

Price file (YAML; prices are the user's, never built in)::

    currency: USD
    machines:
      this-laptop: {per_hour: 0.0}
      cpu-2core:   {per_hour: 0.096}

The calibration measures *this* machine; ``--machine KIND`` says which entry it is. A Ray
cluster of ``W`` such machines (one worker each) runs chunks in parallel without contention;
its cost is ``W · per_hour · hours``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from datamodels.base import strict_yaml
from datamodels.base.errors import UserError


@dataclass
class Prices:
    currency: str
    per_hour: dict[str, float]

    def of(self, kind: str) -> float:
        if kind not in self.per_hour:
            raise UserError(f"the price file has no machine kind {kind!r} (it lists {', '.join(self.per_hour)}): "
                            f"add it under machines:, or pass --machine with one of those")
        return self.per_hour[kind]


def load_prices(path: str | Path) -> Prices:
    """Read and validate a price file (one-line UserError naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"price file {path} does not exist: write one (see `modeldiff plan --help`)")
    try:
        data = strict_yaml.load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"price file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    machines = data.get("machines") if isinstance(data, dict) else None
    if not isinstance(machines, dict) or not machines:
        raise UserError(f"price file {path} needs a 'machines:' mapping of kind -> {{per_hour: PRICE}}")
    out = {}
    for kind, entry in machines.items():
        price = entry.get("per_hour") if isinstance(entry, dict) else None
        if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
            raise UserError(f"price file {path}: machines.{kind}.per_hour must be a number >= 0, got {price!r}")
        out[str(kind)] = float(price)
    return Prices(str(data.get("currency", "")), out)


def cost(seconds: float, per_hour: float, machines: int = 1) -> float:
    return machines * per_hour * seconds / 3600.0


def cheapest(options: list[dict], deadline_seconds: float | None) -> dict | None:
    """The cheapest of ``options`` (dicts with ``seconds`` and ``cost``) finishing by the deadline
    (ties: the faster); None when none does."""
    ok = [o for o in options if deadline_seconds is None or o["seconds"] <= deadline_seconds]
    return min(ok, key=lambda o: (o["cost"], o["seconds"])) if ok else None

"""``modeldiff checkpoint STORE --at TAG --out DIR``: the store's models at a kept checkpoint, as a new store.

``--at`` names a checkpoint the recipe kept (``epoch5``, ``train_loss0.5``, as ``keep_checkpoints``
tags them) or ``train_loss:L`` (each model's first kept checkpoint at or below ``L``). Attribution,
diagnostics and counterfactuals then run on ``DIR`` like on any store, without retraining.
"""
from __future__ import annotations

import argparse

from datamodels.base.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "checkpoint", help="a new store holding a store's models at a kept checkpoint (no retraining)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("store", help="store directory trained with keep_checkpoints")
    p.add_argument("--at", required=True,
                   help="a kept checkpoint's tag (epoch5, train_loss0.5) or train_loss:L (first kept checkpoint <= L)")
    p.add_argument("--out", required=True, help="folder of the new store")
    p.set_defaults(func=run)


def run(args) -> int:
    from datamodels.runs.checkpoints import store_at_checkpoint, tags_at_loss
    from datamodels.store.store import Store

    store = Store.open(args.store)
    at = args.at
    if at.startswith("train_loss:"):
        try:
            level = float(at.split(":", 1)[1])
        except ValueError:
            raise UserError(f"--at {at!r}: write train_loss:L with L a number, e.g. train_loss:0.5") from None
        at = tags_at_loss(store, level)
    new = store_at_checkpoint(store, args.out, at)
    s = new.summary()
    print(f"{s['done']}/{s['models']} models at {args.at}: test accuracy {100 * s['accuracy_mean']:.2f} %, "
          f"mean training loss {s['train_loss_mean']:.4g}")
    print(f"store: {new.path}")
    return 0

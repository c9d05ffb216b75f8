"""The margin: correct-class logit minus log-sum-exp of the other logits."""
from __future__ import annotations

import torch


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Margins of ``logits[..., K]`` for integer ``labels[...]``; returns ``[...]``.

    ``logit_y - logsumexp_{j != y} logit_j``; positive iff the example is classified correctly.
    """
    labels = labels.expand(logits.shape[:-1]).long()
    correct = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, labels.unsqueeze(-1), float("-inf"))
    return correct - torch.logsumexp(others, dim=-1)

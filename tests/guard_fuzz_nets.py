"""A model factory whose behaviour a test chooses (model.kwargs): the fuzzed user target."""
import torch
from torch import nn


class Fuzzed(nn.Module):
    def __init__(self, behaviour: str, num_classes: int, d: int, max_batch: int):
        super().__init__()
        self.behaviour, self.num_classes, self.max_batch = behaviour, num_classes, max_batch
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        if self.behaviour == "raise":
            raise ArithmeticError("user forward failed")
        if len(x) > self.max_batch:
            raise RuntimeError(f"batch of {len(x)} is too large for this model")
        out = self.fc(x)
        if self.behaviour == "nan":
            out = out * float("nan")
        if self.behaviour == "wrong_shape":
            out = out[:, :-1]
        if self.behaviour == "not_tensor":
            return out.tolist()
        return out


def make(behaviour: str = "ok", max_batch: int = 1 << 30, num_classes: int = 10, input_shape=(1, 8, 8)):
    if behaviour == "constructor":
        raise TypeError("user constructor failed")
    d = int(torch.tensor(input_shape).prod())
    return Fuzzed(behaviour, num_classes, d, max_batch)

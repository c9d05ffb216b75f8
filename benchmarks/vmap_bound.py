"""How far can the ``vmap`` backend get ahead of the one-model ``loop`` on this CPU? Per-model step
costs of the digits CNN (batch 32, SGD with Nesterov momentum), one thread, side by side in one run:

* ``loop step``: one model's whole training step (forward, backward, optimiser), as ``loop`` runs it;
* ``vmap step``: the same step for ``M`` stacked models under ``torch.func.vmap`` (the vmap backend's
  ``Stacked`` with its fast layers), divided by ``M``;
* ``convolutions``: the network's three 3x3 convolutions (forward + backward with a random upstream
  gradient) for ``M`` models as one grouped convolution (vmap's layout), divided by ``M``; and the same
  convolutions one model at a time (the loop's).

Whatever vmap saves, it still runs the convolutions, so ``loop step / grouped convolutions`` bounds
vmap's per-thread advantage; the wall-clock ratio is that times the cores each uses (vmap's thread
groups ~1.9 of 2, the loop ~1.15: the ``models/CPU-min`` vs ``models/min`` columns of
benchmarks/own_algorithm.py). Run on a quiet machine:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/vmap_bound.py [--models 16] [--reps 30]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from case_studies.optimizers.nets import digits_cnn  # noqa: E402
from datamodels.training.backends.vmap import Stacked  # noqa: E402

BATCH, WIDTH, SHAPE = 32, 16, (1, 8, 8)


def per_call_ms(fn, reps: int) -> float:
    """Median of ``reps`` timed calls (ms) after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def loop_step(reps: int) -> float:
    torch.manual_seed(0)
    net, x, y = digits_cnn(SHAPE, 10, WIDTH), torch.rand(BATCH, *SHAPE), torch.randint(0, 10, (BATCH,))
    opt = sgd(net.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return per_call_ms(step, reps)


def vmap_step(m: int, reps: int) -> float:
    torch.manual_seed(0)
    stacked = Stacked([digits_cnn(SHAPE, 10, WIDTH) for _ in range(m)])
    x, y = torch.rand(m, BATCH, *SHAPE), torch.randint(0, 10, (m, BATCH))
    opt = sgd([p for p in stacked.params.values() if p.requires_grad])
    stacked.base.train()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = stacked.forward(x)
        F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(m, BATCH).mean(1).sum().backward()
        opt.step()
    return per_call_ms(step, reps) / m


LAYERS = ((1, WIDTH, 8), (WIDTH, 2 * WIDTH, 8), (2 * WIDTH, 2 * WIDTH, 4))  # (C_in, C_out, H=W) of the 3 convs


def convolutions(m: int, reps: int) -> tuple[float, float]:
    """(grouped over ``m`` models, one model at a time): ms per model of the three convolutions."""
    grouped = separate = 0.0
    for c, o, h in LAYERS:
        cl = torch.channels_last
        x = torch.randn(BATCH, m * c, h, h).contiguous(memory_format=cl).requires_grad_()
        w = torch.randn(m * o, c, 3, 3).contiguous(memory_format=cl).requires_grad_()
        g = torch.randn(BATCH, m * o, h, h).contiguous(memory_format=cl)
        grouped += per_call_ms(lambda x=x, w=w, g=g: F.conv2d(x, w, None, 1, 1, 1, m).backward(g), reps) / m
        x1, w1 = torch.randn(BATCH, c, h, h, requires_grad=True), torch.randn(o, c, 3, 3, requires_grad=True)
        g1 = torch.randn(BATCH, o, h, h)
        separate += per_call_ms(lambda x1=x1, w1=w1, g1=g1: F.conv2d(x1, w1, None, 1, 1).backward(g1), reps * 4)
    return grouped, separate


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=16, help="models stacked by vmap (one thread group's share)")
    p.add_argument("--reps", type=int, default=30, help="timed steps per measurement (median reported)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    loop = loop_step(args.reps * 4)
    vm = vmap_step(args.models, args.reps)
    conv_grouped, conv_separate = convolutions(args.models, args.reps)
    print(f"digits CNN width {WIDTH}, batch {BATCH}, one thread, {args.models} models stacked; ms per model-step:")
    print(f"  loop step            {loop:7.2f}   (its convolutions, one model at a time: {conv_separate:.2f})")
    print(f"  vmap step            {vm:7.2f}   (grouped convolutions: {conv_grouped:.2f})")
    print(f"per thread: vmap / loop = {loop / vm:.2f}x now; at most {loop / conv_grouped:.2f}x if everything but the "
          f"grouped convolutions were free")
    print(f"load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

"""ModelDiff PCA benchmark: our ``ModelDiff.fit`` against the reference way.

Reference way = what MadryLab/modeldiff 1.0.1 does: L2-normalise the rows in numpy,
residual ``A − ((A·B)/(B·B))[:, None] · B`` in numpy, scikit-learn ``PCA(n_components=k)``
(default ``svd_solver="auto"``) on the residuals, explained variances in torch on the CPU
(normalise, centre, project). Ours = ``ModelDiff(k).fit(A, B)`` (same four steps).

Each side runs in a fresh child process that generates the same inputs (low-rank plus
noise, seeded) and then times one run; peak memory is the child's peak RSS increase during
that run (VmHWM reset through /proc/self/clear_refs after the inputs exist).

    python benchmarks/diff_pca.py                       # 10,000 × 50,000 float32, k = 10
    python benchmarks/diff_pca.py --n-test 1000 --n-train 5000   # quick check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_inputs(n: int, m: int, seed: int):
    """A and B share a rank-20 signal; A has 10 extra directions (decaying) B lacks; plus noise."""
    import torch
    g = torch.Generator().manual_seed(seed)
    shared_u, shared_v = torch.randn(n, 20, generator=g), torch.randn(20, m, generator=g)
    extra_u, extra_v = torch.randn(n, 10, generator=g), torch.randn(10, m, generator=g)
    shared_v *= torch.linspace(3.0, 1.0, 20)[:, None]
    extra_v *= torch.linspace(1.5, 0.6, 10)[:, None]
    out = []
    for with_extra in (True, False):
        x = torch.randn(n, m, generator=g)          # noise, std 1 per entry
        x.addmm_(shared_u, shared_v, alpha=0.5)
        if with_extra:
            x.addmm_(extra_u, extra_v, alpha=0.5)
        out.append(x.numpy())
    return out


def _peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run_reference(A, B, k):
    import torch
    from sklearn.decomposition import PCA
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    num = np.multiply(An, Bn).sum(axis=1)
    den = np.multiply(Bn, Bn).sum(axis=1)
    R = An - np.multiply((num / den).reshape(-1, 1), Bn)
    del An, Bn
    pca = PCA(n_components=k)
    pca.fit_transform(R)
    del R
    P = torch.from_numpy(pca.components_.astype(np.float32))
    variances = []
    for X in (A, B):
        X = torch.from_numpy(X)
        X = X / X.norm(dim=1).view(-1, 1)
        X = X - X.mean(axis=0)
        xw = X @ P.T
        variances.append((xw * xw).sum(0) / float(len(X)))
        del X
    return pca.components_


def run_ours(A, B, k):
    from modeldiff import ModelDiff
    md = ModelDiff(k).fit(A, B)
    return md.components_, md.n_passes_


def child(args) -> None:
    A, B = make_inputs(args.n_test, args.n_train, args.seed)
    base = _rss_bytes()
    exact = _peak_reset()
    t0 = time.perf_counter()
    if args.side == "ours":
        comps, passes = run_ours(A, B, args.k)
    else:
        comps, passes = run_reference(A, B, args.k), None
    seconds = time.perf_counter() - t0
    peak = _hwm_bytes() if exact else None
    np.save(args.save, np.asarray(comps, dtype=np.float32))
    print(json.dumps({"seconds": seconds, "peak_delta": None if peak is None else peak - base,
                      "input_bytes": A.nbytes + B.nbytes, "passes": passes}))


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--side", choices=["ours", "reference", "both"], default="both")
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side != "both":
        return child(args)
    results, comps = {}, {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("reference", "ours"):
            path = os.path.join(tmp, f"{side}.npy")
            cmd = [sys.executable, __file__, "--side", side, "--save", path, "--n-test", str(args.n_test),
                   "--n-train", str(args.n_train), "--k", str(args.k), "--seed", str(args.seed)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[side] = json.loads(out.strip().splitlines()[-1])
            comps[side] = np.load(path)
    ref, ours = results["reference"], results["ours"]
    cos = np.abs((comps["reference"].astype(np.float64) * comps["ours"]).sum(axis=1))
    gib = 2.0 ** 30
    print(f"machine: {os.cpu_count()} CPUs, torch threads {_torch_threads()}, 1-min load average "
          f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after (other jobs share the machine)")
    print(f"inputs: A, B {args.n_test} x {args.n_train} float32 "
          f"({ours['input_bytes'] / gib:.2f} GiB both), k = {args.k}")
    print(f"reference (numpy residual + sklearn PCA + torch variances): {ref['seconds']:.2f} s, "
          f"peak RSS +{ref['peak_delta'] / gib:.2f} GiB")
    print(f"ours (ModelDiff.fit, {ours['passes']} passes): {ours['seconds']:.2f} s, "
          f"peak RSS +{ours['peak_delta'] / gib:.2f} GiB")
    print(f"speed-up: {ref['seconds'] / ours['seconds']:.2f}x (needs >= 3)")
    print(f"top-{args.k} |cos| ours vs reference: min {cos.min():.5f} ({np.array2string(cos, precision=4)})")
    print(f"our peak / (2 x inputs) = {ours['peak_delta'] / (2 * ours['input_bytes']):.3f} (needs <= 1)")


if __name__ == "__main__":
    main()

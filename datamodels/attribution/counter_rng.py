"""Counter-based random signs: the same numbers on every device, computed where they are used.

A random sign is a pure function of ``(key, row, col)``: a 32-bit integer hash evaluated with
int64 torch arithmetic. Every intermediate value stays below 2**63 (32-bit operands times
multipliers below 2**31), so nothing overflows and CPU and CUDA give bit-identical results —
unlike ``torch.Generator``, whose streams differ between devices. Any block of a
``[rows, cols]`` sign matrix can be generated independently of the others, so no projection
matrix ever has to be stored.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
# Multipliers of a low-bias 32-bit integer hash (hash-prospector family); both are odd and
# below 2**31 so that a 32-bit value times either fits in int64 without overflow.
_M1 = 0x21F0AAAD
_M2 = 0x735A2D97
_GOLDEN = 0x1E3779B9  # odd multiplier (< 2**31) that spreads consecutive counters


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mix an int64 tensor of values in ``[0, 2**32)`` into another such tensor (elementwise)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK32
    return x ^ (x >> 15)


def make_key(*parts: int) -> int:
    """Fold integers (seed, model id, salt ...) into one 32-bit key, deterministically."""
    k = torch.tensor(0x5BD1E995, dtype=torch.int64)
    for p in parts:
        p = int(p)
        lo, hi = p & _MASK32, (p >> 32) & _MASK32
        k = hash32(k ^ lo)
        k = hash32(k ^ hi ^ 0x68E31DA4)
    return int(k)


def row_keys(key: int, start: int, stop: int, device) -> torch.Tensor:
    """Per-row keys ``[stop - start]`` int64 for rows ``start .. stop-1`` (any row < 2**62)."""
    rows = torch.arange(start, stop, dtype=torch.int64, device=device)
    h = hash32((rows & _MASK32) ^ key)
    return hash32(h ^ ((rows >> 32) * _GOLDEN))


def signs(keys: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """±1 of the given dtype from hashed keys (one bit of a further mixing round)."""
    bit = (hash32(keys ^ 0x2545F491) >> 7) & 1
    return (bit * 2 - 1).to(dtype)


def sign_block(key: int, row_start: int, row_stop: int, n_cols: int, device,
               dtype=torch.float32) -> torch.Tensor:
    """Rows ``row_start:row_stop`` of the ``[∞, n_cols]`` Rademacher matrix of ``key``.

    Returns ``[row_stop - row_start, n_cols]`` with entries ±1, identical on every device.
    Each 32-bit hash of (row, column word) supplies the signs of 32 consecutive columns.
    """
    rk = row_keys(key, row_start, row_stop, device)  # [R]
    n_words = -(-n_cols // 32)
    ck = hash32(torch.arange(n_words, dtype=torch.int64, device=device) * _GOLDEN + 0x3C6EF372)
    words = hash32(hash32(rk[:, None] ^ ck[None, :]) ^ 0x2545F491)  # [R, W]
    shifts = torch.arange(32, dtype=torch.int64, device=device)
    bits = (words[:, :, None] >> shifts) & 1  # [R, W, 32]
    out = bits.reshape(rk.shape[0], n_words * 32)[:, :n_cols].to(dtype)
    return out.mul_(2).sub_(1)


def sign_vector(key: int, start: int, stop: int, device, dtype=torch.float32) -> torch.Tensor:
    """``[stop - start]`` independent ±1 values for positions ``start .. stop-1`` of ``key``."""
    return signs(row_keys(key, start, stop, device), dtype)

"""TRAK scores (Park et al. 2023) from a few trained models, in traker's conventions.

For each model ``m``: ``Φ_m = P_m ∇θ f(z) / sqrt(n_params)`` (projected margin gradients,
:mod:`datamodels.attribution.gradients`), ``F_m = Φ_train,m K_m`` with ``K_m = (Φ_train,mᵀ Φ_train,m + λI)⁻¹``
scaled by ``1 / mean|K_m|`` (traker's ``BasicScoreComputer``; set ``normalize_kernel=False`` to
skip that per-model scale), ``Q_m = 1 − p_m(y | x)`` on train examples. Scores::

    scores[n_test, n_train] = (1/M Σ_m Φ_test,m F_mᵀ) * (1/M Σ_m Q_m)[None, :]

exactly as ``TRAKer.finalize_scores`` (which returns the transpose); ``out_to_loss=False`` drops the
``Q`` factor (``docs/discovery.md`` shows where that matters). Scores are produced in test
blocks and handed to a writer (e.g. :class:`datamodels.attribution.influence_io.InfluenceWriter`), so the
full matrix never sits in memory twice; per-model features spill to disk when large.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from datamodels.attribution.feature_bank import FeatureBank
from datamodels.attribution.gradients import featurize, n_params, resolve_model_output
from datamodels.attribution.names import IDENTITY, PROJECTORS
from datamodels.attribution.projectors import is_projector, make_projector, projector_params
from datamodels.base.errors import UserError
from datamodels.base.progress import progress_bar
from datamodels.registry import is_target, record


@dataclass
class TrakSettings:
    """Hyper-parameters of :class:`TRAK` (recorded as ``method_params``)."""

    proj_dim: int | str | None = "auto"  # JL dimension k; "auto" = auto_proj_dim(n_train);
    # None = no projection (exact TRAK)
    projector: object = "auto"  # auto | sketch | rademacher | identity | fast_jl | an import target
    # "pkg.mod:MyProjector" | a Projector class, factory or object (its proj_dim then sets k)
    proj_seed: int = 0  # seed of the projection matrices (one per model id)
    sketch_dim: int | None = None  # SketchProjector's fold size; None = 8 k
    lambda_reg: float = 0.0  # ridge added to ΦᵀΦ before inversion (traker's lambda_reg)
    normalize_kernel: bool = True  # divide each K_m by mean|K_m| as traker does
    batch_size: int = 64  # examples per per-example-gradient call
    test_block: int = 1024  # test rows scored (and written) at once
    train_block: int = 65536  # train columns per score matmul
    memory_budget_bytes: int = 2 << 30  # per-model features above this total spill to disk
    model_output: object = "margin"  # "margin" (classification margin, traker's default), an import
    # target "pkg.mod:Output", or a ModelOutput / function (model, batch) -> (f, Q), or the older
    # (out, y) forms: see gradients.py
    out_to_loss: bool = True  # multiply each training column by the mean over models of Q = 1 − p(y | x)
    # (TRAK's and traker's out-to-loss term); False: the kernel product alone, which keeps the training
    # examples a model fits so easily (e.g. through a shortcut) that their loss gradient, hence Q, vanishes

    def __post_init__(self):
        if self.proj_dim != "auto" and self.proj_dim is not None and (
                not isinstance(self.proj_dim, int) or self.proj_dim <= 0):
            raise ValueError(f"proj_dim must be a positive integer, 'auto' or None, got {self.proj_dim!r}")
        if self.lambda_reg < 0:
            raise ValueError(f"lambda_reg must be >= 0, got {self.lambda_reg}")
        if not isinstance(self.out_to_loss, bool):
            raise ValueError(f"out_to_loss must be true or false, got {self.out_to_loss!r}")
        p = self.projector
        if isinstance(p, str) and p not in PROJECTORS and p != IDENTITY and not is_target(p):
            raise ValueError(f"projector must be one of {', '.join(PROJECTORS)} (or {IDENTITY}) or an import target "
                             f"'pkg.mod:Projector', got {p!r}")
        if not isinstance(p, str) and not callable(p) and not callable(getattr(p, "project", None)):
            raise ValueError(f"projector must be a name, a Projector class or factory, or a projector object; "
                             f"got {type(p).__name__}")
        for name in ("batch_size", "test_block", "train_block"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def check_proj_dim(k: int, lambda_reg: float, n_train: int, auto: bool = False) -> None:
    """Refuse ``k`` projected features with ``n_train`` training examples and no ridge: ΦᵀΦ is then
    singular (checked by a study and ``attribute`` before any work, and by TRAK itself)."""
    if k >= n_train and lambda_reg == 0:
        fix = ("set lambda_reg > 0 (the automatic k is already the smallest it chooses)" if auto
               else "use a projection dimension below n_train (proj_dim='auto' chooses n_train / 4) or "
                    "lambda_reg > 0")
        raise UserError(f"TRAK with k={k} features and only {n_train} training examples: ΦᵀΦ is singular: {fix}")


def auto_proj_dim(n_train: int) -> int:
    """Default k: the power of two <= n_train / 4, capped at 2048 (traker's default).

    ``ΦᵀΦ [k, k]`` has rank <= n_train, so k must stay well below n_train: at k = n/4 its
    smallest eigenvalue is still ~(1 − sqrt(k/n))² = 1/4 of the average (Marchenko–Pastur).
    """
    return int(min(2048, 2 ** max(3, math.floor(math.log2(max(n_train // 4, 8))))))


def kernel_features(phi: torch.Tensor, lambda_reg: float = 0.0,
                    normalize: bool = True) -> torch.Tensor:
    """``F[n, k] = Φ (ΦᵀΦ + λI)⁻¹`` (optionally ÷ mean|inverse|); the inverse in float64."""
    xtx = phi.T.double() @ phi.double()
    xtx += lambda_reg * torch.eye(xtx.shape[0], dtype=xtx.dtype, device=xtx.device)
    inv = torch.linalg.inv(xtx)
    if normalize:
        inv /= inv.abs().mean()
    return phi @ inv.to(phi.dtype)


class TRAK:
    """Front class: ``TRAK(**settings).run(models, x_train, y_train, x_test, y_test, write)``.

    ``models`` yields ``(model_id, model)`` pairs: one-model nets (M = 1) already on ``device``
    in eval mode; ``model_id`` seeds the projection (use the store index).
    """

    def __init__(self, *, device="cpu", dtype=torch.float32, progress: bool = True,
                 **settings):
        self.settings = TrakSettings(**settings)
        self.device, self.dtype, self.progress = torch.device(device), dtype, progress
        self.model_output, self.model_output_name_ = resolve_model_output(self.settings.model_output)

    def params(self) -> dict:
        settings = {f.name: getattr(self.settings, f.name) for f in fields(self.settings)}
        proj = settings["projector"]
        if not isinstance(proj, str):
            settings["projector"] = record(type(proj) if is_projector(proj) else proj)
        out = {"method": "trak", **settings, "model_output": self.model_output_name_}
        if hasattr(self, "proj_dim_"):
            out["proj_dim"] = self.proj_dim_
        return out

    def _per_model(self, model: nn.Module, model_id: int, x_train, y_train, x_test, y_test):
        s = self.settings
        model = model.to(device=self.device, dtype=self.dtype).eval()
        p = n_params(model)
        kind = "identity" if s.proj_dim is None else s.projector
        k = p if s.proj_dim is None else self.proj_dim_
        check_proj_dim(k, s.lambda_reg, x_train.shape[0], auto=s.proj_dim == "auto")
        proj = make_projector(kind, p, k, s.proj_seed, self.device, s.sketch_dim)
        self.projector_params_ = projector_params(proj)
        bar = f"model {model_id}: train" if self.progress else False
        phi_tr, q = featurize(model, x_train, y_train, proj, model_id, batch_size=s.batch_size,
                              progress=bar, model_output=self.model_output)
        feats = kernel_features(phi_tr, s.lambda_reg, s.normalize_kernel)
        del phi_tr
        phi_te, _ = featurize(model, x_test, y_test, proj, model_id, batch_size=s.batch_size,
                              with_q=False, progress=bar and f"model {model_id}: test",
                              model_output=self.model_output)
        return feats, phi_te, q

    def run(self, models: Iterable[tuple[int, nn.Module]], x_train, y_train, x_test, y_test,
            write: Callable[[int, np.ndarray], None] | None = None, n_models: int | None = None) -> np.ndarray | None:
        """Score every test example against every train example.

        Args:
            x_train: ``[n_train, *input_shape]``, y_train ``[n_train]``; x_test, y_test likewise.
            write: ``write(start, block[rows, n_train] float32)`` receives the scores in test
                blocks (e.g. ``InfluenceWriter.write_rows``); when None the scores are returned.
            n_models: how many models ``models`` yields (``len(models)`` when it has one): the
                features are then held in one preallocated block (:mod:`.feature_bank`).
        Returns:
            ``scores[n_test, n_train]`` float32 when ``write`` is None, else None.
        """
        if n_models is None and hasattr(models, "__len__"):
            n_models = len(models)
        bank = FeatureBank(n_models, self.settings.memory_budget_bytes)
        q_sum = None
        pd = self.settings.proj_dim
        self.proj_dim_ = auto_proj_dim(x_train.shape[0]) if pd == "auto" else pd
        if is_projector(self.settings.projector) and pd is not None:  # an object brings its own k
            self.proj_dim_ = int(self.settings.projector.proj_dim)
        try:
            for model_id, model in models:
                f, t, q = self._per_model(model, int(model_id), x_train, y_train, x_test, y_test)
                q_sum = q.double() if q_sum is None else q_sum + q.double()
                bank.add(f, t)
                del f, t
            if not bank.count:
                raise ValueError("TRAK needs at least one model")
            self.n_models_ = bank.count
            self.q_mean_ = (q_sum / bank.count).to(self.dtype)
            if not self.settings.out_to_loss:  # the scores (and TrakGroups' q) without the out-to-loss term
                self.q_mean_ = torch.ones_like(self.q_mean_)
            return self._scores(bank.pairs(), write)
        finally:
            bank.close()

    def _scores(self, pairs, write):
        s, dev = self.settings, self.device
        n_test, n_train, m = pairs[0][1].shape[0], pairs[0][0].shape[0], len(pairs)
        out = None if write else np.empty((n_test, n_train), np.float32)
        blocks = progress_bar(range(0, n_test, s.test_block), desc="TRAK scores", leave=False, progress=self.progress)
        q = self.q_mean_.to(dev)
        for t0 in blocks:
            t1 = min(n_test, t0 + s.test_block)
            acc = torch.zeros(t1 - t0, n_train, dtype=self.dtype, device=dev)
            for f, t in pairs:
                tb = _dev(t[t0:t1], dev)
                for c0 in range(0, n_train, s.train_block):
                    c1 = min(n_train, c0 + s.train_block)
                    acc[:, c0:c1] += tb @ _dev(f[c0:c1], dev).T
            block = (acc / m * q[None, :]).float().cpu().numpy()
            if write:
                write(t0, block)
            else:
                out[t0:t1] = block
        return out


def _dev(a, device) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a)).to(device)


"""Everything a study can check before it trains a single model.

:func:`validate_study` runs in seconds (no model is built) and raises one-line
:class:`~datamodels.base.errors.UserError` s for: sizes and counts out of range, attribution settings
(``check_settings`` of the estimator, TRAK models vs trained models, null-calibration groups),
counterfactual transform specs (each transform and each swept patch size is applied to two real
test inputs, so a patch larger than the image or a user transform that changes the shape is
refused here, not after training), search settings, families and extra candidates, the test-row choices, and the
output folder (writable, room for both stores' arrays).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from datamodels.base.errors import UserError
from modeldiff.counterfactual.library import FAMILIES as SEARCH_FAMILIES  # one list, kept with the candidates


def validate_study(cfg, data, out=None, method: str | None = None) -> None:
    """Refuse a study that would fail after training (see the module docstring).

    Args:
        cfg: the :class:`~modeldiff.studies.config.StudyConfig`.
        data: the study's :class:`~datamodels.data.dataset.Dataset` (``x_test[n, *input_shape]``).
        out: the output folder (checked for writability and free space) or ``None``.
        method: the attribution method overriding the study's, or ``None``.
    """
    _check_counts(cfg)
    _check_attribution(cfg, method or cfg.attribution.method)
    if (method or cfg.attribution.method) == "trak" and isinstance(cfg.attribution.proj_dim, int):
        from datamodels.attribution.trak import check_proj_dim

        check_proj_dim(cfg.attribution.proj_dim, 0.0, data.n_train)  # before training, not after
    image = getattr(data, "is_image", True)
    probe = data.x_test[:2]
    _check_counterfactual(cfg, probe, image, data.num_classes)
    if cfg.search.enabled:
        _check_search(cfg, probe, image, data.num_classes)
    if out is not None:
        _check_out(cfg, data, Path(out))


def _positive(value, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"study key {name} must be an integer >= {minimum}, got {value!r}")


def _check_counts(cfg) -> None:
    _positive(cfg.models, "models", 2)
    _positive(cfg.components, "components")
    _positive(cfg.ensemble_size, "ensemble_size")
    if not 0 < cfg.subset_fraction <= 1:
        raise UserError(f"study key subset_fraction must be in (0, 1], got {cfg.subset_fraction}")


def _check_attribution(cfg, method) -> None:
    from datamodels.attribution.methods import method_name, resolve_method

    m = resolve_method(method)
    name = method_name(method, m)
    params, n_models = m.study_params(cfg.attribution)
    if n_models is not None:
        _positive(n_models, "attribution.models")
        if n_models > cfg.models:
            raise UserError(f"attribution.models ({n_models}) exceeds the models trained per algorithm "
                            f"({cfg.models}): lower attribution.models or raise models")
        units = n_models
    else:
        if cfg.models < m.min_models:
            raise UserError(f"{name} attribution needs at least {m.min_models} models per algorithm, the study trains "
                            f"{cfg.models}: raise models (datamodels needs hundreds to be useful) or use trak")
        units = cfg.models
    m.check(params)
    ns = cfg.calibration
    if ns.enabled:
        # 4 null fits per split; a component can be beyond null only when (1 - level)(1 + 4 splits) >= 1
        least = math.ceil((1 / (1 - ns.level) - 1) / 4 - 1e-9)
        if ns.splits < least:
            raise UserError(f"calibration.splits {ns.splits} gives {4 * ns.splits} null fits, too few for "
                            f"calibration.level {ns.level} (no component could ever be beyond null): use "
                            f"calibration.splits >= {least}")
        parts = 4 if ns.estimator == "crossfit" else 2  # the cross-fitted null splits into quarters
        need = parts * max(1, int(m.min_models))  # each part must be attributable on its own
        if units < need:
            raise UserError(f"the null calibration splits each algorithm's {'attribution ' if n_models else ''}"
                            f"models into {'quarters' if parts == 4 else 'halves'} and needs at least {need}, got "
                            f"{units}: raise "
                            f"{'attribution.models' if n_models else 'models'} or set calibration.enabled: "
                            "false")


def _check_counterfactual(cfg, probe: torch.Tensor, image: bool, n_classes: int) -> None:
    spec = cfg.counterfactual
    _positive(spec.auto_candidates, "counterfactual.auto_candidates", 0)
    _positive(spec.top_k, "counterfactual.top_k")
    _positive(spec.n_test, "counterfactual.n_test")
    _positive(spec.bootstrap, "counterfactual.bootstrap")
    for s in spec.sizes:
        _positive(s, "counterfactual.sizes entry")
    _check_rows(spec.rows, "counterfactual.rows")
    check_transform_list(cfg, spec.transforms, "counterfactual.transforms", probe, image, n_classes, spec.sizes)


def _check_rows(rows, key: str) -> None:
    if not (rows == "all" or isinstance(rows, str) or (isinstance(rows, list) and len(rows) == 2
                                                         and all(isinstance(v, int) and v >= 0 for v in rows))):
        raise UserError(f"{key} must be all, a row-set name or [start, stop), got {rows!r}")


def check_transform_list(cfg, items, key: str, probe: torch.Tensor, image: bool, n_classes: int, sizes=()) -> None:
    """Each transform of the study list ``key`` parsed and applied to two real inputs (one line on failure)."""
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.counterfactual.user_transform import is_user_spec, user_transform

    if not isinstance(items, list):
        raise UserError(f"{key} must be a list, got {items!r}")
    for item in items:
        if is_user_spec(item):
            try:
                transform, target = user_transform(item, cfg.folder or None)
            except UserError:
                raise
            except (ValueError, TypeError) as err:  # e.g. a target_class that is not an integer
                raise UserError(f"counterfactual transform {item!r}: {err}") from None
            _dry_run(transform, probe, item)
            if target is not None and not 0 <= target < n_classes:
                raise UserError(f"counterfactual transform {item!r}: target_class {target} is not a class "
                                f"(0..{n_classes - 1})")
            continue
        if not isinstance(item, str):
            raise UserError(f"counterfactual transform {item!r}: give a spec like 'patch:size=3' or 'pkg.mod:fn'")
        try:
            transform = parse_transform(item, seed=cfg.counterfactual.seed)
        except (ValueError, TypeError) as err:
            raise UserError(f"counterfactual transform {item!r}: {err}") from None
        if not image:
            continue  # image-only transforms are skipped on other data (the study says so)
        _dry_run(transform, probe, item)
        if sizes and "size" in transform.params:
            for size in sizes:
                _dry_run(transform.with_params(size=size), probe, f"{item} at counterfactual.sizes {size}")


def check_transforms(transforms, x: torch.Tensor, sizes=()) -> None:
    """Apply each transform, and each patch transform at each of ``sizes``, to two inputs of ``x``
    (``[n, *input_shape]``): a transform that cannot run on these inputs (e.g. a patch larger than
    the image) is refused in one line before any model is loaded."""
    probe = x[:2]
    for t in transforms:
        _dry_run(t, probe, repr(t))
        if sizes and hasattr(t, "with_params") and "size" in getattr(t, "params", {}):
            for size in sizes:
                _dry_run(t.with_params(size=size), probe, f"{t!r} at size {size}")


def _dry_run(transform, probe: torch.Tensor, what) -> None:
    """Apply ``transform`` to two real inputs; any failure is one line naming the spec."""
    try:
        out = transform(probe.clone())
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a transform that cannot run on this data: say which and why
        first = (str(err).splitlines() or [""])[0][:200]
        raise UserError(f"counterfactual transform {what!r} cannot be applied to this study's inputs "
                        f"{tuple(probe.shape[1:])}: {first}") from None
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise UserError(f"counterfactual transform {what!r} must return a tensor of its input's shape "
                        f"{tuple(probe.shape)}")


def _check_search(cfg, probe: torch.Tensor, image: bool, n_classes: int) -> None:
    from modeldiff.counterfactual.library import as_candidates, generic_candidates

    sp = cfg.search
    unknown = sorted(set(map(str, sp.families)) - set(SEARCH_FAMILIES))
    if unknown:
        raise UserError(f"search.families: unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                        f"choose from {', '.join(SEARCH_FAMILIES)}")
    from modeldiff.counterfactual.search import check_search_values

    check_search_values(alpha=sp.alpha, n_inputs=sp.n_inputs, n_confirm=sp.n_confirm, n_resamples=sp.n_resamples,
                        screen_keep=sp.screen_keep, screen_models=sp.screen_models,
                        classes_per_transform=sp.classes_per_transform, name=lambda key: f"search.{key}")
    _positive(sp.models, "search.models", 2)
    _positive(sp.overlays, "search.overlays", 0)
    _check_rows(sp.rows, "search.rows")
    check_transform_list(cfg, sp.transforms, "search.transforms", probe, image, n_classes)
    if not isinstance(sp.exclude, list):
        raise UserError(f"search.exclude must be a list of transform specs or reprs, got {sp.exclude!r}")
    if cfg.models < 4:
        raise UserError(f"the search splits each algorithm's models into discovery and confirmation halves and "
                        f"needs at least 4 models per algorithm, the study trains {cfg.models}: raise models or set "
                        "search.enabled: false")
    if image:
        try:
            cands = generic_candidates(probe.shape[1:], families=sp.families or None, seed=sp.seed)
            cands = [t for t, _ in as_candidates(cands)]
        except (ValueError, TypeError) as err:
            raise UserError(f"search: {err}") from None
        for t in cands:
            _dry_run(t, probe, f"search candidate {t!r}")


def _check_out(cfg, data, out: Path) -> None:
    from datamodels.store.store import array_spec
    from modeldiff.checks import check_free_space, check_output

    check_output(out, "--out", folder=True, may_exist=True)
    spec = array_spec(cfg.models, data.n_train, data.n_test, data.num_classes, True)
    need = 2 * sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in spec.values())
    existing = [out / f"store_{t}" for t in "ab" if (out / f"store_{t}" / "metadata.json").is_file()]
    if not existing:
        check_free_space(out, need, "the study's two stores")

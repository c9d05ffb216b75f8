"""modeldiff: compare learning algorithms by the training data their models rely on."""
__version__ = "0.1.0"

# Public names, imported lazily (PEP 562) so that `import modeldiff` or the CLI's start-up
# does not pay for torch.
_EXPORTS = {
    "ModelDiff": "modeldiff.diff.residual_pca",
    "Subpopulation": "modeldiff.diff.subpopulations",
    "subpopulations": "modeldiff.diff.subpopulations",
    "counterfactual_effects": "modeldiff.counterfactual.effects",
    "patch_size_sweep": "modeldiff.counterfactual.effects",
    "store_predictor": "modeldiff.counterfactual.effects",
    "write_report": "modeldiff.report",
    "load_scores": "modeldiff.diff.io_scores",
    "Algorithm": "modeldiff.api",
    "compare": "modeldiff.api",
    "ModelSet": "datamodels.modelset",
    "Dataset": "datamodels.data.dataset",
    "UserError": "datamodels.base.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'modeldiff' has no attribute {name!r}")

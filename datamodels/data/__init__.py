"""Data: datasets as tensors with labels, class names and an identity hash.

Contract: :class:`Dataset` (any per-example shape), :func:`load_dataset` (built-in names or a
user target ``"pkg.mod:load"``). Image pipelines (CIFAR-10 folders, FFCV) live beside it.
"""
__all__ = ["Dataset", "load_dataset", "load_digits"]


def __getattr__(name: str):
    """Public names imported lazily (PEP 562): ``datamodels.data.names`` stays torch-free."""
    if name in __all__:
        from datamodels.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'datamodels.data' has no attribute {name!r}")

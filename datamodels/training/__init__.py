"""Training: recipes (typed YAML), models, trainer backends and the FFCV loader.

Contract: a :class:`~datamodels.training.recipe.Recipe` says how to train; a trainer backend
trains ``M`` models, model ``i`` on ``masks[i]`` from ``seeds[i]`` alone. Filling a
:class:`datamodels.store.Store` with them is one layer up, in :mod:`datamodels.runs`.
"""

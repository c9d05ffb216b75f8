"""Training: recipes (typed YAML), models, trainer backends and launchers that fill a store.

Contract: a :class:`~datamodels.training.recipe.Recipe` says how to train; a trainer backend
trains ``M`` models, model ``i`` on ``masks[i]`` from ``seeds[i]`` alone; launchers
(:mod:`datamodels.runs.launchers`) decide where; rows are committed to a
:class:`datamodels.store.Store`.
"""

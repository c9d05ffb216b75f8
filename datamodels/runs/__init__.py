"""Filling a store: the layer above training and store (it needs both).

A store's pending models are split into ensembles (:func:`~datamodels.runs.runner.plan_chunks`), each
trained by the recipe's trainer backend and committed row by row
(:func:`~datamodels.runs.runner.train_chunk`); launchers decide where chunks run
(:func:`~datamodels.runs.launchers.fill_store`: this process, local worker processes, or Ray tasks);
:mod:`~datamodels.runs.names` is the torch-free launcher registry.
"""

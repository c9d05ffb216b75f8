"""Plan before you spend: predict time, memory, disk, cost and the number of models a study needs.

Stages of a prediction, each in its own file:

* :mod:`~modeldiff.plan.scaling` — per-chunk training time as a function of ensemble size and
  of the number of parallel workers (parallel efficiency measured, never assumed linear);
* :mod:`~modeldiff.plan.calibrate` — the short calibration run that measures those times (and
  peak memory, weights size, per-example gradient, regression, diff and forward-pass costs)
  with the study's real recipes on this machine;
* :mod:`~modeldiff.plan.predict` — the full study's stages (train, attribute, diff,
  counterfactual) from the calibration, with intervals;
* :mod:`~modeldiff.plan.learning_curve` — statistical efficiency: LDS as a function of the
  number of models, fitted on a pilot store, inverted for a target LDS;
* :mod:`~modeldiff.plan.prices` — cost from a user's price file and the cheapest
  configuration meeting a deadline.
"""

"""Plan before you spend: a short calibration on this machine, then every stage's time, memory and disk.

One module per stage measures that stage with its own code and predicts it at full size
(:mod:`.training`, :mod:`.attribution`, :mod:`.analysis` — diff, null, search, counterfactual —,
:mod:`.figures`, :mod:`.diagnostics`); :mod:`.planner` runs them for a study or a recipe;
:mod:`.curve` is the one statistical model (averages of per-model attributions) behind ``--pilot``.
"""

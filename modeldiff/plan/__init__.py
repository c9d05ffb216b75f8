"""Plan before you spend: :mod:`.planner` calibrates each stage on this machine with the stage's own code (one
module per stage: :mod:`.training`, :mod:`.attribution`, :mod:`.analysis`, :mod:`.figures`, :mod:`.diagnostics`)
and predicts its time, memory and disk; :mod:`.curve` is the one statistical model behind ``--pilot``."""

"""A user's study hooks (import targets named in a study YAML), for tests/test_study_hooks.py."""
import numpy as np

from modeldiff.studies.hooks import StudyInputs

CALLS = []


def setup(cfg, data, recipes, out, device, rows=4, lr=None):
    CALLS.append(("setup", rows, lr))
    if lr is not None:
        recipes = tuple(r.replace(**{"optim.lr": lr}) for r in recipes)
    return StudyInputs(recipes=recipes, row_sets={"first": np.arange(rows)}, search_exclude=["from setup"])


def runner(cfg, out, device, data_dir, method, greeting="hi"):
    CALLS.append(("runner", greeting, str(out)))
    return {"greeting": greeting}


def not_inputs(cfg, data, recipes, out, device):
    return {"recipes": recipes}

"""Property-based fuzzing of the CLI (Hypothesis; bounded examples, derandomized = a fixed seed):
for generated recipes and argument lists, valid and invalid, every command exits 0 or 2, never
with a traceback, prints at most one ``error:`` line, and touches no file outside its ``--out``."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.integrity_helpers import error_lines, make_store, run_cli, tree_digest

pytestmark = pytest.mark.slow  # fuzzing: runs in the full suite, not the developer loop


FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished store, a scores file, a plain file and a folder of outputs."""
    root = tmp_path_factory.mktemp("fuzz")
    store = make_store(root, models=4, ensemble=2, save_weights=2)
    scores = root / "scores.h5"
    code, _, err = run_cli("attribute", store, "--out", scores, "--quiet", "--proj-dim", "16")
    assert code == 0, err
    (root / "plain.txt").write_text("not a store\n")
    (root / "outs").mkdir()
    return root, store, scores


def _path(root: Path, store: Path, scores: Path):
    return st.sampled_from([str(store), str(scores), str(root / "plain.txt"), str(root / "missing"),
                            str(root / "plain.txt" / "under"), str(root), ""])


def _out(root: Path):
    return st.sampled_from(["new", "plain.txt", "plain.txt/under", "", "deep/a/b"]).map(
        lambda name: str(root / "outs" / name) if name not in ("plain.txt", "plain.txt/under")
        else str(root / name))


NUMS = st.sampled_from(["0", "-1", "1", "2", "3", "1.5", "nan", "abc", "1e9", ""])
DEVICES = st.sampled_from(["cpu", "gpu", "cuda", "cuda:7", "mps", "", "cpu:0", "tpu"])


@st.composite
def argv(draw, root, store, scores):
    path, out = _path(root, store, scores), _out(root)
    cmd = draw(st.sampled_from(["attribute", "lds", "diff", "counterfactual", "verify", "train"]))
    if cmd == "attribute":
        args = [cmd, draw(path), "--out", draw(out), "--quiet"]
        opts = {"--method": st.sampled_from(["trak", "datamodels", "x"]), "--models": NUMS, "--device": DEVICES,
                "--proj-dim": st.sampled_from(["16", "0", "-3", "auto", "x"]), "--batch-size": NUMS,
                "--lambda-reg": NUMS, "--n-lambdas": NUMS, "--val-fraction": NUMS}
    elif cmd == "lds":
        args = [cmd, draw(path), "--against", draw(path)]
        opts = {"--bootstrap": NUMS, "--seed": NUMS}
    elif cmd == "diff":
        args = [cmd, draw(path), draw(path), "--out", draw(out)]
        opts = {"--components": NUMS, "--device": DEVICES, "--top": NUMS, "--names": st.sampled_from(["A,B", "A", ","]),
                "--solver": st.sampled_from(["auto", "full", "nope"])}
    elif cmd == "counterfactual":
        args = [cmd, "--store-a", draw(path), "--store-b", draw(path), "--out", draw(out),
                "--transform", draw(st.sampled_from(["patch:pattern=texture,size=2,loc=random", "patch:size=99",
                                                     "blur:sigma=1", "nope:x=1", "patch:size=-1", ""])),
                "--target-class", draw(st.sampled_from(["0", "9", "10", "-1", "cat"])),
                "--max-inputs", "8", "--n-resamples", "50"]
        opts = {"--device": DEVICES, "--models": NUMS, "--level": NUMS,
                "--sizes": st.sampled_from(["2,3", "0", "x", "40"])}
    elif cmd == "verify":
        args = [cmd, draw(path)]
        opts = {"--workers": NUMS, "--device": DEVICES}
    else:
        recipes = [str(root / "tiny.yaml"), str(root / "plain.txt"), str(root / "missing.yaml")]
        args = [cmd, draw(st.sampled_from(recipes)),
                "--out", draw(out), "--models", "2", "--ensemble-size", "2"]
        opts = {"--device": DEVICES, "--subset-fraction": NUMS, "--workers": st.sampled_from(["1", "0", "-2"]),
                "--save-weights": st.sampled_from(["-1", "0", "1"])}
    for flag, values in opts.items():
        if draw(st.booleans()):
            args += [flag, draw(values)]
    return args


def _outside(root: Path, args) -> dict:
    """Digest of everything under ``root`` except the command's --out."""
    outs = {Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--out" and args[i + 1]}
    return {k: v for k, v in tree_digest(root).items()
            if not any((root / k) == o or o in (root / k).parents for o in outs)}


def _check(code, out, err, args):
    assert code in (0, 2), (args, code, err[-2000:])
    assert "Traceback" not in err, (args, err[-2000:])
    if code == 2:
        assert len(error_lines(err)) <= 1, (args, err)


@FUZZ
@given(data=st.data())
def test_cli_arguments(world, data):
    root, store, scores = world
    args = data.draw(argv(root, store, scores))
    before = _outside(root, args)
    code, out, err = run_cli(*args)
    _check(code, out, err, args)
    assert _outside(root, args) == before, args


RECIPE_VALUES = {
    "epochs": st.sampled_from([1, 0, -1, 1.5, "one", None]),
    "batch_size": st.sampled_from([64, 0, -5, "x"]),
    "model": st.sampled_from([{"arch": "digits_cnn", "width": 4}, {"arch": "digits_cnn", "width": 0},
                              {"arch": "nope"}, {"target": "no.such:thing"}, "digits_cnn", 7]),
    "optim": st.sampled_from([{"lr": 0.05}, {"lr": float("nan")}, {"lr": -1}, {"lr": "fast"}, {"lr": float("inf")},
                              {"name": "adam", "lr": 1e-3}, {"name": "nope"}, {"lrr": 1}, []]),
    "data": st.sampled_from([{"name": "digits"}, {"name": "nope"}, {"name": "digits", "per_class_train": 5},
                             {"target": "no.such:load"}, "digits"]),
    "loss": st.sampled_from(["cross_entropy", "no.such:loss", 3]),
    "unknown_key": st.sampled_from([1, "x"]),
}


@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(keys=st.dictionaries(st.sampled_from(sorted(RECIPE_VALUES)), st.just(None), max_size=4), data=st.data(),
       raw=st.one_of(st.none(), st.sampled_from(["", "{", "- a\n- b", "epochs: [", "\x00\x01", "42"])))
def test_generated_recipes(tmp_path_factory, keys, data, raw):
    root = tmp_path_factory.mktemp("recipe")
    recipe = {"name": "fuzz", "model": {"arch": "digits_cnn", "width": 4}, "epochs": 1, "batch_size": 64}
    for key in keys:
        recipe[key] = data.draw(RECIPE_VALUES[key])
    file = root / "r.yaml"
    file.write_text(raw if raw is not None else yaml.safe_dump(recipe))
    before = tree_digest(root)
    code, out, err = run_cli("train", file, "--out", root / "out", "--models", 2, "--ensemble-size", 2)
    _check(code, out, err, recipe)
    assert {k: v for k, v in tree_digest(root).items() if not k.startswith("out")} == before
    if code == 2:
        assert not (root / "out").exists() or not any((root / "out").iterdir()) \
            or (root / "out" / "metadata.json").is_file()
    else:
        status = np.load(root / "out" / "status.npy")
        assert status.tolist() in ([1, 1], [2, 2], [1, 2], [2, 1])


# -- study YAMLs, `plan` and `diagnose` argument lists ------------------------------------------------

class WouldWork(Exception):
    """Raised where a command that passed every check would start its expensive work (training,
    calibration, a pilot fit): the fuzz tests stop there, so they stay fast."""


def _stop(*_a, **_k):
    raise WouldWork


def _run_stopped(*args):
    """``run_cli`` that also reports ``WouldWork`` as exit code ``None`` (validation passed)."""
    try:
        return run_cli(*args)
    except WouldWork:
        return None, "", ""


STUDY_VALUES = {
    "models": st.sampled_from([4, 2, 1, 0, -1, "x", 1.5, 10 ** 12]),
    "subset_fraction": st.sampled_from([0.5, 0.0, 1.5, "half"]),
    "components": st.sampled_from([2, 0, -1]),
    "ensemble_size": st.sampled_from([2, 0]),
    "seed": st.sampled_from([0, -1, "s"]),
    "attribution": st.sampled_from([{"method": "trak", "models": 2, "proj_dim": 16}, {"method": "datamodels"},
                                    {"method": "nope"}, {"models": 99}, {"proj_dim": -3}, {"proj_dim": "big"},
                                    {"batch_size": 0}, {"lambdas": 0}, {"unknown": 1}, "trak"]),
    "counterfactual": st.sampled_from([
        {"transforms": ["patch:pattern=texture,size=2"]}, {"transforms": ["patch:size=40"]},
        {"transforms": ["nope:x=1"]}, {"transforms": ["blur:sigma=x"]}, {"transforms": "patch:size=2"},
        {"transforms": ["patch:size=2"], "sizes": [2, 99]}, {"sizes": [0]}, {"n_test": 0}, {"top_k": -1},
        {"transforms": [{"target": "no.such:fn"}]}, {"transforms": [{"target": "os.path:join", "bad": 1}]},
        {"transforms": [{"target": "torch:neg", "target_class": "cat"}]}, {"transforms": [3]}]),
    "calibration": st.sampled_from([{"splits": 5, "groups": 2}, {"splits": 1}, {"splits": 2}, {"level": 1.5},
                                    {"enabled": False}, {"groups": "x"}]),
    "search": st.sampled_from([{"families": ["blur"]}, {"families": ["nope"]}, {"alpha": 0}, {"n_confirm": 0},
                               {"models": 1}, {"n_inputs": 1}, {"enabled": False}, {"families": "blur"}]),
    "data": st.sampled_from([{}, {"name": "nope"}, {"per_class_train": 5}, {"unknown": 1}, []]),
    "setup": st.sampled_from([{}, {"target": "nope"}, {"target": "no.such:fn"}]),
    "algorithm_b": st.sampled_from([{"recipe": "tiny.yaml", "seed": 1}, {"recipe": "missing.yaml"},
                                    {"recipe": {"name": "inline", "epochs": 1, "model": {"arch": "digits_cnn",
                                                                                         "width": 4}}},
                                    {"recipe": {"epochs": "one"}}, {"label": "no recipe"}, "tiny.yaml"]),
    "unknown_key": st.sampled_from([1]),
}


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(keys=st.dictionaries(st.sampled_from(sorted(STUDY_VALUES)), st.just(None), max_size=3), data=st.data(),
       raw=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["", "{", "- a", "name: [", "42"])),
       out=st.sampled_from(["out", "plain.txt", "plain.txt/under"]))
def test_generated_studies(tmp_path_factory, monkeypatch, keys, data, raw, out):
    """Study YAMLs, valid and invalid: exit 2 with one line, or pass every check before training
    (stopped there), never a traceback, no file written outside --out."""
    import modeldiff.studies.run as run_mod
    from tests.helpers_train import write_recipe

    monkeypatch.setattr(run_mod, "train_algorithms", _stop)
    root = tmp_path_factory.mktemp("study")
    write_recipe(root, epochs=1)
    (root / "plain.txt").write_text("x")
    study = {"name": "fuzz", "algorithm_a": {"recipe": "tiny.yaml"}, "algorithm_b": {"recipe": "tiny.yaml", "seed": 1},
             "models": 4, "ensemble_size": 2, "attribution": {"models": 2, "proj_dim": 16},
             "calibration": {"splits": 5, "groups": 2}, "search": {"families": ["blur"]}}
    for key in keys:
        study[key] = data.draw(STUDY_VALUES[key])
    file = root / "s.yaml"
    file.write_text(raw if raw is not None else yaml.safe_dump(study))
    args = ["study", file, "--out", root / out]
    before = _outside(root, [str(a) for a in args])
    code, stdout, err = _run_stopped(*args)
    event(f"study: {'passed validation' if code is None else f'exit {code}'}")
    if code is not None:
        _check(code, stdout, err, study)
        assert code == 2, (study, stdout)  # nothing here may train: it fails, or is stopped above
    assert _outside(root, [str(a) for a in args]) == before, study


@st.composite
def plan_argv(draw, root, store, scores):
    target = draw(st.sampled_from(["sgd_noise", "nope_study", str(root / "tiny.yaml"), str(root / "plain.txt"),
                                   str(root / "missing.yaml"), str(root / "bad_study.yaml"), ""]))
    args = ["plan", target]
    opts = {"--models": NUMS, "--device": DEVICES,
            "--ensemble-size": NUMS, "--subset-fraction": NUMS,
            "--pilot": st.sampled_from([str(store), str(scores), str(root / "plain.txt"), str(root / "missing")]),
            "--target-lds": NUMS, "--target-precision": NUMS, "--json": st.just(None)}
    for flag, values in opts.items():
        if draw(st.booleans()):
            value = draw(values)
            args += [flag] if value is None else [flag, value]
    return args


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_plan_arguments(world, monkeypatch, data):
    """``plan``: exit 2 with one line, or reach its calibration (stopped there); never a traceback;
    no file touched."""
    import modeldiff.plan.pilot as pilot_mod
    import modeldiff.plan.planner as planner_mod
    from tests.helpers_train import write_recipe

    root, store, scores = world
    for mod, name in ((planner_mod, "calibrate_training"), (planner_mod, "calibrate_trak"), (pilot_mod, "trak_pilot")):
        monkeypatch.setattr(mod, name, _stop)
    if not (root / "tiny.yaml").is_file():
        write_recipe(root, epochs=1)
        (root / "bad_study.yaml").write_text("name: s\nalgorithm_a: {recipe: tiny.yaml}\nalgorithm_b: {recipe: tiny.yaml}\n"
                                             "counterfactual: {transforms: ['nope:x=1']}\n")
    args = data.draw(plan_argv(root, store, scores))
    before = tree_digest(root)
    code, out, err = _run_stopped(*args)
    event(f"plan: {'reached calibration' if code is None else f'exit {code}'}")
    if code is not None:
        _check(code, out, err, args)
    assert tree_digest(root) == before, args


@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_diagnose_arguments(world, data):
    """``diagnose`` on a tiny store (runs for real when valid: width-4 models, few HVPs)."""
    root, store, scores = world
    path = _path(root, store, scores)
    args = ["diagnose", *data.draw(st.lists(path, min_size=1, max_size=2)), "--out", data.draw(_out(root)), "--quiet",
            "--models", data.draw(st.sampled_from(["1", "0", "-1", "x", "99"])),
            "--lanczos-steps", data.draw(st.sampled_from(["3", "0", "x"])),
            "--probes", data.draw(st.sampled_from(["2", "1", "0"]))]
    opts = {"--lanczos-tol": NUMS, "--trace-examples": NUMS, "--noise-examples": st.sampled_from(["16", "1", "0", "x"]),
            "--batch-size": st.sampled_from(["256", "0", "-1"]), "--dtype": st.sampled_from(["store", "float64", "x"]),
            "--device": DEVICES, "--seed": NUMS, "--labels": st.sampled_from(["a", "a,b", ","]),
            "--force": st.just(None)}
    for flag, values in opts.items():
        if data.draw(st.booleans()):
            value = data.draw(values)
            args += [flag] if value is None else [flag, value]
    before = _outside(root, args)
    code, out, err = run_cli(*args)
    event(f"diagnose: exit {code}")
    _check(code, out, err, args)
    assert _outside(root, args) == before, args

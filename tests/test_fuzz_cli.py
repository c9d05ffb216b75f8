"""Property-based fuzzing of the CLI (Hypothesis; bounded examples, derandomized = a fixed seed):
for generated recipes and argument lists, valid and invalid, every command exits 0 or 2, never
with a traceback, prints at most one ``error:`` line, and touches no file outside its ``--out``."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integrity_helpers import error_lines, make_store, run_cli, tree_digest

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

"""An attribution method and a projector from a package outside modeldiff (a folder on sys.path) are
usable from the command line and from a study YAML, by import target or after registering a name."""
import textwrap

import numpy as np
import pytest
import yaml

from datamodels.attribution.influence_io import read_influence
from datamodels.attribution.names import METHODS, PROJECTORS
from tests.helpers_train import write_recipe
from tests.integrity_helpers import make_store, run_cli

PLUGIN = '''
import numpy as np
import torch

from datamodels.attribution.methods import AttributionMethod
from datamodels.attribution.projectors import Projector, iter_chunks


def mask_contrast(masks, margins):
    """scores[t, j]: mean margin on t of the models that saw j minus that of the models that did not."""
    m = masks.astype(np.float64)
    seen, unseen = np.maximum(m.sum(0), 1), np.maximum((1 - m).sum(0), 1)
    return (margins.T @ m / seen - margins.T @ (1 - m) / unseen).astype(np.float32)


class MaskContrast(AttributionMethod):
    name = "mask_contrast"
    min_models = 2

    def attribute(self, models, rows, *, device, dtype, progress, params, write):
        scores = mask_contrast(np.asarray(models.masks)[rows], np.asarray(models.test_margins)[rows, :])
        scores = scores * float(params.get("scale", 1.0))
        if write is not None:
            write(0, scores)
            return None, {"method": self.name, **params}
        return scores, {"method": self.name, **params}


class Broken(AttributionMethod):
    def attribute(self, models, rows, *, device, dtype, progress, params, write):
        raise RuntimeError("shapes do not line up")


class GaussianProjector(Projector):
    name = "gaussian"

    def __init__(self, grad_dim, proj_dim, seed=0, device="cpu"):
        super().__init__(grad_dim, proj_dim, seed, device)
        self.matrix = torch.randn(grad_dim, proj_dim, generator=torch.Generator().manual_seed(seed))

    def project(self, grads, model_id):
        flat = torch.cat([c for _, c in iter_chunks(grads)], dim=1)
        return flat @ self.matrix.to(flat.device, flat.dtype)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The package ``outside_plugin`` in a folder of its own, put on sys.path."""
    root = tmp_path / "site"
    (root / "outside_plugin").mkdir(parents=True)
    (root / "outside_plugin" / "__init__.py").write_text("")
    (root / "outside_plugin" / "attribution.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(root))
    import importlib

    importlib.invalidate_caches()
    return importlib.import_module("outside_plugin.attribution")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("plugin_store"), save_weights=None)


def test_cli_takes_a_method_and_a_projector_by_import_target(plugin, store, tmp_path):
    from datamodels.store.store import Store

    out = tmp_path / "contrast.h5"
    code, _, err = run_cli("attribute", store, "--method", "outside_plugin.attribution:MaskContrast",
                           "--param", "scale=2.0", "--out", out, "--quiet")
    assert code == 0, err
    got = read_influence(out)
    s = Store.open(store)
    expected = 2.0 * plugin.mask_contrast(np.asarray(s.masks), np.asarray(s.test_margins))
    assert got.method == "outside_plugin.attribution:MaskContrast" and got.method_params["scale"] == 2.0
    np.testing.assert_allclose(got.scores, expected, rtol=1e-6)

    out = tmp_path / "gauss.h5"
    code, _, err = run_cli("attribute", store, "--projector", "outside_plugin.attribution:GaussianProjector",
                           "--proj-dim", "8", "--models", "2", "--out", out, "--quiet")
    assert code == 0, err
    got = read_influence(out)
    assert got.method_params["projector"] == "gaussian" and got.method_params["proj_dim"] == 8
    assert np.isfinite(got.scores).all() and np.abs(got.scores).max() > 0


def test_registered_names_become_cli_choices_that_dispatch(plugin, store, tmp_path):
    METHODS.register("mask_contrast", plugin.MaskContrast, help="outside method")
    PROJECTORS.register("gaussian", plugin.GaussianProjector, help="outside projector")
    try:
        code, _, err = run_cli("attribute", store, "--method", "mask_contrast", "--out", tmp_path / "m.h5", "--quiet")
        assert code == 0, err
        assert read_influence(tmp_path / "m.h5").method == "mask_contrast"
        code, _, err = run_cli("attribute", store, "--projector", "gaussian", "--proj-dim", "8", "--models", "2",
                               "--out", tmp_path / "g.h5", "--quiet")
        assert code == 0, err
        assert read_influence(tmp_path / "g.h5").method_params["projector"] == "gaussian"
    finally:
        METHODS.unregister("mask_contrast")
        PROJECTORS.unregister("gaussian")
    code, _, err = run_cli("attribute", store, "--method", "mask_contrast", "--out", tmp_path / "x.h5")
    assert code == 2 and "invalid choice" in err


def test_study_yaml_names_the_outside_method_and_projector(plugin, tmp_path):
    recipe = write_recipe(tmp_path, epochs=1)
    study = {"name": "plugins", "algorithm_a": {"recipe": recipe.name, "label": "A"},
             "algorithm_b": {"recipe": recipe.name, "label": "B", "seed": 1}, "models": 4, "ensemble_size": 4,
             "components": 2,
             "attribution": {"method": "outside_plugin.attribution:MaskContrast", "models": 4, "proj_dim": 8,
                             "projector": "outside_plugin.attribution:GaussianProjector"},
             "counterfactual": {"auto_candidates": 0, "n_test": 20, "bootstrap": 50},
             "calibration": {"splits": 5, "groups": 2}, "search": {"enabled": False}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "run"
    code, _, err = run_cli("study", path, "--out", out)
    assert code == 0, err
    got = read_influence(out / "scores_a_outside_plugin_attribution_MaskContrast.h5")
    assert got.method == "outside_plugin.attribution:MaskContrast"
    assert yaml.safe_load((out / "summary.json").read_text())["method"] == "outside_plugin.attribution:MaskContrast"
    code, _, err = run_cli("study", path, "--out", out, "--method", "trak")  # same stores, TRAK with the projector
    assert code == 0, err
    params = read_influence(out / "scores_a_trak.h5", load_scores=False).method_params
    assert params["projector"] == "outside_plugin.attribution:GaussianProjector" and params["proj_dim"] == 8


def test_a_failing_outside_method_is_one_line_naming_it(plugin, store, tmp_path):
    code, _, err = run_cli("attribute", store, "--method", "outside_plugin.attribution:Broken", "--out",
                           tmp_path / "b.h5", "--quiet")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "attribution method Broken raised RuntimeError: shapes do not line up" in lines[0]
    assert not (tmp_path / "b.h5").exists()

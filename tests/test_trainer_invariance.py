"""A model's numbers must not depend on which other models share its ensemble (float64)."""
import pytest
import torch

from datamodels.store.store import draw_masks_and_seeds
from datamodels.training.ensemble_trainer import train_ensemble
from datamodels.training.recipe import recipe_from_dict

PASTE = {"translate": 1, "paste": {"share": 0.5, "region": [5, 8, 5, 8], "pattern": "checker"}}


@pytest.mark.parametrize("arch, augment", [("digits_cnn", {"flip": True, "translate": 1, "cutout": 2}),
                                           ("linear", {"flip": True, "translate": 1, "cutout": 2}),
                                           ("digits_cnn", PASTE)])
def test_alone_equals_inside_ensemble_float64(digits, arch, augment):
    recipe = recipe_from_dict({
        "model": {"arch": arch, "width": 4}, "precision": "float64", "epochs": 2, "batch_size": 50,
        "optim": {"lr": 0.05, "label_smoothing": 0.1},
        "augment": augment,
    })
    masks, seeds = draw_masks_and_seeds(seed=3, n_models=4, n_train=digits.n_train, fraction=0.5)
    masks = torch.from_numpy(masks)
    together = train_ensemble(recipe, digits, masks, seeds.tolist())
    for i in (0, 2):
        alone = train_ensemble(recipe, digits, masks[i:i + 1], [int(seeds[i])])
        torch.testing.assert_close(alone.test_logits[0], together.test_logits[i], rtol=0, atol=1e-6)
        torch.testing.assert_close(alone.train_margins[0], together.train_margins[i], rtol=0, atol=1e-6)
    # and the members really are different models (different masks and seeds)
    assert (together.test_logits[0] - together.test_logits[1]).abs().max() > 1e-3


def test_training_learns(digits):
    recipe = recipe_from_dict({"epochs": 4, "batch_size": 32})
    masks, seeds = draw_masks_and_seeds(seed=0, n_models=2, n_train=digits.n_train, fraction=0.5)
    res = train_ensemble(recipe, digits, torch.from_numpy(masks), seeds.tolist())
    assert res.accuracy.min() > 0.85
    assert not res.diverged.any()


def test_divergence_is_flagged(digits):
    recipe = recipe_from_dict({"epochs": 1, "batch_size": 32, "optim": {"lr": 1e12, "momentum": 0.0}})
    masks, seeds = draw_masks_and_seeds(seed=0, n_models=2, n_train=digits.n_train, fraction=0.5)
    res = train_ensemble(recipe, digits, torch.from_numpy(masks), seeds.tolist())
    assert res.diverged.all()


def test_bfloat16_autocast_learns(digits):
    recipe = recipe_from_dict({"epochs": 4, "batch_size": 32, "precision": "bfloat16"})
    masks, seeds = draw_masks_and_seeds(seed=0, n_models=2, n_train=digits.n_train, fraction=0.5)
    res = train_ensemble(recipe, digits, torch.from_numpy(masks), seeds.tolist())
    assert res.test_logits.dtype == torch.float32 and torch.isfinite(res.test_margins).all()
    assert res.accuracy.min() > 0.85
    assert not res.diverged.any()


def test_paste_augmentation_changes_training(digits):
    """The paste draws reach the trainer: the same models with and without it differ."""
    base = {"model": {"arch": "digits_cnn", "width": 4}, "epochs": 1, "batch_size": 50}
    masks, seeds = draw_masks_and_seeds(seed=1, n_models=2, n_train=digits.n_train, fraction=0.5)
    runs = [train_ensemble(recipe_from_dict({**base, "augment": aug}), digits, torch.from_numpy(masks), seeds.tolist())
            for aug in ({}, {"paste": PASTE["paste"]})]
    assert (runs[0].test_logits - runs[1].test_logits).abs().max() > 1e-3

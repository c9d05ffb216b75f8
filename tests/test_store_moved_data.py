"""A store reopened where the data folder it recorded does not exist falls back to the loader's own setting."""
from types import SimpleNamespace

import pytest

from datamodels.base.errors import UserError
from datamodels.store import metadata


def _meta(data_dir):
    return {"recipe": {"data": {"name": "cifar10", "data_dir": data_dir, "per_class_train": 5}},
            "dataset": {"name": "cifar10", "identity": "abc123"}}


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_load(name, data_dir, **opts):
        seen.append((name, data_dir, opts))
        return SimpleNamespace(identity="abc123" if data_dir != "elsewhere" else "other")

    monkeypatch.setattr(metadata, "load_dataset", fake_load)
    return seen


def test_recorded_folder_that_is_gone_falls_back_to_the_loader_setting(calls, tmp_path):
    metadata.reload_dataset(_meta(str(tmp_path / "moved" / "cifar10-jpeg")))
    assert calls == [("cifar10", None, {"per_class_train": 5})]


def test_recorded_folder_that_exists_is_used(calls, tmp_path):
    metadata.reload_dataset(_meta(str(tmp_path)))
    assert calls[0][1] == str(tmp_path)


def test_explicit_folder_wins_and_the_fingerprint_is_still_checked(calls, tmp_path):
    with pytest.raises(UserError, match="differs from the data this store was trained on"):
        metadata.reload_dataset(_meta(str(tmp_path)), data_dir="elsewhere")
    assert calls[0][1] == "elsewhere"

"""Training is never silent: a chunk's step counter, then a phase line while its models are
evaluated and saved (no steps there; on CIFAR-scale chunks that takes tens of seconds)."""
from datamodels.base.progress import heartbeat
from tests.helpers_train import write_recipe
from tests.integrity_helpers import run_cli


def test_chunk_bar_names_the_evaluation_after_its_last_step(tmp_path):
    code, _, err = run_cli("train", write_recipe(tmp_path, epochs=1), "--out", tmp_path / "store", "--models", 4,
                           "--ensemble-size", 2)
    assert code == 0, err
    assert "chunk 1 of 2 (2 models at once)" in err and "chunk 2 of 2 (2 models at once)" in err, err[-2000:]
    assert err.count("evaluating and saving 2 models") >= 2, err[-2000:]


def test_heartbeat_redraws_a_bar_that_nothing_updates():
    class Bar:
        draws = 0

        def refresh(self):
            Bar.draws += 1

    import time

    with heartbeat(Bar(), every=0.05):
        time.sleep(0.4)
    assert Bar.draws >= 3

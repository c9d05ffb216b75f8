"""One way to fail: user code called through ``call_user`` becomes one ``error:`` line whose cause keeps
the user's traceback; ``--debug`` prints it; torch's generic RuntimeError is not called an I/O failure."""
import pytest

from datamodels.base.errors import UserError, call_user
from tests.integrity_helpers import error_lines, run_cli


def _users_code(x):
    raise KeyError(f"no column {x}")


def test_call_user_keeps_the_cause_and_names_the_target():
    with pytest.raises(UserError) as info:
        call_user(_users_code, "age", what="data target 'pkg.data:load'", hint="fix the loader")
    err = info.value
    assert str(err).startswith("data target 'pkg.data:load' raised KeyError:") and str(err).endswith("fix the loader")
    assert isinstance(err.__cause__, KeyError)
    assert any("data target 'pkg.data:load'" in n for n in err.__cause__.__notes__)
    assert err.__cause__.__traceback__.tb_next.tb_frame.f_code.co_name == "_users_code"


def test_call_user_passes_user_errors_and_interrupts_through():
    def refuses():
        raise UserError("already one line")

    with pytest.raises(UserError, match="^already one line$"):
        call_user(refuses, what="x")

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_user(interrupted, what="x")


def _bad_loss_recipe(tmp_path, monkeypatch):
    (tmp_path / "guard_user_loss.py").write_text(
        "def loss(logits, y):\n    return helper(logits)\n\n\ndef helper(z):\n    raise ZeroDivisionError('user bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {arch: digits_cnn, width: 4}\nepochs: 1\nloss: guard_user_loss:loss\n")
    return recipe


def test_cli_debug_prints_the_users_frames(tmp_path, monkeypatch):
    recipe = _bad_loss_recipe(tmp_path, monkeypatch)
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 2)
    assert code == 2 and len(error_lines(err)) == 1 and "ZeroDivisionError: user bug" in err
    assert "Traceback" not in err
    code, out, err = run_cli("--debug", "train", recipe, "--out", tmp_path / "s", "--models", 2)
    assert code == 2 and err.startswith("error: ") and "in helper" in err and "Traceback" in err
    monkeypatch.setenv("MODELDIFF_DEBUG", "1")
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 2)
    assert code == 2 and "in helper" in err
    assert not (tmp_path / "s").exists()  # the loss failed before the store was made


def test_torch_runtime_error_is_not_reported_as_an_io_failure(monkeypatch):
    import modeldiff.cli.verify as verify_cli

    def boom(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    monkeypatch.setattr(verify_cli, "run", boom)
    code, out, err = run_cli("verify", "somewhere")
    assert code == 1
    line = error_lines(err)[0]
    assert "RuntimeError" in line and "permissions" not in line and "not an input or disk problem" in line


def test_a_write_failure_is_still_an_io_failure():
    from modeldiff.cli.main import io_error_message, is_write_failure

    err = RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: "
                       "file write failed")
    assert is_write_failure(err) and "full disk" in io_error_message(err)
    assert not is_write_failure(RuntimeError("CUDA error: device-side assert triggered"))

"""datamodels.base.log: one logger tree under "modeldiff"; only the command line installs a handler."""
from __future__ import annotations

import io
import logging

from datamodels.base.log import ROOT, get_logger, setup_logging


def test_module_loggers_of_both_packages_sit_under_one_root():
    assert get_logger().name == ROOT == get_logger(ROOT).name
    assert get_logger("modeldiff.cli.main").name == "modeldiff.cli.main"
    assert get_logger("datamodels.store.store").name == "modeldiff.datamodels.store.store"


def test_setup_logging_prints_plain_lines_once_and_replaces_its_own_handler():
    root = logging.getLogger(ROOT)
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        first = io.StringIO()
        setup_logging(stream=first)
        second = io.StringIO()
        setup_logging(debug=True, stream=second)  # replaces the first handler, keeps foreign ones
        get_logger("datamodels.runs.launchers").info("trained 8 models")
        get_logger("modeldiff.plan").debug("calibration reused")
        assert first.getvalue() == ""
        assert second.getvalue().splitlines() == ["modeldiff.datamodels.runs.launchers: trained 8 models",
                                                  "modeldiff.plan: calibration reused"]
        assert sum(getattr(h, "_modeldiff_cli", False) for h in root.handlers) == 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]


def test_importing_the_packages_installs_no_handler():
    import subprocess
    import sys

    code = ("import logging, modeldiff, modeldiff.cli.main, datamodels.runs.launchers, modeldiff.studies.run; "
            "print(len(logging.getLogger('modeldiff').handlers), len(logging.getLogger().handlers))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["0", "0"]

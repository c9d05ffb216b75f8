"""``modeldiff demo`` (the main job) and ``modeldiff study``: run a comparison end to end."""
from __future__ import annotations

import argparse
import os
import time


def _common(p) -> None:
    from datamodels.attribution.names import METHODS

    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder for cifar10 (default: $MODELDIFF_CIFAR10_DIR)")
    p.add_argument("--method", choices=METHODS.names(), default=None,
                   help="attribution estimator (default: the study's, TRAK)")
    p.add_argument("--models", type=int, default=None, help="models per algorithm (default: the study's)")


def add_parser(subparsers) -> None:
    from datamodels.data.names import DATASETS

    demo = subparsers.add_parser("demo", help="the SGD-noise study end to end (digits by default, ~10 min on a CPU)",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--dataset", choices=DATASETS.names(), default="digits",
                      help="digits (embedded, minutes on a CPU) or cifar10 (needs the data folder)")
    demo.add_argument("--out", default="runs/demo", help="output folder (resumes when it exists)")
    _common(demo)
    demo.set_defaults(func=run_demo)
    study = subparsers.add_parser("study", help="run a study: a shipped one (sgd_noise, augmentation, pretraining, "
                                  "planted; add /cifar10 for CIFAR-10) or your own study YAML",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    study.add_argument("study", help="e.g. sgd_noise, sgd_noise/cifar10, or path/to/study.yaml")
    study.add_argument("--out", required=True, help="output folder (resumes when it exists)")
    _common(study)
    study.set_defaults(func=run_study_cli)


def run_demo(args) -> int:
    args.study = "sgd_noise" if args.dataset == "digits" else f"sgd_noise/{args.dataset}"
    return run_study_cli(args)


def run_study_cli(args) -> int:
    from modeldiff.checks import check_device, check_output
    from modeldiff.studies.config import load_study
    from modeldiff.studies.run import format_summary, run_configured

    check_device(args.device)
    check_output(args.out, folder=True, may_exist=True)
    cfg = load_study(args.study)
    if args.models is not None:
        cfg.with_models(args.models)
    start = time.time()
    summary = run_configured(cfg, args.out, args.device, args.data_dir, args.method)
    print(format_summary(summary))
    print(f"done in {time.time() - start:.0f} s; summary: {os.path.join(os.path.abspath(args.out), 'summary.json')}")
    return 0

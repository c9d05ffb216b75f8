"""``modeldiff demo`` (the main job) and ``modeldiff study``: run a comparison end to end."""
from __future__ import annotations

import argparse
import os
import time


def _common(p) -> None:
    from datamodels.attribution.names import METHODS
    from modeldiff.cli.choices import name_or_target

    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder for cifar10 (default: $MODELDIFF_CIFAR10_DIR)")
    p.add_argument("--method", type=name_or_target(METHODS), default=None, metavar="{" + ",".join(METHODS) + "}",
                   help="attribution estimator, or an import target 'pkg.mod:MyMethod' (default: the study's, TRAK)")
    p.add_argument("--models", type=int, default=None, help="models per algorithm (default: the study's)")
    add_allow_changed_code(p)


def add_allow_changed_code(p) -> None:
    """The ``--allow-changed-code`` flag: go on with a store whose user code changed since it was made."""
    p.add_argument("--allow-changed-code", action="store_true",
                   help="go on when a user module (model, loss, optimizer, train_fn, data loader) changed since the "
                        "store was made; refused by default, recorded as a code_changed warning when allowed")


def say_code_changes(store, path, allow: bool, doing: str) -> None:
    """Refuse a store whose user code changed (unless ``allow``); when allowed, say so on stderr."""
    import sys

    from datamodels.store.fingerprints import check_code
    from modeldiff.studies.guards import code_changed

    w = code_changed(str(path), check_code(store.metadata, path, allow=allow, doing=doing))
    if w:
        print(f"warning [{w['code']}]: {w['message']}", file=sys.stderr, flush=True)


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
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                  epilog="fit matching (study key match: {by: train_loss, method: train_slower | "
                                         "stop_faster, max_epochs: E, checks_per_epoch: K}): train_slower trains the algorithm with the "
                                         "higher mean training loss again until the other's mean final loss (recipe "
                                         "until, schedule laid over E, default 4 x its epochs); stop_faster keeps a "
                                         "checkpoint every epoch and takes each model of the faster algorithm at the "
                                         "one closest to the slower's mean final loss. checks_per_epoch: K > 1 "
                                         "also checks the fit K times an epoch, so models stop within ~1/K epoch "
                                         "of the target (stop_faster then trains the faster algorithm again to "
                                         "the target instead). summary.json match says "
                                         "whether the mean training losses are within 5 % (95 % CI over models)")
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
    summary = run_configured(cfg, args.out, args.device, args.data_dir, args.method,
                             allow_changed_code=args.allow_changed_code)
    print(format_summary(summary))
    print(f"done in {time.time() - start:.0f} s; summary: {os.path.join(os.path.abspath(args.out), 'summary.json')}")
    return 0

"""Train SDT and TET spiking networks.

With no arguments: the offline default, a small spiking CNN on scikit-learn's handwritten digits,
trained once with the SDT loss and once with the TET loss (seed 0), under runs/. A dataset brings
its model (--dataset mnist1d trains mnist1d_snn) unless --model names another. Each run folder
holds config.json, metrics.csv and last.pt (plus epoch_NNN.pt with --save-every, and
gradient_stats.csv). A run is written under a lock file; --resume finishes a run that lacks any
of its files (or holds one that does not load) and refuses one trained with another config
(--epochs included: the cosine schedule depends on it). Exit status: 0 done, 1 runtime error,
2 bad usage, config, data or checkpoint, 130 interrupted.

example:
  python training/run.py --epochs 4 --save-every 1 --out runs
  python training/run.py --dataset mnist1d --epochs 5
  python training/run.py --config runs/digits-digits_snn-T4-tet-seed0/config.json --resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from toolkit.command import ArgumentParser, command
from toolkit.errors import ConfigError, DivergenceError, ToolkitError
from toolkit.settings import (
    add_config_args,
    apply_defaults,
    config_from_args,
    load_config_file,
)
from training.runs.config import DERIVED_FIELDS, TrainConfig
from training.runs.layout import RunFiles, RunLayout
from training.runs.presets import get_preset, preset_table
from training.runs.trainer import check_config, run_status, train


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface: run options, then one flag per ``TrainConfig`` field."""
    parser = ArgumentParser(
        prog="run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--preset", help="a paper experiment (see --list-presets); flags override it")
    add("--list-presets", action="store_true", help="list the presets and exit")
    add("--config", help="JSON file of config fields used as defaults (flags override)")
    add(
        "--method",
        nargs="+",
        choices=("sdt", "tet"),
        default=["sdt", "tet"],
        help="training loss(es), one run each (default: %(default)s)",
    )
    add("--seeds", nargs="+", type=int, default=[0], help="seeds, one run each (default: 0)")
    add("--out", default="runs", help="folder of the run folders (default: %(default)s)")
    add("--resume", action="store_true", help="continue runs that have a last.pt")
    add("--overwrite", action="store_true", help="start existing runs over")
    add(
        "--quiet",
        action="store_true",
        help="no progress (bars on a terminal, else a line an epoch)",
    )
    add(
        "--tensorboard",
        metavar="DIR",
        help="also log every epoch to TensorBoard under DIR/<run> (pip install tensorboard)",
    )
    add_config_args(parser, TrainConfig, exclude=("method", "seed"))
    return parser


def _apply_presets(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Make --preset and --config the parser's defaults; returns the first-pass arguments."""
    known, _ = parser.parse_known_args(argv)
    values, preset = {}, get_preset(known.preset) if known.preset else None
    if preset:
        values.update(preset.values)
    if known.config:
        values.update(load_config_file(known.config))
    if "method" in values:
        parser.set_defaults(method=[values.pop("method")])
    if "seed" in values:
        parser.set_defaults(seeds=[values.pop("seed")])
    apply_defaults(parser, values, TrainConfig, ignored=DERIVED_FIELDS)
    known.required = preset.requires if preset else ()
    return known


def _check_run_options(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, before anything is read or written.

    Raises:
        ConfigError: Naming the combination.
    """
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    for name, values in (("--method", args.method), ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{name} lists {values}; each value once, please")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected the folder of the run folders")


def _train(config: TrainConfig, run: RunFiles, args: argparse.Namespace) -> Path:
    try:
        return train(
            config, run.path, args.resume, not args.quiet, args.overwrite, args.tensorboard
        )
    except DivergenceError as error:
        try:
            status = run_status(run.path)
        except ToolkitError:
            status = None
        last = f"{run.last} (epoch {status[0]})" if status else "none (no epoch finished)"
        raise DivergenceError(f"{run.path.name}: {error}; last good checkpoint: {last}") from None


def _last_metrics(run: RunFiles) -> dict:
    import pandas as pd

    frame = pd.read_csv(run.metrics)
    return {k: v for k, v in frame.iloc[-1].items() if v == v}  # drop NaN (empty) columns


def print_table(configs: list[TrainConfig], runs: list[RunFiles]) -> None:
    """Summary table on stdout: method, seed, train acc, test acc, test L_SDT, test L_TET."""
    print(f"{'method':<7}{'seed':>5}{'train acc':>11}{'test acc':>10}{'L_SDT':>9}{'L_TET':>9}")
    for config, run in zip(configs, runs):
        last = _last_metrics(run)
        train_acc = last.get("train_eval_acc", last["train_acc"])
        numbers = f"{train_acc:>11.4f}{last['test_acc']:>10.4f}"
        numbers += f"{last['test_l_sdt']:>9.4f}{last['test_l_tet']:>9.4f}"
        print(f"{config.method.upper():<7}{config.seed:>5}{numbers}")


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    known = _apply_presets(parser, argv)
    if known.list_presets:
        print(preset_table())
        return 0
    args = parser.parse_args(argv)
    for name in known.required:
        if not getattr(args, name):
            parser.error(f"preset {args.preset} needs --{name.replace('_', '-')}")
    _check_run_options(args)
    base = config_from_args(args, TrainConfig, method=args.method[0], seed=args.seeds[0])
    torch.use_deterministic_algorithms(True, warn_only=True)
    check_config(base)
    layout = RunLayout(Path(args.out))
    configs = [base.replace(method=m, seed=s) for s in args.seeds for m in args.method]
    runs = [layout.run(config) for config in configs]
    for config, run in zip(configs, runs):
        _train(config, run, args)
    print_table(configs, runs)
    print(f"runs written under {layout.root}/", file=sys.stderr)
    return 0


main = command(_main, "run.py", interrupted="every finished epoch is saved: rerun with --resume")

if __name__ == "__main__":
    sys.exit(main())

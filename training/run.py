"""Train SDT and TET spiking networks.

With no arguments: the offline default, a small spiking CNN on scikit-learn's handwritten digits,
trained once with the SDT loss and once with the TET loss (seed 0), under runs/. Each run directory
holds config.json, metrics.csv and last.pt (plus epoch_NNN.pt with --save-every, and
gradient_stats.csv). A run is written under a lock file; --resume finishes a run that lacks any
of its files and refuses one trained with another config (--epochs included: the cosine schedule
depends on it). Exit status: 0 done, 1 runtime error, 2 bad usage or config, 130 interrupted.

example:
  python training/run.py --epochs 4 --save-every 1 --out runs
  python training/run.py --config runs/digits-digits_snn-T4-tet-seed0/config.json --resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from training.config import (  # noqa: E402
    ArgumentParser,
    TrainConfig,
    add_config_args,
    apply_defaults,
    config_from_args,
    load_config_file,
)
from training.errors import ConfigError, DivergenceError, ToolkitError
from training.presets import get_preset, preset_table
from training.trainer import check_config, run_status, train


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", help="a paper experiment (see --list-presets); flags override it"
    )
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument(
        "--config", help="JSON file of config fields used as defaults (flags override)"
    )
    parser.add_argument(
        "--method",
        nargs="+",
        choices=("sdt", "tet"),
        default=["sdt", "tet"],
        help="training loss(es), one run each (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        help="seeds, one run each (default: %(default)s)",
    )
    parser.add_argument(
        "--out", default="runs", help="root of the run directories (default: %(default)s)"
    )
    parser.add_argument("--resume", action="store_true", help="continue runs that have a last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start existing runs over")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (bars on a terminal, else a line an epoch)",
    )
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also log every epoch to TensorBoard under DIR/<run> (pip install tensorboard)",
    )
    add_config_args(parser, TrainConfig, exclude=("method", "seed"))
    return parser


def run_name(config: TrainConfig) -> str:
    """Directory name of a run, e.g. ``digits-digits_snn-T4-tet-seed0``."""
    name = f"{config.dataset}-{config.model}-T{config.T}-{config.method}"
    if config.switch_to_tet_at:
        name += f"-switch{config.switch_to_tet_at}"
    if config.init_from:
        name += "-init"
    return f"{name}-seed{config.seed}"


def _defaults(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Apply --preset and --config as parser defaults; returns the first-pass arguments."""
    known, _ = parser.parse_known_args(argv)
    values, preset = {}, get_preset(known.preset) if known.preset else None
    if preset:
        values.update(preset.values)
    if known.config:
        values.update(load_config_file(known.config))
    if "method" in values:
        parser.set_defaults(method=[values.pop("method")])
    apply_defaults(parser, values)
    known.required = preset.requires if preset else ()
    return known


def _train(config: TrainConfig, run_dir: Path, args) -> Path:
    try:
        return train(config, run_dir, args.resume, not args.quiet, args.overwrite, args.tensorboard)
    except DivergenceError as error:
        try:
            status = run_status(run_dir)
        except ToolkitError:
            status = None
        last = (
            f"{run_dir / 'last.pt'} (epoch {status[0]})" if status else "none (no epoch finished)"
        )
        raise DivergenceError(f"{run_dir.name}: {error}; last good checkpoint: {last}") from None


def _summary_row(config: TrainConfig, run_dir: Path) -> tuple:
    last = _last_metrics(run_dir)
    train_acc = last.get("train_eval_acc", last["train_acc"])
    return (
        config.method,
        config.seed,
        train_acc,
        last["test_acc"],
        last["test_l_sdt"],
        last["test_l_tet"],
    )


def _last_metrics(run_dir: Path) -> dict:
    import pandas as pd

    frame = pd.read_csv(run_dir / "metrics.csv")
    return {k: v for k, v in frame.iloc[-1].items() if v == v}  # drop NaN (empty) columns


def print_table(rows: list[tuple]) -> None:
    """Summary table on stdout: method, seed, train acc, test acc, test L_SDT, test L_TET."""
    print(f"{'method':<7}{'seed':>5}{'train acc':>11}{'test acc':>10}{'L_SDT':>9}{'L_TET':>9}")
    for method, seed, train_acc, test_acc, l_sdt, l_tet in rows:
        numbers = f"{train_acc:>11.4f}{test_acc:>10.4f}{l_sdt:>9.4f}{l_tet:>9.4f}"
        print(f"{method.upper():<7}{seed:>5}{numbers}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        known = _defaults(parser, argv)
        if known.list_presets:
            print(preset_table())
            return 0
        args = parser.parse_args(argv)
        for name in known.required:
            if not getattr(args, name):
                parser.error(f"preset {args.preset} needs --{name.replace('_', '-')}")
        base = config_from_args(
            argparse.Namespace(**{**vars(args), "method": args.method[0], "seed": args.seeds[0]})
        )
        torch.use_deterministic_algorithms(True, warn_only=True)
        check_config(base)
        rows = []
        for seed in args.seeds:
            for method in args.method:
                config = base.replace(method=method, seed=seed)
                run_dir = Path(args.out) / run_name(config)
                _train(config, run_dir, args)
                rows.append(_summary_row(config, run_dir))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every finished epoch is saved: rerun with --resume", file=sys.stderr)
        return 130
    print_table(rows)
    print(f"runs written under {args.out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

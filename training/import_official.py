"""Convert a state dict saved by the official TET code into a checkpoint of this toolkit.

The official scripts save ``model.state_dict()`` of their batch-major models (with ``module.``
prefixes under DataParallel/DDP). This maps the keys onto our time-major models, checks that every
tensor is used, and writes a checkpoint that all analyses accept.

example:
  python training/import_official.py resnet19_cifar10.pth --model resnet19 --out imported.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from toolkit.command import ArgumentParser, command
from toolkit.errors import CheckpointError, ConfigError
from training import models
from training.runs import checkpoint
from training.runs.config import TrainConfig
from training.runs.official import OFFICIAL_MODELS, convert_official_state_dict

DEFAULT_DATA = {
    "resnet19": ("cifar10", 4),
    "vggsnn": ("cifar10_dvs", 10),
    "vggsnn_woap": ("cifar10_dvs", 10),
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="import_official.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("official", help="the official .pth state dict")
    parser.add_argument("--model", required=True, choices=sorted(OFFICIAL_MODELS))
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument(
        "--dataset", help="dataset it was trained on (default: by model and classes)"
    )
    parser.add_argument("--data-root", default="data", help="(default: %(default)s)")
    parser.add_argument(
        "--T", type=int, help="time steps it was trained with (default: 4 CIFAR, 10 DVS)"
    )
    parser.add_argument("--method", choices=("sdt", "tet"), default="tet", help="(default: tet)")
    parser.add_argument("--tet-lambda", type=float, default=None, help="(default: the paper's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"official state dict not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or unsafe file ends in one line
        raise CheckpointError(
            f"{path} is not a readable state dict: {type(error).__name__}"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _config(args: argparse.Namespace, num_classes: int | None) -> TrainConfig:
    """The run config the checkpoint records; with ``num_classes`` None only the flags are
    checked (before anything is read).

    Raises:
        ConfigError: On a bad --T, --tet-lambda or --dataset.
    """
    dataset, T = DEFAULT_DATA[args.model]
    dataset = args.dataset or ("cifar100" if num_classes == 100 else dataset)
    paper_lambda = 0.05 if "cifar1" in dataset else 1e-3
    return TrainConfig(
        model=args.model,
        dataset=dataset,
        data_root=args.data_root,
        T=T if args.T is None else args.T,
        method=args.method,
        tet_lambda=paper_lambda if args.tet_lambda is None else args.tet_lambda,
    )


def convert(args: argparse.Namespace) -> Path:
    """Convert and write; returns the output path.

    Raises:
        ConfigError: On bad flags or an --out that exists (without --overwrite) or is a folder.
        CheckpointError: If the state dict is unreadable or does not fit the model.
    """
    out = Path(args.out)
    if out.is_dir() or (out.exists() and not args.overwrite):
        what = "is a folder" if out.is_dir() else "exists; pass --overwrite"
        raise ConfigError(f"--out {out} {what}; expected a new checkpoint file (.pt)")
    _config(args, None)
    try:
        state = convert_official_state_dict(_read(Path(args.official)), args.model)
    except ValueError as error:
        raise CheckpointError(f"{args.official}: {error}") from None
    head = "classifier" if args.model.startswith("vgg") else "fc2"
    num_classes = next(v.shape[0] for k, v in state.items() if k.endswith("weight") and head in k)
    config = _config(args, num_classes)
    input_shape = [2, 48, 48] if config.dataset == "cifar10_dvs" else [3, 32, 32]
    kwargs = {"num_classes": num_classes, "T": config.T}
    model = models.build(args.model, **kwargs)
    checkpoint.load_state_dict_strict(model, state, str(args.official))
    stored = {**dataclasses.asdict(config), "input_shape": input_shape, "num_classes": num_classes}
    origin = {"imported_from": str(args.official)}
    checkpoint.save(
        out, model, args.model, kwargs, stored, epoch=0, history=[], metrics={}, **origin
    )
    return out


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = convert(args)
    print(f"wrote {out}")
    return 0


main = command(_main, "import_official.py", interrupted="nothing was written")

if __name__ == "__main__":
    sys.exit(main())

"""Convert a state dict saved by the official TET code into a checkpoint of this toolkit.

The official scripts save ``model.state_dict()`` of their batch-major models (with ``module.``
prefixes under DataParallel/DDP). This maps the keys onto our time-major models, checks that every
tensor is used, and writes a checkpoint that all analyses accept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from training import checkpoint, models
from training.config import ArgumentParser, TrainConfig
from training.errors import CheckpointError, ConfigError, ToolkitError
from training.official import OFFICIAL_MODELS, convert_official_state_dict

DEFAULT_DATA = {
    "resnet19": ("cifar10", 4),
    "vggsnn": ("cifar10_dvs", 10),
    "vggsnn_woap": ("cifar10_dvs", 10),
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__)
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


def convert(args: argparse.Namespace) -> Path:
    """Convert and write; returns the output path."""
    try:
        state = convert_official_state_dict(_read(Path(args.official)), args.model)
    except ValueError as error:
        raise CheckpointError(f"{args.official}: {error}") from None
    head = "classifier" if args.model.startswith("vgg") else "fc2"
    num_classes = next(v.shape[0] for k, v in state.items() if k.endswith("weight") and head in k)
    dataset, T = DEFAULT_DATA[args.model]
    dataset = args.dataset or ("cifar100" if num_classes == 100 else dataset)
    lamb = (
        args.tet_lambda if args.tet_lambda is not None else (0.05 if "cifar1" in dataset else 1e-3)
    )
    config = TrainConfig(
        model=args.model,
        dataset=dataset,
        data_root=args.data_root,
        T=T if args.T is None else args.T,
        method=args.method,
        tet_lambda=lamb,
    )
    input_shape = [2, 48, 48] if dataset == "cifar10_dvs" else [3, 32, 32]
    kwargs = {"num_classes": num_classes, "T": config.T}
    model = models.build(args.model, **kwargs)
    checkpoint.load_state_dict_strict(model, state, str(args.official))
    stored = {
        **dataclasses.asdict(config),
        "input_shape": input_shape,
        "num_classes": num_classes,
        "imported_from": str(args.official),
    }
    checkpoint.save(args.out, model, args.model, kwargs, stored, epoch=0, history=[], metrics={})
    return Path(args.out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.T is not None and args.T < 1:
        parser.error(f"--T must be >= 1, got {args.T}")
    if args.tet_lambda is not None and not 0 <= args.tet_lambda <= 1:
        parser.error(f"--tet-lambda must be in [0, 1], got {args.tet_lambda}")
    try:
        out = convert(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The paper-scale study's whole chain, tiny: synthetic CIFAR-10 files in the official batch format,
then ``analysis/study.py --scale paper-tiny`` (ResNet-19 at width 1/16, T = 2, 1 epoch, 2 pairs,
tiny flatness settings) through the local launcher, into a STUDY.md; prints the time of each part.

On a GPU machine training and flatness run on the GPU (``--device auto``), so the first lent GPU
runs the chain of docs/cluster.md once (``benchmarks/gpu_check.sh``). The images are random: the
numbers in the STUDY.md mean nothing, the chain is what is checked.

    python -m benchmarks.paper_study --out /tmp/paper-study
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from analysis.pipeline.jobs import command_line

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_synthetic_cifar10(root: Path, images_per_file: int, seed: int = 0) -> Path:
    """Random images and labels as the official CIFAR-10 python batches under
    ``root/cifar-10-batches-py`` (the layout ``training.data.datasets.load_cifar`` reads)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in CIFAR10_FILES:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, images_per_file)],
            b"data": rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8),
            b"filenames": [b"synthetic_%d.png" % i for i in range(images_per_file)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return folder


def run(out: Path, images_per_file: int, device: str = "auto") -> dict:
    """Synthetic data, then the tiny paper-scale study under ``out`` (which must be new or empty:
    a study resumes, and a resumed chain checks nothing); the seconds of each part.

    ``device``: ``cuda`` requires a GPU, ``cpu`` hides any, ``auto`` takes one if there is one
    (the study's commands run with ``--device auto``).

    Raises:
        RuntimeError: If ``out`` holds files, the GPU is missing, or the study fails (its log
            paths are in its stderr).
    """
    if out.exists() and any(out.iterdir()):
        raise RuntimeError(f"{out} is not empty; give a new folder")
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch sees no GPU")
    began = time.perf_counter()
    write_synthetic_cifar10(out / "data" / "cifar", images_per_file)
    seconds = {"data": time.perf_counter() - began}
    line = command_line(
        "analysis/study.py",
        "--scale",
        "paper-tiny",
        "--runs",
        out / "runs",
        "--figures",
        out / "figures",
        "--data-root",
        out / "data",
    )
    start = time.perf_counter()
    code = subprocess.run(list(line), env=env).returncode
    seconds["study"] = time.perf_counter() - start
    if code != 0 or not (out / "figures" / "STUDY.md").is_file():
        raise RuntimeError(
            f"the tiny paper-scale study failed (exit {code}); logs: {out}/runs/logs"
        )
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for data, runs, figures")
    parser.add_argument(
        "--images-per-file", type=int, default=16, help="images per batch file (default: 16)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: auto)"
    )
    parser.add_argument("--dry-run", action="store_true", help="the same (it is tiny already)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seconds = run(args.out, args.images_per_file, args.device)
    except RuntimeError as error:
        print(f"paper_study: error: {error}", file=sys.stderr)
        return 1
    print(
        f"tiny paper-scale study ({args.device}): data {seconds['data']:.1f} s, "
        f"study {seconds['study']:.1f} s; "
        f"{args.out / 'figures' / 'STUDY.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

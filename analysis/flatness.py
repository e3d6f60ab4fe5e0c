"""Flatness of checkpoints: raw, normalized and adaptive measures of L_SDT, L_TET and every L_t.

For each checkpoint and each loss (``sdt``, ``tet``, and with ``--per-step`` every
``L_t = CE(O(t), y)``): λ_max and Hutch++ trace of the surrogate Hessian, the same in normalized
coordinates ``diag(|w|) H diag(|w|)``, epsilon-sharpness, adaptive worst-case and average
sharpness (see ``analysis/flatness_measures.py``). Writes flatness.csv (one row per checkpoint x
loss x measure) and flatness.json (the rows, every setting, the data subsets and provenance),
atomically, by default into ``<first checkpoint's folder>/analysis``.

Example:
    python analysis/flatness.py runs/*/last.pt --out runs/analysis/flatness
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from analysis.common import existing_outputs, provenance, write_csv  # noqa: E402
from analysis.flatness_measures import HEADER, FlatnessSettings, checkpoint_rows  # noqa: E402
from landscape.io import atomic_write_text  # noqa: E402
from training.config import ArgumentParser, add_config_args, config_from_args  # noqa: E402


def build_parser():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint files (last.pt)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_config_args(parser, FlatnessSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = config_from_args(args, FlatnessSettings)
    out = args.out or args.checkpoints[0].parent / "analysis"
    paths = [out / "flatness.csv", out / "flatness.json"]
    if existing_outputs(paths) and not args.overwrite:
        print(f"error: {paths[0]} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    missing = [str(p) for p in args.checkpoints if not p.is_file()]
    if missing:
        print(f"error: no checkpoint at {', '.join(missing)}", file=sys.stderr)
        return 1
    torch.manual_seed(settings.probe_seed)
    rows, records, began = [], [], time.perf_counter()
    for path in args.checkpoints:
        start = time.perf_counter()
        found, record = checkpoint_rows(path, settings)
        rows += found
        records.append({**record, "seconds": time.perf_counter() - start})
        if not args.quiet:
            print(f"[flatness] {path}: {records[-1]['seconds']:.1f} s", file=sys.stderr)
    result = {
        "kind": "flatness",
        "settings": settings.to_dict(),
        "header": HEADER,
        "rows": rows,
        "checkpoints": records,
        "provenance": provenance(),
        "seconds": time.perf_counter() - began,
    }
    write_csv(paths[0], HEADER, rows)
    atomic_write_text(paths[1], json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {paths[0]} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

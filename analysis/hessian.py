"""Hessian spectrum of trained SNN checkpoints: top/bottom eigenvalues, trace, spectral density.

For each checkpoint, the loss (the checkpoint's SDT or TET loss, or L_t = CE(O[t], y) of one time
step) is evaluated in eval mode on a fixed, seeded subset of the data, weighted exactly per sample.
The default curvature is the autograd "surrogate Hessian" (double backward through the surrogate
gradient; symmetric), analysed by Lanczos with residual control, Hutch++ and stochastic Lanczos
quadrature. --operator sg-jacobian instead takes the Jacobian of the surrogate-gradient field by
finite differences; it is not symmetric, so only its trace and asymmetry are reported.

Writes hessian.json (values, error bars, residuals, provenance), hessian.csv (long format, with
the analysed loss in its last column) and, with --density, hessian.npz and density.png into
<first checkpoint's folder>/analysis/.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import common  # noqa: E402
from analysis.inputs import LoadedObjective, load_objective, resolve_dtype  # noqa: E402
from analysis.spectrum import HessianConfig, all_converged, analyze, csv_rows  # noqa: E402
from landscape import atomic_write, save_json, save_npz  # noqa: E402
from training.config import ArgumentParser  # noqa: E402
from training.errors import ToolkitError  # noqa: E402

EPILOG = """example:
  python analysis/hessian.py runs/<run>/last.pt --loss tet --top-k 5 --density --out results/h
"""

POSITIVE = (
    "samples",
    "batch_size",
    "tol",
    "num_matvecs",
    "density_steps",
    "density_repeats",
    "max_steps",
    "asymmetry_probes",
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="hessian.py",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_checkpoint_args(parser)
    common.add_config_args(parser, HessianConfig)
    common.add_output_args(parser)
    return parser


def resolve_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> HessianConfig:
    """Validate flag combinations, fill defaults and apply --dry-run; exits 2 on bad input."""
    config = common.config_from_args(args, HessianConfig)
    if config.top_k is None:
        config = replace(config, top_k=5 if config.operator == "hessian" else 0)
    symmetric_only = config.top_k or config.bottom_k or config.density or config.per_layer
    if config.operator == "sg-jacobian" and symmetric_only:
        parser.error(
            "--operator sg-jacobian is not symmetric: --top-k, --bottom-k, --density and "
            "--per-layer need --operator hessian; sg-jacobian reports trace and asymmetry"
        )
    if min(config.top_k, config.bottom_k) < 0:
        parser.error(f"--top-k and --bottom-k must be >= 0, got {config.top_k}, {config.bottom_k}")
    for name in POSITIVE:
        value = getattr(config, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if config.time_step is not None and config.loss != "checkpoint":
        parser.error(f"--time-step analyses L_t = CE(O[t], y); drop --loss {config.loss}")
    minimum = 4 if config.trace == "hutch++" else 2
    if config.trace != "none" and config.num_matvecs < minimum:
        parser.error(f"--num-matvecs must be >= {minimum} for --trace {config.trace}")
    return dry_run(config) if args.dry_run else config


def dry_run(config: HessianConfig) -> HessianConfig:
    """Tiny settings for smoke tests: 32 samples, few products, loose tolerance."""
    return replace(
        config,
        samples=min(config.samples, 32),
        top_k=min(config.top_k, 2),
        bottom_k=min(config.bottom_k, 1),
        num_matvecs=min(config.num_matvecs, 6),
        density_steps=min(config.density_steps, 8),
        density_repeats=1,
        asymmetry_probes=2,
        tol=max(config.tol, 1e-2),
        max_steps=min(config.max_steps or 30, 30),
    )


def load_checkpoints(
    paths: list[Path], config: HessianConfig, parser: argparse.ArgumentParser
) -> list[LoadedObjective]:
    """Load every checkpoint and its objective before any compute; exits 2 on bad input."""
    try:
        device, dtype = common.resolve_device(config.device), resolve_dtype(config.dtype)
        loaded = [
            load_objective(
                path,
                config.data_spec(),
                loss=config.loss,
                time_step=config.time_step,
                device=device,
                dtype=dtype,
            )
            for path in paths
        ]
    except (ToolkitError, ValueError) as error:
        parser.error(str(error).splitlines()[0])
    for path, item in zip(paths, loaded):
        if max(config.top_k, config.bottom_k) > item.objective.num_params:
            parser.error(
                f"--top-k/--bottom-k exceed the {item.objective.num_params} parameters of {path}"
            )
    return loaded


def output_folder(args: argparse.Namespace) -> Path:
    """``--out`` or ``<first checkpoint's folder>/analysis``."""
    return args.out if args.out is not None else args.checkpoints[0].parent / "analysis"


def output_paths(args: argparse.Namespace, config: HessianConfig) -> dict[str, Path]:
    """Where the results go: ``--out`` or ``<first checkpoint's folder>/analysis``."""
    out = output_folder(args)
    paths = {"json": out / "hessian.json", "csv": out / "hessian.csv"}
    if config.density:
        paths.update(npz=out / "hessian.npz", png=out / "density.png")
    return paths


def write_outputs(paths: dict, records: list[dict], arrays: list[dict], config: HessianConfig):
    """hessian.json, hessian.csv and, with densities, hessian.npz and density.png (atomic)."""
    payload = {
        "kind": "hessian_spectrum",
        "format_version": 1,
        "settings": asdict(config),
        "results": records,
        "provenance": common.provenance(),
    }
    save_json(paths["json"], payload)
    header = ["checkpoint", "quantity", "index", "value", "stderr", "loss"]
    common.write_csv(paths["csv"], header, csv_rows(records))
    if config.density:
        save_npz(
            paths["npz"],
            {f"{i}/{key}": value for i, entry in enumerate(arrays) for key, value in entry.items()},
        )
        from analysis.plots_hessian import close, density_figure  # matplotlib only if needed

        figure = density_figure(records, arrays)
        atomic_write(paths["png"], lambda file: figure.savefig(file, format="png", dpi=120))
        close(figure)


def loss_label(name: str) -> str:
    """``tet(lambda=0.05, phi=1.0)`` -> ``TET``; ``sdt`` -> ``SDT``; ``ce_t0`` -> ``CE_T0``."""
    return name.split("(")[0].upper()


def print_table(records: list[dict]) -> None:
    """One row per checkpoint on stdout."""
    print(
        f"{'checkpoint':<36} {'loss':<6} {'lambda_max':>11} {'next top-k':<30} "
        f"{'lambda_min':>11} {'trace +- stderr':>22} {'HVPs':>6} {'seconds':>8}"
    )
    for record in records:
        top = record.get("top", {}).get("eigenvalues", [])
        bottom = record.get("bottom", {}).get("eigenvalues", [])
        trace = record.get("trace")
        trace_text = f"{trace['mean']:.4g} +- {trace['stderr']:.2g}" if trace else "-"
        others = ", ".join(f"{value:.4g}" for value in top[1:])[:30]
        print(
            f"{record['name'][:36]:<36} {loss_label(record['loss']):<6} "
            f"{(f'{top[0]:.5g}' if top else '-'):>11} {others:<30} "
            f"{(f'{bottom[0]:.5g}' if bottom else '-'):>11} {trace_text:>22} "
            f"{record['num_matvecs']:>6} {record['seconds']:>8.1f}"
        )
        if "asymmetry" in record:
            print(f"  ||J - J^T||_F / ||J||_F = {record['asymmetry']['relative']:.3g}")


@common.command
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve_config(args, parser)
    paths = output_paths(args, config)
    existing = common.existing_outputs(list(paths.values()))
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists; pass --overwrite or choose another --out")
    common.check_inputs(parser, args.checkpoints, output_folder(args))
    loaded = load_checkpoints(args.checkpoints, config, parser)
    try:
        results = [
            analyze(p, item, config, args.quiet) for p, item in zip(args.checkpoints, loaded)
        ]
    except RuntimeError as error:  # e.g. a non-deterministic model
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    records, arrays = [record for record, _ in results], [array for _, array in results]
    write_outputs(paths, records, arrays, config)
    print_table(records)
    print(f"wrote {', '.join(str(path) for path in paths.values())}")
    if config.strict and not all_converged(records):
        print("error: some eigenvalues did not converge (--strict)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

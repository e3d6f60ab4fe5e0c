"""Hessian spectrum of trained SNN checkpoints: top/bottom eigenvalues, trace, spectral density.

For each checkpoint, the loss (the checkpoint's SDT or TET loss, or L_t = CE(O[t], y) of one time
step) is evaluated in eval mode on a fixed, seeded subset of the data, weighted exactly per sample.
The default curvature is the autograd "surrogate Hessian" (double backward through the surrogate
gradient; symmetric), analysed by Lanczos with residual control, Hutch++ and stochastic Lanczos
quadrature. --operator sg-jacobian instead takes the Jacobian of the surrogate-gradient field by
finite differences; it is not symmetric, so only its trace and asymmetry are reported.

Writes hessian.json (values, error bars, residuals, provenance), hessian.csv (long format) and,
with --density, hessian.npz and density.png into <first checkpoint's folder>/analysis/.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from analysis import common  # noqa: E402
from analysis.common import option  # noqa: E402
from landscape import (  # noqa: E402
    HessianOperator,
    LinearOperator,
    Objective,
    SGFieldJacobianOperator,
    atomic_write,
    estimate_asymmetry,
    estimate_trace,
    parameter_groups,
    save_json,
    save_npz,
    spectral_density,
    top_eigenvalues,
)
from training.config import ArgumentParser  # noqa: E402
from training.errors import ToolkitError  # noqa: E402

OPERATORS = ("hessian", "sg-jacobian")


@dataclass(frozen=True)
class HessianConfig(common.DataConfig):
    """Settings of one invocation; recorded in hessian.json."""

    operator: str = option(
        "hessian",
        "hessian: autograd surrogate Hessian; sg-jacobian: finite-difference Jacobian of the "
        "surrogate-gradient field (use --dtype float64)",
        choices=OPERATORS,
    )
    top_k: int | None = option(None, "largest eigenvalues (None: 5 for hessian, 0 for sg-jacobian)")
    bottom_k: int = option(0, "smallest eigenvalues")
    trace: str = option("hutch++", "trace estimator", choices=("hutch++", "hutchinson", "none"))
    num_matvecs: int = option(99, "products for the trace estimate")
    density: bool = option(False, "spectral density by SLQ, with density.png")
    density_steps: int = option(80, "Lanczos steps per SLQ probe")
    density_repeats: int = option(5, "SLQ probes")
    per_layer: bool = option(False, "also top eigenvalues and trace of each layer's Hessian block")
    asymmetry_probes: int = option(10, "probe pairs for ||J - J^T|| / ||J|| (sg-jacobian)")
    tol: float = option(1e-3, "relative Ritz residual tolerance of the eigenvalues")
    max_steps: int | None = option(None, "largest Krylov dimension (None: max(100, 20 k))")
    strict: bool = option(False, "exit with status 1 if an eigenvalue did not converge")
    cache_graph: bool = option(
        True,
        "keep the gradient graph of all samples: an HVP is then one double-backward pass "
        "(~1.5x faster; more memory)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="hessian.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoints", nargs="+", type=Path, metavar="CKPT", help="checkpoints (.pt)"
    )
    common.add_config_args(parser, HessianConfig)
    common.add_output_args(parser)
    return parser


POSITIVE = ("samples", "batch_size", "tol", "num_matvecs", "density_steps", "density_repeats",
            "max_steps", "asymmetry_probes")  # fmt: skip


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
    return replace(config, samples=min(config.samples, 32), top_k=min(config.top_k, 2),
                   bottom_k=min(config.bottom_k, 1), num_matvecs=min(config.num_matvecs, 6),
                   density_steps=min(config.density_steps, 8), density_repeats=1,
                   asymmetry_probes=2, tol=max(config.tol, 1e-2),
                   max_steps=min(config.max_steps or 30, 30))  # fmt: skip


def load_checkpoints(
    paths: list[Path], config: HessianConfig, parser: argparse.ArgumentParser
) -> list[common.LoadedObjective]:
    """Load every checkpoint and its objective before any compute; exits 2 on bad input."""
    try:
        device, dtype = common.resolve_device(config.device), common.resolve_dtype(config.dtype)
        loaded = [
            common.load_objective(
                path,
                loss=config.loss,
                time_step=config.time_step,
                split=config.split,
                samples=config.samples,
                batch_size=config.batch_size,
                device=device,
                dtype=dtype,
                seed=config.seed,
            )
            for path in paths
        ]
    except (ToolkitError, ValueError) as error:
        parser.error(str(error).splitlines()[0])
    for path, item in zip(paths, loaded):
        if max(config.top_k, config.bottom_k) > item.objective.num_params:
            parser.error(
                f"--top-k/--bottom-k exceed the {item.objective.num_params} parameters "
                f"of {path}"
            )
    return loaded


def _generator(config: HessianConfig, offset: int) -> torch.Generator:
    # One stream per quantity, so a quantity does not change when others are added or dropped.
    return torch.Generator().manual_seed(config.seed * 1000 + offset)


def _operator(objective: Objective, config: HessianConfig, bar: tqdm) -> LinearOperator:
    if config.operator == "hessian":
        operator = HessianOperator(objective, use_cached_graph=config.cache_graph)
    else:
        operator = SGFieldJacobianOperator(objective)
    return common.ProgressOperator(operator, bar)


def spectrum(operator: LinearOperator, config: HessianConfig) -> tuple[dict, dict]:
    """Every requested quantity of one operator: (JSON record, density arrays for the .npz)."""
    record, arrays = {}, {}
    for key, k, which, offset in (
        ("top", config.top_k, "LA", 1),
        ("bottom", config.bottom_k, "SA", 2),
    ):
        if k:
            result = top_eigenvalues(
                operator,
                k,
                which,
                config.tol,
                config.max_steps,
                generator=_generator(config, offset),
                return_vectors=False,
            )
            record[key] = result.to_dict()
    if config.trace != "none":
        trace = estimate_trace(operator, config.num_matvecs, config.trace, _generator(config, 3))
        record["trace"] = trace.to_dict()
    if config.density:
        density = spectral_density(
            operator, config.density_steps, config.density_repeats, _generator(config, 4)
        )
        arrays = {
            "grid": density.grid,
            "density": density.density,
            "nodes": density.nodes,
            "weights": density.weights,
        }
        record["density"] = {"sigma": density.sigma, "num_matvecs": density.num_matvecs}
    if not operator.is_symmetric:
        asymmetry = estimate_asymmetry(operator, config.asymmetry_probes, _generator(config, 5))
        record["asymmetry"] = asymmetry.to_dict()
    return record, arrays


def per_layer(loaded: common.LoadedObjective, config: HessianConfig, bar: tqdm) -> dict:
    """Top eigenvalues and trace of each layer's diagonal Hessian block."""
    layers = {}
    for layer, names in parameter_groups(loaded.model).items():
        objective = Objective(
            loaded.model,
            loaded.objective.loss_fn,
            loaded.batches,
            param_names=names,
            dtype=loaded.objective.dtype,
            device=loaded.objective.device,
        )
        layer_config = replace(
            config, top_k=min(config.top_k, objective.num_params), bottom_k=0, density=False
        )
        record, _ = spectrum(_operator(objective, layer_config, bar), layer_config)
        layers[layer] = {"parameters": names, "num_params": objective.num_params, **record}
    return layers


def analyze(path: Path, loaded: common.LoadedObjective, config: HessianConfig, quiet: bool):
    """All requested quantities for one checkpoint: (JSON record, density arrays).

    Raises:
        RuntimeError: If the objective is not deterministic.
    """
    start, objective = time.perf_counter(), loaded.objective
    objective.check_deterministic(_generator(config, 0))
    with tqdm(desc=path.parent.name, unit="HVP", file=sys.stderr, disable=quiet) as bar:
        operator = _operator(objective, config, bar)
        record, arrays = spectrum(operator, config)
        if config.per_layer:
            record["per_layer"] = per_layer(loaded, config, bar)
    header = {
        "checkpoint": {"path": str(path), "sha256": common.file_sha256(path)},
        "name": path.parent.name,
        "method": loaded.config.get("method"),
        "config": loaded.config,
        "loss": loaded.loss_name,
        "time_step": config.time_step,
        "curvature": operator.curvature,
        "is_symmetric": operator.is_symmetric,
        "data": loaded.data,
        "model_mode": "eval",
        "dtype": str(objective.dtype),
        "device": str(objective.device),
        "num_params": objective.num_params,
        "loss_value": objective.loss().item(),
        "grad_norm": objective.grad().norm().item(),
    }
    seconds = time.perf_counter() - start
    return {**header, **record, "num_matvecs": count_matvecs(record), "seconds": seconds}, arrays


def count_matvecs(record: dict) -> int:
    """Products used by every quantity of a record, per-layer blocks included."""
    keys = ("top", "bottom", "trace", "density", "asymmetry")
    total = sum(record[key]["num_matvecs"] for key in keys if key in record)
    return total + sum(count_matvecs(layer) for layer in record.get("per_layer", {}).values())


def csv_rows(records: list[dict]) -> list[list]:
    """Long-format rows ``(checkpoint, quantity, index, value, stderr)``."""
    rows = []
    for record in records:
        path = record["checkpoint"]["path"]
        rows += [[path, "loss", 0, record["loss_value"], ""]]
        rows += [[path, "grad_norm", 0, record["grad_norm"], ""]]
        for prefix, entry in [("", record)] + [
            (f"layer/{layer}/", entry) for layer, entry in record.get("per_layer", {}).items()
        ]:
            for key in ("top", "bottom"):
                values = zip(
                    entry.get(key, {}).get("eigenvalues", []),
                    entry.get(key, {}).get("residuals", []),
                )
                for index, (value, residual) in enumerate(values):
                    rows.append([path, f"{prefix}{key}_eigenvalue", index, value, ""])
                    rows.append([path, f"{prefix}{key}_residual", index, residual, ""])
            if "trace" in entry:
                trace = entry["trace"]
                rows.append([path, f"{prefix}trace", 0, trace["mean"], trace["stderr"]])
            if "asymmetry" in entry:
                asymmetry = entry["asymmetry"]["relative"]
                rows.append([path, f"{prefix}asymmetry", 0, asymmetry, ""])
    return rows


def output_paths(args: argparse.Namespace, config: HessianConfig) -> dict[str, Path]:
    """Where the results go: ``--out`` or ``<first checkpoint's folder>/analysis``."""
    out = args.out if args.out is not None else args.checkpoints[0].parent / "analysis"
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
    header = ["checkpoint", "quantity", "index", "value", "stderr"]
    common.write_csv(paths["csv"], header, csv_rows(records))
    if config.density:
        save_npz(
            paths["npz"],
            {f"{i}/{key}": value for i, entry in enumerate(arrays) for key, value in entry.items()},
        )
        plot_density(paths["png"], records, arrays)


def plot_density(path: Path, records: list[dict], arrays: list[dict]) -> None:
    """Semilog SLQ densities of all checkpoints in one figure (Ghorbani et al. 2019 style)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for record, entry in zip(records, arrays):
        label = f"{record['name']} ({str(record['method']).upper()})"
        axes.semilogy(entry["grid"].numpy(), entry["density"].clamp_min(1e-12).numpy(), label=label)
    axes.set(
        xlabel="eigenvalue",
        ylabel="density",
        ylim=(1e-6, None),
        title=f"{records[0]['curvature']} spectral density (SLQ)",
    )
    axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=120))
    plt.close(figure)


def print_table(records: list[dict]) -> None:
    """One row per checkpoint on stdout."""
    print(
        f"{'checkpoint':<36} {'method':<6} {'lambda_max':>11} {'next top-k':<30} "
        f"{'lambda_min':>11} {'trace +- stderr':>22} {'HVPs':>6} {'seconds':>8}"
    )
    for record in records:
        top = record.get("top", {}).get("eigenvalues", [])
        bottom = record.get("bottom", {}).get("eigenvalues", [])
        trace = record.get("trace")
        trace_text = f"{trace['mean']:.4g} +- {trace['stderr']:.2g}" if trace else "-"
        others = ", ".join(f"{value:.4g}" for value in top[1:])[:30]
        print(
            f"{record['name'][:36]:<36} {str(record['method']).upper():<6} "
            f"{(f'{top[0]:.5g}' if top else '-'):>11} {others:<30} "
            f"{(f'{bottom[0]:.5g}' if bottom else '-'):>11} {trace_text:>22} "
            f"{record['num_matvecs']:>6} {record['seconds']:>8.1f}"
        )
        if "asymmetry" in record:
            print(f"  ||J - J^T||_F / ||J||_F = {record['asymmetry']['relative']:.3g}")


def all_converged(records: list[dict]) -> bool:
    """Whether every eigenvalue of every record (and layer) met the tolerance."""
    entries = [e for r in records for e in [r, *r.get("per_layer", {}).values()]]
    return all(all(e[key]["converged"]) for e in entries for key in ("top", "bottom") if key in e)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve_config(args, parser)
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        parser.error(f"checkpoint not found: {', '.join(missing)}")
    paths = output_paths(args, config)
    existing = common.existing_outputs(list(paths.values()))
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists; pass --overwrite or choose another --out")
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

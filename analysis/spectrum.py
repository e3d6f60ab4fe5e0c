"""Hessian spectrum of one checkpoint's objective: the settings and the estimators they call.

The library under ``analysis/hessian.py``: :class:`HessianConfig` (the command's flags are
generated from it), :func:`analyze` (every requested quantity of one checkpoint, as a JSON-ready
record and density arrays) and :func:`csv_rows` (the long-format table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from analysis.common import DataConfig, Progress, ProgressOperator, option
from analysis.inputs import LoadedObjective, file_sha256
from landscape import (
    HessianOperator,
    LinearOperator,
    Objective,
    SGFieldJacobianOperator,
    estimate_asymmetry,
    estimate_trace,
    parameter_groups,
    spectral_density,
    top_eigenvalues,
)

__all__ = [
    "OPERATORS",
    "HessianConfig",
    "all_converged",
    "analyze",
    "count_matvecs",
    "csv_rows",
    "per_layer",
    "spectrum",
]

OPERATORS = ("hessian", "sg-jacobian")


@dataclass(frozen=True)
class HessianConfig(DataConfig):
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


def _generator(config: HessianConfig, offset: int) -> torch.Generator:
    # One stream per quantity, so a quantity does not change when others are added or dropped.
    return torch.Generator().manual_seed(config.seed * 1000 + offset)


def _operator(objective: Objective, config: HessianConfig, bar: Progress) -> LinearOperator:
    if config.operator == "hessian":
        operator = HessianOperator(objective, use_cached_graph=config.cache_graph)
    else:
        operator = SGFieldJacobianOperator(objective)
    return ProgressOperator(operator, bar)


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


def per_layer(loaded: LoadedObjective, config: HessianConfig, bar: Progress) -> dict:
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


def analyze(path: Path, loaded: LoadedObjective, config: HessianConfig, quiet: bool):
    """All requested quantities for one checkpoint: (JSON record, density arrays).

    Raises:
        RuntimeError: If the objective is not deterministic.
    """
    start, objective = time.perf_counter(), loaded.objective
    objective.check_deterministic(_generator(config, 0))
    total = expected_matvecs(config, objective.num_params)
    with Progress(total, f"Hessian of {path}", "HVP", quiet, estimate=True) as bar:
        operator = _operator(objective, config, bar)
        record, arrays = spectrum(operator, config)
        if config.per_layer:
            record["per_layer"] = per_layer(loaded, config, bar)
    header = {
        "checkpoint": {"path": str(path), "sha256": file_sha256(path)},
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


def expected_matvecs(config: HessianConfig, num_params: int) -> int:
    """An upper estimate of the products of one checkpoint (Lanczos may converge sooner)."""
    steps = [config.max_steps or max(100, 20 * k) for k in (config.top_k, config.bottom_k) if k]
    total = sum(min(step, num_params) for step in steps)
    total += config.num_matvecs if config.trace != "none" else 0
    total += config.density_steps * config.density_repeats if config.density else 0
    total += 2 * config.asymmetry_probes if config.operator != "hessian" else 0
    return total * (2 if config.per_layer else 1)


def count_matvecs(record: dict) -> int:
    """Products used by every quantity of a record, per-layer blocks included."""
    keys = ("top", "bottom", "trace", "density", "asymmetry")
    total = sum(record[key]["num_matvecs"] for key in keys if key in record)
    return total + sum(count_matvecs(layer) for layer in record.get("per_layer", {}).values())


def csv_rows(records: list[dict]) -> list[list]:
    """Long-format rows ``(checkpoint, quantity, index, value, stderr, loss)``."""
    return [row + [record["loss"]] for record in records for row in _rows(record)]


def _rows(record: dict) -> list[list]:
    """Rows ``(checkpoint, quantity, index, value, stderr)`` of one record."""
    rows = []
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


def all_converged(records: list[dict]) -> bool:
    """Whether every eigenvalue of every record (and layer) met the tolerance."""
    entries = [e for r in records for e in [r, *r.get("per_layer", {}).values()]]
    return all(all(e[key]["converged"]) for e in entries for key in ("top", "bottom") if key in e)

"""The Hessian spectrum of one checkpoint's loss: top/bottom eigenvalues, trace, density, blocks.

The measure behind ``analysis/hessian.py``. The default curvature is the autograd surrogate
Hessian (double backward through the surrogate gradient; symmetric), analysed by Lanczos with
residual control, Hutch++ and stochastic Lanczos quadrature; ``sg-jacobian`` takes the Jacobian
of the surrogate-gradient field by finite differences instead, which is not symmetric, so only
its trace and asymmetry are reported. Every quantity draws from its own random stream
(``seed * 1000 + offset``), so a quantity does not change when others are added or dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from analysis.measures.inputs import EvalInput, Evaluation
from analysis.measures.registry import CheckpointMeasure, MeasureResult, register
from landscape.density import spectral_density
from landscape.lanczos import top_eigenvalues
from landscape.operators import (
    HessianOperator,
    LinearOperator,
    SGFieldJacobianOperator,
    estimate_asymmetry,
)
from landscape.params import parameter_groups
from landscape.trace import estimate_trace
from toolkit.errors import ConfigError
from toolkit.progress import Progress
from toolkit.settings import check, option

__all__ = ["COLUMNS", "OPERATORS", "SpectrumSettings", "all_converged", "count_matvecs"]

OPERATORS = ("hessian", "sg-jacobian")
COLUMNS = ("checkpoint", "quantity", "index", "value", "stderr", "loss")


@dataclass(frozen=True)
class SpectrumSettings:
    """What to compute of the spectrum; recorded in hessian.json."""

    operator: str = option(
        "hessian",
        "hessian: autograd surrogate Hessian; sg-jacobian: finite-difference Jacobian of the "
        "surrogate-gradient field (use --dtype float64)",
        choices=OPERATORS,
    )
    top_k: int | None = option(
        None, "largest eigenvalues (None: 5 for hessian, 0 for sg-jacobian)", minimum=0
    )
    bottom_k: int = option(0, "smallest eigenvalues", minimum=0)
    trace: str = option(
        "hutch++", "trace estimator", choices=("hutch++", "xtrace", "hutchinson", "none")
    )
    num_matvecs: int = option(99, "products for the trace estimate", minimum=2)
    density: bool = option(False, "spectral density by SLQ, with density.png")
    density_steps: int = option(80, "Lanczos steps per SLQ probe", minimum=1)
    density_repeats: int = option(5, "SLQ probes", minimum=1)
    per_layer: bool = option(False, "also top eigenvalues and trace of each layer's Hessian block")
    asymmetry_probes: int = option(
        10, "probe pairs for ||J - J^T|| / ||J|| (sg-jacobian)", minimum=1
    )
    tol: float = option(1e-3, "relative Ritz residual tolerance of the eigenvalues", above=0.0)
    max_steps: int | None = option(
        None, "largest Krylov dimension (None: max(100, 20 k))", minimum=1
    )
    strict: bool = option(False, "exit with status 1 if an eigenvalue did not converge")
    cache_graph: bool = option(
        True,
        "keep the gradient graph of all samples: an HVP is then one double-backward pass "
        "(~1.5x faster; more memory)",
    )

    def __post_init__(self) -> None:
        check(self)
        if self.top_k is None:
            object.__setattr__(self, "top_k", 5 if self.operator == "hessian" else 0)
        symmetric_only = self.top_k or self.bottom_k or self.density or self.per_layer
        if self.operator == "sg-jacobian" and symmetric_only:
            raise ConfigError(
                "--operator sg-jacobian is not symmetric: --top-k, --bottom-k, --density and "
                "--per-layer need --operator hessian; sg-jacobian reports trace and asymmetry"
            )
        minimum = 4 if self.trace in ("hutch++", "xtrace") else 2
        if self.trace != "none" and self.num_matvecs < minimum:
            raise ConfigError(f"--num-matvecs must be >= {minimum} for --trace {self.trace}")

    def dry_run(self) -> SpectrumSettings:
        """Tiny settings for smoke tests: few products, a loose tolerance."""
        return replace(
            self,
            top_k=min(self.top_k, 2),
            bottom_k=min(self.bottom_k, 1),
            num_matvecs=min(self.num_matvecs, 6),
            density_steps=min(self.density_steps, 8),
            density_repeats=1,
            asymmetry_probes=2,
            tol=max(self.tol, 1e-2),
            max_steps=min(self.max_steps or 30, 30),
        )


def _generator(seed: int, offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + offset)


class ProgressOperator(LinearOperator):
    """Counts every product on a progress bar; otherwise the wrapped operator."""

    def __init__(self, operator: LinearOperator, bar: Progress) -> None:
        super().__init__(operator.shape[0], operator.dtype, operator.device, operator.is_symmetric)
        self.operator, self.bar, self.curvature = operator, bar, operator.curvature
        self.block_size = operator.block_size

    def _matvec(self, v):
        self.bar.update(1)
        return self.operator @ v

    def _matmat(self, V):  # a block stays one batched call of the operator
        self.bar.update(V.shape[1])
        return self.operator @ V


def _operator(objective, settings: SpectrumSettings, bar: Progress) -> LinearOperator:
    if settings.operator == "hessian":
        operator = HessianOperator(objective, use_cached_graph=settings.cache_graph)
    else:
        operator = SGFieldJacobianOperator(objective)
    return ProgressOperator(operator, bar)


def quantities(
    operator: LinearOperator, settings: SpectrumSettings, seed: int
) -> tuple[dict, dict]:
    """Every requested quantity of one operator: (JSON record, density arrays for the .npz)."""
    s, record, arrays = settings, {}, {}
    for key, k, which, offset in (("top", s.top_k, "LA", 1), ("bottom", s.bottom_k, "SA", 2)):
        if k:
            result = top_eigenvalues(
                operator,
                k,
                which,
                s.tol,
                s.max_steps,
                generator=_generator(seed, offset),
                return_vectors=False,
            )
            record[key] = result.to_dict()
    if s.trace != "none":
        trace = estimate_trace(operator, s.num_matvecs, s.trace, _generator(seed, 3))
        record["trace"] = trace.to_dict()
    if s.density:
        density = spectral_density(
            operator, s.density_steps, s.density_repeats, _generator(seed, 4)
        )
        arrays = {
            "grid": density.grid,
            "density": density.density,
            "nodes": density.nodes,
            "weights": density.weights,
        }
        record["density"] = {"sigma": density.sigma, "num_matvecs": density.num_matvecs}
    if not operator.is_symmetric:
        asymmetry = estimate_asymmetry(operator, s.asymmetry_probes, _generator(seed, 5))
        record["asymmetry"] = asymmetry.to_dict()
    return record, arrays


def per_layer(
    input: EvalInput, settings: SpectrumSettings, evaluation: Evaluation, bar: Progress
) -> dict:
    """Top eigenvalues and trace of each layer's diagonal Hessian block."""
    layers = {}
    for layer, names in parameter_groups(input.model).items():
        objective = input.loss(
            evaluation.loss,
            evaluation.time_step,
            param_names=names,
            dtype=evaluation.dtype,
            device=evaluation.device,
        ).objective
        layer_settings = replace(
            settings, top_k=min(settings.top_k, objective.num_params), bottom_k=0, density=False
        )
        operator = _operator(objective, layer_settings, bar)
        record, _ = quantities(operator, layer_settings, evaluation.seed)
        layers[layer] = {"parameters": names, "num_params": objective.num_params, **record}
    return layers


def compute(input: EvalInput, settings: SpectrumSettings, evaluation: Evaluation) -> MeasureResult:
    """Every requested quantity of one checkpoint: rows, the JSON record and density arrays.

    Raises:
        ConfigError: If more eigenvalues are asked for than the model has parameters.
        RuntimeError: If the objective is not deterministic.
    """
    start, path = time.perf_counter(), input.checkpoint.path
    loss = input.loss(
        evaluation.loss, evaluation.time_step, dtype=evaluation.dtype, device=evaluation.device
    )
    objective = loss.objective
    if max(settings.top_k, settings.bottom_k) > objective.num_params:
        raise ConfigError(
            f"--top-k/--bottom-k exceed the {objective.num_params} parameters of {path}"
        )
    objective.check_deterministic(_generator(evaluation.seed, 0))
    total = expected_matvecs(settings, objective.num_params)
    with Progress(total, f"Hessian of {path}", "HVP", evaluation.quiet, estimate=True) as bar:
        operator = _operator(objective, settings, bar)
        record, arrays = quantities(operator, settings, evaluation.seed)
        if settings.per_layer:
            record["per_layer"] = per_layer(input, settings, evaluation, bar)
    header = {
        "checkpoint": input.checkpoint.record,
        "name": path.parent.name,
        "method": input.config.method,
        "config": input.config,
        "loss": loss.name,
        "time_step": evaluation.time_step,
        "curvature": operator.curvature,
        "is_symmetric": operator.is_symmetric,
        "data": input.data,
        "model_mode": "eval",
        "dtype": str(objective.dtype),
        "device": str(objective.device),
        "num_params": objective.num_params,
        "loss_value": objective.loss().item(),
        "grad_norm": objective.grad().norm().item(),
    }
    seconds = time.perf_counter() - start
    record = {**header, **record, "num_matvecs": count_matvecs(record), "seconds": seconds}
    return MeasureResult(rows(record), record, arrays)


def expected_matvecs(settings: SpectrumSettings, num_params: int) -> int:
    """An upper estimate of the products of one checkpoint (Lanczos may converge sooner)."""
    s = settings
    steps = [s.max_steps or max(100, 20 * k) for k in (s.top_k, s.bottom_k) if k]
    total = sum(min(step, num_params) for step in steps)
    total += s.num_matvecs if s.trace != "none" else 0
    total += s.density_steps * s.density_repeats if s.density else 0
    total += 2 * s.asymmetry_probes if s.operator != "hessian" else 0
    return total * (2 if s.per_layer else 1)


def count_matvecs(record: dict) -> int:
    """Products used by every quantity of a record, per-layer blocks included."""
    keys = ("top", "bottom", "trace", "density", "asymmetry")
    total = sum(record[key]["num_matvecs"] for key in keys if key in record)
    return total + sum(count_matvecs(layer) for layer in record.get("per_layer", {}).values())


def rows(record: dict) -> list[dict]:
    """Long-format rows of :data:`COLUMNS` of one checkpoint's record."""
    path, loss = record["checkpoint"]["path"], record["loss"]

    def row(quantity: str, index: int, value, stderr="") -> dict:
        return dict(zip(COLUMNS, (path, quantity, index, value, stderr, loss)))

    found = [row("loss", 0, record["loss_value"]), row("grad_norm", 0, record["grad_norm"])]
    blocks = [("", record)]
    blocks += [(f"layer/{name}/", entry) for name, entry in record.get("per_layer", {}).items()]
    for prefix, entry in blocks:
        for key in ("top", "bottom"):
            values = entry.get(key, {})
            pairs = zip(values.get("eigenvalues", []), values.get("residuals", []))
            for index, (value, residual) in enumerate(pairs):
                found.append(row(f"{prefix}{key}_eigenvalue", index, value))
                found.append(row(f"{prefix}{key}_residual", index, residual))
        if "trace" in entry:
            found.append(row(f"{prefix}trace", 0, entry["trace"]["mean"], entry["trace"]["stderr"]))
        if "asymmetry" in entry:
            found.append(row(f"{prefix}asymmetry", 0, entry["asymmetry"]["relative"]))
    return found


def all_converged(records: list[dict]) -> bool:
    """Whether every eigenvalue of every record (and layer) met the tolerance."""
    entries = [e for r in records for e in [r, *r.get("per_layer", {}).values()]]
    return all(all(e[key]["converged"]) for e in entries for key in ("top", "bottom") if key in e)


HESSIAN = register(
    CheckpointMeasure(
        "hessian",
        SpectrumSettings,
        compute,
        COLUMNS,
        "hessian.csv",
        summary="top/bottom eigenvalues, trace, SLQ density and layer blocks of the Hessian",
    )
)

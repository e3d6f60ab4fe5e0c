"""Flatness of one checkpoint for one loss: raw, normalized and adaptive measures side by side.

The library under ``analysis/flatness.py``. For a checkpoint and a loss (``sdt``, ``tet`` with the
checkpoint's lambda and phi, or ``ce_t<t>``: ``L_t = CE(O(t), y)`` of time step ``t``) it returns
one row per measure (:data:`HEADER`):

- ``lambda_max``, ``trace``: top eigenvalue (Lanczos) and Hutch++ trace of the autograd surrogate
  Hessian ``H``, as ``analysis/hessian.py`` computes them;
- ``epsilon_sharpness``: Keskar et al. (2017), :func:`landscape.sharpness.epsilon_sharpness`;
- ``normalized_lambda_max``, ``normalized_trace``: the same estimators on
  ``diag(|w|) H diag(|w|)`` (:func:`landscape.normalized.normalized_hessian`), invariant to
  rescaling a layer that feeds a BatchNorm (Dinh et al. 2017);
- ``adaptive_worst``, ``adaptive_average``: Kwon et al. (2021) / Andriushchenko et al. (2023),
  :mod:`landscape.adaptive`.

Per-time-step losses get the curvature measures of :data:`PER_STEP_MEASURES` only (λ_max and
trace). Every random quantity draws from its own stream, seeded by the measure and not by the
loss or the checkpoint, so all checkpoints and losses share the same probes (common random numbers
make paired differences less noisy). :class:`FlatnessSettings` holds every setting; its defaults
were fixed before any study result was looked at (issue 12).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.inputs import DataSpec, LoadedObjective, load_objective, resolve_dtype
from landscape.adaptive import adaptive_average, adaptive_worst_case
from landscape.lanczos import top_eigenvalues
from landscape.normalized import NormalizedOperator, weight_scale
from landscape.operators import HessianOperator, LinearOperator
from landscape.sharpness import epsilon_sharpness
from landscape.trace import estimate_trace
from training.config import option

__all__ = [
    "HEADER",
    "MEASURES",
    "PER_STEP_MEASURES",
    "FlatnessSettings",
    "loss_names",
    "parse_loss",
    "checkpoint_rows",
    "flatness_rows",
]

HEADER = [
    "checkpoint",
    "run",
    "method",
    "seed",
    "loss",
    "measure",
    "value",
    "stderr",
    "converged",
    "num_evaluations",
    "seconds",
]
CURVATURE = ("lambda_max", "trace", "normalized_lambda_max", "normalized_trace")
MEASURES = (
    *CURVATURE[:2],
    "epsilon_sharpness",
    *CURVATURE[2:],
    "adaptive_worst",
    "adaptive_average",
)
PER_STEP_MEASURES = CURVATURE[:2]
_STREAM = {
    "lambda_max": 1,
    "trace": 2,
    "epsilon_sharpness": 3,
    "adaptive_worst": 4,
    "adaptive_average": 5,
}


@dataclass(frozen=True)
class FlatnessSettings:
    """Every setting of the flatness measures (recorded in flatness.json); defaults fixed up front.

    The defaults keep one MNIST-1D checkpoint (8,042 parameters, T = 4) at about 25 CPU seconds
    with the per-step losses (one Hessian-vector product over 512 samples was measured at ~0.2 CPU
    s, so 256 samples): Lanczos to a 1e-2 relative residual (the eigenvalue's error is of the
    order of the residual squared), a 15-product Hutch++ trace (its stderr is recorded).
    """

    samples: int = option(256, "size of the fixed, seeded subset of the training split")
    split: str = option("train", "split of the samples", choices=("train", "test"))
    data_seed: int = option(0, "seed of the sample subset")
    batch_size: int = option(256, "samples per forward pass (results do not depend on it)")
    dtype: str = option(
        "float32", "dtype of parameters and products", choices=("float32", "float64")
    )
    probe_seed: int = option(0, "seed of every random probe, start and draw")
    lanczos_tol: float = option(1e-2, "relative Ritz residual tolerance of lambda_max")
    lanczos_max_steps: int = option(30, "largest Krylov dimension for lambda_max")
    trace_method: str = option("hutch++", "trace estimator", choices=("hutch++", "hutchinson"))
    trace_matvecs: int = option(15, "Hessian-vector products per trace estimate")
    epsilon: float = option(1e-3, "epsilon-sharpness box radius relative to |w| + 1 (Keskar)")
    epsilon_steps: int = option(10, "projected sign-ascent steps of epsilon-sharpness")
    adaptive_p: float = option(math.inf, "norm of the adaptive worst-case ball: 2 or inf")
    adaptive_rho: float = option(
        0.01, "adaptive worst-case radius in units of |w| (inf: every weight moves <= 1 %)"
    )
    adaptive_steps: int = option(10, "projected ascent steps of the adaptive worst case")
    ascent_step_fraction: float = option(0.25, "ascent step as a fraction of the radius")
    average_rho: float = option(0.05, "adaptive average: delta ~ N(0, rho^2 diag(|w|)^2)")
    average_samples: int = option(16, "draws of the adaptive average")
    eta: float = option(0.0, "added to |w| in the normalized and adaptive measures")
    per_step: bool = option(True, "also lambda_max and trace of every L_t = CE(O(t), y)")

    def data_spec(self) -> DataSpec:
        """The evaluation samples."""
        return DataSpec(self.split, self.samples, self.data_seed, self.batch_size)

    def generator(self, measure: str) -> torch.Generator:
        """The measure's own random stream (shared by every loss and checkpoint)."""
        key = measure.removeprefix("normalized_")
        return torch.Generator().manual_seed(self.probe_seed * 1000 + _STREAM[key])

    def to_dict(self) -> dict:
        """Plain types (``inf`` as the string ``"inf"``)."""
        return {k: ("inf" if v == math.inf else v) for k, v in dataclasses.asdict(self).items()}


def loss_names(T: int, per_step: bool) -> list[str]:
    """``sdt``, ``tet`` and, with ``per_step``, ``ce_t0`` .. ``ce_t{T-1}``."""
    return ["sdt", "tet"] + ([f"ce_t{t}" for t in range(T)] if per_step else [])


def parse_loss(name: str) -> tuple[str, int | None]:
    """``"sdt"`` -> ``("sdt", None)``; ``"ce_t2"`` -> ``("checkpoint", 2)`` (load_objective's args).

    Raises:
        ValueError: On another name.
    """
    if name in ("sdt", "tet"):
        return name, None
    if name.startswith("ce_t") and name[4:].isdigit():
        return "checkpoint", int(name[4:])
    raise ValueError(f"loss must be sdt, tet or ce_t<t>, got {name!r}")


def _lambda_max(
    operator: LinearOperator, settings: FlatnessSettings
) -> tuple[float, float, bool, int]:
    generator = settings.generator("lambda_max")
    result = top_eigenvalues(
        operator,
        1,
        "LA",
        settings.lanczos_tol,
        settings.lanczos_max_steps,
        generator=generator,
        return_vectors=False,
    )
    return float(result.eigenvalues[0]), float("nan"), bool(result.converged[0]), result.num_matvecs


def _trace(operator: LinearOperator, settings: FlatnessSettings) -> tuple[float, float, bool, int]:
    result = estimate_trace(
        operator, settings.trace_matvecs, settings.trace_method, settings.generator("trace")
    )
    return result.mean, result.stderr, True, result.num_matvecs


def _curvature(objective, settings: FlatnessSettings, measures) -> dict[str, tuple]:
    """Raw and normalized λ_max and trace that ``measures`` asks for (one cached graph)."""
    hessian = HessianOperator(objective)
    normalized = NormalizedOperator(hessian, weight_scale(objective, eta=settings.eta))
    found = {}
    for name in CURVATURE:
        if name in measures:
            operator = normalized if name.startswith("normalized_") else hessian
            estimate = _lambda_max if name.endswith("lambda_max") else _trace
            found[name] = _timed(lambda: estimate(operator, settings))
    return found


def _timed(compute) -> tuple:
    """Time ``compute() -> (value, stderr, converged, products)``; add the seconds."""
    start = time.perf_counter()
    return (*compute(), time.perf_counter() - start)


def _sharpness(objective, settings: FlatnessSettings) -> dict[str, tuple]:
    """epsilon-sharpness, adaptive worst case and adaptive average."""
    s = settings

    def epsilon():
        found = epsilon_sharpness(
            objective,
            s.epsilon,
            s.epsilon_steps,
            s.ascent_step_fraction,
            s.generator("epsilon_sharpness"),
        )
        return found.value, float("nan"), True, 2 * found.num_gradients

    def worst():
        found = adaptive_worst_case(
            objective,
            s.adaptive_rho,
            s.adaptive_p,
            s.adaptive_steps,
            s.ascent_step_fraction,
            s.eta,
            generator=s.generator("adaptive_worst"),
        )
        return found.value, float("nan"), True, 2 * found.num_gradients

    def average():
        found = adaptive_average(
            objective,
            s.average_rho,
            s.average_samples,
            s.eta,
            generator=s.generator("adaptive_average"),
        )
        return found.value, found.stderr, True, found.num_samples

    return {
        "epsilon_sharpness": _timed(epsilon),
        "adaptive_worst": _timed(worst),
        "adaptive_average": _timed(average),
    }


def flatness_rows(
    loaded: LoadedObjective, loss: str, settings: FlatnessSettings, label: dict
) -> list[list]:
    """Rows of :data:`HEADER` for one loaded objective (one checkpoint, one loss).

    Args:
        loaded: From :func:`analysis.inputs.load_objective`.
        loss: Its name (``sdt``, ``tet`` or ``ce_t<t>``): which measures apply.
        settings: The measures' settings.
        label: ``checkpoint``, ``run``, ``method`` and ``seed`` values for the rows.
    """
    measures = PER_STEP_MEASURES if loss.startswith("ce_t") else MEASURES
    found = _curvature(loaded.objective, settings, measures)
    if not loss.startswith("ce_t"):
        found.update(_sharpness(loaded.objective, settings))
    head = [label["checkpoint"], label["run"], label["method"], label["seed"], loss]
    return [head + [name, *found[name]] for name in measures]


def checkpoint_rows(path: str | Path, settings: FlatnessSettings, losses: list[str] | None = None):
    """Every measure of every loss of one checkpoint: rows of :data:`HEADER`.

    Args:
        path: A checkpoint (``last.pt``).
        settings: The measures' settings.
        losses: Names (default: :func:`loss_names` of the checkpoint's T and ``per_step``).

    Returns:
        ``(rows, record)``: the rows, and a record of the checkpoint (path, data subset, config).
    """
    path, dtype, spec = Path(path), resolve_dtype(settings.dtype), settings.data_spec()
    first = load_objective(path, spec, loss="sdt", dtype=dtype)
    config = first.config
    losses = list(losses or loss_names(int(config["T"]), settings.per_step))
    label = {
        "checkpoint": str(path),
        "run": path.parent.name,
        "method": config["method"],
        "seed": int(config["seed"]),
    }
    rows = []
    for name in losses:
        base, step = parse_loss(name)
        loaded = first
        if name != "sdt":
            loaded = load_objective(path, spec, loss=base, time_step=step, dtype=dtype)
        rows += flatness_rows(loaded, name, settings, label)
    return rows, {"checkpoint": str(path), "data": first.data, "config": config}

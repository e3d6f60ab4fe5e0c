"""The flatness protocol: every registered loss measure of every loss of a checkpoint.

For a checkpoint and each loss (``sdt``, ``tet`` at the run's λ and φ, with ``fixed_tet_lambda``
also TET at that λ for every run, and with ``per_step`` every ``L_t = CE(O(t), y)``), every
:class:`~analysis.measures.registry.LossMeasure` of the registry (raw and normalized curvature,
ε-sharpness, adaptive sharpness) gives one row of :data:`HEADER` (a sweep of radii one row per
radius), with its standard error, convergence flag, cost and first-order part (``tet@<λ>`` at
the run's own λ is the run's L_TET: its rows are copied, with 0 seconds); per-time-step
losses get the ``per_step`` measures only, on a smaller subset (``per_step_samples``, the first
samples of the main subset). Every random quantity
draws from its measure's own stream, seeded by the measure and not by the loss or the
checkpoint, so all checkpoints and losses share the same probes (common random numbers make
paired differences less noisy).

:class:`FlatnessSettings` is the protocol the study commits to: the data subset, the probe seed
and every measure's settings (declared by the measures, listed here so that ``flatness.json``
records all of them); its defaults were fixed before any study result was looked at (issue 12).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, replace

import torch

from analysis.measures.curvature import (
    LambdaMaxSettings,
    NormalizedLambdaMaxSettings,
    TraceSettings,
)
from analysis.measures.inputs import (
    DataSettings,
    DataSpec,
    EvalInput,
    Evaluation,
    resolve_dtype,
)
from analysis.measures.registry import LossMeasure, loss_measures
from analysis.measures.sharpness import (
    AdaptiveAverageSettings,
    AdaptiveWorstSettings,
    EpsilonSettings,
)
from toolkit.progress import Progress
from toolkit.settings import check, option, same_as

__all__ = ["HEADER", "SUBSETS", "FlatnessSettings", "checkpoint_rows"]

SUBSETS = ("main", "per_step", "ascent")

HEADER = (
    "checkpoint",
    "run",
    "method",
    "seed",
    "loss",
    "measure",
    "parameter",
    "value",
    "stderr",
    "converged",
    "num_evaluations",
    "first_order",
    "samples",
    "seconds",
)


@dataclass(frozen=True)
class FlatnessSettings:
    """Every setting of the flatness protocol (recorded in flatness.json); defaults fixed up front.

    Version 2 (issue 18): 1,024 training samples for the losses L_SDT and L_TET (a 256-sample
    subset of a well-fitted network holds 2-3 misclassified samples that dominate its
    cross-entropy Hessian), the per-step curvature on the first 256 of them, the adaptive worst
    case by Auto-PGD (3 starts, 20 steps) at three radii, first-order parts recorded, Lanczos to a
    1e-2 relative residual (the eigenvalue's error is of the order of the residual squared).
    """

    samples: int = option(1024, "size of the fixed, seeded subset of the split", minimum=1)
    per_step_samples: int = option(
        256, "samples of the per-step losses L_t (the first of the main subset)", minimum=1
    )
    ascent_samples: int = option(
        512,
        "samples of the ascents (epsilon and adaptive worst case; the first of the main subset)",
        minimum=1,
    )
    split: str = same_as(DataSettings, "split")
    data_seed: int = option(0, "seed of the sample subset")
    data_chunk: int = option(
        0, "which of the disjoint subsets the seeded permutation cuts the split into", minimum=0
    )
    batch_size: int = same_as(DataSettings, "batch_size")
    dtype: str = same_as(DataSettings, "dtype")
    probe_seed: int = option(0, "seed of every random probe, start and draw")
    lanczos_tol: float = same_as(LambdaMaxSettings, "lanczos_tol")
    lanczos_max_steps: int = same_as(LambdaMaxSettings, "lanczos_max_steps")
    trace_method: str = same_as(TraceSettings, "trace_method")
    trace_matvecs: int = same_as(TraceSettings, "trace_matvecs")
    epsilon: float = same_as(EpsilonSettings, "epsilon")
    epsilon_steps: int = same_as(EpsilonSettings, "epsilon_steps")
    adaptive_p: float = same_as(AdaptiveWorstSettings, "adaptive_p")
    adaptive_rho: float = same_as(AdaptiveWorstSettings, "adaptive_rho")
    adaptive_sweep: tuple[float, ...] = same_as(AdaptiveWorstSettings, "adaptive_sweep")
    adaptive_steps: int = same_as(AdaptiveWorstSettings, "adaptive_steps")
    adaptive_restarts: int = same_as(AdaptiveWorstSettings, "adaptive_restarts")
    adaptive_sweep_restarts: int = same_as(AdaptiveWorstSettings, "adaptive_sweep_restarts")
    ascent_step_fraction: float = same_as(EpsilonSettings, "ascent_step_fraction")
    average_rho: float = same_as(AdaptiveAverageSettings, "average_rho")
    average_samples: int = same_as(AdaptiveAverageSettings, "average_samples")
    eta: float = same_as(NormalizedLambdaMaxSettings, "eta")
    per_step: bool = option(True, "also lambda_max and trace of every L_t = CE(O(t), y)")
    fixed_tet_lambda: float | None = option(
        None,
        "also every measure of TET at this lambda (loss tet@<lambda>), the same function for every "
        "run whatever its own lambda",
        minimum=0.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        check(self)

    def data_spec(self, subset: str = "main") -> DataSpec:
        """The samples of one of the protocol's subsets (:data:`SUBSETS`); ``per_step`` and
        ``ascent`` are the first samples of ``main``'s (at most ``samples``), so with
        ``data_chunk`` k every subset lies in chunk k."""
        smaller = {"per_step": self.per_step_samples, "ascent": self.ascent_samples}
        samples = min(smaller.get(subset, self.samples), self.samples)
        return DataSpec(
            self.split,
            samples,
            self.data_seed,
            self.batch_size,
            chunk=self.data_chunk,
            block=self.samples,
        )

    def generator(self, measure: LossMeasure) -> torch.Generator:
        """The measure's own random stream (shared by every loss and checkpoint)."""
        return torch.Generator().manual_seed(self.probe_seed * 1000 + measure.stream)

    def settings_of(self, measure: LossMeasure):
        """The measure's settings, as this protocol sets them."""
        names = [f.name for f in dataclasses.fields(measure.settings)]
        return measure.settings(**{name: getattr(self, name) for name in names})

    def dry_run(self) -> FlatnessSettings:
        """Tiny settings for smoke tests."""
        return replace(
            self,
            samples=min(self.samples, 32),
            per_step_samples=min(self.per_step_samples, 32),
            ascent_samples=min(self.ascent_samples, 32),
            lanczos_max_steps=min(self.lanczos_max_steps, 6),
            trace_matvecs=min(self.trace_matvecs, 6),
            epsilon_steps=min(self.epsilon_steps, 2),
            adaptive_steps=min(self.adaptive_steps, 2),
            adaptive_restarts=1,
            average_samples=min(self.average_samples, 2),
        )

    def to_dict(self) -> dict:
        """Plain types (``inf`` as the string ``"inf"``)."""
        return {k: ("inf" if v == math.inf else v) for k, v in dataclasses.asdict(self).items()}

    def loss_names(self, T: int) -> list[str]:
        """The losses measured: ``sdt``, ``tet``, ``tet@<fixed lambda>``, and with ``per_step``
        ``ce_t0`` .. ``ce_t{T-1}``."""
        fixed = [] if self.fixed_tet_lambda is None else [f"tet@{self.fixed_tet_lambda:g}"]
        return ["sdt", "tet", *fixed] + ([f"ce_t{t}" for t in range(T)] if self.per_step else [])


def _rows(head: list, measure: LossMeasure, found, seconds: float, samples: int) -> list[dict]:
    """One row per estimate (a sweep gives several); the time is shared among them."""
    estimates = found if isinstance(found, list) else [found]
    rows = []
    for e in estimates:
        values = [e.name or measure.name, e.parameter, e.value, e.stderr, e.converged]
        values += [e.num_evaluations, e.first_order, samples, seconds / len(estimates)]
        rows.append(dict(zip(HEADER, [*head, *values])))
    return rows


def checkpoint_rows(
    inputs: dict[str, EvalInput],
    settings: FlatnessSettings,
    evaluation: Evaluation = Evaluation(quiet=True),
    losses: list[str] | None = None,
) -> list[dict]:
    """Every measure of every loss of one checkpoint: rows of :data:`HEADER`.

    Args:
        inputs: The checkpoint on each subset of :data:`SUBSETS`
            (:meth:`FlatnessSettings.data_spec`).
        settings: The protocol.
        evaluation: Device and progress (the protocol sets dtype and seeds).
        losses: Loss names (default: :meth:`FlatnessSettings.loss_names` of the run's T).
    """
    first = inputs["main"]
    path, config = first.checkpoint.path, first.config
    losses = losses or settings.loss_names(config.T)
    head = [str(path), path.parent.name, config.method, config.seed]
    plan = [
        (name, measure)
        for name in losses
        for measure in loss_measures()
        if measure.per_step or not name.startswith("ce_t")
    ]
    dtype, rows, objectives = resolve_dtype(settings.dtype), [], {}
    same = _same_as_own_tet(losses, config.tet_lambda)
    plan = [(name, measure) for name, measure in plan if name != same]
    with Progress(len(plan), f"flatness of {path}", "measure", evaluation.quiet) as bar:
        for name, measure in plan:
            subset = "per_step" if name.startswith("ce_t") else measure.subset
            if (name, subset) not in objectives:  # one objective (and Hessian) per loss and subset
                loss = inputs[subset].loss(name, dtype=dtype, device=evaluation.device)
                objectives = {**objectives, (name, subset): loss}
            start = time.perf_counter()
            found = measure.estimate(
                objectives[name, subset], settings.settings_of(measure), settings.generator(measure)
            )
            seconds, samples = time.perf_counter() - start, inputs[subset].data["num_samples"]
            rows += _rows([*head, name], measure, found, seconds, samples)
            bar.update(1)
    if same is not None:  # the same function as the run's own L_TET: the same rows, not re-run
        rows += [{**row, "loss": same, "seconds": 0.0} for row in rows if row["loss"] == "tet"]
    return rows


def _same_as_own_tet(losses: list[str], own_lambda: float) -> str | None:
    """The ``tet@<lambda>`` of ``losses`` that is the run's own L_TET (same lambda), if any."""
    if "tet" not in losses:
        return None
    return next((n for n in losses if n.startswith("tet@") and float(n[4:]) == own_lambda), None)

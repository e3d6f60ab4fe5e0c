"""The flatness protocol: every registered loss measure of every loss of a checkpoint.

For a checkpoint and each loss (``sdt``, ``tet`` at the run's λ and φ, and with ``per_step``
every ``L_t = CE(O(t), y)``), every :class:`~analysis.measures.registry.LossMeasure` of the
registry (raw and normalized curvature, ε-sharpness, adaptive sharpness) gives one row of
:data:`HEADER`; per-time-step losses get the ``per_step`` measures only. Every random quantity
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

__all__ = ["HEADER", "FlatnessSettings", "checkpoint_rows", "loss_names"]

HEADER = (
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
)


@dataclass(frozen=True)
class FlatnessSettings:
    """Every setting of the flatness protocol (recorded in flatness.json); defaults fixed up front.

    The defaults keep one MNIST-1D checkpoint (8,042 parameters, T = 4) at about 25 CPU seconds
    with the per-step losses (one Hessian-vector product over 512 samples was measured at ~0.2 CPU
    s, so 256 samples): Lanczos to a 1e-2 relative residual (the eigenvalue's error is of the
    order of the residual squared), a 15-product Hutch++ trace (its stderr is recorded).
    """

    samples: int = option(256, "size of the fixed, seeded subset of the split", minimum=1)
    split: str = same_as(DataSettings, "split")
    data_seed: int = option(0, "seed of the sample subset")
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
    adaptive_steps: int = same_as(AdaptiveWorstSettings, "adaptive_steps")
    ascent_step_fraction: float = same_as(EpsilonSettings, "ascent_step_fraction")
    average_rho: float = same_as(AdaptiveAverageSettings, "average_rho")
    average_samples: int = same_as(AdaptiveAverageSettings, "average_samples")
    eta: float = same_as(NormalizedLambdaMaxSettings, "eta")
    per_step: bool = option(True, "also lambda_max and trace of every L_t = CE(O(t), y)")

    def __post_init__(self) -> None:
        check(self)

    def data_spec(self) -> DataSpec:
        """The evaluation samples."""
        return DataSpec(self.split, self.samples, self.data_seed, self.batch_size)

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
            lanczos_max_steps=min(self.lanczos_max_steps, 6),
            trace_matvecs=min(self.trace_matvecs, 6),
            epsilon_steps=min(self.epsilon_steps, 2),
            adaptive_steps=min(self.adaptive_steps, 2),
            average_samples=min(self.average_samples, 2),
        )

    def to_dict(self) -> dict:
        """Plain types (``inf`` as the string ``"inf"``)."""
        return {k: ("inf" if v == math.inf else v) for k, v in dataclasses.asdict(self).items()}


def loss_names(T: int, per_step: bool) -> list[str]:
    """``sdt``, ``tet`` and, with ``per_step``, ``ce_t0`` .. ``ce_t{T-1}``."""
    return ["sdt", "tet"] + ([f"ce_t{t}" for t in range(T)] if per_step else [])


def _row(head: list, measure: LossMeasure, found, seconds: float) -> dict:
    values = [measure.name, found.value, found.stderr, found.converged, found.num_evaluations]
    return dict(zip(HEADER, [*head, *values, seconds]))


def checkpoint_rows(
    input: EvalInput,
    settings: FlatnessSettings,
    evaluation: Evaluation = Evaluation(quiet=True),
    losses: list[str] | None = None,
) -> list[dict]:
    """Every measure of every loss of one checkpoint: rows of :data:`HEADER`.

    Args:
        input: The checkpoint and the protocol's samples (:meth:`FlatnessSettings.data_spec`).
        settings: The protocol.
        evaluation: Device and progress (the protocol sets dtype and seeds).
        losses: Loss names (default: :func:`loss_names` of the run's T and ``per_step``).
    """
    path, config = input.checkpoint.path, input.config
    losses = losses or loss_names(config.T, settings.per_step)
    head = [str(path), path.parent.name, config.method, config.seed]
    measures = loss_measures()
    total = sum(
        len([m for m in measures if m.per_step or not n.startswith("ce_t")]) for n in losses
    )
    dtype, rows = resolve_dtype(settings.dtype), []
    with Progress(total, f"flatness of {path}", "measure", evaluation.quiet) as bar:
        for name in losses:
            loss = input.loss(name, dtype=dtype, device=evaluation.device)
            for measure in measures:
                if name.startswith("ce_t") and not measure.per_step:
                    continue
                start = time.perf_counter()
                found = measure.estimate(
                    loss, settings.settings_of(measure), settings.generator(measure)
                )
                rows.append(_row([*head, name], measure, found, time.perf_counter() - start))
                bar.update(1)
    return rows

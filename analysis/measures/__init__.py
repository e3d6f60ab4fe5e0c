"""Per-checkpoint measures, each one registered piece (settings, computation, artifact schema),
and the evaluation input they share (a checkpoint read once plus a fixed subset of its data).

Importing this package imports every measure module, so :data:`registry.MEASURES` is full: the
curvature and sharpness of one loss (``LossMeasure``), and the Hessian spectrum, random
perturbations, gradient-momentum statistics, time-step accuracy and the surrogate-to-spike gap
(``CheckpointMeasure``). A new measure is one module here, imported below, plus its test.
"""

from analysis.measures import (  # noqa: F401
    curvature,
    hessian,
    momentum,
    sharpness,
    spike_gap,
    timesteps,
)

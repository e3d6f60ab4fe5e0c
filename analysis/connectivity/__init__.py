"""Between two minima: paths and fitted curves (Garipov et al. 2018), their barriers (Frankle et
al. 2020) with BatchNorm statistics recomputed, permutation alignment by weight matching
(Ainsworth et al. 2023), every path evaluated with hard spikes and with the smooth surrogate step
(``training.snn.smooth``)."""

from analysis.connectivity.alignment import (
    CHAIN_MODELS,
    RESIDUAL_MODELS,
    Alignment,
    PermutationSpec,
    permute,
    random_permutations,
    spec_of,
    weight_matching,
)
from analysis.connectivity.curves import CURVES, PATHS, CurveStep, fit_curve, midpoint, path_point
from analysis.connectivity.profile import (
    BN_MODES,
    METRICS,
    PROFILE_COLUMNS,
    Barrier,
    PathEvaluator,
    barrier,
    batch_norm_statistics,
    split_state,
)

__all__ = [
    # paths and curves
    "PATHS",
    "CURVES",
    "CurveStep",
    "path_point",
    "midpoint",
    "fit_curve",
    # profiles and barriers
    "BN_MODES",
    "METRICS",
    "PROFILE_COLUMNS",
    "Barrier",
    "barrier",
    "batch_norm_statistics",
    "split_state",
    "PathEvaluator",
    # alignment
    "CHAIN_MODELS",
    "RESIDUAL_MODELS",
    "PermutationSpec",
    "spec_of",
    "permute",
    "random_permutations",
    "weight_matching",
    "Alignment",
]

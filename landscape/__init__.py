"""Model-agnostic loss-landscape engine: curvature operators, spectra, surfaces, statistics.

Takes any ``nn.Module``, a loss callable and fixed evaluation batches; knows nothing of spikes.
"""

from landscape import api
from landscape.api import (
    density,
    eigen_plane,
    eigenvalues,
    interpolate,
    random_plane,
    sharpness,
    trace,
)
from landscape.density import gaussian_density, slq_nodes, spectral_density
from landscape.directions import eigen_directions, random_direction
from landscape.lanczos import LanczosState, lanczos, ritz, top_eigenvalues
from landscape.objective import HVP_METHODS, Objective, eval_mode
from landscape.operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    SGFieldJacobianOperator,
    as_operator,
    estimate_asymmetry,
    random_vectors,
    require_symmetric,
)
from landscape.params import flatten, parameter_groups, select_parameters, unflatten
from landscape.reset import reset_states, resolve_reset
from landscape.results import AsymmetryResult, DensityResult, EigenResult, TraceResult
from landscape.store import Grid
from landscape.surface import SurfaceEvaluator
from landscape.surface_io import Surface, load_surface, save_surface
from landscape.trace import TRACE_METHODS, estimate_trace, hutchinson_trace, hutchpp_trace
from landscape.xtrace import xnystrace_trace, xtrace_trace

__all__ = [
    # one-call API (landscape.api): import landscape as ls; ls.eigenvalues(model, criterion, data)
    "api",
    "eigenvalues",
    "trace",
    "density",
    "interpolate",
    "random_plane",
    "eigen_plane",
    "sharpness",
    # surfaces and directions
    "SurfaceEvaluator",
    "Grid",
    "Surface",
    "save_surface",
    "load_surface",
    "random_direction",
    "eigen_directions",
    # neuron-state resets
    "resolve_reset",
    "reset_states",
    # objective and parameters
    "Objective",
    "eval_mode",
    "HVP_METHODS",
    "flatten",
    "unflatten",
    "select_parameters",
    "parameter_groups",
    # operators
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "SGFieldJacobianOperator",
    "as_operator",
    "require_symmetric",
    "random_vectors",
    "estimate_asymmetry",
    # estimators
    "lanczos",
    "LanczosState",
    "ritz",
    "top_eigenvalues",
    "hutchinson_trace",
    "hutchpp_trace",
    "xtrace_trace",
    "xnystrace_trace",
    "estimate_trace",
    "TRACE_METHODS",
    "slq_nodes",
    "spectral_density",
    "gaussian_density",
    # results
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "AsymmetryResult",
]

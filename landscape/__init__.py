"""Model-agnostic loss-landscape engine: curvature operators, spectra, surfaces, statistics.

Takes any ``nn.Module``, a loss callable and fixed evaluation batches; knows nothing of spikes.
"""

from landscape.density import gaussian_density, slq_nodes, spectral_density
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
from landscape.results import (
    AsymmetryResult,
    DensityResult,
    EigenResult,
    TraceResult,
    atomic_write,
    load_json,
    save_json,
    save_npz,
    to_plain,
)
from landscape.trace import TRACE_METHODS, estimate_trace, hutchinson_trace, hutchpp_trace

__all__ = [
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
    "to_plain",
    "save_json",
    "load_json",
    "save_npz",
    "atomic_write",
]

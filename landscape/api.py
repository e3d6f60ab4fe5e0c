"""One-call functions on any ``nn.Module`` (ANN or SNN): ``import landscape as ls``.

Every function takes the problem in one of two forms, as PyHessian and loss-landscapes do:

- ``(model, criterion, data)``: ``criterion(model(x), y)`` returns the MEAN loss over the batch
  (``nn.CrossEntropyLoss()``, ``F.mse_loss``); ``data`` is one ``(x, y)`` batch or an iterable of
  them (a list, a ``DataLoader``). The batch size is ``len(y)``, so time-major inputs
  ``[T, B, ...]`` are fine.
- ``(model, data=..., loss_fn=...)``: ``loss_fn(model, batch)`` returns the MEAN loss over
  ``batch``; its size is the leading dimension of the batch's last tensor (its targets).

One convention for means and sums: the user always passes mean-reducing losses; the result is the
loss over all samples, ``sum_b n_b * mean_b / N``, whatever the batching (each batch's mean is
weighted by its size; surfaces turn the means into the per-batch sums their evaluator adds up).
Two batchings of the same samples give the same numbers to rounding.

Stateful neurons are reset before every forward: ``reset=None`` finds the reset
(SpikingJelly's ``functional.reset_net``, or ``reset()`` of every submodule that has one),
``reset=False`` turns it off, and a callable ``reset(model)`` is used as given. Random directions
and probes come from ``torch.Generator().manual_seed(seed)``; the seed is recorded in the result
(``result.seed``, ``surface.metadata["seed"]``). The model is never modified.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from landscape.adaptive import adaptive_average, adaptive_worst_case
from landscape.density import spectral_density
from landscape.directions import (
    DirectionSet,
    build_directions,
    difference,
    eigen_directions,
    random_direction,
)
from landscape.lanczos import top_eigenvalues
from landscape.objective import Objective
from landscape.operators import HessianOperator
from landscape.problem import (
    Criterion,
    LossClosure,
    Problem,
    as_batches,
    build_objective,
    make_problem,
    resolve_setting,
)
from landscape.reset import Reset
from landscape.sharpness import epsilon_sharpness
from landscape.store import Grid
from landscape.surface import SurfaceEvaluator
from landscape.surface_io import Surface
from landscape.trace import estimate_trace

__all__ = [
    "eigenvalues",
    "trace",
    "density",
    "interpolate",
    "random_plane",
    "eigen_plane",
    "sharpness",
    "objective",
    "hessian",
    "surface_evaluator",
    "directions",
]

WHICH = {"top": "LA", "bottom": "SA", "magnitude": "LM", "LA": "LA", "SA": "SA", "LM": "LM"}


def objective(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    param_names=None,
    reset=None,
    dtype=None,
    device=None,
) -> Objective:
    """The :class:`~landscape.objective.Objective` (loss, gradient, Hessian-vector products).

    Arguments as in :func:`eigenvalues`; ``param_names`` restricts the parameters that are
    differentiated (a layer's block of the Hessian). For the engine's estimators and operators.
    """
    problem = make_problem(model, criterion, data, loss_fn, reset, dtype, device, param_names)
    return build_objective(problem)


def hessian(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    param_names=None,
    use_cached_graph: bool = True,
    reset=None,
    dtype=None,
    device=None,
) -> HessianOperator:
    """The Hessian as a linear operator (``H @ v``, ``H @ V``) of the problem.

    Arguments as in :func:`objective`; ``use_cached_graph`` keeps the gradient graph of all
    samples, so that each product is one double-backward pass.
    """
    found = objective(
        model,
        criterion,
        data,
        loss_fn=loss_fn,
        param_names=param_names,
        reset=reset,
        dtype=dtype,
        device=device,
    )
    return HessianOperator(found, use_cached_graph=use_cached_graph)


def _hessian(model, criterion, data, loss_fn, reset, dtype, device) -> HessianOperator:
    """The Hessian operator of the problem, as every curvature function takes it."""
    return hessian(model, criterion, data, loss_fn=loss_fn, reset=reset, dtype=dtype, device=device)


def surface_evaluator(
    model,
    directions: list,
    data,
    sums,
    *,
    observer=None,
    bn_mode: str = "eval",
    bn_batches=(),
    use_input_cache: bool = True,
    use_compile: bool = False,
    use_channels_last: bool = False,
    points_per_forward: int | None = None,
    reset: Reset = None,
    dtype=None,
    device=None,
) -> SurfaceEvaluator:
    """The engine's :class:`~landscape.surface.SurfaceEvaluator` of a problem, for grids that a
    caller stores and resumes itself (the one-call surfaces below build theirs here too).

    Args:
        model: Any module (never modified).
        directions: name -> tensor dicts, e.g. from :func:`directions`.
        data: One ``(x, y)`` batch or an iterable of batches.
        sums: ``(outputs, y) -> {name: batch SUM}`` (sums, so that counts such as correct
            predictions stay exact integers; means per sample come out).
        observer: Forward hooks per point, e.g. a spike counter (adds firing rates).
        bn_mode, bn_batches, use_input_cache, use_compile, use_channels_last,
            points_per_forward: See :class:`~landscape.surface.SurfaceEvaluator`.
        reset, dtype, device: As in :func:`eigenvalues`.
    """
    user_reset, dtype, device = resolve_setting(model, reset, dtype, device)
    return SurfaceEvaluator(
        model,
        directions,
        [tuple(batch) for batch in as_batches(data)],
        sums,
        observer=observer,
        bn_mode=bn_mode,
        bn_batches=list(bn_batches),
        use_input_cache=use_input_cache,
        use_compile=use_compile,
        use_channels_last=use_channels_last,
        points_per_forward=points_per_forward,
        dtype=dtype,
        device=device,
        reset=user_reset or False,
    )


def directions(kind: str, model, **inputs) -> DirectionSet:
    """Directions of a registered kind around ``model`` (see ``landscape.directions``).

    ``random``, ``pca`` and ``eigen`` work on the parameters, ``interp`` on parameters and
    floating buffers; ``inputs`` are the kind's own (``dim``, ``generator``, ``ends``,
    ``trajectory``, ``operator``, ...).

    Raises:
        ValueError: On an unknown kind.
    """
    if kind == "interp":
        centre = model.state_dict()
    else:
        centre = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    return build_directions(kind, centre, **inputs)


def _seeded(result, seed: int):
    result.seed = int(seed)
    return result


def eigenvalues(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    top_n: int = 5,
    which: str = "top",
    tol: float = 1e-3,
    max_steps: int | None = None,
    seed: int = 0,
    return_vectors: bool = False,
    reset: Reset = None,
    dtype: torch.dtype | None = None,
    device=None,
):
    """The ``top_n`` extreme Hessian eigenvalues by Lanczos (PyHessian's ``eigenvalues``).

    Args:
        model: Any module (never modified).
        criterion: ``criterion(model(x), y)`` -> mean loss over the batch.
        data: One ``(x, y)`` batch or an iterable of batches (with ``loss_fn``: any batches).
        loss_fn: Instead of ``criterion``: ``loss_fn(model, batch)`` -> mean loss over the batch.
        top_n: Number of eigenvalues.
        which: ``"top"`` (largest), ``"bottom"`` (smallest, most negative) or ``"magnitude"``.
        tol: Relative residual tolerance of every Ritz pair (``converged`` says which met it).
        max_steps: Largest Krylov dimension (default: the engine's).
        seed: Seed of the Lanczos start vector (recorded as ``result.seed``).
        return_vectors: Keep the eigenvectors ``[P, top_n]`` (flat, in parameter order).
        reset: Neuron-state reset before every forward (``None``: automatic, ``False``: none).
        dtype: Computation dtype (default: the model's); ``torch.float64`` for reference values.
        device: Device (default: the model's).

    Returns:
        :class:`~landscape.results.EigenResult` (``eigenvalues``, ``residuals``, ``converged``)
        with ``seed``.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {sorted(WHICH)}, got {which!r}")
    operator = _hessian(model, criterion, data, loss_fn, reset, dtype, device)
    generator = torch.Generator().manual_seed(seed)
    result = top_eigenvalues(
        operator,
        top_n,
        WHICH[which],
        tol,
        max_steps,
        generator=generator,
        return_vectors=return_vectors,
    )
    return _seeded(result, seed)


def trace(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    num_matvecs: int = 99,
    method: str = "hutch++",
    seed: int = 0,
    reset: Reset = None,
    dtype=None,
    device=None,
):
    """Hessian trace by Hutch++ (or ``method="xtrace"`` or ``"hutchinson"``, see
    :data:`~landscape.trace.TRACE_METHODS`); ``result.mean`` +- ``stderr``.

    Arguments as in :func:`eigenvalues`; ``num_matvecs`` Hessian-vector products, Rademacher
    probes from ``seed``. Returns a :class:`~landscape.results.TraceResult` with ``seed``.
    """
    operator = _hessian(model, criterion, data, loss_fn, reset, dtype, device)
    result = estimate_trace(operator, num_matvecs, method, torch.Generator().manual_seed(seed))
    return _seeded(result, seed)


def density(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    num_steps: int = 80,
    num_repeats: int = 10,
    sigma: float | None = None,
    num_points: int = 1024,
    seed: int = 0,
    reset: Reset = None,
    dtype=None,
    device=None,
):
    """Hessian spectral density by stochastic Lanczos quadrature (PyHessian's ``density``).

    Arguments as in :func:`eigenvalues`; ``num_steps`` Lanczos steps (at most the number of
    parameters) for each of ``num_repeats`` probes. Returns a
    :class:`~landscape.results.DensityResult` with ``seed``.
    """
    operator = _hessian(model, criterion, data, loss_fn, reset, dtype, device)
    num_steps = min(num_steps, operator.shape[0])
    generator = torch.Generator().manual_seed(seed)
    return _seeded(
        spectral_density(operator, num_steps, num_repeats, generator, sigma, num_points), seed
    )


def _surface(p: Problem, directions: list, grid: Grid, metadata: dict, metrics) -> Surface:
    """Evaluate the grid; every metric is a batch mean turned into the batch sum the engine adds."""
    means = {"loss": p.criterion, **(metrics or {})}

    def sums(outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {name: fn(outputs, targets) * len(targets) for name, fn in means.items()}

    evaluator = surface_evaluator(
        p.module,
        directions,
        p.batches,
        sums,
        reset=p.reset or False,
        dtype=p.dtype,
        device=p.device,
    )
    values = evaluator.evaluate(grid.coordinates())
    metadata = {"title": "loss surface", "num_samples": evaluator.num_samples, **metadata}
    return Surface(
        axes=[np.asarray(axis) for axis in grid.axes],
        values={k: v.numpy().reshape(grid.shape) for k, v in values.items()},
        metadata=metadata,
    )


def _weights(module: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def random_plane(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    steps: int = 21,
    span: float = 1.0,
    normalization: str = "filter",
    ignore_biasbn: bool = True,
    seed: int = 0,
    metrics: Mapping[str, Criterion] | None = None,
    reset: Reset = None,
    dtype=None,
    device=None,
) -> Surface:
    """2-D loss surface on two random, filter-normalized directions (Li et al. 2018).

    Args:
        steps: Grid points per axis, on ``[-span, span]``.
        span: Half-width of the grid in direction units.
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore_biasbn: Do not move biases and other 1-D parameters.
        seed: Seed of the two directions (drawn one after the other from one generator).
        metrics: Further name -> mean criterion ``fn(outputs, y)`` (e.g. accuracy), with
            ``criterion`` only.
        Others as in :func:`eigenvalues`.

    Returns:
        :class:`~landscape.surface_io.Surface`: ``values["loss"]`` ``[steps, steps]`` (x-major).
    """
    p = make_problem(model, criterion, data, loss_fn, reset, dtype, device)
    generator = torch.Generator().manual_seed(seed)
    weights = _weights(p.module)
    directions = [
        random_direction(weights, generator, normalization, ignore_biasbn) for _ in range(2)
    ]
    grid = Grid.linspace((-span, span, steps), (-span, span, steps))
    metadata = {
        "seed": int(seed),
        "directions": {
            "kind": "random",
            "normalization": normalization,
            "ignore_biasbn": ignore_biasbn,
        },
    }
    return _surface(p, directions, grid, metadata, metrics)


def eigen_plane(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    steps: int = 21,
    span: float = 1.0,
    tol: float = 1e-3,
    seed: int = 0,
    metrics: Mapping[str, Criterion] | None = None,
    reset: Reset = None,
    dtype=None,
    device=None,
) -> Surface:
    """2-D loss surface on the two top Hessian eigenvectors (unit norm) of the centre.

    Arguments as in :func:`random_plane`; ``tol`` and ``seed`` go to the Lanczos run, whose
    eigenvalues, residuals and convergence are in ``metadata["eigen"]``.
    """
    p = make_problem(model, criterion, data, loss_fn, reset, dtype, device)
    objective_ = build_objective(p)
    result = top_eigenvalues(
        HessianOperator(objective_), 2, "LA", tol, generator=torch.Generator().manual_seed(seed)
    )
    directions = eigen_directions(result.eigenvectors, objective_.shapes)
    grid = Grid.linspace((-span, span, steps), (-span, span, steps))
    metadata = {"seed": int(seed), "directions": {"kind": "eigen"}, "eigen": result.to_dict()}
    return _surface(p, directions, grid, metadata, metrics)


def interpolate(
    model_a,
    model_b,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    steps: int = 21,
    span: tuple[float, float] = (0.0, 1.0),
    metrics: Mapping[str, Criterion] | None = None,
    reset: Reset = None,
    dtype=None,
    device=None,
) -> Surface:
    """1-D loss along ``(1 - t) a + t b`` (Goodfellow et al. 2015), ``t`` in ``span``.

    Parameters and floating buffers (BatchNorm statistics) are interpolated; ``data`` and
    ``reset`` are as in :func:`eigenvalues` (the reset is found on ``model_a``).

    Returns:
        :class:`~landscape.surface_io.Surface` with ``values["loss"]`` ``[steps]``.
    """
    p = make_problem(model_a, criterion, data, loss_fn, reset, dtype, device)
    start = _state(p.module)
    end = _state(model_b if loss_fn is None else LossClosure(model_b, loss_fn, []))
    direction = difference(
        {n: t.detach() for n, t in end.items()}, {n: t.detach() for n, t in start.items()}
    )
    grid = Grid.linspace((span[0], span[1], steps))
    return _surface(p, [direction], grid, {"directions": {"kind": "interp"}}, metrics)


def sharpness(
    model,
    criterion=None,
    data=None,
    *,
    loss_fn=None,
    kind: str = "epsilon",
    radius: float = 1e-3,
    p: float = 2,
    num_steps: int = 10,
    num_samples: int = 32,
    random_start: bool = False,
    seed: int = 0,
    reset: Reset = None,
    dtype=None,
    device=None,
):
    """Sharpness of the minimum at the model's weights.

    Args:
        kind: ``"epsilon"`` (Keskar et al. 2017, box radius ``radius`` relative to ``|w| + 1``),
            ``"adaptive"`` (worst case in ``||delta / |w| ||_p <= radius``, Kwon et al. 2021) or
            ``"adaptive_average"`` (``E L(w + radius |w| z) - L(w)`` over ``num_samples`` draws).
        radius: ``epsilon`` or ``rho`` of the chosen kind.
        p: ``2`` or ``math.inf`` for ``"adaptive"``.
        num_steps: Ascent steps (worst cases).
        num_samples: Draws (``"adaptive_average"``).
        random_start: Start the ascent at a random point drawn from ``seed`` (worst cases).
        seed: Seed of the random start or of the draws.
        Others as in :func:`eigenvalues`.

    Returns:
        :class:`~landscape.sharpness.EpsilonSharpness`,
        :class:`~landscape.adaptive.AdaptiveWorstCase` or
        :class:`~landscape.adaptive.AdaptiveAverage`, each with ``seed`` (None without a draw).
    """
    objective_ = objective(
        model, criterion, data, loss_fn=loss_fn, reset=reset, dtype=dtype, device=device
    )
    generator = torch.Generator().manual_seed(seed)
    start = generator if random_start else None
    if kind == "epsilon":
        result = epsilon_sharpness(objective_, radius, num_steps, generator=start)
        result.seed = int(seed) if random_start else None
        return result
    if kind == "adaptive":
        return adaptive_worst_case(objective_, radius, p, num_steps, generator=start)
    if kind == "adaptive_average":
        return adaptive_average(objective_, radius, num_samples, generator=generator)
    raise ValueError(f"kind must be 'epsilon', 'adaptive' or 'adaptive_average', got {kind!r}")

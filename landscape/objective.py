"""The empirical risk over fixed evaluation batches: THE one data loop of the engine.

``L(theta) = sum_b (n_b / N) * loss_fn(model(x_b; theta), y_b)`` with ``n_b`` the size of batch
``b`` and ``N = sum_b n_b``, so batches of unequal size are weighted exactly per sample (as in
curvlinops, Dangel et al.; PyHessian's ``dataloader_hv_product`` does the same). ``loss_fn`` must
average over its batch.

The model is evaluated with ``torch.func.functional_call`` on copies of its parameters and buffers,
so it is never mutated; the forward runs in eval mode inside :func:`eval_mode`, which restores the
train/eval flag of every submodule afterwards. Parameters are handled as one flat vector
``theta`` of length ``P`` (see :mod:`landscape.params`).

Hessian-vector products come in two exact flavours that agree to rounding (tested in float64):
double backward (Pearlmutter 1994; ``autograd.grad`` of ``grad`` with ``grad_outputs=v``) and
forward-over-reverse (``torch.func.jvp(torch.func.grad(f))``). Double backward is the default:
on CPU, float32, it took 0.27 s against 0.38 s per HVP on the digits SNN (256 samples) and
0.34 s against 0.67 s on a width-1/16 spiking ResNet-19 (``benchmarks/hessian_vs_pyhessian.py``).
:meth:`Objective.hvp_function` keeps the gradient graph alive, so that each further product is a
single double-backward pass (0.16 s and 0.23 s there, 2.3x and 2.2x the cost of a gradient).
Both take a block ``V [P, k]`` too: the ``k`` tangents become a vmapped batch dimension of one
pass (equal to ``k`` single products to rounding; ``benchmarks/hessian_batched.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call

from landscape.params import unflatten
from landscape.reset import Reset, resolve_reset

__all__ = ["eval_mode", "Objective", "LossFn", "HVP_METHODS", "double_backward"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> scalar``, averaged over the batch."""

HVP_METHODS = ("double_backward", "forward_over_reverse")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore every submodule's own ``training`` flag on exit.

    Args:
        model: Any module.

    Yields:
        The same module, in eval mode.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def _batch_size(x: Tensor, y: Tensor) -> int:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"batches must be (inputs, targets) tensors, got {type(x), type(y)}")
    if y.ndim == 0 or y.shape[0] == 0:
        raise ValueError(f"targets must have a non-empty batch dimension, got {tuple(y.shape)}")
    return int(y.shape[0])


class Objective:
    """Loss, gradient and Hessian-vector products of a model on fixed batches.

    Args:
        model: Any ``nn.Module``; never modified. Its outputs go to ``loss_fn``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, a mean over the batch.
        batches: ``(inputs, targets)`` pairs; the batch size is ``len(targets)`` (so time-major
            inputs ``[T, B, ...]`` are fine). Kept in memory on ``device``.
        param_names: Parameters to differentiate (default: all that require grad); the others are
            held fixed. See :func:`landscape.params.select_parameters`.
        dtype: Floating dtype of parameters, buffers and inputs (default: the model's).
        device: Device (default: the model's).
        use_eval_mode: Run the forward in eval mode (BatchNorm running statistics, no dropout).
        before_forward: Hook called with the model before every forward (the older name of
            ``reset``; give one of the two).
        reset: Neuron-state reset called with the model before every forward: a callable, ``None``
            (automatic, see :func:`resolve_reset`: SpikingJelly's ``reset_net``, or ``reset()`` of
            the submodules that have one) or ``False`` (none). Stateful neurons that are not
            reset carry their state from one forward into the next and silently change the loss.
        hvp_method: ``"double_backward"`` or ``"forward_over_reverse"``.

    Raises:
        ValueError: On empty batches, unknown parameter names, an unknown ``hvp_method`` or both
            ``before_forward`` and ``reset``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Iterable[tuple[Tensor, Tensor]],
        *,
        param_names: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        use_eval_mode: bool = True,
        before_forward: Callable[[nn.Module], None] | None = None,
        reset: Reset = None,
        hvp_method: str = "double_backward",
    ) -> None:
        if before_forward is not None and reset is not None:
            raise ValueError("give before_forward or reset, not both")
        if before_forward is None:
            before_forward = resolve_reset(model, reset)
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {hvp_method!r}")
        reference = next(iter(model.parameters()), None)
        if reference is None:
            raise ValueError("model has no parameters")
        self.dtype = dtype or reference.dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {self.dtype}")
        self.device = torch.device(device) if device is not None else reference.device
        self.model, self.loss_fn, self.hvp_method = model, loss_fn, hvp_method
        self.use_eval_mode, self.before_forward = use_eval_mode, before_forward
        self._init_params(model, param_names)
        self._init_batches(batches)

    def _cast(self, tensor: Tensor) -> Tensor:
        dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to(self.device, dtype)

    def _init_params(self, model: nn.Module, param_names: Sequence[str] | None) -> None:
        named = dict(model.named_parameters())
        if param_names is None:
            param_names = [name for name, p in named.items() if p.requires_grad]
        unknown = sorted(set(param_names) - set(named))
        if unknown or not param_names:
            raise ValueError(
                f"param_names must be a non-empty subset of the model's parameters; "
                f"unknown: {unknown}; known: {list(named)}"
            )
        selected = [name for name in named if name in set(param_names)]  # model order
        self.param_names = selected
        self.shapes = {name: named[name].shape for name in selected}
        self._theta = torch.cat([self._cast(named[name]).reshape(-1) for name in selected])
        self._fixed = {n: self._cast(p) for n, p in named.items() if n not in self.shapes}
        # Buffers are copied: a train-mode BatchNorm updates them, and the model must not change.
        self._fixed.update({n: self._cast(b).clone() for n, b in model.named_buffers()})

    def _init_batches(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        self._batches = [(self._cast(x), y.detach().to(self.device)) for x, y in batches]
        if not self._batches:
            raise ValueError("batches must contain at least one (inputs, targets) pair")
        sizes = [_batch_size(x, y) for x, y in self._batches]
        self.num_data = sum(sizes)
        self._weights = [size / self.num_data for size in sizes]

    @property
    def num_params(self) -> int:
        """Length ``P`` of the parameter vector."""
        return self._theta.numel()

    @property
    def params(self) -> Tensor:
        """A copy of the flat parameter vector ``theta_0`` at which the model was given, ``[P]``."""
        return self._theta.clone()

    def _point(self, params: Tensor | None) -> Tensor:
        if params is None:
            return self._theta
        if params.shape != self._theta.shape:
            raise ValueError(f"params must have shape [{self.num_params}], got {params.shape}")
        return params.to(self.device, self.dtype)

    def _batch_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        if self.before_forward is not None:
            self.before_forward(self.model)
        tensors = {**self._fixed, **unflatten(theta, self.shapes)}
        loss = self.loss_fn(functional_call(self.model, tensors, (x,)), y)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        return loss

    def _loop(self, step: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """THE data loop: ``sum_b (n_b / N) * step(x_b, y_b)``."""
        context = eval_mode(self.model) if self.use_eval_mode else _nullcontext(self.model)
        total = None
        with context:
            for weight, (x, y) in zip(self._weights, self._batches):
                value = weight * step(x, y)
                total = value if total is None else total + value
        return total

    def loss(self, params: Tensor | None = None) -> Tensor:
        """The loss ``L(theta)`` as a 0-d tensor (``theta_0`` when ``params`` is None).

        Raises:
            ValueError: If the loss is not finite.
        """
        theta = self._point(params).detach()
        with torch.no_grad():
            loss = self._loop(lambda x, y: self._batch_loss(theta, x, y))
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is not finite ({loss.item()}); check inputs and weights")
        return loss

    def grad(self, params: Tensor | None = None) -> Tensor:
        """The gradient ``dL/dtheta``, ``[P]`` (surrogate gradient for SNNs)."""
        theta = self._point(params).detach().requires_grad_(True)

        def step(x: Tensor, y: Tensor) -> Tensor:
            return torch.autograd.grad(self._batch_loss(theta, x, y), theta)[0]

        return self._loop(step)

    def hvp(self, v: Tensor, params: Tensor | None = None) -> Tensor:
        """Hessian-vector product ``H v`` with ``H = d^2 L / dtheta^2``, ``[P]``; or ``H V``.

        A block ``V [P, k]`` is done in one pass over the data: the ``k`` tangents are mapped
        with ``vmap`` (double backward with ``is_grads_batched``; forward-over-reverse under
        ``torch.func.vmap``), falling back to one product per column where batching is not
        supported. Hooks and the per-sample weighting apply as for single products.

        Args:
            v: Vector ``[P]`` or block ``[P, k]``.
            params: Point ``theta`` (default ``theta_0``).
        """
        theta = self._point(params).detach()
        v = self._check_vector(v)
        if self.hvp_method == "forward_over_reverse":
            return self._loop(lambda x, y: self._forward_over_reverse(theta, v, x, y))
        theta = theta.requires_grad_(True)

        def step(x: Tensor, y: Tensor) -> Tensor:
            (gradient,) = torch.autograd.grad(
                self._batch_loss(theta, x, y), theta, create_graph=True
            )
            return double_backward(gradient, theta, v, retain_graph=False)

        return self._loop(step)

    def _forward_over_reverse(self, theta: Tensor, v: Tensor, x: Tensor, y: Tensor) -> Tensor:
        gradient = torch.func.grad(lambda t: self._batch_loss(t, x, y))

        def product(tangent: Tensor) -> Tensor:
            return torch.func.jvp(gradient, (theta,), (tangent,))[1]

        if v.ndim == 1:
            return product(v)
        try:
            return torch.func.vmap(product, in_dims=1, out_dims=1)(v)
        except RuntimeError:  # an op without a batching rule: one product per column
            return torch.stack([product(column) for column in v.T], dim=1)

    def hvp_function(self, params: Tensor | None = None) -> Callable[[Tensor], Tensor]:
        """A fast ``v -> H v`` by double backward, keeping the gradient's graph at ``params``.

        One forward and backward pass is done now; each product then costs one double-backward
        pass only (what PyHessian does for a single batch); a block ``V [P, k]`` is one batched
        double-backward pass (:func:`double_backward`). Memory: the activations and the
        backward graph of all batches stay allocated while the returned function lives.

        Args:
            params: Point ``theta`` (default ``theta_0``).

        Returns:
            Function mapping ``v`` ``[P]`` (or ``[P, k]``) to ``H v`` ``[P]`` (or ``[P, k]``).
        """
        theta = self._point(params).detach().requires_grad_(True)

        def step(x: Tensor, y: Tensor) -> Tensor:
            loss = self._batch_loss(theta, x, y)
            return torch.autograd.grad(loss, theta, create_graph=True)[0]

        gradient = self._loop(step)  # [P], with graph

        def hvp(v: Tensor) -> Tensor:
            return double_backward(gradient, theta, self._check_vector(v), retain_graph=True)

        return hvp

    def _check_vector(self, v: Tensor) -> Tensor:
        if v.ndim not in (1, 2) or v.shape[0] != self.num_params or 0 in v.shape:
            raise ValueError(
                f"v must have shape [{self.num_params}] or [{self.num_params}, k], "
                f"got {tuple(v.shape)}"
            )
        return v.detach().to(self.device, self.dtype)

    def check_deterministic(
        self, generator: torch.Generator | None = None, rtol: float | None = None
    ) -> None:
        """Check that two losses and two Hessian-vector products with the same vector agree.

        Args:
            generator: Source of the random test vector.
            rtol: Relative tolerance (default ``sqrt(eps)`` of the dtype).

        Raises:
            RuntimeError: If they differ, naming the usual causes.
        """
        rtol = torch.finfo(self.dtype).eps ** 0.5 if rtol is None else rtol
        v = torch.randn(self.num_params, generator=generator, dtype=self.dtype, device="cpu")
        v = v.to(self.device)
        for name, first, second in (
            ("losses", self.loss(), self.loss()),
            ("Hessian-vector products", self.hvp(v), self.hvp(v)),
        ):
            error = ((first - second).norm() / first.norm().clamp_min(1e-30)).item()
            if not error <= rtol:
                raise RuntimeError(
                    f"the objective is not deterministic: two {name} with the same input differ "
                    f"by {error:.3g} (relative; tolerance {rtol:.3g}). Common causes: dropout or "
                    "BatchNorm in train mode (use use_eval_mode=True), neuron state kept between "
                    "forward calls (pass a reset hook as before_forward), random ops in forward."
                )


def double_backward(gradient: Tensor, theta: Tensor, v: Tensor, retain_graph: bool) -> Tensor:
    """``d(gradient . v) / dtheta`` for ``v [P]``, or for every column of ``v [P, k]`` at once.

    A block is one double-backward pass with the ``k`` cotangents as a vmapped batch dimension
    (``autograd.grad(..., is_grads_batched=True)``); if an op of the graph has no batching rule,
    it falls back to one pass per column (then the graph is always retained between them).

    Args:
        gradient: ``[P]`` gradient computed with ``create_graph=True``.
        theta: The leaf it was differentiated with respect to.
        v: ``[P]`` or ``[P, k]``.
        retain_graph: Keep the graph after the (last) pass.

    Returns:
        ``[P]`` or ``[P, k]``.
    """
    if v.ndim == 1:
        return torch.autograd.grad(gradient, theta, grad_outputs=v, retain_graph=retain_graph)[0]
    try:
        (products,) = torch.autograd.grad(
            gradient, theta, grad_outputs=v.T, retain_graph=True, is_grads_batched=True
        )
        return products.T
    except RuntimeError:  # no batching rule for an op of the graph: one pass per column
        columns = [double_backward(gradient, theta, column, True) for column in v.T]
        return torch.stack(columns, dim=1)


@contextmanager
def _nullcontext(model: nn.Module) -> Iterator[nn.Module]:
    yield model

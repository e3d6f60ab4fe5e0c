"""The one-call API (landscape.api): dense float64 references, the mean/sum convention, resets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call

import landscape as ls
from landscape.params import unflatten

ROOT = Path(__file__).resolve().parents[2]
F64 = torch.float64


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    ).double()


@pytest.fixture(scope="module")
def cnn_data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 1, 6, 6, dtype=F64, generator=generator)
    return x, torch.randint(0, 3, (12,), generator=generator)


def _dense_hessian(model, criterion, batches, reset=None) -> torch.Tensor:
    """Independent reference: the dense Hessian of the per-sample mean loss over all batches."""
    names = [n for n, _ in model.named_parameters()]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = dict(model.named_buffers())
    num = sum(len(y) for _, y in batches)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        tensors = {**buffers, **unflatten(flat, shapes)}
        total = 0.0
        for x, y in batches:
            if reset is not None:
                reset(model)
            total = total + criterion(functional_call(model, tensors, (x,)), y) * len(y)
        return total / num

    assert names == list(shapes)
    return torch.autograd.functional.hessian(loss, theta)


def test_eigenvalues_match_a_dense_hessian(cnn_data):
    model, criterion = _cnn(), nn.CrossEntropyLoss()
    exact = torch.linalg.eigvalsh(_dense_hessian(model, criterion, [cnn_data]))
    top = ls.eigenvalues(model, criterion, cnn_data, top_n=3, tol=1e-10)
    bottom = ls.eigenvalues(model, criterion, cnn_data, top_n=2, which="bottom", tol=1e-10)
    assert top.all_converged and bottom.all_converged and top.seed == 0
    torch.testing.assert_close(top.eigenvalues, exact.flip(0)[:3], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(bottom.eigenvalues, exact[:2], rtol=1e-9, atol=1e-12)
    trace = ls.trace(model, criterion, cnn_data, num_matvecs=3 * exact.numel())
    assert trace.mean == pytest.approx(exact.sum().item(), rel=1e-9)  # exact sketch: n columns
    assert trace.seed == 0


def _batchings(data):
    x, y = data
    criterion = nn.CrossEntropyLoss()

    def loss_fn(model, batch):
        return criterion(model(batch[0]), batch[1])

    one = {"criterion": criterion, "data": data}
    two = {"criterion": criterion, "data": [(x[:5], y[:5]), (x[5:], y[5:])]}
    three = {"loss_fn": loss_fn, "data": [(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)][::-1]}
    return one, two, three


def test_two_batchings_give_the_same_numbers(cnn_data):
    """The mean/sum convention: batch means weighted by batch size, in every function."""
    model, other = _cnn(), _cnn()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    results = []
    for problem in _batchings(cnn_data):
        results.append(
            [
                ls.eigenvalues(model, top_n=2, tol=1e-10, **problem).eigenvalues,
                torch.tensor(ls.trace(model, num_matvecs=12, **problem).mean),
                ls.density(model, num_steps=8, num_repeats=2, **problem).nodes,
                torch.tensor(ls.random_plane(model, steps=3, **problem).values["loss"]),
                torch.tensor(ls.eigen_plane(model, steps=3, tol=1e-10, **problem).values["loss"]),
                torch.tensor(ls.interpolate(model, other, steps=3, **problem).values["loss"]),
                torch.tensor(ls.sharpness(model, num_steps=2, **problem).losses),
                torch.tensor(
                    ls.sharpness(
                        model, kind="adaptive_average", num_samples=2, radius=0.1, **problem
                    ).increases
                ),
            ]
        )
    for other_results in results[1:]:
        for first, second in zip(results[0], other_results):
            torch.testing.assert_close(second, first, rtol=1e-12, atol=1e-12)
    interp = ls.interpolate(model, other, nn.CrossEntropyLoss(), cnn_data, steps=3).values["loss"]
    with torch.no_grad():
        ends = [float(nn.CrossEntropyLoss()(m(cnn_data[0]), cnn_data[1])) for m in (model, other)]
    assert [interp[0], interp[2]] == pytest.approx(ends, rel=1e-12)


def test_surface_metrics_are_means_over_all_samples(cnn_data):
    model = _cnn()
    x, y = cnn_data

    def accuracy(outputs, targets):
        return (outputs.argmax(1) == targets).double().mean()

    data = [(x[:5], y[:5]), (x[5:], y[5:])]
    surface = ls.random_plane(
        model, nn.CrossEntropyLoss(), data, steps=3, metrics={"acc": accuracy}
    )
    with torch.no_grad():
        centre = (nn.CrossEntropyLoss()(model(x), y), accuracy(model(x), y))
    assert surface.values["loss"][1, 1] == pytest.approx(float(centre[0]), rel=1e-12)
    assert surface.values["acc"][1, 1] == pytest.approx(float(centre[1]), rel=1e-12)
    assert surface.metadata["seed"] == 0 and surface.metadata["num_samples"] == 12


def _sj_model_and_data():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly.activation_based import layer

    torch.manual_seed(0)
    model = nn.Sequential(
        layer.Linear(5, 8, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Linear(8, 3, step_mode="m"),
    ).double()
    generator = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(4, 12, 5, dtype=F64, generator=generator)  # [T, B, features]
    y = torch.randint(0, 3, (12,), generator=generator)
    return model, [(x[:, :6], y[:6]), (x[:, 6:], y[6:])]


def _sj_criterion(outputs, targets):
    return nn.functional.cross_entropy(outputs.mean(0), targets)


def _manual_plane(model, batches, directions, axis, reset):
    """Independent reference: move a copy's weights, reset by hand, average per sample."""
    import copy

    clone, values = copy.deepcopy(model), torch.zeros(len(axis), len(axis), dtype=F64)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for i, a in enumerate(axis):
            for j, b in enumerate(axis):
                for name, p in clone.named_parameters():
                    p.copy_(state[name] + a * directions[0][name] + b * directions[1][name])
                total = 0.0
                for x, y in batches:
                    reset(clone)
                    total += float(_sj_criterion(clone(x), y)) * len(y)
                values[i, j] = total / sum(len(y) for _, y in batches)
    return values


def test_spikingjelly_reset_is_found_and_needed():
    model, batches = _sj_model_and_data()
    from spikingjelly.activation_based import functional

    assert ls.resolve_reset(model, None) is functional.reset_net
    surface = ls.random_plane(model, _sj_criterion, batches, steps=3)
    generator = torch.Generator().manual_seed(0)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    directions = [ls.random_direction(weights, generator) for _ in range(2)]
    manual = _manual_plane(model, batches, directions, surface.axes[0], functional.reset_net)
    torch.testing.assert_close(torch.tensor(surface.values["loss"]), manual, rtol=1e-12, atol=0)
    unreset = ls.random_plane(model, _sj_criterion, batches, steps=3, reset=False)
    assert (torch.tensor(unreset.values["loss"]) - manual).abs().max() > 1e-4  # the test can fail

    exact = torch.linalg.eigvalsh(
        _dense_hessian(model, _sj_criterion, batches, functional.reset_net)
    ).flip(0)[:2]
    top = ls.eigenvalues(model, _sj_criterion, batches, top_n=2, tol=1e-10)
    manual_top = ls.eigenvalues(
        model, _sj_criterion, batches, top_n=2, tol=1e-10, reset=functional.reset_net
    )
    torch.testing.assert_close(top.eigenvalues, manual_top.eigenvalues, rtol=1e-12, atol=0)
    torch.testing.assert_close(top.eigenvalues, exact, rtol=1e-9, atol=1e-12)
    wrong = ls.eigenvalues(model, _sj_criterion, batches, top_n=2, tol=1e-10, reset=False)
    assert (wrong.eigenvalues - exact).abs().max() > 1e-4


class _Accumulator(nn.Module):
    """A hand-written stateful layer: adds its input to a state kept between forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.state = None
        self.resets = 0

    def reset(self) -> None:
        self.state, self.resets = None, self.resets + 1

    def forward(self, x):
        self.state = x if self.state is None else self.state + x
        return torch.tanh(self.state)


def test_modules_with_a_reset_method_are_reset(cnn_data):
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), _Accumulator(), nn.Linear(4, 3)).double()
    criterion, (x, y) = nn.CrossEntropyLoss(), cnn_data
    assert ls.resolve_reset(model, None) is ls.reset_states
    assert ls.resolve_reset(model, False) is None and ls.resolve_reset(_cnn(), None) is None
    with pytest.raises(ValueError, match="reset"):
        ls.resolve_reset(model, True)
    data = [(x[:6], y[:6]), (x[6:], y[6:])]
    with torch.no_grad():
        model[2].reset()
        expected = float(criterion(model(x), y))
    surface = ls.interpolate(model, model, criterion, data, steps=2)
    assert surface.values["loss"][0] == pytest.approx(expected, rel=1e-12)
    assert model[2].resets > 2
    objective = ls.Objective(model, criterion, data)  # the engine finds it too
    assert float(objective.loss()) == pytest.approx(expected, rel=1e-12)
    unreset = ls.Objective(model, criterion, data, reset=False)
    assert float(unreset.loss()) != pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="not both"):
        ls.Objective(model, criterion, data, reset=False, before_forward=print)


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert "## Python API" in text, "README.md has no Python API section"
    text = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_api_examples_run():
    blocks = _readme_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README Python API", "exec"), {"__name__": "readme"})

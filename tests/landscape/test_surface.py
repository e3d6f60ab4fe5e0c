"""Surface engine: every fast path equals an independent per-point loop in float64.

The reference loop deep-copies the model, writes each point's weights into it in place, and
evaluates it batch by batch under ``no_grad`` (BatchNorm statistics recomputed the textbook way
when asked). The engine instead goes through ``functional_call``, the input-layer cache, chunks
and several processes' shares; in float64 the two agree to 1e-10 (in float32 a reordered sum can
flip a spike, which is the staircase, not a bug).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.directions import difference, random_direction
from landscape.store import Grid, SurfaceStore, iter_surface
from landscape.surface import SurfaceEvaluator
from landscape.surface_io import Surface, load_surface, load_surface_frame, save_surface
from training.models import build
from training.snn.losses import loss_terms
from training.snn.spikes import spike_counter

RTOL = 1e-10


def metrics(outputs, labels):
    terms = loss_terms(outputs, labels, 0.05, 1.0)
    n = len(labels)
    return {"l_sdt": terms["l_sdt"] * n, "l_tet": terms["l_tet"] * n, "accuracy": terms["correct"]}


def make_model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "mlp":
        return build("spiking_mlp", hidden=(8,), T=2).double().eval()
    model = build("digits_snn", channels=(4, 4), T=2).double().eval()
    with torch.no_grad():  # non-trivial BN statistics, so that eval and recompute differ
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def make_batches(seed: int = 1, sizes=(7, 5)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(sum(sizes), 1, 8, 8, generator=generator, dtype=torch.float64) + 0.5
    y = torch.randint(0, 10, (sum(sizes),), generator=generator)
    return list(zip(x.split(list(sizes)), y.split(list(sizes))))


def directions_for(model: nn.Module, count: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(5)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    return [random_direction(weights, generator, ignore_biasbn=False) for _ in range(count)]


def reference(model, found, batches, coords, bn_batches=None) -> dict[str, np.ndarray]:
    """Per-point loop: in-place weights on a copy, plain forwards, spike_counter for rates."""
    result: dict[str, list] = {}
    for point in coords.tolist():
        net = copy.deepcopy(model)
        with torch.no_grad():
            state = net.state_dict(keep_vars=True)
            for c, direction in zip(point, found):
                for name, d in direction.items():
                    state[name].add_(c * d)
            if bn_batches is not None:
                recompute_bn(net, bn_batches)
        sums, total = {}, 0
        with torch.no_grad(), spike_counter(net) as counts:
            for x, y in batches:
                for key, value in metrics(net(x), y).items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                total += len(y)
        values = {k: v / total for k, v in sums.items()}
        values["firing_rate"] = sum(c[0] for c in counts.values()) / sum(
            c[1] for c in counts.values()
        )
        values.update({f"rate/{k}": c[0] / c[1] for k, c in counts.items()})
        for key, value in values.items():
            result.setdefault(key, []).append(value)
    return {k: np.array(v) for k, v in result.items()}


def recompute_bn(net: nn.Module, bn_batches) -> None:
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    for x in bn_batches:
        net(x)
    net.eval()


def assert_equal_metrics(values: dict, expected: dict, rtol: float = RTOL) -> None:
    assert sorted(values) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(
            np.asarray(values[key]), expected[key], rtol=rtol, atol=1e-12, err_msg=f"metric {key}"
        )


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("use_input_cache, use_channels_last", [(True, True), (False, False)])
def test_engine_equals_pointwise_loop(name, use_input_cache, use_channels_last):
    model, batches = make_model(name), make_batches()
    found = directions_for(model)
    coords = Grid.linspace((-1, 1, 3), (-0.5, 1, 2)).coordinates()  # non-square
    evaluator = SurfaceEvaluator(
        model,
        found,
        batches,
        metrics,
        observer=spike_counter,
        use_input_cache=use_input_cache,
        use_channels_last=use_channels_last,
    )
    values = evaluator.evaluate(coords)
    assert_equal_metrics(values, reference(model, found, batches, coords))
    expected_layer = {"mlp": "layers.1.0", "cnn": "features.0.0"}[name]
    assert evaluator.input_layer == (expected_layer if use_input_cache else None)


def test_bn_recompute_equals_textbook_recomputation():
    model, batches = make_model("cnn"), make_batches()
    bn_batches = [x for x, _ in make_batches(seed=9, sizes=(6, 4))]
    found = directions_for(model)
    coords = torch.tensor([[0.0, 0.0], [0.5, -0.25]], dtype=torch.float64)
    evaluator = SurfaceEvaluator(
        model,
        found,
        batches,
        metrics,
        observer=spike_counter,
        bn_mode="recompute",
        bn_batches=bn_batches,
    )
    values = evaluator.evaluate(coords)
    assert_equal_metrics(values, reference(model, found, batches, coords, bn_batches))
    eval_values = SurfaceEvaluator(model, found, batches, metrics).evaluate(coords)
    assert not np.allclose(eval_values["l_sdt"], values["l_sdt"]), "BN mode had no effect"


def test_centre_equals_plain_evaluation_float32():
    model = make_model("cnn").float()
    batches = [(x.float(), y) for x, y in make_batches()]
    found = [{n: d.float() for n, d in direction.items()} for direction in directions_for(model)]
    # Without the cache the centre is the same computation as model(x): equal to the last bit.
    evaluator = SurfaceEvaluator(model, found, batches, metrics, use_input_cache=False)
    values = evaluator.evaluate(torch.zeros(1, 2))
    with torch.no_grad():
        sums = [metrics(model(x), y) for x, y in batches]
    for key in ("l_sdt", "l_tet", "accuracy"):
        assert values[key].item() == sum(float(s[key]) for s in sums) / 12


def test_interpolation_endpoints_reproduce_both_checkpoints():
    first, second, batches = make_model("cnn", 0), make_model("cnn", 1), make_batches()
    start = {n: t.detach() for n, t in first.state_dict().items()}
    end = {n: t.detach() for n, t in second.state_dict().items()}
    direction = difference(end, start)  # parameters and BN running statistics
    assert "features.0.1.running_var" in direction
    values = SurfaceEvaluator(
        first, [direction], batches, metrics, observer=spike_counter
    ).evaluate(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    for index, model in enumerate((first, second)):
        expected = reference(model, [direction], batches, torch.zeros(1, 1))
        assert_equal_metrics({k: v[index : index + 1] for k, v in values.items()}, expected)


def test_model_is_never_mutated():
    model, batches = make_model("cnn"), make_batches()
    model.train()
    model.features[0].training = False  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m, m.training, m.__dict__.get("forward")) for m in model.modules()]
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    grads = [p.requires_grad for p in model.parameters()]
    for bn_mode, points_per_forward in (("eval", 1), ("recompute", 1), ("eval", 2)):
        evaluator = SurfaceEvaluator(
            model,
            directions_for(model),
            batches,
            metrics,
            observer=spike_counter,
            bn_mode=bn_mode,
            bn_batches=[batches[0][0]],
            points_per_forward=points_per_forward,
        )
        evaluator.evaluate(torch.ones(2, 2))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [(m, m.training, m.__dict__.get("forward")) for m in model.modules()] == flags
    assert momenta == [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert grads == [p.requires_grad for p in model.parameters()]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_input_cache_is_only_used_when_exact():
    def total(outputs, labels):
        return {"sum": outputs.sum()}

    x = torch.randn(6, 4, dtype=torch.float64)
    batches = [(x, torch.zeros(6))]
    plain = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    assert SurfaceEvaluator(plain, [], batches, total).input_layer == "0"
    behind_bn = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)).double().eval()
    behind_bn[0].weight.requires_grad_(False)  # input still depends on the BN's buffers
    assert SurfaceEvaluator(behind_bn, [], batches, total).input_layer is None

    class Twice(nn.Module):  # one layer called twice per forward: no cache
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, inputs):
            return self.layer(self.layer(inputs))

    assert SurfaceEvaluator(Twice().double(), [], batches, total).input_layer is None


def test_store_resumes_and_ranks_share_the_grid(tmp_path):
    model, batches = make_model("mlp"), make_batches()
    evaluator = SurfaceEvaluator(model, directions_for(model), batches, metrics)
    coords = Grid.linspace((-1, 1, 4), (-1, 1, 3)).coordinates()
    whole = evaluator.evaluate(coords)
    store = SurfaceStore(tmp_path / "a", 12, 5, "fp")
    for chunk, size, resumed in iter_surface(evaluator, coords, store):
        break  # a killed run: one chunk on disk
    reports = list(iter_surface(evaluator, coords, store))
    assert [r[2] for r in reports] == [True, False, False] and sum(r[1] for r in reports) == 12
    assert_equal_metrics(store.read(), {k: v.numpy() for k, v in whole.items()}, rtol=0)
    shared = SurfaceStore(tmp_path / "b", 12, 5, "fp")
    for rank in (1, 0):
        list(iter_surface(evaluator, coords, shared, rank=rank, world_size=2))
    assert_equal_metrics(shared.read(), store.read(), rtol=0)
    stale = SurfaceStore(tmp_path / "a", 12, 5, "other settings")
    assert not stale.is_done(0)
    with pytest.raises(RuntimeError, match="3 chunk"):
        stale.read()


def test_surface_file_round_trip_and_long_frame(tmp_path):
    grid = Grid.linspace((-1, 1, 3), (0, 1, 2))
    values = {"l_sdt": np.arange(6.0).reshape(3, 2), "accuracy": np.ones((3, 2))}
    surface = Surface([np.asarray(a) for a in grid.axes], values, {"seed": 3}, {"t": np.eye(2)})
    save_surface(tmp_path / "s", surface)
    loaded = load_surface(tmp_path / "s.json")
    assert loaded.metadata["seed"] == 3 and np.array_equal(loaded.values["l_sdt"], values["l_sdt"])
    frame = load_surface_frame(tmp_path / "s.npz")
    assert len(frame) == 12 and set(frame.columns) == {"x", "y", "metric", "value"}
    row = frame[(frame.metric == "l_sdt") & (frame.x == 1.0) & (frame.y == 0.0)]
    assert row.value.item() == values["l_sdt"][2, 0]  # x-major, non-square


def test_grid_order_and_errors():
    grid = Grid.linspace((0, 1, 2), (0, 2, 3))
    assert grid.shape == (2, 3) and grid.coordinates()[:3, 1].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="low < high"):
        Grid.linspace((1, 0, 5))


def test_evaluator_errors():
    model, batches = make_model("mlp"), make_batches()
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        SurfaceEvaluator(model, [], batches, metrics, bn_mode="train")
    with pytest.raises(ValueError, match="must not be empty"):
        SurfaceEvaluator(model, [], batches, metrics, bn_mode="recompute")
    with pytest.raises(ValueError, match="unknown, misshaped"):
        SurfaceEvaluator(model, [{"nope": torch.ones(1)}], batches, metrics)
    with pytest.raises(ValueError, match="needs 0 coordinates"):
        SurfaceEvaluator(model, [], batches, metrics).point([1.0])


@pytest.mark.slow
def test_compiled_forward_equals_loop():
    model, batches = make_model("cnn"), make_batches()
    found = directions_for(model)
    coords = torch.tensor([[0.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
    values = SurfaceEvaluator(model, found, batches, metrics, use_compile=True).evaluate(coords)
    expected = reference(model, found, batches, coords)
    assert_equal_metrics(values, {k: v for k, v in expected.items() if "rate" not in k})


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("bn_mode", ["eval", "recompute"])
def test_stacked_points_equal_pointwise_loop(name, bn_mode):
    """K points per forward (grouped convs, batched matmuls), observer relayed: same to 1e-12."""
    model, batches = make_model(name), make_batches()
    found = directions_for(model)
    coords = Grid.linspace((-1, 1, 3), (-0.5, 1, 3)).coordinates()  # 9 points: groups 4, 4, 1
    bn_batches = [x for x, _ in make_batches(seed=9, sizes=(6, 4))]
    kwargs = dict(observer=spike_counter, bn_mode=bn_mode, bn_batches=bn_batches)
    for cache, channels_last in ((True, True), (False, False)):
        evaluator = SurfaceEvaluator(
            model,
            found,
            batches,
            metrics,
            points_per_forward=4,
            use_input_cache=cache,
            use_channels_last=channels_last,
            **kwargs,
        )
        values = evaluator.evaluate(coords)
        assert evaluator.stacking == "up to 4 points per forward"
        single = SurfaceEvaluator(model, found, batches, metrics, points_per_forward=1, **kwargs)
        expected = single.evaluate(coords)
        for key in expected:
            np.testing.assert_allclose(values[key], expected[key], rtol=1e-12, atol=1e-12)
    recomputed = bn_batches if bn_mode == "recompute" else None
    assert_equal_metrics(values, reference(model, found, batches, coords, recomputed), rtol=1e-12)


def test_stacking_falls_back_where_it_does_not_apply():
    def total(outputs, labels):
        return {"sum": outputs.sum()}

    x = torch.randn(6, 4, dtype=torch.float64)
    batches, coords = [(x, torch.zeros(6))], torch.tensor([[0.5], [-1.0], [2.0]])

    class Mixing(nn.Module):  # softmax over the features mixes the stacked blocks
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 3)

        def forward(self, inputs):
            return torch.softmax(self.layer(inputs), dim=-1)

    models = {
        "mixes": Mixing().double(),
        "layer norm": nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).double(),
    }
    for reason, model in models.items():
        weights = {n: p.detach() for n, p in model.named_parameters()}
        found = [random_direction(weights, torch.Generator().manual_seed(0), ignore_biasbn=False)]
        stacked = SurfaceEvaluator(model, found, batches, total, points_per_forward=4)
        values = stacked.evaluate(coords)
        assert stacked.stacking.startswith("one point per forward: "), reason
        single = SurfaceEvaluator(model, found, batches, total, points_per_forward=1)
        assert torch.equal(values["sum"], single.evaluate(coords)["sum"])
    assert SurfaceEvaluator(models["mixes"], [], batches, total).points_per_forward == 1  # CPU

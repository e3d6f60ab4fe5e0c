"""The measure registry, the evaluation input, time-step accuracy and the flatness protocol's
settings, each against independent references on a tiny checkpoint or by hand."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import analysis.measures  # noqa: F401  (registers every measure)
from analysis.measures import registry
from analysis.measures.flatness import FlatnessSettings
from analysis.measures.inputs import (
    Datasets,
    DataSettings,
    DataSpec,
    Evaluation,
    PointMetrics,
    load_input,
    loss_function,
    parse_loss,
    resolve_dtype,
    sample_indices,
    select,
    tensor_digest,
)
from analysis.measures.registry import (
    MEASURES,
    CheckpointMeasure,
    Estimate,
    LossMeasure,
    MeasureResult,
    describe,
    get,
    loss_measures,
    register,
)
from analysis.measures.timesteps import COLUMNS as TIMESTEP_COLUMNS
from analysis.measures.timesteps import AtTimeSteps, TimestepSettings
from analysis.measures.timesteps import compute as timesteps
from tests.helpers import save_mlp
from toolkit.errors import ConfigError
from training.data.datasets import TensorLoader
from training.runs import checkpoint
from training.runs.config import MAX_T
from training.snn.gradient_stats import momentum_subset

F64 = torch.float64
LOSS_MEASURES = [
    "lambda_max",
    "trace",
    "normalized_lambda_max",
    "normalized_trace",
    "epsilon_sharpness",
    "adaptive_worst",
    "adaptive_average",
]


@pytest.fixture(scope="module")
def tet_path(tmp_path_factory):
    return save_mlp(tmp_path_factory.mktemp("tet") / "last.pt", "tet", 0, T=3, lamb=0.2)


@pytest.fixture(scope="module")
def datasets() -> Datasets:
    return Datasets()


@pytest.fixture(scope="module")
def tet_input(tet_path, datasets):
    return load_input(
        checkpoint.read(tet_path), DataSpec(samples=24, batch_size=10), "cpu", datasets
    )


# --- the registry ---


def test_registry_holds_every_measure_in_registration_order():
    assert loss_measures() == [MEASURES[name] for name in LOSS_MEASURES]
    checkpoint_measures = [n for n, m in MEASURES.items() if isinstance(m, CheckpointMeasure)]
    assert checkpoint_measures == [
        "hessian",
        "gradient_momentum",
        "random_perturbation",
        "spike_gap",
        "timesteps",
    ]
    assert [m.name for m in loss_measures() if m.per_step] == ["lambda_max", "trace"]
    invariant = {m.name for m in loss_measures() if m.rescaling_invariant}
    assert invariant == {
        "normalized_lambda_max",
        "normalized_trace",
        "adaptive_worst",
        "adaptive_average",
    }
    assert get("timesteps").artifact == "timesteps.csv" and get("hessian").artifact == "hessian.csv"
    assert get("random_perturbation").artifact == "sharpness.csv"
    assert all(m.summary for m in MEASURES.values())


def test_register_refuses_a_taken_name():
    before = dict(MEASURES)
    clash = LossMeasure("trace", object, lambda loss, settings, generator: Estimate(0.0), stream=99)
    with pytest.raises(ValueError, match=r"^measure 'trace' is registered twice$"):
        register(clash)
    assert MEASURES == before and MEASURES["trace"] is before["trace"]


def test_register_and_get_a_new_measure(monkeypatch):
    monkeypatch.setattr(registry, "MEASURES", dict(MEASURES))
    new = LossMeasure("gradient_norm", object, lambda *args: Estimate(1.0), stream=6)
    assert register(new) is new
    assert registry.get("gradient_norm") is new
    assert registry.loss_measures()[-1] is new and len(registry.loss_measures()) == 8
    assert "gradient_norm" not in MEASURES  # the real registry is untouched


def test_get_names_the_registered_measures():
    with pytest.raises(KeyError) as info:
        get("sharpest")
    message = info.value.args[0]
    assert message.startswith("unknown measure 'sharpest'; registered: lambda_max, trace, ")
    assert message.endswith("random_perturbation, spike_gap, timesteps")


def test_describe_lists_each_measure_on_one_line():
    text = describe(loss_measures())
    lines = text.splitlines()
    assert len(lines) == len(LOSS_MEASURES)
    assert [line.split()[0] for line in lines] == LOSS_MEASURES
    assert lines[0] == f"  {'lambda_max':<22} {get('lambda_max').summary}"
    invariant = [line.split()[0] for line in lines if line.endswith(" [rescaling-invariant]")]
    assert invariant == [m.name for m in loss_measures() if m.rescaling_invariant]
    assert "[rescaling-invariant]" not in describe([get("timesteps")])
    assert describe([]) == ""


def test_estimate_and_result_defaults():
    found = Estimate(1.5)
    assert math.isnan(found.stderr) and found.converged and found.num_evaluations == 0
    result = MeasureResult([{"a": 1}])
    assert result.record == {} and result.arrays == {}
    assert MeasureResult([]).record is not result.record


# --- which samples ---


def test_data_spec_validation():
    assert DataSpec() == DataSpec("train", 1024, 0, 256, "seeded")
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        DataSpec(split="val")
    with pytest.raises(ValueError, match=r"subset must be one of \('seeded', 'trainer'\), got 'x'"):
        DataSpec(subset="x")


def test_data_settings():
    settings = DataSettings(samples=100, split="test", seed=3, batch_size=7)
    assert settings.spec() == DataSpec("test", 100, 3, 7)
    assert settings.dry_run().samples == 32 and DataSettings(samples=5).dry_run().samples == 5
    assert DataSettings(samples=None).dry_run().samples == 32
    assert DataSettings(time_step=2).time_step == 2
    with pytest.raises(ConfigError, match=r"--time-step analyses L_t .*drop --loss sdt"):
        DataSettings(loss="sdt", time_step=0)
    with pytest.raises(ConfigError, match=r"^samples must be >= 1, got 0"):
        DataSettings(samples=0)
    with pytest.raises(ConfigError, match=r"^time_step must be >= 0, got -1"):
        DataSettings(time_step=-1)
    with pytest.raises(ConfigError, match=r"^dtype must be one of float32, float64"):
        DataSettings(dtype="float16")
    assert resolve_dtype("float64") is F64 and resolve_dtype("float32") is torch.float32


def test_sample_indices_are_sorted_seeded_and_distinct():
    first = sample_indices(100, 30, seed=4)
    assert first.shape == (30,) and first.dtype == torch.int64
    assert torch.equal(first, first.sort().values) and len(set(first.tolist())) == 30
    assert 0 <= int(first.min()) and int(first.max()) < 100
    assert torch.equal(first, sample_indices(100, 30, seed=4))
    assert not torch.equal(first, sample_indices(100, 30, seed=5))
    assert torch.equal(sample_indices(10, 50, seed=0), torch.arange(10))  # at most all
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(4))[:30].sort().values
    assert torch.equal(first, expected)


def test_tensor_digest():
    a = torch.arange(6)
    assert tensor_digest(a) == tensor_digest(torch.arange(6)) and len(tensor_digest(a)) == 64
    assert tensor_digest(a) != tensor_digest(torch.arange(1, 7))
    assert tensor_digest(a.view(2, 3).T) == tensor_digest(a.view(2, 3).T.contiguous())


def test_load_input_selects_the_seeded_subset(tet_input, datasets, tet_path):
    config = tet_input.config
    dataset = datasets.of(config)
    assert datasets.of(config) is dataset  # loaded once
    indices = sample_indices(len(dataset.y_train), 24, 0)
    assert torch.equal(tet_input.loader.x, dataset.x_train[indices])
    assert [len(y) for _, y in tet_input.batches] == [10, 10, 4]
    assert tet_input.data == {
        "dataset": "digits",
        "split": "train",
        "num_samples": 24,
        "seed": 0,
        "batch_size": 10,
        "indices_sha256": tensor_digest(indices),
    }
    assert not tet_input.model.training
    batches, record = select(datasets, config, DataSpec("test", None, batch_size=1000))
    assert record == {
        "dataset": "digits",
        "split": "test",
        "num_samples": len(dataset.y_test),
        "batch_size": 1000,
    }
    assert torch.equal(batches[0][1], dataset.y_test)


def test_trainer_subset(tet_path, datasets):
    found = load_input(
        checkpoint.read(tet_path), DataSpec(samples=8, subset="trainer"), "cpu", datasets
    )
    dataset = datasets.of(found.config)
    x, y = momentum_subset(dataset.x_train, dataset.y_train, 8)
    assert torch.equal(found.loader.x, x) and torch.equal(found.loader.y, y)
    assert found.data["subset"] == "trainer" and found.data["num_samples"] == 8


# --- losses ---


def test_parse_loss_refuses_other_names():
    assert parse_loss("ce_t12") == ("checkpoint", 12)
    for bad in ("ce_t", "ce_tx", "CE_T1", "mse", "ce_t-1"):
        with pytest.raises(ValueError, match="loss must be sdt, tet or ce_t<t>"):
            parse_loss(bad)


def test_loss_function_names_and_refusals(tet_input):
    config = tet_input.config  # tet, T = 3, lambda 0.2
    assert loss_function(config)[1] == "tet(lambda=0.2, phi=1.0)"
    assert loss_function(config, "sdt")[1] == "sdt"
    assert loss_function(config.replace(method="sdt"))[1] == "sdt"
    assert loss_function(config, time_step=2)[1] == "ce_t2"
    with pytest.raises(ConfigError, match=r"must be in \[0, T-1\] = \[0, 2\], got 3"):
        loss_function(config, time_step=3)
    with pytest.raises(ConfigError, match=r"must be in \[0, T-1\] = \[0, 2\], got -1"):
        loss_function(config, time_step=-1)
    with pytest.raises(ConfigError, match=r"cannot be combined with --loss tet"):
        loss_function(config, "tet", 0)
    with pytest.raises(ConfigError, match=r"unknown loss 'mse'"):
        loss_function(config, "mse")


def test_loss_functions_against_hand_written_losses(generator):
    config = checkpoint_config()
    outputs = torch.randn(3, 5, 10, generator=generator, dtype=F64)
    y = torch.randint(0, 10, (5,), generator=generator)
    per_step = torch.stack([F.cross_entropy(outputs[t], y) for t in range(3)])
    tet = 0.8 * per_step.mean() + 0.2 * ((outputs - 1.0) ** 2).mean()
    for loss, time_step, expected in (
        ("checkpoint", None, tet),
        ("sdt", None, F.cross_entropy(outputs.mean(0), y)),
        ("checkpoint", 1, per_step[1]),
    ):
        found = loss_function(config, loss, time_step)[0](outputs, y)
        torch.testing.assert_close(found, expected, rtol=1e-13, atol=0)


def checkpoint_config():
    from training.runs.config import TrainConfig

    return TrainConfig(method="tet", T=3, tet_lambda=0.2, tet_phi=1.0)


def test_point_metrics_are_batch_sums(generator):
    outputs = torch.randn(3, 6, 10, generator=generator, dtype=F64)
    y = torch.randint(0, 10, (6,), generator=generator)
    y[:2] = outputs.mean(0).argmax(-1)[:2]  # at least two right
    found = PointMetrics.of(checkpoint_config())(outputs, y)
    assert PointMetrics.of(checkpoint_config()) == PointMetrics(0.2, 1.0)
    per_step = torch.stack([F.cross_entropy(outputs[t], y) for t in range(3)])
    tet = 0.8 * per_step.mean() + 0.2 * ((outputs - 1.0) ** 2).mean()
    torch.testing.assert_close(found["l_sdt"], 6 * F.cross_entropy(outputs.mean(0), y))
    torch.testing.assert_close(found["l_tet"], 6 * tet)
    correct = int((outputs.mean(0).argmax(-1) == y).sum())
    assert int(found["accuracy"]) == correct and correct >= 2


def test_eval_input_loss_dtype_name_and_value(tet_input):
    x, y = tet_input.loader.x, tet_input.loader.y
    model = copy.deepcopy(tet_input.model).double()
    with torch.no_grad():
        outputs = model(x.double())
    per_step = torch.stack([F.cross_entropy(outputs[t], y) for t in range(3)])
    expected = {
        "checkpoint": (
            "tet(lambda=0.2, phi=1.0)",
            0.8 * per_step.mean() + 0.2 * ((outputs - 1) ** 2).mean(),
        ),
        "sdt": ("sdt", F.cross_entropy(outputs.mean(0), y)),
        "ce_t2": ("ce_t2", per_step[2]),
    }
    for loss, (name, value) in expected.items():
        found = tet_input.loss(loss, dtype=F64)
        assert found.name == name and found.objective.dtype == F64
        assert found.objective.params.dtype == F64
        assert float(found.objective.loss()) == pytest.approx(float(value), rel=1e-12)
    single = tet_input.loss("sdt")
    assert (
        single.objective.dtype == torch.float32 and single.objective.params.dtype == torch.float32
    )
    assert float(single.objective.loss()) == pytest.approx(float(expected["sdt"][1]), rel=1e-5)
    assert tet_input.loss(time_step=1).name == "ce_t1"
    assert tet_input.model.layers[1][0].weight.dtype == torch.float32  # never modified


def test_param_names_restrict_the_objective(tet_input):
    names = ["layers.3.0.weight", "layers.3.0.bias"]
    part = tet_input.loss("sdt", param_names=names, dtype=F64).objective
    model = tet_input.model
    assert part.num_params == sum(dict(model.named_parameters())[n].numel() for n in names)
    assert part.num_params < tet_input.loss("sdt", dtype=F64).objective.num_params


def test_hessian_and_normalized_operators_are_cached(tet_input, generator):
    loss = tet_input.loss("sdt", dtype=F64)
    assert loss.hessian is loss.hessian
    zero, other = loss.normalized(0.0), loss.normalized(0.1)
    assert loss.normalized(0.0) is zero and loss.normalized(0.1) is other and zero is not other
    assert set(loss.normalized_operators) == {0.0, 0.1}
    v = torch.randn(loss.objective.num_params, generator=generator, dtype=F64)
    scale = loss.objective.params.abs() + 0.1
    expected = scale * loss.objective.hvp(scale * v)
    torch.testing.assert_close(other @ v, expected, rtol=1e-10, atol=1e-12)


# --- temporal scalability ---


def test_timestep_settings():
    assert TimestepSettings().T == tuple(range(1, 9))
    assert TimestepSettings(T=(2, 5, 7)).dry_run().T == (2, 5)
    with pytest.raises(ConfigError, match=r"^T must be in \[1, 1000\], got \(0, 2\)"):
        TimestepSettings(T=(0, 2))
    with pytest.raises(ConfigError, match=r"^T must be in"):
        TimestepSettings(T=(MAX_T + 1,))


def test_timesteps_one_row_per_T(tet_input):
    result = timesteps(tet_input, TimestepSettings(T=(1, 3, 4)), Evaluation(quiet=True))
    assert [row["T"] for row in result.rows] == [1, 3, 4]
    assert all(list(row) == list(TIMESTEP_COLUMNS) for row in result.rows)
    x, y = tet_input.loader.x, tet_input.loader.y
    model = tet_input.model
    for row in result.rows:
        assert row["train_T"] == 3 and row["method"] == "tet" and row["num_samples"] == 24
        assert row["sha256"] == tet_input.checkpoint.sha256 and row["split"] == "train"
        with torch.no_grad():
            outputs = model(x, T=row["T"])
        assert outputs.shape == (row["T"], 24, 10)
        accuracy = float((outputs.mean(0).argmax(-1) == y).double().mean())
        assert row["acc"] == pytest.approx(accuracy, abs=1e-12)
        sdt = float(F.cross_entropy(outputs.mean(0), y))
        assert row["l_sdt"] == pytest.approx(sdt, rel=1e-5)
        assert 0.0 <= row["firing_rate"] <= 1.0
    at_3 = AtTimeSteps(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(at_3(x), model(x))  # the training T


def test_timesteps_refuses_event_frames(tet_input):
    x = tet_input.loader.x
    frames = TensorLoader(x.unsqueeze(1).expand(-1, 3, -1, -1, -1), tet_input.loader.y, 10)
    events = replace(tet_input, loader=frames, batches=list(frames.batches()))
    with pytest.raises(ConfigError, match=r"needs static inputs, not event frames"):
        timesteps(events, TimestepSettings(T=(1,)), Evaluation(quiet=True))


# --- the flatness protocol's settings ---


def test_flatness_settings_record_every_loss_measure_setting():
    """The protocol's completeness: every field of every registered loss measure's settings is a
    field of FlatnessSettings, with the same default and the same declaration."""
    protocol = {f.name: f for f in dataclasses.fields(FlatnessSettings)}
    for measure in loss_measures():
        for f in dataclasses.fields(measure.settings):
            assert f.name in protocol, f"{measure.name}.{f.name} is not recorded by the protocol"
            assert protocol[f.name].default == f.default, f"{measure.name}.{f.name}"
            assert dict(protocol[f.name].metadata) == dict(f.metadata), f"{measure.name}.{f.name}"


def test_settings_of_passes_the_protocols_values():
    settings = FlatnessSettings(lanczos_tol=0.05, trace_matvecs=9, eta=0.3, adaptive_p=2.0)
    found = {m.name: settings.settings_of(m) for m in loss_measures()}
    assert found["lambda_max"] == get("lambda_max").settings(lanczos_tol=0.05, lanczos_max_steps=30)
    assert found["trace"].trace_matvecs == 9 and found["normalized_trace"].eta == 0.3
    assert found["adaptive_worst"].adaptive_p == 2.0 and found["adaptive_worst"].eta == 0.3
    assert found["adaptive_average"].eta == 0.3 and found["epsilon_sharpness"].epsilon == 1e-3
    assert all(type(s) is m.settings for m, s in zip(loss_measures(), found.values()))


def test_flatness_settings_dict_seeds_and_dry_run():
    settings = FlatnessSettings()
    plain = settings.to_dict()
    assert plain["adaptive_p"] == "inf" and plain["samples"] == 1024
    assert list(plain) == [f.name for f in dataclasses.fields(FlatnessSettings)]
    assert FlatnessSettings(adaptive_p=2.0).to_dict()["adaptive_p"] == 2.0
    assert settings.data_spec() == DataSpec("train", 1024, 0, 256, block=1024)
    assert settings.data_spec("per_step") == DataSpec("train", 256, 0, 256, block=1024)
    assert settings.data_spec("ascent") == DataSpec("train", 512, 0, 256, block=1024)
    other = FlatnessSettings(data_chunk=2)
    assert other.data_spec() == DataSpec("train", 1024, 0, 256, chunk=2, block=1024)
    assert other.data_spec("ascent") == DataSpec("train", 512, 0, 256, chunk=2, block=1024)
    assert FlatnessSettings(probe_seed=2).generator(get("trace")).initial_seed() == 2002
    small = settings.dry_run()
    assert (small.samples, small.lanczos_max_steps, small.trace_matvecs) == (32, 6, 6)
    assert (small.epsilon_steps, small.adaptive_steps, small.average_samples) == (2, 2, 2)
    assert (small.per_step_samples, small.ascent_samples, small.adaptive_restarts) == (32, 32, 1)
    assert small.dry_run() == small and small.lanczos_tol == settings.lanczos_tol
    with pytest.raises(ConfigError, match=r"^trace_matvecs must be >= 4"):
        FlatnessSettings(trace_matvecs=3)
    with pytest.raises(ConfigError, match=r"^adaptive_p must be one of 2.0, inf"):
        FlatnessSettings(adaptive_p=1.0)


def test_loss_names():
    assert FlatnessSettings().loss_names(3) == ["sdt", "tet", "ce_t0", "ce_t1", "ce_t2"]
    assert FlatnessSettings(per_step=False).loss_names(3) == ["sdt", "tet"]
    fixed = FlatnessSettings(per_step=False, fixed_tet_lambda=0.05)
    assert fixed.loss_names(3) == ["sdt", "tet", "tet@0.05"]

"""The surface library: settings and ranges, the plan's files and grid, its directions, the
fingerprint and statistics, and prepare/compute/assemble on a tiny checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from analysis.measures.inputs import DataSettings, DataSpec, load_input
from analysis.surfaces.compute import (
    STATS_COLUMNS,
    assemble,
    compute,
    fingerprint,
    prepare,
    statistics_rows,
)
from analysis.surfaces.directions import build_directions
from analysis.surfaces.plan import METRICS, SurfacePlan, SurfaceSettings, make_grid, parse_range
from landscape.surface_io import Surface
from tests.helpers import save_mlp
from toolkit.errors import ConfigError
from training.runs import checkpoint
from training.runs.distributed import Distributed

F64 = torch.float64
RANGE_ERROR = r"expected LOW:HIGH:NUM with LOW < HIGH, NUM >= 3 \(e\.g\. -1:1:51\), got "


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "digits-T2-sdt-seed0"
    save_mlp(folder / "epoch_000.pt", "sdt", 1, T=2)
    save_mlp(folder / "epoch_001.pt", "sdt", 2, T=2)
    return save_mlp(folder / "last.pt", "sdt", 0, T=2)


@pytest.fixture(scope="module")
def input(run):
    return load_input(checkpoint.read(run), DataSpec(samples=16))


def _plan(
    settings: SurfaceSettings, centre: Path = Path("runs/a/last.pt"), out=Path("out"), **data
):
    return SurfacePlan(settings, DataSettings(**data), centre, out)


# --- ranges and settings ---


def test_parse_range():
    assert parse_range("-1:1:51") == (-1.0, 1.0, 51)
    assert parse_range("0.5:2e0:3") == (0.5, 2.0, 3)
    assert isinstance(parse_range("-1:1:5")[2], int)


@pytest.mark.parametrize(
    "text",
    [
        "1:-1:5",
        "0:0:5",
        "a:b:3",
        "-1:1",
        "-1:1:2",
        "-1:1:3.5",
        "nan:1:3",
        "-inf:1:5",
        "-1:1:3:4",
        "",
        "-1:inf:3",
    ],
)
def test_parse_range_refuses(text):
    with pytest.raises(ConfigError, match=RANGE_ERROR + repr(text).replace("(", r"\(")):
        parse_range(text)


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            {"directions": "bogus"},
            "--directions must be random, eigen, interp:CKPT2[,CKPT3] or pca:RUN_DIR, got 'bogus'",
        ),
        ({"directions": "interp"}, "--directions must be random"),
        ({"directions": "random:x"}, "--directions must be random"),
        ({"directions": "eigen:3"}, "--directions must be random"),
        ({"directions": "pca:"}, "--directions must be random"),
        ({"directions": "interp:a.pt"}, "--dim 2 needs 2 interp checkpoint(s)"),
        ({"directions": "interp:a.pt,b.pt", "dim": 1}, "--dim 1 needs 1 interp checkpoint(s)"),
        ({"dim": 1, "y": "-1:1:3"}, "--y is only used with --dim 2"),
        ({"x": "1:0:3"}, "expected LOW:HIGH:NUM"),
        ({"y": "0:1:2"}, "expected LOW:HIGH:NUM"),
        ({"dim": 3}, "dim must be one of 1, 2, got 3"),
        ({"normalization": "unit"}, "normalization must be one of filter, layer, none"),
        ({"bn": "train"}, "bn must be one of"),
        ({"bn_samples": 0}, "bn_samples must be >= 1, got 0"),
        ({"basin_threshold": 0.0}, "basin_threshold must be > 0"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
def test_surface_settings_refuse(changes, message):
    with pytest.raises(ConfigError) as info:
        SurfaceSettings(**changes)
    assert str(info.value).startswith(message)


def test_kinds_specs_and_others():
    assert (SurfaceSettings().kind, SurfaceSettings().spec, SurfaceSettings().others) == (
        "random",
        "",
        [],
    )
    interp = SurfaceSettings(directions="interp:a/b.pt,c.pt")
    assert interp.kind == "interp" and interp.others == [Path("a/b.pt"), Path("c.pt")]
    pca = SurfaceSettings(directions="pca:runs/x", dim=1)
    assert (pca.kind, pca.spec, pca.others) == ("pca", "runs/x", [])
    assert SurfaceSettings(directions="eigen").kind == "eigen"


def test_ranges_and_dry_run():
    assert SurfaceSettings().ranges() == (None, None)
    assert SurfaceSettings(x="-2:3:11").ranges() == ((-2.0, 3.0, 11), None)
    small = SurfaceSettings(x="-2:3:11").dry_run()
    assert small.ranges() == ((-2.0, 3.0, 3), (-2.0, 3.0, 3))  # y follows x
    assert (small.bn_samples, small.chunk_size) == (32, 4)
    assert SurfaceSettings().dry_run().ranges() == ((-1.0, 1.0, 3), (-1.0, 1.0, 3))
    assert SurfaceSettings(y="-3:3:5").dry_run().ranges() == ((-1.0, 1.0, 3), (-3.0, 3.0, 3))
    assert SurfaceSettings(dim=1, x="0:2:9").dry_run().ranges() == ((0.0, 2.0, 3), None)


def test_plan_files_and_specs():
    plan = _plan(SurfaceSettings(directions="interp:b.pt", dim=1), seed=4, batch_size=9)
    assert plan.stem == Path("out/surface_last_interp_1d")
    assert plan.parts == Path("out/surface_last_interp_1d.parts")
    assert plan.stats == Path("out/surface_last_interp_1d_stats.csv")
    assert plan.data_spec() == DataSpec("train", 1024, 4, 9)
    assert plan.bn_spec() == DataSpec("train", 256, 5, 9)  # other samples than the grid's
    assert (
        _plan(SurfaceSettings(), Path("x/epoch_003.pt")).stem.name == "surface_epoch_003_random_2d"
    )


def test_make_grid_defaults():
    grid = make_grid(_plan(SurfaceSettings()), {})
    assert grid.shape == (51, 51) and grid.axes[0] == grid.axes[1]
    assert (grid.axes[0][0], grid.axes[0][-1]) == (-1.0, 1.0)
    grid = make_grid(_plan(SurfaceSettings(directions="interp:b.pt,c.pt")), {})
    assert (grid.axes[0][0], grid.axes[0][-1], grid.shape) == (-0.5, 1.5, (41, 41))
    grid = make_grid(_plan(SurfaceSettings(x="-2:2:5")), {})
    assert grid.axes == ((-2.0, -1.0, 0.0, 1.0, 2.0),) * 2
    grid = make_grid(_plan(SurfaceSettings(x="-2:2:5", y="0:1:3")), {})
    assert grid.axes[1] == (0.0, 0.5, 1.0)
    grid = make_grid(_plan(SurfaceSettings(dim=1, x="-1:1:3")), {})
    assert grid.axes == ((-1.0, 0.0, 1.0),)


def test_default_interp_grid_holds_both_checkpoints():
    grid = make_grid(_plan(SurfaceSettings(directions="interp:b.pt", dim=1)), {})
    axis = np.array(grid.axes[0])
    assert np.abs(axis).min() < 1e-12 and np.abs(axis - 1).min() < 1e-12


@pytest.mark.parametrize(
    "trajectory",
    [
        [[0.0, 0.0], [0.3, -0.2], [1.0, 0.5]],
        [[-3.0, 2.0], [-2.0, 4.0], [-1.0, 7.0]],
        [[0.1, -0.01], [0.0, 0.02], [-0.05, 0.0]],
    ],
)
def test_make_grid_covers_the_pca_trajectory_with_zero_on_it(trajectory):
    track = np.array(trajectory)
    grid = make_grid(_plan(SurfaceSettings(directions="pca:runs/x")), {"trajectory": track})
    assert grid.shape == (51, 51)
    for axis, values in zip(grid.axes, track.T):
        axis = np.array(axis)
        low, high = min(values.min(), 0.0), max(values.max(), 0.0)
        margin = 0.2 * (high - low)  # a fifth of the trajectory's extent below it, some above
        assert axis[0] <= low - margin + 1e-12 and axis[-1] >= high + margin / 2
        assert np.abs(axis).min() < 1e-12  # the centre is a grid point
        assert axis[-1] - axis[0] < 2 * (max(values.max(), 0) - min(values.min(), 0))  # snug
    one = make_grid(_plan(SurfaceSettings(directions="pca:runs/x", dim=1)), {"trajectory": track})
    assert one.shape == (51,) and np.array_equal(one.axes[0], grid.axes[0])
    given = make_grid(
        _plan(SurfaceSettings(directions="pca:runs/x", x="-1:1:3")), {"trajectory": track}
    )
    assert given.axes == ((-1.0, 0.0, 1.0),) * 2


# --- directions ---


def test_random_directions_are_seeded_filter_normalized_and_recorded(input, run):
    settings = SurfaceSettings()
    found = build_directions(input, _plan(settings, run, seed=3))
    again = build_directions(input, _plan(settings, run, seed=3))
    other = build_directions(input, _plan(settings, run, seed=4))
    assert len(found.directions) == 2
    weights = dict(input.model.named_parameters())
    for direction in found.directions:
        assert set(direction) == set(weights)
        for name, tensor in direction.items():
            if tensor.ndim == 1:
                assert not tensor.any()  # biases do not move
            else:
                torch.testing.assert_close(tensor.norm(dim=1), weights[name].detach().norm(dim=1))
    for a, b in zip(found.directions, again.directions):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(
        found.directions[0]["layers.1.0.weight"], other.directions[0]["layers.1.0.weight"]
    )
    norms = [float(torch.cat([t.reshape(-1) for t in d.values()]).norm()) for d in found.directions]
    assert found.info["norms"] == pytest.approx(norms, rel=1e-6)
    assert found.info["normalization"] == "filter" and found.info["ignore_biasbn"] is True
    flat = [torch.cat([t.reshape(-1) for t in d.values()]) for d in found.directions]
    cosine = float(flat[0] @ flat[1] / (flat[0].norm() * flat[1].norm()))
    assert found.info["cosine"] == pytest.approx(cosine, abs=1e-6)


def test_orthogonalized_and_one_dimensional_random_directions(input, run):
    found = build_directions(input, _plan(SurfaceSettings(orthogonalize=True), run))
    assert abs(found.info["cosine_orthogonalized"]) < 1e-6
    one = build_directions(input, _plan(SurfaceSettings(dim=1, normalization="layer"), run))
    assert len(one.directions) == 1 and "cosine" not in one.info
    assert one.info["normalization"] == "layer"


def test_interp_directions_reach_the_end_checkpoint(input, run):
    end = checkpoint.read(run.parent / "epoch_001.pt")
    settings = SurfaceSettings(directions=f"interp:{end.path}", dim=1)
    plan = SurfacePlan(settings, DataSettings(), run, Path("out"), ends=(end,))
    found = build_directions(input, plan)
    assert found.info["checkpoints"] == [str(end.path)] and found.info["sha256"] == [end.sha256]
    centre, target = input.model.state_dict(), end.model().state_dict()
    for name, tensor in found.directions[0].items():
        assert tensor.dtype == F64
        torch.testing.assert_close(
            centre[name].double() + tensor, target[name].double(), rtol=0, atol=0
        )


def test_pca_directions_need_enough_snapshots(input, run, tmp_path):
    found = build_directions(
        input, _plan(SurfaceSettings(directions=f"pca:{run.parent}", dim=1), run)
    )
    assert found.info["epochs"] == ["epoch_000.pt", "epoch_001.pt"]
    assert found.extras["trajectory"].shape == (2, 1)
    with pytest.raises(ConfigError, match=r"pca needs >= 3 epoch_NNN\.pt files in .*, found 2"):
        build_directions(input, _plan(SurfaceSettings(directions=f"pca:{run.parent}"), run))
    with pytest.raises(ConfigError, match=r"found 0 \(train with --save-every 1\)"):
        build_directions(input, _plan(SurfaceSettings(directions=f"pca:{tmp_path}", dim=1), run))


def test_eigen_directions_are_unit_top_eigenvectors(input, run):
    found = build_directions(
        input, _plan(SurfaceSettings(directions="eigen"), run, dtype="float64")
    )
    assert found.info["loss"] == "sdt" and len(found.info["eigenvalues"]) == 2
    assert found.info["norms"] == pytest.approx([1.0, 1.0], rel=1e-9)
    assert found.info["eigenvalues"][0] >= found.info["eigenvalues"][1]


# --- fingerprint, statistics and the computation ---


def test_fingerprint_is_stable_under_key_order_and_sensitive_to_values():
    first = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "path": Path("p")}
    second = {"path": "p", "b": {"d": "x", "c": (1, 2)}, "a": 1}
    assert fingerprint(first) == fingerprint(second)
    assert len(fingerprint(first)) == 64 and int(fingerprint(first), 16) >= 0
    assert fingerprint(first) != fingerprint({**first, "a": 2})
    assert fingerprint(first) != fingerprint({**first, "b": {"c": [2, 1], "d": "x"}})


def test_statistics_rows_one_per_metric_and_statistic():
    x, y = np.linspace(-1, 1, 9), np.linspace(-2, 2, 11)
    X, Y = np.meshgrid(x, y, indexing="ij")
    values = {"l_sdt": 1 + 2.0 * X**2 + 0.5 * Y**2, "l_tet": 1 + X**2 + Y**2, "accuracy": 0 * X}
    surface = Surface([x, y], values)
    plan = _plan(SurfaceSettings(basin_threshold=0.5), Path("runs/a/last.pt"))
    found = statistics_rows(plan, surface)
    assert all(len(row) == len(STATS_COLUMNS) for row in found)
    assert {row[0] for row in found} == {"runs/a/last.pt"}
    assert {row[1] for row in found} == {"surface_last_random_2d"}
    assert [m for m in METRICS] == sorted({row[2] for row in found}, key=METRICS.index)
    per_metric = {m: {row[3]: row[4] for row in found if row[2] == m} for m in METRICS}
    assert set(per_metric["l_sdt"]) == set(per_metric["l_tet"])
    assert len(found) == 2 * len(per_metric["l_sdt"])
    # an exact quadratic: curvatures are its second derivatives
    assert per_metric["l_sdt"]["curvature_xx"] == pytest.approx(4.0, rel=1e-9)
    assert per_metric["l_sdt"]["curvature_yy"] == pytest.approx(1.0, rel=1e-9)
    assert per_metric["l_tet"]["curvature_max"] == pytest.approx(2.0, rel=1e-9)


def test_prepare_compute_assemble_on_a_tiny_checkpoint(run, tmp_path):
    settings = SurfaceSettings(dim=1, x="-1:1:3", chunk_size=2, plots=False)
    plan = SurfacePlan(settings, DataSettings(samples=16, dtype="float64"), run, tmp_path)
    ckpt = checkpoint.read(run)
    prepared = prepare(plan, ckpt, Distributed())
    assert prepared.grid.shape == (3,) and prepared.store.num_chunks == 2
    assert (
        prepared.record["directions"]["kind"] == "random" and prepared.record["dtype"] == "float64"
    )
    assert (plan.parts / "directions.npz").is_file()
    assert compute(prepared, Distributed(), quiet=True) == (3, 0)
    assert compute(prepare(plan, ckpt, Distributed()), Distributed(), quiet=True) == (
        0,
        3,
    )  # resumed
    surface = assemble(prepared, {"name": "x"})
    assert surface.metadata["run"] == {"name": "x"} and "provenance" in surface.metadata
    assert surface.values["l_sdt"].shape == (3,)
    # the centre and one end against a hand-written forward in float64
    direction = {
        k[len("direction0/") :]: torch.from_numpy(v)
        for k, v in prepared.extras.items()
        if k.startswith("direction0/")
    }
    input = load_input(ckpt, DataSpec(samples=16))
    model = copy.deepcopy(input.model).double()
    weights = {n: p.detach().double() for n, p in input.model.named_parameters()}
    for index, t in ((1, 0.0), (2, 1.0)):
        params = {n: w + t * direction[n].double() for n, w in weights.items()}
        with torch.no_grad():
            outputs = functional_call(model, params, (input.loader.x.double(),))
        expected = float(F.cross_entropy(outputs.mean(0), input.loader.y))
        assert surface.values["l_sdt"][index] == pytest.approx(expected, rel=1e-10)
    other = SurfacePlan(
        SurfaceSettings(dim=1, x="-1:1:3", chunk_size=2),
        DataSettings(samples=16, seed=9),
        run,
        tmp_path,
    )
    with pytest.raises(ConfigError, match=r"holds a partial surface of other settings"):
        prepare(other, ckpt, Distributed())

"""Figures: each drawing function returns a figure and exactly the data it plotted (read back
from the figure's artists), on tiny hand-made frames; saving is atomic and reproducible."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from analysis.plots import figures as plots  # noqa: E402
from analysis.plots import hessian as hessian_plots  # noqa: E402
from analysis.plots import momentum as momentum_plots  # noqa: E402
from analysis.plots.style import COLORS, color, save_figure, save_table  # noqa: E402
from landscape.surface_io import Surface  # noqa: E402
from training.runs.config import TrainConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _errorbar_means(ax) -> list[np.ndarray]:
    return [
        np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers if hasattr(c, "has_yerr")
    ]


# --- the reproduction's figures ---


def test_switch_figure_plots_its_frame():
    data = pd.DataFrame(
        {
            "run": ["a-switch2-seed0"] * 3 + ["a-seed0"] * 3,
            "epoch": [1, 2, 3] * 2,
            "method": ["sdt", "sdt", "tet", "sdt", "sdt", "sdt"],
            "test_acc": [0.5, 0.6, 0.8, 0.5, 0.55, 0.6],
            "test_l_sdt": [1.0, 0.9, 0.7, 1.0, 0.95, 0.9],
            "test_l_tet": [1.2, 1.1, 0.8, 1.2, 1.1, 1.0],
            "lr": [0.01] * 6,
        }
    )
    figure, plotted = plots.switch_figure(data, 2)
    assert isinstance(figure, plt.Figure)
    assert list(plotted) == ["run", "epoch", "method", "test_acc", "test_l_sdt", "test_l_tet"]
    assert len(plotted) == 6
    accuracy, losses = figure.axes
    ys = sorted(tuple(line.get_ydata()) for line in accuracy.lines if len(line.get_xdata()) == 3)
    assert ys == sorted(tuple(part.test_acc) for _, part in plotted.groupby("run"))
    switch = plotted[plotted.run.str.contains("switch")]
    curves = {tuple(line.get_ydata()) for line in losses.lines if len(line.get_xdata()) == 3}
    assert curves == {tuple(switch.test_l_sdt), tuple(switch.test_l_tet)}
    marks = [
        line.get_xdata()[0]
        for ax in figure.axes
        for line in ax.lines
        if line.get_xdata()[0] == line.get_xdata()[-1]
    ]
    assert marks == [2.5, 2.5]


def test_timesteps_figure_plots_the_summary():
    rows = []
    for ckpt, method, train_T, accs in (
        ("r/sdt-seed0/last.pt", "sdt", 4, [0.8, 0.7]),
        ("r/sdt-seed1/last.pt", "sdt", 4, [0.82, 0.74]),
        ("r/tet-seed0/last.pt", "tet", 4, [0.85, 0.84]),
        ("r/tet-T2-seed0/last.pt", "tet", 2, [0.6, 0.5]),
        ("r/sdt-switch1-seed0/last.pt", "sdt", 4, [0.0, 0.0]),  # not plotted
        ("r/tet-init-seed0/last.pt", "tet", 4, [0.0, 0.0]),  # not plotted
    ):
        rows += [
            dict(checkpoint=ckpt, method=method, train_T=train_T, T=T, acc=a)
            for T, a in zip((4, 8), accs)
        ]
    figure, summary = plots.timesteps_figure(pd.DataFrame(rows))
    assert list(summary) == ["method", "train_T", "T", "mean", "std", "count"]
    assert len(summary) == 6 and summary["count"].tolist() == [2, 2, 1, 1, 1, 1]
    sdt = summary[(summary.method == "sdt")]
    assert sdt["mean"].tolist() == pytest.approx([0.81, 0.72])
    means = _errorbar_means(figure.axes[0])
    expected = [part["mean"].to_numpy() for _, part in summary.groupby(["method", "train_T"])]
    assert len(means) == 3
    for found, wanted in zip(means, expected):
        np.testing.assert_allclose(found, wanted)


def test_tit_figure_plots_tet_at_the_tit_T():
    data = pd.DataFrame(
        [
            dict(run="a", kind="scratch", method="tet", T=4, seed=0, cost=12, test_acc=0.85),
            dict(run="b", kind="scratch", method="tet", T=4, seed=1, cost=12, test_acc=0.87),
            dict(run="c", kind="scratch", method="sdt", T=4, seed=0, cost=12, test_acc=0.8),
            dict(run="d", kind="scratch", method="tet", T=2, seed=0, cost=6, test_acc=0.7),
            dict(run="e", kind="TIT", method="tet", T=4, seed=0, cost=10, test_acc=0.86),
        ]
    )
    figure, plotted = plots.tit_figure(data)
    assert plotted.run.tolist() == ["a", "b", "e"]
    np.testing.assert_allclose(plotted.plotted_cost, [12 * 0.985, 12 * 1.015, 10.0])
    points = np.concatenate(
        [c.get_offsets() for c in figure.axes[0].collections if len(c.get_offsets())]
    )
    expected = plotted.sort_values("kind", key=lambda k: k != "scratch")[
        ["plotted_cost", "test_acc"]
    ]
    np.testing.assert_allclose(points[-3:], expected.to_numpy())


def test_momentum_figure_plots_summary_and_curves():
    rows = []
    for method in ("sdt", "tet"):
        for seed in (0, 1):
            for epoch in (1, 2):
                for t in (0, 1):
                    for loss in ("sdt", "tet"):
                        rows.append(
                            dict(
                                epoch=epoch,
                                quantity="error_norm",
                                loss=loss,
                                t=t,
                                value=0.1 * epoch + t + seed + (loss == "tet"),
                                method=method,
                                seed=seed,
                            )
                        )
                for loss in ("sdt", "tet"):
                    rows.append(
                        dict(
                            epoch=epoch,
                            quantity="grad_norm",
                            loss=loss,
                            t="",
                            value=1.0 / epoch + seed,
                            method=method,
                            seed=seed,
                        )
                    )
                rows.append(
                    dict(
                        epoch=epoch,
                        quantity="momentum_norm",
                        loss="",
                        t="",
                        value=2.0 * epoch + seed,
                        method=method,
                        seed=seed,
                    )
                )
    figure, plotted = plots.momentum_figure(pd.DataFrame(rows))
    assert set(plotted.panel) == {"error_norm", "grad_norm", "momentum_norm"}
    errors = plotted[plotted.panel == "error_norm"]
    assert len(errors) == 2 * 2 * 2 and (errors["count"] == 2).all()  # last epoch, two seeds
    first = errors[(errors.method == "sdt") & (errors.loss == "sdt")]
    assert first["mean"].tolist() == pytest.approx([0.2 + 0.5, 1.2 + 0.5])
    means = _errorbar_means(figure.axes[0])
    assert len(means) == 4
    np.testing.assert_allclose(means[0], first["mean"])
    grad = plotted[plotted.panel == "grad_norm"]
    assert len(grad) == 2 * 2 * 2 and len(figure.axes[1].lines) == 4
    momentum = plotted[plotted.panel == "momentum_norm"]
    lines = {tuple(line.get_ydata()) for line in figure.axes[2].lines}
    assert lines == {tuple(part["mean"]) for _, part in momentum.groupby("method")}


def _surface(offset: float) -> Surface:
    axes = [np.linspace(-1, 1, 3), np.linspace(-1, 1, 4)]
    x, y = np.meshgrid(*axes, indexing="ij")
    return Surface(
        axes, {"l_sdt": offset + x**2 + y**2, "l_tet": offset + 9 * x**2 + y**2, "accuracy": 0 * x}
    )


def test_landscapes_figure_clips_at_a_shared_scale():
    figure, plotted = plots.landscapes_figure({"sdt": _surface(0.0), "tet": _surface(0.5)})
    assert len(plotted) == 2 * 2 * 12 and set(plotted.metric) == {"l_sdt", "l_tet"}
    assert set(zip(plotted.minimum, plotted.loss)) == {
        (m, lo) for m in ("sdt", "tet") for lo in ("sdt", "tet")
    }
    np.testing.assert_allclose(plotted.plotted_value, np.minimum(plotted.value, 5.0))
    assert (plotted.value > 5.0).any() and plotted.plotted_value.max() == 5.0
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == [
        "SDT minimum, L_SDT",
        "SDT minimum, L_TET",
        "TET minimum, L_SDT",
        "TET minimum, L_TET",
    ]
    assert "clipped" in figure.axes[-1].get_ylabel()


def test_interpolation_figure():
    alpha = np.linspace(-0.5, 1.5, 5)
    surface = Surface(
        [alpha],
        {
            "l_sdt": alpha**2,
            "l_tet": 1 + alpha,
            "accuracy": 0.5 + 0 * alpha,
            "firing_rate": 0.1 + 0 * alpha,
        },
    )
    figure, plotted = plots.interpolation_figure(surface)
    assert set(plotted.metric) == {"l_sdt", "l_tet", "accuracy"} and len(plotted) == 15
    main, twin = figure.axes
    np.testing.assert_allclose(main.lines[0].get_ydata(), alpha**2)
    np.testing.assert_allclose(main.lines[1].get_ydata(), 1 + alpha)
    np.testing.assert_allclose(twin.lines[0].get_ydata(), 0.5)
    without = Surface([alpha], {"l_sdt": alpha**2, "l_tet": 1 + alpha})
    assert len(plots.interpolation_figure(without)[0].axes) == 1


def _hessian_frame(loss: str) -> pd.DataFrame:
    rows = []
    for method, base in (("sdt", 10.0), ("tet", 5.0)):
        for seed in (0, 1):
            ckpt = f"runs/{method}-seed{seed}/last.pt"
            for index in (0, 1):
                rows.append(
                    dict(
                        checkpoint=ckpt,
                        quantity="top_eigenvalue",
                        index=index,
                        value=base / (index + 1) + seed,
                        run=f"{method}{seed}",
                        method=method,
                    )
                )
            rows.append(
                dict(
                    checkpoint=ckpt,
                    quantity="trace",
                    index=0,
                    value=10 * base + seed,
                    run=f"{method}{seed}",
                    method=method,
                )
            )
    return pd.DataFrame(rows).assign(loss=loss)


def test_hessian_figure():
    densities = [
        ("sdt", np.linspace(-1, 1, 5), np.full(5, 0.2)),
        ("tet", np.linspace(-1, 1, 5), np.zeros(5)),
    ]
    figure, plotted = plots.hessian_figure(
        [_hessian_frame("sdt"), _hessian_frame("tet")], densities
    )
    top = plotted[plotted.quantity == "top_eigenvalue"]
    trace = plotted[plotted.quantity == "trace"]
    assert len(top) == 2 * 2 * 2 and len(trace) == 4
    assert top[(top.loss == "sdt") & (top.method == "sdt")]["mean"].tolist() == [10.5, 5.5]
    np.testing.assert_allclose([p.get_height() for p in figure.axes[1].patches], trace["mean"])
    assert len(_errorbar_means(figure.axes[0])) == 4
    density_lines = figure.axes[2].lines
    assert len(density_lines) == 2 and density_lines[1].get_ydata().min() == 1e-8  # floored
    no_density = plots.hessian_figure([_hessian_frame("sdt")], None)[0]
    assert "run hessian.py with --density" in no_density.axes[2].get_title()


def test_flatness_figure_scatters_every_run():
    table = pd.DataFrame(
        {
            "method": ["sdt", "sdt", "tet"],
            "lambda_max_sdt": [3.0, 4.0, 1.0],
            "trace_sdt": [30.0, 40.0, 10.0],
            "gap": [0.1, 0.2, 0.05],
            "test_acc": [0.8, 0.7, 0.9],
        }
    )
    figure, plotted = plots.flatness_figure(table, ["lambda_max_sdt", "trace_sdt"])
    assert plotted is table and len(figure.axes) == 4
    for ax, (x, y) in zip(
        figure.axes,
        [
            ("lambda_max_sdt", "gap"),
            ("trace_sdt", "gap"),
            ("lambda_max_sdt", "test_acc"),
            ("trace_sdt", "test_acc"),
        ],
    ):
        points = np.concatenate([c.get_offsets() for c in ax.collections])
        np.testing.assert_allclose(points, table.sort_values("method")[[x, y]].to_numpy())


def test_sharpness_dynamics_figure():
    data = pd.DataFrame(
        [
            dict(
                checkpoint=f"runs/{run}/epoch_{e:03d}.pt",
                quantity=q,
                index=i,
                value=v,
                run=run,
                method=run[:3],
            )
            for run in ("sdt-a", "tet-a")
            for e in (0, 3, 6)
            for q, i, v in (
                ("top_eigenvalue", 0, e + 1.0),
                ("top_eigenvalue", 1, 0.5),
                ("trace", 0, 9.0),
            )
        ]
    )
    configs = {
        "sdt-a": TrainConfig(optimizer="sgd", lr=0.5),
        "tet-a": TrainConfig(optimizer="adam"),
    }
    figure, plotted = plots.sharpness_dynamics_figure(data, configs)
    assert list(plotted) == ["run", "method", "epoch", "value"] and len(plotted) == 6
    assert plotted.epoch.tolist() == [0.0, 3.0, 6.0] * 2
    lines = figure.axes[0].lines
    curves = [line for line in lines if len(line.get_xdata()) == 3]
    np.testing.assert_allclose(curves[0].get_ydata(), [1.0, 4.0, 7.0])
    stability = [line for line in lines if line.get_label().startswith("2/lr")]
    assert len(stability) == 1 and stability[0].get_ydata()[0] == pytest.approx(4.0)  # 2 / 0.5


# --- Hessian densities and momentum statistics ---


def test_density_figure_and_its_file(tmp_path):
    records = [
        {"name": "a", "method": "sdt", "curvature": "autograd_surrogate_hessian"},
        {"name": "b", "method": "tet", "curvature": "autograd_surrogate_hessian"},
    ]
    arrays = [
        {"grid": torch.linspace(-1, 1, 4), "density": torch.tensor([0.0, 0.5, 1.0, 0.5])},
        {"grid": torch.linspace(-2, 2, 4), "density": torch.full((4,), 0.25)},
    ]
    figure = hessian_plots.density_figure(records, arrays)
    lines = figure.axes[0].lines
    assert [line.get_label() for line in lines] == ["a (SDT)", "b (TET)"]
    np.testing.assert_allclose(lines[0].get_ydata(), [1e-12, 0.5, 1.0, 0.5])
    assert figure.axes[0].get_title() == "autograd_surrogate_hessian spectral density (SLQ)"
    path = hessian_plots.save_density_figure(records, arrays, tmp_path)
    assert path == tmp_path / "density.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["density.png"]


def _momentum_frame(epochs=(1, 2)) -> pd.DataFrame:
    rows = []
    for source, method in (("runs/sdt", "sdt"), ("runs/tet", "tet")):
        for epoch in epochs:
            for loss in ("sdt", "tet"):
                for t in (0, 1, 2):
                    rows.append(
                        dict(
                            source=source,
                            method=method,
                            epoch=epoch,
                            loss=loss,
                            quantity="error_norm",
                            t=t,
                            s="",
                            value=epoch + t / 10,
                        )
                    )
                    rows.append(
                        dict(
                            source=source,
                            method=method,
                            epoch=epoch,
                            loss=loss,
                            quantity="g_norm",
                            t=t,
                            s="",
                            value=2.0,
                        )
                    )
                    for s in (0, 1, 2):
                        rows.append(
                            dict(
                                source=source,
                                method=method,
                                epoch=epoch,
                                loss=loss,
                                quantity="g_cos",
                                t=t,
                                s=s,
                                value=1.0 if s == t else 0.1 * (t + s),
                            )
                        )
                rows.append(
                    dict(
                        source=source,
                        method=method,
                        epoch=epoch,
                        loss=loss,
                        quantity="grad_norm",
                        t="",
                        s="",
                        value=1.0 / epoch,
                    )
                )
            rows.append(
                dict(
                    source=source,
                    method=method,
                    epoch=epoch,
                    loss="",
                    quantity="momentum_norm",
                    t="",
                    s="",
                    value=float(epoch),
                )
            )
    return pd.DataFrame(rows)


def test_momentum_figures():
    frame = _momentum_frame()
    errors = momentum_plots.error_norm_figure(frame)
    lines = errors.axes[0].lines
    assert len(lines) == 4 and len(errors.axes[1].lines) == 4
    np.testing.assert_allclose(lines[0].get_ydata(), [2.0, 2.1, 2.2])  # the last epoch only
    gcos = momentum_plots.gcos_figure(frame, "runs/tet")
    matrix = gcos.axes[0].images[0].get_array()
    assert matrix.shape == (3, 3) and np.allclose(np.diag(matrix), 1.0)
    assert matrix[0, 2] == pytest.approx(0.2) and matrix[2, 1] == pytest.approx(0.3)
    by_epoch = momentum_plots.epoch_figure(frame, "grad_norm", "||dL/dW||")
    assert len(by_epoch.axes[0].lines) == 4
    np.testing.assert_allclose(by_epoch.axes[0].lines[0].get_ydata(), [1.0, 0.5])
    runs = momentum_plots.epoch_figure(frame, "momentum_norm", "norm", by_loss=False)
    assert [line.get_label() for line in runs.axes[0].lines] == ["sdt run", "tet run"]


def test_save_momentum_figures(tmp_path):
    written = momentum_plots.save_momentum_figures(_momentum_frame(), tmp_path)
    stems = sorted({p.stem for p in written})
    assert stems == [
        "momentum_buffer_vs_epoch",
        "momentum_error_norms",
        "momentum_gcos",
        "momentum_grad_norm_vs_epoch",
    ]
    assert all(p.is_file() for p in written) and len(written) == 8
    one_epoch = momentum_plots.save_momentum_figures(_momentum_frame((1,)), tmp_path / "one")
    assert sorted({p.stem for p in one_epoch}) == ["momentum_error_norms", "momentum_gcos"]


# --- style and saving ---


def test_colors():
    assert color("sdt") == COLORS["sdt"] and color("TET") == COLORS["tet"]
    assert color("sdt->tet@3") == COLORS["other"] and color(None) == COLORS["other"]


def _figure():
    figure, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1.0, 0.5, 2.0], color=color("tet"))
    return figure


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    figure = _figure()
    paths = save_figure(figure, tmp_path / "fig.png")
    assert paths == [tmp_path / "fig.png", tmp_path / "fig.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]  # no temp files
    assert not plt.fignum_exists(figure.number)  # closed
    assert save_figure(_figure(), tmp_path / "plain") == [
        tmp_path / "plain.png",
        tmp_path / "plain.pdf",
    ]


def test_save_figure_is_byte_identical_for_the_same_data(tmp_path):
    first = save_figure(_figure(), tmp_path / "a" / "fig")
    (tmp_path / "b").mkdir()
    second = save_figure(_figure(), tmp_path / "b" / "fig")
    assert first[1].read_bytes() == second[1].read_bytes()
    assert b"CreationDate" not in first[1].read_bytes()
    other, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1.0, 0.5, 2.5])
    third = save_figure(other, tmp_path / "c")
    assert third[1].read_bytes() != first[1].read_bytes()


def test_save_table(tmp_path):
    frame = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]})
    path = save_table(frame, tmp_path / "t.csv")
    assert path.read_text() == "a,b\n1.0,x\n,y\n"
    assert save_table(frame, tmp_path / "n.csv", na_rep="nan").read_text() == "a,b\n1.0,x\nnan,y\n"

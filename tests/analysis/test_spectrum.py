"""The Hessian-spectrum measure (analysis.measures.hessian): settings, the long-format rows,
convergence, and compute() on a tiny checkpoint against a dense float64 Hessian."""

from __future__ import annotations

import math
import re

import pytest
import torch

from analysis.measures.hessian import (
    COLUMNS,
    SpectrumSettings,
    all_converged,
    compute,
    count_matvecs,
    expected_matvecs,
    rows,
)
from analysis.measures.inputs import DataSpec, Evaluation, load_input
from tests.helpers import dense_hessian, save_mlp
from toolkit.errors import ConfigError
from training.runs import checkpoint

F64 = torch.float64
QUIET = Evaluation(dtype=F64, quiet=True)


@pytest.fixture(scope="module")
def input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spectrum") / "digits-sdt-seed0"
    path = save_mlp(folder / "last.pt", "sdt", 0, T=2, hidden=(3,))
    return load_input(checkpoint.read(path), DataSpec(samples=24))


@pytest.fixture(scope="module")
def hessian(input) -> torch.Tensor:
    dense = dense_hessian(input.loss("checkpoint", dtype=F64).objective)
    return (dense + dense.T) / 2


# --- settings ---


def test_defaults_depend_on_the_operator():
    assert SpectrumSettings().top_k == 5
    assert SpectrumSettings(operator="sg-jacobian").top_k == 0
    assert SpectrumSettings(top_k=0).top_k == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"operator": "sg-jacobian", "top_k": 3},
        {"operator": "sg-jacobian", "bottom_k": 1},
        {"operator": "sg-jacobian", "density": True},
        {"operator": "sg-jacobian", "per_layer": True},
    ],
)
def test_sg_jacobian_refuses_symmetric_only_quantities(changes):
    with pytest.raises(ConfigError, match=r"^--operator sg-jacobian is not symmetric"):
        SpectrumSettings(**changes)


def test_trace_products_minimum():
    with pytest.raises(ConfigError, match=r"^--num-matvecs must be >= 4 for --trace hutch\+\+$"):
        SpectrumSettings(num_matvecs=3)
    assert SpectrumSettings(num_matvecs=4).num_matvecs == 4
    assert SpectrumSettings(trace="hutchinson", num_matvecs=2).num_matvecs == 2
    assert SpectrumSettings(trace="none", num_matvecs=2).trace == "none"
    with pytest.raises(ConfigError, match=r"^num_matvecs must be >= 2, got 1"):
        SpectrumSettings(trace="hutchinson", num_matvecs=1)
    with pytest.raises(ConfigError, match=r"^top_k must be >= 0"):
        SpectrumSettings(top_k=-1)
    with pytest.raises(ConfigError, match=r"^operator must be one of hessian, sg-jacobian"):
        SpectrumSettings(operator="fisher")


def test_dry_run_is_tiny_and_keeps_what_is_already_small():
    small = SpectrumSettings(top_k=5, bottom_k=3, density=True, tol=1e-6, max_steps=200).dry_run()
    assert (small.top_k, small.bottom_k, small.num_matvecs) == (2, 1, 6)
    assert (small.density_steps, small.density_repeats, small.asymmetry_probes) == (8, 1, 2)
    assert (small.tol, small.max_steps, small.density) == (1e-2, 30, True)
    kept = SpectrumSettings(top_k=1, bottom_k=0, tol=0.5, max_steps=10).dry_run()
    assert (kept.top_k, kept.bottom_k, kept.tol, kept.max_steps) == (1, 0, 0.5, 10)
    assert SpectrumSettings().dry_run().max_steps == 30


def test_expected_matvecs():
    settings = SpectrumSettings(
        top_k=2, bottom_k=1, num_matvecs=20, density=True, density_steps=10, density_repeats=2
    )
    assert expected_matvecs(settings, 1000) == 100 + 100 + 20 + 20
    assert expected_matvecs(settings, 50) == 50 + 50 + 20 + 20
    assert expected_matvecs(SpectrumSettings(top_k=2, max_steps=7, trace="none"), 50) == 7
    layered = SpectrumSettings(top_k=2, trace="none", max_steps=7, per_layer=True)
    assert expected_matvecs(layered, 50) == 14
    jacobian = SpectrumSettings(operator="sg-jacobian", num_matvecs=6, asymmetry_probes=3)
    assert expected_matvecs(jacobian, 50) == 6 + 6


# --- rows and convergence of records ---


def _record(**entries) -> dict:
    return {
        "checkpoint": {"path": "runs/a/last.pt", "sha256": "x"},
        "loss": "sdt",
        "loss_value": 2.5,
        "grad_norm": 0.25,
        **entries,
    }


def test_rows_are_long_format():
    record = _record(
        top={
            "eigenvalues": [3.0, 2.0],
            "residuals": [1e-9, 1e-8],
            "converged": [True, True],
            "num_matvecs": 10,
        },
        trace={"mean": 7.0, "stderr": 0.5, "num_matvecs": 6},
        asymmetry={"relative": 0.1, "num_matvecs": 4},
        per_layer={
            "fc": {
                "bottom": {
                    "eigenvalues": [-1.0],
                    "residuals": [0.0],
                    "converged": [False],
                    "num_matvecs": 3,
                }
            },
        },
    )
    found = rows(record)
    assert all(tuple(row) == COLUMNS for row in found)
    assert {row["checkpoint"] for row in found} == {"runs/a/last.pt"}
    assert {row["loss"] for row in found} == {"sdt"}
    triples = [(row["quantity"], row["index"], row["value"], row["stderr"]) for row in found]
    assert triples == [
        ("loss", 0, 2.5, ""),
        ("grad_norm", 0, 0.25, ""),
        ("top_eigenvalue", 0, 3.0, ""),
        ("top_residual", 0, 1e-9, ""),
        ("top_eigenvalue", 1, 2.0, ""),
        ("top_residual", 1, 1e-8, ""),
        ("trace", 0, 7.0, 0.5),
        ("asymmetry", 0, 0.1, ""),
        ("layer/fc/bottom_eigenvalue", 0, -1.0, ""),
        ("layer/fc/bottom_residual", 0, 0.0, ""),
    ]
    assert count_matvecs(record) == 10 + 6 + 4 + 3


def test_all_converged():
    good = {"top": {"converged": [True, True]}, "bottom": {"converged": [True]}}
    bad_bottom = {"top": {"converged": [True]}, "bottom": {"converged": [True, False]}}
    bad_layer = {**good, "per_layer": {"fc": {"top": {"converged": [False]}}}}
    assert all_converged([good, good]) and all_converged([]) and all_converged([{"trace": {}}])
    assert not all_converged([good, bad_bottom])
    assert not all_converged([bad_layer])
    assert all_converged([{**good, "per_layer": {"fc": {"top": {"converged": [True]}}}}])


# --- compute on a tiny checkpoint ---


def test_compute_matches_the_dense_hessian(input, hessian):
    n = input.loss("checkpoint", dtype=F64).objective.num_params
    settings = SpectrumSettings(top_k=2, bottom_k=1, num_matvecs=3 * n, tol=1e-9)
    result = compute(input, settings, QUIET)
    record, exact = result.record, torch.linalg.eigvalsh(hessian)
    torch.testing.assert_close(
        torch.tensor(record["top"]["eigenvalues"], dtype=F64),
        exact.flip(0)[:2],
        rtol=1e-7,
        atol=1e-10,
    )
    assert record["bottom"]["eigenvalues"][0] == pytest.approx(float(exact[0]), rel=1e-7)
    assert record["trace"]["mean"] == pytest.approx(
        float(torch.trace(hessian)), rel=1e-9, abs=1e-12
    )
    assert all_converged([record])
    objective = input.loss("checkpoint", dtype=F64).objective
    assert record["loss_value"] == pytest.approx(float(objective.loss()), rel=1e-14)
    assert record["grad_norm"] == pytest.approx(float(objective.grad().norm()), rel=1e-12)
    assert (record["num_params"], record["loss"], record["method"], record["name"]) == (
        n,
        "sdt",
        "sdt",
        "digits-sdt-seed0",
    )
    assert record["is_symmetric"] and record["dtype"] == "torch.float64"
    assert record["checkpoint"] == input.checkpoint.record and record["data"] == input.data
    assert record["num_matvecs"] == count_matvecs(record) and record["seconds"] > 0
    assert result.rows == rows(record) and result.arrays == {}
    assert [row["quantity"] for row in result.rows].count("top_eigenvalue") == 2


def test_per_layer_blocks_and_density(input, hessian, capsys):
    settings = SpectrumSettings(
        top_k=1,
        num_matvecs=8,
        tol=1e-9,
        per_layer=True,
        density=True,
        density_steps=6,
        density_repeats=2,
    )
    result = compute(input, settings, Evaluation(dtype=F64))
    layers = result.record["per_layer"]
    model = input.model
    start = 0
    for layer, entry in layers.items():
        assert entry["parameters"] == [
            n for n, _ in model.named_parameters() if n.startswith(layer)
        ]
        size = sum(dict(model.named_parameters())[n].numel() for n in entry["parameters"])
        block = hessian[start : start + size, start : start + size]
        assert entry["num_params"] == size and "bottom" not in entry and "density" not in entry
        exact = float(torch.linalg.eigvalsh(block)[-1])
        assert entry["top"]["eigenvalues"][0] == pytest.approx(exact, rel=1e-7)
        start += size
    assert start == hessian.shape[0] and len(layers) == 2
    assert set(result.arrays) == {"grid", "density", "nodes", "weights"}
    assert result.record["density"]["num_matvecs"] == 12
    layer_rows = [r for r in result.rows if r["quantity"].startswith("layer/")]
    assert {r["quantity"].split("/")[1] for r in layer_rows} == set(layers)
    # progress counts every product, the layers' included
    last = capsys.readouterr().err.strip().splitlines()[-1]
    counted = int(re.search(r": (\d+)/~(\d+) HVP", last).group(1))
    assert counted == result.record["num_matvecs"]


def test_sg_jacobian_reports_trace_and_asymmetry(input):
    settings = SpectrumSettings(operator="sg-jacobian", num_matvecs=6, asymmetry_probes=2)
    record = compute(input, settings, QUIET).record
    assert not record["is_symmetric"] and "top" not in record and "bottom" not in record
    assert record["asymmetry"]["relative"] >= 0 and math.isfinite(record["trace"]["mean"])
    assert (
        record["curvature"]
        != compute(input, SpectrumSettings(top_k=1, num_matvecs=4), QUIET).record["curvature"]
    )


def test_time_step_loss_and_too_many_eigenvalues(input, hessian):
    record = compute(
        input,
        SpectrumSettings(top_k=1, trace="none"),
        Evaluation(dtype=F64, time_step=1, quiet=True),
    ).record
    assert record["loss"] == "ce_t1" and record["time_step"] == 1 and "trace" not in record
    n = hessian.shape[0]
    with pytest.raises(ConfigError, match=rf"--top-k/--bottom-k exceed the {n} parameters"):
        compute(input, SpectrumSettings(top_k=n + 1), QUIET)
